"""
The domain: what a repository holds and what an upload brings, as the index,
the backends and the web layer all know it. Nothing here renders a page or
speaks HTTP.
"""

import os
import re
import sys
from urllib.parse import quote

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _digest(value):
    """A sha256 hex digest as its 32 bytes; ValueError for anything else."""
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise ValueError(f"not a sha256 digest: {value!r}"[:100])
    return bytes.fromhex(value)


class DistFile:
    """
    One distribution file as the index knows it.

    @raise ValueError: C{sha256} is not a sha256 hex digest (a damaged cache
        or index entry; the backends skip it). A bad C{metadata_sha256} only
        loses the file its PEP 658 metadata.
    """

    __slots__ = ("filename", "project", "version", "kind", "_sha256", "size",
                 "mtime_ns", "requires_python", "location", "_metadata_sha256",
                 "core_metadata", "_upload_time", "summary", "provenance")

    def __init__(self, filename, project, version, kind, sha256, size, mtime_ns,
                 requires_python=None, location=None, metadata_sha256=None,
                 core_metadata=False, upload_time=None, summary=None, provenance=False):
        # Interned: a project's name, versions and Requires-Python repeat
        # across its files (memory at 100,000 files).
        self.filename = filename
        self.project = sys.intern(project)
        self.version = sys.intern(version)
        self.kind = sys.intern(kind)
        # Digests are kept as 32 bytes, read as hex: two hex strings per
        # file are ~10 MB more at 100,000 files.
        self._sha256 = _digest(sha256)
        self.size = size
        self.mtime_ns = mtime_ns
        self.requires_python = sys.intern(requires_python) if requires_python else None
        # Where the backend keeps it (a path relative to the folder, an asset id...)
        self.location = location
        # The sha256 of its core metadata, if it could be read...
        try:
            self._metadata_sha256 = _digest(metadata_sha256) if metadata_sha256 else None
        except ValueError:
            self._metadata_sha256 = None
        # ...and whether it may be served as PEP 658 metadata (wheels; sdists
        # of Metadata-Version 2.2+ without Dynamic fields).
        self.core_metadata = bool(core_metadata) and self._metadata_sha256 is not None
        # Kept only when it is not the mtime (files dropped in by hand).
        self._upload_time = upload_time if upload_time != mtime_ns / 1e9 else None
        self.summary = summary
        # Whether the backend keeps a PEP 740 provenance object beside it.
        self.provenance = bool(provenance)

    def with_provenance(self, provenance):
        """This file, with or without its provenance (a new object: files are values)."""
        twin = DistFile.__new__(DistFile)
        for slot in self.__slots__:
            setattr(twin, slot, getattr(self, slot))
        twin.provenance = bool(provenance)
        return twin

    @property
    def sha256(self):
        return self._sha256.hex()

    @property
    def metadata_sha256(self):
        return self._metadata_sha256.hex() if self._metadata_sha256 is not None else None

    @property
    def upload_time(self):
        return self._upload_time if self._upload_time is not None else self.mtime_ns / 1e9

    @property
    def mtime(self):
        return self.mtime_ns / 1e9

    def _key(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __eq__(self, other):
        return isinstance(other, DistFile) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"DistFile({self.filename!r}, sha256={self.sha256[:12]}...)"

    @property
    def url_path(self):
        """The file's path under the repository, as used in links."""
        return f"packages/{self.project}/{quote(self.filename)}"


class UploadedFile:
    """
    An upload's file, written whole to C{path} (in the backend's
    C{incoming_dir}), with its size and the digests computed on the way.
    """

    def __init__(self, filename, path, size, sha256, md5=None, blake2_256=None):
        self.filename = filename
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.md5 = md5
        self.blake2_256 = blake2_256

    def discard(self):
        """Delete the file (blocking); it is gone already once a backend stored it by rename."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class CheckedUpload:
    """
    What the checks of an upload found: its parsed name (L{ppypi.names}'s
    C{DistName}: filename, project, version, kind), its core metadata bytes,
    Requires-Python, whether the metadata may be served (PEP 658), summary,
    and its verified PEP 740 provenance object (JSON bytes) or None.
    """

    def __init__(self, dist, metadata, requires_python, servable, summary=None,
                 provenance=None):
        self.dist = dist
        self.metadata = metadata
        self.requires_python = requires_python
        self.servable = servable
        self.summary = summary
        self.provenance = provenance
