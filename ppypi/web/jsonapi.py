"""
Warehouse's JSON API, for Renovate and Dependabot:
C{GET /pypi/NAME/json} and C{GET /pypi/NAME/VERSION/json}.
"""

import hashlib

from ..auth import READ
from . import pypi_json
from .body import answer
from .errors import NotFound
from .router import Router, base_url, not_modified


class JSONApp:
    app = Router()

    def __init__(self, ctx):
        self.ctx = ctx

    @app.route("/pypi/<string:name>/json", methods=["GET", "HEAD"], need=READ)
    @app.route("/pypi/<string:name>/<string:version>/json", methods=["GET", "HEAD"], need=READ)
    async def pypi_json(self, request, principal, name, version=None):
        ctx = self.ctx
        project, files, yanks, chosen = ctx.project_request(
            request, name, version, "pypi/{project}/" + (f"{version}/json" if version else "json"))
        status = ctx.index.status(project)
        if status is not None and status["status"] == "quarantined":
            raise NotFound(f"project {project} is quarantined")  # as pypi.org answers
        raw = await ctx.release_metadata(files, chosen)
        body = pypi_json.render(project, files, chosen, raw, base_url(request), yanks,
                                with_releases=version is None)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", ctx.page_cache_control)
        request.setHeader("ETag", etag)
        if not_modified(request, etag):
            request.setResponseCode(304)
            return b""
        return answer(request, body)
