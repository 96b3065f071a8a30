"""The filesystem backend: what a scan finds, and what it re-reads."""

import io
import json
import os
import tarfile
import zipfile

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from ppypi.backends import BackendError
from ppypi.backends.filesystem import FilesystemBackend, scan_folder
from ppypi.metadata import requires_python

from .conftest import make_corpus
from .helpers import run_now


def backend(tmp_path, folder=None, **kwargs):
    folder = folder or tmp_path / "repo"
    os.makedirs(folder, exist_ok=True)
    return FilesystemBackend("test", str(folder), str(tmp_path / "state"), run_now, **kwargs)


@pytest.fixture
def warnings():
    events = []

    def observer(event):
        if event.get("log_level") and event["log_level"].name == "warn":
            events.append(event)

    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


@pytest_twisted.ensureDeferred
async def test_flat_nested_and_per_project_layouts(tmp_path):
    b = backend(tmp_path)
    make_corpus(tmp_path / "repo", projects=2, versions=1)                      # flat
    make_corpus(tmp_path / "repo" / "bench-pkg-00002", projects=3, versions=1)  # per project
    make_corpus(tmp_path / "repo" / "a" / "b" / "c", projects=4, versions=1, prefix="Deep")
    result = await b.list_files()
    names = sorted(f.filename for f in result.files)
    # bench-pkg-00000 and 00001 are in the folder twice: each is listed once.
    assert len(names) == 3 + 4
    assert "deep_pkg_00003-1.0.0-py3-none-any.whl" in names
    locations = {f.filename: f.location for f in result.files}
    assert locations["deep_pkg_00003-1.0.0-py3-none-any.whl"] == \
        "a/b/c/deep_pkg_00003-1.0.0-py3-none-any.whl"


@pytest_twisted.ensureDeferred
async def test_invalid_names_warned_once_each_never_a_crash(tmp_path, warnings):
    b = backend(tmp_path)
    repo = tmp_path / "repo"
    make_corpus(repo, projects=1, versions=1)
    for bad in ("README.txt", "noversion.tar.gz", "x-1.0-bad.whl", "foo-1.0.egg",
                "foo-not_a_version.tar.gz", "café-1.0.tar.gz"):
        (repo / bad).write_bytes(b"x")
    (repo / "sub").mkdir()
    (repo / "sub" / "junk.bin").write_bytes(b"x")
    first = await b.list_files()
    assert len(first.files) == 1
    assert len(first.skipped) == 7
    assert len(warnings) == 7
    assert all(w["relpath"] in first.skipped for w in warnings)
    await b.list_files()
    assert len(warnings) == 7  # not again


@pytest_twisted.ensureDeferred
async def test_restart_rehashes_nothing_unchanged(tmp_path):
    make_corpus(tmp_path / "repo", projects=20, versions=2, sdist=True)
    first = await backend(tmp_path).list_files()
    assert first.hashed == 80
    again = backend(tmp_path)  # a new process: only the persisted cache
    second = await again.list_files()
    assert second.hashed == 0
    assert {(f.filename, f.sha256, f.requires_python) for f in second.files} == \
        {(f.filename, f.sha256, f.requires_python) for f in first.files}
    # A file replaced by hand (other size) is read again, and only that one.
    target = tmp_path / "repo" / "bench_pkg_00003-1.0.0-py3-none-any.whl"
    target.write_bytes(target.read_bytes() + b"\0")
    third = await again.list_files()
    assert third.hashed == 1
    # Same size, new mtime: read again too.
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert (await again.list_files()).hashed == 1


@pytest.mark.parametrize("damage", [b"{not json", b"[]", b'{"version": 99, "files": {}}',
                                    b'{"version": 1, "folder": "/elsewhere", "files": {}}', b""])
@pytest_twisted.ensureDeferred
async def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, damage, warnings):
    make_corpus(tmp_path / "repo", projects=2, versions=1)
    await backend(tmp_path).list_files()
    (tmp_path / "state" / "files.json").write_bytes(damage)
    result = await backend(tmp_path).list_files()
    assert result.hashed == 2 and len(result.files) == 2
    assert any("cache" in w["log_format"] for w in warnings)
    header, *entries = (tmp_path / "state" / "files.json").read_bytes().splitlines()
    assert json.loads(header)["version"] and len(entries) == 2  # rebuilt: both files


@pytest_twisted.ensureDeferred
async def test_symlinks_and_dot_entries_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    make_corpus(outside, projects=2, versions=1, prefix="Outside")
    repo = tmp_path / "repo"
    make_corpus(repo, projects=1, versions=1)
    os.symlink(outside, repo / "linked-dir")
    os.symlink(outside / "outside_pkg_00000-1.0.0-py3-none-any.whl",
               repo / "outside_pkg_00000-1.0.0-py3-none-any.whl")
    make_corpus(repo / ".hidden", projects=1, versions=1, prefix="Hidden")
    result = await backend(tmp_path).list_files()
    assert [f.filename for f in result.files] == ["bench_pkg_00000-1.0.0-py3-none-any.whl"]


@pytest_twisted.ensureDeferred
async def test_other_repositories_folders_are_excluded(tmp_path):
    make_corpus(tmp_path / "repo", projects=1, versions=1)
    make_corpus(tmp_path / "repo" / "acme", projects=3, versions=1, prefix="Acme")
    b = backend(tmp_path, exclude=[str(tmp_path / "repo" / "acme")])
    assert len((await b.list_files()).files) == 1


@pytest_twisted.ensureDeferred
async def test_missing_folder_is_a_backend_error(tmp_path):
    b = backend(tmp_path)
    os.rmdir(tmp_path / "repo")
    with pytest.raises(BackendError):
        await b.list_files()


def _wheel(path, metadata, name="pkg-1.0.dist-info/METADATA"):
    with zipfile.ZipFile(path, "w") as z:
        if metadata is not None:
            z.writestr(name, metadata)


def _sdist(path, pkginfo, member="pkg-1.0/PKG-INFO"):
    with tarfile.open(path, "w:gz") as t:
        data = pkginfo.encode()
        info = tarfile.TarInfo(member)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))


def test_requires_python_from_wheel_and_sdist(tmp_path):
    _wheel(tmp_path / "a.whl", "Metadata-Version: 2.1\nName: pkg\nRequires-Python: >=3.9,  <4\n")
    assert requires_python(tmp_path / "a.whl", "bdist_wheel", "a.whl") == ">=3.9, <4"
    _sdist(tmp_path / "a.tar.gz", "Metadata-Version: 2.2\nName: pkg\nRequires-Python: >=3.10\n")
    assert requires_python(tmp_path / "a.tar.gz", "sdist", "a.tar.gz") == ">=3.10"


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b"not a zip"),
    lambda p: _wheel(p, None),
    lambda p: _wheel(p, "Requires-Python: >=3", name="deep/er/METADATA"),
    lambda p: _wheel(p, "Metadata-Version: 2.1\nName: pkg\n"),
])
def test_unreadable_or_missing_metadata_gives_none(tmp_path, make):
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    make(path)
    assert requires_python(path, "bdist_wheel", path.name) is None


def test_zip_bomb_metadata_is_not_read_whole(tmp_path):
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pkg-1.0.dist-info/METADATA",
                   "Requires-Python: >=3\n" + "x" * (64 << 20))
    assert path.stat().st_size < 1 << 20
    assert requires_python(path, "bdist_wheel", path.name) is None


def test_scan_counts_hashes(tmp_path):
    make_corpus(tmp_path, projects=2, versions=2)
    result, cache = scan_folder(str(tmp_path), {})
    assert result.hashed == 4 and result.cache_changed
    result, cache2 = scan_folder(str(tmp_path), cache)
    assert result.hashed == 0 and not result.cache_changed and cache2 == cache


@pytest_twisted.ensureDeferred
async def test_names_held_by_an_upload_are_journalled_not_all_written_again(tmp_path):
    from ppypi.backends.local import LocalHeldNames

    from .helpers import run_now

    class Held(LocalHeldNames):
        state_dir = str(tmp_path / "state")
        _run = staticmethod(run_now)

    held = Held()
    listing = os.path.join(held.state_dir, "held-names.json")
    journal = os.path.join(held.state_dir, "held-names.journal")
    many = {f"project-{i:05d}" for i in range(5000)}
    await held.save_held(many)                       # a sync: the whole list
    assert not os.path.exists(journal)
    before = os.stat(listing).st_mtime_ns, os.path.getsize(listing)
    for i in range(3):                               # uploads of new projects: a line each
        many = many | {f"new-{i}"}
        await held.save_held(many)
    assert (os.stat(listing).st_mtime_ns, os.path.getsize(listing)) == before
    assert open(journal).read().splitlines() == ['"new-0"', '"new-1"', '"new-2"']
    # A restart reads both; a line torn by a crash is skipped.
    with open(journal, "ab") as f:
        f.write(b'"torn')
    assert await Held().load_held() == many
    # A larger change folds the journal into the list.
    many = many | {f"more-{i}" for i in range(100)}
    await held.save_held(many)
    assert not os.path.exists(journal)
    assert set(json.load(open(listing))) == many == await Held().load_held()
    # So does a long journal, past JOURNAL_MAX lines.
    fresh = Held()
    await fresh.save_held(many)
    for i in range(Held.JOURNAL_MAX + 1):
        many = many | {f"one-{i}"}
        await fresh.save_held(many)
    assert not os.path.exists(journal)   # the 1,001st name folded it in
    assert set(json.load(open(listing))) == many
    assert await Held().load_held() == many


@pytest_twisted.ensureDeferred
async def test_a_restart_serves_the_last_listing_while_it_scans(tmp_path):
    from twisted.internet.defer import Deferred, ensureDeferred

    from .corpus import make_corpus
    from .helpers import InProcess
    root = tmp_path / "root"
    make_corpus(root, projects=2, versions=2)
    # One file with a provenance beside it: the cache remembers the sidecar.
    wheel = "bench_pkg_00001-1.0.0-py3-none-any.whl"
    (root / (wheel + ".provenance")).write_bytes(b'{"version": 1, "attestation_bundles": []}')
    first = InProcess(root)
    await first.sync()
    # A restart whose scan does not end (a big folder): the last listing is
    # served meanwhile, the names held with it.
    again = InProcess(root)
    scanning = Deferred()
    again.repository.backend.list_files = lambda: scanning
    syncing = ensureDeferred(again.repository.sync())
    r, page = await again.get("/simple/bench-pkg-00001/")
    assert r.code == 200 and wheel.encode() in page and b"data-provenance=" in page
    r, _ = await again.get("/simple/never-held/")
    assert r.code == 503  # not to the extra index before the listing says what is held
    assert again.repository.last_sync is None and not syncing.called
    # A damaged cache: nothing served early, the scan rebuilds as before.
    (root / ".ppypi" / "repositories" / "default" / "files.json").write_bytes(b"garbage")
    third = InProcess(root)
    third.repository.backend.list_files = lambda: Deferred()
    ensureDeferred(third.repository.sync())
    r, _ = await third.get("/simple/bench-pkg-00001/")
    assert r.code == 503
