#!/usr/bin/env python3
"""
Write a corpus of small but valid wheels (and sdists) for the tests and the
benchmark: this project's own, so that a fresh clone needs nothing beside it.

    python tests/corpus.py OUTDIR --projects N --versions V [--sdist] [--prefix P]

Projects are named like real ones (C{Bench_Pkg.00042}, mixed case, a dot and
an underscore) to exercise PEP 503 normalisation; their files use the
normalised distribution name (C{bench_pkg_00042-1.2.0-py3-none-any.whl}),
so the project is C{bench-pkg-00042}. Versions are C{1.0.0}, C{1.1.0}, ...

Wheels carry METADATA, WHEEL and a RECORD whose hashes are right. Sdists are
what C{python -m build --sdist} makes for a one-module project: a
C{NAME-VERSION/} folder with C{PKG-INFO} (Metadata-Version 2.2, no Dynamic
field, so an index may serve it as PEP 658 metadata), C{pyproject.toml} and
the module; twine accepts them.
"""

import argparse
import base64
import hashlib
import io
import os
import tarfile
import zipfile

# Fixed timestamps: the same arguments write the same bytes.
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)
_TAR_TIME = 1704067200


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_bytes(dist, version, requires_python=">=3.8", payload=b""):
    """
    A pure-Python wheel of one module, C{dist}, whose C{__version__} is
    C{version}; C{payload} is appended to the module (distinct bytes).
    """
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"__version__ = '{version}'\n".encode() + payload,
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
            f"Summary: bench package {dist}\nRequires-Python: {requires_python}\n\n"
            f"Long description of {dist}.\n").encode(),
        f"{info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: ppypi-tests\n"
                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    return wheel_zip(files, info)


def wheel_zip(files, info):
    """A wheel of {path: bytes} with its RECORD (in C{info}, the .dist-info folder);
    the same bytes every time (fixed times and modes)."""
    files = dict(files)
    record = "".join(f"{path},{record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            member = zipfile.ZipInfo(path, _ZIP_TIME)
            member.external_attr = 0o644 << 16
            z.writestr(member, data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def pkg_info(dist, version, requires_python=">=3.8", metadata_version="2.2"):
    """Core metadata (2.2: every field static) as an sdist's PKG-INFO."""
    return (f"Metadata-Version: {metadata_version}\nName: {dist}\nVersion: {version}\n"
            f"Summary: bench package {dist}\nRequires-Python: {requires_python}\n\n"
            f"Long description of {dist}.\n").encode()


def sdist_bytes(dist, version, requires_python=">=3.8", metadata_version="2.2"):
    """A C{.tar.gz} sdist of the same one-module project as L{wheel_bytes}."""
    top = f"{dist}-{version}"
    members = {
        f"{top}/PKG-INFO": pkg_info(dist, version, requires_python, metadata_version),
        f"{top}/pyproject.toml": (
            f'[build-system]\nrequires = ["setuptools>=64"]\n'
            f'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{dist}"\nversion = "{version}"\n'
            f'description = "bench package {dist}"\n'
            f'requires-python = "{requires_python}"\n').encode(),
        f"{top}/{dist}/__init__.py": f"__version__ = '{version}'\n".encode(),
    }
    return targz(members)


def targz(members):
    """A .tar.gz of {path: bytes}, the same bytes every time (fixed mtime and mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for path, data in members.items():
            member = tarfile.TarInfo(path)
            member.size = len(data)
            member.mtime = _TAR_TIME
            member.mode = 0o644
            t.addfile(member, io.BytesIO(data))
    return buf.getvalue()


def dist_name(prefix, i):
    """The distribution name of project C{i}: C{Bench_Pkg.00042} -> C{bench_pkg_00042}."""
    display = f"{prefix}_Pkg.{i:05d}"
    return display.replace(".", "_").replace("-", "_").lower()


def make_corpus(out, projects=3, versions=2, sdist=False, prefix="Bench"):
    """Write C{projects} x C{versions} wheels (and as many sdists) flat into C{out}."""
    out = str(out)
    os.makedirs(out, exist_ok=True)
    for i in range(projects):
        dist = dist_name(prefix, i)
        for v in range(versions):
            version = f"1.{v}.0"
            with open(os.path.join(out, f"{dist}-{version}-py3-none-any.whl"), "wb") as f:
                f.write(wheel_bytes(dist, version))
            if sdist:
                with open(os.path.join(out, f"{dist}-{version}.tar.gz"), "wb") as f:
                    f.write(sdist_bytes(dist, version))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("out")
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--sdist", action="store_true")
    parser.add_argument("--prefix", default="Bench")
    args = parser.parse_args(argv)
    make_corpus(args.out, args.projects, args.versions, args.sdist, args.prefix)


if __name__ == "__main__":
    main()
