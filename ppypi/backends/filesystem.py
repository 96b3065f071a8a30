"""
The filesystem backend: distribution files in a folder.

Files may be in per-project subfolders (as ppypi writes them) or anywhere
else below the folder (dropped in by hand, flat or nested, as pypiserver
keeps them). Each file is hashed once: its sha256 and Requires-Python are
persisted under the state folder, keyed by path and checked by size and
mtime, so a restart re-reads nothing that did not change.
"""

import errno
import hashlib
import json
import os
import threading
import time
from types import SimpleNamespace

from twisted.logger import Logger

from ..domain import DistFile
from ..metadata import MetadataError, inspect
from ..validate import ANYONE, AUTHENTICATED, Secret
from .interface import (BackendError, Conflict, FileMissing, LocalFile, StorageFull, Stored,
                        put_status, valid_status)
from .local import (LocalHeldNames, LocalTokens, MetadataStore, empty_incoming, fsync_dir, sha256_file,
                    write_atomically)
from .scan import PROVENANCE_SUFFIX, dump_known, load_known, scan_folder  # noqa: F401 (tests import scan_folder here)
from .registry import BackendType, register


class FilesystemBackend(LocalHeldNames, LocalTokens):
    """
    Distribution files in a folder, with file IO in a thread pool; the
    yanks and the names held in the state folder.

    @param run_in_thread: C{f(callable, *args) -> Deferred}, the thread runner.
    """

    log = Logger()

    def __init__(self, name, folder, state_dir, run_in_thread, exclude=()):
        self.name = name
        self.folder = os.path.abspath(folder)
        self.state_dir = state_dir
        self.exclude = tuple(exclude)
        self._run = run_in_thread
        self._cache_path = os.path.join(state_dir, "files.json")
        self._yanks_path = os.path.join(state_dir, "yanked.json")
        self._status_path = os.path.join(state_dir, "project-status.json")
        self._cache_problem = None  # found by cached_listing, said by the first scan
        self.metadata = MetadataStore(os.path.join(state_dir, "metadata"))
        self._cache = None
        self._warned = set()
        # Files stored since the last scan, for the next one: {relpath: DistFile}
        self._stored = {}
        self._stored_lock = threading.Lock()
        self.hashed_total = 0

    @property
    def incoming_dir(self):
        """Uploads in progress: in the folder, so that publishing is a rename."""
        return os.path.join(self.folder, ".ppypi", "incoming")

    def prepare(self):
        """
        Start-up (blocking): create the folders, and delete what uploads
        interrupted by a crash left behind. Returns how many files that was.
        """
        os.makedirs(self.folder, exist_ok=True)
        removed = empty_incoming(self.incoming_dir)
        # Temporary files of atomic writes a crash interrupted.
        for folder in (self.state_dir, self.metadata.folder):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if ".tmp-" in name:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
        return removed

    def describe(self):
        return f"folder {self.folder}"

    def status(self):
        return {"hashed_since_start": self.hashed_total}

    async def permissions(self, token):
        return None  # a folder has no access control of its own

    def _load_cache(self):
        try:
            with open(self._cache_path, "rb") as f:
                known = load_known(iter(f), self.folder)
            if known is None:
                return {}, "made by another version or for another folder"
            return known, None
        except FileNotFoundError:
            return {}, None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as e:
            return {}, f"unreadable ({e})"

    def _scan(self):
        problem, self._cache_problem = self._cache_problem, None
        if self._cache is None:
            self._cache, problem = self._load_cache()
        with self._stored_lock:
            stored, self._stored = self._stored, {}
        known = self._cache
        known.update(stored)
        result, seen = scan_folder(self.folder, known, self.exclude, self._warned,
                                   self.metadata)
        if result.cache_changed or stored:
            os.makedirs(self.state_dir, exist_ok=True)
            write_atomically(self._cache_path, dump_known(self.folder, seen))
        self._cache = seen
        return result, problem

    def _cached(self):
        if self._cache is None:
            self._cache, self._cache_problem = self._load_cache()
            if self._cache_problem:
                return None  # (the scan says so, and rebuilds it)
        files = {}
        for dist in self._cache.values():
            files.setdefault(dist.filename, dist)
        return list(files.values())

    async def cached_listing(self):
        """
        What the last scan found, from its persisted cache, before any scan
        (a restart serves it at once; the scan that follows corrects it):
        the files, or None without a usable cache.
        """
        try:
            return await self._run(self._cached)
        except OSError:
            return None

    async def list_files(self):
        """Scan the folder; return a L{ScanResult}."""
        try:
            result, cache_problem = await self._run(self._scan)
        except BackendError:
            raise
        except OSError as e:
            raise BackendError(f"{self.folder}: {e.strerror or e}") from e
        if cache_problem:
            self.log.warn("repository {repo}: index cache {path} {problem}; rebuilt it",
                          repo=self.name, path=self._cache_path, problem=cache_problem)
        for relpath, problem in result.warnings:
            self._warned.add(relpath)
            self.log.warn("repository {repo}: {relpath}: {problem}",
                          repo=self.name, relpath=relpath, problem=problem)
        self.hashed_total += result.hashed
        return result

    def _open(self, dist, start=0, read=0):
        path = os.path.join(self.folder, dist.location)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise FileMissing(dist.filename) from None
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EISDIR):
                raise FileMissing(dist.filename) from None
            raise BackendError(f"cannot open {dist.location}: {e.strerror}") from None
        try:
            if os.fstat(f.fileno()).st_size != dist.size:
                # Replaced by hand since the last sync: the index's hash is stale.
                raise FileMissing(dist.filename)
            if start:
                f.seek(start)
            head = f.read(read) if read else b""
        except BaseException:
            f.close()
            raise
        return f, head

    async def download(self, dist, start=0, read=0, principal=None):
        """
        Open a file of the index for reading, and read its first C{read}
        bytes from C{start}: one trip to the thread pool, which is all a
        small wheel needs (each trip costs more than the rest of a small
        download).

        @return: L{LocalFile}
        """
        return LocalFile(*await self._run(self._open, dist, start, read))

    def _store(self, upload, checked, overwrite, replacing=None):
        dist_name = checked.dist
        relpath = f"{dist_name.project}/{dist_name.filename}"
        final = os.path.join(self.folder, relpath)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        sidecar = final + PROVENANCE_SUFFIX
        status = "stored"
        if overwrite:
            # The old provenance goes first and the new one comes last: a
            # crash leaves a file without provenance, never with another's.
            _unlink(sidecar)
            os.replace(upload.path, final)
            if checked.provenance is not None:
                write_atomically(sidecar, checked.provenance)
            if replacing is not None and replacing.location != relpath:
                # The old copy was elsewhere (dropped in by hand): one file a name.
                old = os.path.join(self.folder, replacing.location)
                _unlink(old)
                _unlink(old + PROVENANCE_SUFFIX)
        else:
            if not os.path.exists(final):
                # Before the file, so that it is never listed without it (the
                # repository's per-file lock keeps other uploads out meanwhile).
                if checked.provenance is not None:
                    write_atomically(sidecar, checked.provenance)
                else:
                    _unlink(sidecar)  # a stale one, left by hand
            try:
                # Atomic and never over an existing file.
                os.link(upload.path, final)
            except FileExistsError:
                status = "same" if sha256_file(final) == upload.sha256 else "conflict"
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # No hard links here: the per-file lock in Repository makes
                # the check-then-rename safe against other uploads.
                if os.path.exists(final):
                    status = "same" if sha256_file(final) == upload.sha256 else "conflict"
                else:
                    os.rename(upload.path, final)
            if status == "conflict":
                raise Conflict(dist_name.filename)
        fsync_dir(os.path.dirname(final))
        st = os.stat(final)
        meta_sha = self.metadata.put(checked.metadata)
        dist = DistFile(dist_name.filename, dist_name.project, dist_name.version,
                        dist_name.kind, upload.sha256, st.st_size, st.st_mtime_ns,
                        checked.requires_python, relpath, meta_sha, checked.servable,
                        time.time(), checked.summary, os.path.exists(sidecar))
        with self._stored_lock:
            self._stored[relpath] = dist
        return Stored(status, dist)

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        """
        Publish an uploaded file: it appears in the folder whole, or not at all.

        @return: L{Stored}: "stored", or "same" (the file was already there
            with this content).
        @raise Conflict: it is there with other content.
        @raise StorageFull: the disk is full (nothing was published).
        @raise BackendError: the folder cannot take it (the interface's
            failure: a 503, never a 500 for an errno the web did not expect).
        """
        try:
            return await self._run(self._store, upload, checked, overwrite, replacing)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"{self.folder}: {e.strerror}") from e
            raise BackendError(f"cannot store {checked.dist.filename} in {self.folder}: "
                               f"{e.strerror or e}") from e

    def _delete(self, dist):
        path = os.path.join(self.folder, dist.location)
        _unlink(path)
        _unlink(path + PROVENANCE_SUFFIX)
        fsync_dir(os.path.dirname(path))

    async def delete(self, dist, principal=None):
        await self._run(self._delete, dist)

    def _read_metadata(self, sha256, dist):
        data = self.metadata.get(sha256)
        if data is None and dist is not None:
            # The store lost it (deleted by hand): read the archive again.
            try:
                found = inspect(os.path.join(self.folder, dist.location), dist.kind,
                                dist.filename)
            except (MetadataError, OSError):
                return None
            if hashlib.sha256(found.raw).hexdigest() == sha256:
                self.metadata.put(found.raw)
                data = found.raw
        return data

    async def read_metadata(self, sha256, dist=None):
        """The core metadata bytes with this sha256, or None."""
        return await self._run(self._read_metadata, sha256, dist)

    def _read_provenance(self, dist):
        try:
            with open(os.path.join(self.folder, dist.location + PROVENANCE_SUFFIX), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            return None

    async def read_provenance(self, dist):
        """The provenance object beside C{dist}'s file, or None."""
        try:
            return await self._run(self._read_provenance, dist)
        except OSError as e:
            raise BackendError(f"cannot read the provenance of {dist.location}: "
                               f"{e.strerror}") from None

    def _load_record(self, path, valid):
        """A JSON object of the state folder ({} when absent), checked by C{valid}."""
        try:
            with open(path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict) or not all(valid(v) for v in data.values()):
            raise BackendError(f"{path}: not a {os.path.basename(path)} record")
        return data

    def _change_record(self, path, valid, change):
        with self._stored_lock:
            record = self._load_record(path, valid)
            change(record)
            os.makedirs(self.state_dir, exist_ok=True)
            write_atomically(path, json.dumps(record, sort_keys=True, indent=1).encode())
            return record

    async def _record(self, path, valid, change=None):
        """Read (or read-modify-write, with C{change}) a record of the state folder."""
        try:
            if change is None:
                return await self._run(self._load_record, path, valid)
            return await self._run(self._change_record, path, valid, change)
        except (ValueError, OSError) as e:
            raise BackendError(f"{path}: {e}") from None

    async def load_yanks(self):
        """{project: {version: reason}}, as kept by this backend."""
        return await self._record(self._yanks_path, _valid_yanks)

    async def set_yank(self, project, version, reason, principal=None):
        """Yank (reason: str) or unyank (None); return every yank."""
        def change(yanks):
            versions = yanks.setdefault(project, {})
            if reason is None:
                versions.pop(version, None)
            else:
                versions[version] = reason
            if not versions:
                del yanks[project]
        return await self._record(self._yanks_path, _valid_yanks, change)

    async def load_statuses(self):
        """{project: {"status": ..., "reason": ...}} (PEP 792), as kept by this backend."""
        return await self._record(self._status_path, valid_status)

    async def set_status(self, project, status, reason, principal=None):
        return await self._record(self._status_path, valid_status,
                                  lambda statuses: put_status(statuses, project, status, reason))


def _valid_yanks(versions):
    return isinstance(versions, dict) and all(isinstance(r, str) for r in versions.values())


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the kind of repository ---------------------------------------------------


def _settings(checker, spec, key, root):
    path = checker.string(spec.get("path", "."), f"{key}.path")
    return SimpleNamespace(path=os.path.abspath(os.path.join(root, path)))


def _toml_settings(checker, spec, key, root, name):
    """private-pypi's file_system table: its secrets, the name as username."""
    secrets = {}
    for field in ("read_secret", "write_secret"):
        if field in spec:
            secrets[field] = Secret(checker.string(spec[field], f"{key}.{field}"))
    if "write_secret" in secrets and "read_secret" not in secrets:
        checker.fail(f"{key}.read_secret", "is required when write_secret is set")
    access = dict(secrets, read=AUTHENTICATED if secrets else ANYONE,
                  write=(name,) if "write_secret" in secrets else ())
    path = checker.string(spec.get("path", name), f"{key}.path")
    return SimpleNamespace(path=os.path.abspath(os.path.join(root, path))), access


def _check(checker, configs):
    seen = {}
    for r in configs:
        if r.settings.path in seen:
            checker.fail(f"repositories.{r.name}.path",
                         f"is the same folder as repository {seen[r.settings.path]!r}")
        seen[r.settings.path] = r.name


def _create(context):
    # A repository's folder may hold another's: each sees only its own files.
    others = [o.settings.path for o in context.others if o.type == FILESYSTEM.name]
    return FilesystemBackend(context.config.name, context.config.settings.path,
                             context.state_dir, context.run_in_thread, exclude=others)


FILESYSTEM = register(BackendType(
    "filesystem", keys={"path"}, settings=_settings, factory=_create,
    toml_name="file_system", toml_keys={"read_secret", "write_secret", "local_paths", "path"},
    toml_settings=_toml_settings, check=_check))
