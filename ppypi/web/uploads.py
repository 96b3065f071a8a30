"""
Uploads, the legacy API that twine and uv publish speak (C{:action=
file_upload}), and pypiserver's C{:action=remove_pkg}: C{POST /},
C{/legacy/} and C{/simple/} (where private-pypi took them).

The body was spooled to disk by the request class (L{ppypi.web.upload}),
and is parsed in the thread pool, the file written to the backend's
incoming folder as it comes; never held in memory.
"""

import errno

from packaging.version import InvalidVersion
from twisted.logger import Logger

from ..attestations import Refused
from ..auth import WRITE
from ..backends import ReadOnly
from ..names import is_valid_name, normalize, version_of
from . import multipart
from .errors import HTTPError, NotFound, Unavailable
from .router import Router, as_http_error, header
from .upload import UploadError, check_upload

_OUTCOMES = {401: "unauthorized", 403: "forbidden", 409: "conflict", 413: "too_large",
             507: "no_space"}


def refuse_by_status(status, project):
    """PEP 792: an archived or quarantined project takes no uploads (400)."""
    if status is not None and status["status"] in ("archived", "quarantined"):
        reason = f": {status['reason']}" if status.get("reason") else ""
        raise HTTPError(f"Project {project} is {status['status']}{reason}; "
                        f"it takes no uploads")


def in_scope(principal, project):
    """An upload token is for its projects only (403 for another)."""
    if principal is not None and not principal.may_change(project):
        raise HTTPError(f"This token may not change project {project}", 403)


class UploadApp:
    app = Router()
    log = Logger()

    def __init__(self, ctx):
        self.ctx = ctx

    @app.route("/", methods=["POST"])
    @app.route("/legacy/", methods=["POST"])
    # private-pypi took uploads here; twine configured for it keeps working.
    @app.route("/simple/", methods=["POST"])
    async def upload(self, request):
        """The legacy upload API; every outcome is counted in /metrics,
        refusals of credentials too (so they are checked here, not declared)."""
        try:
            if self.ctx.repository.mirror is not None:
                raise ReadOnly(f"repository {self.ctx.repository.name} is a read-only mirror; "
                               "upload to a hosted repository")
            principal = await self.ctx.authorize(request, WRITE)
            body, outcome = await self._upload(request, principal)
        except Exception as e:
            answer = as_http_error(e)
            outcome = ("failed" if answer is None else
                       _OUTCOMES.get(answer.code, "rejected" if answer.code < 500 else "failed"))
            raise
        finally:
            if self.ctx.metrics is not None:
                self.ctx.metrics.upload(self.ctx.repository.name, outcome)
        return body

    async def _upload(self, request, principal):
        ctx = self.ctx
        repository = ctx.repository
        try:
            boundary = multipart.boundary_of(header(request, "content-type"))
        except multipart.MultipartError as e:
            raise HTTPError(str(e)) from None
        request.content.seek(0)
        upload = None
        try:
            try:
                fields, upload = await ctx.run(
                    multipart.parse, request.content, boundary,
                    repository.backend.incoming_dir, ctx.config.max_file_bytes)
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
                checked = await ctx.run(check_upload, fields, upload)
            except UploadError as e:
                raise HTTPError(e.message, e.code) from None
            in_scope(principal, checked.dist.project)
            refuse_by_status(ctx.index.status(checked.dist.project), checked.dist.project)
            checked.provenance = await self._provenance(fields, upload, checked)
            status = await repository.publish(upload, checked, principal)
        except OSError as e:
            # The server's own disk: the spool, the incoming folder, a folder store.
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HTTPError("Insufficient storage", 507) from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                self.log.error("repository {repo}: cannot store uploads: {e}",
                               repo=repository.name, e=e)
                raise Unavailable("Repository cannot store uploads now") from None
            raise
        finally:
            if upload is not None:
                await ctx.run(upload.discard)
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        if status == "stored":
            return b"OK\n", "stored"
        return b"OK (already there, unchanged)\n", "unchanged"

    async def _provenance(self, fields, upload, checked):
        """The provenance object of the upload's verified attestations (PEP 740), or None."""
        ctx = self.ctx
        field = (fields.get("attestations") or [None])
        if len(field) > 1:
            raise HTTPError("Field 'attestations' given more than once")
        if field[0] is None:
            if ctx.config.require_attestations:
                raise HTTPError("This repository requires attestations (PEP 740) with every "
                                "upload: publish from CI with a trusted publisher "
                                "(twine upload --attestations, or uv publish)")
            return None
        publishers = ctx.config.publishers.get(checked.dist.project, ())
        try:
            return await ctx.run(ctx.attestations.verify, field[0], upload.filename,
                                 upload.sha256, publishers)
        except Refused as e:
            raise HTTPError(f"Invalid attestations: {e}") from None

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
        in_scope(principal, normalize(name))
        removed = await self.ctx.repository.remove_release(normalize(name), version, principal)
        if not removed:
            raise NotFound(f"{normalize(name)} {version} not found")
        return ("Removed " + ", ".join(removed) + "\n").encode()
