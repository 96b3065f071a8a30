"""
Serving distribution files: streamed from a thread pool, with Range.
"""

import re

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

CHUNK = 256 * 1024

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

# Never "Content-Encoding: gzip" for a .tar.gz: clients would unpack it.
_CONTENT_TYPES = (
    (".whl", "application/zip"),
    (".zip", "application/zip"),
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
    (".tar.bz2", "application/x-bzip2"),
    (".tar.xz", "application/x-xz"),
    (".metadata", "text/plain; charset=utf-8"),
)


def content_type(filename):
    for suffix, ctype in _CONTENT_TYPES:
        if filename.endswith(suffix):
            return ctype
    return "application/octet-stream"


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header, size):
    """
    Parse a Range header for a file of C{size} bytes.

    Only a single byte range is honoured; anything else (several ranges,
    other units, garbage) is ignored and the whole file is sent, which
    RFC 9110 allows.

    @return: None for the whole file, or (start, length).
    @raise RangeNotSatisfiable: for a well-formed range outside the file.
    """
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable()
        start = max(0, size - suffix)
        end = size - 1
    else:
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None  # invalid: ignored
        if start >= size:
            raise RangeNotSatisfiable()
        end = min(end, size - 1)
    return start, end - start + 1


log = Logger()


@implementer(IPushProducer)
class _Pacer:
    """Tells the sending loop when the transport wants it to wait."""

    def __init__(self):
        self.stopped = False
        self._waiting = None

    def pauseProducing(self):
        if self._waiting is None:
            self._waiting = Deferred()

    def resumeProducing(self):
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()

    async def ready(self):
        if self._waiting is not None:
            await self._waiting
        return not self.stopped


async def relay(request, source):
    """
    Pass a backend's L{ppypi.backends.interface.Stream} through to
    C{request}: each C{write} answers when the client wants more (False
    once it has gone), so a source that waits holds one chunk per slow
    client.
    """
    pacer = _Pacer()
    request.registerProducer(pacer, True)
    request.notifyFinish().addBoth(lambda _: pacer.stopProducing())

    def write(chunk):
        if not pacer.stopped:
            request.write(chunk)
        return Deferred.fromCoroutine(pacer.ready())

    try:
        await source.deliver(write)
    except CancelledError:
        raise  # the client left (Klein cancels the answer): nothing to tell
    except Exception as e:
        if not request.startedWriting:
            raise  # nothing sent yet: an error answer
        # Part of the file is out under its Content-Length: cut the
        # connection, so that no client takes a short body for the file.
        log.warn("{path}: the source failed part way ({e}); connection cut",
                 path=request.path.decode("utf-8", "replace"), e=e)
        request.loseConnection()
    finally:
        _unregister(request)


def _unregister(request):
    # After the client left, the request has no channel to unregister from.
    if request.channel is not None:
        request.unregisterProducer()


async def stream(request, fileobj, first, length, run_in_thread):
    """
    Write C{length} bytes to C{request}: C{first}, already read, then the
    rest from C{fileobj}, read in the thread pool, pausing whenever the
    client is slower than the disk.
    """
    pacer = _Pacer()
    request.registerProducer(pacer, True)
    request.notifyFinish().addBoth(lambda _: pacer.stopProducing())
    try:
        remaining = length
        while remaining > 0 and await pacer.ready():
            if first is not None:
                chunk, first = first, None
            else:
                chunk = await run_in_thread(fileobj.read, min(CHUNK, remaining))
            if not chunk:
                # The file shrank under us: the client must not take a short
                # body for a whole file, so drop the connection.
                request.loseConnection()
                break
            if pacer.stopped:
                break
            request.write(chunk)
            remaining -= len(chunk)
    finally:
        _unregister(request)
        fileobj.close()
