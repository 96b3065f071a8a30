"""ppypi.web.body: large bodies written a piece at a time."""

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET

from ppypi.web import body


class FakeRequest:
    """What LargeBody uses of a request; the test plays the transport."""

    def __init__(self, method=b"GET"):
        self.method = method
        self.responseHeaders = Headers()
        self.written = []
        self.finished = False
        self.producer = None
        self.gone = Deferred()

    def setHeader(self, name, value):
        self.responseHeaders.setRawHeaders(name, [value])

    def notifyFinish(self):
        return self.gone

    def registerProducer(self, producer, streaming):
        assert not streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        assert not self.finished
        self.written.append(data)

    def finish(self):
        self.finished = True


def test_small_bodies_are_answered_as_they_are():
    small, large = b"x" * (2 * body.PIECE), b"x" * (2 * body.PIECE + 1)
    request = FakeRequest()
    assert body.answer(request, small) == small
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"%d" % len(small)]
    assert isinstance(body.answer(FakeRequest(), large), body.LargeBody)


def test_head_answers_the_length_without_the_bytes():
    """Nothing is returned on HEAD (twisted.web warns of a HEAD answered with
    a body), only the length."""
    for data in (b"small", b"z" * (body.PIECE * 3)):
        request = FakeRequest(method=b"HEAD")
        assert body.answer(request, data) == b""
        assert request.responseHeaders.getRawHeaders(b"content-length") == [b"%d" % len(data)]
    request = FakeRequest(method=b"HEAD")
    assert body.LargeBody(b"z" * (body.PIECE * 3)).render(request) == b""
    assert request.producer is None and request.written == []


def test_a_large_body_goes_out_one_piece_per_demand_then_finishes():
    data = bytes(range(256)) * (body.PIECE * 3 // 256 + 7)
    request = FakeRequest()
    assert body.LargeBody(data).render(request) is NOT_DONE_YET
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"%d" % len(data)]
    producer, demands = request.producer, 0
    while not request.finished:
        before = len(request.written)
        producer.resumeProducing()
        assert len(request.written) - before <= 1
        demands += 1
    assert b"".join(request.written) == data
    assert all(len(piece) <= body.PIECE for piece in request.written)
    assert demands == len(request.written) + 1 == 5 and request.producer is None


def test_nothing_is_written_once_the_client_has_gone():
    request = FakeRequest()
    body.LargeBody(b"y" * (body.PIECE * 4)).render(request)
    producer = request.producer
    producer.resumeProducing()
    request.gone.errback(Exception("connection lost"))
    producer.resumeProducing()
    assert len(request.written) == 1 and not request.finished


@pytest_twisted.ensureDeferred
async def test_a_client_leaving_in_the_middle_stops_the_body_and_is_logged(tmp_path):
    """Over real loopback TCP, with a body larger than the kernel's socket
    buffers can hold: the client reads a little and resets the connection;
    the writing stops and the access log shows the bytes sent so far."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol
    from twisted.internet.task import deferLater
    from twisted.web.resource import Resource

    from ppypi.web.site import IndexSite

    big = b"x" * 16_000_000
    pieces = []

    class Big(Resource):
        isLeaf = True

        def render_GET(self, request):
            result = body.answer(request, big)
            pieces.append(result)
            return result.render(request)

    class Leaver(Protocol):
        def connectionMade(self):
            self.transport.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")

        def dataReceived(self, data):
            self.transport.abortConnection()

    site = IndexSite(Big(), str(tmp_path), {"default": 1000})
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
                              Leaver())
        for _ in range(500):
            if site._access_lines:
                break
            await deferLater(reactor, 0.01, lambda: None)
        [line] = site._access_lines
        assert '"GET /big HTTP/1.1" 200 ' in line
        sent = int(line.split('" 200 ')[1].split()[0])
        assert 0 < sent < len(big)
        assert isinstance(pieces[0], body.LargeBody)
    finally:
        site.flush_access_log()
        await port.stopListening()
