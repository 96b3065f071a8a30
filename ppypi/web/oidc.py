"""
Trusted publishing's two URLs (as uv and pypa/gh-action-pypi-publish find
them from the upload URL's host): C{GET /_/oidc/audience} and
C{POST /_/oidc/mint-token} (L{ppypi.oidc.Minter}); and C{POST
/_/oidc/burn-token}, which uv sends after its upload to end the token.
"""

import json

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..oidc import MAX_TOKEN_BYTES


def _json(request, code, data):
    request.setResponseCode(code)
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Cache-Control", "no-store")
    return json.dumps(data).encode() + b"\n"


class Audience(Resource):
    isLeaf = True

    def __init__(self, minter):
        super().__init__()
        self.minter = minter

    def render_GET(self, request):
        return _json(request, 200, {"audience": self.minter.audience})


class MintToken(Resource):
    isLeaf = True

    def __init__(self, minter, action="mint"):
        super().__init__()
        self.minter = minter
        self.action = action

    def render_POST(self, request):
        body = request.content.read(MAX_TOKEN_BYTES + 1024)
        if len(body) > MAX_TOKEN_BYTES + 1000:
            self.minter._count("invalid-payload")
            return _json(request, 413, {"message": "Token request failed", "errors": [
                {"code": "invalid-payload", "description": "the request is too large"}]})

        def done(result):
            code, data = result
            if not request._disconnected:
                request.write(_json(request, code, data))
                request.finish()

        def failed(failure):
            if not request._disconnected:
                request.processingFailed(failure)

        work = self.minter.mint(body) if self.action == "mint" else self.minter.burn(body)
        Deferred.fromCoroutine(work).addCallbacks(done, failed)
        return NOT_DONE_YET


def oidc_resource(minter):
    """The C{/_/} tree."""
    oidc = Resource()
    oidc.putChild(b"audience", Audience(minter))
    oidc.putChild(b"mint-token", MintToken(minter))
    oidc.putChild(b"burn-token", MintToken(minter, "burn"))
    top = Resource()
    top.putChild(b"oidc", oidc)
    return top
