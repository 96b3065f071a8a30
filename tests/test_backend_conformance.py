"""
The backend conformance suite: one set of tests, run unchanged on every
backend, each built as the daemon builds it (a configuration, then
L{ppypi.backends.registry.create}). A new backend is a new module that
passes these (L{ppypi.backends.interface}).

What differs between backends is in a harness only: how to make one, how to
make its store fail (or crash between a provenance and its file), how to
make a fresh instance on the same store (a restart), and where to look for
a file's provenance in the store itself. The tests know nothing else of them.

Last, a whole server on the memory backend (tests/memory_backend.py, a
module of its own and nothing else): the web layer needs nothing
backend-specific.
"""

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import time
import urllib.request
import zipfile
from unittest import mock

import bcrypt
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ppypi.backends import filesystem as filesystem_backend
from ppypi.backends import registry
from ppypi.backends.interface import (Backend, BackendError, Conflict, FileMissing, Listing,
                                      LocalFile, RateLimited, Redirect, Stored, Stream)
from ppypi.config import load_admin_secret, load_config
from ppypi.domain import UploadedFile
from ppypi.web.upload import check_upload

from . import memory_backend
from .fake_github import FakeGitHub, repository_yaml
from .s3_server import Forwarder, moto_server  # noqa: F401 (a fixture)
from .helpers import (InProcess, StubHTTP, basic, drive, run_now, upload_fields,
                      wheel_bytes)

PROJECT = "acme-tool"


# -- harnesses ----------------------------------------------------------------


class Harness:
    """
    One backend's store, in a temporary folder, with time on a Clock.

    @cvar yaml: the repository's configuration (its C{repositories:} entry).
    """

    name = None
    yaml = None
    admin_secret = None
    http = None

    def __init__(self, tmp_path):
        self.root = str(tmp_path / "root")
        os.makedirs(self.root)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)  # a plausible epoch
        config = load_config("repositories:\n" + self.yaml, self.root, is_text=True)
        if self.admin_secret:
            load_admin_secret(self.admin_secret, config, is_text=True)
        self.config, = config.repositories
        self.state_dir = os.path.join(self.root, ".ppypi", "repositories", self.config.name)

    def create(self):
        """A backend on this store, made by the registry as ppypi.tap makes one."""
        return registry.create(registry.BackendContext(
            config=self.config, state_dir=self.state_dir, run_in_thread=run_now,
            clock=self.clock, http=self.http, others=[], on_retry=None))

    def make(self):
        """A backend as the daemon starts one: created, prepared, synced once."""
        backend = self.create()
        backend.prepare()
        self.run(backend.list_files())
        return backend

    def fresh(self):
        """Another instance on the same store and state folder: a restart."""
        return self.make()

    def run(self, work):
        """What a coroutine or Deferred gives, the clock driven meanwhile."""
        return drive(Deferred.fromCoroutine(_wait(work)), self.clock,
                     stubs=[self.http] if self.http else [])

    def fetch(self, url):
        raise AssertionError(f"{self.name} gave a redirect to {url}: it has nothing to serve it")

    def break_store(self):
        """Make the store unreachable."""
        raise NotImplementedError

    def repair(self):
        raise NotImplementedError

    def rate_limit(self, seconds):
        """Make the store ask for a pause of C{seconds} (ending on the clock)."""
        pytest.skip(f"a {self.name} store has no rate limit")

    #: Whether L{crash_after_provenance} leaves the provenance in the store.
    crash_leaves_provenance = True

    def crash_after_provenance(self):
        """
        The next store fails just after it wrote the upload's provenance,
        before the file is indexed, and the store stays down until
        L{repair}: what a server that dies there leaves.
        """
        raise NotImplementedError

    def settle(self):
        """An hour passes: time enough for any grace a store gives what
        failed uploads left (a sync after it may clean them up)."""
        self.clock.advance(3600)

    def provenance_objects(self, filename):
        """What the store itself holds as C{filename}'s provenance (looked
        at directly, not through the backend): a list, empty when none."""
        raise NotImplementedError

    def close(self):
        """Stop what the harness started."""


async def _wait(work):
    # A coroutine's Deferred fires once, at the end; treq's may be "called"
    # while it still waits on another (drive would stop there).
    return await work


class FilesystemHarness(Harness):
    name = "filesystem"
    yaml = "  fs: {type: filesystem, path: files}\n"

    @property
    def folder(self):
        return os.path.join(self.root, "files")

    def break_store(self):
        # Gone, and a file where it was (nothing can create it again meanwhile).
        os.rename(self.folder, self.folder + ".away")
        with open(self.folder, "wb") as f:
            f.write(b"not a folder")

    def repair(self):
        self._unpatch()
        os.unlink(self.folder)
        os.rename(self.folder + ".away", self.folder)

    _patch = None

    def crash_after_provenance(self):
        real = filesystem_backend.write_atomically

        def write(path, data, *args, **kwargs):
            real(path, data, *args, **kwargs)
            if path.endswith(".provenance") and not os.path.isfile(self.folder):
                self.break_store()  # the folder goes before the file is linked in

        self._patch = mock.patch.object(filesystem_backend, "write_atomically", write)
        self._patch.start()

    def _unpatch(self):
        if self._patch is not None:
            self._patch.stop()
            self._patch = None

    def provenance_objects(self, filename):
        found = []
        for path, dirs, files in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.relpath(os.path.join(path, f), self.folder)
                      for f in files if f == filename + ".provenance"]
        return sorted(found)

    def close(self):
        self._unpatch()


class MemoryHarness(Harness):
    name = "memory"
    # Stores wait on the clock: concurrent ones interleave.
    yaml = "  mem: {type: memory, latency: 0.5}\n"

    @property
    def memory(self):
        return memory_backend.STORES[self.state_dir]

    def break_store(self):
        self.memory.failure = BackendError("the memory store is down")

    def repair(self):
        self.memory.failure = None

    def rate_limit(self, seconds):
        self.memory.failure = RateLimited(seconds)
        self.clock.callLater(seconds, self.repair)

    # A memory store writes a file and its provenance in one step: there is
    # no moment between them, so it fails before either.
    crash_leaves_provenance = False

    def crash_after_provenance(self):
        self.break_store()

    def provenance_objects(self, filename):
        return [filename] if filename in self.memory.provenance else []


class MemoryStreamHarness(MemoryHarness):
    name = "memory-stream"
    yaml = "  mem: {type: memory, latency: 0.5, downloads: stream}\n"


class Network(Resource):
    """
    The fake GitHub behind a network: each answer takes C{latency} on the
    clock (so concurrent requests interleave as they would), and while
    C{down}, every host answers 502. C{refuse}, a predicate of the request:
    those it matches are answered 502; C{trip}, one too: once a request it
    matches is answered, the network goes down.
    """

    isLeaf = True

    def __init__(self, behind, clock, latency=0.1):
        super().__init__()
        self.behind = behind
        self.clock = clock
        self.latency = latency
        self.down = False
        self.refuse = None
        self.trip = None

    def render(self, request):
        self.clock.callLater(self.latency, self._answer, request)
        return NOT_DONE_YET

    def _answer(self, request):
        if self.down or (self.refuse is not None and self.refuse(request)):
            request.setResponseCode(502)
            body = b"<html>Unicorn!</html>"
        else:
            body = self.behind.render(request)
            if body is NOT_DONE_YET:
                return
            if self.trip is not None and self.trip(request):
                self.trip, self.down = None, True
        request.write(body)
        request.finish()


class GitHubHarness(Harness):
    name = "github"
    downloads = "redirect"
    admin_secret = "gh: {raw: admin-tok}"

    def __init__(self, tmp_path):
        self.yaml = repository_yaml("http://api.github.test", name="gh",
                                    downloads=self.downloads)
        super().__init__(tmp_path)
        self.fake = FakeGitHub(clock=self.clock)
        self.fake.add_repo("acme", "pkgs", private=True)
        self.fake.add_token("admin-tok", "bot", {"acme/pkgs": "admin"})
        self.network = Network(self.fake, self.clock)
        self.http = StubHTTP(self.network)
        self._initialised = False

    def make(self):
        if not self._initialised:
            # What `ppypi github init` does once for a repository.
            backend = self.create()
            backend.prepare()
            self.run(backend.init())
            self._initialised = True
        return super().make()

    def fetch(self, url):
        response = self.run(self.http.get(url))
        body = self.run(response.content())
        assert response.code == 200, (response.code, body[:200])
        return body

    def break_store(self):
        self.network.down = True

    def repair(self):
        self.network.down = False
        self.network.refuse = self.network.trip = None

    def rate_limit(self, seconds):
        self.fake.exhaust_rate_limit("admin-tok", reset_in=seconds)

    def crash_after_provenance(self):
        # Down once the provenance asset is uploaded: the index is not written.
        self.network.trip = lambda request: (
            request.method == b"POST" and b".provenance" in request.uri)

    @property
    def repo(self):
        return self.fake.repo("acme/pkgs")

    def provenance_objects(self, filename):
        return sorted(a.id for a in self.repo.assets.values()
                      if a.name == filename + ".provenance")


class GitHubProxyHarness(GitHubHarness):
    name = "github-proxy"
    downloads = "proxy"


class S3Harness(Harness):
    """
    A fresh bucket on a real moto_server (signatures and the least IAM
    policy checked), reached through a loopback forwarder that breaks it,
    slows it down, and checks the presigned URLs moto cannot.
    """

    name = "s3"
    downloads = "redirect"
    fixtures = ("moto_server",)

    def __init__(self, tmp_path, moto_server):
        self.forwarder = Forwarder(moto_server.endpoint_url).start()
        self.bucket = self.forwarder.trust_bucket(moto_server.make_bucket())
        b = self.bucket
        self.yaml = (f"  st: {{type: s3, bucket: {b.bucket}, prefix: {b.prefix}, "
                     f"endpoint_url: '{b.endpoint_url}', region: {b.region}, "
                     f"addressing_style: path, downloads: {self.downloads}}}\n")
        self.admin_secret = (f"st: {{access_key_id: {b.access_key_id}, "
                             f"secret_access_key: {b.secret_access_key}}}")
        super().__init__(tmp_path)

    def create(self):
        backend = super().create()
        # One try per request: botocore's backoff sleeps in real time.
        backend.store_client.max_attempts = 1
        return backend

    def fetch(self, url):
        assert url.startswith(self.forwarder.endpoint_url + "/"), url
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read()

    def break_store(self):
        self.forwarder.refuse()

    def repair(self):
        self.forwarder.clear_faults()
        self.forwarder.accept()

    def rate_limit(self, seconds):
        self.forwarder.fail_next(count=10 ** 9)  # SlowDown, until the pause is over
        self.clock.callLater(seconds, self.forwarder.clear_faults)

    def crash_after_provenance(self):
        forwarder = self.forwarder

        def after_provenance(request):
            # Called with the forwarder's lock held: its records, read as they are.
            return any(r.method == "PUT" and r.key.endswith(".provenance")
                       for r in forwarder.requests)

        forwarder.fail_next(count=None, status=500, code="InternalError",
                            message="We encountered an internal error.", match=after_provenance)

    def provenance_objects(self, filename):
        # files/P/SHA/FILENAME.DIGEST.provenance: named by its own digest.
        return [key for key in self.bucket.keys()
                if re.search("/" + re.escape(filename) + r"\.[0-9a-f]{16}\.provenance$", key)]

    def close(self):
        self.forwarder.stop()


class S3ProxyHarness(S3Harness):
    name = "s3-proxy"
    downloads = "proxy"


HARNESSES = [FilesystemHarness, MemoryHarness, MemoryStreamHarness, GitHubHarness,
             GitHubProxyHarness, S3Harness, S3ProxyHarness]


@pytest.fixture(params=HARNESSES, ids=[h.name for h in HARNESSES])
def harness(request, tmp_path):
    fixtures = {name: request.getfixturevalue(name)
                for name in getattr(request.param, "fixtures", ())}
    made = request.param(tmp_path, **fixtures)
    yield made
    made.close()


@pytest.fixture
def backend(harness):
    return harness.make()


# -- what the tests store --------------------------------------------------------


def provenance_of(filename, sha256, repository="acme/tool"):
    """
    A PEP 740 provenance object for a file, shaped as a verified upload's
    (its statement's subject names the file and its sha256); backends keep
    it as opaque bytes, so its signature is none.
    """
    statement = {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": filename, "digest": {"sha256": sha256}}],
                 "predicateType": "https://docs.pypi.org/attestations/publish/v1",
                 "predicate": None}
    attestation = {"version": 1,
                   "verification_material": {"certificate": "", "transparency_entries": []},
                   "envelope": {"statement": base64.b64encode(json.dumps(statement).encode())
                                .decode(), "signature": ""}}
    return json.dumps({"version": 1, "attestation_bundles": [{
        "publisher": {"kind": "GitHub", "repository": repository, "workflow": "release.yml",
                      "environment": None},
        "attestations": [attestation]}]}, sort_keys=True).encode()


class Upload:
    """
    A wheel written to the backend's incoming folder, and checked as the
    server checks it; with C{attested_by} (a publisher's repository), its
    attestations were verified: C{checked.provenance} is its provenance.
    """

    def __init__(self, backend, version="1.0", payload=b"", requires_python=">=3.8",
                 attested_by=None):
        self.data = wheel_bytes("acme_tool", version, requires_python=requires_python,
                                payload=payload)
        self.filename = f"acme_tool-{version}-py3-none-any.whl"
        self.version = version
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        fd, path = tempfile.mkstemp(dir=backend.incoming_dir, prefix="upload-", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(self.data)
        self.upload = UploadedFile(self.filename, path, len(self.data), self.sha256,
                                   hashlib.md5(self.data).hexdigest(),
                                   hashlib.blake2b(self.data, digest_size=32).hexdigest())
        fields = {}
        for name, value in upload_fields(PROJECT, version, self.data):
            fields.setdefault(name, []).append(value)
        self.checked = check_upload(fields, self.upload)
        self.provenance = None
        if attested_by is not None:
            self.provenance = provenance_of(self.filename, self.sha256, attested_by)
            self.checked.provenance = self.provenance
        with zipfile.ZipFile(io.BytesIO(self.data)) as z:
            self.metadata = z.read(f"acme_tool-{version}.dist-info/METADATA")


def store(harness, backend, upload, **kwargs):
    """Store an upload; its incoming file is then discarded, as the web layer does."""
    try:
        return harness.run(backend.store(upload.upload, upload.checked, **kwargs))
    finally:
        with contextlib.suppress(OSError):  # a store made unreachable took it along
            upload.upload.discard()


def listed(harness, backend):
    """{filename: DistFile} of a listing, checking that no name is listed twice."""
    listing = harness.run(backend.list_files())
    assert isinstance(listing, Listing)
    names = [d.filename for d in listing.files]
    assert len(names) == len(set(names)), names
    return {d.filename: d for d in listing.files}


def obtain(harness, found):
    """The bytes a download gives (a L{LocalFile}: from its position on)."""
    if isinstance(found, LocalFile):
        try:
            return found.head + found.file.read()
        finally:
            found.file.close()
    if isinstance(found, Redirect):
        return harness.fetch(found.url)
    if isinstance(found, Stream):
        chunks = []
        harness.run(found.deliver(chunks.append))
        return b"".join(chunks)
    raise AssertionError(f"a download must be a LocalFile, Redirect or Stream, not {found!r}")


def downloaded(harness, backend, dist):
    return obtain(harness, harness.run(backend.download(dist)))


def provenance(harness, backend, dist):
    """What the backend reads as C{dist}'s provenance."""
    return harness.run(backend.read_provenance(dist))


def without_empty(yanks):
    """Yanks as the index reads them: a project without yanked versions is none."""
    return {project: versions for project, versions in yanks.items() if versions}


def assert_describes(dist, upload, before, after):
    assert dist.filename == upload.filename
    assert (dist.project, dist.version, dist.kind) == (PROJECT, upload.version, "bdist_wheel")
    assert dist.sha256 == upload.sha256
    assert dist.size == len(upload.data)
    assert dist.requires_python == ">=3.9"
    assert dist.core_metadata is True
    assert dist.metadata_sha256 == hashlib.sha256(upload.metadata).hexdigest()
    assert dist.summary == "bench package acme_tool"
    assert before - 1 <= dist.upload_time <= after + 1


# -- the interface ------------------------------------------------------------------


def test_is_a_backend(harness, backend):
    assert isinstance(backend, Backend)
    assert isinstance(backend.name, str) and backend.name == harness.config.name
    assert os.path.isdir(backend.incoming_dir)
    described = backend.describe()
    assert isinstance(described, str) and described
    assert "admin-tok" not in described
    status = backend.status()
    assert isinstance(status, dict) and "admin-tok" not in repr(status)
    # Not a token of its store: not known (and None from a store without tokens).
    assert harness.run(backend.permissions("not-a-token")) is None


def test_an_empty_store_lists_nothing(harness, backend):
    assert listed(harness, backend) == {}
    assert without_empty(harness.run(backend.load_yanks())) == {}
    assert harness.run(backend.load_held()) == set()


def test_stored_file_is_listed_with_its_fields(harness, backend):
    upload = Upload(backend, requires_python=">=3.9")
    before = time.time()
    stored = store(harness, backend, upload)
    after = time.time()
    assert isinstance(stored, Stored) and stored.status == "stored"
    assert_describes(stored.dist, upload, before, after)
    files = listed(harness, backend)
    assert list(files) == [upload.filename]
    assert_describes(files[upload.filename], upload, before, after)
    assert downloaded(harness, backend, files[upload.filename]) == upload.data
    # A restart lists it the same.
    again = listed(harness, harness.fresh())
    assert list(again) == [upload.filename]
    assert_describes(again[upload.filename], upload, before, after)


def test_the_same_file_again_is_same(harness, backend):
    first = Upload(backend)
    assert store(harness, backend, first).status == "stored"
    again = Upload(backend)
    stored = store(harness, backend, again)
    assert stored.status == "same"
    assert stored.dist.filename == first.filename and stored.dist.sha256 == first.sha256
    files = listed(harness, backend)
    assert list(files) == [first.filename] and files[first.filename].sha256 == first.sha256


def test_other_content_under_the_same_name_conflicts_and_the_first_stays(harness, backend):
    first = Upload(backend)
    store(harness, backend, first)
    other = Upload(backend, payload=b"# other content\n")
    assert other.filename == first.filename and other.sha256 != first.sha256
    with pytest.raises(Conflict):
        store(harness, backend, other)
    files = listed(harness, backend)
    assert list(files) == [first.filename]
    dist = files[first.filename]
    assert (dist.sha256, dist.size) == (first.sha256, len(first.data))
    assert downloaded(harness, backend, dist) == first.data


def test_overwrite_replaces_the_file(harness, backend):
    first = Upload(backend)
    store(harness, backend, first)
    old = listed(harness, backend)[first.filename]
    other = Upload(backend, payload=b"# the fixed build\n")
    stored = store(harness, backend, other, overwrite=True, replacing=old)
    assert stored.status == "stored" and stored.dist.sha256 == other.sha256
    files = listed(harness, backend)
    assert list(files) == [other.filename]
    dist = files[other.filename]
    assert (dist.sha256, dist.size) == (other.sha256, len(other.data))
    assert downloaded(harness, backend, dist) == other.data
    assert list(listed(harness, harness.fresh())) == [other.filename]


def test_delete(harness, backend):
    one, two = Upload(backend, "1.0"), Upload(backend, "2.0")
    store(harness, backend, one)
    store(harness, backend, two)
    files = listed(harness, backend)
    assert sorted(files) == sorted([one.filename, two.filename])
    harness.run(backend.delete(files[one.filename]))
    assert list(listed(harness, backend)) == [two.filename]
    with pytest.raises(FileMissing):
        harness.run(backend.download(files[one.filename]))
    # Deleting what is gone is no error, and deletes nothing else.
    harness.run(backend.delete(files[one.filename]))
    assert list(listed(harness, backend)) == [two.filename]
    assert list(listed(harness, harness.fresh())) == [two.filename]
    assert downloaded(harness, backend, files[two.filename]) == two.data


def test_read_metadata(harness, backend):
    upload = Upload(backend)
    store(harness, backend, upload)
    dist = listed(harness, backend)[upload.filename]
    assert upload.metadata.startswith(b"Metadata-Version: 2.1\nName: acme_tool\n")
    assert harness.run(backend.read_metadata(dist.metadata_sha256, dist)) == upload.metadata
    assert harness.run(backend.read_metadata(dist.metadata_sha256)) == upload.metadata
    assert harness.run(backend.read_metadata("0" * 64)) is None
    restarted = harness.fresh()
    assert harness.run(restarted.read_metadata(dist.metadata_sha256, dist)) == upload.metadata


@pytest.mark.parametrize("start, read", [(0, 0), (0, 100), (100, 1), (10, 1 << 20)])
def test_download_gives_the_files_bytes(harness, backend, start, read):
    upload = Upload(backend, payload=os.urandom(3000))
    store(harness, backend, upload)
    dist = listed(harness, backend)[upload.filename]
    found = harness.run(backend.download(dist, start, read))
    if isinstance(found, LocalFile):
        # Opened at start, with up to `read` bytes read already.
        assert found.head == upload.data[start:start + read]
        assert obtain(harness, found) == upload.data[start:]
    else:
        # The whole file (ranges are not offered then).
        assert obtain(harness, found) == upload.data


def test_yanks(harness, backend):
    for version in ("1.0", "2.0"):
        store(harness, backend, Upload(backend, version))
    yanks = harness.run(backend.set_yank(PROJECT, "1.0", "broken build"))
    assert without_empty(yanks) == {PROJECT: {"1.0": "broken build"}}
    # An empty reason is a yank all the same.
    yanks = harness.run(backend.set_yank(PROJECT, "2.0", ""))
    assert without_empty(yanks) == {PROJECT: {"1.0": "broken build", "2.0": ""}}
    assert without_empty(harness.run(backend.load_yanks())) == yanks
    yanks = harness.run(backend.set_yank(PROJECT, "1.0", None))
    assert without_empty(yanks) == {PROJECT: {"2.0": ""}}
    assert without_empty(harness.run(backend.load_yanks())) == {PROJECT: {"2.0": ""}}
    restarted = harness.fresh()
    assert without_empty(harness.run(restarted.load_yanks())) == {PROJECT: {"2.0": ""}}
    # Unyanking what is not yanked changes nothing.
    yanks = harness.run(restarted.set_yank(PROJECT, "1.0", None))
    assert without_empty(yanks) == {PROJECT: {"2.0": ""}}
    yanks = harness.run(restarted.set_yank(PROJECT, "2.0", None))
    assert without_empty(yanks) == {}
    assert without_empty(harness.run(harness.fresh().load_yanks())) == {}


def test_names_held(harness, backend):
    harness.run(backend.save_held({"acme-tool", "other-tool"}))
    assert harness.run(backend.load_held()) == {"acme-tool", "other-tool"}
    harness.run(backend.save_held({"acme-tool", "other-tool", "third"}))
    assert harness.run(backend.load_held()) == {"acme-tool", "other-tool", "third"}
    assert harness.run(harness.fresh().load_held()) == {"acme-tool", "other-tool", "third"}


def test_upload_tokens(harness, backend):
    assert harness.run(backend.load_tokens()) == {}
    record = {"id": "tok-1", "sha256": "ab" * 32, "projects": [PROJECT], "expires": None}

    def add(records):
        records["tok-1"] = record
        return "added"

    assert harness.run(backend.update_tokens(add)) == "added"
    assert harness.run(backend.load_tokens()) == {"tok-1": record}
    # Every instance on the store sees it (a restart, or another server).
    assert harness.run(harness.fresh().load_tokens()) == {"tok-1": record}

    def refuse(records):
        records.clear()
        raise ValueError("changed my mind")

    with pytest.raises(ValueError):
        harness.run(backend.update_tokens(refuse))
    assert harness.run(backend.load_tokens()) == {"tok-1": record}
    harness.run(backend.update_tokens(lambda records: records.pop("tok-1")))
    assert harness.run(harness.fresh().load_tokens()) == {}


def test_concurrent_stores_of_one_project_all_land(harness, backend):
    uploads = [Upload(backend, f"1.{i}") for i in range(6)]
    pending = [Deferred.fromCoroutine(backend.store(u.upload, u.checked)) for u in uploads]
    results = harness.run(gatherResults(pending, consumeErrors=True))
    assert [r.status for r in results] == ["stored"] * len(uploads)
    for check in (backend, harness.fresh()):
        files = listed(harness, check)
        assert sorted(files) == sorted(u.filename for u in uploads)
        for u in uploads:
            assert files[u.filename].sha256 == u.sha256
            assert downloaded(harness, check, files[u.filename]) == u.data


def test_prepare_deletes_what_an_interrupted_upload_left(harness, backend):
    upload = Upload(backend)
    store(harness, backend, upload)
    leftover = os.path.join(backend.incoming_dir, "upload-crashed.part")
    with open(leftover, "wb") as f:
        f.write(b"half a wheel")
    restarted = harness.create()
    assert restarted.prepare() == 1
    assert not os.path.exists(leftover)
    assert list(listed(harness, restarted)) == [upload.filename]


def test_an_unreachable_store_raises_backend_error_and_publishes_nothing(harness, backend):
    first = Upload(backend, "1.0")
    store(harness, backend, first)
    dist = listed(harness, backend)[first.filename]
    second = Upload(backend, "2.0")
    harness.break_store()
    with pytest.raises(BackendError):
        store(harness, backend, second)
    with pytest.raises(BackendError):
        harness.run(backend.list_files())
    # Down is not gone: never FileMissing (a 404 a resolver would believe).
    with pytest.raises(BackendError):
        harness.run(backend.download(dist))
    harness.repair()
    assert list(listed(harness, backend)) == [first.filename]
    assert list(listed(harness, harness.fresh())) == [first.filename]
    # Back: the same upload lands.
    again = Upload(backend, "2.0")
    assert store(harness, backend, again).status == "stored"
    assert sorted(listed(harness, backend)) == sorted([first.filename, again.filename])


def test_a_rate_limited_store_says_how_long_to_wait(harness, backend):
    harness.rate_limit(120)
    with pytest.raises(RateLimited) as raised:
        store(harness, backend, Upload(backend))
    assert 1 <= raised.value.retry_after <= 120
    assert isinstance(raised.value, BackendError)
    with pytest.raises(RateLimited):
        harness.run(backend.list_files())
    harness.clock.advance(121)
    assert listed(harness, backend) == {}
    upload = Upload(backend)
    assert store(harness, backend, upload).status == "stored"
    assert list(listed(harness, backend)) == [upload.filename]


# -- PEP 740 provenance ------------------------------------------------------------


def test_provenance_is_kept_beside_its_file(harness, backend):
    attested = Upload(backend, "1.0", attested_by="acme/tool")
    plain = Upload(backend, "2.0")
    stored = store(harness, backend, attested)
    assert stored.status == "stored" and stored.dist.provenance is True
    stored = store(harness, backend, plain)
    assert stored.status == "stored" and stored.dist.provenance is False
    # Listed as stored, and read back; the same from another instance on the
    # store (a restart, another server).
    for check in (backend, harness.fresh()):
        files = listed(harness, check)
        assert files[attested.filename].provenance is True
        assert files[plain.filename].provenance is False
        assert provenance(harness, check, files[attested.filename]) == attested.provenance
        assert provenance(harness, check, files[plain.filename]) is None
    assert len(harness.provenance_objects(attested.filename)) == 1
    assert harness.provenance_objects(plain.filename) == []


def test_delete_takes_the_provenance_along(harness, backend):
    one = Upload(backend, "1.0", attested_by="acme/tool")
    two = Upload(backend, "2.0", attested_by="acme/other")
    store(harness, backend, one)
    store(harness, backend, two)
    files = listed(harness, backend)
    harness.run(backend.delete(files[one.filename]))
    assert harness.provenance_objects(one.filename) == []
    assert provenance(harness, backend, files[one.filename]) is None
    for check in (backend, harness.fresh()):
        assert list(listed(harness, check)) == [two.filename]
        assert provenance(harness, check, files[two.filename]) == two.provenance
    # The same name again, without attestations: nothing of the old one shows.
    again = Upload(backend, "1.0")
    assert store(harness, backend, again).dist.provenance is False
    for check in (backend, harness.fresh()):
        dist = listed(harness, check)[one.filename]
        assert dist.provenance is False
        assert provenance(harness, check, dist) is None


def test_overwrite_replaces_the_provenance_or_drops_it(harness, backend):
    first = Upload(backend, attested_by="acme/tool")
    store(harness, backend, first)
    old = listed(harness, backend)[first.filename]
    second = Upload(backend, payload=b"# the fixed build\n", attested_by="acme/tool-ci")
    stored = store(harness, backend, second, overwrite=True, replacing=old)
    assert stored.status == "stored" and stored.dist.provenance is True
    for check in (backend, harness.fresh()):
        dist = listed(harness, check)[second.filename]
        assert (dist.sha256, dist.provenance) == (second.sha256, True)
        assert provenance(harness, check, dist) == second.provenance
    assert len(harness.provenance_objects(second.filename)) == 1
    # Stored again without attestations: the old provenance goes.
    old = listed(harness, backend)[second.filename]
    third = Upload(backend, payload=b"# built again, by hand\n")
    stored = store(harness, backend, third, overwrite=True, replacing=old)
    assert stored.status == "stored" and stored.dist.provenance is False
    for check in (backend, harness.fresh()):
        dist = listed(harness, check)[third.filename]
        assert (dist.sha256, dist.provenance) == (third.sha256, False)
        assert provenance(harness, check, dist) is None
    assert harness.provenance_objects(third.filename) == []


def test_the_same_bytes_stored_again_with_a_provenance_gain_it(harness, backend):
    # What the repository does when a file that is there without provenance
    # comes again with attestations that verify: stored again over itself.
    first = Upload(backend)
    store(harness, backend, first)
    old = listed(harness, backend)[first.filename]
    again = Upload(backend, attested_by="acme/tool")
    assert again.sha256 == first.sha256
    stored = store(harness, backend, again, overwrite=True, replacing=old)
    assert stored.status == "stored" and stored.dist.provenance is True
    for check in (backend, harness.fresh()):
        dist = listed(harness, check)[first.filename]
        assert (dist.sha256, dist.provenance) == (first.sha256, True)
        assert provenance(harness, check, dist) == again.provenance
        assert downloaded(harness, check, dist) == first.data
    assert len(harness.provenance_objects(first.filename)) == 1


@pytest.mark.parametrize("again_attested_by", [None, "acme/someone-else"])
def test_the_same_file_again_keeps_the_provenance_first_stored(harness, backend, request,
                                                               again_attested_by):
    # Another server, which has not seen the first upload yet (its index is
    # older): its store finds the file there only in the store itself.
    other = harness.make()
    first = Upload(backend, attested_by="acme/tool")
    store(harness, backend, first)
    again = Upload(other, attested_by=again_attested_by)
    stored = store(harness, other, again)
    assert stored.status == "same" and stored.dist.provenance is True
    for check in (backend, other, harness.fresh()):
        dist = listed(harness, check)[first.filename]
        assert dist.provenance is True
        assert provenance(harness, check, dist) == first.provenance


def test_the_same_file_again_with_attestations_adds_none_to_a_file_stored_without(
        harness, backend):
    first = Upload(backend)
    store(harness, backend, first)
    again = Upload(backend, attested_by="acme/tool")
    stored = store(harness, backend, again)
    assert stored.status == "same" and stored.dist.provenance is False
    for check in (backend, harness.fresh()):
        dist = listed(harness, check)[first.filename]
        assert dist.provenance is False
        assert provenance(harness, check, dist) is None


def test_a_crash_after_the_provenance_was_written_lists_nothing(harness, backend):
    upload = Upload(backend, attested_by="acme/tool")
    harness.crash_after_provenance()
    with pytest.raises(BackendError):
        store(harness, backend, upload)
    harness.repair()
    # It failed where it was meant to: the provenance is there, the file unlisted.
    assert len(harness.provenance_objects(upload.filename)) == harness.crash_leaves_provenance
    assert listed(harness, backend) == {}
    assert listed(harness, harness.fresh()) == {}


@pytest.mark.parametrize("later_attested_by", [None, "acme/tool-ci"])
def test_what_a_crashed_upload_left_never_goes_to_a_later_upload_of_the_file(
        harness, backend, later_attested_by):
    # The interface: a stored file has the provenance its upload carried, or
    # none; never one an upload that failed left behind.
    crashed = Upload(backend, attested_by="acme/tool")
    harness.crash_after_provenance()
    with pytest.raises(BackendError):
        store(harness, backend, crashed)
    harness.repair()
    assert len(harness.provenance_objects(crashed.filename)) == harness.crash_leaves_provenance
    restarted = harness.fresh()
    harness.settle()
    assert listed(harness, restarted) == {}
    later = Upload(restarted, attested_by=later_attested_by)
    assert later.sha256 == crashed.sha256  # the same file
    stored = store(harness, restarted, later)
    assert stored.status == "stored"
    assert stored.dist.provenance is (later_attested_by is not None)
    for check in (restarted, harness.fresh()):
        dist = listed(harness, check)[later.filename]
        assert dist.provenance is (later_attested_by is not None)
        assert provenance(harness, check, dist) == later.provenance


def test_a_store_that_is_down_keeps_no_provenance_either(harness, backend):
    upload = Upload(backend, attested_by="acme/tool")
    harness.break_store()
    with pytest.raises(BackendError):
        store(harness, backend, upload)
    harness.repair()
    assert listed(harness, backend) == {}
    assert listed(harness, harness.fresh()) == {}


# -- PEP 792 project statuses ------------------------------------------------------


def test_project_statuses(harness, backend):
    assert harness.run(backend.load_statuses()) == {}
    store(harness, backend, Upload(backend))
    harness.run(backend.set_yank(PROJECT, "1.0", "broken build"))
    statuses = harness.run(backend.set_status(PROJECT, "archived", "moved to acme-tool2"))
    assert statuses == {PROJECT: {"status": "archived", "reason": "moved to acme-tool2"}}
    # A project with no file may have one too; an empty reason is kept as "".
    statuses = harness.run(backend.set_status("other-tool", "deprecated", ""))
    assert statuses == {PROJECT: {"status": "archived", "reason": "moved to acme-tool2"},
                        "other-tool": {"status": "deprecated", "reason": ""}}
    assert harness.run(backend.load_statuses()) == statuses
    restarted = harness.fresh()
    assert harness.run(restarted.load_statuses()) == statuses
    # A status is kept beside the files and yanks, never instead of them.
    assert list(listed(harness, restarted)) == ["acme_tool-1.0-py3-none-any.whl"]
    assert without_empty(harness.run(restarted.load_yanks())) == {
        PROJECT: {"1.0": "broken build"}}
    # Active with a reason is a status to tell; active without one is none.
    statuses = harness.run(restarted.set_status(PROJECT, "active", "unarchived"))
    assert statuses[PROJECT] == {"status": "active", "reason": "unarchived"}
    statuses = harness.run(restarted.set_status(PROJECT, "active", ""))
    assert statuses == {"other-tool": {"status": "deprecated", "reason": ""}}
    statuses = harness.run(restarted.set_status("other-tool", "quarantined", "malware"))
    assert statuses == {"other-tool": {"status": "quarantined", "reason": "malware"}}
    for check in (restarted, harness.fresh()):
        assert harness.run(check.load_statuses()) == statuses
        assert list(listed(harness, check)) == ["acme_tool-1.0-py3-none-any.whl"]
    harness.run(restarted.set_status("other-tool", "active", None))
    assert harness.run(harness.fresh().load_statuses()) == {}


def test_a_status_set_on_one_server_is_seen_by_another_after_its_sync(harness, backend):
    other = harness.make()
    harness.run(backend.set_status(PROJECT, "deprecated", "use acme-tool2"))
    listed(harness, other)  # its sync
    assert harness.run(other.load_statuses()) == {
        PROJECT: {"status": "deprecated", "reason": "use acme-tool2"}}
    harness.run(other.set_status(PROJECT, "active", ""))
    listed(harness, backend)
    assert harness.run(backend.load_statuses()) == {}


def test_a_status_set_by_a_server_behind_keeps_what_another_stored(harness, backend):
    # The other server has not seen the upload when it sets the status: the
    # project's record is read again, never written back from its old copy.
    other = harness.make()
    upload = Upload(backend, attested_by="acme/tool")
    store(harness, backend, upload)
    harness.run(other.set_status(PROJECT, "archived", "done"))
    for check in (backend, other, harness.fresh()):
        files = listed(harness, check)
        assert list(files) == [upload.filename] and files[upload.filename].provenance
        assert harness.run(check.load_statuses()) == {
            PROJECT: {"status": "archived", "reason": "done"}}


# -- a whole server on the memory backend -------------------------------------------

ALICE = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode()
WHEEL = "acme_tool-1.0-py3-none-any.whl"


def memory_server(root, downloads):
    return InProcess(root, extra_index_url=None, config_text=f"""\
repositories:
  mem: {{type: memory, read: anyone, write: [alice], downloads: {downloads}}}
users:
  alice: {{password: "{ALICE}"}}
""")


@pytest.mark.parametrize("downloads", ["local", "stream"])
@pytest_twisted.ensureDeferred
async def test_a_whole_server_on_the_memory_backend(tmp_path, downloads):
    server = memory_server(tmp_path / "root", downloads)
    assert isinstance(server.repository.backend, memory_backend.MemoryBackend)
    await server.sync()
    data = wheel_bytes("acme_tool", "1.0")
    sha = hashlib.sha256(data).hexdigest()
    r, body = await server.upload(upload_fields(PROJECT, "1.0", data),
                                  [("content", WHEEL, data)], auth=("alice", "alice-pw"))
    assert r.code == 200, body
    assert os.listdir(server.repository.backend.incoming_dir) == []
    # Listed, at the top and under the repository's name.
    for path in ("/simple/acme-tool/", "/mem/simple/acme-tool/"):
        r, page = await server.get(path)
        assert r.code == 200, path
        assert f"{WHEEL}#sha256={sha}".encode() in page
        assert b'data-dist-info-metadata' in page or b'data-core-metadata' in page
    # Downloaded.
    r, got = await server.get(f"/packages/acme-tool/{WHEEL}")
    assert (r.code, got) == (200, data)
    r, got = await server.get(f"/packages/acme-tool/{WHEEL}", {"Range": "bytes=10-19"})
    if downloads == "local":
        assert (r.code, got) == (206, data[10:20])
    else:
        assert (r.code, got) == (200, data)  # a stream: the whole file
    # Its core metadata (PEP 658).
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        metadata = z.read("acme_tool-1.0.dist-info/METADATA")
    r, got = await server.get(f"/packages/acme-tool/{WHEEL}.metadata")
    assert (r.code, got) == (200, metadata)
    # Yanked, kept by the backend through a sync.
    r, body = await server.get("/yank/acme-tool/1.0", {
        "Authorization": basic("alice", "alice-pw"),
        "Content-Type": "application/x-www-form-urlencoded"}, method="POST",
        data=b"reason=bad+build")
    assert r.code == 200, body
    assert server.repository.backend.memory.yanks == {PROJECT: {"1.0": "bad build"}}
    await server.sync()
    r, page = await server.get("/simple/acme-tool/")
    assert b'data-yanked="bad build"' in page
    r, health = await server.get("/health")
    assert r.code == 200, health
    # A restart finds the store again.
    again = memory_server(tmp_path / "root", downloads)
    await again.sync()
    r, page = await again.get("/simple/acme-tool/")
    assert r.code == 200 and f"{WHEEL}#sha256={sha}".encode() in page
    assert b'data-yanked="bad build"' in page


@pytest_twisted.ensureDeferred
async def test_a_memory_store_that_is_down_gives_503_never_a_redirect(tmp_path):
    server = InProcess(tmp_path / "root", extra_index_url="https://pypi.example/simple/",
                       config_text=f"""\
repositories:
  mem: {{type: memory, read: anyone, write: [alice]}}
users:
  alice: {{password: "{ALICE}"}}
""")
    await server.sync()
    data = wheel_bytes("acme_tool", "1.0")
    r, _ = await server.upload(upload_fields(PROJECT, "1.0", data), [("content", WHEEL, data)],
                               auth=("alice", "alice-pw"))
    assert r.code == 200
    server.repository.backend.memory.failure = BackendError("down")
    assert await server.repository.sync() is False
    r, _ = await server.get("/simple/requests/")
    assert r.code == 503 and r.headers.getRawHeaders("Retry-After")
    r, _ = await server.get(f"/packages/acme-tool/{WHEEL}")
    assert r.code == 503
    data2 = wheel_bytes("acme_tool", "2.0")
    r, _ = await server.upload(upload_fields(PROJECT, "2.0", data2),
                               [("content", "acme_tool-2.0-py3-none-any.whl", data2)],
                               auth=("alice", "alice-pw"))
    assert r.code == 503
    server.repository.backend.memory.failure = None
    assert await server.repository.sync() is True
    r, _ = await server.get("/simple/requests/")
    assert r.code == 302
