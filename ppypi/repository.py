"""
A repository: its configuration, its backend and its index, kept in step.
"""

import time

from packaging.version import Version
from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from .backends import BackendError, Conflict, Mirror
from .index import RepositoryIndex
from .names import version_of


class Repository:
    """
    One named repository.

    @ivar healthy: False while the backend is failing; True once a sync
        succeeded and no later one failed.
    """

    log = Logger()

    def __init__(self, config, backend, clock, metrics=None):
        self.config = config
        self.name = config.name
        self.backend = backend
        self.index = RepositoryIndex(config.name)
        self._clock = clock
        self._held_saved = frozenset()
        self.healthy = False
        self.last_error = None
        self.retry_after = None
        self.last_sync = None
        self.syncs = 0
        self._locks = {}            # filename -> DeferredLock
        # Held while yanks or statuses change: a sync then leaves them be.
        self._yank_lock = DeferredLock()
        self.metrics = metrics
        self._changes = None        # {filename: DistFile or None} while a scan runs
        # A mirror (a proxy of another index) fetches a project when asked.
        self.mirror = backend if isinstance(backend, Mirror) else None
        self._checked = {}          # project -> (when its page was checked, why stale or None)

    async def _load_held(self):
        try:
            return await self.backend.load_held()
        except BackendError as e:
            self.log.warn("repository {repo}: names held unreadable ({e}); "
                          "names held before are known again as they are seen",
                          repo=self.name, e=e)
            return set()

    async def sync(self):
        """
        Bring the index in step with the backend. Never raises: a failure is
        logged, marks the repository unhealthy, and the next sync runs as usual.
        """
        try:
            if not self.index.ready and not self._held_saved:
                held = await self._load_held()
                self.index.held |= held
                self._held_saved = frozenset(held)
                await self._serve_cached()
            started = self._clock.seconds()
            self._changes = {}
            try:
                result = await self.backend.list_files()
            finally:
                changes, self._changes = self._changes, None
            # Yanks are kept by the backend (another instance may change them).
            if not self._yanking:
                self.index.set_yanks(await self.backend.load_yanks())
                self.index.set_statuses(await self.backend.load_statuses())
            # Uploads and removals made while the scan ran win over what it saw.
            files = {f.filename: f for f in result.files}
            for filename, dist in changes.items():
                if dist is None:
                    files.pop(filename, None)
                else:
                    files[filename] = dist
            added, removed = self.index.replace(files.values())
            if self.index.held != self._held_saved:
                names = frozenset(self.index.held)
                await self.backend.save_held(names)
                self._held_saved = names
        except Exception as e:
            self.healthy = False
            self.last_error = str(e) or type(e).__name__
            # When the store said how long to wait, clients hear the same.
            self.retry_after = getattr(e, "retry_after", None)
            if self.metrics is not None:
                self.metrics.backend_error(self.name, "sync")
            self.log.failure("repository {repo}: sync failed; serving the last index",
                             repo=self.name)
            return False
        self.healthy = True
        self.last_error = None
        self.retry_after = None
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

    async def _serve_cached(self):
        """
        At start, before the first listing: what the backend's own cache of
        its last one holds (L{Backend.cached_listing}, where it has one), so
        that a restart serves at once (at 1,000,000 files the scan takes
        seconds); the listing that follows corrects it. The names held are
        loaded first: none falls through to the extra index meanwhile.
        """
        cached = getattr(self.backend, "cached_listing", None)
        if cached is None:
            return
        files = await cached()
        if files:
            self.index.set_yanks(await self.backend.load_yanks())
            self.index.set_statuses(await self.backend.load_statuses())
            self.index.replace(files)
            self.log.info("repository {repo}: serving {count} files as last seen, "
                          "while they are listed again", repo=self.name, count=len(files))

    # -- a mirror's projects, fetched when asked

    def fresh(self, project):
        """Is a mirror's page of C{project} recent enough to serve as it is?"""
        checked = self._checked.get(project)
        return checked is not None and checked[1] is None and \
            time.time() - checked[0] < self.mirror.page_ttl

    def stale(self, project):
        """Why the page of C{project} is the last one the source gave (None: it is not)."""
        checked = self._checked.get(project)
        return checked[1] if checked is not None else None

    async def lookup(self, project):
        """
        Fetch (or revalidate) a mirror's page of C{project} into the index.
        Returns False when the source has no such project.

        @raise BackendError: the source failed and nothing is cached.
        """
        view = await self.mirror.fetch_project(project)
        if view is None:
            self._checked.pop(project, None)
            self.index.forget_project(project)
            return False
        self.index.replace_project(project, view.files, view.yanks)
        self._checked[project] = (view.checked_at, view.stale)
        if view.stale is not None and self.metrics is not None:
            self.metrics.backend_error(self.name, "upstream")
        return True

    async def forget(self, project):
        """Drop a mirror's cached page of C{project}; True if there was one."""
        self._checked.pop(project, None)
        self.index.forget_project(project)
        return await self.mirror.forget_project(project)

    def _mark_failing(self, error):
        """
        The backend failed outside a sync (an upload): until a sync succeeds,
        the repository is failing, so no name falls through to the extra index.
        """
        self.healthy = False
        self.last_error = str(error) or type(error).__name__
        self.retry_after = error.retry_after

    def _record(self, filename, dist):
        if self._changes is not None:
            self._changes[filename] = dist

    async def _locked(self, filename):
        lock = self._locks.get(filename)
        if lock is None:
            lock = self._locks[filename] = DeferredLock()
        await lock.acquire()
        return lock

    def _unlock(self, filename, lock):
        lock.release()
        if not lock.locked and not lock.waiting:
            self._locks.pop(filename, None)

    async def publish(self, upload, checked, principal=None):
        """
        Store and index an upload that passed its checks.

        @return: "stored", or "same" when the file exists with this content.
        @raise Conflict: the file exists with other content.
        @raise BackendError: the store failed (the repository is failing
            until a sync succeeds).
        """
        filename = checked.dist.filename
        lock = await self._locked(filename)
        try:
            existing = self.index.file(filename)
            same = existing is not None and existing.sha256 == upload.sha256
            if same and (checked.provenance is None or existing.provenance):
                return "same"
            # The same bytes with verified attestations they lacked: stored
            # again, with them (the first provenance kept wins).
            overwrite = existing is not None and (same or self.config.allow_overwrite)
            if existing is not None and not overwrite:
                raise Conflict(filename)
            try:
                status, dist = await self.backend.store(
                    upload, checked, overwrite=overwrite, principal=principal,
                    replacing=existing if overwrite else None)
            except BackendError as e:
                self.log.error("repository {repo}: storing {filename} failed: {e}",
                               repo=self.name, filename=filename, e=str(e))
                self._mark_failing(e)
                raise
            self.index.add(dist)
            self._record(filename, dist)
            if dist.project not in self._held_saved:
                await self._save_held_now()
            if status == "stored":
                self.log.info("repository {repo}: stored {filename} ({size} bytes)",
                              repo=self.name, filename=filename, size=dist.size)
            return status
        finally:
            self._unlock(filename, lock)

    async def _save_held_now(self):
        """
        A new project is held from its first upload on, even if the server
        stops before its next sync (then its files deleted, the name would
        be free to answer from elsewhere): saved now, the sync retries.
        """
        names = frozenset(self.index.held)
        try:
            await self.backend.save_held(names)
        except BackendError as e:
            self.log.warn("repository {repo}: names held not saved now ({e}); "
                          "the next sync saves them", repo=self.name, e=e)
            return
        self._held_saved = names

    async def remove_release(self, project, version, principal=None):
        """
        Delete every file of one release; return the filenames deleted.
        """
        removed = []
        for dist in self.release(project, version):
            lock = await self._locked(dist.filename)
            try:
                if self.index.file(dist.filename) is not dist:
                    continue
                await self.backend.delete(dist, principal=principal)
                self.index.remove(dist.filename)
                self._record(dist.filename, None)
                removed.append(dist.filename)
            finally:
                self._unlock(dist.filename, lock)
        if removed:
            self.log.info("repository {repo}: removed {files}", repo=self.name,
                          files=", ".join(removed))
        return removed

    def release(self, project, version):
        """The files of one release; versions compare as PEP 440 says (1.0 == 1.0.0)."""
        wanted = version_of(version)
        return [f for f in self.index.project_files(project) if Version(f.version) == wanted]

    @property
    def _yanking(self):
        return self._yank_lock.locked

    async def yank(self, project, version, reason, principal=None):
        """
        Yank (C{reason}: a string, maybe empty) or unyank (None) a release,
        as the backend keeps it, then in the index.

        @return: the filenames of the release (empty: no such release).
        """
        release = self.release(project, version)
        if not release:
            return []
        version = release[0].version  # as the index spells it
        await self._yank_lock.acquire()
        try:
            yanks = await self.backend.set_yank(project, version, reason, principal=principal)
            self.index.set_yanks(yanks)
        finally:
            self._yank_lock.release()
        self.log.info("repository {repo}: {what} {project} {version}", repo=self.name,
                      what="yanked" if reason is not None else "unyanked",
                      project=project, version=version)
        return [f.filename for f in release]

    async def set_status(self, project, status, reason, principal=None):
        """
        Set a project's status (PEP 792) as the backend keeps it, then in the
        index. Returns False for a project this repository never held.
        """
        if not self.index.has_held(project):
            return False
        await self._yank_lock.acquire()
        try:
            statuses = await self.backend.set_status(project, status, reason,
                                                     principal=principal)
            self.index.set_statuses(statuses)
        finally:
            self._yank_lock.release()
        self.log.info("repository {repo}: {project} is {status}{why}", repo=self.name,
                      project=project, status=status, why=f" ({reason})" if reason else "")
        return True

    def status(self):
        return {
            "ok": self.healthy,
            "type": self.config.type,
            "files": len(self.index),
            "projects": len(self.index.projects),
            "last_sync": self.last_sync,
            "error": self.last_error,
            **self.backend.status(),
        }
