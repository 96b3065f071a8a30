"""
Distribution files and their core metadata (PEP 658):
C{GET /packages/PROJECT/FILENAME} and C{FILENAME.metadata}.

The backend says how a file is given (L{ppypi.backends.interface}): a
local file streamed from the thread pool with ranges, a redirect to a
signed URL, or a stream passed through.
"""

import hashlib
from collections import namedtuple

from ..auth import READ
from ..backends import LocalFile, Redirect
from ..names import MAX_FILENAME, is_valid_name, normalize
from . import files
from .body import answer
from .errors import HTTPError, NotFound, Unavailable
from .router import Router, etag_matches, header, http_date, not_modified

IMMUTABLE = "public, max-age=31536000, immutable"

#: Files (and core metadata) this small are kept in memory once read
#: (L{ppypi.web.context.RepositoryContext.small_files}, keyed by sha256):
#: a trip to the thread pool costs several times the rest of their answer.
SMALL_FILE = files.CHUNK
Held = namedtuple("Held", "body headers")
IMMUTABLE_BYTES = IMMUTABLE.encode("ascii")
# What asks more of a file than its whole bytes as they are (the answers
# that need Klein's way: ranges, validators).
_CONDITIONS = (b"range", b"if-range", b"if-none-match", b"if-modified-since")


def _file_headers(dist):
    """The headers of a file's answer, as bytes (kept with it when it is held)."""
    return ((b"ETag", f'"{dist.sha256}"'.encode("ascii")),
            (b"Last-Modified", http_date(dist.mtime).encode("ascii")),
            (b"Accept-Ranges", b"bytes"), (b"Cache-Control", IMMUTABLE_BYTES),
            (b"Content-Type", files.content_type(dist.filename).encode("ascii")))


def _set(request, headers):
    for name, value in headers:
        request.setHeader(name, value)


class PackagesApp:
    app = Router()

    def __init__(self, ctx):
        self.ctx = ctx

    def held(self, request):
        """
        A small file or core metadata held in memory, answered without the
        router (its matching and Deferreds cost more than the rest of the
        answer): the bytes, or None when the request needs more than that
        (credentials, a range, a validator, a file not held), for the router.
        """
        ctx = self.ctx
        path = request.postpath                 # [packages, PROJECT, FILENAME]
        if len(path) != 3 or request.method not in (b"GET", b"HEAD") or not ctx.public:
            return None
        asked = request.requestHeaders
        if any(asked.hasHeader(h) for h in _CONDITIONS):
            return None
        try:
            project, filename = path[1].decode("ascii"), path[2].decode("ascii")
        except UnicodeDecodeError:
            return None
        metadata = filename.endswith(".metadata")
        dist = ctx.index.file(filename[:-len(".metadata")] if metadata else filename)
        if dist is None or dist.project != project or (metadata and not dist.core_metadata):
            return None
        status = ctx.index.status(project)
        if status is not None and status["status"] == "quarantined":
            return None
        held = ctx.small_files.get("metadata:" + dist.metadata_sha256 if metadata
                                   else dist.sha256)
        if held is None:
            return None
        _set(request, held.headers)
        return answer(request, held.body)

    @app.route("/packages/<string:project>/<string:filename>", methods=["GET", "HEAD"],
               need=READ)
    async def package_file(self, request, principal, project, filename):
        if len(filename) > MAX_FILENAME:
            raise NotFound("no such file")
        if filename.endswith(".metadata"):
            return await self._core_metadata(request, project, filename[:-len(".metadata")])
        dist, ctx = await self._find(project, filename)
        etag = f'"{dist.sha256}"'
        headers = _file_headers(dist)
        _set(request, headers)
        if etag_matches(request, etag):
            request.setResponseCode(304)
            return b""
        try:
            byte_range = None
            if_range = header(request, "if-range")
            if if_range is None or if_range.strip() == etag:
                byte_range = files.parse_range(header(request, "range"), dist.size)
        except files.RangeNotSatisfiable:
            raise HTTPError("range not satisfiable", 416,
                            {"Content-Range": f"bytes */{dist.size}"}) from None
        start, length = byte_range or (0, dist.size)
        held = ctx.small_files.get(dist.sha256)
        if held is not None:
            return self._answer_held(request, held.body, byte_range, dist.size)
        head = request.method == b"HEAD"
        found = await ctx.repository.backend.download(
            dist, start, 0 if head else min(length, files.CHUNK), principal)
        if isinstance(found, Redirect):
            request.setResponseCode(302)
            request.setHeader("Location", found.url)
            # A signed URL expires: only our 302 may not be cached.
            request.setHeader("Cache-Control", "no-store")
            request.responseHeaders.removeHeader("Content-Type")
            return b""
        if not isinstance(found, LocalFile):
            # A stream from elsewhere: the whole file, no ranges.
            request.setHeader("Content-Length", str(dist.size))
            request.responseHeaders.removeHeader("Accept-Ranges")
            if head:
                found.close()
                return b""
            await files.relay(request, found)
            return None
        if start == 0 and len(found.head) == dist.size <= SMALL_FILE and \
                ctx.repository.mirror is None and \
                hashlib.sha256(found.head).hexdigest() == dist.sha256:
            # (Not a mirror's: its cache counts hits and evicts by them.)
            # Read whole, and checked: from now on served from memory.
            found.file.close()
            ctx.small_files.put(dist.sha256, Held(found.head, headers))
            return self._answer_held(request, found.head, byte_range, dist.size)
        if byte_range is not None:
            request.setResponseCode(206)
            request.setHeader("Content-Range", f"bytes {start}-{start + length - 1}/{dist.size}")
        request.setHeader("Content-Length", str(length))
        if head:
            found.file.close()
            return b""
        await files.stream(request, found.file, found.head, length, self.ctx.run)
        return None

    @staticmethod
    def _answer_held(request, body, byte_range, size):
        """A small file from memory: no trip to the thread pool."""
        if byte_range is not None:
            start, length = byte_range
            request.setResponseCode(206)
            request.setHeader("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
            body = body[start:start + length]
        return answer(request, body)

    async def _find(self, project, filename):
        """
        (the file, the context that serves it): this repository's own, or
        for a name it never held, its mirror's (its upstream, fetched
        first when the page is not fresh); a mirror fetches its own alike.
        None of a quarantined project's (PEP 792).
        """
        dist, ctx = await self._locate(project, filename)
        status = ctx.index.status(project)
        if status is not None and status["status"] == "quarantined":
            raise NotFound(f"project {project} is quarantined")
        return dist, ctx

    async def _locate(self, project, filename):
        ctx = self.ctx
        dist = ctx.index.file(filename)
        if dist is not None and dist.project == project:
            return dist, ctx
        if ctx.repository.mirror is not None:
            target = ctx
        elif ctx.upstream is not None and is_valid_name(project) and \
                normalize(project) == project:
            ctx.require_ready()
            if not ctx.repository.healthy:
                raise Unavailable(f"repository {ctx.repository.name} is failing",
                                  retry_after=ctx.repository.retry_after or 30)
            if ctx.index.has_held(project) or ctx.is_reserved(project):
                raise NotFound("no such file")
            target = ctx.upstream
        else:
            raise NotFound("no such file")
        dist = target.index.file(filename)
        if (dist is None or dist.project != project) and is_valid_name(project) and \
                not target.repository.fresh(project):
            await target.repository.lookup(project)
            dist = target.index.file(filename)
        if dist is None or dist.project != project:
            raise NotFound("no such file")
        return dist, target

    async def _core_metadata(self, request, project, filename):
        """PEP 658: the file's core metadata, as it is in the archive."""
        dist, ctx = await self._find(project, filename)
        if not dist.core_metadata:
            raise NotFound("no such file")
        etag = f'"{dist.metadata_sha256}"'
        headers = ((b"ETag", etag.encode("ascii")), (b"Cache-Control", IMMUTABLE_BYTES),
                   (b"Content-Type", b"text/plain; charset=utf-8"))
        _set(request, headers)
        if not_modified(request, etag):
            request.setResponseCode(304)
            return b""
        key = "metadata:" + dist.metadata_sha256
        held = ctx.small_files.get(key)
        if held is not None:
            return answer(request, held.body)
        data = await ctx.repository.backend.read_metadata(dist.metadata_sha256, dist)
        if data is None:
            raise NotFound("no such file")
        if len(data) <= SMALL_FILE and hashlib.sha256(data).hexdigest() == dist.metadata_sha256:
            ctx.small_files.put(key, Held(data, headers))
        return answer(request, data)
