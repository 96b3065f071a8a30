"""
A real twistd daemon on loopback, driven by real pip and uv in fresh
virtual environments.
"""

import hashlib
import os
import subprocess
import sys

import pytest

from .conftest import BIN, client_env, get, make_corpus, wait_for


def venv(path):
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return os.path.join(path, "bin", "python")


def run(cmd, **kwargs):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                            env=client_env(), timeout=300, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def served(tmp_path, daemon_factory):
    root = tmp_path / "root"
    make_corpus(root, projects=3, versions=3, sdist=True)
    return daemon_factory(root, "--extra-index-url", "")


def test_pip_installs_from_the_index(served, tmp_path):
    python = venv(tmp_path / "venv")
    run([python, "-m", "pip", "install", "--no-cache-dir", "--index-url",
         served.url + "simple/", "Bench_Pkg.00001"])
    out = run([python, "-c", "import bench_pkg_00001; print(bench_pkg_00001.__version__)"])
    assert out.stdout.strip() == "1.2.0"
    # pip asked for the normalised page (following our 301) and downloaded a wheel.
    served.log_when(
        "GET /simple/bench-pkg-00001/ HTTP/1.1\" 200",
        "GET /packages/bench-pkg-00001/bench_pkg_00001-1.2.0-py3-none-any.whl HTTP/1.1\" 200")


def test_uv_installs_from_the_index(served, tmp_path):
    uv = os.path.join(BIN, "uv")
    run([uv, "venv", "--no-cache", tmp_path / "uvenv"])
    python = tmp_path / "uvenv" / "bin" / "python"
    run([uv, "pip", "install", "--no-cache", "--python", python, "--index-url",
         served.url + "simple/", "bench-pkg-00002==1.1.0"])
    out = run([python, "-c", "import bench_pkg_00002; print(bench_pkg_00002.__version__)"])
    assert out.stdout.strip() == "1.1.0"


def test_pip_download_verifies_hashes(served, tmp_path):
    """pip checks the #sha256 of every link; with --require-hashes, ours too."""
    dest = tmp_path / "dl"
    wheel = served.root + "/bench_pkg_00000-1.0.0-py3-none-any.whl"
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    req = tmp_path / "req.txt"
    req.write_text(f"bench-pkg-00000==1.0.0 --hash=sha256:{digest}\n")
    run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps",
         "--index-url", served.url + "simple/", "--require-hashes", "-r", req, "-d", dest])
    assert os.listdir(dest) == [os.path.basename(wheel)]
    # A wrong hash in the requirement is refused: pip really compares.
    req.write_text(f"bench-pkg-00000==1.0.0 --hash=sha256:{'0' * 64}\n")
    bad = subprocess.run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps",
                          "--index-url", served.url + "simple/", "--require-hashes", "-r", req,
                          "-d", tmp_path / "dl2"], capture_output=True, text=True, env=client_env())
    assert bad.returncode != 0 and "DO NOT MATCH" in bad.stdout + bad.stderr


def test_raw_headers_of_a_download(served):
    name = "bench_pkg_00000-1.0.0.tar.gz"
    data = open(os.path.join(served.root, name), "rb").read()
    status, headers, body = get(served.url + f"packages/bench-pkg-00000/{name}")
    assert status == 200 and body == data
    assert headers["Content-Type"] == "application/gzip"
    assert headers["Content-Length"] == str(len(data))
    assert "Content-Encoding" not in headers
    status, headers, body = get(served.url + f"packages/bench-pkg-00000/{name}", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))


def test_extra_index_redirect_to_a_second_ppypi(tmp_path, daemon_factory):
    upstream_root = tmp_path / "upstream"
    make_corpus(upstream_root, projects=1, versions=1, prefix="Upstream")
    upstream = daemon_factory(upstream_root, "--extra-index-url", "")
    local_root = tmp_path / "local"
    make_corpus(local_root, projects=1, versions=1, prefix="Local")
    local = daemon_factory(local_root, "--extra-index-url", upstream.url + "simple")

    status, headers, _ = get(local.url + "simple/upstream-pkg-00000/")
    assert status == 302
    assert headers["Location"] == upstream.url + "simple/upstream-pkg-00000/"
    python = venv(tmp_path / "venv")
    run([python, "-m", "pip", "install", "--no-cache-dir", "--index-url", local.url + "simple/",
         "upstream-pkg-00000", "local-pkg-00000"])
    run([python, "-c", "import upstream_pkg_00000, local_pkg_00000"])


def test_hand_dropped_file_appears_after_one_sync(tmp_path, daemon_factory):
    root = tmp_path / "root"
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  default:\n    sync_interval: 0.5\n")
    d = daemon_factory(root, "--config", config, "--extra-index-url", "")
    assert get(d.url + "simple/bench-pkg-00000/")[0] == 404
    syncs = d.health()["repositories"]["default"]["last_sync"]
    make_corpus(root / "dropped", projects=1, versions=1)
    wait_for(lambda: get(d.url + "simple/bench-pkg-00000/")[0] == 200, timeout=10,
             what="the dropped file to be indexed")
    assert d.health()["repositories"]["default"]["last_sync"] > syncs


def test_restart_with_10000_files_rehashes_nothing(tmp_path, daemon_factory):
    root = tmp_path / "root"
    make_corpus(root, projects=3334, versions=3)  # 10,002 files
    first = daemon_factory(root, "--extra-index-url", "")
    status = first.health()["repositories"]["default"]
    assert status["files"] == 10002 and status["hashed_since_start"] == 10002
    first.stop()
    second = daemon_factory(root, "--extra-index-url", "")
    status = second.health()["repositories"]["default"]
    assert status["files"] == 10002
    assert status["hashed_since_start"] == 0
    assert get(second.url + "simple/bench-pkg-03333/")[0] == 200
    check_large_root_page(second, 3334)


def check_large_root_page(daemon, projects):
    """
    /simple/ of thousands of projects is larger than what ppypi writes at
    once (ppypi.web.body): it arrives whole, as HTML and JSON, gzipped or
    not; HEAD gives its length alone. (A client leaving half way: in
    test_body.py, with a body larger than loopback's socket buffers.)
    """
    import gzip
    import json

    from ppypi.web.body import PIECE

    status, headers, html = get(daemon.url + "simple/")
    assert status == 200 and len(html) > 2 * PIECE
    assert int(headers["Content-Length"]) == len(html)
    assert html.count(b"<a href=") == projects and html.rstrip().endswith(b"</html>")
    status, headers, zipped = get(daemon.url + "simple/", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == html
    status, headers, body = get(daemon.url + "simple/",
                                {"Accept": "application/vnd.pypi.simple.v1+json"})
    assert len(json.loads(body)["projects"]) == projects
    status, headers, body = get(daemon.url + "simple/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(html)
