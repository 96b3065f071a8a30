"""
Reading core metadata out of distribution archives, and checking that an
uploaded archive unpacks inside its own folder.

Archives are untrusted: every read is bounded, members are looked up by
exact name rather than extracted, and any problem is a L{MetadataError}.
"""

import bz2
import copy
import email.parser
import gzip
import io
import itertools
import lzma
import posixpath
import re
import tarfile
import zipfile

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
# Checking every member of an upload (L{read_metadata}'s check) is bounded by
# these, far above real distributions. Names are bounded in length (PATH_MAX:
# a longer path cannot be unpacked anyway) and in total, as the filter's cost
# grows with a path's depth.
MAX_CHECKED_MEMBERS = 100_000
MAX_MEMBER_NAME = 4096
MAX_NAME_CHARS = 16 << 20


class MetadataError(ValueError):
    """The archive is unreadable or has no core metadata."""


class UnsafeArchive(MetadataError):
    """A member would be unpacked, or would link, outside the archive's folder."""


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


# -- what an unpacker may be handed -------------------------------------------

# tarfile's 'data' filter: Python 3.10.12+ and 3.11.4+.
_data_filter = getattr(tarfile, "data_filter", None)
# The folder the filter is told the archive unpacks into: nothing is
# unpacked, and nothing is there, so its realpath() calls stay lexical.
_NOWHERE = "/nonexistent-ppypi-unpack-check"
# A Windows drive: an absolute path to an unpacker there (and to its data filter).
_DRIVE = re.compile(r"[A-Za-z]:")
_SPECIAL = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a FIFO"}


def _show(name):
    """A member name for a message: quoted, escaped, and cut short."""
    return repr(name) if len(name) <= 100 else repr(name[:100]) + "..."


def _absolute(path):
    return path.startswith("/") or bool(_DRIVE.match(path))


def _escapes(path):
    normal = posixpath.normpath(path)
    return normal == ".." or normal.startswith("../")


def _folders(path):
    """
    The folders, normalized, that resolving relative PATH looks into: each
    one a symlink would redirect (C{a/y/../b} looks into C{a} and C{a/y}).
    """
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if parts:
            yield "/".join(parts)
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)


def _normal(path):
    return "/".join(p for p in posixpath.normpath(path).split("/") if p != ".")


def _filter_refusal(member):
    """Why tarfile's C{data} filter refuses MEMBER (its separators already '/'), or None."""
    if _data_filter is None:
        return _lexical_refusal(member)
    try:
        _data_filter(member, _NOWHERE)
    except tarfile.SpecialFileError:
        return _special(member)
    except tarfile.AbsolutePathError:
        return "has an absolute path"
    except tarfile.AbsoluteLinkError:
        return f"is a link to an absolute path ({_show(member.linkname)})"
    except tarfile.LinkOutsideDestinationError:
        return f"links outside the archive ({_show(member.linkname)})"
    except tarfile.OutsideDestinationError:
        return "has a path leading outside the archive"
    except (tarfile.FilterError, ValueError):  # ValueError: a NUL in a pax name
        return "cannot be unpacked safely"
    return None


def _lexical_refusal(member):
    """
    The data filter's refusals, for Pythons without it: with nothing
    unpacked its realpath() is C{normpath()}. (Absolute names and links are
    refused before.)
    """
    if "\0" in member.name or "\0" in member.linkname:
        return "cannot be unpacked safely"
    if _escapes(member.name):
        return "has a path leading outside the archive"
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        return _special(member)
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
    elif member.islnk():
        target = member.linkname
    else:
        return None
    if _escapes(target):
        return f"links outside the archive ({_show(member.linkname)})"
    return None


def _special(member):
    return f"is {_SPECIAL.get(member.type, 'of an unknown type')}, not a file"


class _MemberCheck:
    """
    Refuses, one member at a time, what tarfile's C{data} filter refuses
    (and what pip refuses in a wheel): a member unpacked outside the
    archive's folder, a link leading out of it, a device file or FIFO. And
    more, for other unpackers: absolute names (the filter makes them
    relative), backslashes as separators and drive letters (Windows), and
    paths or links that go through a symlink of the archive (the filter
    checks against what is on disk, which the members before it may have
    redirected; nothing is on disk here).
    """

    def __init__(self):
        self.count = 0
        self.chars = 0
        self.symlinks = {}  # normalized path -> member name
        self.links = []     # (member name, target path, hard?): checked once all symlinks are known

    def _bound(self, name, *others):
        self.count += 1
        if self.count > MAX_CHECKED_MEMBERS:
            raise MetadataError(f"archive has more than {MAX_CHECKED_MEMBERS} members")
        for text in (name, *others):
            if len(text) > MAX_MEMBER_NAME:
                raise UnsafeArchive(f"member {_show(name)} has a name or link longer than "
                                    f"{MAX_MEMBER_NAME} characters")
            self.chars += len(text)
        if self.chars > MAX_NAME_CHARS:
            raise MetadataError(f"archive member names add up to more than "
                                f"{MAX_NAME_CHARS} characters")

    def tar_member(self, member):
        self._bound(member.name, member.linkname)
        name = member.name.replace("\\", "/")
        linkname = member.linkname.replace("\\", "/")
        if _absolute(name):
            problem = "has an absolute path"
        elif (member.issym() or member.islnk()) and _absolute(linkname):
            problem = f"is a link to an absolute path ({_show(member.linkname)})"
        else:
            probe = member
            if (name, linkname) != (member.name, member.linkname):
                probe = copy.copy(member)
                probe.name, probe.linkname = name, linkname
            problem = _filter_refusal(probe)
        if problem:
            raise UnsafeArchive(f"member {_show(member.name)} {problem}")
        if self.symlinks:
            for folder in _folders(name):
                if folder in self.symlinks:
                    raise UnsafeArchive(f"member {_show(member.name)} goes through the "
                                        f"symlink {_show(self.symlinks[folder])}")
        if member.issym():
            self.symlinks[_normal(name)] = member.name
            self.links.append((member.name, posixpath.join(posixpath.dirname(name), linkname),
                               False))
        elif member.islnk():
            self.links.append((member.name, linkname, True))

    def zip_member(self, name):
        self._bound(name)
        path = name.replace("\\", "/")
        if _absolute(path):
            problem = "has an absolute path"
        else:
            problem = _filter_refusal(tarfile.TarInfo(path))
        if problem:
            raise UnsafeArchive(f"member {_show(name)} {problem}")

    def finish(self):
        """The links, now that every symlink is known (order does not save them)."""
        for name, target, hard in self.links:
            for folder in _folders(target):
                if folder in self.symlinks:
                    raise UnsafeArchive(f"member {_show(name)} links through the "
                                        f"symlink {_show(self.symlinks[folder])}")
            # tarfile unpacks a hard link to a symlink as a copy of the
            # symlink, read from the link's own folder.
            if hard and _normal(target) in self.symlinks:
                raise UnsafeArchive(f"member {_show(name)} is a hard link to the symlink "
                                    f"{_show(self.symlinks[_normal(target)])}")


def _check_zip(z):
    infos = z.infolist()
    checker = _MemberCheck()
    if len(infos) > MAX_CHECKED_MEMBERS:
        raise MetadataError(f"archive has more than {MAX_CHECKED_MEMBERS} members")
    for info in infos:
        checker.zip_member(info.filename)


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
