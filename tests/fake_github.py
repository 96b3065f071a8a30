"""
A fake GitHub REST API for tests: repositories (git blobs, trees, commits,
branches and tags), the contents API, releases and release assets, rate
limits and injected failures, all in memory.

It answers on three "hosts", chosen by the request's Host header: the API
(C{api_base}, which may carry a GitHub Enterprise path prefix such as
C{/api/v3}), the uploads host (C{uploads_base}) and the object store that
asset downloads are redirected to (C{objects_base}). In process, drive it
with C{treq.testing.StubTreq(FakeGitHub(clock=Clock()))}; over loopback, run::

    python -m tests.fake_github --port PORT [--state-file F] [--rate-limit N]

which serves the API on 127.0.0.1:PORT, uploads on 127.0.0.2:PORT and
objects on 127.0.0.3:PORT (PORT 0 picks a free port), prints
C{listening on PORT} and, with C{--state-file}, loads the state from F at
start (if F exists) and writes it back on SIGTERM/SIGINT and on
C{POST /_fake/save}.

It follows GitHub's documented behaviour, sharp edges included: private
repositories are 404 without access, 304s to authenticated conditional GETs
are free, Link headers name C{/repositories/ID/...}, the contents API wants
the blob sha of the file it replaces, asset names are rewritten ("+" in an
unencoded query string is a space, which becomes "."), asset downloads are a
302 to a short-lived signed URL on another host that refuses an
Authorization header, and so on.

Control API, in Python (and over HTTP as JSON, under C{{api_base}/_fake/};
these requests are neither logged, rate limited nor failed)::

    add_repo(owner, name, private=True, default_branch="main", empty=True)
        POST /_fake/repos {"owner", "name", "private"?, "default_branch"?, "empty"?}
        (empty=False: one commit holding README.md)
    add_token(token, user, repos={"owner/name": "pull"|"triage"|"push"|"maintain"|"admin"})
        POST /_fake/tokens {"token", "user", "repos"}
    commit_files(full_name, {path: bytes}, branch=None, message="seed")
        POST /_fake/commit {"repo", "files": {path: base64}, "branch"?, "message"?}
    add_release(full_name, tag, assets={name: bytes}, draft=False, prerelease=False)
        POST /_fake/releases {"repo", "tag_name", "assets"?: {name: base64}, "draft"?, "prerelease"?}
    fail_next(count, status=502, host="api", timeout=False)
        POST /_fake/fail {"count", "status"?, "host"?, "timeout"?}
    exhaust_rate_limit(token, reset_in=60, secondary=False)   (token None: anonymous)
        POST /_fake/ratelimit {"token", "reset_in"?, "secondary"?}
    set_rate_limit(limit, token=None)   (token None: the default for every user)
        POST /_fake/limit {"limit", "token"?}
    requests / count(method=None, path_prefix=None, status=None, host=None)
        GET /_fake/requests -> [{method, host, path, query, status, token, counted, repo}]
    reset_counts()
        POST /_fake/reset_counts
    summary()
        GET /_fake/state -> {"owner/name": {"branches": {b: {path: {"sha", "size"}}},
                             "releases": [{"id", "tag_name", "draft", "assets": {name: size}}]}}
    save(path=None)
        POST /_fake/save
    repo("owner/name") -> Repo with .files (branch -> {path: bytes}), .branches,
        .tags, .releases (id -> Release), .assets (id -> Asset), .release_by_tag(tag)
    hung: the requests that fail_next(timeout=True) left unanswered

Each entry of C{requests}: method, host ("api", "uploads", "objects", or None
for an unknown Host), path (without the api/uploads path prefix or the query;
as sent, so C{/repositories/ID/...} for followed Link URLs), query, status
(None while hung), token, counted (against the rate limit), repo ("o/r").
Injected failures answer before authentication and carry no rate-limit headers.

Keyword-only constructor extras: html_base (html_url and browser_download_url;
not served), rate_limit (5000), anonymous_rate_limit (60); the class
attribute max_tree_entries (100000) is where recursive trees truncate.
"""

import argparse
import base64
import binascii
import calendar
import hashlib
import hmac
import itertools
import json
import math
import os
import re
import secrets
import sys
import time
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
CHUNK = 1 << 20
CONTENTS_MAX_INLINE = 1 << 20     # bigger files: content "" and encoding "none"
SIGNED_URL_TTL = 300
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
LEVELS = ["pull", "triage", "push", "maintain", "admin"]
HOSTS = ("api", "uploads", "objects")


class Answer(Exception):
    """A response: raised by handlers to stop early, returned otherwise."""

    def __init__(self, status, body=None, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


def repository_yaml(api_url, name="acme", read="github", **settings):
    """
    The ppypi configuration of a GitHub repository on this fake's acme/pkgs
    (branch ppypi), as the lines of a C{repositories:} entry; C{settings}
    are further keys (downloads, sync_interval...).
    """
    lines = [f"  {name}:", "    type: github", "    owner: acme", "    repo: pkgs",
             "    branch: ppypi", f"    api_url: {api_url}", f"    read: {read}",
             "    write: github"]
    lines += [f"    {key}: {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def error(status, message, **extra):
    return Answer(status, {"message": message, "documentation_url": DOCS,
                           "status": str(status), **extra})


def invalid(resource, code, field=None, message=None, status=422):
    e = {"resource": resource, "code": code}
    if field:
        e["field"] = field
    if message:
        e["message"] = message
    return error(status, "Validation Failed", errors=[e])


def not_found():
    return error(404, "Not Found")


def blob_sha(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def b64_lines(data):
    """Base64 as GitHub sends it: a newline after every 60 characters."""
    text = base64.b64encode(data).decode()
    return "".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60))


def iso(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def asset_name(name):
    """GitHub renames assets: odd characters and leading/trailing dots go."""
    return re.sub(r"[^A-Za-z0-9._+-]", ".", name).strip(".")


def valid_ref_name(name):
    return bool(name) and not (re.search(r"[\x00-\x20~^:?*\[\\\x7f]|\.\.|@\{|//", name)
                               or name.startswith(("-", "/", ".")) or name.endswith(("/", ".", ".lock")))


class Asset:
    def __init__(self, id, release_id, name, label, content_type, data, created, uploader):
        self.id, self.release_id, self.name, self.label = id, release_id, name, label
        self.content_type, self.data, self.uploader = content_type, data, uploader
        self.created_at = self.updated_at = created
        self.digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.key = secrets.token_hex(16)   # its object-store key
        self.download_count = 0


class Release:
    def __init__(self, id, tag_name, target, name, body, draft, prerelease, created, author):
        self.id, self.tag_name, self.target_commitish = id, tag_name, target
        self.name, self.body, self.draft, self.prerelease = name, body, draft, prerelease
        self.created_at, self.author = created, author
        self.published_at = None if draft else created


class Repo:
    """One repository: git objects, refs, releases and assets."""

    def __init__(self, id, owner, name, private, default_branch):
        self.id, self.owner, self.name = id, owner, name
        self.private, self.default_branch = private, default_branch
        self.blobs = {}      # sha -> bytes
        self.trees = {}      # sha -> [(mode, type, name, sha)]
        self.commits = {}    # sha -> {"tree", "parents", "message", "files": {path: blob sha}}
        self.branches = {}   # name -> commit sha
        self.tags = {}       # name -> commit sha
        self.releases = {}   # id -> Release
        self.assets = {}     # id -> Asset
        self._serial = itertools.count(1)

    @property
    def full_name(self):
        return f"{self.owner}/{self.name}"

    @property
    def empty(self):
        return not self.commits

    @property
    def files(self):
        return {b: {p: self.blobs[s] for p, s in self.commits[c]["files"].items()}
                for b, c in self.branches.items()}

    def release_by_tag(self, tag):
        return next((r for r in self.releases.values() if r.tag_name == tag and not r.draft), None)

    def resolve_commit(self, ref):
        """A branch, tag, heads/X, refs/tags/X or commit sha -> commit sha."""
        ref = ref.removeprefix("refs/")
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.tags:
            return self.tags[ref]
        kind, _, rest = ref.partition("/")
        if kind in ("heads", "tags"):
            return (self.branches if kind == "heads" else self.tags).get(rest)
        return ref if ref in self.commits else None

    def resolve_tree(self, tree_ish):
        if tree_ish in self.trees:
            return tree_ish
        commit = self.resolve_commit(tree_ish)
        return self.commits[commit]["tree"] if commit else None

    def commit(self, branch, files, message, parent=None):
        """Record a commit of C{files} ({path: bytes or blob sha}) on C{branch}."""
        snapshot = {}
        for path, data in files.items():
            if isinstance(data, (bytes, bytearray)):
                snapshot[path] = blob_sha(data)
                self.blobs.setdefault(snapshot[path], bytes(data))
            else:
                snapshot[path] = data
        tree = self._write_tree(snapshot)
        parents = [parent] if parent else []
        sha = hashlib.sha1(f"{tree} {parents} {message} {self.id} {next(self._serial)}"
                           .encode()).hexdigest()
        self.commits[sha] = {"tree": tree, "parents": parents, "message": message,
                             "files": snapshot}
        self.branches[branch] = sha
        return sha

    def _write_tree(self, snapshot):
        root = {}
        for path, sha in snapshot.items():
            node, parts = root, path.split("/")
            for d in parts[:-1]:
                node = node.setdefault(d, {})
                if not isinstance(node, dict):
                    raise error(422, f"{path} conflicts with the file {d}")
            if isinstance(node.get(parts[-1]), dict):
                raise error(422, f"{path} is a directory")
            node[parts[-1]] = sha
        return self._tree(root)

    def _tree(self, node):
        entries = [("040000", "tree", name, self._tree(child)) if isinstance(child, dict)
                   else ("100644", "blob", name, child) for name, child in node.items()]
        entries.sort(key=lambda e: (e[2] + "/" if e[1] == "tree" else e[2]).encode())
        raw = b"".join(b"%s %s\0" % (mode.lstrip("0").encode(), name.encode()) + bytes.fromhex(sha)
                       for mode, _, name, sha in entries)
        sha = hashlib.sha1(b"tree %d\0" % len(raw) + raw).hexdigest()
        self.trees[sha] = entries
        return sha

    def walk(self, tree, recursive, prefix=""):
        for mode, kind, name, sha in self.trees[tree]:
            yield mode, kind, prefix + name, sha
            if recursive and kind == "tree":
                yield from self.walk(sha, True, prefix + name + "/")


class Token:
    def __init__(self, value, user, user_id, repos):
        self.value, self.user, self.user_id, self.repos = value, user, user_id, repos


class Bucket:
    """A primary rate limit window (and any secondary limit in force)."""

    def __init__(self, limit):
        self.limit, self.used, self.reset = limit, 0, None
        self.secondary_until, self.secondary_status = 0.0, 429

    def refresh(self, now):
        if self.reset is None or now >= self.reset:
            self.used, self.reset = 0, now + 3600

    def headers(self):
        return {"x-ratelimit-limit": str(self.limit),
                "x-ratelimit-remaining": str(max(0, self.limit - self.used)),
                "x-ratelimit-reset": str(math.ceil(self.reset)),
                "x-ratelimit-used": str(self.used), "x-ratelimit-resource": "core"}


def _base(url):
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname.lower(), port, parts.path.rstrip("/"), parts.scheme


def _route(method, host, pattern, handler, need="pull"):
    repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
    return method, host, re.compile("^" + pattern.replace("{repo}", repo) + "$"), handler, need


class FakeGitHub(Resource):
    isLeaf = True
    max_tree_entries = 100_000    # GitHub truncates bigger recursive trees

    def __init__(self, api_base="http://api.github.test", uploads_base="http://uploads.github.test",
                 objects_base="http://objects.github.test", clock=None, *,
                 html_base="http://github.test", rate_limit=5000, anonymous_rate_limit=60):
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.api_base, self.uploads_base = api_base.rstrip("/"), uploads_base.rstrip("/")
        self.objects_base, self.html_base = objects_base.rstrip("/"), html_base.rstrip("/")
        self._bases = {"api": _base(api_base), "uploads": _base(uploads_base),
                       "objects": _base(objects_base)}
        self.rate_limit, self.anonymous_rate_limit = rate_limit, anonymous_rate_limit
        self._repos, self._users, self.tokens, self._buckets = {}, {}, {}, {}
        self.requests, self.hung = [], []
        self._failures = {h: [] for h in HOSTS}
        self._ids = itertools.count(1)
        self._secret = secrets.token_bytes(32)
        self.state_file = None

    # -- control --------------------------------------------------------

    def add_repo(self, owner, name, private=True, default_branch="main", empty=True):
        repo = Repo(next(self._ids), owner, name, private, default_branch)
        self._repos[repo.full_name.lower()] = repo
        if not empty:
            repo.commit(default_branch, {"README.md": f"# {name}\n".encode()}, "Initial commit")
        return repo

    def add_token(self, token, user, repos=None):
        levels = {k.lower(): v for k, v in (repos or {}).items()}
        for level in levels.values():
            if level not in LEVELS:
                raise ValueError(f"unknown permission {level!r}")
        user_id = self._users.setdefault(user, len(self._users) + 1)
        self.tokens[token] = Token(token, user, user_id, levels)

    def repo(self, full_name):
        return self._repos[full_name.lower()]

    def commit_files(self, full_name, files, branch=None, message="seed"):
        repo = self.repo(full_name)
        branch = branch or repo.default_branch
        parent = repo.branches.get(branch)
        current = dict(repo.commits[parent]["files"]) if parent else {}
        current.update(files)
        return repo.commit(branch, current, message, parent)

    def add_release(self, full_name, tag, assets=None, draft=False, prerelease=False):
        repo = self.repo(full_name)
        if not draft:
            repo.tags.setdefault(tag, repo.branches[repo.default_branch])
        release = Release(next(self._ids), tag, repo.default_branch, tag, "", draft,
                          prerelease, self.clock.seconds(), "fake")
        repo.releases[release.id] = release
        for name, data in (assets or {}).items():
            asset = Asset(next(self._ids), release.id, name, None, "application/octet-stream",
                          data, self.clock.seconds(), "fake")
            repo.assets[asset.id] = asset
        return release

    def fail_next(self, count, status=502, host="api", timeout=False):
        if host not in HOSTS:
            raise ValueError(f"host must be one of {HOSTS}")
        self._failures[host].extend(["timeout" if timeout else status] * count)

    def _bucket(self, token):
        key = self.tokens[token].user_id if token else None
        if key not in self._buckets:
            self._buckets[key] = Bucket(self.rate_limit if key else self.anonymous_rate_limit)
        return self._buckets[key]

    def exhaust_rate_limit(self, token, reset_in=60, secondary=False, status=429):
        bucket, now = self._bucket(token), self.clock.seconds()
        bucket.refresh(now)
        if secondary:
            bucket.secondary_until, bucket.secondary_status = now + reset_in, status
        else:
            bucket.used, bucket.reset = bucket.limit, now + reset_in

    def set_rate_limit(self, limit, token=None):
        if token is None:
            self.rate_limit = limit
            for key, bucket in self._buckets.items():
                if key is not None:
                    bucket.limit = limit
        else:
            self._bucket(token).limit = limit

    def count(self, method=None, path_prefix=None, status=None, host=None):
        return sum(1 for r in self.requests
                   if (method is None or r["method"] == method)
                   and (path_prefix is None or r["path"].startswith(path_prefix))
                   and (status is None or r["status"] == status)
                   and (host is None or r["host"] == host))

    def reset_counts(self):
        self.requests.clear()

    def summary(self):
        return {repo.full_name: {
            "branches": {b: {p: {"sha": blob_sha(d), "size": len(d)} for p, d in files.items()}
                         for b, files in repo.files.items()},
            "releases": [{"id": r.id, "tag_name": r.tag_name, "draft": r.draft,
                          "assets": {a.name: len(a.data) for a in self._assets_of(repo, r)}}
                         for r in repo.releases.values()]}
                for repo in self._repos.values()}

    # -- state file -----------------------------------------------------

    def dump_state(self):
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        return {"next_id": next(self._ids), "users": self._users,
                "tokens": {t.value: {"user": t.user, "repos": t.repos} for t in self.tokens.values()},
                "repos": [{"id": r.id, "owner": r.owner, "name": r.name, "private": r.private,
                           "default_branch": r.default_branch, "branches": r.branches, "tags": r.tags,
                           "blobs": {s: b64(d) for s, d in r.blobs.items()}, "commits": r.commits,
                           "releases": [vars(x) for x in r.releases.values()],
                           "assets": [{**vars(a), "data": b64(a.data)} for a in r.assets.values()]}
                          for r in self._repos.values()]}

    def load_state(self, state):
        self._ids = itertools.count(state["next_id"])
        self._users = dict(state["users"])
        for value, t in state["tokens"].items():
            self.add_token(value, t["user"], t["repos"])
        for r in state["repos"]:
            repo = Repo(r["id"], r["owner"], r["name"], r["private"], r["default_branch"])
            repo.blobs = {s: base64.b64decode(d) for s, d in r["blobs"].items()}
            for sha, c in r["commits"].items():
                repo._write_tree(c["files"])
                repo.commits[sha] = c
            repo.branches, repo.tags = r["branches"], r["tags"]
            for x in r["releases"]:
                release = repo.releases[x["id"]] = Release.__new__(Release)
                vars(release).update(x)
            for x in r["assets"]:
                asset = repo.assets[x["id"]] = Asset.__new__(Asset)
                vars(asset).update(x, data=base64.b64decode(x["data"]))
            self._repos[repo.full_name.lower()] = repo

    def save(self, path=None):
        path = path or self.state_file
        with open(path + ".tmp", "w") as f:
            json.dump(self.dump_state(), f)
        os.replace(path + ".tmp", path)

    # -- dispatch -------------------------------------------------------

    def _which(self, request):
        name, _, port = (request.getHeader("host") or "").lower().rpartition(":")
        if not name or not port.isdigit():
            name, port = (request.getHeader("host") or "").lower(), ""
        path, best = request.path.decode("latin-1"), None
        for kind, (bname, bport, prefix, scheme) in self._bases.items():
            want = int(port) if port else (443 if scheme == "https" else 80)
            if (name, want) == (bname, bport) and (path == prefix or path.startswith(prefix + "/")):
                if best is None or len(prefix) > len(best[2]):
                    best = (kind, path[len(prefix):] or "/", prefix)
        return best[:2] if best else (None, path)

    def render(self, request):
        kind, path = self._which(request)
        query = request.uri.decode("latin-1").partition("?")[2]
        if kind == "api" and (path == "/_fake" or path.startswith("/_fake/")):
            return self._send(request, self._control(request, path[6:], query))
        token = self._token_of(request)
        record = {"method": request.method.decode(), "host": kind, "path": path, "query": query,
                  "status": None, "token": token, "counted": False, "repo": None}
        self.requests.append(record)
        if kind is None:
            answer = not_found()
        elif self._failures[kind]:
            failure = self._failures[kind].pop(0)
            if failure == "timeout":
                self.hung.append(request)
                request.notifyFinish().addBoth(lambda _: self.hung.remove(request))
                return NOT_DONE_YET
            answer = self._failure(kind, failure)
        elif kind == "objects":
            answer = self._objects(request, path, query)
        else:
            answer = self._api(request, kind, path, query, token, record)
        record["status"] = answer.status
        return self._send(request, answer)

    def _send(self, request, answer):
        request.setResponseCode(answer.status)
        body = answer.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
            answer.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        if not body:
            request.defaultContentType = None
        return body or b""

    def _failure(self, kind, status):
        if kind == "objects":
            return Answer(status, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                          b"ServiceUnavailable</Code><Message>Please reduce your request rate."
                          b"</Message></Error>", {"Content-Type": "application/xml"})
        if status == 502:   # GitHub's front end answers these in HTML
            return Answer(502, b"<!DOCTYPE html><html><head><title>Unicorn! &middot; GitHub"
                          b"</title></head><body><p>No server is currently available to service "
                          b"your request.</p></body></html>", {"Content-Type": "text/html"})
        return error(status, {500: "Server Error", 503: "Service Unavailable"}.get(status, "Error"))

    def _token_of(self, request):
        value = request.getHeader("authorization")
        if not value:
            return None
        scheme, _, credentials = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                return base64.b64decode(credentials).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return credentials
        return credentials.strip() if scheme in ("bearer", "token") else value

    def _api(self, request, kind, path, query, token, record):
        now = self.clock.seconds()
        if token is not None and token not in self.tokens:
            bucket = self._bucket(None)
            bucket.refresh(now)
            bucket.used += 1
            record["counted"] = True
            answer = error(401, "Bad credentials")
            answer.headers.update(bucket.headers())
            return answer
        bucket = self._bucket(token)
        bucket.refresh(now)
        if path == "/rate_limit" and kind == "api":
            core = {"limit": bucket.limit, "used": bucket.used, "reset": math.ceil(bucket.reset),
                    "remaining": max(0, bucket.limit - bucket.used)}
            return Answer(200, {"resources": {"core": core}, "rate": core}, bucket.headers())
        if now < bucket.secondary_until:
            answer = error(bucket.secondary_status, "You have exceeded a secondary rate limit. "
                           "Please wait a few minutes before you try again.",
                           documentation_url=RATE_DOCS + "#about-secondary-rate-limits")
            answer.headers.update(bucket.headers(),
                                  **{"retry-after": str(math.ceil(bucket.secondary_until - now))})
            return answer
        if bucket.used >= bucket.limit:
            who = (f"user ID {self.tokens[token].user_id}" if token else
                   f"{request.getClientAddress().host}. (But here's the good news: Authenticated "
                   "requests get a higher rate limit. Check out the documentation for more details.)")
            answer = error(403, f"API rate limit exceeded for {who}.", documentation_url=RATE_DOCS)
            answer.headers.update(bucket.headers())
            return answer
        answer = self._dispatch(request, kind, path, query, token, record)
        headers = {"x-github-media-type": "github.v3; format=json",
                   "x-github-api-version-selected": API_VERSION,
                   "x-github-request-id": secrets.token_hex(8).upper(),
                   "vary": "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding"}
        free = False
        if request.method in (b"GET", b"HEAD") and answer.status == 200:
            body = json.dumps(answer.body, separators=(",", ":")).encode()
            answer.body = body
            answer.headers["Content-Type"] = "application/json; charset=utf-8"
            etag = '"%s"' % hashlib.sha256(body).hexdigest()[:32]
            headers["ETag"] = etag
            headers["Cache-Control"] = f"{'private' if token else 'public'}, max-age=60, s-maxage=60"
            wanted = [t.strip().removeprefix("W/") for t in
                      (request.getHeader("if-none-match") or "").split(",") if t.strip()]
            if etag in wanted or "*" in wanted:
                answer = Answer(304)
                free = token is not None   # GitHub: free only when authenticated
        if not free:
            bucket.used += 1
            record["counted"] = True
        answer.headers.update(headers, **bucket.headers())
        return answer

    def _dispatch(self, request, kind, path, query, token, record):
        m = re.match(r"^/repositories/(\d+)(/.*)?$", path)
        if m:
            repo = next((r for r in self._repos.values() if r.id == int(m.group(1))), None)
            if repo is None:
                return not_found()
            path = f"/repos/{quote(repo.owner)}/{quote(repo.name)}{m.group(2) or ''}"
        method = request.method.decode()
        for r_method, r_host, pattern, handler, need in ROUTES:
            match = pattern.match(path)
            if match and r_host == kind and (r_method == method or (method, r_method) == ("HEAD", "GET")):
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                try:
                    repo = self._access(args.pop("owner"), args.pop("repo"), token, need)
                    record["repo"] = repo.full_name
                    params = dict(parse_qsl(query, keep_blank_values=True))
                    return getattr(self, handler)(request, repo, params, token, **args)
                except Answer as answer:
                    return answer
        return not_found()

    def _access(self, owner, name, token, need):
        repo = self._repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise not_found()
        level = self.tokens[token].repos.get(repo.full_name.lower()) if token else None
        if level is None and not repo.private:
            level = "pull"
        if level is None:
            raise not_found()
        if LEVELS.index(level) < LEVELS.index(need):
            if token is None:
                raise error(401, "Requires authentication")
            answer = error(403, "Resource not accessible by personal access token")
            answer.headers["x-accepted-github-permissions"] = "contents=write"
            raise answer
        repo.caller_level = level   # read by this request's handler, synchronously
        return repo

    def _json_body(self, request):
        request.content.seek(0)
        raw = request.content.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise error(400, "Problems parsing JSON")
        if not isinstance(body, dict):
            raise error(422, "Invalid request.\n\nThe request body must be a JSON object.")
        return body

    def _page(self, items, query, link_path):
        """One page of C{items} and its Link header (absolute, on api_base)."""
        def number(name, default):
            try:
                value = int(query.get(name, default))
            except ValueError:
                return default
            return value if value > 0 else default
        per_page, page = min(100, number("per_page", 30)), number("page", 1)
        last = max(1, math.ceil(len(items) / per_page))
        kept = [(k, v) for k, v in query.items() if k != "page"]

        def url(n):
            return f"{self.api_base}{link_path}?{urlencode(kept + [('page', n)])}"
        links = []
        if page > 1:
            links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links.append(f'<{url(1)}>; rel="first"')
        headers = {"Link": ", ".join(links)} if links else {}
        return Answer(200, items[(page - 1) * per_page:page * per_page], headers)

    # -- repositories and git -------------------------------------------

    def _api_url(self, repo, rest=""):
        return f"{self.api_base}/repos/{repo.full_name}{rest}"

    def get_repo(self, request, repo, query, token):
        body = {"id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name,
                "full_name": repo.full_name, "private": repo.private,
                "visibility": "private" if repo.private else "public",
                "owner": {"login": repo.owner, "type": "User"},
                "html_url": f"{self.html_base}/{repo.full_name}", "url": self._api_url(repo),
                "description": None, "fork": False, "archived": False, "disabled": False,
                "default_branch": repo.default_branch,
                "size": sum(len(b) for b in repo.blobs.values()) // 1024}
        if token:
            rank = LEVELS.index(repo.caller_level)
            body["permissions"] = {name: rank >= LEVELS.index(name)
                                   for name in ("admin", "maintain", "push", "triage", "pull")}
        return Answer(200, body)

    def get_tree(self, request, repo, query, token, ref):
        if repo.empty:
            raise error(409, "Git Repository is empty.")
        sha = repo.resolve_tree(ref)
        if sha is None:
            raise not_found()
        entries = []
        for mode, kind, path, obj in repo.walk(sha, "recursive" in query):
            entry = {"path": path, "mode": mode, "type": kind, "sha": obj}
            if kind == "blob":
                entry["size"] = len(repo.blobs[obj])
            entry["url"] = self._api_url(repo, f"/git/{kind}s/{obj}")
            entries.append(entry)
        truncated = len(entries) > self.max_tree_entries
        return Answer(200, {"sha": sha, "url": self._api_url(repo, f"/git/trees/{sha}"),
                            "tree": entries[:self.max_tree_entries], "truncated": truncated})

    def get_blob(self, request, repo, query, token, sha):
        data = repo.blobs.get(sha)
        if data is None:
            raise not_found()
        return Answer(200, {"sha": sha, "node_id": f"B_{sha}", "size": len(data),
                            "url": self._api_url(repo, f"/git/blobs/{sha}"),
                            "content": b64_lines(data), "encoding": "base64"})

    def _ref_json(self, repo, ref, sha):
        return {"ref": ref, "node_id": f"REF_{sha}", "url": self._api_url(repo, "/git/" + ref),
                "object": {"sha": sha, "type": "commit",
                           "url": self._api_url(repo, f"/git/commits/{sha}")}}

    def get_ref(self, request, repo, query, token, ref):
        if repo.empty:
            raise error(409, "Git Repository is empty.")
        kind, _, name = ref.partition("/")
        sha = {"heads": repo.branches, "tags": repo.tags}.get(kind, {}).get(name)
        if sha is None:
            raise not_found()
        return Answer(200, self._ref_json(repo, "refs/" + ref, sha))

    def create_ref(self, request, repo, query, token):
        body = self._json_body(request)
        ref, sha = body.get("ref"), body.get("sha")
        for field, value in (("ref", ref), ("sha", sha)):
            if not isinstance(value, str):
                raise error(422, f"Invalid request.\n\n\"{field}\" wasn't supplied.")
        kind, _, name = ref.removeprefix("refs/").partition("/")
        if not ref.startswith("refs/") or kind not in ("heads", "tags") or not valid_ref_name(name):
            raise error(422, f"{ref} is not a valid ref name.")
        if repo.empty:
            raise error(409, "Git Repository is empty.")
        if sha not in repo.commits:
            raise error(422, "Object does not exist")
        refs = repo.branches if kind == "heads" else repo.tags
        if name in refs:
            raise error(422, "Reference already exists")
        refs[name] = sha
        return Answer(201, self._ref_json(repo, ref, sha),
                      {"Location": self._api_url(repo, "/git/" + ref)})

    def delete_ref(self, request, repo, query, token, ref):
        kind, _, name = ref.partition("/")
        refs = {"heads": repo.branches, "tags": repo.tags}.get(kind, {})
        if name not in refs:
            raise error(422, "Reference does not exist")
        del refs[name]
        return Answer(204)

    # -- contents -------------------------------------------------------

    def _file_json(self, repo, path, sha, size, ref):
        url = self._api_url(repo, f"/contents/{quote(path)}?ref={quote(ref)}")
        html = f"{self.html_base}/{repo.full_name}/blob/{ref}/{path}"
        return {"type": "file", "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha,
                "size": size, "url": url, "html_url": html,
                "git_url": self._api_url(repo, f"/git/blobs/{sha}"), "download_url": None,
                "_links": {"self": url, "git": self._api_url(repo, f"/git/blobs/{sha}"), "html": html}}

    def get_contents(self, request, repo, query, token, path=""):
        if repo.empty:
            raise error(404, "This repository is empty.")
        ref = query.get("ref") or repo.default_branch
        commit = repo.resolve_commit(ref)
        if commit is None:
            raise error(404, f"No commit found for the ref {ref}")
        files, path = repo.commits[commit]["files"], path.strip("/")
        if path in files:
            data, sha = repo.blobs[files[path]], files[path]
            body = self._file_json(repo, path, sha, len(data), ref)
            inline = len(data) <= CONTENTS_MAX_INLINE
            body.update(content=b64_lines(data) if inline else "",
                        encoding="base64" if inline else "none")
            return Answer(200, body)
        tree = repo.commits[commit]["tree"]
        for part in filter(None, path.split("/")):
            tree = next((s for _, k, n, s in repo.trees[tree] if n == part and k == "tree"), None)
            if tree is None:
                raise not_found()
        listing = []
        for _, kind, name, sha in repo.walk(tree, False):
            full = f"{path}/{name}" if path else name
            entry = self._file_json(repo, full, sha, len(repo.blobs[sha]) if kind == "blob" else 0, ref)
            entry["type"] = "file" if kind == "blob" else "dir"
            listing.append(entry)
        return Answer(200, listing)

    def _commit_json(self, repo, sha):
        c = repo.commits[sha]
        return {"sha": sha, "node_id": f"C_{sha}", "message": c["message"],
                "url": self._api_url(repo, f"/git/commits/{sha}"),
                "html_url": f"{self.html_base}/{repo.full_name}/commit/{sha}",
                "tree": {"sha": c["tree"], "url": self._api_url(repo, f"/git/trees/{c['tree']}")},
                "parents": [{"sha": p, "url": self._api_url(repo, f"/git/commits/{p}")}
                            for p in c["parents"]]}

    def _change_file(self, request, repo, path, delete):
        body = self._json_body(request)
        if not isinstance(body.get("message"), str):
            raise error(422, "Invalid request.\n\n\"message\" wasn't supplied.")
        data = None
        if not delete:
            if not isinstance(body.get("content"), str):
                raise error(422, "Invalid request.\n\n\"content\" wasn't supplied.")
            try:
                data = base64.b64decode(re.sub(r"\s", "", body["content"]), validate=True)
            except binascii.Error:
                raise error(422, "content is not valid Base64")
        path = path.strip("/")
        branch = body.get("branch") or repo.default_branch
        if repo.empty:
            if delete:
                raise error(404, "This repository is empty.")
            sha = repo.commit(branch, {path: data}, body["message"])
            return Answer(201, {"content": self._file_json(repo, path, blob_sha(data), len(data), branch),
                                "commit": self._commit_json(repo, sha)})
        if branch not in repo.branches:
            raise error(404, f"Branch {branch} not found")
        parent = repo.branches[branch]
        files = dict(repo.commits[parent]["files"])
        current = files.get(path)
        if current is None and delete:
            raise not_found()
        if current is not None:
            given = body.get("sha")
            if not given:
                raise error(422, "Invalid request.\n\n\"sha\" wasn't supplied.")
            if given != current:
                raise error(409, f"{path} does not match {given}")
        if delete:
            del files[path]
        else:
            files[path] = data
        sha = repo.commit(branch, files, body["message"], parent)
        if delete:
            return Answer(200, {"content": None, "commit": self._commit_json(repo, sha)})
        return Answer(200 if current else 201,
                      {"content": self._file_json(repo, path, blob_sha(data), len(data), branch),
                       "commit": self._commit_json(repo, sha)})

    def put_contents(self, request, repo, query, token, path):
        return self._change_file(request, repo, path, delete=False)

    def delete_contents(self, request, repo, query, token, path):
        return self._change_file(request, repo, path, delete=True)

    # -- releases -------------------------------------------------------

    def _assets_of(self, repo, release):
        return [a for a in repo.assets.values() if a.release_id == release.id]

    def _asset_json(self, repo, asset):
        tag = repo.releases[asset.release_id].tag_name
        return {"url": self._api_url(repo, f"/releases/assets/{asset.id}"), "id": asset.id,
                "node_id": f"RA_{asset.id}", "name": asset.name, "label": asset.label,
                "uploader": {"login": asset.uploader}, "content_type": asset.content_type,
                "state": "uploaded", "size": len(asset.data), "digest": asset.digest,
                "download_count": asset.download_count, "created_at": iso(asset.created_at),
                "updated_at": iso(asset.updated_at),
                "browser_download_url": f"{self.html_base}/{repo.full_name}/releases/download/"
                                        f"{quote(tag)}/{quote(asset.name)}"}

    def _release_json(self, repo, r):
        api = self._api_url(repo, f"/releases/{r.id}")
        return {"url": api, "html_url": f"{self.html_base}/{repo.full_name}/releases/tag/{quote(r.tag_name)}",
                "assets_url": api + "/assets", "id": r.id, "node_id": f"RE_{r.id}",
                "upload_url": f"{self.uploads_base}/repos/{repo.full_name}/releases/{r.id}/assets{{?name,label}}",
                "tarball_url": self._api_url(repo, f"/tarball/{quote(r.tag_name)}"),
                "zipball_url": self._api_url(repo, f"/zipball/{quote(r.tag_name)}"),
                "tag_name": r.tag_name, "target_commitish": r.target_commitish, "name": r.name,
                "body": r.body, "draft": r.draft, "prerelease": r.prerelease,
                "created_at": iso(r.created_at), "author": {"login": r.author},
                "published_at": iso(r.published_at) if r.published_at is not None else None,
                "assets": [self._asset_json(repo, a) for a in self._assets_of(repo, r)]}

    def _visible(self, repo, release):
        return not release.draft or LEVELS.index(repo.caller_level) >= LEVELS.index("push")

    def _release(self, repo, release_id):
        release = repo.releases.get(int(release_id))
        if release is None or not self._visible(repo, release):
            raise not_found()
        return release

    def _publish(self, repo, release, tag, target):
        """Checks (and tag creation) for a release that is not a draft."""
        if repo.empty:
            raise invalid("Release", "custom", message="Repository is empty.")
        if any(r.tag_name == tag and not r.draft and r is not release for r in repo.releases.values()):
            raise invalid("Release", "already_exists", "tag_name")
        if tag not in repo.tags:
            commit = repo.resolve_commit(target)
            if commit is None:
                raise invalid("Release", "invalid", "target_commitish")
            repo.tags[tag] = commit

    def create_release(self, request, repo, query, token):
        body = self._json_body(request)
        tag = body.get("tag_name")
        if not isinstance(tag, str) or not tag:
            raise invalid("Release", "missing_field", "tag_name")
        if not valid_ref_name(tag):
            raise invalid("Release", "custom", "tag_name", "tag_name is not a valid tag")
        draft = bool(body.get("draft", False))
        target = body.get("target_commitish") or repo.default_branch
        if not draft:
            self._publish(repo, None, tag, target)
        elif any(r.tag_name == tag and not r.draft for r in repo.releases.values()):
            raise invalid("Release", "already_exists", "tag_name")
        release = Release(next(self._ids), tag, target, body.get("name"), body.get("body"), draft,
                          bool(body.get("prerelease", False)), self.clock.seconds(),
                          self.tokens[token].user)
        repo.releases[release.id] = release
        return Answer(201, self._release_json(repo, release),
                      {"Location": self._api_url(repo, f"/releases/{release.id}")})

    def update_release(self, request, repo, query, token, id):
        release, body = self._release(repo, id), self._json_body(request)
        tag = body.get("tag_name", release.tag_name)
        draft = bool(body.get("draft", release.draft))
        target = body.get("target_commitish", release.target_commitish)
        if not draft:
            self._publish(repo, release, tag, target)
        if release.draft and not draft:
            release.published_at = self.clock.seconds()
        release.tag_name, release.draft, release.target_commitish = tag, draft, target
        for field in ("name", "body", "prerelease"):
            if field in body:
                setattr(release, field, body[field])
        return Answer(200, self._release_json(repo, release))

    def list_releases(self, request, repo, query, token):
        items = [self._release_json(repo, r) for r in sorted(repo.releases.values(), key=lambda r: -r.id)
                 if self._visible(repo, r)]
        return self._page(items, query, f"/repositories/{repo.id}/releases")

    def get_release(self, request, repo, query, token, id):
        return Answer(200, self._release_json(repo, self._release(repo, id)))

    def latest_release(self, request, repo, query, token):
        published = [r for r in repo.releases.values() if not r.draft and not r.prerelease]
        if not published:
            raise not_found()
        return Answer(200, self._release_json(repo, max(published, key=lambda r: r.id)))

    def release_by_tag(self, request, repo, query, token, tag):
        release = repo.release_by_tag(tag)
        if release is None:
            raise not_found()
        return Answer(200, self._release_json(repo, release))

    def delete_release(self, request, repo, query, token, id):
        release = self._release(repo, id)
        for asset in self._assets_of(repo, release):
            del repo.assets[asset.id]
        del repo.releases[release.id]
        return Answer(204)

    # -- assets ---------------------------------------------------------

    def list_assets(self, request, repo, query, token, id):
        release = self._release(repo, id)
        items = [self._asset_json(repo, a) for a in self._assets_of(repo, release)]
        return self._page(items, query, f"/repositories/{repo.id}/releases/{release.id}/assets")

    def _asset(self, repo, asset_id):
        asset = repo.assets.get(int(asset_id))
        if asset is None or not self._visible(repo, repo.releases[asset.release_id]):
            raise not_found()
        return asset

    def get_asset(self, request, repo, query, token, id):
        asset = self._asset(repo, id)
        if "application/octet-stream" not in (request.getHeader("accept") or ""):
            return Answer(200, self._asset_json(repo, asset))
        path = f"/github-production-release-asset/{repo.id}/{asset.key}"
        date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock.seconds()))
        params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                  "X-Amz-Credential": f"FAKEKEY/{date[:8]}/us-east-1/s3/aws4_request",
                  "X-Amz-Date": date, "X-Amz-Expires": str(SIGNED_URL_TTL),
                  "X-Amz-SignedHeaders": "host", "actor_id": "0", "key_id": "0",
                  "repo_id": str(repo.id),
                  "response-content-disposition": f"attachment; filename={asset.name}",
                  "response-content-type": "application/octet-stream"}
        params["X-Amz-Signature"] = self._sign(path, params)
        return Answer(302, b"", {"Location": f"{self.objects_base}{path}?{urlencode(params)}"})

    def _sign(self, path, params):
        text = path + "?" + urlencode(sorted((k, v) for k, v in params.items() if k != "X-Amz-Signature"))
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def delete_asset(self, request, repo, query, token, id):
        del repo.assets[self._asset(repo, id).id]
        return Answer(204)

    def upload_asset(self, request, repo, query, token, id):
        if request.getHeader("content-length") is None:
            raise error(411, "Length Required")
        release = self._release(repo, id)
        content_type = request.getHeader("content-type")
        if not content_type:
            raise invalid("ReleaseAsset", "missing_field", "content_type")
        name = asset_name(query.get("name", ""))
        if not name:
            raise invalid("ReleaseAsset", "missing_field", "name")
        if any(a.name == name for a in self._assets_of(repo, release)):
            raise invalid("ReleaseAsset", "already_exists", "name")
        data, content = bytearray(), request.content
        content.seek(0)
        while chunk := content.read(CHUNK):
            data += chunk
        asset = Asset(next(self._ids), release.id, name, query.get("label") or None, content_type,
                      bytes(data), self.clock.seconds(), self.tokens[token].user)
        del data
        repo.assets[asset.id] = asset
        return Answer(201, self._asset_json(repo, asset))

    # -- the object store -----------------------------------------------

    def _objects(self, request, path, query):
        def s3(status, code, message):
            return Answer(status, f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}'
                          f'</Code><Message>{message}</Message></Error>'.encode(),
                          {"Content-Type": "application/xml"})
        if request.getHeader("authorization") is not None:
            return s3(400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                      "X-Amz-Algorithm query parameter, Signature query string parameter or the "
                      "Authorization header should be specified")
        if request.method not in (b"GET", b"HEAD"):
            return s3(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        params = dict(parse_qsl(query))
        given = params.get("X-Amz-Signature", "")
        if not hmac.compare_digest(given, self._sign(path, params)):
            return s3(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                      "match the signature you provided.")
        start = calendar.timegm(time.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
        if self.clock.seconds() > start + int(params["X-Amz-Expires"]):
            return s3(403, "AccessDenied", "Request has expired")
        key = path.rsplit("/", 1)[-1]
        asset = next((a for repo in self._repos.values() for a in repo.assets.values()
                      if a.key == key), None)
        if asset is None:
            return s3(404, "NoSuchKey", "The specified key does not exist.")
        data, headers = asset.data, {
            "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
            "ETag": '"%s"' % hashlib.md5(asset.data).hexdigest(),
            "Content-Disposition": params.get("response-content-disposition", "attachment")}
        status = 200
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", request.getHeader("range") or "")
        if m and m.group(1) + m.group(2):
            size = len(data)
            first = int(m.group(1)) if m.group(1) else max(0, size - int(m.group(2)))
            last = min(size - 1, int(m.group(2))) if m.group(1) and m.group(2) else size - 1
            if first >= size or first > last:
                return s3(416, "InvalidRange", "The requested range is not satisfiable")
            status, data = 206, data[first:last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        if request.method == b"GET":
            asset.download_count += 1
        return Answer(status, data, headers)

    # -- control over HTTP ----------------------------------------------

    def _control(self, request, path, query):
        try:
            body = self._json_body(request) if request.method == b"POST" else {}
            b64 = lambda m: {k: base64.b64decode(v) for k, v in (m or {}).items()}  # noqa: E731
            if (request.method, path) == (b"GET", "/requests"):
                return Answer(200, self.requests)
            if (request.method, path) == (b"GET", "/state"):
                return Answer(200, self.summary())
            if request.method != b"POST":
                return not_found()
            if path == "/repos":
                repo = self.add_repo(body["owner"], body["name"], body.get("private", True),
                                     body.get("default_branch", "main"), body.get("empty", True))
                return Answer(201, {"id": repo.id, "full_name": repo.full_name})
            if path == "/tokens":
                self.add_token(body["token"], body["user"], body.get("repos"))
            elif path == "/commit":
                sha = self.commit_files(body["repo"], b64(body["files"]), body.get("branch"),
                                        body.get("message", "seed"))
                return Answer(201, {"sha": sha})
            elif path == "/releases":
                release = self.add_release(body["repo"], body["tag_name"], b64(body.get("assets")),
                                           body.get("draft", False), body.get("prerelease", False))
                return Answer(201, {"id": release.id})
            elif path == "/fail":
                self.fail_next(body["count"], body.get("status", 502), body.get("host", "api"),
                               body.get("timeout", False))
            elif path == "/ratelimit":
                self.exhaust_rate_limit(body.get("token"), body.get("reset_in", 60),
                                        body.get("secondary", False), body.get("status", 429))
            elif path == "/limit":
                self.set_rate_limit(body["limit"], body.get("token"))
            elif path == "/reset_counts":
                self.reset_counts()
            elif path == "/save" and self.state_file:
                self.save()
            else:
                return not_found()
            return Answer(200, {"ok": True})
        except Answer as answer:
            return answer
        except (KeyError, ValueError, TypeError, binascii.Error) as e:
            return error(400, f"bad control request: {type(e).__name__}: {e}")


ROUTES = [
    _route("GET", "api", "{repo}", "get_repo"),
    _route("GET", "api", "{repo}/git/trees/(?P<ref>.+)", "get_tree"),
    _route("GET", "api", "{repo}/git/blobs/(?P<sha>[0-9a-f]{40})", "get_blob"),
    _route("GET", "api", "{repo}/git/ref/(?P<ref>.+)", "get_ref"),
    _route("POST", "api", "{repo}/git/refs", "create_ref", "push"),
    _route("DELETE", "api", "{repo}/git/refs/(?P<ref>.+)", "delete_ref", "push"),
    _route("GET", "api", "{repo}/contents(?:/(?P<path>.*))?", "get_contents"),
    _route("PUT", "api", "{repo}/contents/(?P<path>.+)", "put_contents", "push"),
    _route("DELETE", "api", "{repo}/contents/(?P<path>.+)", "delete_contents", "push"),
    _route("GET", "api", "{repo}/releases", "list_releases"),
    _route("POST", "api", "{repo}/releases", "create_release", "push"),
    _route("GET", "api", "{repo}/releases/latest", "latest_release"),
    _route("GET", "api", "{repo}/releases/tags/(?P<tag>.+)", "release_by_tag"),
    _route("GET", "api", r"{repo}/releases/(?P<id>\d+)", "get_release"),
    _route("PATCH", "api", r"{repo}/releases/(?P<id>\d+)", "update_release", "push"),
    _route("DELETE", "api", r"{repo}/releases/(?P<id>\d+)", "delete_release", "push"),
    _route("GET", "api", r"{repo}/releases/(?P<id>\d+)/assets", "list_assets"),
    _route("GET", "api", r"{repo}/releases/assets/(?P<id>\d+)", "get_asset"),
    _route("DELETE", "api", r"{repo}/releases/assets/(?P<id>\d+)", "delete_asset", "push"),
    _route("POST", "uploads", r"{repo}/releases/(?P<id>\d+)/assets", "upload_asset", "push"),
]


class FakeGitHubProcess:
    """
    C{python -m tests.fake_github} as a subprocess on loopback (API on .1,
    uploads on .2, objects on .3), with its /_fake/ control API: for the
    tests that need a live daemon to talk to the fake.
    """

    def __init__(self, log_path, *args):
        import select
        import subprocess
        self.log = open(log_path, "ab")
        project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_github", "--port", "0", *args],
            cwd=project, stdout=subprocess.PIPE, stderr=self.log)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        m = re.fullmatch(r"listening on (\d+)\n", line)
        if not m:
            self.stop()
            raise AssertionError(f"the fake GitHub did not start: {line!r}")
        self.port = int(m.group(1))
        self.api, self.uploads, self.objects = (
            f"http://127.0.0.{i}:{self.port}" for i in (1, 2, 3))

    def control(self, path, body=None):
        """GET (no body) or POST a /_fake/ endpoint; its JSON answer."""
        import http.client
        conn = http.client.HTTPConnection(f"127.0.0.1:{self.port}", timeout=10)
        try:
            if body is None:
                conn.request("GET", f"/_fake/{path}")
            else:
                conn.request("POST", f"/_fake/{path}", json.dumps(body),
                             {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        assert r.status in (200, 201), (path, r.status, data)
        return json.loads(data)

    def stop(self):
        import signal
        import subprocess
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.fake_github", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file")
    parser.add_argument("--rate-limit", type=int, default=5000)
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    site = Site(Resource())
    for attempt in range(20):   # port 0: the kernel's pick on .1 must be free on .2 and .3
        ports = [reactor.listenTCP(args.port, site, interface="127.0.0.1")]
        port = ports[0].getHost().port
        try:
            ports += [reactor.listenTCP(port, site, interface=ip) for ip in ("127.0.0.2", "127.0.0.3")]
            break
        except CannotListenError:
            for p in ports:
                p.stopListening()
            if args.port or attempt == 19:
                raise
    fake = FakeGitHub(f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port}",
                      f"http://127.0.0.3:{port}", reactor, rate_limit=args.rate_limit)
    site.resource = fake
    if args.state_file:
        fake.state_file = args.state_file
        if os.path.exists(args.state_file):
            with open(args.state_file) as f:
                fake.load_state(json.load(f))
        reactor.addSystemEventTrigger("before", "shutdown", fake.save)
    print(f"listening on {port}", flush=True)
    reactor.run()   # SIGTERM and SIGINT stop it (and save the state first)


if __name__ == "__main__":
    main()
