"""
The GitHub backend in process, against the fake GitHub API through StubTreq,
with time on a Clock: storage layout, upload cost, conditional syncs,
concurrency, downloads, permissions, failures and rate limits.
"""

import hashlib
import json

import pytest
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock

from .fake_github import FakeGitHub, repository_yaml
from .helpers import InProcess, StubHTTP, drive, upload_fields, wheel_bytes

def config(read, downloads):
    return "repositories:\n" + repository_yaml("http://api.github.test", read=read,
                                                 downloads=downloads)


class World:
    """A fake GitHub, and ppypi instances over it, on one Clock."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.clock = Clock()
        self.clock.advance(1_800_000_000)  # a plausible epoch, for created_at
        self.fake = FakeGitHub(clock=self.clock)
        self.fake.add_repo("acme", "pkgs", private=True)
        self.fake.add_token("admin-tok", "bot", {"acme/pkgs": "admin"})
        self.fake.add_token("writer-tok", "alice", {"acme/pkgs": "push"})
        self.fake.add_token("reader-tok", "bob", {"acme/pkgs": "pull"})
        self.http = StubHTTP(self.fake)
        self.count = 0
        self.servers = []

    def server(self, read="github", downloads="redirect", **kwargs):
        self.count += 1
        server = InProcess(self.tmp_path / f"root{self.count}",
                           config_text=config(read=read, downloads=downloads),
                           extra_index_url="https://pypi.example/simple/", http=self.http,
                           admin_secret_text="acme: {raw: admin-tok}", clock=self.clock,
                           **kwargs)
        self.servers.append(server)
        return server

    def run(self, coroutine_or_deferred):
        d = coroutine_or_deferred
        if not isinstance(d, Deferred):
            d = Deferred.fromCoroutine(d)
        return drive(d, self.clock, stubs=[self.http] + [s.treq for s in self.servers])


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def ready(world):
    """An initialised repository and one synced ppypi over it."""
    server = world.server()
    assert world.run(server.repository.backend.init()) is True
    assert world.run(server.repository.backend.init()) is False  # idempotent
    assert world.run(server.repository.sync()) is True
    return server


def upload(world, server, dist="acme_tool", version="1.0", token="writer-tok", user="x"):
    data = wheel_bytes(dist, version)
    d = Deferred.fromCoroutine(server.upload(
        upload_fields(dist.replace("_", "-"), version, data),
        [("content", f"{dist}-{version}-py3-none-any.whl", data)], auth=(user, token)))
    return world.run(d) + (data,)


def assets_of(repo, release):
    return [a for a in repo.assets.values() if a.release_id == release.id]


def get(world, server, path, auth=None, headers=None):
    from .helpers import basic
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = basic(*auth)
    return world.run(server.get(path, headers))


def test_upload_lands_as_release_asset_and_index_file(world, ready):
    r, body, data = upload(world, ready, user="acme")  # any username, even the repo's
    assert r.code == 200, body
    repo = world.fake.repo("acme/pkgs")
    release = repo.release_by_tag("acme-tool-1.0")
    names = sorted(a.name for a in assets_of(repo, release))
    assert names == ["acme_tool-1.0-py3-none-any.whl", "acme_tool-1.0-py3-none-any.whl.metadata"]
    doc = json.loads(repo.files["ppypi"]["index/acme-tool.json"])
    entry = doc["files"]["acme_tool-1.0-py3-none-any.whl"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["size"] == len(data) and entry["requires_python"] == ">=3.8"
    # Visible at once, to a reader.
    r, page = get(world, ready, "/simple/acme-tool/", ("bob", "reader-tok"))
    assert r.code == 200 and hashlib.sha256(data).hexdigest().encode() in page


def test_an_upload_costs_five_calls_whatever_the_repository_size(world, ready):
    for i in range(3):
        assert upload(world, ready, f"warm_{i}")[0].code == 200
    costs = []
    for i, extra in enumerate((0, 40)):
        for j in range(extra):
            assert upload(world, ready, f"filler_{i}_{j}")[0].code == 200
        world.fake.reset_counts()
        assert upload(world, ready, f"measured_{i}")[0].code == 200
        costs.append(len([r for r in world.fake.requests if r["path"] != "/repos/acme/pkgs"]))
    assert costs == [5, 5]


def test_sync_without_change_costs_one_free_304(world, ready):
    upload(world, ready)
    other = world.server()
    assert world.run(other.repository.sync()) is True
    world.fake.reset_counts()
    assert world.run(other.repository.sync()) is True
    assert [(r["method"], r["status"], r["counted"]) for r in world.fake.requests] == \
        [("GET", 304, False)]
    # A change is fetched once: the tree, then only the changed project's blob.
    upload(world, ready, "second_tool")
    world.fake.reset_counts()
    assert world.run(other.repository.sync()) is True
    paths = [r["path"] for r in world.fake.requests]
    assert len(paths) == 2 and "/git/trees/" in paths[0] and "/git/blobs/" in paths[1]
    r, _ = get(world, other, "/simple/second-tool/", ("bob", "reader-tok"))
    assert r.code == 200


def test_restart_syncs_with_a_304_from_the_persisted_copy(world, ready):
    upload(world, ready)
    world.run(ready.repository.sync())
    again = InProcess(ready.root, config_text=config(read="github", downloads="redirect"),
                      http=world.http, admin_secret_text="acme: {raw: admin-tok}",
                      clock=world.clock)
    world.fake.reset_counts()
    assert world.run(again.repository.sync()) is True
    assert [r["status"] for r in world.fake.requests] == [304]
    assert len(again.repository.index) == 1


def test_concurrent_uploads_from_two_instances_all_land(world, ready):
    other = world.server()
    world.run(other.repository.sync())
    pending = []
    for i in range(20):
        server = ready if i % 2 else other
        dist, version = ("shared_tool", f"1.{i}") if i < 10 else (f"tool_{i}", "1.0")
        data = wheel_bytes(dist, version)
        pending.append(Deferred.fromCoroutine(server.upload(
            upload_fields(dist.replace("_", "-"), version, data),
            [("content", f"{dist}-{version}-py3-none-any.whl", data)], auth=("x", "writer-tok"))))
    results = world.run(gatherResults(pending))
    assert [r.code for r, _ in results] == [200] * 20
    for server in (ready, other):
        world.run(server.repository.sync())
        assert len(server.repository.index) == 20
    repo = world.fake.repo("acme/pkgs")
    doc = json.loads(repo.files["ppypi"]["index/shared-tool.json"])
    assert len(doc["files"]) == 10


@pytest.mark.parametrize("downloads", ["redirect", "proxy"])
def test_downloads_never_send_authorization_to_the_signed_host(world, downloads):
    server = world.server(downloads=downloads)
    world.run(server.repository.backend.init())
    world.run(server.repository.sync())
    r, _, data = upload(world, server)
    url = "/packages/acme-tool/acme_tool-1.0-py3-none-any.whl"
    r, body = get(world, server, url, ("bob", "reader-tok"))
    if downloads == "redirect":
        assert r.code == 302
        location = r.headers.getRawHeaders("Location")[0]
        assert location.startswith("http://objects.github.test/")
        plain = world.run(world.http.get(location))
        assert world.run(plain.content()) == data
        refused = world.run(world.http.get(location, headers={"Authorization": "Bearer reader-tok"}))
        assert refused.code == 400
    else:
        assert r.code == 200 and body == data
    objects = [q for q in world.fake.requests if q["host"] == "objects"]
    assert objects and all(q["status"] == 200 for q in objects if q["token"] is None)


def test_metadata_from_another_instance_is_fetched_once(world, ready):
    r, _, data = upload(world, ready)
    other = world.server()
    world.run(other.repository.sync())
    url = "/packages/acme-tool/acme_tool-1.0-py3-none-any.whl.metadata"
    r, meta = get(world, other, url, ("bob", "reader-tok"))
    assert r.code == 200 and meta.startswith(b"Metadata-Version")
    world.fake.reset_counts()
    r, again = get(world, other, url, ("bob", "reader-tok"))
    assert again == meta
    assert [q for q in world.fake.requests if q["path"] != "/repos/acme/pkgs"] == []


def test_permissions_come_from_github_and_are_cached(world):
    server = world.server(read_expires=100, write_expires=10)
    world.run(server.repository.backend.init())
    world.run(server.repository.sync())
    assert get(world, server, "/simple/")[0].code == 401
    assert get(world, server, "/simple/", ("bob", "wrong-tok"))[0].code == 401
    assert get(world, server, "/simple/", ("bob", "reader-tok"))[0].code == 200
    assert upload(world, server, token="reader-tok")[0].code == 403
    assert upload(world, server, token="writer-tok")[0].code == 200
    # Revoked on GitHub: still good until the cache entry expires.
    _revoke(world.fake, "reader-tok")
    world.fake.reset_counts()
    assert get(world, server, "/simple/", ("bob", "reader-tok"))[0].code == 200
    assert world.fake.count(path_prefix="/repos/acme/pkgs", method="GET") == 0
    world.clock.advance(101)
    assert get(world, server, "/simple/", ("bob", "reader-tok"))[0].code == 401


def _revoke(fake, token):
    for attribute in ("tokens", "_tokens"):
        table = getattr(fake, attribute, None)
        if isinstance(table, dict):
            table.pop(token, None)
            return
    raise AssertionError("cannot revoke a token in the fake")


def test_github_failing_gives_503_never_a_redirect_and_recovers(world, ready):
    upload(world, ready)
    # bob's token was checked before GitHub went down (pip makes many
    # requests; the cache carries them through an outage).
    assert get(world, ready, "/simple/", ("bob", "reader-tok"))[0].code == 200
    world.fake.fail_next(3, status=502)  # every try of one sync
    assert world.run(ready.repository.sync()) is False
    r, _ = get(world, ready, "/simple/requests/", ("bob", "reader-tok"))
    assert r.code == 503 and r.headers.getRawHeaders("Retry-After")
    r, _ = get(world, ready, "/simple/acme-tool/", ("bob", "reader-tok"))
    assert r.code == 200  # served from the local index
    r, _ = get(world, ready, "/health")
    assert r.code == 503
    assert world.run(ready.repository.sync()) is True  # GitHub is back
    r, _ = get(world, ready, "/simple/requests/", ("bob", "reader-tok"))
    assert r.code == 302


def test_transient_502s_are_retried(world, ready):
    world.fake.fail_next(2, status=502)
    assert world.run(ready.repository.sync()) is True


def test_rate_limited_clients_get_503_with_retry_after_then_recover(world, ready):
    world.fake.exhaust_rate_limit("writer-tok", reset_in=120)
    r, body, _ = upload(world, ready)
    assert r.code == 503, body
    retry_after = int(r.headers.getRawHeaders("Retry-After")[0])
    assert 1 <= retry_after <= 120
    world.fake.reset_counts()
    r, _, _ = upload(world, ready)          # not sent: ppypi waits as GitHub asked
    assert r.code == 503
    assert world.fake.count(host="uploads") == 0
    world.clock.advance(121)
    r, body, _ = upload(world, ready)
    assert r.code == 200, body


def test_failed_upload_leaves_no_asset_behind(world, ready, monkeypatch):
    from ppypi.backends import BackendError
    backend = ready.repository.backend

    async def broken(*args, **kwargs):
        raise BackendError("index write failed")

    monkeypatch.setattr(backend.documents, "update", broken)
    r, _, _ = upload(world, ready)
    assert r.code == 503
    repo = world.fake.repo("acme/pkgs")
    assert assets_of(repo, repo.release_by_tag("acme-tool-1.0")) == []


def test_sync_cleans_up_what_a_crash_left(world, ready):
    world.fake.commit_files("acme/pkgs", {"README": b"x"}, branch="main")
    world.fake.add_release("acme/pkgs", "ghost-1.0", assets={"ghost-1.0-py3-none-any.whl": b"x"})
    world.fake.repo("acme/pkgs").release_by_tag("ghost-1.0").body = "ghost 1.0, published by ppypi."
    world.clock.advance(3600 * 7)  # past the grace period and the cleanup interval
    assert world.run(ready.repository.sync()) is True
    assert world.fake.repo("acme/pkgs").release_by_tag("ghost-1.0") is None


def test_private_repository_without_a_token_is_a_failing_backend(world, tmp_path):
    server = InProcess(tmp_path / "anon", config_text=config(read="anyone",
                                                                   downloads="redirect"),
                       http=world.http, clock=world.clock,
                       admin_secret_text="acme: {raw: admin-tok}")
    world.run(server.repository.backend.init())
    anonymous = InProcess(tmp_path / "anon2", config_text=config(
        read="anyone", downloads="redirect"), http=world.http, clock=world.clock)
    assert world.run(anonymous.repository.sync()) is False
    assert "not found" in anonymous.repository.last_error.lower() or \
        "404" in anonymous.repository.last_error


def test_yank_is_kept_in_the_repository(world, ready):
    upload(world, ready)
    from urllib.parse import urlencode
    from .helpers import basic
    r, body = world.run(ready.get("/yank/acme-tool/1.0", {
        "Authorization": basic("x", "writer-tok"),
        "Content-Type": "application/x-www-form-urlencoded"}, method="POST",
        data=urlencode({"reason": "bad"}).encode()))
    assert r.code == 200, body
    doc = json.loads(world.fake.repo("acme/pkgs").files["ppypi"]["index/acme-tool.json"])
    assert doc["yanked"] == {"1.0": "bad"}
    other = world.server()
    world.run(other.repository.sync())
    r, page = get(world, other, "/simple/acme-tool/", ("bob", "reader-tok"))
    assert b'data-yanked="bad"' in page


def test_reindex_rebuilds_the_index_from_the_releases(world, ready):
    for dist in ("one_tool", "two_tool"):
        assert upload(world, ready, dist)[0].code == 200
    repo = world.fake.repo("acme/pkgs")
    before = {p: json.loads(b)["files"] for p, b in repo.files["ppypi"].items()
              if p.startswith("index/")}
    # The index is lost (deleted by hand): reindex rebuilds it from the assets.
    for path in before:
        world.fake.commit_files("acme/pkgs", {path: b'{"files": {}}'}, branch="ppypi")
    seen = []
    count = world.run(ready.repository.backend.reindex(lambda done, total: seen.append((done, total))))
    assert count == 2
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    after = {p: json.loads(b)["files"] for p, b in repo.files["ppypi"].items()
             if p.startswith("index/")}
    for path, files in before.items():
        for filename, entry in files.items():
            rebuilt = after[path][filename]
            for key in ("sha256", "size", "version", "kind", "requires_python", "asset_id",
                        "metadata_asset_id", "metadata_sha256", "summary"):
                assert rebuilt[key] == entry[key], (filename, key)
    other = world.server()
    world.run(other.repository.sync())
    assert len(other.repository.index) == 2
