"""
The proxy backend: a cached, read-only mirror of another index (pypi.org by
default, or any PEP 503/691 index, with credentials for a private one).

Project pages are fetched on demand (preferring PEP 691 JSON), parsed into
values (L{pages}) and kept for C{page_ttl} seconds, then revalidated with
C{If-None-Match}/C{If-Modified-Since}; while the upstream is down or slow,
the last page is served however old. Files and their core metadata are
fetched on first request, checked against the upstream's sha256, and then
served from disk for good (L{cache}), within C{max_cache_bytes}.

It is a L{ppypi.backends.interface.Backend} whose listing is what it has
cached, and a L{ppypi.backends.interface.Mirror}: the repository asks it
for a project's page when a client does. Its parts: L{pages} (the
upstream's pages read as data), L{cache} (the file cache and single-flight
fetches), L{files} (downloads and core metadata).
"""

import base64
import json
import os
import re
import time
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..interface import BackendError, Listing, ReadOnly
from ..local import MetadataStore, empty_incoming, write_atomically
from ..registry import BackendType, register
from . import pages
from .cache import FileCache
from .files import MirrorFiles

PAGE_TIMEOUT = 10.0     # seconds to wait for the upstream's page before serving the cached one
DEFAULT_UPSTREAM = "https://pypi.org/simple/"
DEFAULT_PAGE_TTL = 600


class ProjectView:
    """
    What the mirror knows of one project: its files (L{DistFile}s), its
    yanks ({version: reason}), when the page was last confirmed upstream,
    and why it is stale (None when it is not).
    """

    def __init__(self, files, yanks, checked_at, stale=None):
        self.files = files
        self.yanks = yanks
        self.checked_at = checked_at
        self.stale = stale


class CachedPage:
    def __init__(self, project, entries, etag=None, last_modified=None, checked_at=0.0):
        self.project = project
        self.entries = entries
        self.etag = etag
        self.last_modified = last_modified
        self.checked_at = checked_at

    def to_json(self):
        return {"project": self.project, "etag": self.etag, "last_modified": self.last_modified,
                "checked_at": self.checked_at, "files": [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, data):
        return cls(data["project"], [pages.Entry.from_json(e) for e in data["files"]],
                   data.get("etag"), data.get("last_modified"), data.get("checked_at", 0.0))


class ProxyBackend(MirrorFiles):
    """
    @param http: a treq C{HTTPClient}.
    @param min_age: seconds; files uploaded upstream more recently are hidden.
    """

    log = Logger()

    def __init__(self, name, upstream, http, state_dir, folder, run_in_thread, clock,
                 page_ttl=DEFAULT_PAGE_TTL, max_cache_bytes=None, min_age=0,
                 credentials=None, metrics=None):
        self.name = name
        self.upstream = upstream
        self.http = http
        self.state_dir = state_dir
        self.incoming_dir = os.path.join(state_dir, "incoming")
        self.pages_dir = os.path.join(state_dir, "pages")
        self.page_ttl = page_ttl
        self.min_age = min_age
        self._run = run_in_thread
        self._clock = clock
        self._auth = None
        if credentials is not None:
            user, password = credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._auth = f"Basic {token}"
        self.metadata = MetadataStore(os.path.join(state_dir, "metadata"))
        self.cache = FileCache(folder, max_cache_bytes)
        self.cache.on_kept = self._kept
        self.pages = None           # project -> CachedPage, once loaded
        self._lookups = {}          # project -> waiters of a page fetch in flight
        self._metadata_fetches = {}  # sha256 -> waiters of a metadata fetch in flight
        # Counters for /health and /metrics.
        self.counts = {"page_hits": 0, "page_fetches": 0, "page_revalidated": 0,
                       "file_hits": 0, "file_fetches": 0, "upstream_errors": 0,
                       "upstream_requests": 0, "stale_served": 0}

    # -- the interface

    def prepare(self):
        os.makedirs(self.pages_dir, exist_ok=True)
        removed = empty_incoming(self.incoming_dir)
        self.cache.load()
        return removed

    def describe(self):
        return f"mirror of {self.upstream}"

    def status(self):
        return {"upstream": self.upstream, "cached_projects": len(self.pages or ()),
                "cache_bytes": self.cache.total, "cached_files": len(self.cache.usage),
                "evicted": self.cache.evicted, **self.counts}

    async def permissions(self, token):
        return None

    async def list_files(self):
        if self.pages is None:
            self.pages = await self._run(self._load_pages)
        files = []
        for page in self.pages.values():
            files.extend(self._dists(page))
        return Listing(files)

    async def load_yanks(self):
        return {project: yanks for project, page in (self.pages or {}).items()
                if (yanks := self._yanks(page))}

    async def set_yank(self, project, version, reason, principal=None):
        raise ReadOnly(f"repository {self.name} mirrors {self.upstream}: yank there")

    async def load_statuses(self):
        # Not passed on from the upstream: pypi.org offers no files of a
        # quarantined project, so neither does a mirror of it.
        return {}

    async def set_status(self, project, status, reason, principal=None):
        raise ReadOnly(f"repository {self.name} mirrors {self.upstream}: set statuses there")

    async def read_provenance(self, dist):
        return None  # the upstream's are the upstream's to serve

    async def load_held(self):
        return set()  # a mirror holds nothing of its own

    async def save_held(self, names):
        pass

    async def load_tokens(self):
        return {}  # nothing can be uploaded here

    async def update_tokens(self, change):
        raise ReadOnly(f"repository {self.name} is a read-only mirror: it takes no tokens")

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        raise ReadOnly(f"repository {self.name} is a read-only mirror of {self.upstream}; "
                       "upload to a hosted repository")

    async def delete(self, dist, principal=None):
        raise ReadOnly(f"repository {self.name} is a read-only mirror of {self.upstream}")

    # -- pages

    def _load_pages(self):
        found = {}
        for name in os.listdir(self.pages_dir):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.pages_dir, name), "rb") as f:
                    page = CachedPage.from_json(json.load(f))
                found[page.project] = page
            except (ValueError, KeyError, TypeError, OSError) as e:
                self.log.warn("repository {repo}: cached page {name} unreadable ({e}); "
                              "fetched again when asked", repo=self.name, name=name, e=e)
        return found

    def _save_page(self, page):
        write_atomically(os.path.join(self.pages_dir, f"{page.project}.json"),
                         json.dumps(page.to_json(), separators=(",", ":")).encode(),
                         sync=False)

    def _forget_page(self, project):
        try:
            os.unlink(os.path.join(self.pages_dir, f"{project}.json"))
        except FileNotFoundError:
            pass

    def _visible(self, entry):
        if not self.min_age or entry.upload_time is None:
            return True
        return entry.upload_time <= time.time() - self.min_age

    def _dists(self, page):
        out = []
        for entry in page.entries:
            if self._visible(entry):
                try:
                    out.append(entry.dist(page.checked_at))
                except ValueError:
                    continue
        return out

    def _yanks(self, page):
        """PEP 592 per release: a version is yanked when its files are (first reason)."""
        yanks = {}
        for entry in page.entries:
            if entry.yanked is not None and self._visible(entry):
                try:
                    version = entry.dist(page.checked_at).version
                except ValueError:
                    continue
                yanks.setdefault(version, entry.yanked)
        return yanks

    def _view(self, page, stale=None):
        return ProjectView(self._dists(page), self._yanks(page), page.checked_at, stale)

    def _headers(self, url):
        headers = {"User-Agent": ["ppypi (mirror)"]}
        # Credentials go only to the upstream's own host (never to a files host).
        if self._auth is not None and urlsplit(url).netloc == urlsplit(self.upstream).netloc:
            headers["Authorization"] = [self._auth]
        return headers

    async def fetch_project(self, project):
        """
        The project's page from the upstream (revalidated if cached), as a
        L{ProjectView}; None when the upstream has no such project.
        Concurrent calls for one project share one request.

        @raise BackendError: the upstream failed and nothing is cached.
        """
        if self.pages is None:
            self.pages = await self._run(self._load_pages)
        waiter = Deferred()
        waiting = self._lookups.get(project)
        if waiting is None:
            self._lookups[project] = waiting = [waiter]
            Deferred.fromCoroutine(self._fetch_project(project)).addBoth(
                self._looked_up, project)
        else:
            waiting.append(waiter)
        return await waiter

    def _looked_up(self, result, project):
        for waiter in self._lookups.pop(project, ()):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _fetch_project(self, project):
        cached = self.pages.get(project)
        url = f"{self.upstream}{quote(project)}/"
        headers = self._headers(url)
        headers["Accept"] = [pages.ACCEPT]
        if cached is not None:
            if cached.etag:
                headers["If-None-Match"] = [cached.etag]
            if cached.last_modified:
                headers["If-Modified-Since"] = [cached.last_modified]
        self.counts["upstream_requests"] += 1
        try:
            response = await self.http.get(url, headers=headers, timeout=PAGE_TIMEOUT,
                                           allow_redirects=True)
            body = await response.content() if response.code == 200 else b""
            if response.code not in (200, 304):
                await response.content()
        except Exception as e:
            return self._upstream_failed(project, cached, f"{type(e).__name__}: {e}")
        now = time.time()
        if response.code == 304 and cached is not None:
            cached.checked_at = now
            self.counts["page_revalidated"] += 1
            await self._run(self._save_page, cached)
            return self._view(cached)
        if response.code in (404, 410):
            if cached is not None:
                del self.pages[project]
                await self._run(self._forget_page, project)
            return None
        if response.code != 200:
            return self._upstream_failed(project, cached, f"the upstream answered {response.code}")
        content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
        try:
            entries = pages.parse(project, content_type, body, url)
        except pages.PageError as e:
            return self._upstream_failed(project, cached, f"its page is unusable ({e})")
        page = CachedPage(project, entries,
                          (response.headers.getRawHeaders("etag") or [None])[0],
                          (response.headers.getRawHeaders("last-modified") or [None])[0], now)
        self.pages[project] = page
        self.counts["page_fetches"] += 1
        await self._run(self._save_page, page)
        return self._view(page)

    def _upstream_failed(self, project, cached, why):
        self.counts["upstream_errors"] += 1
        if cached is None:
            raise BackendError(f"the upstream {self.upstream} failed for {project}: {why}",
                               retry_after=30)
        self.counts["stale_served"] += 1
        age = int(time.time() - cached.checked_at)
        self.log.warn("repository {repo}: the upstream failed for {project} ({why}); "
                      "serving the page cached {age}s ago", repo=self.name, project=project,
                      why=why, age=age)
        return self._view(cached, stale=f"upstream failing ({why}); page from {age}s ago")

    async def forget_project(self, project):
        """Drop a project's cached page (its files stay: they never change)."""
        if self.pages is not None and self.pages.pop(project, None) is not None:
            await self._run(self._forget_page, project)
            return True
        return False


# -- the kind of repository ---------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value):
    """Seconds of "7d", "12h", "30m", "90s", "3600" or a number; ValueError else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(value)


def _settings(checker, spec, key, root):
    out = SimpleNamespace()
    upstream = checker.string(spec.get("upstream", DEFAULT_UPSTREAM), f"{key}.upstream")
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        checker.fail(f"{key}.upstream", "must be an http(s) URL of an index (…/simple/)")
    if parts.username or parts.password:
        checker.fail(f"{key}.upstream", "must not carry credentials: put them in the "
                     "admin secret ({username, password})")
    out.upstream = upstream if upstream.endswith("/") else upstream + "/"
    out.page_ttl = float(checker.number(spec.get("page_ttl", DEFAULT_PAGE_TTL),
                                        f"{key}.page_ttl", minimum=0))
    path = checker.string(spec.get("path", os.path.join(".ppypi", "cache", key.split(".")[-1])),
                          f"{key}.path")
    out.path = os.path.abspath(os.path.join(root, path))
    budget = spec.get("max_cache_bytes")
    out.max_cache_bytes = None if budget is None else int(
        checker.number(budget, f"{key}.max_cache_bytes", integer=True, minimum=0))
    try:
        out.min_age = parse_duration(spec.get("min_age", 0))
    except ValueError:
        checker.fail(f"{key}.min_age", "must be a duration such as 7d, 12h, 30m or seconds")
    return out


def _create(context):
    rc = context.config
    s = rc.settings
    credentials = None
    if rc.admin_secret is not None:
        value = rc.admin_secret.value
        if isinstance(value, dict):
            credentials = (value["username"], value["password"])
        else:
            # A raw token: pypi.org's convention, the username __token__.
            credentials = ("__token__", value)
    http = context.http
    if http is None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool
        pool = HTTPConnectionPool(context.clock)
        pool.maxPersistentPerHost = 8
        http = HTTPClient(Agent(context.clock, pool=pool))
    return ProxyBackend(rc.name, s.upstream, http, context.state_dir, s.path,
                        context.run_in_thread, context.clock, s.page_ttl, s.max_cache_bytes,
                        s.min_age, credentials)


PROXY = register(BackendType(
    "proxy", keys={"upstream", "page_ttl", "path", "max_cache_bytes", "min_age"},
    settings=_settings, factory=_create, secret_keys={"username", "password"},
    secret_required={"username", "password"}, mirror=True))
