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

from twisted.logger import Logger

from ..index import DistFile
from ..names import InvalidFilename, parse_filename
from ..metadata import MetadataError, inspect
from . import BackendError, FileMissing

# files.json: a header line, then a line per file: [relpath, size, mtime_ns,
# sha256, requires_python, metadata_sha256, core_metadata (servable),
# upload_time, summary, project, version, kind]
CACHE_VERSION = 5
_HASH_CHUNK = 1 << 20


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_HASH_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, data, sync=True):
    """
    Write bytes (or an iterable of bytes, written as it comes) to C{path} so
    that readers see the old or the new file, whole. With C{sync}, also
    durably (fsync of the file and the folder).
    """
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                f.writelines(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync:
        fsync_dir(os.path.dirname(path) or ".")


class ScanResult:
    """What one scan found, and what it cost."""

    def __init__(self, files, hashed, skipped, warnings, cache_changed):
        self.files = files
        self.hashed = hashed
        self.skipped = skipped
        self.warnings = warnings
        self.cache_changed = cache_changed


class MetadataStore:
    """
    Core metadata files, content-addressed (sha256), in a folder of the
    server's state: extracted once from each archive, served as they are.
    """

    def __init__(self, folder):
        self.folder = folder

    def path(self, sha256):
        return os.path.join(self.folder, f"{sha256}.metadata")

    def put(self, raw):
        """Store bytes (blocking); return their sha256."""
        sha256 = hashlib.sha256(raw).hexdigest()
        path = self.path(sha256)
        if not os.path.exists(path):
            os.makedirs(self.folder, exist_ok=True)
            write_atomically(path, raw, sync=False)
        return sha256

    def get(self, sha256):
        """The bytes (blocking), or None."""
        try:
            with open(self.path(sha256), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None


def inspect_file(path, kind, filename, store):
    """
    (requires_python, metadata_sha256, servable, summary) of a distribution
    file, storing its metadata. A file whose metadata cannot be read is still
    served, without them.
    """
    try:
        found = inspect(path, kind, filename)
    except MetadataError:
        return None, None, False, None
    sha256 = store.put(found.raw) if store is not None else hashlib.sha256(found.raw).hexdigest()
    return found.requires_python, sha256, found.servable, found.summary


def scan_folder(folder, known, exclude=(), warned=frozenset(), store=None):
    """
    List the distribution files below C{folder}.

    Blocking: run it in a thread.

    @param known: {relpath: DistFile} from earlier scans; a file whose size
        and mtime are unchanged is that same object again, not read, not
        even parsed (the cost of a rescan is a stat per file).
    @param store: the L{MetadataStore} that extracted metadata goes to.
    @param exclude: absolute folders not to descend into (other repositories).
    @param warned: relpaths already warned about (each is warned about once).
    @return: (L{ScanResult}, {relpath: DistFile} for the next scan)
    """
    files = {}
    seen = {}
    hashed = 0
    skipped = []
    warnings = []
    exclude = {os.path.normpath(e) for e in exclude}
    if not os.path.isdir(folder):
        raise BackendError(f"repository folder {folder} does not exist")
    stack = [(folder, "")]
    while stack:
        path, rel = stack.pop()
        try:
            # Iterated, not listed: a flat folder of 100,000 files would be
            # 100,000 DirEntry objects alive at once.
            entries = os.scandir(path)
        except OSError as e:
            if path == folder:
                raise BackendError(f"cannot list {folder}: {e.strerror}") from None
            warnings.append((rel, f"cannot list folder: {e.strerror}"))
            continue
        with entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue  # state folder, temporary uploads, editors' files
                relpath = rel + name if rel else name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.path not in exclude:
                            stack.append((entry.path, relpath + "/"))
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue  # symlinks, sockets: never followed out of the folder
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # vanished while we looked
                dist = known.get(relpath)
                if dist is None or dist.size != st.st_size or dist.mtime_ns != st.st_mtime_ns:
                    try:
                        parsed = parse_filename(name)
                    except InvalidFilename as e:
                        skipped.append(relpath)
                        if relpath not in warned:
                            warnings.append((relpath, f"skipped, not a distribution: {e}"))
                        continue
                    try:
                        sha256 = sha256_file(entry.path)
                        rp, meta_sha, servable, summary = inspect_file(entry.path, parsed.kind,
                                                                       name, store)
                    except OSError:
                        continue
                    hashed += 1
                    # Dropped in by hand: its upload time is its mtime.
                    dist = DistFile(name, parsed.project, parsed.version, parsed.kind, sha256,
                                    st.st_size, st.st_mtime_ns, rp, relpath, meta_sha, servable,
                                    st.st_mtime_ns / 1e9, summary)
                # Keyed by the DistFile's own strings, not the scan's copies
                # (at 100,000 files a second copy of every name is ~9 MB).
                seen[dist.location] = dist
                if name in files:
                    if relpath not in warned:
                        warnings.append(
                            (relpath, f"skipped, {name} is also at {files[name].location}"))
                    continue
                files[dist.filename] = dist
    changed = hashed > 0 or len(seen) != len(known)
    return ScanResult(list(files.values()), hashed, skipped, warnings, changed), seen


def dump_known(folder, known):
    """
    The persisted form of {relpath: DistFile}, as lines of bytes: a JSON
    header line, then one JSON array per file (see CACHE_VERSION). Lines,
    so that neither writing nor reading ever holds the whole document (at
    100,000 files that was the peak of the first indexing).
    """
    yield json.dumps({"version": CACHE_VERSION, "folder": folder}).encode() + b"\n"
    for relpath, d in known.items():
        yield json.dumps(
            [relpath, d.size, d.mtime_ns, d.sha256, d.requires_python, d.metadata_sha256,
             d.core_metadata, d.upload_time, d.summary, d.project, d.version, d.kind],
            separators=(",", ":")).encode() + b"\n"


def load_known(lines, folder):
    """
    {relpath: DistFile} from dump_known's lines; None if it was made by
    another version or for another folder; ValueError if damaged.
    """
    header = json.loads(next(lines, b"null") or b"null")
    if not isinstance(header, dict):
        raise ValueError("no header line")
    if header.get("version") != CACHE_VERSION or header.get("folder") != folder:
        return None
    known = {}
    summaries = {}  # a project's files mostly share one summary
    for line in lines:
        (relpath, size, mtime_ns, sha256, rp, meta, servable, uploaded, summary, project,
         version, kind) = json.loads(line)
        name = relpath.rsplit("/", 1)[-1]
        if summary is not None:
            summary = summaries.setdefault(summary, summary)
        known[relpath] = DistFile(name, project, version, kind, sha256, size, mtime_ns, rp,
                                  name if name == relpath else relpath, meta, servable,
                                  uploaded, summary)
    return known


class FilesystemBackend:
    """
    Distribution files in a folder, with file IO in a thread pool.

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
        os.makedirs(self.incoming_dir, exist_ok=True)
        removed = 0
        for name in os.listdir(self.incoming_dir):
            try:
                os.unlink(os.path.join(self.incoming_dir, name))
                removed += 1
            except IsADirectoryError:
                pass
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
        problem = None
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

    async def open(self, dist, start=0, read=0):
        """
        Open a file of the index for reading, and read its first C{read}
        bytes from C{start}: one trip to the thread pool, which is all a
        small wheel needs (each trip costs more than the rest of a small
        download).

        @return: (file object, positioned after them; the bytes read)
        """
        return await self._run(self._open, dist, start, read)

    def _store(self, upload, checked, overwrite, replacing=None):
        dist_name = checked.dist
        relpath = f"{dist_name.project}/{dist_name.filename}"
        final = os.path.join(self.folder, relpath)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        status = "stored"
        if overwrite:
            os.replace(upload.path, final)
            if replacing is not None and replacing.location != relpath:
                # The old copy was elsewhere (dropped in by hand): one file a name.
                try:
                    os.unlink(os.path.join(self.folder, replacing.location))
                except FileNotFoundError:
                    pass
        else:
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
                return status, None
        fsync_dir(os.path.dirname(final))
        st = os.stat(final)
        meta_sha = self.metadata.put(checked.metadata)
        dist = DistFile(dist_name.filename, dist_name.project, dist_name.version,
                        dist_name.kind, upload.sha256, st.st_size, st.st_mtime_ns,
                        checked.requires_python, relpath, meta_sha, checked.servable,
                        time.time(), checked.summary)
        with self._stored_lock:
            self._stored[relpath] = dist
        return status, dist

    async def store(self, upload, checked, overwrite=False, principal=None, replacing=None):
        """
        Publish an uploaded file: it appears in the folder whole, or not at all.

        @return: (status, L{DistFile}): status is "stored", "same" (the
            file was already there with this content) or "conflict" (with
            other content; no DistFile).
        """
        return await self._run(self._store, upload, checked, overwrite, replacing)

    def _delete(self, dist):
        path = os.path.join(self.folder, dist.location)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
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

    def _load_yanks(self):
        try:
            with open(self._yanks_path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and all(isinstance(r, str) for r in v.values())
                for v in data.values()):
            raise BackendError(f"{self._yanks_path}: not a yank record")
        return data

    async def load_yanks(self):
        """{project: {version: reason}}, as kept by this backend."""
        try:
            return await self._run(self._load_yanks)
        except ValueError as e:
            raise BackendError(f"{self._yanks_path}: {e}") from None

    def _set_yank(self, project, version, reason):
        with self._stored_lock:
            yanks = self._load_yanks()
            versions = yanks.setdefault(project, {})
            if reason is None:
                versions.pop(version, None)
            else:
                versions[version] = reason
            if not versions:
                del yanks[project]
            os.makedirs(self.state_dir, exist_ok=True)
            write_atomically(self._yanks_path,
                             json.dumps(yanks, sort_keys=True, indent=1).encode())
            return yanks

    async def set_yank(self, project, version, reason, principal=None):
        """Yank (reason: str) or unyank (None); return every yank."""
        try:
            return await self._run(self._set_yank, project, version, reason)
        except (ValueError, OSError) as e:
            raise BackendError(f"{self._yanks_path}: {e}") from None
