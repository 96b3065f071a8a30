"""
The index of one repository: PEP 503 pages, files, and its home page.
"""

import errno
import json
from email.utils import formatdate
from html import escape

from klein import Klein
from packaging.version import InvalidVersion, Version
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from ..auth import READ, WRITE, needs_credentials, parse_basic, permitted
from ..backends import BackendError, FileMissing
from ..names import MAX_FILENAME, is_valid_name, normalize
from ..repository import FileConflict
from . import files as filesmod
from . import multipart
from .errors import Forbidden, HTTPError, NotFound, Unauthorized, Unavailable
from .upload import MULTIPART_OVERHEAD, PPyPIRequest, UploadError, check_upload, safe_reason

PAGE_MAX_AGE = 60


def _etag_matches(request, etag):
    header = request.getHeader("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return etag in tags or ("W/" + etag) in tags


def _http_date(seconds):
    return formatdate(seconds, usegmt=True)


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
                 is_reserved=lambda name: False):
        self.repository = repository
        self.index = repository.index
        self.authenticator = authenticator
        self._run = run_in_thread
        self.extra_index_url = extra_index_url
        self.is_reserved = is_reserved

    def resource(self):
        return self.app.resource()

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
        try:
            credentials = parse_basic(request.getHeader("authorization"))
        except ValueError:
            raise Unauthorized("Malformed credentials") from None
        if credentials is None:
            raise Unauthorized()
        principal = await self.authenticator.authenticate(config, credentials, need)
        if principal is None:
            raise Unauthorized("Invalid credentials")
        if not permitted(config, principal, need):
            what = "upload to" if need == WRITE else "read"
            raise Forbidden(f"{principal.name} may not {what} repository {config.name}")
        return principal

    # -- pages

    def _send_page(self, request, page):
        request.setHeader("Content-Type", page.content_type)
        request.setHeader("ETag", page.etag)
        request.setHeader("Cache-Control", f"max-age={PAGE_MAX_AGE}")
        if _etag_matches(request, page.etag):
            request.setResponseCode(304)
            return b""
        request.setHeader("Content-Length", str(len(page.body)))
        return page.body

    def _require_ready(self):
        if not self.index.ready:
            raise Unavailable("index is being built; try again shortly", retry_after=5)

    @app.route("/simple/", methods=["GET", "HEAD"])
    async def simple_root(self, request):
        await self._authorize(request, READ)
        self._require_ready()
        return self._send_page(request, self.index.root_page())

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
        page = self.index.project_page(normalized)
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
                              f"{self.repository.last_error}")
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
        await self._authorize(request, READ)
        if len(filename) > MAX_FILENAME:
            raise NotFound("no such file")
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
            if_range = request.getHeader("if-range")
            if if_range is None or if_range.strip() == etag:
                byte_range = filesmod.parse_range(request.getHeader("range"), dist.size)
        except filesmod.RangeNotSatisfiable:
            raise HTTPError("range not satisfiable", 416,
                            {"Content-Range": f"bytes */{dist.size}"}) from None
        try:
            fileobj = await self.repository.backend.open(dist)
        except FileMissing:
            raise NotFound("no such file") from None
        except BackendError as e:
            raise Unavailable(str(e)) from None
        start, length = byte_range or (0, dist.size)
        if byte_range is not None:
            request.setResponseCode(206)
            request.setHeader("Content-Range",
                              f"bytes {start}-{start + length - 1}/{dist.size}")
        request.setHeader("Content-Length", str(length))
        if request.method == b"HEAD":
            fileobj.close()
            return b""
        await filesmod.stream(request, fileobj, start, length, self._run)
        return None

    # -- uploads

    @app.route("/", methods=["POST"])
    @app.route("/legacy/", methods=["POST"])
    async def upload(self, request):
        await self._authorize(request, WRITE)
        try:
            boundary = multipart.boundary_of(request.getHeader("content-type"))
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
                return await self._remove_release(fields)
            if action != "file_upload":
                raise HTTPError(f"Unsupported :action {action!r}" if action
                                else "Missing :action (file_upload)")
            try:
                checked = await self._run(check_upload, fields, upload)
            except UploadError as e:
                raise HTTPError(e.message, e.code) from None
            try:
                status = await self.repository.publish(upload, checked)
            except FileConflict:
                raise HTTPError("File already exists", 409) from None
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
        return b"OK\n" if status == "stored" else b"OK (already there, unchanged)\n"

    async def _remove_release(self, fields):
        """pypiserver's :action=remove_pkg: delete one release's files."""
        name = (fields.get("name") or [""])[0]
        version = (fields.get("version") or [""])[0]
        if not is_valid_name(name):
            raise HTTPError("Missing or invalid name")
        try:
            version = str(Version(version))
        except InvalidVersion:
            raise HTTPError("Missing or invalid version") from None
        removed = await self.repository.remove_release(normalize(name), version)
        if not removed:
            raise NotFound(f"{normalize(name)} {version} not found")
        return ("Removed " + ", ".join(removed) + "\n").encode()

    # -- people

    @app.route("/", methods=["GET", "HEAD"])
    async def home(self, request):
        await self._authorize(request, READ)
        base = _base_url(request)
        simple = f"{base}simple/"
        n_projects = len(self.index.projects)
        n_files = len(self.index)
        body = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ppypi: {escape(self.repository.name)}</title></head>
<body>
<h1>ppypi: repository {escape(self.repository.name)}</h1>
<p>{n_projects} projects, {n_files} files. <a href="simple/">Browse the simple index</a>.</p>
<h2>Install with pip</h2>
<pre>pip install --index-url {escape(simple)} PACKAGE</pre>
<p>or in <code>pip.conf</code>:</p>
<pre>[global]
index-url = {escape(simple)}</pre>
<h2>Install with uv</h2>
<pre>uv pip install --index-url {escape(simple)} PACKAGE</pre>
<p>or in <code>pyproject.toml</code>:</p>
<pre>[[tool.uv.index]]
name = "{escape(self.repository.name)}"
url = "{escape(simple)}"</pre>
<h2>Install with poetry</h2>
<pre>poetry source add --priority=primary {escape(self.repository.name)} {escape(simple)}</pre>
<h2>Upload with twine</h2>
<pre>twine upload --repository-url {escape(base)} dist/*</pre>
</body>
</html>
"""
        request.setHeader("Content-Type", "text/html; charset=utf-8")
        return body.encode("utf-8")


def _base_url(request):
    """This repository's base URL as the client addressed it."""
    host = request.getHeader("host") or "localhost"
    scheme = "https" if request.isSecure() else "http"
    prefix = b"/".join(request.prepath).decode("utf-8", "replace")
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return f"{scheme}://{host}{prefix}"


class Root(Resource):
    """
    The top of the server: C{/R/...} goes to repository R, C{/health} answers
    for the server, anything else goes to the first repository.
    """

    def __init__(self, apps, repositories):
        super().__init__()
        self._apps = {name: app.resource() for name, app in apps.items()}
        self._default = next(iter(self._apps.values()))
        self._repositories = repositories
        self.putChild(b"health", Health(repositories))

    def getChild(self, path, request):
        try:
            name = path.decode("ascii")
        except UnicodeDecodeError:
            name = None
        if name in self._apps:
            return self._apps[name]
        # Not a repository name: the first repository serves this path whole,
        # unless the Basic-auth username names another repository
        # (private-pypi's clients select the repository that way).
        request.postpath.insert(0, request.prepath.pop())
        return self._apps.get(_username(request), self._default)


def _username(request):
    try:
        credentials = parse_basic(request.getHeader("authorization"))
    except ValueError:
        return None
    return credentials.username if credentials else None


class IndexSite(server.Site):
    """
    The HTTP site: requests are L{PPyPIRequest}s, whose bodies are spooled
    to C{spool_dir} and limited by C{max_body(path)}.
    """

    def __init__(self, resource, spool_dir, limits, **kwargs):
        super().__init__(resource, requestFactory=PPyPIRequest, **kwargs)
        self.spool_dir = spool_dir
        self._limits = {name.encode(): limit + MULTIPART_OVERHEAD for name, limit in limits.items()}
        self._largest = max(self._limits.values())

    def max_body(self, path):
        """The largest body accepted for a request line's path."""
        first = (path or b"").split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
        if first in self._limits:
            return self._limits[first]
        # Other paths may reach any repository (private-pypi clients choose
        # it by username); each repository's own limit is checked as the
        # file part is read.
        return self._largest


class Health(Resource):
    isLeaf = True

    def __init__(self, repositories):
        super().__init__()
        self._repositories = repositories

    def render_GET(self, request):
        statuses = {r.name: r.status() for r in self._repositories}
        ok = all(s["ok"] for s in statuses.values())
        request.setResponseCode(200 if ok else 503)
        if not ok:
            request.setHeader("Retry-After", "30")
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        return json.dumps({"status": "ok" if ok else "failing",
                           "repositories": statuses}, indent=1).encode() + b"\n"

    render_HEAD = render_GET
