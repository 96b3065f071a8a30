"""
Project status (PEP 792): C{POST /status/NAME} with C{status=} (active,
archived, deprecated, quarantined) and C{reason=}, from a form body or the
query. Write permission, as for yanks.
"""

import json

from ..auth import WRITE
from ..backends import STATUSES
from ..names import is_valid_name, normalize
from .errors import HTTPError, NotFound
from .router import Router
from .uploads import in_scope
from .yanks import form_value

MAX_STATUS_REASON = 1000


class StatusApp:
    app = Router()

    def __init__(self, ctx):
        self.ctx = ctx

    @app.route("/status/<string:name>", methods=["POST"], need=WRITE)
    async def set_status(self, request, principal, name):
        self.ctx.require_ready()
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        status = form_value(request, "status", 20)
        if status not in STATUSES:
            raise HTTPError(f"status must be one of {', '.join(STATUSES)}")
        reason = form_value(request, "reason", MAX_STATUS_REASON) or ""
        project = normalize(name)
        in_scope(principal, project)
        if not await self.ctx.repository.set_status(project, status, reason, principal):
            raise NotFound(f"{project} is not a project of this repository")
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"project": project, "status": status, "reason": reason},
                          indent=1).encode() + b"\n"
