"""
The benchmark's files: corpora written by tests/corpus.py (cached), the large
wheel for downloads and uploads, and the small wheels uploaded with twine.

A corpus of SIZE files holds (SIZE - 1) // 3 projects of 3 versions each
(tests/corpus.py's names: Bench_Pkg.00042 -> bench_pkg_00042-1.2.0-py3-none-any.whl,
normalised project bench-pkg-00042) plus one large wheel, zz_big_download.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
# The wheels and sdists are written by the tests' own corpus module.
sys.path.insert(0, PROJECT)
from tests.corpus import make_corpus, record_hash, wheel_bytes  # noqa: E402,F401

VERSIONS = 3
BIG_DOWNLOAD = "zz_big_download"
BIG_UPLOAD = "zz_big_upload"


def wheel_name(dist, version="1.0.0"):
    return f"{dist}-{version}-py3-none-any.whl"


def normalize(dist):
    return dist.replace("_", "-").replace(".", "-").lower()


class Corpus:
    """A folder of SIZE files (cached under OUT/corpus/) and what the loads request."""

    def __init__(self, out, size, big_bytes):
        self.size = size
        self.big_bytes = big_bytes
        self.projects = max(1, (size - 1) // VERSIONS)
        self.files = self.projects * VERSIONS + 1
        self.path = os.path.join(out, "corpus", f"files-{size}")
        self.marker = self.path + ".json"
        self.big_file = wheel_name(BIG_DOWNLOAD)

    def describe(self):
        return {"projects": self.projects, "versions": VERSIONS, "big_bytes": self.big_bytes,
                "files": self.files}

    def ensure(self, log=print):
        """Write the corpus unless a complete one with the same parameters is there."""
        try:
            with open(self.marker) as f:
                if json.load(f) == self.describe():
                    log(f"corpus {self.path}: reusing {self.files} files")
                    return self
        except (OSError, ValueError):
            pass
        log(f"corpus {self.path}: writing {self.projects} projects x {VERSIONS} versions "
            f"+ a {self.big_bytes / 1e6:g} MB wheel ...")
        if os.path.exists(self.marker):
            os.unlink(self.marker)
        shutil.rmtree(self.path, ignore_errors=True)
        make_corpus(self.path, self.projects, VERSIONS, prefix="Bench")
        write_big_wheel(os.path.join(self.path, self.big_file), BIG_DOWNLOAD, self.big_bytes)
        with open(self.marker, "w") as f:
            json.dump(self.describe(), f)
        return self

    # -- what the loads ask for

    def dist(self, i):
        return f"bench_pkg_{i:05d}"

    def sample(self, limit):
        """Up to C{limit} project indices spread evenly over the corpus."""
        step = max(1, self.projects // limit)
        return list(range(0, self.projects, step))[:limit]

    def mid(self):
        return self.projects // 2

    def small_file_bytes(self):
        return os.path.getsize(os.path.join(self.path, wheel_name(self.dist(self.mid()))))


def write_big_wheel(path, dist, size, chunk=1 << 20):
    """
    A valid wheel of about C{size} bytes: one large STORED member of random
    bytes (written in chunks, never all in memory) plus METADATA, WHEEL, RECORD.
    """
    version = "1.0.0"
    info = f"{dist}-{version}.dist-info"
    small = {
        f"{dist}/__init__.py": b"",
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
                             f"Summary: a large wheel for the benchmark\n"
                             f"Requires-Python: >=3.8\n\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: ppypi-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    overhead = 2048  # headers of the five members and the central directory, about
    payload = max(0, size - overhead - sum(len(v) for v in small.values()))
    tmp = path + ".tmp"
    records = []
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for name, data in small.items():
            z.writestr(name, data)
            records.append(f"{name},{record_hash(data)},{len(data)}")
        h = hashlib.sha256()
        zi = zipfile.ZipInfo(f"{dist}/data.bin", date_time=(2024, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_STORED
        with z.open(zi, "w", force_zip64=payload > 0x7FFFFFFF) as member:
            left = payload
            while left > 0:
                block = os.urandom(min(chunk, left))
                member.write(block)
                h.update(block)
                left -= len(block)
        digest = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        records.append(f"{dist}/data.bin,sha256={digest},{payload}")
        records.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    os.replace(tmp, path)
    return path


def upload_set(out, count):
    """C{count} small wheels (tests/corpus.py, prefix Up), cached under OUT/uploads/."""
    folder = os.path.join(out, "uploads", f"small-{count}")
    files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if len(files) != count:
        shutil.rmtree(folder, ignore_errors=True)
        projects = max(1, count // 2)
        make_corpus(folder, projects, 2, prefix="Up")
        files = sorted(os.listdir(folder))
    return [os.path.join(folder, f) for f in files][:count]


def big_upload(out, size):
    """The large wheel uploaded with twine, cached under OUT/uploads/."""
    folder = os.path.join(out, "uploads", f"big-{size}")
    path = os.path.join(folder, wheel_name(BIG_UPLOAD))
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        write_big_wheel(path, BIG_UPLOAD, size)
    return path


def working_copy(corpus, dest):
    """A fresh copy of the corpus made of hard links (servers add files, never change one)."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    subprocess.run(["cp", "-al", corpus.path, dest], check=True, timeout=1800)
    return dest
