"""
What backends keep on the server's own disk: files written atomically,
digests of files, the content-addressed store of core metadata, and small
JSON state files (names held). The filesystem backend keeps everything
here; remote backends keep caches here.
"""

import fcntl
import hashlib
import json
import os
import threading

from .interface import BackendError

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


def empty_incoming(folder):
    """Create C{folder}, or delete what uploads a crash interrupted left in it (blocking)."""
    os.makedirs(folder, exist_ok=True)
    removed = 0
    for name in os.listdir(folder):
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except IsADirectoryError:
            pass
    return removed


CACHE_VERSION = 1


def load_cache(path, source):
    """
    A remote index's local copy (blocking): (its fields, None), or (None,
    why not) when it is missing, made for another store, or damaged.
    """
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, None
    except (ValueError, OSError) as e:
        return None, f"unreadable ({e})"
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or \
            data.get("source") != source:
        return None, None
    return data, None


def save_cache(path, source, sync=True, **fields):
    """Write a remote index's local copy (blocking), for L{load_cache}."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = dict(fields, version=CACHE_VERSION, source=source)
    write_atomically(path, json.dumps(data, separators=(",", ":")).encode(), sync=sync)


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


class LocalHeldNames:
    """
    The L{Backend} interface's C{load_held}/C{save_held}, kept in the state
    folder (C{self.state_dir}, with C{self._run} the thread runner) as
    C{held-names.json}: right for one server; a store shared by several
    servers keeps them there.
    """

    # A save that adds this few names to the last one appends them to a
    # journal (held-names.journal, a JSON string a line, fsynced) instead of
    # writing every name again: an upload of a new project saves its name at
    # once, and at 33,000 projects the whole list cost ~10 ms an upload.
    # The journal is folded into the list by the next larger save, or once
    # it has JOURNAL_MAX lines.
    JOURNAL_ADDS = 16
    JOURNAL_MAX = 1000

    @property
    def _held_path(self):
        return os.path.join(self.state_dir, "held-names.json")

    async def load_held(self):
        try:
            return await self._run(_load_names, self._held_path)
        except (ValueError, OSError, TypeError) as e:
            raise BackendError(f"{self._held_path} unreadable ({e})") from None

    async def save_held(self, names):
        await self._run(self._save_held, frozenset(names))

    def _save_held(self, names):
        if "_held_lock" not in self.__dict__:
            self._held_lock = threading.Lock()
        with self._held_lock:
            written, lines = self.__dict__.get("_held_written", (None, 0))
            journal = self._held_path[:-len(".json")] + ".journal"
            added = names - written if written is not None else None
            if written is not None and names >= written and \
                    len(added) <= self.JOURNAL_ADDS and lines + len(added) <= self.JOURNAL_MAX:
                with open(journal, "ab") as f:
                    f.write(b"".join(json.dumps(n).encode() + b"\n" for n in sorted(added)))
                    f.flush()
                    os.fsync(f.fileno())
                self._held_written = (names, lines + len(added))
                return
            os.makedirs(os.path.dirname(self._held_path), exist_ok=True)
            write_atomically(self._held_path, json.dumps(sorted(names)).encode())
            try:
                os.unlink(journal)
            except FileNotFoundError:
                pass
            self._held_written = (names, 0)


def _load_names(path):
    """
    The names in a JSON list and its journal (none without them);
    ValueError if the list is damaged. A journal line that does not parse
    (a crash while it was written) is skipped.
    """
    try:
        with open(path, "rb") as f:
            names = json.load(f)
    except FileNotFoundError:
        names = []
    if not isinstance(names, list):
        raise ValueError("not a list of names")
    found = {n for n in names if isinstance(n, str)}
    try:
        with open(path[:-len(".json")] + ".journal", "rb") as f:
            for line in f:
                try:
                    name = json.loads(line)
                except ValueError:
                    continue
                if isinstance(name, str):
                    found.add(name)
    except FileNotFoundError:
        pass
    return found


class LocalTokens:
    """
    The L{Backend} interface's C{load_tokens}/C{update_tokens}, kept in the
    state folder (C{self.state_dir}, with C{self._run} the thread runner)
    as C{tokens.json}, mode 0600: right for one server.
    """

    _tokens_lock = threading.Lock()

    @property
    def _tokens_path(self):
        return os.path.join(self.state_dir, "tokens.json")

    async def load_tokens(self):
        try:
            return await self._run(_load_records, self._tokens_path)
        except (ValueError, OSError) as e:
            raise BackendError(f"{self._tokens_path} unreadable ({e})") from None

    async def update_tokens(self, change):
        return await self._run(self._update_tokens, change)

    def _update_tokens(self, change):
        os.makedirs(self.state_dir, exist_ok=True)
        # A file lock too: `ppypi token` (another process) writes the same file.
        with self._tokens_lock, open(self._tokens_path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = _load_records(self._tokens_path)
            result = change(records)
            write_atomically(self._tokens_path, json.dumps(records, sort_keys=True).encode())
            os.chmod(self._tokens_path, 0o600)
            return result


def _load_records(path):
    try:
        with open(path, "rb") as f:
            records = json.load(f)
    except FileNotFoundError:
        return {}
    if not isinstance(records, dict):
        raise ValueError("not a mapping of token records")
    return records
