"""
The s3 backend end to end: three real daemons on one bucket of a real
moto_server (SigV4 and the least IAM policy checked), reached through the
loopback forwarder of tests/s3_server.py, driven by twine, pip and uv.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request

import bcrypt
import pytest

from .conftest import BIN, client_env, get, make_corpus, wait_for
from .helpers import basic, multipart_body, upload_fields, wheel_bytes
from .s3_server import moto_server, s3_bucket, s3_forwarder  # noqa: F401 (fixtures)

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
CI_PASSWORD = "ci-password"
CI_HASH = bcrypt.hashpw(CI_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
# Names no server holds go here: nothing listens, and a 302 says where.
EXTRA = "http://127.0.0.1:9/simple/"


class Fleet:
    """Daemons on one bucket, each with its own ROOT."""

    def __init__(self, tmp_path, daemon_factory, forwarder, downloads="redirect"):
        self.tmp_path = tmp_path
        self.factory = daemon_factory
        self.forwarder = forwarder
        self.bucket = forwarder.bucket
        b = self.bucket
        self.config = tmp_path / "ppypi.yaml"
        self.config.write_text(f"""\
repositories:
  store:
    type: s3
    bucket: {b.bucket}
    prefix: {b.prefix}
    endpoint_url: {b.endpoint_url}
    region: {b.region}
    addressing_style: path
    downloads: {downloads}
    read: anyone
    write: [ci]
    sync_interval: 0.5
users:
  ci: {{password: "{CI_HASH}"}}
""")
        self.secret = tmp_path / "secret.yaml"
        self.secret.write_text(f"store: {{access_key_id: {b.access_key_id}, "
                               f"secret_access_key: {b.secret_access_key}}}\n")

    def start(self, name, secret=None, wait_ready=True, env=None):
        secret = [] if secret is False else ["--admin-secret", str(secret or self.secret)]
        return self.factory(self.tmp_path / name, "--config", str(self.config), *secret,
                            "--extra-index-url", EXTRA, wait_ready=wait_ready, env=env)


@pytest.fixture
def fleet(tmp_path, daemon_factory, s3_forwarder):
    return Fleet(tmp_path, daemon_factory, s3_forwarder)


def listed(daemon, project):
    """{filename: sha256} of a project's page on a daemon ({} if it has none)."""
    status, _, body = get(daemon.url + f"simple/{project}/", {"Accept": JSON_SIMPLE})
    if status != 200:
        return {}
    return {f["filename"]: f["hashes"]["sha256"] for f in json.loads(body)["files"]}


def twine(daemon, *files):
    return subprocess.run([os.path.join(BIN, "twine"), "upload", "--non-interactive",
                           "--disable-progress-bar", "--repository-url", daemon.url,
                           "-u", "ci", "-p", CI_PASSWORD, *map(str, files)],
                          capture_output=True, text=True, env=client_env(), timeout=300)


def post(daemon, dist, version, data, timeout=300):
    ctype, body = multipart_body(upload_fields(dist.replace("_", "-"), version, data),
                                 [("content", f"{dist}-{version}-py3-none-any.whl", data)])
    req = urllib.request.Request(daemon.url, data=body, method="POST", headers={
        "Content-Type": ctype, "Authorization": basic("ci", CI_PASSWORD)})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:  # the server went away mid-upload
        return e


def test_three_servers_one_bucket(fleet, tmp_path):
    servers = [fleet.start(f"root{n}") for n in range(3)]
    dist = tmp_path / "dist"
    make_corpus(dist, projects=1, versions=9)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 9
    digests = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}
    project = re.match(r"(.+?)-\d", wheels[0].name).group(1).replace("_", "-")
    # Three twine processes at once, one per server, versions of one project.
    results = [None] * 3

    def upload(n):
        results[n] = twine(servers[n], *wheels[n::3])

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
    # Every server lists every file, with its sha256, within a few syncs.
    for server in servers:
        wait_for(lambda: listed(server, project) == digests, timeout=30,
                 what="every upload on every server")
    # Each file written once (content-addressed keys), named once by the index.
    keys = fleet.bucket.keys("pypi/files/")
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(digests)
    # pip and uv install through other servers than the one that took the upload,
    # following presigned URLs that the forwarder checks.
    first = wheels[0].name
    version = first.split("-")[1]
    subprocess.run([sys.executable, "-m", "venv", tmp_path / "venv"], check=True, timeout=120)
    r = subprocess.run([tmp_path / "venv" / "bin" / "pip", "install", "--no-cache-dir",
                        "--index-url", servers[1].url + "simple/", f"{project}=={version}"],
                       capture_output=True, text=True, env=client_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([os.path.join(BIN, "uv"), "pip", "install", "--no-cache",
                        "--python", str(tmp_path / "venv" / "bin" / "python"),
                        "--index-url", servers[2].url + "simple/", f"{project}=={version}",
                        "--reinstall"],
                       capture_output=True, text=True, env=client_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    presigned = [q for q in fleet.forwarder.requests if q.presigned]
    assert presigned and all(q.status == 200 for q in presigned), presigned
    # The same presigned URL from every server (pip's HTTP cache keeps hitting).
    locations = set()
    for server in servers:
        status, headers, _ = get(server.url + f"packages/{project}/{first}")
        assert status == 302
        locations.add(headers["Location"])
    assert len(locations) == 1
    # A yank through one server is seen by the others.
    status, _, _ = get(servers[0].url + f"yank/{project}/{version}", {
        "Authorization": basic("ci", CI_PASSWORD)}, method="POST")
    assert status == 200
    for server in servers[1:]:
        wait_for(lambda: b"data-yanked" in get(server.url + f"simple/{project}/")[2],
                 timeout=30, what="the yank on another server")
    # A name held is never redirected by another server, even one that
    # restarts with an empty ROOT; a name nobody holds is.
    assert get(servers[1].url + "simple/nobody-holds-this/")[0] == 302
    servers[2].stop()
    shutil.rmtree(servers[2].root)
    again = fleet.start("root2")
    assert listed(again, project) == digests
    status, _, page = get(again.url + f"simple/{project}/")
    assert status == 200 and b"data-yanked" in page
    for server in servers[:2]:
        assert CI_PASSWORD not in server.log()
        assert fleet.bucket.secret_access_key not in server.log()


def test_sigkill_mid_upload_lists_nothing(fleet, tmp_path):
    one = fleet.start("one")
    data = wheel_bytes("big_tool", "1.0", payload=os.urandom(70 << 20))
    fw = fleet.forwarder
    # Hold the second part of the multipart upload: the daemon is mid-upload.
    fw.stall(method="PUT", match=lambda q: q.params.get("partNumber") == ["2"])
    outcome = []
    sender = threading.Thread(target=lambda: outcome.append(post(one, "big_tool", "1.0", data)))
    sender.start()
    wait_for(lambda: fw.held >= 1, timeout=120, what="the upload to reach the store")
    one.stop(signal.SIGKILL)
    fw.release()
    sender.join(60)
    assert outcome != [200]
    # No server lists it; no index document names it.
    other = fleet.start("other")
    assert listed(other, "big-tool") == {}
    keys = fleet.bucket.keys()
    assert not any(k.startswith("pypi/index/big-tool") for k in keys), keys
    # What it left (an unfinished multipart upload) is no file anyone can see.
    assert not any(k.endswith("big_tool-1.0-py3-none-any.whl") for k in keys), keys
    # The same upload through the other server lands.
    assert post(other, "big_tool", "1.0", data) == 200
    wait_for(lambda: listed(other, "big-tool"), timeout=30, what="the upload listed")


def test_store_faults_give_503_and_pages_keep_being_served(fleet):
    one = fleet.start("one")
    data = wheel_bytes("acme_tool", "1.0")
    assert post(one, "acme_tool", "1.0", data) == 200
    wait_for(lambda: listed(one, "acme-tool"), timeout=30, what="the upload listed")
    fw = fleet.forwarder
    for fault in ("slowdown", "refused"):
        if fault == "slowdown":
            fw.fail_next(count=10 ** 6)
        else:
            fw.refuse()

        def failing():
            status, _, body = get(one.url + "health")
            return status == 503 and json.loads(body)

        health = wait_for(failing, timeout=60, what=f"/health to say 503 ({fault})")
        store = health["repositories"]["store"]
        assert store["ok"] is False
        if fault == "slowdown":
            assert "SlowDown" in store["error"] and "store" in json.dumps(health)
        # Pages from the local index; nothing falls through to the extra index.
        assert listed(one, "acme-tool")
        status, headers, _ = get(one.url + "simple/not-here/")
        assert status == 503 and headers["Retry-After"]
        status, headers, _ = get(one.url + "packages/acme-tool/acme_tool-1.0-py3-none-any.whl")
        assert status == 503 and headers["Retry-After"]
        assert post(one, "acme_tool", "2.0", wheel_bytes("acme_tool", "2.0")) == 503
        if fault == "slowdown":
            fw.clear_faults()
        else:
            fw.accept()
        wait_for(lambda: get(one.url + "health")[0] == 200, timeout=60,
                 what="/health to recover")
    assert get(one.url + "simple/not-here/")[0] == 302
    # A store that stalls (syncs hang on it): pages are served all the same.
    fw.stall()
    wait_for(lambda: fw.held >= 1, timeout=30, what="a sync to hang on the store")
    status, _, page = get(one.url + "simple/acme-tool/")
    assert status == 200 and b"acme_tool-1.0" in page
    fw.release()


def test_a_wrong_key_is_named_in_health_and_the_log(fleet, tmp_path):
    b = fleet.bucket
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(f"store: {{access_key_id: {b.access_key_id}, "
                     f"secret_access_key: WRONG{b.secret_access_key[5:]}}}\n")
    one = fleet.start("one", secret=wrong, wait_ready=False)
    def failed():
        status, _, body = get(one.url + "health")
        return status == 503 and json.loads(body)["repositories"]["store"]["error"]

    error = wait_for(failed, timeout=60, what="/health to name the failure")
    assert "SignatureDoesNotMatch" in error
    log = one.log_when("SignatureDoesNotMatch")
    assert "store" in log
    assert b.secret_access_key[5:] not in log and b.secret_access_key[5:] not in error


def test_idle_syncs_cost_one_request_each(fleet):
    one = fleet.start("one")
    assert post(one, "acme_tool", "1.0", wheel_bytes("acme_tool", "1.0")) == 200
    fw = fleet.forwarder
    wait_for(lambda: listed(one, "acme-tool"), timeout=30, what="the upload listed")
    def last_sync():
        return json.loads(get(one.url + "health")[2])["repositories"]["store"]["last_sync"]

    # The sync after the upload saves the new name held; then all is idle.
    settled = last_sync()
    wait_for(lambda: last_sync() >= settled + 1.0, timeout=30, what="two more syncs")
    fw.reset()
    began = last_sync()
    # Six sync intervals (0.5 s each) go by.
    wait_for(lambda: last_sync() >= began + 3.0, timeout=30, what="six more syncs")
    requests = [(q.method, q.path) for q in fw.requests]
    # Each sync one conditional GET of the root (answered 304); nothing else.
    assert all(m == "GET" and p.endswith("/pypi/index.json") for m, p in requests), requests
    assert 4 <= len(requests) <= 9, requests
    assert all(q.status == 304 for q in fw.requests)


def test_proxy_downloads_through_the_server(tmp_path, daemon_factory, s3_forwarder):
    fleet = Fleet(tmp_path, daemon_factory, s3_forwarder, downloads="proxy")
    one = fleet.start("one")
    data = wheel_bytes("acme_tool", "1.0", payload=os.urandom(3 << 20))
    assert post(one, "acme_tool", "1.0", data) == 200
    wait_for(lambda: listed(one, "acme-tool"), timeout=30, what="the upload listed")
    status, headers, body = get(one.url + "packages/acme-tool/acme_tool-1.0-py3-none-any.whl")
    assert status == 200 and body == data
    assert headers["Content-Length"] == str(len(data))
    subprocess.run([sys.executable, "-m", "venv", tmp_path / "venv"], check=True, timeout=120)
    r = subprocess.run([tmp_path / "venv" / "bin" / "pip", "install", "--no-cache-dir",
                        "--index-url", one.url + "simple/", "acme-tool==1.0"],
                       capture_output=True, text=True, env=client_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [q for q in s3_forwarder.requests if q.presigned]


def test_credentials_from_the_aws_chain(fleet):
    """No admin secret: botocore's chain (here the environment) gives the key."""
    one = fleet.start("one", secret=False, env=fleet.bucket.env())
    assert post(one, "acme_tool", "1.0", wheel_bytes("acme_tool", "1.0")) == 200
    wait_for(lambda: listed(one, "acme-tool"), timeout=30, what="the upload listed")
    # Without any credentials it says so in /health (and starts all the same).
    bare = {k: v for k, v in fleet.bucket.env().items()
            if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    two = fleet.start("two", secret=False, env=bare, wait_ready=False)

    def failed():
        status, _, body = get(two.url + "health")
        return status == 503 and json.loads(body)["repositories"]["store"]["error"]

    assert "no credentials" in wait_for(failed, timeout=60, what="/health to fail")
