"""
A mirror's files and their core metadata: fetched from the upstream once
(L{cache}), checked, then served from disk; small files are checked whole
before a client gets a byte, and fetched as soon as their metadata is
asked for.
"""

import hashlib

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ...metadata import MetadataError, inspect
from ...names import parse_filename
from ..interface import BackendError, BadUpstream, FileMissing, LocalFile, Stream

# Files up to this size are fetched and checked whole before a client gets
# a byte (a mismatch is a clean 502); larger ones flow while they arrive.
WHOLE_FIRST = 1 << 20
# Files up to this size are fetched as soon as their metadata is asked for.
PREFETCH_MAX = 4 << 20
FILE_TIMEOUT = 30.0     # seconds to wait for a file's first byte


class MirrorFiles:
    """
    The file half of L{ppypi.backends.proxy.ProxyBackend} (a mixin): it
    uses C{cache}, C{metadata}, C{counts}, C{http}, C{_headers}, C{_run},
    C{log} and C{name}.
    """

    async def download(self, dist, start=0, read=0, principal=None):
        cache = self.cache
        if cache.has(dist):
            path = cache.path(dist)
            try:
                f = await self._run(_open_at, path, start, read)
            except FileNotFoundError:
                cache.usage.pop(dist.filename, None)
            else:
                cache.touch(dist)
                self.counts["file_hits"] += 1
                return LocalFile(*f)
        self.counts["file_fetches"] += 1
        if dist.filename not in cache.fetches:
            self.counts["upstream_requests"] += 1  # one request, however many askers
        try:
            fetch = await cache.start(dist, self.http, self._headers(dist.location), self._run,
                                      FILE_TIMEOUT)
        except FileMissing:
            raise
        except BackendError:
            self.counts["upstream_errors"] += 1
            raise
        if not dist.size or dist.size <= WHOLE_FIRST:
            # Small (or of unknown size): the whole file, checked, first; a
            # mismatch is then a clean 502, not a cut connection.
            while not (fetch.done or fetch.error):
                await fetch.changed()
            if fetch.error:
                raise fetch.error
            f = await self._run(_open_at, cache.path(dist), start, read)
            return LocalFile(*f)

        async def deliver(write):
            try:
                await fetch.deliver(write)
            except BackendError:
                self.counts["upstream_errors"] += 1
                raise

        return Stream(deliver)

    def _kept(self):
        """A fetched file joined the cache: hold the budget (whoever still reads)."""
        Deferred.fromCoroutine(self._evict()).addErrback(
            lambda f: self.log.failure("repository {repo}: eviction failed", f,
                                       repo=self.name))

    async def _evict(self):
        for name in self.cache.over_budget():
            project = _project_of(name)
            await self._run(self.cache.evict, name, project)
            self.log.info("repository {repo}: {name} out of the cache (max_cache_bytes)",
                          repo=self.name, name=name)

    async def read_metadata(self, sha256, dist=None):
        data = await self._run(self.metadata.get, sha256)
        if data is not None or dist is None:
            return data
        if self.cache.has(dist):
            # The file is here: its metadata is in it, no upstream needed.
            data = await self._run(_extracted, self.cache.path(dist), dist, sha256)
            if data is not None:
                await self._run(self.metadata.put, data)
                return data
        self._prefetch(dist)
        # One upstream request however many ask at once.
        waiting = self._metadata_fetches.get(sha256)
        if waiting is None:
            waiting = self._metadata_fetches[sha256] = []
            Deferred.fromCoroutine(self._fetch_metadata(sha256, dist)).addBoth(
                self._metadata_fetched, sha256)
        d = Deferred()
        waiting.append(d)
        return await d

    def _prefetch(self, dist):
        """
        A resolver that reads a small file's metadata mostly downloads the
        file next: start fetching it now, beside the metadata, and save a
        round trip to the upstream for it.
        """
        cache = self.cache
        if not 0 < dist.size <= PREFETCH_MAX or cache.has(dist) or dist.filename in cache.fetches:
            return
        self.counts["upstream_requests"] += 1
        Deferred.fromCoroutine(cache.start(dist, self.http, self._headers(dist.location),
                                           self._run, FILE_TIMEOUT)).addErrback(lambda f: None)

    def _metadata_fetched(self, result, sha256):
        for d in self._metadata_fetches.pop(sha256, ()):
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    async def _fetch_metadata(self, sha256, dist):
        url = dist.location + ".metadata"
        self.counts["upstream_requests"] += 1
        try:
            response = await self.http.get(url, headers=self._headers(url), timeout=FILE_TIMEOUT)
            data = await response.content()
        except Exception as e:
            self.counts["upstream_errors"] += 1
            raise BackendError(f"the upstream cannot be reached for {dist.filename}'s "
                               f"metadata: {type(e).__name__}") from None
        if response.code != 200:
            self.counts["upstream_errors"] += 1
            if response.code in (404, 410):
                return None
            raise BackendError(f"the upstream answered {response.code} for "
                               f"{dist.filename}'s metadata")
        if hashlib.sha256(data).hexdigest() != sha256:
            self.counts["upstream_errors"] += 1
            raise BadUpstream(f"{dist.filename}.metadata: the upstream sent other bytes "
                              "than its page's hash; nothing kept")
        await self._run(self.metadata.put, data)
        return data


def _extracted(path, dist, sha256):
    """A cached file's core metadata, if it is the one the page names (blocking)."""
    try:
        raw = inspect(path, dist.kind, dist.filename).raw
    except (MetadataError, OSError):
        return None
    return raw if hashlib.sha256(raw).hexdigest() == sha256 else None


def _open_at(path, start, read):
    f = open(path, "rb")
    try:
        if start:
            f.seek(start)
        return f, (f.read(read) if read else b"")
    except BaseException:
        f.close()
        raise


def _project_of(filename):
    return parse_filename(filename).project
