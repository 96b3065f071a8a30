"""
Large in-memory bodies (the root of a big index, its home page) written a
piece at a time, as the client reads them.

C{request.write(body)} of a whole body hands it to the transport, which
joins it with the headers and keeps that copy until the client has read
it all: at 100,000 files the 2 MB /simple/ page, fetched by 16 clients at
once, held ~31 MB more. Written in pieces, a connection holds one piece.
"""

from twisted.internet.interfaces import IPullProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

PIECE = 64 * 1024


@implementer(IPullProducer)
class _Pieces:
    """Writes C{body} to C{request}, one PIECE each time the transport asks."""

    def __init__(self, request, body):
        self._request = request
        self._body = body
        self._offset = 0

    def resumeProducing(self):
        request = self._request
        if request is None:
            return
        if self._offset >= len(self._body):
            self._request = None
            request.unregisterProducer()
            request.finish()
            return
        piece = self._body[self._offset:self._offset + PIECE]
        self._offset += PIECE
        request.write(piece)

    def stopProducing(self):
        self._request = None


class LargeBody(Resource):
    """A body (bytes), written in pieces; the answer's headers are set."""

    isLeaf = True

    def __init__(self, body):
        super().__init__()
        self._body = body

    def render(self, request):
        request.setHeader(b"content-length", b"%d" % len(self._body))
        if request.method == b"HEAD":
            return b""
        producer = _Pieces(request, self._body)
        request.notifyFinish().addErrback(lambda _: producer.stopProducing())
        request.registerProducer(producer, False)
        return NOT_DONE_YET


def answer(request, body):
    """
    C{body} as a render result, its Content-Length set: nothing on HEAD
    (twisted.web would log a warning for a HEAD answered with a body), the
    bytes themselves when small, else a L{LargeBody}.
    """
    request.setHeader(b"content-length", b"%d" % len(body))
    if request.method == b"HEAD":
        return b""
    return body if len(body) <= 2 * PIECE else LargeBody(body)
