"""
The simple index (PEP 503/691): C{GET /simple/} and C{GET /simple/NAME/},
the one path that serves them.

It is a plain resource, not a Klein route: the profile of a page request
through Klein showed routing, Deferred and coroutine plumbing at ~90% of the
server's time per request. A repository anyone may read is answered
synchronously from the page the index rendered once; one that needs
credentials first checks them (which may wait for a thread or the store).
"""

from twisted.web.resource import Resource

from ..auth import READ, WRITE
from ..memo import Memo
from ..names import is_valid_name, normalize
from .body import answer
from .errors import HTTPError, NotFound, Unavailable
from .negotiate import NotAcceptableFormat, negotiate, q_value
from .router import ANSWERED, error_answer, header, not_modified, render_later
from .upload import safe_reason

def safe_header(text):
    """A header value of ours from free text (a reason from elsewhere)."""
    return safe_reason(text)[:200].encode("ascii")


# Pages smaller than this are not worth compressing.
GZIP_MIN_BYTES = 512


def _gzip_acceptable(value):
    """Does an Accept-Encoding value (bytes) allow gzip (with a q above 0)?"""
    for item in value[:1024].decode("latin-1").split(","):
        coding, *params = [p.strip() for p in item.split(";")]
        if coding.lower() in ("gzip", "x-gzip"):
            return q_value(params) > 0
    return False


_GZIP_ACCEPTABLE = Memo(_gzip_acceptable)
_NEGOTIATED = Memo(lambda accept: negotiate(accept.decode("latin-1")))


def accepts_gzip(request):
    values = request.requestHeaders.getRawHeaders(b"accept-encoding")
    return _GZIP_ACCEPTABLE[values[-1]] if values else False


def content_type(request):
    """The page's content type, by ?format= (which wins) or Accept (PEP 691)."""
    fmt = request.args.get(b"format")
    if fmt is None:
        accept = request.requestHeaders.getRawHeaders(b"accept")
        return _NEGOTIATED[accept[-1]] if accept else negotiate(None)
    try:
        return negotiate(header(request, "accept"), fmt[0].decode("utf-8", "replace"))
    except NotAcceptableFormat:
        raise HTTPError("Unsupported format", 406) from None


_VARY_ROOT = b"Accept, Accept-Encoding"
_VARY_PROJECT = b"Accept, Accept-Encoding, User-Agent"


def for_pip(request):
    """Is the client pip? (It gets lean pages: L{ppypi.simple_pages.LEAN_BELOW}.)"""
    agent = request.requestHeaders.getRawHeaders(b"user-agent")
    return bool(agent) and agent[-1].startswith(b"pip/")


class _FetchFirst(Exception):
    """
    The page must be fetched from a mirror first: C{ctx} (the mirror's
    context, the repository's own or its upstream's) and the project.
    """

    def __init__(self, ctx, name):
        super().__init__(name)
        self.ctx = ctx
        self.name = name


class SimpleIndex(Resource):
    """C{/simple/} and C{/simple/NAME/} (GET and HEAD) of one repository."""

    isLeaf = True

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx

    def render(self, request):
        path = request.postpath
        if request.method == b"DELETE" and self.ctx.repository.mirror is not None \
                and len(path) == 3 and path[-1] == b"":
            return render_later(request, self._forget(request, path[1]))
        if request.method not in (b"GET", b"HEAD"):
            return error_answer(request, HTTPError("Method Not Allowed", 405,
                                                   {"Allow": "GET, HEAD"}))
        if path[-1] != b"" and len(path) <= 2:
            # /simple, /simple/NAME: the page is at the URL with a slash.
            location = request.path + b"/"
            query = request.uri.partition(b"?")[2]
            request.setResponseCode(308)
            request.setHeader("Location", location + (b"?" + query if query else b""))
            return b""
        if len(path) > 3 or path[-1] != b"":
            return error_answer(request, NotFound("no such page"))
        if not self.ctx.public:
            return render_later(request, self._authorized(request))
        try:
            result = self._answer(request)
        except _FetchFirst as e:
            return render_later(request, self._fetched(request, e))
        except ANSWERED as e:
            return error_answer(request, e)
        # A large page is a resource that writes itself in pieces.
        return result if isinstance(result, bytes) else result.render(request)

    async def _authorized(self, request):
        await self.ctx.authorize(request, READ)
        try:
            return self._answer(request)
        except _FetchFirst as e:
            return await self._fetched(request, e)

    async def _fetched(self, request, want):
        """A mirror's page, fetched (or revalidated) from its source first."""
        repository = want.ctx.repository
        if not await repository.lookup(want.name):
            raise NotFound(f"no project {want.name} here or upstream")
        page = want.ctx.index.project_page(want.name, content_type(request),
                                           lean=for_pip(request))
        if page is None:
            raise NotFound(f"{want.name} has no files here (or none old enough)")
        return self._send(request, page, want.ctx, want.name)

    async def _forget(self, request, name):
        """DELETE of a mirror's page: fetched afresh when next asked for."""
        await self.ctx.authorize(request, WRITE)
        name = normalize(name.decode("utf-8", "replace"))
        dropped = await self.ctx.repository.forget(name)
        self.ctx.log.info("repository {repo}: cached page of {name} dropped",
                          repo=self.ctx.repository.name, name=name)
        request.setResponseCode(204 if dropped else 404)
        return b""

    def _answer(self, request):
        """The page (bytes, or a resource for a large body), or raise."""
        ctx = self.ctx
        path = request.postpath          # [simple, ""] or [simple, NAME, ""]
        wanted = content_type(request)
        if len(path) == 2:
            ctx.require_ready()
            return self._send(request, ctx.index.root_page(wanted), ctx, None)
        name = path[1].decode("utf-8", "replace")
        if ctx.repository.mirror is not None:
            if not ctx.repository.fresh(name) and is_valid_name(name) and \
                    normalize(name) == name:
                raise _FetchFirst(ctx, name)
            ctx.repository.mirror.counts["page_hits"] += 1
        page = ctx.index.project_page(name, wanted, lean=for_pip(request))
        if page is not None:
            return self._send(request, page, ctx, name)
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        normalized = normalize(name)
        if normalized != name:
            location = request.path.rstrip(b"/").rsplit(b"/", 1)[0]
            request.setResponseCode(301)
            request.setHeader("Location", location + b"/" + normalized.encode() + b"/")
            return b""
        return self._unknown_project(request, normalized)

    def _send(self, request, page, ctx, name):
        """A rendered page, with validators, gzip when asked, and 304s.
        (The index's hot path: header names and values are ready bytes.)"""
        body, etag = page.body, page.etag
        headers = request.responseHeaders
        if ctx.repository.mirror is not None:
            stale = ctx.repository.stale(name)
            if stale is not None:
                # The source failed: this is its last answer, however old.
                headers.setRawHeaders(b"x-ppypi-stale", [safe_header(stale)])
                headers.setRawHeaders(b"warning", [b'110 - "Response is Stale"'])
        if len(body) >= GZIP_MIN_BYTES and accepts_gzip(request):
            body, etag = page.gzipped
            headers.setRawHeaders(b"content-encoding", [b"gzip"])
        # A project's page is lean for pip (ppypi.simple_pages.LEAN_BELOW).
        headers.setRawHeaders(b"vary", [_VARY_ROOT if name is None else _VARY_PROJECT])
        headers.setRawHeaders(b"content-type", [page.content_type_header])
        headers.setRawHeaders(b"cache-control", [self.ctx.page_cache_control])
        headers.setRawHeaders(b"last-modified", [page.last_modified_header])
        headers.setRawHeaders(b"etag", [etag])
        if not_modified(request, etag, page.last_modified):
            request.setResponseCode(304)
            return b""
        return answer(request, body)

    def _unknown_project(self, request, name):
        """The answer for a project this repository does not hold now."""
        ctx = self.ctx
        ctx.require_ready()
        repository = ctx.repository
        if not repository.healthy:
            # Never fall through to the extra index while we cannot tell
            # what we hold: that is how dependency confusion happens.
            raise Unavailable(f"repository {repository.name} is failing: "
                              f"{repository.last_error}",
                              retry_after=repository.retry_after or 30)
        if ctx.index.has_held(name):
            raise NotFound(f"{name} has no files here")
        if ctx.is_reserved(name):
            raise NotFound(f"{name} is reserved for this index")
        if repository.mirror is not None:
            raise NotFound(f"{name} has no files here (or none old enough)")
        upstream = ctx.upstream
        if upstream is not None:
            # One URL for private and public: a name never held here is
            # answered from the mirror, at this repository's URLs.
            if upstream.repository.fresh(name):
                upstream.repository.mirror.counts["page_hits"] += 1
                page = upstream.index.project_page(name, content_type(request),
                                                   lean=for_pip(request))
                if page is None:
                    raise NotFound(f"{name} has no files here or upstream")
                return self._send(request, page, upstream, name)
            raise _FetchFirst(upstream, name)
        if ctx.extra_index_url is None:
            raise NotFound(f"no project {name}")
        request.setResponseCode(302)
        request.setHeader("Location", f"{ctx.extra_index_url}{name}/")
        request.setHeader("Cache-Control", "no-store")
        return b""
