"""
What an archive may hold before it is let in: every member unpacked, and
every link leading, inside the archive's own folder, as pip's unpacking
(tarfile's C{data} filter) demands and more (see L{_MemberCheck}). Member
headers only: nothing is extracted. And the errors of reading archives.
"""

import copy
import posixpath
import re
import tarfile


class MetadataError(ValueError):
    """The archive is unreadable or has no core metadata."""


class UnsafeArchive(MetadataError):
    """A member would be unpacked, or would link, outside the archive's folder."""


# Checking every member of an upload (L{read_metadata}'s check) is bounded by
# these, far above real distributions. Names are bounded in length (PATH_MAX:
# a longer path cannot be unpacked anyway) and in total, as the filter's cost
# grows with a path's depth.
MAX_CHECKED_MEMBERS = 100_000
MAX_MEMBER_NAME = 4096
MAX_NAME_CHARS = 16 << 20


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
