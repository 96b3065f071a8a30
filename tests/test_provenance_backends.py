"""
PEP 740 provenance and PEP 792 project statuses, backend by backend: what
the conformance suite (tests/test_backend_conformance.py, which checks
what every backend owes the interface) cannot say without knowing a
store's layout. The GitHub cleanup and reindex keep and rebuild provenance
assets; the S3 cleanup keeps the provenance objects the index names; a
folder's scan takes FILE.provenance sidecars as they come and go; a proxy
keeps neither; C{ppypi copy} carries both into every kind of store.

The stores are the conformance suite's harnesses (a fake GitHub, a moto
bucket, a folder), made the same way.
"""

import hashlib
import json
import os
import tempfile

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from ppypi import copy as copying
from ppypi.backends import BackendError, ReadOnly, registry
from ppypi.backends.filesystem import load_known
from ppypi.backends.github import CLEANUP_GRACE
from ppypi.config import load_config
from ppypi.domain import DistFile, UploadedFile
from ppypi.web.upload import check_upload

from .helpers import StubHTTP, drive, run_now, sdist_bytes, upload_fields, wheel_bytes
from .s3_server import moto_server  # noqa: F401 (a fixture)
from .test_backend_conformance import (  # noqa: F401 (harness: a fixture)
    PROJECT, FilesystemHarness, GitHubHarness, S3Harness, Upload, harness, listed, provenance,
    provenance_of, store)

WHEEL = "acme_tool-1.0-py3-none-any.whl"


@pytest.fixture
def github(tmp_path):
    made = GitHubHarness(tmp_path)
    yield made
    made.close()


@pytest.fixture
def s3(tmp_path, moto_server):  # noqa: F811 (the fixture, imported)
    made = S3Harness(tmp_path, moto_server)
    yield made
    made.close()


@pytest.fixture
def folder(tmp_path):
    made = FilesystemHarness(tmp_path)
    yield made
    made.close()


def drop(made, relpath, data):
    """A file put in a folder repository (a FilesystemHarness) by hand."""
    path = os.path.join(made.folder, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- GitHub: release assets -----------------------------------------------------------


def asset_names(github):
    return sorted(a.name for a in github.repo.assets.values())


def test_github_cleanup_keeps_a_provenance_the_index_names_and_removes_an_orphan(github):
    backend = github.make()
    upload = Upload(backend, attested_by="acme/tool")
    store(github, backend, upload)
    # An orphan beside it in the same release: the provenance of a file an
    # upload that failed half way never indexed.
    token = backend.remote.admin_token
    release = github.run(backend.releases.release(PROJECT, "1.0", token))
    orphan = "acme_tool-1.0-py2.py3-none-any.whl.provenance"
    github.run(backend.releases.upload_asset(release, orphan, b"{}", 2, token))
    kept = [WHEEL, WHEEL + ".metadata", WHEEL + ".provenance"]
    # Young: another server may be indexing it still.
    assert github.run(backend.cleanup()) == 0
    assert asset_names(github) == sorted(kept + [orphan])
    github.clock.advance(CLEANUP_GRACE + 1)
    assert github.run(backend.cleanup()) == 1
    assert asset_names(github) == sorted(kept)
    for check in (backend, github.fresh()):
        dist = listed(github, check)[WHEEL]
        assert dist.provenance and provenance(github, check, dist) == upload.provenance


def test_github_a_sync_after_the_grace_removes_what_a_crash_left(github):
    backend = github.make()
    crashed = Upload(backend, attested_by="acme/tool")
    github.crash_after_provenance()
    with pytest.raises(BackendError):
        store(github, backend, crashed)
    github.repair()
    assert asset_names(github) == sorted([WHEEL, WHEEL + ".metadata", WHEEL + ".provenance"])
    restarted = github.fresh()
    assert listed(github, restarted) == {}
    github.clock.advance(CLEANUP_GRACE + 1)
    assert listed(github, restarted) == {}  # this sync cleans up
    assert asset_names(github) == []


def index_doc(github):
    return json.loads(github.repo.files["ppypi"][f"index/{PROJECT}.json"])


def test_github_reindex_rebuilds_the_provenance_asset_ids(github):
    backend = github.make()
    attested = Upload(backend, "1.0", attested_by="acme/tool")
    plain = Upload(backend, "2.0")
    store(github, backend, attested)
    store(github, backend, plain)
    github.run(backend.set_status(PROJECT, "deprecated", "use acme-tool2"))
    before = index_doc(github)
    assert before["files"][attested.filename]["provenance_asset_id"]
    # The index's files are lost (its status is not): reindex finds them again.
    lost = dict(before, files={})
    github.fake.commit_files("acme/pkgs", {f"index/{PROJECT}.json": json.dumps(lost).encode()},
                             branch="ppypi")
    assert listed(github, github.fresh()) == {}
    assert github.run(backend.reindex()) == 2
    after = index_doc(github)
    assert (after["files"][attested.filename]["provenance_asset_id"]
            == before["files"][attested.filename]["provenance_asset_id"])
    assert not after["files"][plain.filename].get("provenance_asset_id")
    other = github.fresh()
    files = listed(github, other)
    assert files[attested.filename].provenance and not files[plain.filename].provenance
    assert provenance(github, other, files[attested.filename]) == attested.provenance
    assert provenance(github, other, files[plain.filename]) is None
    assert github.run(other.load_statuses()) == {
        PROJECT: {"status": "deprecated", "reason": "use acme-tool2"}}


def leave_an_orphan_provenance(github, backend, upload):
    """
    Store C{upload} (attested), then delete it while GitHub refuses the
    DELETE of its provenance asset: the asset stays, named by no index
    entry (Releases.delete_asset leaves it to the cleanup). Its id.
    """
    store(github, backend, upload)
    dist = listed(github, backend)[upload.filename]
    asset_id = backend.documents.entry(PROJECT, upload.filename)["provenance_asset_id"]
    github.network.refuse = lambda request: (
        request.method == b"DELETE"
        and request.path.endswith(f"/releases/assets/{asset_id}".encode()))
    github.run(backend.delete(dist))
    github.network.refuse = None
    assert listed(github, backend) == {}
    assert github.provenance_objects(upload.filename) == [asset_id]
    return asset_id


def test_github_an_orphan_provenance_in_the_way_does_not_drop_an_uploads_own(github):
    backend = github.make()
    leave_an_orphan_provenance(github, backend, Upload(backend, attested_by="acme/tool"))
    again = Upload(backend, payload=b"# rebuilt\n", attested_by="acme/tool-ci")
    stored = store(github, backend, again)
    assert stored.status == "stored"
    # Checked before the flag: that a dist says provenance=False is what fails now.
    assert [stored.dist.provenance, listed(github, backend)[WHEEL].provenance] == [True, True]
    assert provenance(github, backend, listed(github, backend)[WHEEL]) == again.provenance


def test_github_reindex_gives_no_file_a_provenance_of_other_bytes(github):
    backend = github.make()
    leave_an_orphan_provenance(github, backend, Upload(backend, attested_by="acme/tool"))
    again = Upload(backend, payload=b"# rebuilt, not attested\n")
    assert store(github, backend, again).dist.provenance is False
    assert github.run(backend.reindex()) == 1
    dist = listed(github, github.fresh())[WHEEL]
    assert dist.sha256 == again.sha256
    assert dist.provenance is False  # the orphan attests the deleted file's sha256


# -- S3: objects beside the files ---------------------------------------------------------


def test_s3_cleanup_keeps_a_provenance_the_index_names_and_removes_an_orphan(s3):
    backend = s3.make()
    upload = Upload(backend, attested_by="acme/tool")
    store(s3, backend, upload)
    named, = s3.provenance_objects(upload.filename)
    orphan = (f"{s3.bucket.prefix}files/{PROJECT}/{'0' * 64}/"
              f"acme_tool-0.9-py3-none-any.whl.provenance")
    s3.bucket.write_object(orphan, b"{}")
    assert s3.run(backend.cleanup()) == 0  # young: another server may be indexing it
    assert orphan in s3.bucket.keys()
    assert s3.run(backend.cleanup(grace=-5)) == 1
    keys = s3.bucket.keys()
    assert orphan not in keys and named in keys
    for check in (backend, s3.fresh()):
        dist = listed(s3, check)[upload.filename]
        assert dist.provenance and provenance(s3, check, dist) == upload.provenance


def test_s3_a_crashed_uploads_provenance_is_an_orphan_beside_the_file_stored_later(s3):
    backend = s3.make()
    crashed = Upload(backend, attested_by="acme/tool")
    s3.crash_after_provenance()
    with pytest.raises(BackendError):
        store(s3, backend, crashed)
    s3.repair()
    left, = s3.provenance_objects(crashed.filename)
    restarted = s3.fresh()
    later = Upload(restarted)  # the same bytes, without attestations
    assert store(s3, restarted, later).dist.provenance is False
    # The file object and metadata are the later upload's now (content-
    # addressed); only the provenance is nobody's, and goes.
    assert s3.run(restarted.cleanup(grace=-5)) == 1
    assert left not in s3.bucket.keys()
    for check in (restarted, s3.fresh()):
        dist = listed(s3, check)[later.filename]
        assert dist.provenance is False and provenance(s3, check, dist) is None


# -- a folder: FILE.provenance beside FILE --------------------------------------------------


def test_a_stray_provenance_is_no_file_and_no_warning(folder):
    backend = folder.make()
    drop(folder, WHEEL + ".provenance", b"{}")
    drop(folder, "acme-tool/acme_tool-2.0-py3-none-any.whl.provenance", b"{}")
    drop(folder, "notes.provenance", b"{}")
    # One being written (write_atomically's temporary name).
    drop(folder, "acme-tool/acme_tool-3.0-py3-none-any.whl.provenance.tmp-1-2", b"{")
    listing = folder.run(backend.list_files())
    assert (listing.files, listing.skipped, listing.warnings) == ([], [], [])


def test_a_provenance_dropped_in_by_hand_is_the_files_from_the_next_scan(folder):
    backend = folder.make()
    data = wheel_bytes("acme_tool", "1.0")
    drop(folder, WHEEL, data)  # flat, as pypiserver keeps them
    listing = folder.run(backend.list_files())
    assert listing.hashed == 1
    assert [d.provenance for d in listing.files] == [False]
    attested = provenance_of(WHEEL, hashlib.sha256(data).hexdigest())
    sidecar = drop(folder, WHEEL + ".provenance", attested)
    # A sidecar is looked at each scan, and costs no hashing.
    listing = folder.run(backend.list_files())
    (dist,) = listing.files
    assert (dist.provenance, listing.hashed, listing.warnings) == (True, 0, [])
    assert provenance(folder, backend, dist) == attested
    cache = os.path.join(folder.state_dir, "files.json")

    def restart():
        again = folder.create()
        again.prepare()
        return again, folder.run(again.list_files())

    restarted, listing = restart()
    assert [(d.provenance, listing.hashed) for d in listing.files] == [(True, 0)]
    with open(cache, "rb") as f:
        assert list(load_known(iter(f), folder.folder)) == [WHEEL]  # still this folder's
    os.unlink(sidecar)
    listing = folder.run(restarted.list_files())
    (dist,) = listing.files
    assert (dist.provenance, listing.hashed) == (False, 0)
    assert provenance(folder, restarted, dist) is None
    _, listing = restart()
    assert [(d.provenance, listing.hashed) for d in listing.files] == [(False, 0)]


def test_a_sidecar_removed_beside_an_uploaded_file_drops_its_flag(folder):
    backend = folder.make()
    upload = Upload(backend, attested_by="acme/tool")
    store(folder, backend, upload)
    sidecar, = folder.provenance_objects(upload.filename)
    assert sidecar == f"{PROJECT}/{WHEEL}.provenance"
    os.unlink(os.path.join(folder.folder, sidecar))
    dist = listed(folder, backend)[WHEEL]
    assert dist.provenance is False and provenance(folder, backend, dist) is None


def test_an_sdist_whose_name_holds_provenance_is_listed(folder):
    backend = folder.make()
    data = sdist_bytes("acme.provenance", "1.0")
    name = "acme.provenance-1.0.tar.gz"
    fd, path = tempfile.mkstemp(dir=backend.incoming_dir, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    upload = UploadedFile(name, path, len(data), hashlib.sha256(data).hexdigest(),
                          hashlib.md5(data).hexdigest(),
                          hashlib.blake2b(data, digest_size=32).hexdigest())
    fields = {}
    for key, value in upload_fields("acme.provenance", "1.0", data, filetype="sdist"):
        fields.setdefault(key, []).append(value)
    stored = folder.run(backend.store(upload, check_upload(fields, upload)))
    assert stored.status == "stored"
    assert os.path.isfile(os.path.join(folder.folder, "acme-provenance", name))
    assert list(listed(folder, backend)) == [name]


def test_an_overwrite_of_a_copy_dropped_in_by_hand_leaves_no_sidecar(folder):
    backend = folder.make()
    data = wheel_bytes("acme_tool", "1.0")
    drop(folder, WHEEL, data)
    drop(folder, WHEEL + ".provenance", provenance_of(WHEEL, hashlib.sha256(data).hexdigest()))
    old = listed(folder, backend)[WHEEL]
    assert (old.location, old.provenance) == (WHEEL, True)
    fixed = Upload(backend, payload=b"# the fixed build\n")
    store(folder, backend, fixed, overwrite=True, replacing=old)
    dist = listed(folder, backend)[WHEEL]
    assert (dist.location, dist.sha256, dist.provenance) == (
        f"{PROJECT}/{WHEEL}", fixed.sha256, False)
    assert folder.provenance_objects(WHEEL) == []


# -- a proxy: read-only -------------------------------------------------------------------


def test_a_mirror_keeps_no_provenance_and_no_status(tmp_path):
    # An upstream that is never asked: none of these calls goes there.
    root, clock = str(tmp_path / "root"), Clock()
    config = load_config("repositories:\n  pypi: {type: proxy, upstream: "
                         "'http://127.0.0.1:9/simple/'}\n", root, is_text=True)
    rc, = config.repositories
    backend = registry.create(registry.BackendContext(
        config=rc, state_dir=os.path.join(root, ".ppypi", "repositories", "pypi"),
        run_in_thread=run_now, clock=clock, http=StubHTTP(Resource()), others=[],
        on_retry=None))
    backend.prepare()

    def run(coroutine):
        return drive(Deferred.fromCoroutine(coroutine), clock)

    assert run(backend.load_statuses()) == {}
    with pytest.raises(ReadOnly):
        run(backend.set_status("requests", "archived", "no"))
    dist = DistFile(WHEEL, PROJECT, "1.0", "bdist_wheel", "0" * 64, 10, 0, provenance=True)
    assert run(backend.read_provenance(dist)) is None


# -- ppypi copy ---------------------------------------------------------------------------


def folder_with_an_attested_file(tmp_path):
    """A folder repository: an attested wheel, a plain one, and a project status."""
    source = FilesystemHarness(tmp_path / "source")
    backend = source.make()
    attested, plain = wheel_bytes("acme_tool", "1.0"), wheel_bytes("acme_tool", "2.0")
    drop(source, WHEEL, attested)
    drop(source, "acme_tool-2.0-py3-none-any.whl", plain)
    record = provenance_of(WHEEL, hashlib.sha256(attested).hexdigest())
    drop(source, WHEEL + ".provenance", record)
    source.run(backend.list_files())
    source.run(backend.set_status(PROJECT, "deprecated", "use acme-tool2"))
    return source, backend, record


def test_copy_carries_provenance_and_statuses_into_every_kind_of_store(harness, tmp_path):
    source, src, record = folder_with_an_attested_file(tmp_path)
    dest = harness.make()
    report = harness.run(copying.copy_repository(src, dest, run_now, harness.http))
    assert (report.copied, report.complete) == (2, True), report.problems
    assert report.statuses_set == [(PROJECT, "deprecated")]
    for check in (dest, harness.fresh()):
        files = listed(harness, check)
        assert files[WHEEL].provenance is True
        assert files["acme_tool-2.0-py3-none-any.whl"].provenance is False
        assert provenance(harness, check, files[WHEEL]) == record
        assert harness.run(check.load_statuses()) == {
            PROJECT: {"status": "deprecated", "reason": "use acme-tool2"}}
    # Again: nothing to do.
    again = harness.run(copying.copy_repository(src, harness.fresh(), run_now, harness.http))
    assert (again.copied, again.already, again.statuses_set) == (0, 2, [])


def test_copy_leaves_a_file_already_there_without_provenance_as_it_is(harness, tmp_path):
    # The documented rule: a file of the same sha256 in the destination is
    # left alone; its provenance (none) included.
    source, src, record = folder_with_an_attested_file(tmp_path)
    dest = harness.make()
    there = Upload(dest)
    assert there.data == wheel_bytes("acme_tool", "1.0")
    store(harness, dest, there)
    report = harness.run(copying.copy_repository(src, dest, run_now, harness.http))
    assert (report.copied, report.already, report.complete) == (1, 1, True)
    dist = listed(harness, harness.fresh())[WHEEL]
    assert dist.provenance is False


def test_copy_reads_provenance_from_every_kind_of_store(harness, tmp_path):
    if harness.name == "s3":
        pytest.skip("its presigned URLs need a real HTTP client, which a Clock cannot drive")
    source = harness.make()
    attested, plain = Upload(source, "1.0", attested_by="acme/tool"), Upload(source, "2.0")
    store(harness, source, attested)
    store(harness, source, plain)
    harness.run(source.set_status(PROJECT, "archived", "done"))
    listed(harness, source)
    dest_harness = FilesystemHarness(tmp_path / "dest")
    dest = dest_harness.make()
    report = harness.run(copying.copy_repository(source, dest, run_now, harness.http))
    assert (report.copied, report.complete) == (2, True), report.problems
    files = listed(dest_harness, dest_harness.fresh())
    assert files[WHEEL].provenance and not files[plain.filename].provenance
    with open(os.path.join(dest_harness.folder, PROJECT, WHEEL + ".provenance"), "rb") as f:
        assert f.read() == attested.provenance
    assert dest_harness.run(dest.load_statuses()) == {
        PROJECT: {"status": "archived", "reason": "done"}}
