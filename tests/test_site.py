"""The site's connections (IndexChannel), in process on a Clock: the
deadline on a request's head, keep-alive clients it must not touch, the
answers to heads too large to read; and the access log, every line of
which stands alone."""

import io
import re
import socket
import time

from twisted.internet import address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, textFileLogObserver
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from ppypi.web.site import IndexSite, access_log_line

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


# -- heads too large to read: an answer, then the connection closes ------------------


def refusal(transport):
    """(status line, headers, body) of the one answer a refused head got."""
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    assert int(headers[b"Content-Length"]) == len(body)
    assert headers[b"Connection"] == b"close"
    return status, headers, body


def test_a_header_line_over_16_kib_gets_431_and_close(tmp_path):
    """Twisted's line limit (MAX_LENGTH) closed the connection without a word."""
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    status, _, body = refusal(transport)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert body.startswith(b"431 ")
    assert transport.disconnecting
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # nothing more is read
    assert answers(transport) == 0


def test_a_header_line_over_16_kib_in_pieces_gets_431(tmp_path):
    """The limit also trips on a line not yet ended (LineReceiver's other branch)."""
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(20):
        channel.dataReceived(b"a" * 1000)
    assert refusal(transport)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert transport.disconnecting


def test_a_request_line_over_16_kib_gets_414_and_close(tmp_path):
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refusal(transport)[0] == b"HTTP/1.1 414 URI Too Long"
    assert transport.disconnecting


def test_16_kib_of_no_request_line_gets_400(tmp_path):
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"\x16\x03\x01" + b"\x00" * 20_000)
    assert refusal(transport)[0] == b"HTTP/1.1 400 Bad Request"


def test_an_overlong_line_after_a_kept_alive_request(tmp_path):
    """Pipelined after a request that is answered: that one gets its 200,
    the next its 431 (or 414), in order."""
    for overlong, status in [(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000, b" 431 "),
                             (b"GET /" + b"a" * 20_000 + b" HTTP/1.1", b" 414 ")]:
        clock, channel, transport = connect(tmp_path)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + overlong + b"\r\n\r\n")
        first, second = transport.value().split(b"HTTP/1.1", 2)[1:]
        assert first.startswith(b" 200 ") and second.startswith(status)
        assert transport.disconnecting


def test_too_many_headers_get_431_and_close(tmp_path):
    """Twisted's other limits on a head (500 fields, 16 KiB in all): it
    answered them with a bare status line and no Connection: close."""
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(501))
                         + b"\r\n")
    assert refusal(transport)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET / HTTP/1.1\r\n" + b"X-H: " + b"a" * 9000 + b"\r\n"
                         + b"X-I: " + b"a" * 9000 + b"\r\n\r\n")
    assert refusal(transport)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_a_malformed_header_gets_400_and_close(tmp_path):
    clock, channel, transport = connect(tmp_path)
    channel.dataReceived(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    status, _, body = refusal(transport)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert transport.disconnecting


# -- the access log: every line stands alone ------------------------------------------

# twistd's prefix: the time (RFC 3339, to the second) and the event's system.
_STAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} "
                      r"\[ppypi\.web\.site\.IndexSite#info\] ")


def test_every_access_line_of_a_batch_has_its_own_timestamp(tmp_path):
    """Written as twistd's log observer writes them: each access line starts
    with the time, also when several are written together."""
    out = io.StringIO()
    clock, channel, transport = connect(tmp_path)
    site = channel.site
    site.access_log = Logger(namespace="ppypi.web.site.IndexSite",
                             observer=textFileLogObserver(out))
    for i in range(5):
        channel.dataReceived(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
    assert out.getvalue() == ""          # collected, not yet written
    clock.advance(site.ACCESS_LOG_DELAY)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    for i, line in enumerate(lines):
        assert _STAMPED.match(line), line
        assert '"GET /%d HTTP/1.1" 200 5 ' % i in line


def test_an_access_line_is_stamped_with_its_request_s_time(tmp_path):
    """Not with the time the batch is written."""
    events = []
    clock, channel, transport = connect(tmp_path)
    site = channel.site
    site.access_log = Logger(observer=events.append)
    before = time.time()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    after = time.time()
    site.flush_access_log()
    [event] = events
    assert before <= event["log_time"] <= after
    assert '"GET / HTTP/1.1" 200 5 ' in event["line"]


def test_an_ipv4_client_of_a_dual_stack_socket_is_logged_as_ipv4():
    """::ffff:1.2.3.4 (an IPv4 client of systemd's dual-stack socket) is
    logged as 1.2.3.4, as when ppypi binds an IPv4 address itself."""
    for host, shown in [("::ffff:192.0.2.7", "192.0.2.7"), ("::1", "::1"),
                        ("2001:db8::ffff:1", "2001:db8::ffff:1"), ("192.0.2.8", "192.0.2.8")]:
        request = http.Request(DummyChannel())
        kind = address.IPv6Address if ":" in host else address.IPv4Address
        request.client = kind("TCP", host, 1234)
        request.method, request.uri, request.clientproto = b"GET", b"/", b"HTTP/1.1"
        request.code, request.sentLength = 200, 1
        assert access_log_line("[x]", request).startswith(f'"{shown}" - - [x] ')


# -- the live daemon's log --------------------------------------------------------------


def test_live_access_lines_written_together_each_start_with_a_timestamp(tmp_path, daemon_factory):
    """Requests answered in one turn of the reactor (pipelined on one
    connection) are in one batch of the access log: in twistd's log every
    one of their lines starts with the time."""
    d = daemon_factory(tmp_path / "root")
    requests = b"".join(b"GET /health?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(requests + b"GET /health?n=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
    log = d.log_when("GET /health?n=last ")
    lines = [line for line in log.splitlines() if "GET /health?n=" in line]
    assert len(lines) == 6, lines
    for line in lines:
        assert _STAMPED.match(line), line
