"""
The GitHub backend never does file IO on the reactor thread: an upload's
file is read, and reindex's downloads are written, only through the thread
runner. In process the runner runs in the calling thread, so the tests
give the backend a runner that knows when it is running, and make every
file operation under the backend's state folder check that it is.
"""

import base64
import builtins
import hashlib
import io
import json
import os
import subprocess
import urllib.request

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed

from ppypi.backends.github.transfer import _FileSink, save_body
from ppypi.backends.registry import BackendContext, create
from ppypi.config import load_admin_secret, load_config
from ppypi.domain import CheckedUpload, UploadedFile
from ppypi.names import parse_filename

from .conftest import BIN
from .fake_github import FakeGitHub, FakeGitHubProcess, repository_yaml
from .helpers import StubHTTP, drive, wheel_bytes


class Runner:
    """A thread runner that runs in the calling thread, and knows when it is."""

    def __init__(self):
        self.depth = 0

    @property
    def inside(self):
        return self.depth > 0

    def __call__(self, f, *args, **kwargs):
        self.depth += 1
        try:
            return maybeDeferred(f, *args, **kwargs)
        finally:
            self.depth -= 1


class Guard:
    """
    Records file operations on paths under C{folder} (and every os.fdopen)
    made outside the runner; C{seen}: every such operation, inside or not.
    """

    def __init__(self, runner, folder):
        self.runner = runner
        self.folder = os.path.abspath(folder) + os.sep
        self.outside = []
        self.seen = []

    def concerns(self, path):
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(self.folder)
        except TypeError:
            return False  # a file descriptor

    def check(self, what, target):
        self.seen.append((what, target))
        if not self.runner.inside:
            self.outside.append((what, target))

    def install(self, monkeypatch):
        real_open, real_fdopen = builtins.open, os.fdopen
        real_os_open, real_unlink = os.open, os.unlink

        def guarded_open(file, *args, **kwargs):
            if not self.concerns(file):
                return real_open(file, *args, **kwargs)
            self.check("open", file)
            return GuardedFile(real_open(file, *args, **kwargs), self, file)

        def guarded_fdopen(fd, *args, **kwargs):
            self.check("fdopen", fd)
            return GuardedFile(real_fdopen(fd, *args, **kwargs), self, fd)

        def guarded_os_open(path, *args, **kwargs):
            if self.concerns(path):
                self.check("os.open", path)
            return real_os_open(path, *args, **kwargs)

        def guarded_unlink(path, *args, **kwargs):
            if self.concerns(path):
                self.check("unlink", path)
            return real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(os, "fdopen", guarded_fdopen)
        monkeypatch.setattr(os, "open", guarded_os_open)
        monkeypatch.setattr(os, "unlink", guarded_unlink)


class GuardedFile:
    """A file whose reads, writes and close are checked by a L{Guard}."""

    def __init__(self, f, guard, name):
        self._f = f
        self._guard = guard
        self._name = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _checked(method):
    def call(self, *args, **kwargs):
        self._guard.check(method, self._name)
        return getattr(self._f, method)(*args, **kwargs)
    return call


for _method in ("read", "read1", "readinto", "readline", "readlines", "write", "writelines",
                "flush", "seek", "truncate", "close"):
    setattr(GuardedFile, _method, _checked(_method))


class Setup:
    """A GitHub backend built by the registry over the fake GitHub, on a Clock."""

    def __init__(self, tmp_path):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)  # a plausible epoch, for created_at
        self.fake = FakeGitHub(clock=self.clock)
        self.fake.add_repo("acme", "pkgs", private=True)
        self.fake.add_token("admin-tok", "bot", {"acme/pkgs": "admin"})
        self.http = StubHTTP(self.fake)
        root = tmp_path / "root"
        root.mkdir()
        config = load_config("repositories:\n" + repository_yaml("http://api.github.test"),
                             str(root), is_text=True)
        load_admin_secret("acme: {raw: admin-tok}", config, is_text=True)
        self.runner = Runner()
        self.backend = create(BackendContext(
            config=config.repositories[0], state_dir=str(tmp_path / "state"),
            run_in_thread=self.runner, clock=self.clock, http=self.http, others=[],
            on_retry=None))
        self.backend.prepare()
        self.run(self.backend.init())
        self.run(self.backend.list_files())

    def run(self, coroutine):
        return drive(Deferred.fromCoroutine(coroutine), self.clock, stubs=[self.http])

    def upload(self, data, filename="acme_tool-1.0-py3-none-any.whl"):
        """An upload in incoming_dir, as the web layer leaves it, and its checks."""
        path = os.path.join(self.backend.incoming_dir, "upload-1")
        with open(path, "wb") as f:
            f.write(data)
        upload = UploadedFile(filename, path, len(data), hashlib.sha256(data).hexdigest())
        meta = b"Metadata-Version: 2.1\nName: acme-tool\nVersion: 1.0\n"
        return upload, CheckedUpload(parse_filename(filename), meta, None, True)


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


def test_an_uploads_file_is_read_only_in_the_thread_pool(setup, monkeypatch):
    data = wheel_bytes("acme_tool", "1.0") * 50  # several of ThreadedFileBody's chunks
    upload, checked = setup.upload(data)
    guard = Guard(setup.runner, setup.backend.state_dir)
    guard.install(monkeypatch)
    stored = setup.run(setup.backend.store(upload, checked))
    assert stored.status == "stored"
    assert ("open", upload.path) in guard.seen  # the guard saw the upload read
    assert guard.outside == []
    asset = [a for a in setup.fake.repo("acme/pkgs").assets.values()
             if a.name == upload.filename]
    assert len(asset) == 1 and asset[0].data == data


def test_reindex_writes_its_downloads_only_in_the_thread_pool(setup, monkeypatch):
    data = wheel_bytes("acme_tool", "1.0")
    upload, checked = setup.upload(data)
    setup.run(setup.backend.store(upload, checked))
    os.unlink(upload.path)  # the web layer's part, after a store
    guard = Guard(setup.runner, setup.backend.state_dir)
    guard.install(monkeypatch)
    assert setup.run(setup.backend.reindex()) == 1
    assert any(what == "write" for what, _ in guard.seen)  # the guard saw the download
    assert guard.outside == []
    assert os.listdir(setup.backend.incoming_dir) == []  # the temporary file is gone
    doc = json.loads(setup.fake.repo("acme/pkgs").files["ppypi"]["index/acme-tool.json"])
    assert doc["files"][upload.filename]["sha256"] == hashlib.sha256(data).hexdigest()


# -- the download sink, with writes the test completes one at a time ----------


class SlowDisk:
    """A thread runner whose calls wait until the test completes them."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = Deferred()
        self.calls.append((f, args, d))
        return d

    def complete(self):
        f, args, d = self.calls.pop(0)
        try:
            result = f(*args)
        except Exception:
            d.errback(Failure())
        else:
            d.callback(result)


class Transport:
    def __init__(self):
        self.paused = False
        self.pauses = 0
        self.lost = False

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False

    def loseConnection(self):
        self.lost = True


class Response:
    length = None  # unknown: sent chunked

    def __init__(self):
        self.transport = Transport()
        self.protocol = None

    def deliverBody(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self.transport)


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def test_a_download_is_written_in_order_one_write_at_a_time_pausing_when_behind(monkeypatch):
    monkeypatch.setattr(_FileSink, "LIMIT", 10)
    disk, f, response = SlowDisk(), io.BytesIO(), Response()
    done = results(save_body(response, f, disk))
    body = response.protocol
    body.dataReceived(b"a" * 6)
    body.dataReceived(b"b" * 6)
    body.dataReceived(b"c" * 6)
    assert len(disk.calls) == 1 and response.transport.paused  # 18 bytes wait: paused
    disk.complete()
    assert len(disk.calls) == 1 and response.transport.paused  # 12 still wait
    body.connectionLost(Failure(ResponseDone()))
    assert done == []  # not before the last write
    disk.complete()
    assert not response.transport.paused and response.transport.pauses == 1
    assert done == [None] and disk.calls == []
    assert f.getvalue() == b"a" * 6 + b"b" * 6 + b"c" * 6


def test_a_failed_write_fails_the_download_and_drops_the_connection():
    disk, response = SlowDisk(), Response()

    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    done = results(save_body(response, Full(), disk))
    response.protocol.dataReceived(b"x" * 100)
    disk.complete()
    assert response.transport.lost
    assert isinstance(done[0], Failure) and done[0].check(OSError)
    response.protocol.dataReceived(b"y" * 100)  # what was on its way is dropped
    response.protocol.connectionLost(Failure(ResponseDone()))
    assert disk.calls == []


def test_a_download_cut_short_fails_after_what_came_is_written():
    disk, f, response = SlowDisk(), io.BytesIO(), Response()
    done = results(save_body(response, f, disk))
    response.protocol.dataReceived(b"x" * 100)
    response.protocol.connectionLost(Failure(ResponseFailed([Failure(ConnectionLost())])))
    assert done == []
    disk.complete()
    assert isinstance(done[0], Failure) and done[0].check(ResponseFailed)
    done[0].trap(ResponseFailed)
    assert f.getvalue() == b"x" * 100


# -- the same over real HTTP, with a real thread pool -------------------------


def test_ppypi_github_reindex_downloads_a_large_asset_through_the_thread_pool(tmp_path):
    """
    C{ppypi github reindex} against the fake GitHub over loopback: a wheel
    larger than the sink's limit (so the connection may be paused) is
    downloaded, hashed and indexed, and leaves nothing in incoming.
    """
    fake = FakeGitHubProcess(tmp_path / "fake-github.log")
    try:
        fake.control("repos", {"owner": "acme", "name": "pkgs", "private": True, "empty": False})
        fake.control("tokens", {"token": "admin-tok", "user": "admin",
                                "repos": {"acme/pkgs": "admin"}})
        data = wheel_bytes("big_tool", "1.0", payload=os.urandom(_FileSink.LIMIT + (1 << 20)))
        filename = "big_tool-1.0-py3-none-any.whl"
        fake.control("releases", {"repo": "acme/pkgs", "tag_name": "big-tool-1.0",
                                  "assets": {filename: base64.b64encode(data).decode()}})
        config = tmp_path / "ppypi.yaml"
        config.write_text("repositories:\n" + repository_yaml(fake.api))
        secret = tmp_path / "secrets.yaml"
        secret.write_text("acme: {raw: admin-tok}\n")
        root = tmp_path / "root"

        def ppypi_github(action):
            return subprocess.run(
                [os.path.join(BIN, "ppypi"), "github", action, "--root", str(root),
                 "--config", str(config), "--admin-secret", str(secret)],
                capture_output=True, text=True, timeout=120)

        for action in ("init", "reindex"):
            done = ppypi_github(action)
            assert done.returncode == 0, done.stdout + done.stderr
        assert "indexed 1 files" in done.stdout
        assert os.listdir(root / ".ppypi" / "repositories" / "acme" / "incoming") == []
        request = urllib.request.Request(
            f"{fake.api}/repos/acme/pkgs/contents/index/big-tool.json?ref=ppypi",
            headers={"Authorization": "Bearer admin-tok"})
        with urllib.request.urlopen(request, timeout=10) as r:
            doc = json.loads(base64.b64decode(json.load(r)["content"]))
        entry = doc["files"][filename]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data) and entry["metadata_sha256"]
    finally:
        fake.stop()
