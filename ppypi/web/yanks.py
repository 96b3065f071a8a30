"""
Yanking (PEP 592): C{POST /yank/NAME/VERSION} yanks a release (C{reason}
from a form body or the query), C{DELETE} unyanks it. Write permission.
"""

import json
from urllib.parse import parse_qs

from packaging.version import InvalidVersion

from ..auth import WRITE
from ..names import is_valid_name, normalize, version_of
from .errors import HTTPError, NotFound
from .uploads import in_scope
from .router import Router, header

MAX_YANK_REASON = 1000


class YankApp:
    app = Router()

    def __init__(self, ctx):
        self.ctx = ctx

    @app.route("/yank/<string:name>/<string:version>", methods=["POST", "DELETE"], need=WRITE)
    async def yank(self, request, principal, name, version):
        self.ctx.require_ready()
        if not is_valid_name(name):
            raise NotFound("not a valid project name")
        try:
            version = str(version_of(version))
        except InvalidVersion:
            raise HTTPError("Invalid version") from None
        reason = None
        if request.method == b"POST":
            reason = form_value(request, "reason", MAX_YANK_REASON) or ""
        project = normalize(name)
        in_scope(principal, project)
        files = await self.ctx.repository.yank(project, version, reason, principal)
        if not files:
            raise NotFound(f"{project} has no version {version}")
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"project": project, "version": version,
                           "yanked": reason is not None, "reason": reason,
                           "files": files}, indent=1).encode() + b"\n"


def form_value(request, field, limit):
    """
    One text field from a form body (application/x-www-form-urlencoded) or
    the query: None when absent.

    @raise HTTPError: given twice, too long, not UTF-8, or with control characters.
    """
    values = request.args.get(field.encode(), [])
    ctype = (header(request, "content-type") or "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        request.content.seek(0)
        body = request.content.read(limit * 4 + 1001)
        if len(body) > limit * 4 + 1000:
            raise HTTPError("Form too large", 413)
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False, errors="strict")
        except UnicodeDecodeError:
            raise HTTPError("Form is not UTF-8") from None
        values = [v.encode() for v in form.get(field, [])] + values
    if len(values) > 1:
        raise HTTPError(f"Give one {field}")
    if not values:
        return None
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(f"{field.capitalize()} is not UTF-8") from None
    if len(value) > limit:
        raise HTTPError(f"{field.capitalize()} longer than {limit} characters")
    if any(ord(c) < 0x20 and c not in "\t" for c in value):
        raise HTTPError(f"{field.capitalize()} contains control characters")
    return value
