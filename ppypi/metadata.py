"""
Reading core metadata out of distribution archives.

Archives are untrusted: every read is bounded, members are looked up by
exact name rather than extracted, and any problem is a L{MetadataError}.
"""

import email.parser
import tarfile
import zipfile

# Larger than any real METADATA/PKG-INFO; small enough that a bomb is harmless.
MAX_METADATA_BYTES = 8 << 20
# How many tar members we look at before giving up on finding PKG-INFO.
MAX_TAR_MEMBERS = 10000


class MetadataError(ValueError):
    """The archive is unreadable or has no core metadata."""


def _read_bounded(f, what):
    data = f.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"{what} is larger than {MAX_METADATA_BYTES} bytes")
    return data


def wheel_metadata(path_or_file):
    """Return the bytes of the wheel's C{*.dist-info/METADATA}."""
    try:
        with zipfile.ZipFile(path_or_file) as z:
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


def sdist_metadata(path, filename):
    """Return the bytes of the sdist's top-level C{PKG-INFO}."""
    if filename.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as z:
                candidates = [n for n in z.namelist()
                              if n.count("/") == 1 and n.endswith("/PKG-INFO")]
                if not candidates:
                    raise MetadataError("sdist has no PKG-INFO")
                with z.open(candidates[0]) as f:
                    return _read_bounded(f, candidates[0])
        except (zipfile.BadZipFile, EOFError, NotImplementedError) as e:
            raise MetadataError(f"not a valid zip archive: {e}") from None
    try:
        with tarfile.open(path, mode="r:*") as t:
            for i, member in enumerate(t):
                if i >= MAX_TAR_MEMBERS:
                    break
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    if member.size > MAX_METADATA_BYTES:
                        raise MetadataError("PKG-INFO is too large")
                    f = t.extractfile(member)
                    return _read_bounded(f, "PKG-INFO")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise MetadataError(f"not a valid tar archive: {e}") from None
    except Exception as e:  # zlib.error, lzma.LZMAError, ...
        raise MetadataError(f"unreadable archive: {e}") from None
    raise MetadataError("sdist has no PKG-INFO")


def parse_metadata(data):
    """Parse core metadata headers into an email.message.Message."""
    text = data.decode("utf-8", errors="replace")
    return email.parser.HeaderParser().parsestr(text)


def read_metadata(path, kind, filename):
    """The raw core metadata of a distribution file."""
    if kind == "bdist_wheel":
        return wheel_metadata(path)
    return sdist_metadata(path, filename)


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
