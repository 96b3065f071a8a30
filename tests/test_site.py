"""The site's connections (IndexChannel), in process on a Clock: the
deadline on a request's head, and keep-alive clients it must not touch."""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from ppypi.web.site import IndexSite

TIMEOUT = 10


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


def connect(tmp_path):
    clock = Clock()
    site = IndexSite(Hello(), str(tmp_path), {"default": 1000}, reactor=clock, timeout=TIMEOUT)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, channel, transport


def answers(transport):
    return transport.value().count(b"HTTP/1.1 200 ")


def test_a_head_trickled_past_the_timeout_gets_408_and_is_closed(tmp_path):
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(12):            # a byte a second: the idle timer never fires
        clock.advance(1)
        channel.dataReceived(b"X")
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.disconnecting
    channel.dataReceived(b"-Late: 1\r\n\r\n")   # nothing more is read
    assert answers(transport) == 0


def test_a_request_line_trickled_is_cut_off_too(tmp_path):
    """Before the request line is whole there is no request yet."""
    clock, channel, transport = connect(tmp_path)
    for byte in b"GET /" + b"a" * 20:
        channel.dataReceived(bytes([byte]))
        clock.advance(0.6)
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_keep_alive_clients_are_timed_per_request(tmp_path):
    """Requests on one connection over far longer than the timeout, each
    head arriving in pieces but within it, are all answered."""
    clock, channel, transport = connect(tmp_path)
    for i in range(5):
        channel.dataReceived(b"GET /%d HTTP/1.1\r\n" % i)
        clock.advance(TIMEOUT - 2)
        channel.dataReceived(b"Host: x\r\n\r\n")
        clock.advance(1)
    assert answers(transport) == 5 and not transport.disconnecting


def test_bytes_that_came_during_an_answer_start_their_deadline_after_it(tmp_path):
    """A pipelined head that arrived while a slow answer was made is timed
    from the end of that answer (twisted.web holds such bytes until then)."""
    from twisted.web.server import NOT_DONE_YET

    pending = []

    class Slow(Resource):
        isLeaf = True

        def render_GET(self, request):
            pending.append(request)
            return NOT_DONE_YET

    clock, channel, transport = connect(tmp_path)
    channel.site.resource = Slow()
    channel.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(1)
    channel.dataReceived(b"GET /next HTTP/1.1\r\n")  # pipelined, kept while /slow runs
    clock.advance(3 * TIMEOUT)  # the answer takes long (the idle timer is off meanwhile)
    request = pending.pop()
    request.write(b"done")
    request.finish()
    clock.advance(1)
    channel.dataReceived(b"Host: x\r\n\r\n")
    assert b"HTTP/1.1 408" not in transport.value()
    assert len(pending) == 1   # the next request was read and dispatched
