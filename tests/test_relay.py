"""
A backend's Stream passed through to a slow client: the source waits while
the client's transport is full, so memory per client is a chunk, and it
stops reading once the client has gone.
"""

from twisted.internet.defer import Deferred

from ppypi.backends.interface import Stream, send
from ppypi.web import files


class SlowRequest:
    """A request whose transport is full after every write, until resumed."""

    def __init__(self):
        self.written = []
        self.producer = None
        self.finished = Deferred()
        self.channel = object()  # None once the client has gone

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def notifyFinish(self):
        return self.finished

    def write(self, chunk):
        self.written.append(chunk)
        self.producer.pauseProducing()


def counting_source(total):
    produced = []

    async def deliver(write):
        for i in range(total):
            chunk = b"%d" % i
            produced.append(chunk)
            if not await send(write, chunk):
                return

    return Stream(deliver), produced


def test_the_source_waits_while_the_client_is_slow():
    request = SlowRequest()
    source, produced = counting_source(5)
    done = Deferred.fromCoroutine(files.relay(request, source))
    # One chunk out, then the source waits: nothing more is read.
    assert produced == [b"0"] and request.written == [b"0"]
    producer = request.producer
    producer.resumeProducing()
    assert produced == [b"0", b"1"]
    for _ in range(3):
        producer.resumeProducing()
    producer.resumeProducing()
    assert request.written == [b"0", b"1", b"2", b"3", b"4"]
    assert done.called and request.producer is None


def test_the_source_stops_when_the_client_goes():
    request = SlowRequest()
    source, produced = counting_source(1000)
    done = Deferred.fromCoroutine(files.relay(request, source))
    request.producer.resumeProducing()
    assert len(produced) == 2
    request.finished.errback(ConnectionError("client gone"))
    assert done.called and len(produced) == 2
    assert request.written == [b"0", b"1"]


def test_a_plain_write_callable_still_works():
    # The conformance suite collects a stream with list.append (returns None).
    chunks = []
    source, _ = counting_source(3)
    d = Deferred.fromCoroutine(source.deliver(chunks.append))
    assert d.called and chunks == [b"0", b"1", b"2"]
