"""
The end-to-end benchmark's files (bench/e2e.py), and each server's copy of them.

The corpus is one flat folder of wheels (cached under WORK/corpus/, rewritten
when its parameters change):

  - a dependency tree of TREE projects, e2e-tree-00 .. e2e-tree-NN, each with
    versions 1.0.0, 1.1.0, 1.2.0 and 2.0.0 (wheels with real Requires-Dist):
    a ternary tree (node i needs 3i+1, 3i+2, 3i+3), every node from 10 to 19
    also needs the last node (a shared dependency), and two traps that make
    the resolvers step back: the root's newest version needs
    e2e-tree-01>=3 (no such version) and e2e-tree-01's newest needs
    e2e-tree-LAST<2 while e2e-tree-02 needs e2e-tree-LAST>=2. The only
    answer is root 1.2.0, e2e-tree-01 1.2.0 and 2.0.0 of all the others
    (L{expected_tree}); each client's result is checked against it;
  - a filler of FILL projects x FILL_VERSIONS versions (e2e-fill-00 ..,
    versions 1.0.0 .. 1.0.N, tests/corpus.py's wheels) so that project pages
    are the size real ones are (a 1,000-version page is what pip download
    reads in the single-package scenario).

From it, each server's layout: a flat hard-linked copy (ppypi, pypiserver),
a static PEP 503 tree (nginx: pages rendered here, with the same links,
#sha256=, data-requires-python and PEP 658/714 metadata attributes ppypi
gives, and each wheel's METADATA beside it), private-pypi's
cache/REPO/storage/ layout with its index.toml, and a devpi export folder for
devpi-import.
"""

import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path.insert(0, PROJECT)
from tests.corpus import wheel_bytes, wheel_zip  # noqa: E402

TREE_VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "2.0.0")
REQUIRES_PYTHON = ">=3.8"


def tree_name(i):
    return f"e2e-tree-{i:02d}"


def fill_name(i):
    return f"e2e-fill-{i:02d}"


def dist_of(project):
    """The distribution name in file names: e2e-tree-00 -> e2e_tree_00."""
    return project.replace("-", "_")


def normalize(name):
    return name.replace("_", "-").replace(".", "-").lower()


def tree_requirements(size, i, version):
    """The Requires-Dist lines of tree project C{i} at C{version}."""
    last = size - 1
    reqs = [f"{tree_name(j)}>=1.0" for j in (3 * i + 1, 3 * i + 2, 3 * i + 3) if j < size]
    if 10 <= i < 20 and i != last and tree_name(last) + ">=1.0" not in reqs:
        reqs.append(f"{tree_name(last)}>=1.0")
    if i == 0 and version == "2.0.0":
        reqs.append(f"{tree_name(1)}>=3")  # no such version: the root steps back to 1.2.0
    if i == 1 and version == "2.0.0":
        reqs.append(f"{tree_name(last)}<2")  # against e2e-tree-02's >=2: 01 steps back
    if i == 2:
        reqs.append(f"{tree_name(last)}>=2")
    return reqs


def expected_tree(size):
    """{project: version} of the one resolution of the tree's root."""
    out = {tree_name(i): "2.0.0" for i in range(size)}
    out[tree_name(0)] = "1.2.0"
    out[tree_name(1)] = "1.2.0"
    return out


def tree_wheel(size, i, version):
    dist = dist_of(tree_name(i))
    info = f"{dist}-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {r}\n" for r in tree_requirements(size, i, version))
    metadata = (f"Metadata-Version: 2.1\nName: {tree_name(i)}\nVersion: {version}\n"
                f"Summary: end-to-end benchmark tree node {i}\n"
                f"Requires-Python: {REQUIRES_PYTHON}\n{requires}\n"
                f"Node {i} of the benchmark's dependency tree.\n").encode()
    files = {
        f"{dist}/__init__.py": f"__version__ = '{version}'\n".encode(),
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: ppypi-bench\n"
                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    return wheel_zip(files, info)


class Corpus:
    """The files of one run (tree + filler) under WORK/corpus/."""

    def __init__(self, work, tree, fill, fill_versions):
        self.tree, self.fill, self.fill_versions = tree, fill, fill_versions
        self.key = f"tree{tree}-fill{fill}x{fill_versions}"
        self.base = os.path.join(work, "corpus", self.key)
        self.path = os.path.join(self.base, "files")
        self.marker = os.path.join(self.base, "files.json")

    def describe(self):
        return {"tree_projects": self.tree, "tree_versions": list(TREE_VERSIONS),
                "fill_projects": self.fill, "fill_versions": self.fill_versions,
                "files": self.tree * len(TREE_VERSIONS) + self.fill * self.fill_versions,
                "format": 2}

    @property
    def root_project(self):
        return tree_name(0)

    @property
    def download_project(self):
        """The project of the single-download scenario: a filler one, the largest page."""
        return fill_name(self.fill // 2)

    def expected(self):
        return expected_tree(self.tree)

    def ensure(self, log):
        try:
            with open(self.marker) as f:
                if json.load(f) == self.describe():
                    log(f"corpus {self.path}: reusing {self.describe()['files']} files")
                    return self
        except (OSError, ValueError):
            pass
        log(f"corpus {self.path}: writing {self.tree} tree projects x {len(TREE_VERSIONS)} "
            f"versions + {self.fill} x {self.fill_versions} filler ...")
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.path)
        for i in range(self.tree):
            for v in TREE_VERSIONS:
                name = f"{dist_of(tree_name(i))}-{v}-py3-none-any.whl"
                with open(os.path.join(self.path, name), "wb") as f:
                    f.write(tree_wheel(self.tree, i, v))
        for i in range(self.fill):
            dist = dist_of(fill_name(i))
            for v in range(self.fill_versions):
                version = f"1.0.{v}"
                with open(os.path.join(self.path, f"{dist}-{version}-py3-none-any.whl"), "wb") as f:
                    f.write(wheel_bytes(dist, version))
        with open(self.marker, "w") as f:
            json.dump(self.describe(), f)
        return self

    def files(self):
        """[(project, version, filename, path)] sorted, every file of the corpus."""
        out = []
        for name in sorted(os.listdir(self.path)):
            dist, version = name.split("-")[:2]
            out.append((normalize(dist), version, name, os.path.join(self.path, name)))
        return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def wheel_metadata(path):
    with zipfile.ZipFile(path) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return z.read(name)


def _fresh(dest, marker, describe):
    """True when DEST was built from the same description (its marker says so)."""
    try:
        with open(marker) as f:
            return json.load(f) == describe
    except (OSError, ValueError):
        return False


def _mark(marker, describe):
    with open(marker, "w") as f:
        json.dump(describe, f)


def flat_copy(corpus, dest):
    """A fresh hard-linked flat copy (ppypi and pypiserver write beside the files)."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    subprocess.run(["cp", "-al", corpus.path, dest], check=True, timeout=600)
    return dest


def static_tree(corpus, dest, log):
    """
    DEST/simple/index.html, DEST/simple/NAME/index.html and
    DEST/packages/NAME/FILE (+ FILE.metadata): what dumb-pypi or simple503
    publish, the links carrying what ppypi's carry. Cached by its marker.
    """
    marker = dest + ".json"
    describe = dict(corpus.describe(), layout="static-2")
    if _fresh(dest, marker, describe):
        log(f"static tree {dest}: reusing")
        return dest
    log(f"static tree {dest}: rendering")
    shutil.rmtree(dest, ignore_errors=True)
    projects = {}
    for project, version, name, path in corpus.files():
        projects.setdefault(project, []).append((version, name, path))
    for project, files in projects.items():
        pkg_dir = os.path.join(dest, "packages", project)
        os.makedirs(pkg_dir)
        links = []
        for _, name, path in files:
            os.link(path, os.path.join(pkg_dir, name))
            meta = wheel_metadata(path)
            with open(os.path.join(pkg_dir, name + ".metadata"), "wb") as f:
                f.write(meta)
            meta_hash = hashlib.sha256(meta).hexdigest()
            links.append(
                f'<a href="../../packages/{project}/{name}#sha256={sha256_file(path)}" '
                f'data-requires-python="{html.escape(REQUIRES_PYTHON)}" '
                f'data-dist-info-metadata="sha256={meta_hash}" '
                f'data-core-metadata="sha256={meta_hash}">{name}</a><br>')
        page_dir = os.path.join(dest, "simple", project)
        os.makedirs(page_dir)
        with open(os.path.join(page_dir, "index.html"), "w") as f:
            f.write("<!DOCTYPE html>\n<html><head>"
                    '<meta name="pypi:repository-version" content="1.1">'
                    f"<title>Links for {project}</title></head>\n<body><h1>Links for {project}</h1>\n"
                    + "\n".join(links) + "\n</body></html>\n")
    with open(os.path.join(dest, "simple", "index.html"), "w") as f:
        f.write("<!DOCTYPE html>\n<html><head>"
                '<meta name="pypi:repository-version" content="1.1">'
                "<title>Simple index</title></head>\n<body>\n"
                + "\n".join(f'<a href="{p}/">{p}</a><br>' for p in sorted(projects))
                + "\n</body></html>\n")
    _mark(marker, describe)
    return dest


PRIVATE_PYPI_REPO = "bench"
PRIVATE_PYPI_READ = "bench-read-secret"
PRIVATE_PYPI_WRITE = "bench-write-secret"

# Run with private-pypi's own Python: its own code writes the index.toml
# (FileSystemPkgRepo.collect_all_published_packages, then
# BackendInstanceManager.dump_pkg_refs_and_mtime, as its upload does).
_PRIVATE_PYPI_INDEX = """
import os, sys
from private_pypi_core.backend import BackendInstanceManager, LocalPaths
root, name, secret = sys.argv[1:4]
bim = BackendInstanceManager()
paths = LocalPaths(index=os.path.join(root, "index", name), log=os.path.join(root, "log", name),
                   lock=os.path.join(root, "lock", name), job=os.path.join(root, "job", name),
                   cache=os.path.join(root, "cache", name))
paths.makedirs()
config = bim.create_pkg_repo_config(type="file_system", name=name, read_secret=secret,
                                    write_secret=secret)
repo = bim.create_pkg_repo(type="file_system", config=config,
                           secret=bim.create_pkg_repo_secret(type="file_system", name=name, raw=secret),
                           local_paths=paths)
refs = repo.collect_all_published_packages()
bim.dump_pkg_refs_and_mtime(os.path.join(paths.cache, "storage", "index.toml"), refs)
print(len(refs))
"""


def private_pypi_root(corpus, dest, python, log):
    """
    private-pypi's ROOT: cache/REPO/storage/DISTRIB/FILE with FILE.meta
    (distrib, sha256) as its upload writes them, storage/index.toml, and its
    config.toml and admin_secret.toml. Cached by its marker.
    """
    marker = dest + ".json"
    describe = dict(corpus.describe(), layout="private-pypi-1", python=python)
    config = os.path.join(dest, "config.toml")
    admin = os.path.join(dest, "admin_secret.toml")
    if _fresh(dest, marker, describe):
        log(f"private-pypi root {dest}: reusing")
        return dest, config, admin
    log(f"private-pypi root {dest}: writing its storage layout and index.toml")
    shutil.rmtree(dest, ignore_errors=True)
    storage = os.path.join(dest, "cache", PRIVATE_PYPI_REPO, "storage")
    for project, version, name, path in corpus.files():
        folder = os.path.join(storage, project)
        os.makedirs(folder, exist_ok=True)
        os.link(path, os.path.join(folder, name))
        with open(os.path.join(folder, name + ".meta"), "w") as f:
            f.write(f'name = "{project}"\nversion = "{version}"\ndistrib = "{project}"\n'
                    f'sha256 = "{sha256_file(path)}"\n')
    with open(config, "w") as f:
        f.write(f'[{PRIVATE_PYPI_REPO}]\ntype = "file_system"\nread_secret = "{PRIVATE_PYPI_READ}"\n'
                f'write_secret = "{PRIVATE_PYPI_WRITE}"\n')
    with open(admin, "w") as f:
        f.write(f'[{PRIVATE_PYPI_REPO}]\ntype = "file_system"\nraw = "{PRIVATE_PYPI_WRITE}"\n')
    out = subprocess.run([python, "-c", _PRIVATE_PYPI_INDEX, dest, PRIVATE_PYPI_REPO,
                          PRIVATE_PYPI_WRITE], capture_output=True, text=True, timeout=900)
    if out.returncode != 0 or out.stdout.strip() != str(corpus.describe()["files"]):
        raise RuntimeError(f"private-pypi index.toml: {out.stdout[-500:]} {out.stderr[-2000:]}")
    _mark(marker, describe)
    return dest, config, admin


DEVPI_INDEX = "root/bench"


def devpi_export(corpus, dest, devpi_version):
    """
    A folder devpi-import reads (devpi-export's dump format 2, as
    devpi-server 6 writes it): dataindex.json with one stage index root/bench
    (no bases: nothing from pypi.org) and its files under
    root/bench/PROJECT/VERSION/FILE.
    """
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    projects, files = {}, []
    metadata_fields = ("name", "version", "summary", "requires_python", "requires_dist")
    for project, version, name, path in corpus.files():
        rel = f"{DEVPI_INDEX}/{project}/{version}/{name}"
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        os.link(path, os.path.join(dest, rel))
        meta = _parse_metadata(wheel_metadata(path))
        projects.setdefault(project, {})[version] = {
            k: meta.get(k, [] if k == "requires_dist" else "") for k in metadata_fields}
        projects[project][version]["metadata_version"] = meta.get("metadata_version", "2.1")
        digest = sha256_file(path)
        files.append({
            "version": version, "type": "releasefile", "projectname": project, "relpath": rel,
            "entrymapping": {"last_modified": "Mon, 01 Jan 2024 00:00:00 GMT",
                             "hash_spec": f"sha256={digest}", "hashes": {"sha256": digest},
                             "project": project, "version": version},
            "log": [{"what": "upload", "who": "root", "when": [2024, 1, 1, 0, 0, 0],
                     "dst": DEVPI_INDEX}],
        })
    data = {
        "dumpversion": "2", "pythonversion": list(sys.version_info), "devpi_server": devpi_version,
        "users": {"root": {"username": "root"}},
        "indexes": {DEVPI_INDEX: {
            "indexconfig": {"type": "stage", "bases": [], "volatile": False,
                            "acl_upload": ["root"], "acl_toxresult_upload": [":ANONYMOUS:"],
                            "mirror_whitelist": [], "mirror_whitelist_inheritance": "intersection"},
            "projects": projects, "files": files}},
    }
    with open(os.path.join(dest, "dataindex.json"), "w") as f:
        json.dump(data, f)
    return dest


def _parse_metadata(raw):
    out = {"requires_dist": []}
    head = raw.decode().split("\n\n", 1)[0]
    for line in head.splitlines():
        key, _, value = line.partition(": ")
        key = key.lower().replace("-", "_")
        if key == "requires_dist":
            out["requires_dist"].append(value)
        else:
            out[key] = value
    return out
