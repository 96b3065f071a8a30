"""
PEP 740's integrity API: C{GET /integrity/PROJECT/VERSION/FILENAME/provenance},
the provenance object of a file whose upload carried verified attestations
(C{application/vnd.pypi.integrity.v1+json}); 404 for a file without one.
"""

from packaging.version import InvalidVersion, Version

from ..auth import READ
from ..names import normalize
from .errors import NotFound
from .router import Router

MEDIA_TYPE = b"application/vnd.pypi.integrity.v1+json"


class IntegrityApp:
    app = Router()

    def __init__(self, ctx):
        self.ctx = ctx

    @app.route("/integrity/<string:name>/<string:version>/<string:filename>/provenance",
               methods=["GET", "HEAD"], need=READ)
    async def provenance(self, request, principal, name, version, filename):
        ctx = self.ctx
        ctx.require_ready()
        dist = ctx.index.file(filename)
        try:
            same = dist is not None and dist.project == normalize(name) and \
                Version(dist.version) == Version(version)
        except InvalidVersion:
            same = False
        status = ctx.index.status(dist.project) if same else None
        if not same or not dist.provenance or (status and status["status"] == "quarantined"):
            raise NotFound(f"no provenance for {filename}")
        data = await ctx.repository.backend.read_provenance(dist)
        if data is None:
            raise NotFound(f"no provenance for {filename}")
        request.setHeader("Content-Type", MEDIA_TYPE)
        request.setHeader("Cache-Control", ctx.page_cache_control)
        return data
