"""
ppypi copy: every file, yank and name held of one repository into another,
any kind into any kind, through the backend interface alone; idempotent
and resumable. The copying (ppypi/copy.py) is driven here on backends made
as the daemon makes them; the command itself runs as a subprocess.
"""

import hashlib
import io
import os
import pty
import select
import subprocess
import zipfile

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from ppypi import copy as copying
from ppypi.backends.interface import BackendError, Listing, Redirect, Stream
from ppypi.commands import _CopyProgress, _size
from ppypi.config import load_config
from ppypi.domain import UploadedFile

from . import conftest, memory_backend
from .helpers import InProcess, StubHTTP, drive, run_now, sdist_bytes, wheel_bytes

PPYPI = os.path.join(conftest.BIN, "ppypi")

CONFIG = """\
repositories:
  src: {path: src, read: anyone}
  dst: {path: dst, read: anyone}
  mem: {type: memory, read: anyone}
  stream: {type: memory, downloads: stream, read: anyone}
"""
# For the command, run as a subprocess: the memory type is the tests' own.
COMMAND_CONFIG = """\
repositories:
  src: {path: src}
  dst: {path: dst}
  other: {path: other}
"""

W10 = "acme_tool-1.0-py3-none-any.whl"
S10 = "acme_tool-1.0.tar.gz"
W11 = "acme_tool-1.1-py3-none-any.whl"
B20 = "beta_lib-2.0-py3-none-any.whl"
FILES = {
    W10: wheel_bytes("acme_tool", "1.0"),
    S10: sdist_bytes("acme_tool", "1.0"),
    W11: wheel_bytes("acme_tool", "1.1", requires_python=">=3.10"),
    B20: wheel_bytes("beta_lib", "2.0"),
}
YANKS = {"acme-tool": {"1.0": "broken build"}}


class Setup:
    """A ROOT with the configuration above and a folder of files in src."""

    def __init__(self, tmp_path, files=FILES):
        self.root = str(tmp_path / "root")
        self.config_path = str(tmp_path / "ppypi.yaml")
        with open(self.config_path, "w") as f:
            f.write(CONFIG)
        self.command_config = str(tmp_path / "command.yaml")
        with open(self.command_config, "w") as f:
            f.write(COMMAND_CONFIG)
        self.config = load_config(self.config_path, self.root)
        os.makedirs(os.path.join(self.root, "src"))
        for name, data in files.items():
            with open(os.path.join(self.root, "src", name), "wb") as f:
                f.write(data)
        self.clock = Clock()
        self.http = None
        # The source as a running server left it: a yank, and a name held
        # whose files are gone.
        src = self.backend("src")
        self.run(src.list_files())
        self.run(src.set_yank("acme-tool", "1.0", "broken build"))
        self.run(src.save_held({"acme-tool", "beta-lib", "gone-project"}))

    def backend(self, name):
        """A fresh backend (each run of the command makes its own), prepared."""
        rc, = [r for r in self.config.repositories if r.name == name]
        backend = copying.make_backend(rc, self.config, self.root, self.clock, run_now, self.http)
        backend.prepare()
        return backend

    def run(self, work):
        async def wait():
            return await work
        return drive(Deferred.fromCoroutine(wait()), self.clock,
                     stubs=[self.http] if self.http else [])

    def copy(self, source="src", dest="dst", backends=None, **kwargs):
        source, dest = backends or (self.backend(source), self.backend(dest))
        self.used = (source, dest)
        return self.run(copying.copy_repository(source, dest, run_now, self.http, **kwargs))

    def folder(self, name):
        out = {}
        top = os.path.join(self.root, name)
        for path, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                with open(os.path.join(path, f), "rb") as fh:
                    out[f] = fh.read()
        return out


def incoming(backend):
    return os.listdir(backend.incoming_dir)


def metadata_of(wheel):
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        name, = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return z.read(name)


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


# -- any backend to any backend ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_folder_to_folder_files_yanks_held_names_and_metadata(setup):
    report = setup.copy()
    assert (report.copied, report.already, report.conflicts, report.failed) == (4, 0, 0, 0)
    assert report.complete
    assert report.copied_bytes == sum(map(len, FILES.values()))
    assert report.summary().startswith("4 copied")
    assert setup.folder("dst") == FILES
    assert incoming(setup.used[1]) == []
    dest = setup.backend("dst")
    assert setup.run(dest.load_yanks()) == YANKS
    assert setup.run(dest.load_held()) == {"acme-tool", "beta-lib", "gone-project"}

    # The destination served by a server: listed, yanked, its metadata (PEP 658).
    server = InProcess(setup.root, config_text=CONFIG)
    await server.sync()
    r, page = await server.get("/dst/simple/acme-tool/")
    assert r.code == 200
    for name in (W10, S10, W11):
        assert f"{name}#sha256={hashlib.sha256(FILES[name]).hexdigest()}".encode() in page
    assert b'data-yanked="broken build"' in page
    assert b'data-requires-python="&gt;=3.10"' in page
    assert page.count(b"data-dist-info-metadata") == 3  # the sdist is Metadata-Version 2.2
    r, got = await server.get(f"/dst/packages/acme-tool/{W11}.metadata")
    assert (r.code, got) == (200, metadata_of(FILES[W11]))
    r, got = await server.get(f"/dst/packages/beta-lib/{B20}")
    assert (r.code, got) == (200, FILES[B20])
    # A name the source held, with no file, is no way to the extra index here.
    r, _ = await server.get("/dst/simple/gone-project/")
    assert r.code == 404


def test_folder_to_memory(setup):
    report = setup.copy("src", "mem")
    assert (report.copied, report.complete) == (4, True)
    assert incoming(setup.used[1]) == []
    store = memory_backend.STORES[os.path.join(setup.root, ".ppypi", "repositories", "mem")]
    assert {name: data for name, (dist, data) in store.files.items()} == FILES
    assert store.yanks == YANKS
    assert store.held == {"acme-tool", "beta-lib", "gone-project"}
    dist = store.files[W10][0]
    assert dist.core_metadata and store.metadata[dist.metadata_sha256] == metadata_of(FILES[W10])
    assert dist.summary == "bench package acme_tool"


def test_provenance_and_statuses_go_along(setup):
    # A provenance beside one file (as a verified upload leaves it) and a status.
    provenance = b'{"version":1,"attestation_bundles":[]}'
    with open(os.path.join(setup.root, "src", W11 + ".provenance"), "wb") as f:
        f.write(provenance)
    src = setup.backend("src")
    setup.run(src.list_files())
    setup.run(src.set_status("beta-lib", "archived", "replaced by acme-tool"))
    report = setup.copy("src", "mem")
    assert (report.copied, report.complete, report.statuses_set) == (
        4, True, [("beta-lib", "archived")])
    store = memory_backend.STORES[os.path.join(setup.root, ".ppypi", "repositories", "mem")]
    assert store.provenance == {W11: provenance}
    assert store.files[W11][0].provenance and not store.files[W10][0].provenance
    assert store.statuses == {"beta-lib": {"status": "archived",
                                           "reason": "replaced by acme-tool"}}
    # Back into a folder: beside the file again; a status set there is kept.
    setup.run(setup.backend("dst").list_files())
    setup.run(setup.backend("dst").set_status("beta-lib", "deprecated", "ours"))
    report = setup.copy("mem", "dst")
    assert report.complete and report.statuses_set == []
    assert setup.folder("dst")[W11 + ".provenance"] == provenance
    assert setup.run(setup.backend("dst").load_statuses()) == {
        "beta-lib": {"status": "deprecated", "reason": "ours"}}


def test_through_a_stream_both_ways(setup):
    """A folder into a store that gives its files as streams, and back into a folder."""
    assert setup.copy("src", "stream").copied == 4
    source = setup.backend("stream")
    setup.run(source.list_files())
    assert type(setup.run(source.download(source.memory.files[W10][0]))).__name__ == "Stream"
    report = setup.copy("stream", "dst")
    assert (report.copied, report.complete) == (4, True)
    assert setup.folder("dst") == FILES
    assert setup.run(setup.backend("dst").load_yanks()) == YANKS


class FileHost(Resource):
    """Where a store's signed URLs point: it serves files and notes the headers."""

    isLeaf = True

    def __init__(self, files):
        super().__init__()
        self.files = files
        self.requests = []

    def render_GET(self, request):
        self.requests.append((request.uri, dict(request.requestHeaders.getAllRawHeaders())))
        name = request.postpath[-1].decode()
        if name not in self.files:
            request.setResponseCode(404)
            return b"no such file"
        return self.files[name]


def redirecting(backend):
    """The memory backend, giving each file as a signed URL of another host."""
    async def download(dist, start=0, read=0, principal=None):
        return Redirect(f"http://files.example/{dist.filename}?signature=s3cret")
    backend.download = download
    return backend


def test_from_a_store_that_redirects(setup):
    """A L{Redirect}: fetched with the HTTP client, no credentials sent."""
    assert setup.copy("src", "mem").copied == 4
    host = FileHost(dict(FILES))
    del host.files[B20]  # the host lost one
    setup.http = StubHTTP(host)
    report = setup.copy(backends=(redirecting(setup.backend("mem")), setup.backend("dst")))
    assert (report.copied, report.failed) == (3, 1)
    assert report.problems == [(B20, "reading it from mem failed: GET http://files.example/... "
                                     "answered 404")]
    assert "s3cret" not in str(report.problems)
    assert set(setup.folder("dst")) == {W10, S10, W11}
    assert setup.folder("dst")[W11] == FILES[W11]
    for uri, headers in host.requests:
        assert b"signature=s3cret" in uri
        assert not {k.lower() for k in headers} & {b"authorization", b"cookie"}


def test_an_interrupted_copy_leaves_no_file_behind(setup):
    """The command cancels the copy when it is interrupted (Ctrl-C): the
    file part way leaves the incoming folder, and no other is begun."""
    source, dest = setup.backend("src"), setup.backend("dst")
    started = []
    never = Deferred()

    async def download(dist, start=0, read=0, principal=None):
        started.append(dist.filename)

        async def deliver(write):
            write(FILES[dist.filename][:100])
            await never
        return Stream(deliver)

    source.download = download
    copier = copying.Copier(source, dest, run_now)
    work = Deferred.fromCoroutine(copier.run())
    assert started == [W10] and len(incoming(dest)) == 1
    work.cancel()
    failures = []
    work.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError)
    assert incoming(dest) == [] and started == [W10]
    assert setup.folder("dst") == {}


# -- idempotent, resumable ----------------------------------------------------------


def test_a_second_run_copies_nothing(setup):
    assert setup.copy().copied == 4
    before = {n: os.stat(os.path.join(setup.root, "dst", n.split("-")[0].replace("_", "-"), n))
              .st_mtime_ns for n in FILES}
    source, dest = setup.backend("src"), setup.backend("dst")
    downloads = []
    real_download = source.download

    async def download(dist, *args, **kwargs):
        downloads.append(dist.filename)
        return await real_download(dist, *args, **kwargs)

    source.download = download
    again = setup.copy(backends=(source, dest))
    assert (again.copied, again.already, again.complete) == (0, 4, True)
    assert downloads == []  # nothing read again, either
    assert (again.yanks_set, again.held_added) == ([], set())
    assert again.summary() == ("0 copied (0 bytes), 4 already there, 0 conflicts, 0 failed; "
                               "0 yanks set, 0 statuses set, 0 names held added")
    after = {n: os.stat(os.path.join(setup.root, "dst", n.split("-")[0].replace("_", "-"), n))
             .st_mtime_ns for n in FILES}
    assert after == before


def test_an_interrupted_copy_is_resumed(setup):
    """The destination fails on the third file: the run stops there (it
    would fail again and again); the next run copies what is missing."""
    source, dest = setup.backend("src"), setup.backend("dst")
    real_store = dest.store
    calls = []

    async def store(upload, checked, **kwargs):
        calls.append(upload.filename)
        if len(calls) == 3:
            raise BackendError("the store went away")
        return await real_store(upload, checked, **kwargs)

    dest.store = store
    report = setup.copy(backends=(source, dest))
    assert (report.copied, report.failed, report.complete) == (2, 2, False)
    first, second, third, fourth = sorted(FILES, key=lambda n: (n.split("-")[0], n))
    assert report.problems == [
        (third, "storing it in dst failed: the store went away"), (fourth, "not tried")]
    assert incoming(dest) == []
    assert set(setup.folder("dst")) == {first, second}
    # A run killed part way leaves its file in the incoming folder: the next
    # run's start-up (as the daemon's) removes it.
    with open(os.path.join(dest.incoming_dir, "copy-killed.part"), "wb") as f:
        f.write(b"half a wheel")
    again = setup.copy()
    assert (again.copied, again.already, again.complete) == (2, 2, True)
    assert setup.folder("dst") == FILES
    assert incoming(setup.used[1]) == []


def test_dry_run_changes_nothing(setup):
    report = setup.copy(dry_run=True)
    assert [d.filename for d in report.would_copy] == [W10, S10, W11, B20]
    assert report.copied == 0 and report.complete
    assert list(report.dry_run_lines()) == [
        f"would copy {n} ({len(FILES[n])} bytes)" for n in (W10, S10, W11, B20)] + [
        "would yank acme-tool 1.0 (broken build)",
        "would hold the names acme-tool, beta-lib, gone-project"]
    assert setup.folder("dst") == {}
    dest = setup.backend("dst")
    assert setup.run(dest.load_yanks()) == {}
    assert setup.run(dest.load_held()) == set()


# -- what is not copied ------------------------------------------------------------


def test_a_conflict_is_reported_and_not_overwritten(setup):
    other = wheel_bytes("acme_tool", "1.0", payload=b"# another build\n")
    os.makedirs(os.path.join(setup.root, "dst"))
    with open(os.path.join(setup.root, "dst", W10), "wb") as f:
        f.write(other)
    report = setup.copy()
    assert (report.copied, report.conflicts, report.failed, report.complete) == (3, 1, 0, False)
    (what, why), = report.problems
    assert what == W10 and "other content" in why
    assert setup.folder("dst")[W10] == other
    # Still there at the next run: never overwritten.
    again = setup.copy()
    assert (again.copied, again.already, again.conflicts) == (0, 3, 1)
    assert setup.folder("dst")[W10] == other


def test_a_conflict_found_by_the_store_is_reported(setup):
    """The file arrived in the destination after its listing: the store's
    Conflict is reported, the file there left as it is."""
    other = wheel_bytes("acme_tool", "1.0", payload=b"# another build\n")
    assert setup.copy("src", "mem").copied == 4
    dest = setup.backend("mem")
    store = dest.memory
    del store.files[W10], store.files[W11]
    # Another upload of that name, with other content, as a server would take it.
    path = os.path.join(dest.incoming_dir, "other.part")
    with open(path, "wb") as f:
        f.write(other)
    upload = UploadedFile(W10, path, len(other), hashlib.sha256(other).hexdigest())
    assert setup.run(dest.store(upload, copying.check_file(upload))).status == "stored"
    upload.discard()
    dest.list_files = lambda: _listing([d for n, (d, _) in store.files.items() if n != W10])
    report = setup.copy(backends=(setup.backend("src"), dest))
    assert (report.copied, report.conflicts, report.already, report.complete) == (1, 1, 2, False)
    assert report.problems == [(W10, "mem has a file of that name with other content; "
                                     "left as it is")]
    assert store.files[W10][1] == other
    assert incoming(dest) == []


async def _listing(files):
    return Listing(files)


def test_a_file_changed_under_the_source_index_is_not_stored(setup):
    """A file whose bytes are not what the source's index says (damaged on
    disk since it was hashed): reported, not stored, the rest copied."""
    path = os.path.join(setup.root, "src", W11)
    st = os.stat(path)
    data = bytearray(FILES[W11])
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the index sees no change
    report = setup.copy()
    assert (report.copied, report.failed, report.complete) == (3, 1, False)
    (what, why), = report.problems
    assert what == W11
    assert hashlib.sha256(FILES[W11]).hexdigest() in why and "not stored" in why
    assert W11 not in setup.folder("dst")
    assert incoming(setup.used[1]) == []


def test_a_file_an_upload_would_refuse_is_not_stored(tmp_path):
    """The checks of an upload: a wheel whose metadata names another version."""
    liar = "acme_tool-3.0-py3-none-any.whl"
    setup = Setup(tmp_path, {W10: FILES[W10], liar: wheel_bytes("acme_tool", "2.0")})
    report = setup.copy()
    assert (report.copied, report.failed) == (1, 1)
    assert report.problems == [(liar, "refused as an upload would be: Version in the file's "
                                      "metadata (2.0) does not match the filename (" + liar + ")")]
    assert set(setup.folder("dst")) == {W10}


def test_a_file_larger_than_the_destination_takes(setup):
    report = setup.copy(max_file_bytes=len(FILES[S10]))
    assert report.copied == 1 and report.failed == 3
    assert set(setup.folder("dst")) == {S10}
    assert "larger than dst's max_file_bytes" in report.problems[0][1]


# -- the command -------------------------------------------------------------------


def ppypi_copy(setup, *args):
    """Run the console script: (exit code, stdout, stderr)."""
    p = subprocess.run([PPYPI, "copy", "--root", setup.root, "--config", setup.command_config,
                        *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_the_command(setup):
    with open(os.path.join(setup.root, "src", "notes.txt"), "w") as f:
        f.write("not a distribution")
    code, out, err = ppypi_copy(setup, "--dry-run", "src", "dst")
    assert code == 0, err
    assert f"would copy {W10} ({len(FILES[W10])} bytes)" in out
    assert out.splitlines()[-1].startswith("dry run: 4 to copy")
    assert setup.folder("dst") == {}

    code, out, err = ppypi_copy(setup, "src", "dst")
    assert code == 0, err
    assert out == ("4 copied (%d bytes), 0 already there, 0 conflicts, 0 failed; "
                   "1 yank set, 0 statuses set, 3 names held added\n" % sum(map(len, FILES.values())))
    # Not a terminal: a line a file, and the source's own warnings.
    lines = err.splitlines()
    assert f"4 files to copy ({_size(sum(map(len, FILES.values())))}), 0 already there" in lines
    assert f"[1/4] copied: {W10}" in lines and f"[4/4] copied: {B20}" in lines
    assert any("notes.txt: skipped, not a distribution" in line for line in lines)
    assert "\r" not in err
    assert setup.folder("dst") == FILES

    code, out, err = ppypi_copy(setup, "src", "dst")
    assert code == 0, err
    assert out.startswith("0 copied (0 bytes), 4 already there, 0 conflicts, 0 failed")

    with open(os.path.join(setup.root, "src", "acme_tool-9.0-py3-none-any.whl"), "wb") as f:
        f.write(wheel_bytes("acme_tool", "9.0"))
    os.makedirs(os.path.join(setup.root, "dst", "late"))
    with open(os.path.join(setup.root, "dst", "late", "acme_tool-9.0-py3-none-any.whl"),
              "wb") as f:
        f.write(wheel_bytes("acme_tool", "9.0", payload=b"# not the same\n"))
    code, out, err = ppypi_copy(setup, "src", "dst")
    assert code == 1
    assert out.startswith("0 copied (0 bytes), 4 already there, 1 conflict, 0 failed")
    assert "conflict: acme_tool-9.0-py3-none-any.whl: dst has a file of that name" in err
    assert err.splitlines()[-1] == "ppypi copy: dst lacks some of src (see above)"
    assert os.listdir(os.path.join(setup.root, "dst", ".ppypi", "incoming")) == []


def test_the_command_draws_a_bar_on_a_terminal(setup):
    leader, follower = pty.openpty()
    try:
        p = subprocess.Popen([PPYPI, "copy", "--root", setup.root, "--config",
                              setup.command_config, "src", "dst"],
                             stdout=subprocess.PIPE, stderr=follower, text=True)
        os.close(follower)
        follower = None
        chunks = []
        while True:
            if not select.select([leader], [], [], 60)[0]:
                p.kill()
                raise AssertionError("the command printed nothing for 60 s")
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the command exited, the terminal is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = p.stdout.read()
        assert p.wait(timeout=60) == 0
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)
    err = b"".join(chunks).decode()
    assert out.startswith("4 copied")
    assert "\r\x1b[K[" in err
    total = _size(sum(map(len, FILES.values())))
    assert f"] 4/4 files, {total} of {total}" in err
    assert "[" + "#" * 30 + "]" in err
    assert "copied:" not in err  # no line a file on a terminal


def test_the_command_says_which_repository_cannot_be_had(setup):
    with open(os.path.join(setup.root, "other"), "w") as f:
        f.write("a file where the folder should be")
    code, out, err = ppypi_copy(setup, "src", "other")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (f"ppypi copy: repository other: {setup.root}/other: "
                                    f"File exists")


def test_a_listing_that_fails_stops_the_copy(setup):
    dest = setup.backend("mem")
    dest.memory.failure = BackendError("the store is down")
    with pytest.raises(BackendError, match="the store is down"):
        setup.copy(backends=(setup.backend("src"), dest))
    dest.memory.failure = None
    assert dest.memory.files == {}


@pytest.mark.parametrize("args, message", [
    (["src", "nowhere"], "ppypi copy: no repository 'nowhere' in the configuration "
                         "(it has dst, other, src)"),
    (["src", "src"], "ppypi copy: SOURCE and DEST are the same repository"),
])
def test_the_command_refuses(setup, args, message):
    code, out, err = ppypi_copy(setup, *args)
    assert code == 1 and err.strip() == message


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_keeps_problems_above_it():
    stream = Terminal()
    now = [0.0]
    progress = _CopyProgress(stream, tty=True, clock=lambda: now[0])
    dists = [FakeDist(W10, 2000), FakeDist(W11, 1000)]
    progress.planned(copying.Plan(dists, already=5, conflicts=[]))
    progress.received(1500)
    now[0] += 1
    progress.received(500)
    progress.finished(dists[0], copying.COPIED)
    progress.finished(dists[1], copying.CONFLICT, "other content")
    progress.close()
    bar = "\r\x1b[K[{}] {} files, {} of 3.0 kB"
    assert stream.getvalue() == "".join([
        "2 files to copy (3.0 kB), 5 already there\n",
        bar.format("." * 30, "0/2", "0 bytes"),
        # The first 1500 bytes come within the redraw interval: not drawn.
        bar.format("." * 30, "0/2", "2.0 kB"),
        bar.format("#" * 15 + "." * 15, "1/2", "2.0 kB"),
        f"\r\x1b[Kconflict: {W11}: other content\n",
        bar.format("#" * 30, "2/2", "3.0 kB"),
        "\n"])


class FakeDist:
    def __init__(self, filename, size):
        self.filename = filename
        self.size = size
