"""
The ceiling: the fastest a bare twisted.web resource answers on this
machine, with nothing of an index behind it.

    python bench/ceiling.py --port PORT --page-bytes N [--root-page-bytes N]
                            [--file-bytes N] [--big-bytes N] [--big-name NAME]

- GET /simple/          a fixed page of --root-page-bytes (default: --page-bytes)
- GET /packages/...NAME a fixed body of --big-bytes (100 MB by default) when
                        the path ends with --big-name, streamed from one
                        256 KiB chunk in memory by a pull producer
- GET /packages/...     a fixed body of --file-bytes (a small wheel's size)
- any other GET         a fixed page of --page-bytes (ppypi's /simple/NAME/ size)

No request log (the bare resource is the point). Listens on 127.0.0.1 only.
"""

import argparse
import sys

from twisted.internet import reactor
from twisted.internet.interfaces import IPullProducer
from twisted.web import resource, server
from zope.interface import implementer

CHUNK = 256 * 1024


def fixed(size, fill):
    """C{size} bytes of an HTML-ish page (content does not matter, size does)."""
    head = b"<!DOCTYPE html>\n<html><body>\n"
    tail = b"</body></html>\n"
    middle = max(0, size - len(head) - len(tail))
    body = head + (fill * (middle // len(fill) + 1))[:middle] + tail
    return body[:size]


@implementer(IPullProducer)
class ChunkProducer:
    """Writes C{total} bytes, one CHUNK each time the transport asks for more."""

    def __init__(self, request, total, chunk):
        self.request = request
        self.remaining = total
        self.chunk = chunk

    def resumeProducing(self):
        if self.request is None:
            return
        if self.remaining <= 0:
            request, self.request = self.request, None
            request.unregisterProducer()
            request.finish()
            return
        n = min(len(self.chunk), self.remaining)
        self.remaining -= n
        self.request.write(self.chunk if n == len(self.chunk) else self.chunk[:n])

    def stopProducing(self):
        self.request = None


class Ceiling(resource.Resource):
    isLeaf = True

    def __init__(self, page, root_page, small_file, big_bytes, big_name):
        super().__init__()
        self.page = page
        self.root_page = root_page
        self.small_file = small_file
        self.big_bytes = big_bytes
        self.big_name = big_name.encode()
        self.chunk = b"\x00" * CHUNK

    def render_GET(self, request):
        path = request.path
        if path.startswith(b"/packages/"):
            request.setHeader(b"Content-Type", b"application/zip")
            if self.big_name and path.endswith(self.big_name):
                request.setHeader(b"Content-Length", b"%d" % self.big_bytes)
                producer = ChunkProducer(request, self.big_bytes, self.chunk)
                request.notifyFinish().addErrback(lambda _: producer.stopProducing())
                request.registerProducer(producer, False)
                return server.NOT_DONE_YET
            body = self.small_file
        elif path == b"/simple/":
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            body = self.root_page
        else:
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            body = self.page
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body


class QuietSite(server.Site):
    def log(self, request):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--page-bytes", type=int, required=True)
    ap.add_argument("--root-page-bytes", type=int)
    ap.add_argument("--file-bytes", type=int, default=1100)
    ap.add_argument("--big-bytes", type=int, default=100 * 1000 * 1000)
    ap.add_argument("--big-name", default="")
    a = ap.parse_args(argv)
    page = fixed(a.page_bytes, b'<a href="x">x</a><br>\n')
    root_page = fixed(a.root_page_bytes if a.root_page_bytes is not None else a.page_bytes,
                      b'<a href="x">x</a><br>\n')
    site = QuietSite(Ceiling(page, root_page, b"\x00" * a.file_bytes, a.big_bytes, a.big_name))
    port = reactor.listenTCP(a.port, site, interface="127.0.0.1")
    print(f"ceiling listening on 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
