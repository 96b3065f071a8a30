"""
A small client for GitHub's REST API: every request through one injected
treq C{HTTPClient}, with a timeout, bounded retries with backoff for 5xx and
connection errors, and rate limits respected (no request is sent while
GitHub has said to wait).
"""

import json
import re

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web._newclient import RequestNotSent, RequestTransmissionFailed, ResponseFailed
from twisted.web.client import ResponseNeverReceived

from ..interface import BackendError, RateLimited as _RateLimited

API_VERSION = "2022-11-28"
USER_AGENT = "ppypi"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
_TRANSIENT = (ConnectError, ConnectionLost, DNSLookupError, TimeoutError, CancelledError,
              ResponseNeverReceived, ResponseFailed, RequestNotSent, RequestTransmissionFailed)
_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubError(BackendError):
    """GitHub answered with an error (after retries, for transient ones)."""

    def __init__(self, status, message, body=None):
        super().__init__(f"GitHub answered {status}: {message}")
        self.status = status
        self.message = message
        self.body = body or {}

    def has_error_code(self, code):
        """Is C{code} (e.g. "already_exists") among a 422's errors?"""
        return any(isinstance(e, dict) and e.get("code") == code
                   for e in self.body.get("errors", []) or [])


class RateLimited(_RateLimited):
    """GitHub asked us to wait; C{retry_after} seconds from now."""

    def __init__(self, retry_after):
        super().__init__(retry_after, f"GitHub rate limit: retry in {int(retry_after)}s")


class Unreachable(BackendError):
    """No answer from GitHub (after retries)."""


class Response:
    """A finished response: status, headers and the whole body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body) if self.body else None


class GitHubAPI:
    """
    @param http: a treq C{HTTPClient} (or C{StubTreq} in tests).
    @param clock: C{IReactorTime}: timeouts, backoff and rate-limit pauses.
    """

    log = Logger()

    def __init__(self, http, api_url, clock, timeout=30.0, retries=3, backoff=0.5):
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.clock = clock
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._blocked_until = {}   # token (or None) -> clock time
        self.calls = 0
        self.on_retry = lambda: None

    def url(self, path):
        return path if path.startswith(("http://", "https://")) else self.api_url + path

    def blocked_for(self, token):
        """Seconds until GitHub lets C{token} make requests again (0: now)."""
        return max(0.0, self._blocked_until.get(token, 0.0) - self.clock.seconds())

    def _note_rate_limit(self, token, response):
        status = response.status
        retry_after = response.header("retry-after")
        remaining = response.header("x-ratelimit-remaining")
        if status not in (403, 429):
            return False
        if retry_after is not None:
            try:
                wait = float(retry_after)
            except ValueError:
                wait = 60.0
        elif remaining == "0":
            try:
                wait = float(response.header("x-ratelimit-reset")) - self.clock.seconds()
            except (TypeError, ValueError):
                wait = 60.0
        elif status == 429:
            wait = 60.0
        else:
            return False  # a plain 403: permissions, not rate limits
        self._blocked_until[token] = self.clock.seconds() + max(1.0, wait)
        self.log.warn("GitHub rate limit reached; pausing {seconds:.0f}s", seconds=max(1.0, wait))
        return True

    async def request(self, method, path, token=None, *, json_body=None, data=None,
                      headers=None, etag=None, ok=(200,), timeout=None, accept=None,
                      retry=True):
        """
        One API call. Returns a L{Response} whose status is in C{ok} (304 is
        returned when C{etag} is given and matches).

        @raise RateLimited: GitHub asked to wait (or still does).
        @raise GitHubError: another answer not in C{ok}.
        @raise Unreachable: no answer after the retries.
        """
        wait = self.blocked_for(token)
        if wait > 0:
            raise RateLimited(wait)
        all_headers = {
            "Accept": accept or "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if etag:
            all_headers["If-None-Match"] = etag
        all_headers.update(headers or {})
        attempts = self.retries if retry else 1
        last_problem = None
        for attempt in range(attempts):
            if attempt:
                self.on_retry()
                await deferLater(self.clock, self.backoff * (2 ** (attempt - 1)), lambda: None)
                if hasattr(data, "seek"):
                    data.seek(0)
            kwargs = {}
            if json_body is not None:
                kwargs["json"] = json_body
            if data is not None:
                kwargs["data"] = data
            self.calls += 1
            try:
                raw = await self.http.request(
                    method, self.url(path), headers=all_headers, allow_redirects=False,
                    timeout=timeout or self.timeout, reactor=self.clock, **kwargs)
                body = await raw.content()
            except _TRANSIENT as e:
                last_problem = f"{type(e).__name__}: {e}"
                continue
            response = Response(raw.code, raw.headers, body)
            if response.status in ok or (etag and response.status == 304):
                return response
            if self._note_rate_limit(token, response):
                raise RateLimited(self.blocked_for(token))
            if response.status in RETRY_STATUSES:
                last_problem = f"HTTP {response.status}"
                continue
            try:
                parsed = response.json() or {}
            except ValueError:
                parsed = {}
            message = parsed.get("message") if isinstance(parsed, dict) else None
            raise GitHubError(response.status, message or f"HTTP {response.status}",
                              parsed if isinstance(parsed, dict) else {})
        raise Unreachable(f"GitHub {method} {path}: {last_problem} (after {attempts} tries)")

    async def paginate(self, path, token=None):
        """Every item of a paginated list (following Link: rel="next")."""
        url = path + ("&" if "?" in path else "?") + "per_page=100"
        items = []
        while url:
            response = await self.request("GET", url, token)
            items.extend(response.json())
            match = _LINK_NEXT.search(response.header("link") or "")
            url = match.group(1) if match else None
        return items
