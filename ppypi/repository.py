"""
A repository: its configuration, its backend and its index, kept in step.
"""

import json
import os
import time

from twisted.logger import Logger

from .backends.filesystem import write_atomically
from .index import RepositoryIndex


class Repository:
    """
    One named repository.

    @ivar healthy: False while the backend is failing; True once a sync
        succeeded and no later one failed.
    """

    log = Logger()

    def __init__(self, config, backend, state_dir, run_in_thread, clock):
        self.config = config
        self.name = config.name
        self.backend = backend
        self.index = RepositoryIndex(config.name)
        self.state_dir = state_dir
        self._run = run_in_thread
        self._clock = clock
        self._held_path = os.path.join(state_dir, "held-names.json")
        self._held_saved = frozenset()
        self.healthy = False
        self.last_error = None
        self.last_sync = None
        self.syncs = 0

    def _load_held(self):
        try:
            with open(self._held_path, "rb") as f:
                names = json.load(f)
            return {n for n in names if isinstance(n, str)}
        except FileNotFoundError:
            return set()
        except (ValueError, OSError, TypeError) as e:
            self.log.warn("repository {repo}: {path} unreadable ({e}); "
                          "names held before are known again as they are seen",
                          repo=self.name, path=self._held_path, e=e)
            return set()

    def _save_held(self, names):
        os.makedirs(self.state_dir, exist_ok=True)
        write_atomically(self._held_path, json.dumps(sorted(names)).encode())

    async def sync(self):
        """
        Bring the index in step with the backend. Never raises: a failure is
        logged, marks the repository unhealthy, and the next sync runs as usual.
        """
        try:
            if not self.index.ready and not self._held_saved:
                held = await self._run(self._load_held)
                self.index.held |= held
                self._held_saved = frozenset(held)
            started = self._clock.seconds()
            result = await self.backend.list_files()
            added, removed = self.index.replace(result.files)
            if self.index.held != self._held_saved:
                names = frozenset(self.index.held)
                await self._run(self._save_held, names)
                self._held_saved = names
        except Exception as e:
            self.healthy = False
            self.last_error = str(e) or type(e).__name__
            self.log.failure("repository {repo}: sync failed; serving the last index",
                             repo=self.name)
            return False
        self.healthy = True
        self.last_error = None
        self.last_sync = time.time()
        self.syncs += 1
        if added or removed or result.hashed or self.syncs == 1:
            self.log.info(
                "repository {repo}: {count} files in {projects} projects "
                "({added} added, {removed} removed, {hashed} hashed) in {seconds:.3f}s",
                repo=self.name, count=len(self.index), projects=len(self.index.projects),
                added=added, removed=removed, hashed=result.hashed,
                seconds=self._clock.seconds() - started)
        return True

    def status(self):
        return {
            "ok": self.healthy,
            "type": self.config.type,
            "files": len(self.index),
            "projects": len(self.index.projects),
            "last_sync": self.last_sync,
            "error": self.last_error,
            "hashed_since_start": getattr(self.backend, "hashed_total", None),
        }
