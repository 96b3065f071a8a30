"""
Reading core metadata out of distribution archives (with, for uploads,
L{ppypi.archives}' check that every member unpacks inside the archive's
folder).

Archives are untrusted: every read is bounded, members are looked up by
exact name rather than extracted, and any problem is a L{MetadataError}.
"""

import bz2
import email.parser
import gzip
import io
import itertools
import lzma
import re
import tarfile
import zipfile

from .archives import MetadataError, UnsafeArchive, _check_zip, _MemberCheck  # noqa: F401

# Larger than any real METADATA/PKG-INFO; small enough that a bomb is harmless.
MAX_METADATA_BYTES = 8 << 20
# How many tar members we look at before giving up on finding PKG-INFO.
MAX_TAR_MEMBERS = 10000
# The unpacked tar stream is read no further than this (bzip2 turns a few
# hundred bytes into gigabytes).
MAX_TAR_BYTES = 4 << 30
# tarfile reads a pax or GNU long-name header whole, whatever size it claims,
# and before Python 3.11.10 (3.10.15, 3.12.6) parses pax headers in time
# quadratic in their size and in their runs of digits (CVE-2024-6232). Real
# headers are a block or two: these bound what a forged one costs.
MAX_TAR_HEADER = 16 << 10
MAX_LONG_HEADERS = 1 << 20     # all headers longer than a block, together
MAX_DIGIT_RUN = 64             # a ustar header's numbers, end to end, are 54


def _read_bounded(f, what):
    data = f.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"{what} is larger than {MAX_METADATA_BYTES} bytes")
    return data


def wheel_metadata(path_or_file, check=False):
    """
    Return the bytes of the wheel's C{*.dist-info/METADATA}.

    @param check: refuse (L{UnsafeArchive}) a member installers would refuse.
    """
    try:
        with zipfile.ZipFile(path_or_file) as z:
            if check:
                _check_zip(z)
            candidates = [
                n for n in z.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if len(candidates) != 1:
                raise MetadataError(
                    "wheel has no .dist-info/METADATA" if not candidates
                    else "wheel has more than one .dist-info/METADATA")
            with z.open(candidates[0]) as f:
                return _read_bounded(f, candidates[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
        raise MetadataError(f"not a valid zip archive: {e}") from None
    except (OSError, RuntimeError) as e:
        # zlib errors surface as zlib.error (an Exception subclass) or OSError
        raise MetadataError(f"unreadable wheel: {e}") from None


def sdist_metadata(path, filename, check=False):
    """
    Return the bytes of the sdist's top-level C{PKG-INFO}.

    @param check: read every member, and refuse (L{UnsafeArchive}) one that
        tarfile's C{data} filter (what pip unpacks sdists with) would refuse.
    """
    if filename.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as z:
                if check:
                    _check_zip(z)
                candidates = [n for n in z.namelist()
                              if n.count("/") == 1 and n.endswith("/PKG-INFO")]
                if not candidates:
                    raise MetadataError("sdist has no PKG-INFO")
                with z.open(candidates[0]) as f:
                    return _read_bounded(f, candidates[0])
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as e:
            raise MetadataError(f"not a valid zip archive: {e}") from None
    try:
        found = _tar_metadata(path, _MemberCheck() if check else None)
    except MetadataError:
        raise
    except (tarfile.TarError, EOFError, OSError) as e:
        raise MetadataError(f"not a valid tar archive: {e}") from None
    except Exception as e:  # zlib.error, lzma.LZMAError, ...
        raise MetadataError(f"unreadable archive: {e}") from None
    if found is None:
        raise MetadataError("sdist has no PKG-INFO")
    return found


def _tar_metadata(path, checker):
    """
    PKG-INFO (or None) from the first L{MAX_TAR_MEMBERS} members; with a
    L{_MemberCheck}, every member goes through it, to the archive's end.
    """
    found = None
    with open(path, "rb") as raw:
        stream = _decompressed(raw)
        try:
            tar_stream = _TarStream(stream)
            with tarfile.TarFile(fileobj=tar_stream, mode="r") as t:
                for i in itertools.count():
                    if checker is None and (found is not None or i >= MAX_TAR_MEMBERS):
                        break
                    member = t.next()
                    if member is None:
                        break
                    # tarfile keeps every member it read (for extractall);
                    # an archive may hold millions.
                    t.members.clear()
                    if checker is not None:
                        checker.tar_member(member)
                    parts = member.name.split("/")
                    if (found is None and i < MAX_TAR_MEMBERS and len(parts) == 2
                            and parts[1] == "PKG-INFO" and member.isfile()):
                        if member.size > MAX_METADATA_BYTES:
                            raise MetadataError("PKG-INFO is too large")
                        tar_stream.in_file = True
                        found = _read_bounded(t.extractfile(member), "PKG-INFO")
                        tar_stream.in_file = False
        finally:
            if stream is not raw:
                stream.close()
    if checker is not None:
        checker.finish()
    return found


# What tarfile.open(mode="r:*") tells apart, by their magic numbers.
_COMPRESSED = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
               (b"BZh", bz2.BZ2File),
               (b"\xfd7zXZ\x00", lzma.LZMAFile))


def _decompressed(f):
    magic = f.read(6)
    f.seek(0)
    for prefix, opener in _COMPRESSED:
        if magic.startswith(prefix):
            return opener(f)
    return f


_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (MAX_DIGIT_RUN + 1))


class _TarStream:
    """
    The unpacked tar stream, as tarfile reads it, within L{MAX_TAR_BYTES},
    its headers within L{MAX_TAR_HEADER}, L{MAX_LONG_HEADERS} and
    L{MAX_DIGIT_RUN}. C{in_file} is set while a member's bytes are read.
    """

    def __init__(self, stream):
        self._stream = stream
        self._long_headers = 0
        self.in_file = False

    def read(self, size=-1):
        limit = MAX_METADATA_BYTES if self.in_file else MAX_TAR_HEADER
        if size is None or size < 0 or size > limit:
            raise MetadataError(f"a tar header claims more than {limit} bytes")
        self._within(self._stream.tell() + size)
        data = self._stream.read(size)
        if not self.in_file:
            if size > tarfile.BLOCKSIZE:
                self._long_headers += size
                if self._long_headers > MAX_LONG_HEADERS:
                    raise MetadataError(f"tar headers longer than a block add up to more "
                                        f"than {MAX_LONG_HEADERS} bytes")
            if _DIGIT_RUN.search(data):
                raise MetadataError(f"a tar header holds more than {MAX_DIGIT_RUN} digits "
                                    f"in a row")
        return data

    def seek(self, offset, whence=io.SEEK_SET):
        # Seeking forward in a compressed stream is unpacking it.
        self._within(offset if whence == io.SEEK_SET else self._stream.tell() + offset)
        return self._stream.seek(offset, whence)

    def tell(self):
        return self._stream.tell()

    def _within(self, position):
        if position > MAX_TAR_BYTES:
            raise MetadataError(f"sdist unpacks to more than {MAX_TAR_BYTES >> 30} GiB")


def parse_metadata(data):
    """Parse core metadata headers into an email.message.Message."""
    text = data.decode("utf-8", errors="replace")
    return email.parser.HeaderParser().parsestr(text)


def read_metadata(path, kind, filename, check=False):
    """
    The raw core metadata of a distribution file. With C{check} (an upload),
    every member is checked too: L{UnsafeArchive} for one an installer
    would refuse to unpack.
    """
    if kind == "bdist_wheel":
        return wheel_metadata(path, check)
    return sdist_metadata(path, filename, check)


def core_metadata_servable(kind, msg):
    """
    May this metadata be served on its own (PEP 658)? Always for wheels; for
    sdists only when it is static: Metadata-Version 2.2 or later and no
    Dynamic fields (PEP 643), else it may not be what an install produces.
    """
    if kind == "bdist_wheel":
        return True
    try:
        major, minor = (int(x) for x in str(msg.get("Metadata-Version", "0.0")).split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (2, 2) and not msg.get_all("Dynamic")


def requires_python_of(msg):
    value = msg.get("Requires-Python")
    if value is None:
        return None
    return " ".join(str(value).split()) or None


MAX_SUMMARY = 512


def summary_of(msg):
    value = msg.get("Summary")
    if value is None:
        return None
    return " ".join(str(value).split())[:MAX_SUMMARY] or None


class Inspection:
    """What an index needs from a file's metadata."""

    __slots__ = ("raw", "requires_python", "servable", "summary")

    def __init__(self, raw, requires_python, servable, summary=None):
        self.raw = raw
        self.requires_python = requires_python
        self.servable = servable
        self.summary = summary


def inspect(path, kind, filename):
    """
    Read a distribution's core metadata once: raw bytes, Requires-Python,
    and whether it may be served (PEP 658).

    @raise MetadataError: unreadable archive or no metadata.
    """
    raw = read_metadata(path, kind, filename)
    msg = parse_metadata(raw)
    return Inspection(raw, requires_python_of(msg), core_metadata_servable(kind, msg),
                      summary_of(msg))


def requires_python(path, kind, filename):
    """
    The distribution's C{Requires-Python}, or None if it has none or its
    metadata cannot be read (an index serves such files without it).
    """
    try:
        return inspect(path, kind, filename).requires_python
    except MetadataError:
        return None
