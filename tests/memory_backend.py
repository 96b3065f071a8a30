"""
A backend held in memory, for the tests: it exists to prove that
L{ppypi.backends.interface} is all a backend needs. It passes the
conformance suite (tests/test_backend_conformance.py) and serves a whole
server, and it is this module alone: importing it registers the repository
type C{memory}::

    repositories:
      mem: {type: memory, write: [alice], downloads: stream, latency: 0.5}

C{downloads}: C{local} (a L{LocalFile} over the bytes, ranges offered) or
C{stream} (a L{Stream}); C{latency}: seconds each store waits on the clock
before it lands (so that concurrent stores interleave).
"""

import copy
import hashlib
import io
import os
import time
from types import SimpleNamespace

from twisted.internet.task import deferLater

from ppypi.backends.interface import (BackendError, Conflict, FileMissing, Listing, LocalFile,
                                      Stored, Stream, put_status, send)
from ppypi.backends.registry import BackendType, register
from ppypi.domain import DistFile

DOWNLOADS = ("local", "stream")
CHUNK = 1 << 16


class MemoryStore:
    """What one memory repository holds."""

    def __init__(self):
        self.files = {}      # filename -> (DistFile, bytes)
        self.metadata = {}   # sha256 -> core metadata bytes
        self.yanks = {}      # project -> {version: reason}
        self.statuses = {}   # project -> {"status": ..., "reason": ...}
        self.provenance = {}  # filename -> provenance object bytes
        self.held = set()
        self.tokens = {}
        # While set, every operation raises it: the store is down (tests set it).
        self.failure = None


# By state folder: a backend made again on the same one (a restart) finds the
# same store, as it would find a folder or a remote repository again.
STORES = {}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class MemoryBackend:
    def __init__(self, name, state_dir, memory, run_in_thread, clock, downloads, latency):
        self.name = name
        self.memory = memory
        self.incoming_dir = os.path.join(state_dir, "incoming")
        self._run = run_in_thread
        self._clock = clock
        self.downloads = downloads
        self.latency = latency

    def _check(self):
        if self.memory.failure is not None:
            raise self.memory.failure

    def prepare(self):
        os.makedirs(self.incoming_dir, exist_ok=True)
        leftovers = os.listdir(self.incoming_dir)
        for name in leftovers:
            os.unlink(os.path.join(self.incoming_dir, name))
        return len(leftovers)

    def describe(self):
        return "memory"

    def status(self):
        return {"files_in_memory": len(self.memory.files)}

    async def permissions(self, token):
        return None

    async def list_files(self):
        self._check()
        return Listing([dist for dist, _ in self.memory.files.values()])

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        self._check()
        data = await self._run(_read, upload.path)
        if hashlib.sha256(data).hexdigest() != upload.sha256:
            raise BackendError(f"{upload.filename} changed in {self.incoming_dir}")
        if self.latency:
            await deferLater(self._clock, self.latency, lambda: None)
            self._check()
        name = checked.dist
        held = self.memory.files.get(name.filename)
        if held is not None and not overwrite:
            if held[0].sha256 != upload.sha256:
                raise Conflict(name.filename)
            return Stored("same", held[0])
        meta_sha = hashlib.sha256(checked.metadata).hexdigest()
        self.memory.metadata[meta_sha] = checked.metadata
        if checked.provenance is not None:
            self.memory.provenance[name.filename] = checked.provenance
        else:
            self.memory.provenance.pop(name.filename, None)
        now = time.time()
        dist = DistFile(name.filename, name.project, name.version, name.kind, upload.sha256,
                        len(data), int(now * 1e9), checked.requires_python, name.filename,
                        meta_sha, checked.servable, now, checked.summary,
                        checked.provenance is not None)
        self.memory.files[name.filename] = (dist, data)
        return Stored("stored", dist)

    async def delete(self, dist, principal=None):
        self._check()
        self.memory.files.pop(dist.filename, None)
        self.memory.provenance.pop(dist.filename, None)

    async def read_metadata(self, sha256, dist=None):
        self._check()
        return self.memory.metadata.get(sha256)

    async def download(self, dist, start=0, read=0, principal=None):
        self._check()
        held = self.memory.files.get(dist.filename)
        if held is None or held[0].sha256 != dist.sha256:
            raise FileMissing(dist.filename)
        data = held[1]
        if self.downloads == "stream":
            async def deliver(write):
                for i in range(0, len(data), CHUNK):
                    if not await send(write, data[i:i + CHUNK]):
                        return  # the client has gone
            return Stream(deliver)
        f = io.BytesIO(data)
        f.seek(start)
        return LocalFile(f, f.read(read) if read else b"")

    async def load_yanks(self):
        self._check()
        return copy.deepcopy(self.memory.yanks)

    async def set_yank(self, project, version, reason, principal=None):
        self._check()
        versions = self.memory.yanks.setdefault(project, {})
        if reason is None:
            versions.pop(version, None)
        else:
            versions[version] = reason
        if not versions:
            del self.memory.yanks[project]
        return copy.deepcopy(self.memory.yanks)

    async def read_provenance(self, dist):
        self._check()
        held = self.memory.files.get(dist.filename)
        if held is None or held[0].sha256 != dist.sha256:
            return None
        return self.memory.provenance.get(dist.filename)

    async def load_statuses(self):
        self._check()
        return copy.deepcopy(self.memory.statuses)

    async def set_status(self, project, status, reason, principal=None):
        self._check()
        put_status(self.memory.statuses, project, status, reason)
        return copy.deepcopy(self.memory.statuses)

    async def load_tokens(self):
        self._check()
        return copy.deepcopy(self.memory.tokens)

    async def update_tokens(self, change):
        self._check()
        records = copy.deepcopy(self.memory.tokens)
        result = change(records)
        self.memory.tokens = records
        return result

    async def load_held(self):
        self._check()
        return set(self.memory.held)

    async def save_held(self, names):
        self._check()
        self.memory.held = set(names)


def _settings(checker, spec, key, root):
    downloads = spec.get("downloads", "local")
    if downloads not in DOWNLOADS:
        checker.fail(f"{key}.downloads", f"must be local or stream, not {downloads!r}")
    latency = checker.number(spec.get("latency", 0), f"{key}.latency", minimum=0)
    return SimpleNamespace(downloads=downloads, latency=float(latency))


def _create(context):
    memory = STORES.setdefault(context.state_dir, MemoryStore())
    settings = context.config.settings
    return MemoryBackend(context.config.name, context.state_dir, memory, context.run_in_thread,
                         context.clock, settings.downloads, settings.latency)


MEMORY = register(BackendType("memory", keys={"downloads", "latency"}, settings=_settings,
                              factory=_create))
