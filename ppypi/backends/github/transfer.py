"""
Files sent to GitHub and received from it, read and written in the thread
pool a chunk at a time (treq's own file producer, and a collector writing
to a file, would do file IO on the reactor thread).
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer


@implementer(IBodyProducer)
class ThreadedFileBody:
    """
    A request body read from a file in the thread pool, a chunk at a time,
    as the connection asks for it.
    """

    CHUNK = 1 << 18

    def __init__(self, path, length, run_in_thread):
        self.path = path
        self.length = length
        self._run = run_in_thread
        self._paused = None
        self._stopped = False

    def startProducing(self, consumer):
        done = Deferred()

        def finished(result):
            # Once stopped, the Deferred must never fire (IBodyProducer).
            if not self._stopped:
                done.callback(None) if not isinstance(result, Failure) else done.errback(result)

        Deferred.fromCoroutine(self._produce(consumer)).addBoth(finished)
        return done

    async def _produce(self, consumer):
        f = await self._run(open, self.path, "rb")
        try:
            while not self._stopped:
                if self._paused is not None:
                    await self._paused
                    continue
                chunk = await self._run(f.read, self.CHUNK)
                if not chunk or self._stopped:
                    break
                consumer.write(chunk)
        finally:
            await self._run(f.close)

    def pauseProducing(self):
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        self._stopped = True
        self.resumeProducing()


def save_body(response, f, run_in_thread):
    """
    Write a response's body to the open file C{f}, in the thread pool (as
    C{treq.collect(response, f.write)} would, but off the reactor thread).
    Returns a Deferred that fires once every byte is written.
    """
    if response.length == 0:
        return succeed(None)
    done = Deferred()
    response.deliverBody(_FileSink(f, run_in_thread, done))
    return done


class _FileSink(Protocol):
    """
    Hands the body's chunks to the thread pool in order, one write at a
    time; while more than C{LIMIT} bytes wait for the disk the connection
    is paused (memory stays bounded however slow the disk).
    """

    LIMIT = 1 << 22

    def __init__(self, f, run_in_thread, done):
        self._f = f
        self._run = run_in_thread
        self._done = done
        self._pending = []      # chunks not yet handed to a thread
        self._waiting = 0       # bytes received and not yet written
        self._writing = False
        self._paused = False
        self._ended = None      # the reason the body ended, once it has

    def dataReceived(self, data):
        if self._done is None:
            return  # a write failed: the rest is dropped
        self._pending.append(data)
        self._waiting += len(data)
        if self._waiting > self.LIMIT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._next()

    def connectionLost(self, reason):
        self._ended = reason
        self._next()

    def _next(self):
        if self._writing or self._done is None:
            return
        if self._pending:
            batch = b"".join(self._pending)
            self._pending = []
            self._writing = True
            self._run(self._f.write, batch).addCallbacks(
                self._written, self._failed, callbackArgs=(len(batch),))
        elif self._ended is not None:
            done, self._done = self._done, None
            if self._ended.check(ResponseDone, PotentialDataLoss):
                done.callback(None)  # PotentialDataLoss: no length given (as treq.collect)
            else:
                done.errback(self._ended)

    def _written(self, _, size):
        self._writing = False
        self._waiting -= size
        if self._paused and self._waiting <= self.LIMIT // 2:
            self._paused = False
            self.transport.resumeProducing()
        self._next()

    def _failed(self, failure):
        self._writing = False
        self._pending = []
        done, self._done = self._done, None
        if self._ended is None:
            self.transport.loseConnection()
        done.errback(failure)
