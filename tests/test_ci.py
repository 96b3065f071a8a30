"""
What a fresh clone needs: .ci/run runs the tests from a copy of the tree with
nothing beside it, skips the browser tests (saying why) for someone who is not
root and has no Chromium, and fails when pytest does; nothing in the tree
refers to the shared folder beside the checkout; the corpus the tests write is what clients accept.
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from .conftest import BIN, PROJECT
from .corpus import make_corpus, sdist_bytes, wheel_bytes

# The tools .ci/run uses, from this machine; python3, id, chromium and
# apt-get are stubs (or absent) in the tests below.
_TOOLS = ("bash", "dirname", "git", "tar", "mktemp", "mkdir", "rm", "cat", "ls", "chmod")

_PYTHON3 = """#!/bin/bash
# python3 -m venv DIR: a virtualenv whose pip and python record how they were run.
[ "$1 $2" = "-m venv" ] || exit 99
mkdir -p "$3/bin"
cat > "$3/bin/pip" <<'EOF'
#!/bin/bash
echo "pip $*" >> "$STUB_LOG"
EOF
cat > "$3/bin/python" <<'EOF'
#!/bin/bash
echo "python $* | cwd=$PWD | beside=$(ls -A ..) | skip=${PPYPI_SKIP_BROWSER:-} | corpus=$(ls tests/corpus.py)" >> "$STUB_LOG"
exit "${STUB_PYTEST_EXIT:-0}"
EOF
chmod +x "$3/bin/pip" "$3/bin/python"
"""


def _stub_path(tmp_path, uid):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in _TOOLS:
        real = shutil.which(tool)
        if real is None:
            pytest.skip(f"{tool} is not installed")
        os.symlink(real, stubs / tool)
    (stubs / "python3").write_text(_PYTHON3)
    (stubs / "id").write_text(f"#!/bin/bash\necho {uid}\n")
    (stubs / "apt-get").write_text("#!/bin/bash\necho \"apt-get $*\" >> \"$STUB_LOG\"\nexit 100\n")
    for stub in ("python3", "id", "apt-get"):
        (stubs / stub).chmod(0o755)
    return str(stubs)


def _run_ci(tmp_path, uid, **env):
    # In a git checkout .ci/run copies what git tracks; elsewhere (the copy
    # .ci/run itself runs the suite in) everything but the virtualenv.
    log = tmp_path / "stub.log"
    environment = {"PATH": _stub_path(tmp_path, uid), "STUB_LOG": str(log),
                   "TMPDIR": str(tmp_path), "HOME": str(tmp_path), **env}
    proc = subprocess.run(["bash", os.path.join(PROJECT, ".ci", "run")], env=environment,
                          capture_output=True, text=True, timeout=120)
    return proc, log.read_text() if log.exists() else ""


def test_ci_without_chromium_and_not_root_skips_browser_tests(tmp_path):
    proc, log = _run_ci(tmp_path, uid=1000)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in log.splitlines() if line.startswith("apt-get")]
    assert "browser tests skipped: chromium and chromedriver are not installed" in proc.stderr
    pip, pytest_line = log.splitlines()
    assert pip == "pip install -q -e .[test]"
    # The tests ran from a copy of the tree, alone in its folder (nothing beside it).
    assert pytest_line.startswith("python -m pytest -q | cwd=" + str(tmp_path))
    assert "| beside=ppypi |" in pytest_line
    assert "| corpus=tests/corpus.py" in pytest_line
    assert "| skip=chromium and chromedriver are not installed, and only root" in pytest_line
    # ... and the copy is gone afterwards.
    assert not [p for p in os.listdir(tmp_path) if p.startswith("ppypi-ci.")]


def test_ci_as_root_installs_chromium(tmp_path):
    proc, log = _run_ci(tmp_path, uid=0)
    # The stub apt-get fails: set -e stops the run there, before any test.
    assert proc.returncode != 0
    assert log.splitlines() == ["apt-get update -qq"]


@pytest.mark.parametrize("code", [1, 5])
def test_ci_fails_when_pytest_fails_or_collects_nothing(tmp_path, code):
    proc, log = _run_ci(tmp_path, uid=1000, STUB_PYTEST_EXIT=str(code))
    assert proc.returncode == code
    assert "python -m pytest -q" in log


_NOT_THE_TREE = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build",
                 "dist", "out"}


def _tree_files():
    """The project's files: what git tracks, or (in .ci/run's copy, which is
    not a git checkout) every file but caches and the virtualenv."""
    if os.path.isdir(os.path.join(PROJECT, ".git")):
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True,
                                check=True).stdout.decode().split("\0")
        return [f for f in listed if f]
    found = []
    for folder, dirs, names in os.walk(PROJECT):
        dirs[:] = [d for d in dirs if d not in _NOT_THE_TREE and not d.endswith(".egg-info")]
        found += [os.path.relpath(os.path.join(folder, n), PROJECT) for n in names]
    assert "tests/test_ci.py" in found
    return found


def test_nothing_in_the_tree_needs_shared():
    """A fresh clone has nothing beside it: no file of the tree may point there."""
    files = _tree_files()
    offenders = []
    shared = "sha" + "red"  # spelled so that this file does not match itself
    needles = ("../" + shared, shared + "/tools", shared + "/fixtures", f'"{shared}", "tools"',
               f'"{shared}", "fixtures"', "make_" + "corpus.py")
    for name in filter(None, files):
        if not name.endswith((".py", ".md", ".cfg", ".toml", "run")):
            continue
        path = os.path.join(PROJECT, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        offenders += [f"{name}: {n}" for n in needles if n in text]
    assert offenders == []


def test_corpus_files_are_what_clients_accept(tmp_path):
    """twine checks the corpus's wheels and sdists; their archives unpack safely."""
    make_corpus(tmp_path, projects=2, versions=2, sdist=True, prefix="Check")
    names = sorted(os.listdir(tmp_path))
    assert names == ["check_pkg_00000-1.0.0-py3-none-any.whl", "check_pkg_00000-1.0.0.tar.gz",
                     "check_pkg_00000-1.1.0-py3-none-any.whl", "check_pkg_00000-1.1.0.tar.gz",
                     "check_pkg_00001-1.0.0-py3-none-any.whl", "check_pkg_00001-1.0.0.tar.gz",
                     "check_pkg_00001-1.1.0-py3-none-any.whl", "check_pkg_00001-1.1.0.tar.gz"]
    proc = subprocess.run([os.path.join(BIN, "twine"), "check",
                           *[str(tmp_path / n) for n in names]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == len(names)

    with tarfile.open(fileobj=io.BytesIO(sdist_bytes("acme_tool", "2.0"))) as t:
        members = t.getmembers()
        assert [m.name for m in members] == ["acme_tool-2.0/PKG-INFO", "acme_tool-2.0/pyproject.toml",
                                             "acme_tool-2.0/acme_tool/__init__.py"]
        if hasattr(tarfile, "data_filter"):
            for m in members:
                tarfile.data_filter(m, str(tmp_path))
        pkg_info = t.extractfile(members[0]).read().decode()
    assert pkg_info.startswith("Metadata-Version: 2.2\nName: acme_tool\nVersion: 2.0\n")
    assert "Dynamic" not in pkg_info
    # The same arguments write the same bytes (digests in tests stay put).
    assert sdist_bytes("acme_tool", "2.0") == sdist_bytes("acme_tool", "2.0")
    assert wheel_bytes("acme_tool", "2.0") == wheel_bytes("acme_tool", "2.0")

    with zipfile.ZipFile(io.BytesIO(wheel_bytes("acme_tool", "2.0"))) as z:
        assert z.testzip() is None
        record = z.read("acme_tool-2.0.dist-info/RECORD").decode()
    assert "acme_tool-2.0.dist-info/METADATA,sha256=" in record


def test_corpus_command_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(PROJECT, "tests", "corpus.py"), str(tmp_path),
                           "--projects", "1", "--versions", "1", "--sdist"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bench_pkg_00000-1.0.0-py3-none-any.whl",
                                            "bench_pkg_00000-1.0.0.tar.gz"]
