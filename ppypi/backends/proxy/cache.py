"""
Files fetched from the upstream, kept on disk within a budget.

A file is fetched once, however many clients ask for it at the same time
(single flight): the download is written to a temporary file as it arrives,
and every client reads that file behind it, at its own pace (memory per
client: one chunk). The file is checked against the sha256 the upstream's
page gave before it joins the cache; no client receives its last byte
before that check passed, and on a mismatch every client's connection is
cut and nothing is kept.
"""

import hashlib
import os
import uuid
from collections import OrderedDict

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.web.client import ResponseDone

from ..interface import BackendError, BadUpstream, FileMissing, send

CHUNK = 1 << 16
# Chunks written behind before the upstream's connection is paused.
WRITE_BACKLOG = 16


class Fetch:
    """
    One file being fetched: written to C{tmp}, C{written} bytes so far.
    C{done} once checked and moved into the cache; C{error} if it failed.
    """

    def __init__(self, cache, dist, run):
        self.cache = cache
        self.dist = dist
        self._run = run
        # Named now, made by the first write (in the thread pool).
        self.tmp = os.path.join(cache.incoming, f"fetch-{uuid.uuid4().hex}.part")
        self.answered = None        # the upstream's answer began: True, or the exception
        self._answer_waiting = []
        self.written = 0
        self.done = False
        self.error = None
        self._waiting = []
        self._hash = hashlib.sha256()
        self._out = None
        self._backlog = []
        self._writing = False
        self._transport = None
        self._finished = False

    # -- the upstream's answer

    def began(self, outcome):
        """The upstream answered: True (200), or the exception every asker gets."""
        self.answered = outcome
        waiting, self._answer_waiting = self._answer_waiting, []
        for d in waiting:
            d.callback(outcome)

    async def ready(self):
        """Wait for the upstream's answer; raise what it was if not a 200."""
        outcome = self.answered
        if outcome is None:
            d = Deferred()
            self._answer_waiting.append(d)
            outcome = await d
        if outcome is not True:
            raise outcome

    # -- the waiting readers

    def changed(self):
        """A Deferred that fires at the next change (bytes written, done, failed)."""
        d = Deferred()
        self._waiting.append(d)
        return d

    def _notify(self):
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    # -- the upstream's bytes (a Protocol's callbacks, on the reactor)

    def received(self, chunk):
        self._hash.update(chunk)
        self._backlog.append(chunk)
        if len(self._backlog) > WRITE_BACKLOG and self._transport is not None:
            self._transport.pauseProducing()
        if not self._writing:
            self._writing = True
            Deferred.fromCoroutine(self._write()).addErrback(self._failed)

    async def _write(self):
        if self._out is None:
            self._out = await self._run(open, self.tmp, "wb")
        while self._backlog:
            chunks, self._backlog = self._backlog, []
            data = b"".join(chunks)
            await self._run(self._out.write, data)
            await self._run(self._out.flush)
            self.written += len(data)
            if self._transport is not None and len(self._backlog) <= WRITE_BACKLOG:
                self._transport.resumeProducing()
            self._notify()
        self._writing = False
        if self._finished:
            await self._finish()

    def ended(self, reason):
        self._finished = True
        self._transport = None
        if not reason.check(ResponseDone):
            self._failed_with(BackendError(
                f"the upstream's download of {self.dist.filename} broke off"))
            return
        if not self._writing:
            Deferred.fromCoroutine(self._finish()).addErrback(self._failed)

    async def _finish(self):
        if self.done or self.error is not None:
            return
        if self._out is not None:
            await self._run(self._out.close)
            self._out = None
        digest = self._hash.hexdigest()
        if digest != self.dist.sha256:
            self._failed_with(BadUpstream(
                f"{self.dist.filename}: the upstream sent bytes whose sha256 is {digest}, "
                f"not {self.dist.sha256}; nothing kept"))
            return
        await self._run(self.cache.keep, self.tmp, self.dist, self.written)
        self.done = True
        self.cache.fetched(self)
        self._notify()

    def _failed(self, failure):
        self._failed_with(failure.value if isinstance(failure.value, BackendError)
                          else BackendError(f"{self.dist.filename}: {failure.value}"))

    def _failed_with(self, error):
        if self.error is not None or self.done:
            return
        self.error = error
        if self._transport is not None:
            self._transport.stopProducing()
        if self._out is not None:
            try:
                self._out.close()
            except OSError:
                pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        self.cache.fetched(self)
        self._notify()

    # -- what a client gets

    async def deliver(self, write):
        """
        The file's bytes to C{write}, as they arrive; the last one only
        once the whole file passed its check.
        """
        while not (self.written or self.done or self.error):
            await self.changed()
        if self.error is not None:
            raise self.error
        try:
            f = await self._run(open, self.cache.path(self.dist) if self.done else self.tmp,
                                "rb")
        except FileNotFoundError:
            # Failed (and removed) or moved into the cache meanwhile.
            if self.error is not None:
                raise self.error from None
            f = await self._run(open, self.cache.path(self.dist), "rb")
        try:
            sent = 0
            size = self.dist.size
            while True:
                if self.error is not None:
                    raise self.error
                # Everything but the last byte may go before the check.
                limit = self.written if self.done else min(self.written, size - 1)
                if sent < limit:
                    chunk = await self._run(f.read, min(CHUNK, limit - sent))
                    if not chunk:
                        raise BackendError(f"{self.dist.filename}: the cache file shrank")
                    sent += len(chunk)
                    if not await send(write, chunk):
                        return
                    continue
                if self.done:
                    return
                await self.changed()
        finally:
            f.close()


class _Receiver(Protocol):
    def __init__(self, fetch):
        self.fetch = fetch

    def connectionMade(self):
        self.fetch._transport = self.transport

    def dataReceived(self, data):
        self.fetch.received(data)

    def connectionLost(self, reason):
        self.fetch.ended(reason)


class FileCache:
    """
    The folder of fetched files (C{files/PROJECT/FILENAME}), least recently
    used out first above C{max_bytes} (None: no budget).

    @ivar usage: filename -> size, least recently used first.
    """

    def __init__(self, folder, max_bytes=None):
        self.folder = folder
        self.incoming = os.path.join(folder, ".incoming")
        self.max_bytes = max_bytes
        self.usage = OrderedDict()
        self.total = 0
        self.fetches = {}       # filename -> Fetch in flight
        self.evicted = 0
        self.on_kept = lambda: None  # a file joined the cache (the budget is held then)

    def path(self, dist):
        return os.path.join(self.folder, "files", dist.project, dist.filename)

    def load(self):
        """(Blocking) what is on disk, oldest first; leftovers of fetches removed."""
        os.makedirs(self.incoming, exist_ok=True)
        for name in os.listdir(self.incoming):
            os.unlink(os.path.join(self.incoming, name))
        found = []
        top = os.path.join(self.folder, "files")
        if os.path.isdir(top):
            for project in os.listdir(top):
                for name in os.listdir(os.path.join(top, project)):
                    st = os.stat(os.path.join(top, project, name))
                    found.append((st.st_mtime, name, st.st_size))
        for _, name, size in sorted(found):
            self.usage[name] = size
            self.total += size

    def has(self, dist):
        return dist.filename in self.usage

    def touch(self, dist):
        self.usage.move_to_end(dist.filename)

    def keep(self, tmp, dist, size):
        """(Blocking) a checked file into the cache."""
        final = self.path(dist)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(tmp, final)

    def fetched(self, fetch):
        self.fetches.pop(fetch.dist.filename, None)
        if fetch.done:
            self.usage[fetch.dist.filename] = fetch.written
            self.total += fetch.written
            self.on_kept()

    def over_budget(self):
        """Files to evict (least recently used first), as (filename, project)."""
        out = []
        if self.max_bytes is None:
            return out
        total = self.total
        for name, size in self.usage.items():
            if total <= self.max_bytes:
                break
            if name in self.fetches:
                continue
            out.append(name)
            total -= size
        return out

    def evict(self, name, project):
        """(Blocking) remove one file."""
        size = self.usage.pop(name, 0)
        self.total -= size
        self.evicted += 1
        try:
            os.unlink(os.path.join(self.folder, "files", project, name))
        except FileNotFoundError:
            pass

    async def start(self, dist, http, headers, run, timeout):
        """
        The L{Fetch} of C{dist}: the one in flight, or a new one once the
        upstream answered 200.

        @raise FileMissing: the upstream has no such file (404/410).
        @raise BackendError: it failed or cannot be reached.
        """
        fetch = self.fetches.get(dist.filename)
        if fetch is None:
            # Registered before the first wait: every asker meanwhile shares it.
            fetch = self.fetches[dist.filename] = Fetch(self, dist, run)
            Deferred.fromCoroutine(self._begin(fetch, http, headers, timeout))
        await fetch.ready()
        return fetch

    async def _begin(self, fetch, http, headers, timeout):
        dist = fetch.dist
        try:
            response = await http.get(dist.location, headers=headers, unbuffered=True,
                                      timeout=timeout, allow_redirects=True)
        except Exception as e:
            error = BackendError(f"the upstream cannot be reached for {dist.filename}: "
                                 f"{type(e).__name__}")
            fetch._failed_with(error)
            fetch.began(error)
            return
        if response.code != 200:
            response.deliverBody(Protocol())  # discarded
            error = FileMissing(dist.filename) if response.code in (404, 410) else \
                BackendError(f"the upstream answered {response.code} for {dist.filename}")
            fetch._failed_with(error if isinstance(error, BackendError)
                               else BackendError("gone upstream"))
            fetch.began(error)
            return
        fetch.began(True)
        response.deliverBody(_Receiver(fetch))
