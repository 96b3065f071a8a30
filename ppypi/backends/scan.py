"""
Scanning a folder for distribution files, and the persisted cache that
makes a rescan cost a stat per file (C{files.json}): each file is hashed and
its metadata read once, keyed by path and checked by size and mtime.
Blocking code, run in the thread pool by L{ppypi.backends.filesystem}.
"""

import hashlib
import json
import os

from ..domain import DistFile
from ..metadata import MetadataError, inspect
from ..names import InvalidFilename, parse_filename
from .interface import BackendError, Listing
from .local import sha256_file

# files.json: a header line, then a line per file: [relpath, size, mtime_ns,
# sha256, requires_python, metadata_sha256, core_metadata (servable),
# upload_time, summary, project, version, kind], and true when the file had
# a provenance sidecar (PEP 740) at that scan (the next scan looks again)
CACHE_VERSION = 5

#: A file's provenance (PEP 740) is kept beside it, as FILENAME.provenance.
PROVENANCE_SUFFIX = ".provenance"


class ScanResult(Listing):
    """What one scan found, what it cost, and whether the cache must be written."""

    def __init__(self, files, hashed, skipped, warnings, cache_changed):
        super().__init__(files, hashed=hashed, skipped=skipped, warnings=warnings)
        self.cache_changed = cache_changed


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
    sidecars = set()
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
                if name.endswith(PROVENANCE_SUFFIX):
                    sidecars.add(relpath)  # a file's PEP 740 provenance, beside it
                    continue
                if PROVENANCE_SUFFIX + ".tmp-" in name:
                    continue  # one being written (write_atomically's name)
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
    for name, dist in files.items():
        # Looked at each scan, not cached: a sidecar costs no stat of its own.
        has = dist.location + PROVENANCE_SUFFIX in sidecars
        if has != dist.provenance:
            files[name] = seen[dist.location] = dist.with_provenance(has)
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
             d.core_metadata, d.upload_time, d.summary, d.project, d.version, d.kind]
            + ([True] if d.provenance else []),
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
        row = json.loads(line)
        (relpath, size, mtime_ns, sha256, rp, meta, servable, uploaded, summary, project,
         version, kind) = row[:12]
        provenance = len(row) > 12 and row[12] is True  # as the last scan saw its sidecar
        name = relpath.rsplit("/", 1)[-1]
        if summary is not None:
            summary = summaries.setdefault(summary, summary)
        known[relpath] = DistFile(name, project, version, kind, sha256, size, mtime_ns, rp,
                                  name if name == relpath else relpath, meta, servable,
                                  uploaded, summary, provenance)
    return known
