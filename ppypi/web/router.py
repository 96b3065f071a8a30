"""
What every part of the web layer shares: L{Router}, a Klein with the
errors mapped to answers in one place and the permission a route needs
declared with it; conditional GET (ETag, If-None-Match, If-Modified-Since);
and the request helpers.

Errors: a route raises L{HTTPError} for an answer of its own, and lets the
backend's exceptions (L{ppypi.backends.interface}) go: L{as_http_error}
turns them into answers, here and nowhere else.
"""

import functools
from email.utils import formatdate, parsedate_to_datetime

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from ..backends import BackendError, BadUpstream, Conflict, FileMissing, ReadOnly, StorageFull
from .errors import HTTPError, NotFound, Unavailable
from .upload import safe_reason

# Retry-After when the store did not say how long to wait.
DEFAULT_RETRY_AFTER = 30


def as_http_error(error):
    """The answer for a domain exception: an L{HTTPError}, or None."""
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, BadUpstream):
        return HTTPError(str(error) or "the upstream sent bad data", 502)
    if isinstance(error, BackendError):
        # Never a redirect, never a 404 a resolver would believe: try later.
        return Unavailable(str(error) or "storage backend failing; try again",
                           retry_after=error.retry_after or DEFAULT_RETRY_AFTER)
    if isinstance(error, FileMissing):
        return NotFound("no such file")
    if isinstance(error, Conflict):
        return HTTPError("File already exists", 409)
    if isinstance(error, StorageFull):
        return HTTPError("Insufficient storage", 507)
    if isinstance(error, ReadOnly):
        return HTTPError(str(error) or "read-only repository", 405)
    return None


ANSWERED = (HTTPError, BackendError, FileMissing, Conflict, StorageFull, ReadOnly)


def error_answer(request, error):
    """Answer C{request} with C{error} (one of L{ANSWERED}): status, reason, body."""
    e = as_http_error(error)
    request.setResponseCode(e.code, safe_reason(e.message).encode("ascii"))
    # A download that failed before its first byte had set the file's length.
    request.responseHeaders.removeHeader("Content-Length")
    for name, value in e.headers.items():
        request.setHeader(name, value)
    request.setHeader("Content-Type", "text/plain; charset=utf-8")
    request.setHeader("Cache-Control", "no-store")
    return f"{e.code} {e.message}\n".encode("utf-8", "replace")


def _error_handler(instance, request, failure):
    return error_answer(request, failure.value)


class Router(Klein):
    """
    A Klein whose routes declare the permission they need
    (C{@app.route(url, need=READ)}: the handler is called with the
    authenticated principal after C{request}) and whose errors are answered
    by L{error_answer}. Its owner has C{ctx}, a L{RepositoryContext}.
    """

    def __init__(self):
        super().__init__()
        # "/simple//x" is not "/simple/x": no redirects that invent paths.
        self.url_map.merge_slashes = False
        self.handle_errors(*ANSWERED)(_error_handler)

    def route(self, url, *args, need=None, **kwargs):
        register = super().route(url, *args, **kwargs)
        if need is None:
            return register

        def declare(f):
            @functools.wraps(f)
            async def authorized(instance, request, *a, **kw):
                principal = await instance.ctx.authorize(request, need)
                return await f(instance, request, principal, *a, **kw)

            register(authorized)
            return f  # stacked routes each wrap the handler once

        return declare


# -- requests -----------------------------------------------------------------


def header(request, name):
    """A request header as text: the last one, latin-1 (never a decoding error)."""
    values = request.requestHeaders.getRawHeaders(name.encode("ascii"))
    return values[-1].decode("latin-1") if values else None


def base_url(request):
    """This repository's base URL as the client addressed it (the Site
    refuses requests whose Host is not a plain host[:port])."""
    host = header(request, "host") or "localhost"
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host}{getattr(request, 'repository_prefix', '/')}"


# -- conditional GET ----------------------------------------------------------


def http_date(seconds):
    return formatdate(seconds, usegmt=True)


def etag_matches(request, etag):
    if isinstance(etag, bytes):
        etag = etag.decode("ascii")
    value = header(request, "if-none-match")
    if not value:
        return False
    if value.strip() == "*":
        return True
    tags = [t.strip() for t in value.split(",")]
    return etag in tags or ("W/" + etag) in tags


def not_modified(request, etag, last_modified=None):
    """Is the client's copy current? If-None-Match wins over If-Modified-Since."""
    get = request.requestHeaders.getRawHeaders
    if get(b"if-none-match") is not None:
        return etag_matches(request, etag)
    since = get(b"if-modified-since")
    if since and since[-1] and last_modified is not None:
        try:
            return int(last_modified) <= parsedate_to_datetime(
                since[-1].decode("latin-1")).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
    return False


def render_later(request, coroutine):
    """
    For a plain resource's C{render}: run C{coroutine} (which returns bytes,
    or a resource to render, e.g. a large body) and answer with what it
    returns or raises, as a Klein route would. Returns NOT_DONE_YET.
    """
    gone = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def done(result):
        if isinstance(result, Failure):
            if not isinstance(result.value, ANSWERED):
                return result
            result = error_answer(request, result.value)
        if gone:
            return None
        if not isinstance(result, bytes):
            result = result.render(request)  # a resource: a large body
            if result is NOT_DONE_YET:
                return None
        request.write(result)
        request.finish()
        return None

    d = Deferred.fromCoroutine(coroutine).addBoth(done)
    d.addErrback(lambda failure: request.processingFailed(failure) if not gone else None)
    return NOT_DONE_YET
