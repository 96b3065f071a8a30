"""
The top of the server's resource tree, its Site, and /health.
"""

import json
import re
import time

from twisted.logger import Logger, LogLevel
from twisted.internet import address
from twisted.web import http, server
from twisted.web.resource import ErrorPage, Resource

from ..auth import parse_basic
from ..logs import LINE_FORMAT
from ..memo import Memo
from ..urls import SHARED_HEAD
from .upload import MULTIPART_OVERHEAD, PPyPIRequest


class Root(Resource):
    """
    The top of the server: C{/R/...} goes to repository R, C{/health} answers
    for the server, anything else goes to the first repository.
    """

    def __init__(self, apps, repositories, metrics=None, minter=None):
        super().__init__()
        self._apps = {name: app.resource() for name, app in apps.items()}
        self._default = next(iter(self._apps.values()))
        self._repositories = repositories
        self.putChild(b"health", Health(repositories))
        if minter is not None:
            from .oidc import oidc_resource
            self.putChild(b"_", oidc_resource(minter))
        if metrics is not None:
            from ..metrics import MetricsResource
            self.putChild(b"metrics", MetricsResource(metrics))

    def getChild(self, path, request):
        if not _valid_host(request):
            return ErrorPage(400, "Bad Request", "A single Host header of host[:port] is required.")
        try:
            name = path.decode("ascii")
        except UnicodeDecodeError:
            name = None
        if name in self._apps and not (name == SHARED_HEAD and _json_api(request.postpath)):
            request.repository_prefix = f"/{name}/"
            return self._apps[name]
        # Not a repository name: the first repository serves this path whole,
        # unless the Basic-auth username names another repository
        # (private-pypi's clients select the repository that way).
        request.postpath.insert(0, request.prepath.pop())
        request.repository_prefix = "/"
        if len(self._apps) == 1:
            return self._default
        return self._apps.get(_username(request), self._default)


def _json_api(postpath):
    """Is the rest of a /pypi/... path the JSON API's NAME/json?"""
    return len(postpath) == 2 and postpath[1] == b"json"


_HOST = re.compile(rb"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Hosts seen valid: clients send the same few, and this runs on every request.
_GOOD_HOSTS = set()


def _valid_host(request):
    """
    One Host header, a plain host[:port] (or none, as HTTP/1.0 allows).
    Absolute URLs ppypi writes (redirects, the JSON API, pages) use it.
    """
    hosts = request.requestHeaders.getRawHeaders(b"host")
    if hosts is None:
        return True
    if len(hosts) != 1:
        return False
    host = hosts[0]
    if host in _GOOD_HOSTS:
        return True
    if len(host) > 261 or _HOST.fullmatch(host) is None:
        return False
    if len(_GOOD_HOSTS) < 1024:
        _GOOD_HOSTS.add(host)
    return True


def _username(request):
    try:
        credentials = parse_basic(request.requestHeaders.getRawHeaders(b"authorization", [None])[-1])
    except ValueError:
        return None
    return credentials.username if credentials else None


# Bytes that Twisted's access-log escaping (a repr) leaves as they are:
# printable ASCII but the double quote and the backslash.
_PLAIN = re.compile(rb"[ !#-\[\]-~]*")
_IP_TYPES = (address.IPv4Address, address.IPv6Address)


def _escape(value):
    """L{twisted.web.http._escape}, with a fast path for plain values."""
    if _PLAIN.fullmatch(value) is not None:
        return value.decode("ascii")
    return http._escape(value)


# Methods, protocols, user agents, content types: a few values, repeated.
_ESCAPED = Memo(_escape)
_CONTENT_TYPES = Memo(lambda ctype: ctype.decode("ascii", "replace").replace('"', "%22"))


def access_log_line(timestamp, request):
    """
    Apache's combined format (which never shows credentials), plus the
    answer's Content-Type, so the log tells which clients read JSON.

    The same line as L{twisted.web.http.combinedLogFormatter} (a test holds
    them equal), built at a tenth of its cost: the line is written for every
    request, and Twisted's costs more than answering an index page. One
    difference: an IPv4 client of a dual-stack IPv6 socket (systemd's
    C{ListenStream=8888}) is logged as C{1.2.3.4}, not C{::ffff:1.2.3.4},
    as it is when ppypi binds an IPv4 address itself.
    """
    client = request.getClientAddress()
    # An address's host is an IP address: nothing to escape.
    ip = client.host if isinstance(client, _IP_TYPES) else "-"
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    get = request.requestHeaders.getRawHeaders
    referrer = get(b"referer")
    agent = get(b"user-agent")
    ctype = request.responseHeaders.getRawHeaders(b"content-type")
    return '"%s" - - %s "%s %s %s" %d %s "%s" "%s" "%s"' % (
        ip, timestamp, _ESCAPED[request.method], _escape(request.uri),
        _ESCAPED[request.clientproto], request.code, request.sentLength or "-",
        _ESCAPED[referrer[-1] or b"-"] if referrer else "-",
        _ESCAPED[agent[-1] or b"-"] if agent else "-",
        _CONTENT_TYPES[ctype[0]] if ctype else "-")


# How a request line starts: a method (a token) and a space.
_REQUEST_START = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} ")


class IndexChannel(http.HTTPChannel):
    """
    HTTP/1.1 connections, with a deadline on a request's head: its request
    line and headers must all arrive within the site's timeout of the first
    read that left them incomplete, else 408 and the connection is closed.

    twisted.web restarts its idle timer on every byte, so without this a
    client sending its headers a byte at a time (slowloris) held a
    connection for as long as it liked. Checked as bytes arrive (a client
    that stops sending meets the idle timer instead). While an answer is
    being made twisted.web turns the timeout off and keeps what arrives;
    it hands that over when the answer is done, so a pipelined head is
    timed from then.

    A head it will not read gets an answer, with Connection: close, where
    twisted.web closed the connection without one (a line over 16 KiB) or
    with a bare status line: 414 for a request line over 16 KiB, 431 for a
    header line over 16 KiB, over 500 header fields or 16 KiB of head in
    all, 400 for the rest.
    """

    _head_started = None   # when a head was first seen incomplete
    _in_request = False    # the head is all in: a body, or the answer, follows
    _heads = 0             # heads received whole on this connection
    _closing = False

    def connectionMade(self):
        super().connectionMade()
        self._seconds = self.site.reactor.seconds

    def dataReceived(self, data):
        if self._closing:
            return
        started = self._head_started
        if started is not None and self.timeOut and self._seconds() - started > self.timeOut:
            self._head_too_slow()
            return
        in_head, heads = not self._in_request, self._heads
        super().dataReceived(data)
        # Bytes of a head came and no head was completed: the clock starts.
        # (A whole request in one read, the usual case, costs no clock.)
        if (in_head and heads == self._heads and not self._in_request and started is None
                and self.timeOut):
            self._head_started = self._seconds()

    def allHeadersReceived(self):
        self._in_request = True
        self._head_started = None
        self._heads += 1
        super().allHeadersReceived()

    def allContentReceived(self):
        self._in_request = False
        super().allContentReceived()

    def _head_too_slow(self):
        self._refuse(408, b"Request Timeout", b"Request head too slow")

    def lineLengthExceeded(self, line):
        # A request line or header line over MAX_LENGTH (16 KiB): Twisted's
        # LineReceiver would close the connection without an answer.
        if self.requests:
            # The request line is in (the channel reads a head only when no
            # request is in hand): a header line.
            self._refuse(431, b"Request Header Fields Too Large", b"A header line is too long")
        elif _REQUEST_START.match(line) is not None:
            self._refuse(414, b"URI Too Long", b"The request line is too long")
        else:
            self._refuse(400, b"Bad Request", b"Not an HTTP request line")

    def _respondToBadRequestAndDisconnect(self):
        # Twisted's answer to a request it refuses (too many headers, too
        # large a head, a malformed line or body) is a bare status line; say
        # which, and that the connection closes.
        if (self._receivedHeaderCount > self.maxHeaders
                or self._receivedHeaderSize > self.totalHeadersSize):
            self._refuse(431, b"Request Header Fields Too Large",
                         b"Too many header fields, or too large")
        else:
            self._refuse(400, b"Bad Request", b"Bad request")

    def _refuse(self, code, reason, detail):
        """Answer C{code} to a request that will not be read, and close."""
        if self._closing:
            return
        self._closing = True
        body = b"%d %s\n" % (code, detail)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (code, reason, len(body), body))
        self.loseConnection()


class IndexSite(server.Site):
    """
    The HTTP site: requests are L{PPyPIRequest}s, whose bodies are spooled
    to C{spool_dir} and limited by C{max_body(path)}.
    """

    protocol = IndexChannel
    # Its events are in this class's namespace (a Logger as a class
    # attribute names itself after the class).
    access_log = Logger()
    # Access lines are collected and written every 0.25 s or 100 lines, each
    # as a log event of its own, stamped with the time of its request:
    # twistd's log observer puts the time before the first line of an event
    # only, and every line must stand alone for grep and log shippers. Its
    # formatting of an event costs more than answering a small page: written
    # together, the lines add ~10 us to a request, written as each request
    # ends ~18 us (measured in process); 100 hold the reactor for ~1 ms.
    ACCESS_LOG_DELAY = 0.25
    ACCESS_LOG_BATCH = 100

    def __init__(self, resource, spool_dir, limits, metrics=None, **kwargs):
        super().__init__(resource, requestFactory=PPyPIRequest,
                         logFormatter=access_log_line, **kwargs)
        self.metrics = metrics
        self._access_lines = []
        self._access_times = []
        self._access_flush = None
        self.spool_dir = spool_dir
        self._limits = {name.encode(): limit + MULTIPART_OVERHEAD for name, limit in limits.items()}
        self._largest = max(self._limits.values())

    def log(self, request):
        if self.metrics is not None:
            started = getattr(request, "started", None)
            seconds = self.reactor.seconds() - started if started is not None else 0.0
            self.metrics.request(request.method, request.uri, request.code, seconds)
        self._access_lines.append(access_log_line(self._logDateTime, request))
        self._access_times.append(time.time())
        if len(self._access_lines) >= self.ACCESS_LOG_BATCH:
            self.flush_access_log()
        elif self._access_flush is None:
            self._access_flush = self.reactor.callLater(self.ACCESS_LOG_DELAY,
                                                        self.flush_access_log)

    def log_aborted(self, request):
        """
        A request whose client left before its answer was all sent: logged
        with the bytes sent so far, and status 499 (nginx's "client closed
        request") when no answer had begun.
        """
        if not request.startedWriting:
            request.code = 499
        self.log(request)

    def flush_access_log(self):
        if self._access_flush is not None and self._access_flush.active():
            self._access_flush.cancel()
        self._access_flush = None
        lines, times = self._access_lines, self._access_times
        if not lines:
            return
        self._access_lines, self._access_times = [], []
        # The events Logger.info would make, but for log_time, and without
        # its per-event checks.
        logger = self.access_log
        observer, namespace, source = logger.observer, logger.namespace, logger.source
        info = LogLevel.info
        for line, when in zip(lines, times):
            observer({"log_logger": logger, "log_level": info, "log_namespace": namespace,
                      "log_source": source, "log_format": LINE_FORMAT, "log_time": when,
                      "line": line})

    def stopFactory(self):
        self.flush_access_log()
        super().stopFactory()

    def max_body(self, path):
        """The largest body accepted for a request line's path."""
        first = (path or b"").split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
        if first in self._limits:
            return self._limits[first]
        # Other paths may reach any repository (private-pypi clients choose
        # it by username); each repository's own limit is checked as the
        # file part is read.
        return self._largest


class Health(Resource):
    isLeaf = True

    def __init__(self, repositories):
        super().__init__()
        self._repositories = repositories

    def render_GET(self, request):
        statuses = {r.name: r.status() for r in self._repositories}
        ok = all(s["ok"] for s in statuses.values())
        request.setResponseCode(200 if ok else 503)
        if not ok:
            waits = [r.retry_after for r in self._repositories if r.retry_after]
            request.setHeader("Retry-After", str(int(max(waits)) if waits else 30))
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        return json.dumps({"status": "ok" if ok else "failing",
                           "repositories": statuses}, indent=1).encode() + b"\n"

    render_HEAD = render_GET
