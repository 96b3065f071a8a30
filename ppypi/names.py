"""
Project names and distribution filenames.

Parsing is delegated to ``packaging`` (the reference implementation of the
PyPA specifications); this module adds the checks an index needs on top:
a filename must be safe to use as a path component, and only the archive
kinds that installers accept are distributions.
"""

import re

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# PEP 508 names, as Warehouse accepts them.
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)

# Longest name or filename we accept; longer is hostile, not a package.
MAX_NAME = 200
MAX_FILENAME = 255

# Source archive suffixes installers still accept (PEP 625 wants .tar.gz;
# older uploads and pypiserver folders also hold .zip and .tar.bz2).
SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz")


class InvalidFilename(ValueError):
    """A filename that is not a valid sdist or wheel name."""


def is_valid_name(name):
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None


MAX_VERSION = 200


def version_of(text):
    """
    A PEP 440 version, or InvalidVersion for anything else (packaging lets a
    plain ValueError out for numbers of thousands of digits).
    """
    if not isinstance(text, str) or len(text) > MAX_VERSION:
        raise InvalidVersion(f"not a version: {str(text)[:50]!r}")
    try:
        return Version(text)
    except InvalidVersion:
        raise
    except ValueError as e:
        raise InvalidVersion(str(e)) from None


def normalize(name):
    """PEP 503 normalisation."""
    return canonicalize_name(name)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def is_safe_filename(filename):
    """
    True if C{filename} can be used as one path component: no separators,
    no control characters, no leading dot, not too long.
    """
    return (
        0 < len(filename) <= MAX_FILENAME
        and not filename.startswith(".")
        and _UNSAFE.search(filename) is None
    )


class DistName:
    """What a distribution filename says: project, version and kind."""

    __slots__ = ("filename", "project", "version", "kind")

    def __init__(self, filename, project, version, kind):
        self.filename = filename
        self.project = project
        self.version = version
        self.kind = kind

    def __repr__(self):
        return f"DistName({self.filename!r}, {self.project!r}, {self.version!r}, {self.kind!r})"


def parse_filename(filename):
    """
    Parse a wheel or sdist filename.

    @return: a L{DistName} whose C{project} is normalised and C{version}
        is the normalised version string.
    @raise InvalidFilename: if it is neither.
    """
    if not is_safe_filename(filename):
        raise InvalidFilename(f"unsafe filename {filename!r}")
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            kind = "bdist_wheel"
        else:
            suffix = next((s for s in SDIST_SUFFIXES if filename.endswith(s)), None)
            if suffix is None:
                raise InvalidFilename(f"{filename!r} is neither a wheel nor an sdist")
            if suffix == ".tar.gz":
                name, version = parse_sdist_filename(filename)
            else:
                # packaging only knows .tar.gz and .zip; the rule is the same.
                stem = filename[: -len(suffix)]
                name, sep, ver = stem.rpartition("-")
                if not sep:
                    raise InvalidFilename(f"{filename!r} has no version")
                version = version_of(ver)
            kind = "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion, ValueError) as e:
        raise InvalidFilename(f"{filename!r}: {e}") from None
    name = str(name)
    if not is_valid_name(name):
        raise InvalidFilename(f"{filename!r}: invalid project name {name!r}")
    return DistName(filename, normalize(name), str(version), kind)
