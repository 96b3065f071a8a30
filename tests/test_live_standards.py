"""
Real installers against a live daemon: uv resolving from JSON and metadata
files, upload times, yanks and Requires-Python.
"""

import os
import re
import subprocess
import sys

import bcrypt
import pytest

from .conftest import BIN, client_env, make_corpus
from .helpers import wheel_bytes

UV = os.path.join(BIN, "uv")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def run(cmd, check=True, **env):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                            env=client_env(**env), timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{result.stdout}\n{result.stderr}")
    return result


def requests_in(log):
    """[(method, path, status, content type)] from the access log."""
    quoted = r'"(?:[^"\\]|\\.)*"'  # the user agent may hold escaped quotes
    return re.findall(r'"(GET|HEAD|POST|DELETE) (\S+) HTTP/1\.1" (\d+) \S+ ' + quoted + " "
                      + quoted + r' "([^"]*)"', log)


@pytest.fixture
def uv_venv(tmp_path):
    run([UV, "venv", "--no-cache", tmp_path / "uvenv"])
    return tmp_path / "uvenv" / "bin" / "python"


def test_uv_resolves_from_json_and_metadata_without_downloading_wheels(tmp_path, daemon_factory):
    root = tmp_path / "root"
    make_corpus(root, projects=3, versions=3)
    d = daemon_factory(root, "--extra-index-url", "")
    reqs = tmp_path / "requirements.in"
    reqs.write_text("bench-pkg-00000\nbench-pkg-00002<1.2\n")
    out = run([UV, "pip", "compile", "--no-cache", "--index-url", d.url + "simple/", reqs])
    assert "bench-pkg-00000==1.2.0" in out.stdout
    assert "bench-pkg-00002==1.1.0" in out.stdout
    # uv's last requests were the metadata files: once they are logged, all are.
    seen = requests_in(d.log_when("bench_pkg_00000-1.2.0-py3-none-any.whl.metadata",
                                  "bench_pkg_00002-1.1.0-py3-none-any.whl.metadata"))
    pages = [(p, ctype) for m, p, s, ctype in seen if p.startswith("/simple/")]
    assert pages and all(ctype == JSON_TYPE for _, ctype in pages), pages
    metadata = [p for m, p, s, _ in seen if p.endswith(".whl.metadata") and s == "200"]
    assert sorted(metadata) == [
        "/packages/bench-pkg-00000/bench_pkg_00000-1.2.0-py3-none-any.whl.metadata",
        "/packages/bench-pkg-00002/bench_pkg_00002-1.1.0-py3-none-any.whl.metadata"]
    assert not [p for m, p, s, _ in seen if p.endswith(".whl")], "a wheel was downloaded"


def test_uv_exclude_newer_skips_a_later_upload(tmp_path, daemon_factory, uv_venv):
    root = tmp_path / "root"
    make_corpus(root, projects=1, versions=2)
    # Dropped in by hand: the upload time (PEP 700) is the file's mtime.
    os.utime(root / "bench_pkg_00000-1.0.0-py3-none-any.whl", (1704067200, 1704067200))  # 2024-01-01
    os.utime(root / "bench_pkg_00000-1.1.0-py3-none-any.whl", (1735689600, 1735689600))  # 2025-01-01
    d = daemon_factory(root, "--extra-index-url", "")
    run([UV, "pip", "install", "--no-cache", "--python", uv_venv, "--index-url", d.url + "simple/",
         "--exclude-newer", "2024-06-01T00:00:00Z", "bench-pkg-00000"])
    out = run([uv_venv, "-c", "import bench_pkg_00000 as m; print(m.__version__)"])
    assert out.stdout.strip() == "1.0.0"
    run([UV, "pip", "install", "--no-cache", "--python", uv_venv, "--index-url", d.url + "simple/",
         "--exclude-newer", "2025-06-01T00:00:00Z", "--upgrade", "bench-pkg-00000"])
    out = run([uv_venv, "-c", "import bench_pkg_00000 as m; print(m.__version__)"])
    assert out.stdout.strip() == "1.1.0"


@pytest.fixture
def pip_venv(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", tmp_path / "venv"], check=True)
    return tmp_path / "venv" / "bin" / "python"


def installed(python, module):
    return run([python, "-c", f"import {module} as m; print(m.__version__)"]).stdout.strip()


def test_pip_skips_a_yanked_release_unless_pinned(tmp_path, daemon_factory, pip_venv):
    root = tmp_path / "root"
    make_corpus(root, projects=1, versions=3)
    config = tmp_path / "ppypi.yaml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    config.write_text(f'repositories:\n  main:\n    write: [rel]\nusers:\n  rel: {{password: "{hashed}"}}\n')
    d = daemon_factory(root, "--config", config, "--extra-index-url", "")
    out = run([os.path.join(BIN, "ppypi"), "yank", d.url, "Bench_Pkg.00000", "1.2.0",
               "--reason", "corrupt build", "-u", "rel"], PPYPI_PASSWORD="s3cret")
    assert "yanked bench-pkg-00000 1.2.0" in out.stdout
    assert "s3cret" not in d.log()
    index = ["--no-cache-dir", "--index-url", d.url + "simple/"]
    run([pip_venv, "-m", "pip", "install", *index, "bench-pkg-00000"])
    assert installed(pip_venv, "bench_pkg_00000") == "1.1.0"
    pinned = run([pip_venv, "-m", "pip", "install", *index, "bench-pkg-00000==1.2.0"])
    assert installed(pip_venv, "bench_pkg_00000") == "1.2.0"
    assert "corrupt build" in pinned.stdout + pinned.stderr  # pip shows the reason
    # Unyanked, it is the latest again.
    run([os.path.join(BIN, "ppypi"), "yank", d.url, "bench-pkg-00000", "1.2.0", "--undo",
         "-u", "rel"], PPYPI_PASSWORD="s3cret")
    run([pip_venv, "-m", "pip", "uninstall", "-y", "bench-pkg-00000"])
    run([pip_venv, "-m", "pip", "install", *index, "bench-pkg-00000"])
    assert installed(pip_venv, "bench_pkg_00000") == "1.2.0"
    wrong = run([os.path.join(BIN, "ppypi"), "yank", d.url, "bench-pkg-00000", "1.0.0",
                 "-u", "rel"], check=False, PPYPI_PASSWORD="nope")
    assert wrong.returncode != 0 and "401" in wrong.stderr


def test_pip_picks_an_older_version_when_requires_python_excludes_this_one(
        tmp_path, daemon_factory, pip_venv):
    root = tmp_path / "root"
    root.mkdir()
    for version, rp in (("1.0", ">=3.8"), ("2.0", ">=3.99")):
        (root / f"picky-{version}-py3-none-any.whl").write_bytes(
            wheel_bytes("picky", version, requires_python=rp))
    d = daemon_factory(root, "--extra-index-url", "")
    run([pip_venv, "-m", "pip", "install", "--no-cache-dir", "--index-url", d.url + "simple/",
         "picky"])
    assert installed(pip_venv, "picky") == "1.0"
