"""
The index of one repository: PEP 503 pages, files, and its home page.
"""

import errno
import hashlib
import json
from collections import namedtuple
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qs

from klein import Klein
from twisted.web.resource import Resource
from packaging.version import InvalidVersion
from twisted.logger import Logger

from ..auth import READ, WRITE, needs_credentials, parse_basic, permitted
import treq

from ..backends import BackendError, FileMissing
from ..backends.github_api import RateLimited
from ..index import PageCache, latest_version
from ..memo import Memo
from ..names import MAX_FILENAME, is_valid_name, normalize, version_of
from ..repository import FileConflict
from . import files as filesmod
from . import multipart, pages, pypi_json
from .body import answer
from .errors import Forbidden, HTTPError, NotFound, Unauthorized, Unavailable
from .negotiate import NotAcceptableFormat, negotiate, q_value
from .upload import UploadError, check_upload, safe_reason

# Pages for people kept rendered (least recently used out first): a
# project's page with its README can be tens of kB.
PEOPLE_PAGE_BYTES = 8_000_000
_Rendered = namedtuple("_Rendered", "body etag")

# Pages smaller than this are not worth compressing.
GZIP_MIN_BYTES = 512
MAX_YANK_REASON = 1000


def _header(request, name):
    """A request header as text: the last one, latin-1 (never a decoding error)."""
    values = request.requestHeaders.getRawHeaders(name.encode("ascii"))
    return values[-1].decode("latin-1") if values else None


def _etag_matches(request, etag):
    if isinstance(etag, bytes):
        etag = etag.decode("ascii")
    header = _header(request, "if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return etag in tags or ("W/" + etag) in tags


def _http_date(seconds):
    return formatdate(seconds, usegmt=True)


def _not_modified(request, etag, last_modified):
    """Is the client's copy current? If-None-Match wins over If-Modified-Since."""
    get = request.requestHeaders.getRawHeaders
    if get(b"if-none-match") is not None:
        return _etag_matches(request, etag)
    since = get(b"if-modified-since")
    if since and since[-1] and last_modified is not None:
        try:
            return int(last_modified) <= parsedate_to_datetime(since[-1].decode("latin-1")).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
    return False


def _gzip_acceptable(header):
    """Does an Accept-Encoding value (bytes) allow gzip (with a q above 0)?"""
    for item in header[:1024].decode("latin-1").split(","):
        coding, *params = [p.strip() for p in item.split(";")]
        if coding.lower() in ("gzip", "x-gzip"):
            return q_value(params) > 0
    return False


_GZIP_ACCEPTABLE = Memo(_gzip_acceptable)
_NEGOTIATED = Memo(lambda accept: negotiate(accept.decode("latin-1")))


def _accepts_gzip(request):
    """Does Accept-Encoding allow gzip (with a q above 0)?"""
    values = request.requestHeaders.getRawHeaders(b"accept-encoding")
    return _GZIP_ACCEPTABLE[values[-1]] if values else False


_UPLOAD_OUTCOMES = {401: "unauthorized", 403: "forbidden", 409: "conflict", 413: "too_large",
                    507: "no_space"}


class RepositoryApp:
    """
    The Klein application serving one repository.

    @param extra_index_url: where unknown projects are redirected (ends in
        "/"), or None.
    @param is_reserved: C{f(normalised name) -> bool}, names never redirected.
    """

    app = Klein()
    # "/simple//x" is not "/simple/x": no redirects that invent paths.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(self, repository, authenticator, run_in_thread, extra_index_url=None,
                 is_reserved=lambda name: False, metrics=None):
        self.repository = repository
        self.index = repository.index
        self.authenticator = authenticator
        self._run = run_in_thread
        self.extra_index_url = extra_index_url
        self.is_reserved = is_reserved
        self.metrics = metrics
        self._people_cache = PageCache(PEOPLE_PAGE_BYTES)
        self._summaries_cache = (None, [])
        config = repository.config
        scope = "private" if needs_credentials(config, READ) else "public"
        self._page_cache_control = f"{scope}, max-age={config.page_max_age}".encode("ascii")

    def resource(self):
        return FastPages(self, self.app.resource())

    # -- errors

    @app.handle_errors(HTTPError)
    def _http_error(self, request, failure):
        e = failure.value
        request.setResponseCode(e.code, safe_reason(e.message).encode("ascii"))
        for name, value in e.headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        request.setHeader("Cache-Control", "no-store")
        return f"{e.code} {e.message}\n".encode("utf-8", "replace")

    # -- access

    async def _authorize(self, request, need):
        """
        Check the request may C{need} (READ or WRITE) this repository.

        @return: the L{Principal}, or None where no credentials are needed.
        @raise Unauthorized: no or wrong credentials (401).
        @raise Forbidden: right credentials, no permission (403).
        """
        config = self.repository.config
        if not needs_credentials(config, need):
            return None
        headers = request.requestHeaders.getRawHeaders(b"authorization") or []
        if len(headers) > 1:
            raise Unauthorized("More than one Authorization header")
        try:
            credentials = parse_basic(headers[0] if headers else None)
        except ValueError:
            raise Unauthorized("Malformed credentials") from None
        if credentials is None:
            raise Unauthorized()
        try:
            principal = await self.authenticator.authenticate(config, credentials, need)
        except RateLimited as e:
            raise Unavailable(str(e), retry_after=e.retry_after) from None
        except BackendError as e:
            raise Unavailable(f"cannot check credentials: {e}") from None
        if principal is None:
            raise Unauthorized("Invalid credentials")
        if not permitted(config, principal, need):
            what = "upload to" if need == WRITE else "read"
            raise Forbidden(f"{principal.name} may not {what} repository {config.name}")
        return principal

    # -- pages

    def _cache_control(self):
        """Cache-Control of the index's pages (the configuration is fixed)."""
        return self._page_cache_control

    def _send_page(self, request, page):
        """A rendered page, with validators, gzip when asked, and 304s.
        (The index's hot path: header names and values are ready bytes.)"""
        body, etag = page.body, page.etag
        headers = request.responseHeaders
        if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(request):
            body, etag = page.gzipped
            headers.setRawHeaders(b"content-encoding", [b"gzip"])
        headers.setRawHeaders(b"vary", [b"Accept, Accept-Encoding"])
        headers.setRawHeaders(b"content-type", [page.content_type_header])
        headers.setRawHeaders(b"cache-control", [self._page_cache_control])
        headers.setRawHeaders(b"last-modified", [page.last_modified_header])
        headers.setRawHeaders(b"etag", [etag])
        if _not_modified(request, etag, page.last_modified):
            request.setResponseCode(304)
            return b""
        return answer(request, body)

    @staticmethod
    def _content_type(request):
        fmt = request.args.get(b"format")
        if fmt is None:
            accept = request.requestHeaders.getRawHeaders(b"accept")
            return _NEGOTIATED[accept[-1]] if accept else negotiate(None)
        try:
            return negotiate(_header(request, "accept"), fmt[0].decode("utf-8", "replace"))
        except NotAcceptableFormat:
            raise HTTPError("Unsupported format", 406) from None

    def _require_ready(self):
        if not self.index.ready:
            raise Unavailable("index is being built; try again shortly", retry_after=5)

    @app.route("/simple/", methods=["GET", "HEAD"])
    async def simple_root(self, request):
        await self._authorize(request, READ)
        content_type = self._content_type(request)
        self._require_ready()
        return self._send_page(request, self.index.root_page(content_type))

    @app.route("/simple/<string:name>/", methods=["GET", "HEAD"])
    async def simple_project(self, request, name):
        await self._authorize(request, READ)
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        normalized = normalize(name)
        if normalized != name:
            path = request.path.rstrip(b"/").rsplit(b"/", 1)[0]
            request.setResponseCode(301)
            request.setHeader("Location", path + b"/" + normalized.encode() + b"/")
            return b""
        page = self.index.project_page(normalized, self._content_type(request))
        if page is not None:
            return self._send_page(request, page)
        return self._unknown_project(request, normalized)

    def _unknown_project(self, request, name):
        """The answer for a project this repository does not hold now."""
        self._require_ready()
        if not self.repository.healthy:
            # Never fall through to the extra index while we cannot tell
            # what we hold: that is how dependency confusion happens.
            raise Unavailable(f"repository {self.repository.name} is failing: "
                              f"{self.repository.last_error}",
                              retry_after=self.repository.retry_after or 30)
        if self.index.has_held(name):
            raise NotFound(f"{name} has no files here")
        if self.is_reserved(name):
            raise NotFound(f"{name} is reserved for this index")
        if self.extra_index_url is None:
            raise NotFound(f"no project {name}")
        request.setResponseCode(302)
        request.setHeader("Location", f"{self.extra_index_url}{name}/")
        request.setHeader("Cache-Control", "no-store")
        return b""

    # -- files

    @app.route("/packages/<string:project>/<string:filename>", methods=["GET", "HEAD"])
    async def package_file(self, request, project, filename):
        principal = await self._authorize(request, READ)
        if len(filename) > MAX_FILENAME:
            raise NotFound("no such file")
        if filename.endswith(".metadata"):
            return await self._core_metadata(request, project, filename[:-len(".metadata")])
        dist = self.index.file(filename)
        if dist is None or dist.project != project:
            raise NotFound("no such file")
        etag = f'"{dist.sha256}"'
        request.setHeader("ETag", etag)
        request.setHeader("Last-Modified", _http_date(dist.mtime))
        request.setHeader("Accept-Ranges", "bytes")
        request.setHeader("Cache-Control", "public, max-age=31536000, immutable")
        request.setHeader("Content-Type", filesmod.content_type(filename))
        if _etag_matches(request, etag):
            request.setResponseCode(304)
            return b""
        try:
            byte_range = None
            if_range = _header(request, "if-range")
            if if_range is None or if_range.strip() == etag:
                byte_range = filesmod.parse_range(_header(request, "range"), dist.size)
        except filesmod.RangeNotSatisfiable:
            raise HTTPError("range not satisfiable", 416,
                            {"Content-Range": f"bytes */{dist.size}"}) from None
        backend = self.repository.backend
        if hasattr(backend, "signed_url"):
            return await self._remote_download(request, dist, principal)
        start, length = byte_range or (0, dist.size)
        head = request.method == b"HEAD"
        try:
            fileobj, first = await backend.open(dist, start, 0 if head else min(length, filesmod.CHUNK))
        except FileMissing:
            raise NotFound("no such file") from None
        except BackendError as e:
            raise Unavailable(str(e)) from None
        if byte_range is not None:
            request.setResponseCode(206)
            request.setHeader("Content-Range",
                              f"bytes {start}-{start + length - 1}/{dist.size}")
        request.setHeader("Content-Length", str(length))
        if head:
            fileobj.close()
            return b""
        await filesmod.stream(request, fileobj, first, length, self._run)
        return None

    async def _remote_download(self, request, dist, principal=None):
        """
        A file kept by GitHub: 302 to the signed URL GitHub gives
        (downloads: redirect), or streamed through us (downloads: proxy).
        Either way our credentials never go to the signed URL's host.
        """
        backend = self.repository.backend
        try:
            url = await backend.signed_url(dist, getattr(principal, "token", None))
            if self.repository.config.downloads == "redirect":
                request.setResponseCode(302)
                request.setHeader("Location", url)
                # The signed URL expires: only our 302 may not be cached.
                request.setHeader("Cache-Control", "no-store")
                request.responseHeaders.removeHeader("Content-Type")
                return b""
            response = await backend.fetch(url)
        except FileMissing:
            raise NotFound("no such file") from None
        except RateLimited as e:
            raise Unavailable(str(e), retry_after=e.retry_after) from None
        except BackendError as e:
            raise Unavailable(str(e)) from None
        if response.code != 200:
            await response.content()
            raise Unavailable(f"GitHub's download answered {response.code}")
        request.setHeader("Content-Length", str(dist.size))
        request.responseHeaders.removeHeader("Accept-Ranges")
        if request.method == b"HEAD":
            return b""
        await treq.collect(response, request.write)
        return None

    async def _core_metadata(self, request, project, filename):
        """PEP 658: the file's core metadata, as it is in the archive."""
        dist = self.index.file(filename)
        if dist is None or dist.project != project or not dist.core_metadata:
            raise NotFound("no such file")
        etag = f'"{dist.metadata_sha256}"'
        request.setHeader("ETag", etag)
        request.setHeader("Cache-Control", "public, max-age=31536000, immutable")
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        if _not_modified(request, etag, None):
            request.setResponseCode(304)
            return b""
        try:
            data = await self.repository.backend.read_metadata(dist.metadata_sha256, dist)
        except RateLimited as e:
            raise Unavailable(str(e), retry_after=e.retry_after) from None
        except BackendError as e:
            raise Unavailable(str(e)) from None
        if data is None:
            raise NotFound("no such file")
        request.setHeader("Content-Length", str(len(data)))
        return data

    async def _project_request(self, request, name, version, canonical):
        """
        What a page about one project (or one of its versions) needs: the
        normalised name, its files, its yanks and the version to show (the
        one asked for, or the latest that is neither yanked nor a
        pre-release). A name that is not normalised is redirected to
        C{canonical} (formatted with the project's name).
        """
        await self._authorize(request, READ)
        self._require_ready()
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        project = normalize(name)
        if project != name:
            location = _base_url(request) + canonical.format(project=project)
            raise HTTPError("Moved Permanently", 301, {"Location": location})
        files = list(self.index.project_files(project))
        if not files:
            raise NotFound(f"no project {project}")
        yanks = self.index.yanks.get(project, {})
        if version is None:
            return project, files, yanks, latest_version({f.version for f in files}, yanks)
        try:
            release = self.repository.release(project, version)
        except InvalidVersion:
            raise NotFound("no such version") from None
        if not release:
            raise NotFound(f"{project} has no version {version}")
        return project, files, yanks, release[0].version

    async def _release_metadata(self, files, version):
        """The core metadata describing a release (from a wheel if it has
        one), or None: a page without the metadata's fields beats no page."""
        source = pypi_json.metadata_file([f for f in files if f.version == version])
        if source is None:
            return None
        try:
            return await self.repository.backend.read_metadata(source.metadata_sha256, source)
        except BackendError:
            return None

    # -- Warehouse's JSON API

    @app.route("/pypi/<string:name>/json", methods=["GET", "HEAD"])
    @app.route("/pypi/<string:name>/<string:version>/json", methods=["GET", "HEAD"])
    async def pypi_json(self, request, name, version=None):
        project, files, yanks, chosen = await self._project_request(
            request, name, version, "pypi/{project}/" + (f"{version}/json" if version else "json"))
        raw = await self._release_metadata(files, chosen)
        body = pypi_json.render(project, files, chosen, raw, _base_url(request), yanks,
                                with_releases=version is None)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", self._cache_control())
        request.setHeader("ETag", etag)
        if _not_modified(request, etag, None):
            request.setResponseCode(304)
            return b""
        return answer(request, body)

    # -- yanking (PEP 592)

    @app.route("/yank/<string:name>/<string:version>", methods=["POST", "DELETE"])
    async def yank(self, request, name, version):
        """
        POST yanks a release (C{reason} from a form body or the query),
        DELETE unyanks it. Write permission is needed.
        """
        principal = await self._authorize(request, WRITE)
        self._require_ready()
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        try:
            version = str(version_of(version))
        except InvalidVersion:
            raise HTTPError("Invalid version") from None
        reason = None
        if request.method == b"POST":
            reason = self._yank_reason(request)
        project = normalize(name)
        try:
            files = await self.repository.yank(project, version, reason, principal)
        except RateLimited as e:
            raise Unavailable(str(e), retry_after=e.retry_after) from None
        except BackendError as e:
            raise Unavailable(str(e)) from None
        if not files:
            raise NotFound(f"{project} has no version {version}")
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"project": project, "version": version,
                           "yanked": reason is not None, "reason": reason,
                           "files": files}, indent=1).encode() + b"\n"

    @staticmethod
    def _yank_reason(request):
        values = request.args.get(b"reason", [])
        ctype = (_header(request, "content-type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            request.content.seek(0)
            body = request.content.read(MAX_YANK_REASON * 4 + 1)
            if len(body) > MAX_YANK_REASON * 4:
                raise HTTPError("Form too large", 413)
            try:
                form = parse_qs(body.decode("utf-8"), strict_parsing=False)
            except UnicodeDecodeError:
                raise HTTPError("Form is not UTF-8") from None
            values = [v.encode() for v in form.get("reason", [])] + values
        if len(values) > 1:
            raise HTTPError("Give one reason")
        try:
            reason = values[0].decode("utf-8") if values else ""
        except UnicodeDecodeError:
            raise HTTPError("Reason is not UTF-8") from None
        if len(reason) > MAX_YANK_REASON:
            raise HTTPError(f"Reason longer than {MAX_YANK_REASON} characters")
        if any(ord(c) < 0x20 and c not in "\t" for c in reason):
            raise HTTPError("Reason contains control characters")
        return reason

    # -- uploads

    @app.route("/", methods=["POST"])
    @app.route("/legacy/", methods=["POST"])
    async def upload(self, request):
        """The legacy upload API; every outcome is counted in /metrics."""
        try:
            body, outcome = await self._upload(request)
        except HTTPError as e:
            outcome = _UPLOAD_OUTCOMES.get(e.code, "rejected" if e.code < 500 else "failed")
            raise
        except Exception:
            outcome = "failed"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.upload(self.repository.name, outcome)
        return body

    async def _upload(self, request):
        principal = await self._authorize(request, WRITE)
        try:
            boundary = multipart.boundary_of(_header(request, "content-type"))
        except multipart.MultipartError as e:
            raise HTTPError(str(e)) from None
        config = self.repository.config
        request.content.seek(0)
        upload = None
        try:
            try:
                fields, upload = await self._run(
                    multipart.parse, request.content, boundary,
                    self.repository.backend.incoming_dir, config.max_file_bytes)
            except multipart.MultipartError as e:
                raise HTTPError(str(e)) from None
            except multipart.TooLarge as e:
                raise HTTPError(str(e), 413) from None
            action = (fields.get(":action") or [None])[0]
            if action == "remove_pkg":
                return await self._remove_release(fields, principal), "removed"
            if action != "file_upload":
                raise HTTPError(f"Unsupported :action {action!r}" if action
                                else "Missing :action (file_upload)")
            try:
                checked = await self._run(check_upload, fields, upload)
            except UploadError as e:
                raise HTTPError(e.message, e.code) from None
            try:
                status = await self.repository.publish(upload, checked, principal)
            except FileConflict:
                raise HTTPError("File already exists", 409) from None
            except RateLimited as e:
                self.repository.mark_failing(e, e.retry_after)
                raise Unavailable(str(e), retry_after=e.retry_after) from None
            except BackendError as e:
                self.log.error("repository {repo}: upload failed: {e}",
                               repo=self.repository.name, e=str(e))
                self.repository.mark_failing(e)
                raise Unavailable("Storage backend failing; try again") from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HTTPError("Insufficient storage", 507) from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                self.log.error("repository {repo}: cannot store uploads: {e}",
                               repo=self.repository.name, e=e)
                raise Unavailable("Repository cannot store uploads now") from None
            raise
        finally:
            if upload is not None:
                await self._run(upload.discard)
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        if status == "stored":
            return b"OK\n", "stored"
        return b"OK (already there, unchanged)\n", "unchanged"

    async def _remove_release(self, fields, principal=None):
        """pypiserver's :action=remove_pkg: delete one release's files."""
        name = (fields.get("name") or [""])[0]
        version = (fields.get("version") or [""])[0]
        if not is_valid_name(name):
            raise HTTPError("Missing or invalid name")
        try:
            version = str(version_of(version))
        except InvalidVersion:
            raise HTTPError("Missing or invalid version") from None
        try:
            removed = await self.repository.remove_release(normalize(name), version, principal)
        except RateLimited as e:
            raise Unavailable(str(e), retry_after=e.retry_after) from None
        except BackendError as e:
            raise Unavailable(str(e)) from None
        if not removed:
            raise NotFound(f"{normalize(name)} {version} not found")
        return ("Removed " + ", ".join(removed) + "\n").encode()

    # -- people

    # -- pages for people

    def _security_headers(self, request):
        request.setHeader("Content-Security-Policy", pages.CONTENT_SECURITY_POLICY)
        request.setHeader("X-Content-Type-Options", "nosniff")
        request.setHeader("Referrer-Policy", "same-origin")
        request.setHeader("Content-Type", "text/html; charset=utf-8")

    async def _people_page(self, request, key, make):
        """
        A page for people, rendered once per change of what it shows (C{key}
        includes the index's state) and answered with an ETag and 304s.
        """
        self._security_headers(request)
        request.setHeader("Cache-Control", self._cache_control())
        cached = self._people_cache.get(key)
        if cached is None:
            body = await make()
            cached = _Rendered(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
            self._people_cache.put(key, cached)
        return self._answer_people_page(request, *cached)

    @staticmethod
    def _answer_people_page(request, body, etag):
        request.setHeader("ETag", etag)
        if _not_modified(request, etag, None):
            request.setResponseCode(304)
            return b""
        return answer(request, body)

    def _summaries(self):
        """Every project, most recently updated first (once per index change)."""
        generation = self.index.generation
        if self._summaries_cache[0] != generation:
            summaries = [pages.ProjectSummary(name, list(self.index.project_files(name)),
                                              self.index.yanks.get(name, {}))
                         for name in self.index.projects]
            summaries.sort(key=lambda p: (-p.updated, p.name))
            self._summaries_cache = (generation, summaries)
        return self._summaries_cache[1]

    @app.route("/", methods=["GET", "HEAD"])
    async def home(self, request):
        """The projects, most recently updated first; ?q= searches names and summaries."""
        await self._authorize(request, READ)
        base = _base_url(request)
        summaries = self._summaries()
        query = request.args.get(b"q", [b""])[0].decode("utf-8", "replace").strip()[:200]
        name = self.repository.name
        if query:
            needle = query.lower()
            results = []
            for summary in summaries:
                if needle in summary.haystack:
                    results.append(summary)
                    if len(results) >= pages.SEARCH_LIMIT:
                        break
            # Search results are not kept: queries are many and cheap to answer.
            return await self._uncached_people_page(
                request, pages.home(name, base, summaries, len(self.index), query, results))
        key = ("home", base, self.index.generation)
        return await self._people_page(request, key, lambda: pages.render(
            pages.home(name, base, summaries, len(self.index))))

    async def _uncached_people_page(self, request, tree):
        self._security_headers(request)
        request.setHeader("Cache-Control", "no-store")
        body = await pages.render(tree)
        return answer(request, body)

    @app.route("/project/<string:name>/", methods=["GET", "HEAD"])
    @app.route("/project/<string:name>/<string:version>/", methods=["GET", "HEAD"])
    async def project_page(self, request, name, version=None):
        project, files, yanks, shown = await self._project_request(
            request, name, version, "project/{project}/" + (f"{version}/" if version else ""))
        base = _base_url(request)
        key = ("project", base, project, version, shown, self.index.changed_at(project))

        async def make():
            raw = await self._release_metadata(files, shown)
            tree, raw_html = pages.project(self.repository.name, base, project, files, yanks,
                                           shown, raw, pinned=version is not None)
            return await pages.render(tree, raw_html)

        return await self._people_page(request, key, make)


class FastPages(Resource):
    """
    The index pages' hot path: a GET of C{/simple/} or C{/simple/NAME/} of a
    repository anyone may read, for a page the index holds, is answered
    here, synchronously, from the rendered page. Everything else (other
    URLs, credentials, redirects, errors) goes to the Klein application.

    The profile of a page request through Klein showed routing, Deferred
    and coroutine plumbing at ~90% of the server's time per request.
    """

    isLeaf = True

    def __init__(self, app, klein_resource):
        super().__init__()
        self._app = app
        self._klein = klein_resource

    def render(self, request):
        app = self._app
        path = request.postpath
        if (request.method in (b"GET", b"HEAD") and 2 <= len(path) <= 3
                and path[0] == b"simple" and path[-1] == b""
                and app.index.ready and not needs_credentials(app.repository.config, READ)):
            try:
                content_type = app._content_type(request)
            except HTTPError:
                content_type = None
            if content_type is not None:
                if len(path) == 2:
                    page = app.index.root_page(content_type)
                else:
                    page = app.index.project_page(path[1].decode("ascii", "replace"),
                                                  content_type)
                if page is not None:
                    result = app._send_page(request, page)
                    return result if isinstance(result, bytes) else result.render(request)
        return self._klein.render(request)


def _base_url(request):
    """This repository's base URL as the client addressed it (the Site
    refuses requests whose Host is not a plain host[:port])."""
    host = _header(request, "host") or "localhost"
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host}{getattr(request, 'repository_prefix', '/')}"
