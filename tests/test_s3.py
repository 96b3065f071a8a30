"""
What the s3 backend promises beyond the conformance suite, against a real
moto_server (tests/s3_server.py) through a loopback forwarder that counts
requests and injects faults: several servers on one bucket, the cost of a
sync and of an upload, crash leftovers, multipart uploads, stable presigned
URLs, failures named in the log without secrets, backpressure.
"""

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, DeferredList

from ppypi.backends import registry
from ppypi.backends.interface import BackendError, FileMissing, Redirect, Stream
from ppypi.backends.s3 import client as s3_client
from ppypi.backends.s3 import documents as s3_documents
from ppypi.config import load_admin_secret, load_config

from .s3_server import moto_server, s3_bucket, s3_forwarder  # noqa: F401 (fixtures)
from .test_backend_conformance import PROJECT, S3Harness, Upload, listed, store


def server_yaml(bucket, downloads="redirect"):
    return (f"  st: {{type: s3, bucket: {bucket.bucket}, prefix: {bucket.prefix}, "
            f"endpoint_url: '{bucket.endpoint_url}', region: {bucket.region}, "
            f"addressing_style: path, downloads: {downloads}}}\n")


class Servers(S3Harness):
    """Several servers (each its own ROOT) on one bucket, in process."""

    def __init__(self, tmp_path, moto_server, downloads="redirect"):
        self.downloads = downloads
        super().__init__(tmp_path, moto_server)

    def server(self, n, run_in_thread=None, clock=None):
        root = os.path.join(self.root, f"server-{n}")
        config = load_config("repositories:\n" + self.yaml, root, is_text=True)
        load_admin_secret(self.admin_secret, config, is_text=True)
        rc, = config.repositories
        backend = registry.create(registry.BackendContext(
            config=rc, state_dir=os.path.join(root, "state"),
            run_in_thread=run_in_thread or (lambda f, *a, **k: _now(f, *a, **k)),
            clock=clock or self.clock, http=None, others=[], on_retry=None))
        backend.store_client.max_attempts = 1
        backend.prepare()
        return backend


def _now(f, *args, **kwargs):
    from twisted.internet.defer import maybeDeferred
    return maybeDeferred(f, *args, **kwargs)


@pytest.fixture
def servers(tmp_path, moto_server):
    made = Servers(tmp_path, moto_server)
    yield made
    made.close()


# -- costs ---------------------------------------------------------------------------


def test_an_idle_sync_is_one_conditional_get_whatever_the_number_of_projects(servers):
    one = servers.server(1)
    servers.run(one.list_files())
    for i in range(12):
        u = Upload(one, f"1.{i}")
        store(servers, one, u)
    fw = servers.forwarder
    two = servers.server(2)
    servers.run(two.list_files())
    fw.reset()
    for _ in range(5):
        servers.run(two.list_files())
    assert fw.count() == 5
    assert fw.count("GET", r"/pypi/index\.json$") == 5
    # And a fresh server's first sync costs the root, one listing of index/
    # and one document per project (one project here).
    fw.reset()
    three = servers.server(3)
    assert len(listed(servers, three)) == 12
    assert fw.count() == 3, [(r.method, r.path) for r in fw.requests]


def test_an_upload_costs_six_requests_and_a_changed_sync_fetches_only_what_changed(servers):
    one, two = servers.server(1), servers.server(2)
    servers.run(one.list_files())
    servers.run(two.list_files())
    fw = servers.forwarder
    # Another project, so that the sync below has one it must not fetch.
    other = Upload(one, "1.0")
    store(servers, one, other)
    servers.run(two.list_files())
    fw.reset()
    u = Upload(one, "2.0")
    assert store(servers, one, u).status == "stored"
    assert fw.count() == 6, [(r.method, r.path) for r in fw.requests]
    assert fw.count("PUT") == 4 and fw.count("GET") == 2
    fw.reset()
    files = listed(servers, two)
    assert u.filename in files
    # The root, then the one document that changed.
    assert [(r.method, r.path.rsplit("/", 2)[-2:]) for r in fw.requests] == [
        ("GET", ["pypi", "index.json"]), ("GET", ["index", f"{PROJECT}.json"])]


# -- several servers ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_concurrent_uploads_from_three_servers_all_land(servers):
    """Real threads, the real reactor: the compare-and-swaps really race."""

    def run(f, *args, **kwargs):
        return threads.deferToThread(f, *args, **kwargs)

    backends = [servers.server(n, run_in_thread=run, clock=reactor) for n in range(3)]
    for b in backends:
        await b.list_files()
    uploads = [(b, Upload(b, f"3.{i}.{n}")) for n, b in enumerate(backends) for i in range(4)]
    results = await DeferredList(
        [Deferred.fromCoroutine(b.store(u.upload, u.checked)) for b, u in uploads],
        consumeErrors=True)
    assert all(ok for ok, _ in results), [r for ok, r in results if not ok]
    assert [r.status for _, r in results] == ["stored"] * len(uploads)
    fresh = servers.server(9, run_in_thread=run, clock=reactor)
    files = {d.filename: d for d in (await fresh.list_files()).files}
    assert sorted(files) == sorted(u.filename for _, u in uploads)
    for _, u in uploads:
        assert files[u.filename].sha256 == u.sha256
    root = json.loads(servers.bucket.read("pypi/index.json"))
    doc = json.loads(servers.bucket.read(f"pypi/index/{PROJECT}.json"))
    # Every write raised the serial once; the root holds the last one.
    assert doc["serial"] == len(uploads) == root["projects"][PROJECT]


def test_a_yank_and_a_held_name_reach_a_server_with_an_empty_root(servers):
    one = servers.server(1)
    servers.run(one.list_files())
    store(servers, one, Upload(one, "1.0"))
    servers.run(one.set_yank(PROJECT, "1.0", "broken"))
    servers.run(one.save_held({PROJECT, "acme-private"}))
    # A project whose every file was deleted is still held.
    servers.run(one.delete(listed(servers, one)["acme_tool-1.0-py3-none-any.whl"]))
    fresh = servers.server(2)
    assert servers.run(fresh.load_held()) == {PROJECT, "acme-private"}
    assert listed(servers, fresh) == {}
    assert servers.run(fresh.load_yanks()) == {PROJECT: {"1.0": "broken"}}


def test_a_root_left_behind_by_a_crash_is_repaired(servers):
    one = servers.server(1)
    servers.run(one.list_files())
    store(servers, one, Upload(one, "1.0"))
    two = servers.server(2)
    assert len(listed(servers, two)) == 1
    # A server died after writing a project's document, before the root.
    doc = json.loads(servers.bucket.read(f"pypi/index/{PROJECT}.json"))
    entry = dict(doc["files"]["acme_tool-1.0-py3-none-any.whl"])
    doc["files"]["acme_tool-9.0-py3-none-any.whl"] = entry
    doc["serial"] += 1
    servers.bucket.write_object(f"pypi/index/{PROJECT}.json", json.dumps(doc).encode())
    # The root did not change: an idle sync does not see it...
    assert len(listed(servers, two)) == 1
    # ...the reconciliation does (at start, and every RECONCILE_INTERVAL), and repairs the root.
    servers.clock.advance(s3_documents.RECONCILE_INTERVAL)
    assert len(listed(servers, two)) == 2
    root = json.loads(servers.bucket.read("pypi/index.json"))
    assert root["projects"][PROJECT] == doc["serial"]
    assert len(listed(servers, servers.server(3))) == 2


# -- what crashes leave ------------------------------------------------------------------


def test_cleanup_deletes_objects_no_index_names_once_they_are_old(servers, monkeypatch):
    one = servers.server(1)
    one.writable = True
    servers.run(one.list_files())
    kept = Upload(one, "1.0")
    store(servers, one, kept)
    orphan = "pypi/files/acme-tool/" + "0" * 64 + "/acme_tool-2.0-py3-none-any.whl"
    servers.bucket.write_object(orphan, b"half an upload's object")
    admin = servers.bucket.admin()
    started = admin.create_multipart_upload(Bucket=servers.bucket.bucket,
                                            Key="pypi/files/acme-tool/x/big.whl")
    # Young: another server may still be indexing it.
    assert servers.run(one.cleanup()) == 0
    assert orphan in servers.bucket.keys()
    # Old enough (grace 0 here): gone, and the unfinished upload aborted.
    assert servers.run(one.cleanup(grace=-5)) == 2
    keys = servers.bucket.keys()
    assert orphan not in keys
    assert servers.bucket.uploads() == []
    assert any(k.endswith(kept.filename) for k in keys)
    assert listed(servers, one)[kept.filename].sha256 == kept.sha256
    assert started["UploadId"]


def test_a_failed_index_write_leaves_nothing_listed_and_asks_for_a_cleanup(servers):
    one = servers.server(1)
    servers.run(one.list_files())
    fw = servers.forwarder
    fw.fail_next(count=100, status=500, code="InternalError",
                 path=r"/pypi/index/", method="PUT")
    u = Upload(one, "1.0")
    with pytest.raises(BackendError) as raised:
        store(servers, one, u)
    assert "InternalError" in str(raised.value)
    fw.clear_faults()
    assert listed(servers, one) == {}
    assert listed(servers, servers.server(2)) == {}
    assert one.needs_cleanup


def test_large_files_go_in_parts(servers, monkeypatch):
    monkeypatch.setattr(s3_client, "MULTIPART_THRESHOLD", 5 << 20)
    monkeypatch.setattr(s3_client, "PART_SIZE", 5 << 20)  # S3's smallest part
    one = servers.server(1)
    servers.run(one.list_files())
    u = Upload(one, "1.0", payload=os.urandom(11 << 20))
    assert len(u.data) > 10 << 20
    fw = servers.forwarder
    fw.reset()
    assert store(servers, one, u).status == "stored"
    sent = [(r.method, sorted(r.params)) for r in fw.requests if r.path.endswith(".whl")]
    assert sent == [("POST", ["uploads"])] + [("PUT", ["partNumber", "uploadId"])] * 3 + [
        ("POST", ["uploadId"])], sent
    dist = listed(servers, servers.server(2))[u.filename]
    found = servers.run(one.download(dist))
    assert hashlib.sha256(servers.fetch(found.url)).hexdigest() == u.sha256
    assert servers.bucket.uploads() == []


# -- downloads ------------------------------------------------------------------------


def test_presigned_urls_are_stable_across_servers_and_expire(servers):
    one, two = servers.server(1), servers.server(2)
    servers.run(one.list_files())
    u = Upload(one, "1.0")
    store(servers, one, u)
    dist = listed(servers, two)[u.filename]
    first = servers.run(one.download(dist))
    again = servers.run(one.download(dist))
    other = servers.run(two.download(dist))
    assert isinstance(first, Redirect)
    # The same URL from either server: pip's HTTP cache keeps hitting.
    assert first.url == again.url == other.url
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(first.url).query)
    assert query["X-Amz-Expires"] == [str(2 * s3_client.URL_WINDOW)]
    assert query["X-Amz-Date"][0].endswith("0000Z")  # the start of an hour
    assert servers.fetch(first.url) == u.data
    # The forwarder checks what moto cannot: a tampered or expired URL is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        servers.fetch(first.url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert refused.value.code == 403
    servers.forwarder.clock = lambda: 1e10
    with pytest.raises(urllib.error.HTTPError) as refused:
        servers.fetch(first.url)
    assert refused.value.code == 403


def test_proxy_downloads_read_one_chunk_ahead_of_a_slow_client(tmp_path, moto_server):
    proxy = Servers(tmp_path, moto_server, downloads="proxy")
    try:
        one = proxy.server(1)
        proxy.run(one.list_files())
        u = Upload(one, "1.0", payload=os.urandom(1 << 20))
        store(proxy, one, u)
        dist = listed(proxy, one)[u.filename]
        found = proxy.run(one.download(dist))
        assert isinstance(found, Stream)
        written = []
        waiting = []

        def slow(chunk):
            written.append(chunk)
            waiting.append(Deferred())
            return waiting[-1]

        done = Deferred.fromCoroutine(found.deliver(slow))
        # The client has not taken the first chunk: nothing more is read.
        assert len(written) == 1 and not done.called
        waiting[-1].callback(True)
        assert len(written) == 2
        waiting[-1].callback(False)  # the client has gone: reading stops
        assert done.called and len(written) == 2
        missing = dist.__class__(dist.filename, dist.project, dist.version, dist.kind,
                                 "1" * 64, dist.size, dist.mtime_ns, location=dist.location)
        with pytest.raises(FileMissing):
            proxy.run(one.download(missing))
    finally:
        proxy.close()


# -- failures ------------------------------------------------------------------------


def test_a_wrong_key_is_named_with_the_stores_code_never_the_secret(tmp_path, moto_server):
    bad = Servers(tmp_path, moto_server)
    try:
        secret = bad.bucket.secret_access_key
        bad.admin_secret = bad.admin_secret.replace(secret, "wrong" + secret[5:])
        one = bad.server(1)
        with pytest.raises(BackendError) as raised:
            bad.run(one.list_files())
        assert "SignatureDoesNotMatch" in str(raised.value)
        assert secret[5:] not in str(raised.value)
        assert "st" == one.name and "s3://" in one.describe()
    finally:
        bad.close()


def test_slow_down_is_rate_limited_and_recovers(servers):
    one = servers.server(1)
    servers.run(one.list_files())
    store(servers, one, Upload(one, "1.0"))
    dist = listed(servers, one)["acme_tool-1.0-py3-none-any.whl"]
    servers.forwarder.fail_next(count=10 ** 6)
    with pytest.raises(BackendError) as raised:
        servers.run(one.list_files())
    assert raised.value.retry_after and "SlowDown" in str(raised.value)
    # No redirect into a store that says slow down.
    with pytest.raises(BackendError):
        servers.run(one.download(dist))
    servers.forwarder.clear_faults()
    assert len(listed(servers, one)) == 1
    assert isinstance(servers.run(one.download(dist)), Redirect)


# -- moving up: ppypi copy --------------------------------------------------------------


def test_ppypi_copy_a_folder_into_the_bucket_and_back(tmp_path, s3_forwarder):
    """How a team moves up: every file and yank of a folder into S3, resumable."""
    import subprocess

    from .conftest import BIN
    from .helpers import wheel_bytes

    b = s3_forwarder.bucket
    root = tmp_path / "root"
    (root / "pkgs" / "acme-tool").mkdir(parents=True)
    wheels = {}
    for version in ("1.0", "1.1", "2.0"):
        name = f"acme_tool-{version}-py3-none-any.whl"
        wheels[name] = wheel_bytes("acme_tool", version)
        (root / "pkgs" / "acme-tool" / name).write_bytes(wheels[name])
    (root / ".ppypi" / "repositories" / "local").mkdir(parents=True)
    (root / ".ppypi" / "repositories" / "local" / "yanked.json").write_text(
        json.dumps({PROJECT: {"1.1": "broken"}}))
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  local: {type: filesystem, path: pkgs}\n"
                      + server_yaml(b).replace("  st:", "  store:")
                      + "  back: {type: filesystem, path: back}\n")
    secret = tmp_path / "secret.yaml"
    secret.write_text(f"store: {{access_key_id: {b.access_key_id}, "
                      f"secret_access_key: {b.secret_access_key}}}\n")

    def ppypi_copy(source, dest):
        return subprocess.run([os.path.join(BIN, "ppypi"), "copy", "--root", str(root),
                               "--config", str(config), "--admin-secret", str(secret),
                               source, dest], capture_output=True, text=True, timeout=120)

    # Interrupted: the store refuses the second file's write; a run again resumes.
    s3_forwarder.fail_next(count=10 ** 6, status=500, code="InternalError", method="PUT",
                           match=lambda q: "1.1" in q.path and q.path.endswith(".whl"))
    first = ppypi_copy("local", "store")
    assert first.returncode == 1, first.stdout + first.stderr
    s3_forwarder.clear_faults()
    second = ppypi_copy("local", "store")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.startswith("1 copied") or second.stdout.startswith("2 copied"), \
        second.stdout
    again = ppypi_copy("local", "store")
    assert again.returncode == 0 and again.stdout.startswith("0 copied"), again.stdout
    doc = json.loads(b.read(f"pypi/index/{PROJECT}.json"))
    assert sorted(doc["files"]) == sorted(wheels)
    assert doc["yanked"] == {"1.1": "broken"}
    for name, data in wheels.items():
        assert doc["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    # And out again, through presigned URLs the forwarder checks.
    out = ppypi_copy("store", "back")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(os.listdir(root / "back" / "acme-tool")) == sorted(wheels)
    for name, data in wheels.items():
        assert (root / "back" / "acme-tool" / name).read_bytes() == data


def test_a_conflicting_write_in_flight_is_tried_again(servers):
    """S3 answers 409 ConditionalRequestConflict when another write of the key is in flight."""
    one = servers.server(1)
    servers.run(one.list_files())
    fw = servers.forwarder
    fw.fail_next(count=1, status=409, code="ConditionalRequestConflict", method="PUT",
                 path=r"\.whl$")
    fw.fail_next(count=1, status=409, code="ConditionalRequestConflict", method="PUT",
                 path=r"/pypi/index/")
    u = Upload(one, "1.0")
    assert store(servers, one, u).status == "stored"
    assert fw.count("PUT", r"\.whl$") == 2 and fw.count("PUT", r"/pypi/index/") == 2
    assert listed(servers, servers.server(2))[u.filename].sha256 == u.sha256
    # A file whose every write conflicts is not published.
    fw.fail_next(count=10, status=409, code="ConditionalRequestConflict", method="PUT",
                 path=r"\.whl$")
    with pytest.raises(BackendError):
        store(servers, one, Upload(one, "2.0"))
    assert list(listed(servers, servers.server(3))) == [u.filename]


def test_botocore_tries_again_after_a_5xx_and_the_retry_is_counted(servers):
    one = servers.server(1)
    one.store_client.max_attempts = 4  # the daemon's default
    retries = []
    one.store_client._on_retry = lambda: retries.append(1)
    servers.run(one.list_files())
    servers.forwarder.fail_next(count=2, status=503, code="SlowDown", method="PUT")
    u = Upload(one, "1.0")
    assert store(servers, one, u).status == "stored"
    assert len(retries) == 2
    assert servers.forwarder.count(fault="SlowDown") == 2


def test_tokens_cost_an_idle_sync_nothing_and_travel_between_servers(servers):
    from ppypi.tokens import TokenBook
    one, two = servers.server(1), servers.server(2)
    for b in (one, two):
        servers.run(b.list_files())
    book_one, book_two = TokenBook(one), TokenBook(two)
    token, record = servers.run(book_one.create({PROJECT}, description="ci"))
    fw = servers.forwarder
    # The other server's sync sees the root changed, and reads the tokens once.
    servers.run(two.list_files())
    fw.reset()
    servers.run(book_two.refresh())
    assert book_two.check(token)["id"] == record["id"]
    assert fw.count("GET", r"tokens\.json") == 1
    # Then a sync and a refresh cost the root's 304 alone.
    fw.reset()
    servers.run(two.list_files())
    servers.run(book_two.refresh())
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in fw.requests] == [("GET", "index.json")]
    # A revocation travels the same way.
    servers.run(book_one.revoke(record["id"]))
    servers.run(two.list_files())
    servers.run(book_two.refresh())
    assert book_two.check(token) is None
    # The tokens' entry in the root is no project.
    assert servers.run(servers.server(3).load_held()) == set()
