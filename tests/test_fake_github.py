"""
The fake GitHub REST API (tests/fake_github.py) behaves as GitHub documents,
sharp edges included; in process through StubTreq with a Clock, and once as
a real process on three loopback hosts.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import subprocess
import urllib.request

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, DeferredList, ensureDeferred
from twisted.internet.task import Clock
from twisted.web.client import ResponseNeverReceived

from ppypi.backends.github.api import GitHubAPI, RateLimited

from .fake_github import FakeGitHub, FakeGitHubProcess, blob_sha

API = "http://api.github.test"
REPO = "/repos/acme/wheels"
START = 1_700_000_000


class Reply:
    def __init__(self, response, body):
        self.code, self.headers, self.body = response.code, response.headers, body
        self.length = response.length     # the client takes Content-Length out of the headers

    def header(self, name):
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def json(self):
        return json.loads(self.body)


class GH:
    """A fake on a Clock, and a StubTreq to talk to it."""

    def __init__(self, **kwargs):
        self.clock = Clock()
        self.clock.advance(START)
        self.fake = FakeGitHub(clock=self.clock, **kwargs)
        self.treq = StubTreq(self.fake)

    def start(self, method, url, token=None, json_body=None, data=None, headers=None, **kwargs):
        all_headers = {"Accept": "application/vnd.github+json", "User-Agent": "test"}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        url = url if url.startswith("http") else API + url
        return self.treq.request(method, url, headers=all_headers, allow_redirects=False, **kwargs)

    async def call(self, *args, **kwargs):
        response = await self.start(*args, **kwargs)
        return Reply(response, await response.content())

    async def put(self, path, data, token="t-push", **fields):
        body = {"message": f"put {path}", "content": base64.b64encode(data).decode(), **fields}
        return await self.call("PUT", f"{REPO}/contents/{path}", token, body)

    async def release(self, tag, token="t-push", **fields):
        return await self.call("POST", f"{REPO}/releases", token, {"tag_name": tag, **fields})

    async def upload(self, release, name, data, token="t-push", content_type="application/octet-stream"):
        url = release["upload_url"].split("{")[0] + "?name=" + name
        headers = {"Content-Type": content_type} if content_type else {}
        return await self.call("POST", url, token, data=data, headers=headers)


@pytest.fixture
def gh():
    gh = GH()
    gh.fake.add_repo("acme", "wheels")             # private and empty
    gh.fake.add_repo("acme", "public", private=False, empty=False)
    gh.fake.add_repo("acme", "other")
    gh.fake.add_token("t-push", "alice", {"acme/wheels": "push"})
    gh.fake.add_token("t-push-2", "alice", {"acme/wheels": "push"})   # same user
    gh.fake.add_token("t-pull", "bob", {"acme/wheels": "pull"})
    gh.fake.add_token("t-admin", "carol", {"acme/wheels": "admin"})
    gh.fake.add_token("t-other", "dave", {"acme/other": "admin"})
    return gh


def git_blob(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# -- auth and visibility ----------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_repo_json_carries_permissions_of_the_caller(gh):
    r = await gh.call("GET", REPO, "t-push")
    assert r.code == 200
    assert r.header("Content-Type") == "application/json; charset=utf-8"
    assert (r.json["full_name"], r.json["private"], r.json["default_branch"]) == ("acme/wheels", True, "main")
    assert r.json["permissions"] == {"admin": False, "maintain": False, "push": True,
                                     "triage": True, "pull": True}
    r = await gh.call("GET", "/repos/ACME/Wheels", "t-admin")   # names are case-insensitive
    assert r.json["full_name"] == "acme/wheels"
    assert all(r.json["permissions"].values())
    r = await gh.call("GET", "/repos/acme/public")
    assert r.code == 200 and r.json["private"] is False
    assert "permissions" not in r.json       # only for authenticated callers


@pytest_twisted.ensureDeferred
async def test_private_repo_is_hidden_and_bad_tokens_are_401(gh):
    for token in (None, "t-other"):
        r = await gh.call("GET", REPO, token)
        assert (r.code, r.json["message"]) == (404, "Not Found")
        r = await gh.call("GET", f"{REPO}/releases", token)
        assert r.code == 404
    r = await gh.call("GET", REPO, "not-a-token")
    assert (r.code, r.json["message"]) == (401, "Bad credentials")
    r = await gh.call("GET", REPO, headers={"Authorization": "token t-pull"})   # old scheme
    assert r.code == 200
    r = await gh.call("GET", "/repos/acme/nothing", "t-admin")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_writes_need_push(gh):
    await gh.put("a.txt", b"a")
    release = (await gh.release("v1")).json
    before = gh.fake.repo("acme/wheels").files
    attempts = [
        await gh.put("b.txt", b"b", token="t-pull"),
        await gh.release("v2", token="t-pull"),
        await gh.upload(release, "x.whl", b"x", token="t-pull"),
        await gh.call("POST", f"{REPO}/git/refs", "t-pull", {"ref": "refs/heads/x", "sha": "0" * 40}),
        await gh.call("DELETE", f"{REPO}/releases/{release['id']}", "t-pull"),
    ]
    for r in attempts:
        assert (r.code, r.json["message"]) == (403, "Resource not accessible by personal access token")
    assert gh.fake.repo("acme/wheels").files == before
    assert [r.tag_name for r in gh.fake.repo("acme/wheels").releases.values()] == ["v1"]
    # Anonymous writes to a public repository need authentication.
    r = await gh.call("PUT", "/repos/acme/public/contents/x", None, {"message": "m", "content": ""})
    assert (r.code, r.json["message"]) == (401, "Requires authentication")


# -- git data and contents --------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_empty_repository(gh):
    r = await gh.call("GET", f"{REPO}/git/trees/main?recursive=1", "t-push")
    assert (r.code, r.json["message"]) == (409, "Git Repository is empty.")
    r = await gh.call("GET", f"{REPO}/contents/x.txt", "t-push")
    assert (r.code, r.json["message"]) == (404, "This repository is empty.")
    r = await gh.call("GET", f"{REPO}/git/ref/heads/main", "t-push")
    assert r.code == 409
    r = await gh.release("v1")
    assert r.code == 422 and r.json["message"] == "Validation Failed"
    assert r.json["errors"][0]["code"] == "custom"
    assert r.json["errors"][0]["message"] == "Repository is empty."
    r = await gh.release("v1", draft=True)     # a draft has no tag, so it may exist
    assert r.code == 201 and r.json["draft"] is True


@pytest_twisted.ensureDeferred
async def test_contents_roundtrip_and_sha_preconditions(gh):
    data = bytes(range(256)) * 3
    r = await gh.put("pkgs/a.whl", data)
    assert r.code == 201
    assert r.json["content"]["sha"] == git_blob(data)
    assert r.json["commit"]["message"] == "put pkgs/a.whl"
    r = await gh.call("GET", f"{REPO}/contents/pkgs/a.whl", "t-pull")
    assert r.code == 200
    body = r.json
    assert (body["type"], body["name"], body["path"], body["size"]) == ("file", "a.whl", "pkgs/a.whl", 768)
    assert (body["sha"], body["encoding"]) == (git_blob(data), "base64")
    lines = body["content"].split("\n")
    assert lines[-1] == "" and {len(line) for line in lines[:-2]} == {60}
    assert base64.b64decode(body["content"]) == data
    # Exists, no sha: 422. Wrong sha: 409. Right sha: 200.
    r = await gh.put("pkgs/a.whl", b"new")
    assert (r.code, r.json["message"]) == (422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    r = await gh.put("pkgs/a.whl", b"new", sha=git_blob(b"something else"))
    assert (r.code, r.json["message"]) == (409, f"pkgs/a.whl does not match {git_blob(b'something else')}")
    assert gh.fake.repo("acme/wheels").files["main"]["pkgs/a.whl"] == data
    r = await gh.put("pkgs/a.whl", b"new", sha=git_blob(data))
    assert r.code == 200 and r.json["content"]["sha"] == git_blob(b"new")
    assert gh.fake.repo("acme/wheels").files["main"] == {"pkgs/a.whl": b"new"}
    # A missing branch; a missing file; a directory listing; another ref.
    r = await gh.put("pkgs/b.whl", b"b", branch="nope")
    assert (r.code, r.json["message"]) == (404, "Branch nope not found")
    r = await gh.call("GET", f"{REPO}/contents/pkgs/zzz", "t-pull")
    assert r.code == 404
    r = await gh.call("GET", f"{REPO}/contents/pkgs", "t-pull")
    assert [(e["type"], e["path"]) for e in r.json] == [("file", "pkgs/a.whl")]
    r = await gh.call("GET", f"{REPO}/contents/pkgs/a.whl?ref=nope", "t-pull")
    assert (r.code, r.json["message"]) == (404, "No commit found for the ref nope")
    # Delete wants the sha as well.
    r = await gh.call("DELETE", f"{REPO}/contents/pkgs/a.whl", "t-push", {"message": "rm"})
    assert r.code == 422
    r = await gh.call("DELETE", f"{REPO}/contents/pkgs/a.whl", "t-push",
                      {"message": "rm", "sha": git_blob(b"new")})
    assert r.code == 200 and gh.fake.repo("acme/wheels").files["main"] == {}


@pytest_twisted.ensureDeferred
async def test_first_put_creates_the_named_branch(gh):
    r = await gh.put("index.json", b"{}", branch="packages")
    assert r.code == 201
    assert set(gh.fake.repo("acme/wheels").branches) == {"packages"}
    r = await gh.call("GET", f"{REPO}/git/ref/heads/packages", "t-pull")
    assert r.json["ref"] == "refs/heads/packages" and r.json["object"]["type"] == "commit"
    r = await gh.call("GET", f"{REPO}/git/ref/heads/main", "t-pull")
    assert r.code == 404
    r = await gh.call("GET", f"{REPO}/contents/index.json", "t-pull")   # default branch: none
    assert r.code == 404
    r = await gh.call("GET", f"{REPO}/contents/index.json?ref=packages", "t-pull")
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_big_files_have_no_inline_content(gh):
    data = os.urandom((1 << 20) + 1)
    assert (await gh.put("big.bin", data)).code == 201
    r = await gh.call("GET", f"{REPO}/contents/big.bin", "t-pull")
    assert (r.json["content"], r.json["encoding"], r.json["size"]) == ("", "none", len(data))
    r = await gh.call("GET", f"{REPO}/git/blobs/{r.json['sha']}", "t-pull")
    assert base64.b64decode(r.json["content"]) == data and r.json["size"] == len(data)


@pytest_twisted.ensureDeferred
async def test_trees_are_git_trees(gh, tmp_path):
    files = {"a.txt": b"1", "a/b.txt": b"2", "a/c/d.bin": b"3" * 100, "a-b": b"4", "a0": b"5"}
    for path, data in files.items():
        assert (await gh.put(path, data)).code == 201
    r = await gh.call("GET", f"{REPO}/git/trees/main?recursive=1", "t-pull")
    assert r.code == 200 and r.json["truncated"] is False
    blobs = {e["path"]: (e["sha"], e["size"]) for e in r.json["tree"] if e["type"] == "blob"}
    assert blobs == {p: (blob_sha(d), len(d)) for p, d in files.items()}
    # GitHub lists subtrees too, in git's order, a directory sorting as "name/".
    assert [(e["path"], e["mode"]) for e in r.json["tree"]] == [
        ("a-b", "100644"), ("a.txt", "100644"), ("a", "040000"), ("a/b.txt", "100644"),
        ("a/c", "040000"), ("a/c/d.bin", "100644"), ("a0", "100644")]
    # The same tree sha as git's own, for the same files.
    work = tmp_path / "git"
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    git = ["git", "-C", str(work), "-c", "core.autocrlf=false"]
    subprocess.run(git[:3] + ["init", "-q"], check=True, env=env)
    subprocess.run(git + ["add", "-A"], check=True, env=env)
    tree = subprocess.run(git + ["write-tree"], check=True, env=env, capture_output=True, text=True)
    assert r.json["sha"] == tree.stdout.strip()
    # By tree sha; without recursive only the top; "recursive" with any value recurses.
    sub = next(e["sha"] for e in r.json["tree"] if e["path"] == "a")
    r = await gh.call("GET", f"{REPO}/git/trees/{sub}", "t-pull")
    assert [e["path"] for e in r.json["tree"]] == ["b.txt", "c"]
    r = await gh.call("GET", f"{REPO}/git/trees/main?recursive=0", "t-pull")
    assert len(r.json["tree"]) == 7
    r = await gh.call("GET", f"{REPO}/git/trees/nope?recursive=1", "t-pull")
    assert r.code == 404
    r = await gh.call("GET", f"{REPO}/git/blobs/{blob_sha(b'2')}", "t-pull")
    assert base64.b64decode(r.json["content"]) == b"2" and r.json["encoding"] == "base64"


@pytest_twisted.ensureDeferred
async def test_refs(gh):
    commit = (await gh.put("a", b"a")).json["commit"]["sha"]
    r = await gh.call("POST", f"{REPO}/git/refs", "t-push", {"ref": "refs/heads/pkgs", "sha": commit})
    assert r.code == 201 and r.json["object"]["sha"] == commit
    r = await gh.call("POST", f"{REPO}/git/refs", "t-push", {"ref": "refs/heads/pkgs", "sha": commit})
    assert (r.code, r.json["message"]) == (422, "Reference already exists")
    r = await gh.call("POST", f"{REPO}/git/refs", "t-push", {"ref": "refs/heads/x", "sha": "f" * 40})
    assert r.code == 422
    r = await gh.call("GET", f"{REPO}/git/ref/heads/pkgs", "t-pull")
    assert r.json["object"]["sha"] == commit
    # A commit sha names a tree too, and the new branch has the files.
    r1 = await gh.call("GET", f"{REPO}/git/trees/{commit}", "t-pull")
    r2 = await gh.call("GET", f"{REPO}/git/trees/pkgs", "t-pull")
    assert r1.json["sha"] == r2.json["sha"]


# -- conditional requests and rate limits -----------------------------------

@pytest_twisted.ensureDeferred
async def test_tree_etag_304_is_free_but_200s_count(gh):
    await gh.put("a.whl", b"a")
    url = f"{REPO}/git/trees/main?recursive=1"
    r = await gh.call("GET", url, "t-push")
    etag, remaining = r.header("ETag"), int(r.header("x-ratelimit-remaining"))
    assert re.fullmatch(r'"[0-9a-f]+"', etag)
    for _ in range(3):
        r = await gh.call("GET", url, "t-push", headers={"If-None-Match": etag})
        assert (r.code, r.body) == (304, b"")
        assert int(r.header("x-ratelimit-remaining")) == remaining
        assert r.header("ETag") == etag
    assert [x["counted"] for x in gh.fake.requests[-3:]] == [False, False, False]
    # A change makes a new commit and tree: the old ETag no longer matches.
    await gh.put("b.whl", b"b")
    r = await gh.call("GET", url, "t-push", headers={"If-None-Match": etag})
    assert r.code == 200 and r.header("ETag") != etag
    assert int(r.header("x-ratelimit-remaining")) == remaining - 2
    assert gh.fake.requests[-1]["counted"] is True


@pytest_twisted.ensureDeferred
async def test_anonymous_requests_count_even_when_304(gh):
    url = "/repos/acme/public/contents/README.md"
    r = await gh.call("GET", url)
    assert (r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")) == ("60", "59")
    r = await gh.call("GET", url, headers={"If-None-Match": r.header("ETag")})
    assert (r.code, r.header("x-ratelimit-remaining")) == (304, "58")
    for _ in range(58):
        assert (await gh.call("GET", url)).code == 200
    r = await gh.call("GET", url)
    assert r.code == 403 and r.json["message"].startswith("API rate limit exceeded for 127.0.0.1.")
    assert (await gh.call("GET", url, "t-pull")).code == 200    # a token has its own limit


@pytest_twisted.ensureDeferred
async def test_primary_rate_limit_and_recovery(gh):
    r = await gh.call("GET", REPO, "t-push")
    assert r.header("x-ratelimit-limit") == "5000"
    assert (r.header("x-ratelimit-remaining"), r.header("x-ratelimit-used")) == ("4999", "1")
    assert r.header("x-ratelimit-resource") == "core"
    assert int(r.header("x-ratelimit-reset")) == START + 3600
    gh.fake.exhaust_rate_limit("t-push", reset_in=60)
    for token in ("t-push", "t-push-2"):        # the limit is the user's, not the token's
        r = await gh.call("GET", REPO, token)
        assert r.code == 403
        assert r.json["message"] == "API rate limit exceeded for user ID 1."
        assert r.json["documentation_url"]
        assert r.header("x-ratelimit-remaining") == "0"
        assert int(r.header("x-ratelimit-reset")) == START + 60
        assert gh.fake.requests[-1]["counted"] is False
    assert (await gh.call("GET", REPO, "t-pull")).code == 200   # another user
    gh.clock.advance(59)
    assert (await gh.call("GET", REPO, "t-push")).code == 403
    gh.clock.advance(1)
    r = await gh.call("GET", REPO, "t-push")
    assert (r.code, r.header("x-ratelimit-remaining")) == (200, "4999")
    assert int(r.header("x-ratelimit-reset")) == START + 60 + 3600
    r = await gh.call("GET", "/rate_limit", "t-push")   # free
    assert r.json["resources"]["core"]["remaining"] == 4999


@pytest_twisted.ensureDeferred
async def test_secondary_rate_limit_is_429_with_retry_after(gh):
    gh.fake.exhaust_rate_limit("t-push", reset_in=30, secondary=True)
    r = await gh.call("GET", REPO, "t-push")
    assert (r.code, r.header("retry-after")) == (429, "30")
    assert "secondary rate limit" in r.json["message"]
    assert r.header("x-ratelimit-remaining") != "0"
    gh.clock.advance(10)
    assert (await gh.call("GET", REPO, "t-push")).header("retry-after") == "20"
    gh.clock.advance(20)
    assert (await gh.call("GET", REPO, "t-push")).code == 200


# -- releases and assets ----------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_release_create_duplicate_tag_and_upload_url(gh):
    await gh.put("a", b"a")
    r = await gh.release("v1.0", name="One", body="notes")
    assert r.code == 201
    release = r.json
    rid = release["id"]
    assert release["upload_url"] == \
        f"http://uploads.github.test/repos/acme/wheels/releases/{rid}/assets{{?name,label}}"
    assert (release["tag_name"], release["name"], release["assets"]) == ("v1.0", "One", [])
    assert release["url"] == f"{API}{REPO}/releases/{rid}"
    assert release["assets_url"] == f"{API}{REPO}/releases/{rid}/assets"
    r = await gh.release("v1.0")
    assert (r.code, r.json["message"]) == (422, "Validation Failed")
    assert r.json["errors"] == [{"resource": "Release", "code": "already_exists", "field": "tag_name"}]
    assert "documentation_url" in r.json
    assert gh.fake.repo("acme/wheels").tags["v1.0"]
    r = await gh.call("GET", f"{REPO}/releases/tags/v1.0", "t-pull")
    assert r.json["id"] == rid
    r = await gh.call("GET", f"{REPO}/releases/{rid}", "t-pull")
    assert r.json["tag_name"] == "v1.0"
    r = await gh.call("GET", f"{REPO}/releases/tags/v9", "t-pull")
    assert r.code == 404
    # Drafts: no tag, several may share one, and a pull token does not see them.
    d1, d2 = (await gh.release("v2", draft=True)).json, (await gh.release("v2", draft=True)).json
    assert d1["id"] != d2["id"] and "v2" not in gh.fake.repo("acme/wheels").tags
    assert (await gh.call("GET", f"{REPO}/releases/tags/v2", "t-push")).code == 404
    assert (await gh.call("GET", f"{REPO}/releases/{d1['id']}", "t-pull")).code == 404
    assert len((await gh.call("GET", f"{REPO}/releases", "t-pull")).json) == 1
    assert len((await gh.call("GET", f"{REPO}/releases", "t-push")).json) == 3
    r = await gh.call("PATCH", f"{REPO}/releases/{d1['id']}", "t-push", {"draft": False})
    assert r.code == 200 and r.json["published_at"]
    r = await gh.call("PATCH", f"{REPO}/releases/{d2['id']}", "t-push", {"draft": False})
    assert r.code == 422 and r.json["errors"][0]["code"] == "already_exists"


@pytest_twisted.ensureDeferred
async def test_assets_upload_rules(gh):
    await gh.put("a", b"a")
    release = (await gh.release("v1")).json
    data = os.urandom(3000)
    r = await gh.upload(release, "pkg-1.0-py3-none-any.whl", data)
    assert r.code == 201
    asset = r.json
    assert (asset["name"], asset["state"], asset["size"], asset["label"]) == \
        ("pkg-1.0-py3-none-any.whl", "uploaded", 3000, None)
    assert asset["content_type"] == "application/octet-stream"
    assert asset["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert asset["url"] == f"{API}{REPO}/releases/assets/{asset['id']}"
    assert gh.fake.repo("acme/wheels").assets[asset["id"]].data == data
    r = await gh.upload(release, "pkg-1.0-py3-none-any.whl", b"again")
    assert r.code == 422
    assert r.json["errors"] == [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]
    # GitHub renames: a raw "+" in the query is a space, which becomes ".".
    r = await gh.upload(release, "pkg-1.0+local.whl", b"x")
    assert r.json["name"] == "pkg-1.0.local.whl"
    r = await gh.upload(release, "pkg-2.0%2Blocal.whl", b"x")
    assert r.json["name"] == "pkg-2.0+local.whl"
    r = await gh.upload(release, "a%20(b)~c.zip", b"x")
    assert r.json["name"] == "a..b..c.zip"
    r = await gh.upload(release, "no-type.whl", b"x", content_type=None)
    assert r.code == 422
    r = await gh.upload({"upload_url": "http://uploads.github.test/repos/acme/wheels/releases/999/assets"},
                        "x", b"x")
    assert r.code == 404
    # Uploads go to the uploads host only.
    r = await gh.call("POST", f"{REPO}/releases/{release['id']}/assets?name=y", "t-push", data=b"y",
                      headers={"Content-Type": "application/zip"})
    assert r.code == 404
    r = await gh.call("GET", f"{REPO}/releases/tags/v1", "t-pull")
    assert len(r.json["assets"]) == 4


@pytest_twisted.ensureDeferred
async def test_delete_release_removes_assets_and_keeps_the_tag(gh):
    await gh.put("a", b"a")
    release = (await gh.release("v1")).json
    asset = (await gh.upload(release, "a.whl", b"a")).json
    r = await gh.call("DELETE", f"{REPO}/releases/{release['id']}", "t-push")
    assert (r.code, r.body) == (204, b"")
    repo = gh.fake.repo("acme/wheels")
    assert repo.releases == {} and repo.assets == {} and "v1" in repo.tags
    assert (await gh.call("GET", f"{REPO}/releases/assets/{asset['id']}", "t-pull")).code == 404
    assert (await gh.release("v1")).code == 201      # reuses the tag


@pytest_twisted.ensureDeferred
async def test_asset_download_is_a_redirect_to_a_signed_url(gh):
    await gh.put("a", b"a")
    release = (await gh.release("v1")).json
    data = os.urandom(5000)
    asset = (await gh.upload(release, "a.whl", data)).json
    r = await gh.call("GET", asset["url"], "t-pull")
    assert r.code == 200 and r.json["id"] == asset["id"]       # JSON by default
    r = await gh.call("GET", asset["url"], "t-pull", headers={"Accept": "application/octet-stream"})
    assert r.code == 302
    location = r.header("Location")
    assert location.startswith("http://objects.github.test/")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    # The object store wants no Authorization header: the URL is the credential.
    r = await gh.call("GET", location, "t-pull")
    assert r.code == 400 and b"<Code>InvalidArgument</Code>" in r.body
    assert b"Only one auth mechanism allowed" in r.body
    r = await gh.call("GET", location)
    assert (r.code, r.body) == (200, data)
    assert r.header("Content-Type") == "application/octet-stream"
    assert r.length == 5000
    r = await gh.call("GET", location, headers={"Range": "bytes=10-19"})
    assert (r.code, r.body, r.header("Content-Range")) == (206, data[10:20], "bytes 10-19/5000")
    r = await gh.call("GET", location.replace("X-Amz-Expires=300", "X-Amz-Expires=99999"))
    assert r.code == 403 and b"SignatureDoesNotMatch" in r.body
    r = await gh.call("GET", location.split("X-Amz-Signature=")[0] + "X-Amz-Signature=" + "0" * 64)
    assert r.code == 403
    assert [x["host"] for x in gh.fake.requests[-5:]] == ["objects"] * 5
    gh.clock.advance(301)
    r = await gh.call("GET", location)
    assert r.code == 403 and b"expired" in r.body
    # Private: no token, no redirect.
    r = await gh.call("GET", asset["url"], headers={"Accept": "application/octet-stream"})
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_release_pagination_over_250_releases(gh):
    await gh.put("a", b"a")
    for i in range(250):
        gh.fake.add_release("acme/wheels", f"v{i}")
    repo_id = gh.fake.repo("acme/wheels").id
    base = f"{API}/repositories/{repo_id}/releases"
    r = await gh.call("GET", f"{REPO}/releases?per_page=100", "t-pull")
    assert len(r.json) == 100
    assert r.header("Link") == (f'<{base}?per_page=100&page=2>; rel="next", '
                                f'<{base}?per_page=100&page=3>; rel="last"')
    seen, url, pages = [], f"{API}{REPO}/releases?per_page=100", 0
    while url:
        r = await gh.call("GET", url, "t-pull")
        assert r.code == 200
        seen += [x["tag_name"] for x in r.json]
        pages += 1
        m = re.search(r'<([^>]+)>; rel="next"', r.header("Link") or "")
        url = m.group(1) if m else None
    assert pages == 3 and len(seen) == 250 and set(seen) == {f"v{i}" for i in range(250)}
    assert seen[0] == "v249"            # newest first
    assert r.header("Link") == (f'<{base}?per_page=100&page=2>; rel="prev", '
                                f'<{base}?per_page=100&page=1>; rel="first"')
    r = await gh.call("GET", f"{REPO}/releases?page=2", "t-pull")     # default 30 a page
    assert len(r.json) == 30
    assert r.header("Link") == (f'<{base}?page=1>; rel="prev", <{base}?page=3>; rel="next", '
                                f'<{base}?page=9>; rel="last", <{base}?page=1>; rel="first"')
    r = await gh.call("GET", f"{REPO}/releases?per_page=500", "t-pull")   # at most 100
    assert len(r.json) == 100
    r = await gh.call("GET", f"{REPO}/releases?per_page=100&page=4", "t-pull")
    assert r.json == []
    # Asset lists page the same way.
    release = gh.fake.add_release("acme/wheels", "many", assets={f"f{i}.whl": b"x" for i in range(5)})
    r = await gh.call("GET", f"{REPO}/releases/{release.id}/assets?per_page=2", "t-pull")
    assert len(r.json) == 2 and 'page=3>; rel="last"' in r.header("Link")


# -- failures, concurrency, hosts -------------------------------------------

@pytest_twisted.ensureDeferred
async def test_fail_next(gh):
    gh.fake.fail_next(2, status=502)
    gh.fake.fail_next(1, status=503, host="uploads")
    r = await gh.call("GET", REPO, "t-pull")
    assert r.code == 502 and r.header("x-ratelimit-remaining") is None
    r = await gh.call("GET", REPO, "t-pull")
    assert r.code == 502
    assert (await gh.call("GET", REPO, "t-pull")).code == 200
    await gh.put("a", b"a")
    release = (await gh.release("v1")).json
    r = await gh.upload(release, "a.whl", b"a")
    assert r.code == 503 and r.json["message"]
    assert gh.fake.repo("acme/wheels").assets == {}
    assert (await gh.upload(release, "a.whl", b"a")).code == 201
    assert gh.fake.count(status=502) == 2
    assert gh.fake.count(host="uploads") == 2
    gh.fake.fail_next(1, status=500)
    r = await gh.call("GET", REPO, "t-pull")
    assert (r.code, r.json["message"]) == (500, "Server Error")


@pytest_twisted.ensureDeferred
async def test_fail_next_timeout_hangs_until_the_client_gives_up(gh):
    gh.fake.fail_next(1, timeout=True)
    d = ensureDeferred(gh.call("GET", REPO, "t-pull", timeout=10, reactor=gh.clock))
    gh.clock.advance(9)
    assert not d.called and len(gh.fake.hung) == 1
    gh.clock.advance(1)
    with pytest.raises((CancelledError, ResponseNeverReceived)):
        await d
    assert gh.fake.requests[-1]["status"] is None
    assert (await gh.call("GET", REPO, "t-pull")).code == 200


@pytest_twisted.ensureDeferred
async def test_concurrent_writes_are_atomic(gh):
    data = b"v0"
    await gh.put("index.json", data)
    puts = [gh.start("PUT", f"{REPO}/contents/index.json", "t-push",
                     {"message": "m", "content": base64.b64encode(b"v%d" % i).decode(),
                      "sha": git_blob(data)}) for i in (1, 2)]
    releases = [gh.start("POST", f"{REPO}/releases", "t-push", {"tag_name": "v1"}) for _ in range(3)]
    results = await DeferredList(puts + releases, consumeErrors=True)
    codes = [response.code for ok, response in results]
    assert sorted(codes[:2]) == [200, 409] and sorted(codes[2:]) == [201, 422, 422]
    assert len(gh.fake.repo("acme/wheels").releases) == 1


@pytest_twisted.ensureDeferred
async def test_enterprise_prefix_on_a_shared_host():
    gh = GH(api_base="http://ghe.test/api/v3", uploads_base="http://ghe.test/api/uploads",
            objects_base="http://ghe-objects.test")
    gh.fake.add_repo("acme", "wheels", empty=False)
    gh.fake.add_token("t", "alice", {"acme/wheels": "push"})
    for i in range(3):
        gh.fake.add_release("acme/wheels", f"v{i}")
    r = await gh.call("GET", "http://ghe.test/api/v3/repos/acme/wheels/releases?per_page=1", "t")
    assert r.code == 200
    assert 'http://ghe.test/api/v3/repositories/1/releases?per_page=1&page=2>; rel="next"' in r.header("Link")
    release = r.json[0]
    assert release["upload_url"].startswith("http://ghe.test/api/uploads/repos/acme/wheels/releases/")
    assert (await gh.upload(release, "a.whl", b"a", token="t")).code == 201
    assert (await gh.call("GET", "http://ghe.test/repos/acme/wheels", "t")).code == 404
    assert (await gh.call("GET", "http://api.github.test/repos/acme/wheels", "t")).code == 404
    assert gh.fake.requests[0]["path"] == "/repos/acme/wheels/releases"


@pytest_twisted.ensureDeferred
async def test_requests_log(gh):
    await gh.call("GET", REPO, "t-pull")
    await gh.call("GET", REPO, "t-pull", headers={"If-None-Match": "*"})
    await gh.call("GET", f"{REPO}/releases?per_page=5", None)
    assert gh.fake.requests == [
        {"method": "GET", "host": "api", "path": REPO, "query": "", "status": 200,
         "token": "t-pull", "counted": True, "repo": "acme/wheels"},
        {"method": "GET", "host": "api", "path": REPO, "query": "", "status": 304,
         "token": "t-pull", "counted": False, "repo": "acme/wheels"},
        {"method": "GET", "host": "api", "path": f"{REPO}/releases", "query": "per_page=5",
         "status": 404, "token": None, "counted": True, "repo": None}]
    assert gh.fake.count("GET", path_prefix=REPO) == 3
    assert gh.fake.count(status=304) == 1
    gh.fake.reset_counts()
    assert gh.fake.count() == 0


@pytest_twisted.ensureDeferred
async def test_the_project_client_works_against_it(gh):
    """ppypi's own GitHub client: pagination, 304s, retries and rate limits."""
    await gh.put("a", b"a")
    for i in range(205):
        gh.fake.add_release("acme/wheels", f"v{i}")
    client = GitHubAPI(gh.treq, API, gh.clock)
    items = await client.paginate(f"{REPO}/releases", "t-pull")
    assert len(items) == 205 and gh.fake.count(path_prefix="/repositories/") == 2
    first = await client.request("GET", f"{REPO}/git/trees/main?recursive=1", "t-pull")
    again = await client.request("GET", f"{REPO}/git/trees/main?recursive=1", "t-pull",
                                 etag=first.header("etag"))
    assert again.status == 304
    gh.fake.fail_next(2, status=502)
    d = ensureDeferred(client.request("GET", REPO, "t-pull"))
    gh.clock.advance(0.5)
    gh.clock.advance(1.0)
    assert (await d).status == 200 and gh.fake.count(status=502) == 2
    gh.fake.exhaust_rate_limit("t-pull", reset_in=120)
    with pytest.raises(RateLimited) as e:
        await client.request("GET", REPO, "t-pull")
    assert e.value.retry_after == 120


# -- the live runner --------------------------------------------------------

def Live(tmp_path, *args):
    return FakeGitHubProcess(tmp_path / "fake-github.log", *args)


def fetch(method, url, body=None, headers=None):
    """One request with urllib, no redirects: (status, headers, body bytes)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_live_runner_on_three_loopback_hosts(tmp_path):
    state = tmp_path / "state.json"
    live = Live(tmp_path, "--state-file", str(state))
    try:
        auth = {"Authorization": "Bearer t"}
        assert fetch("POST", live.api + "/_fake/repos", {"owner": "acme", "name": "wheels"})[0] == 201
        assert fetch("POST", live.api + "/_fake/tokens",
                    {"token": "t", "user": "alice", "repos": {"acme/wheels": "push"}})[0] == 200
        status, _, body = fetch("PUT", live.api + "/repos/acme/wheels/contents/a.txt",
                               {"message": "m", "content": base64.b64encode(b"hello").decode()}, auth)
        assert status == 201
        status, _, body = fetch("POST", live.api + "/repos/acme/wheels/releases", {"tag_name": "v1"}, auth)
        release = json.loads(body)
        assert release["upload_url"].startswith(f"{live.uploads}/repos/acme/wheels/releases/")
        upload = release["upload_url"].split("{")[0]
        data = os.urandom(200_000)
        status, _, body = fetch("POST", upload + "?name=a.whl", data,
                               {**auth, "Content-Type": "application/octet-stream"})
        assert status == 201
        asset = json.loads(body)
        assert asset["url"].startswith(live.api + "/repos/")
        # The three hosts are distinct: the API host has no upload route.
        assert fetch("POST", upload.replace(live.uploads, live.api) + "?name=b.whl", b"b",
                    {**auth, "Content-Type": "application/zip"})[0] == 404
        # A chunked body has no Content-Length: 411.
        conn = http.client.HTTPConnection("127.0.0.2", live.port, timeout=10)
        conn.request("POST", upload.split(str(live.port), 1)[1] + "?name=c.whl", body=iter([b"c"]),
                     headers={**auth, "Content-Type": "application/zip"}, encode_chunked=True)
        assert conn.getresponse().status == 411
        conn.close()
        status, headers, _ = fetch("GET", asset["url"], None, {**auth, "Accept": "application/octet-stream"})
        assert status == 302 and headers["Location"].startswith(live.objects + "/")
        assert fetch("GET", headers["Location"], None, auth)[0] == 400
        status, _, body = fetch("GET", headers["Location"])
        assert (status, body) == (200, data)
        assert fetch("POST", live.api + "/_fake/fail", {"count": 1, "status": 503})[0] == 200
        assert fetch("GET", live.api + "/repos/acme/wheels", None, auth)[0] == 503
        status, _, body = fetch("GET", live.api + "/_fake/requests")
        log = json.loads(body)
        assert {r["host"] for r in log} == {"api", "uploads", "objects"}
        assert log[-1]["status"] == 503
        assert fetch("POST", live.api + "/_fake/ratelimit", {"token": "t", "reset_in": 100})[0] == 200
        status, headers, _ = fetch("GET", live.api + "/repos/acme/wheels", None, auth)
        assert status == 403 and headers["x-ratelimit-remaining"] == "0"
    finally:
        assert live.stop() == 0
    # The state was saved on SIGTERM; a new run starts from it.
    assert json.loads(state.read_text())["repos"][0]["name"] == "wheels"
    live = Live(tmp_path, "--state-file", str(state))
    try:
        status, _, body = fetch("GET", live.api + "/repos/acme/wheels/contents/a.txt", None,
                               {"Authorization": "token t"})
        assert status == 200 and base64.b64decode(json.loads(body)["content"]) == b"hello"
        status, _, body = fetch("GET", live.api + "/repos/acme/wheels/releases/tags/v1", None,
                               {"Authorization": "token t"})
        assert json.loads(body)["assets"][0]["size"] == 200_000
    finally:
        assert live.stop() == 0
