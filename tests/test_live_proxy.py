"""
The proxy (C{type: proxy}) and the one URL for private and public packages
(C{upstream: R} on a hosted repository), end to end: real twistd daemons in
front of tests/fake_upstream.py, driven by real pip, uv, poetry and twine.
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import bcrypt
import pytest

from .conftest import BIN, client_env, get, wait_for
from .fake_upstream import HOSTILE, FakeUpstream, wheel_bytes_with_deps
from .helpers import basic

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
CI_PASSWORD = "ci-password"
CI_HASH = bcrypt.hashpw(CI_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
CI = {"Authorization": basic("ci", CI_PASSWORD)}
# A user who may read but not write.
BOB = {"Authorization": basic("bob", CI_PASSWORD)}
# Where the extra index would be: nothing listens there (no name may go there).
EXTRA = "http://127.0.0.1:9/simple/"


@pytest.fixture
def fake():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


def start(tmp_path, daemon_factory, repositories, reserved=(), name="root"):
    """A daemon with C{repositories} (YAML text, indented by 2), users ci and bob."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"repositories:\n{repositories}"
                      f'users:\n  ci: {{password: "{CI_HASH}"}}\n'
                      f'  bob: {{password: "{CI_HASH}"}}\n'
                      f"reserved: {json.dumps(list(reserved))}\n")
    return daemon_factory(tmp_path / name, "--config", str(config), "--extra-index-url", EXTRA)


def one_url(fake, page_ttl=600, sync_interval=60):
    """A hosted repository whose unknown names are answered from proxy 'pypi'."""
    return (f"  default: {{type: filesystem, path: pkgs, write: [ci], upstream: pypi, "
            f"sync_interval: {sync_interval}}}\n"
            f"  pypi: {{type: proxy, upstream: '{fake.index_url}', page_ttl: {page_ttl}, "
            f"write: [ci]}}\n")


def run(cmd, env=None, check=True, cwd=None, timeout=120):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                            env=env or client_env(), timeout=timeout, cwd=cwd)
    if check:
        assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


def twine(url, *files, check=True):
    return run([os.path.join(BIN, "twine"), "upload", "--non-interactive",
                "--disable-progress-bar", "--repository-url", url, "-u", "ci",
                "-p", CI_PASSWORD, *files], check=check)


def bare_venv(path):
    run([sys.executable, "-m", "venv", "--without-pip", path])
    return path / "bin" / "python"


def pip_install(python, index, *args, check=True):
    return run([os.path.join(BIN, "python"), "-m", "pip", "--python", python, "install",
                "--no-cache-dir", "--index-url", index, *args], check=check)


def uv_install(python, index, *args):
    return run([os.path.join(BIN, "uv"), "pip", "install", "--no-cache", "--python", python,
                "--index-url", index, *args])


def versions(python, *modules):
    out = run([python, "-c", "import importlib, sys; print(' '.join("
               "importlib.import_module(m).__version__ for m in sys.argv[1:]))", *modules])
    return out.stdout.split()


def listed(url, headers=None):
    """{filename: sha256} of a project page (JSON), or the status when not 200."""
    status, _, body = get(url, {"Accept": JSON_SIMPLE, **(headers or {})})
    if status != 200:
        return status
    return {f["filename"]: f["hashes"]["sha256"] for f in json.loads(body)["files"]}


def write_wheel(folder, name, version, requires_dist=()):
    folder.mkdir(exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    path.write_bytes(wheel_bytes_with_deps(name, version, requires_dist=requires_dist))
    return path


def cached_file(daemon, repo, project, filename):
    return os.path.join(daemon.root, ".ppypi", "cache", repo, "files", project, filename)


def public_chain(fake):
    """pub-a -> pub-b -> pub-c upstream, with versions the resolvers must pass over."""
    fake.add("pub-a", "1.0", requires_dist=["pub-b>=1.0"])
    fake.add("pub-b", "0.9")
    fake.add("pub-b", "1.0", requires_dist=["pub-c"])
    fake.add("pub-c", "2.0", requires_python=">=3.8")
    fake.add("pub-c", "2.5", yanked="broken build")
    fake.add("pub-c", "3.0", requires_python=">=4")


# -- 1. one URL, three clients, then the upstream gone -------------------------

def poetry_env(tmp_path, round_):
    """Poetry's cache, config and virtualenvs in tmp; no keyring, no network but ours."""
    home = tmp_path / f"poetry-{round_}"
    return client_env(POETRY_CACHE_DIR=str(home / "cache"),
                      POETRY_CONFIG_DIR=str(home / "config"),
                      POETRY_DATA_DIR=str(home / "data"),
                      POETRY_VIRTUALENVS_IN_PROJECT="true",
                      POETRY_VIRTUALENVS_OPTIONS_NO_PIP="true",
                      POETRY_NO_INTERACTION="1",
                      PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")


def poetry_project(folder, index):
    folder.mkdir()
    (folder / "pyproject.toml").write_text(f"""\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = ["acme-internal"]

[tool.poetry]
package-mode = false

[[tool.poetry.source]]
name = "ours"
url = "{index}"
priority = "primary"
""")
    return folder


def test_one_url_for_private_and_public_then_upstream_gone(fake, tmp_path, daemon_factory):
    public_chain(fake)
    server = start(tmp_path, daemon_factory, one_url(fake))
    index = server.url + "simple/"
    twine(server.url, write_wheel(tmp_path / "dist", "acme-internal", "1.0", ["pub-a"]))
    expected = ["1.0", "1.0", "1.0", "2.0"]
    modules = ("acme_internal", "pub_a", "pub_b", "pub_c")

    pip_python = bare_venv(tmp_path / "pip1")
    pip_install(pip_python, index, "acme-internal")
    assert versions(pip_python, *modules) == expected
    uv_python = bare_venv(tmp_path / "uv1")
    uv_install(uv_python, index, "acme-internal")
    assert versions(uv_python, *modules) == expected
    project = poetry_project(tmp_path / "consumer", index)
    poetry = os.path.join(BIN, "poetry")
    run([poetry, "lock"], env=poetry_env(tmp_path, 1), cwd=project, timeout=180)
    run([poetry, "install"], env=poetry_env(tmp_path, 1), cwd=project, timeout=180)
    assert versions(project / ".venv" / "bin" / "python", *modules) == expected
    # Every file came through the server: the clients never saw the upstream.
    lock = (project / "poetry.lock").read_text()
    assert fake.url not in lock and "127.0.0.1" not in lock.replace(server.url, "")
    assert all(r.headers.get("user-agent", "").startswith("ppypi") for r in fake.requests)

    # The mirror's page says all the upstream said: yanks and their reasons,
    # requires-python, sizes, upload times, core metadata.
    upstream_page = json.loads(get(fake.index_url + "pub-c/", {"Accept": JSON_SIMPLE})[2])
    ours = json.loads(get(index + "pub-c/", {"Accept": JSON_SIMPLE})[2])
    fields = ("filename", "hashes", "requires-python", "size", "upload-time", "yanked",
              "core-metadata")
    assert [{k: f.get(k) or None for k in fields} for f in ours["files"]] == \
        [{k: f.get(k) or None for k in fields} for f in upstream_page["files"]]

    # The upstream gone: the same installs, from the cache; then again after
    # a restart (the pages come from disk, and are served stale).
    fake.stop()
    python = bare_venv(tmp_path / "pip2")
    pip_install(python, index, "acme-internal")
    assert versions(python, *modules) == expected
    run(["rm", "-rf", project / ".venv"])
    run([poetry, "install"], env=poetry_env(tmp_path, 2), cwd=project, timeout=180)
    assert versions(project / ".venv" / "bin" / "python", *modules) == expected
    server.stop()
    server.start()  # on another port
    index = server.url + "simple/"
    python = bare_venv(tmp_path / "uv2")
    uv_install(python, index, "acme-internal")
    assert versions(python, *modules) == expected
    assert get(index + "pub-a/")[1]["X-PPyPI-Stale"]


# -- 2. dependency confusion: held, reserved, ever held ------------------------

def remove_release(url, name, version):
    """pypiserver's :action=remove_pkg (the legacy API), as the ci user."""
    boundary = "xx-boundary-xx"
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in ((":action", "remove_pkg"), ("name", name),
                                ("version", version))) + f"--{boundary}--\r\n"
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", **CI})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def test_names_held_reserved_or_ever_held_never_come_from_upstream(fake, tmp_path,
                                                                   daemon_factory):
    public_chain(fake)
    # Upstream has "our" name with a higher version, a reserved name, and a
    # name we held once.
    fake.add("acme-internal", "9.0")
    fake.add("acme-secret", "1.0")
    fake.add("gone-pkg", "5.0")
    server = start(tmp_path, daemon_factory, one_url(fake, sync_interval=0.5),
                   reserved=["acme-*"])
    dist = tmp_path / "dist"
    twine(server.url, write_wheel(dist, "acme-internal", "1.0", ["pub-a"]))
    twine(server.url, write_wheel(dist, "gone-pkg", "1.0"))
    assert remove_release(server.url, "gone-pkg", "1.0") == 200
    removed = time.time()

    def confused(url):
        page = listed(url)
        assert page == {"acme_internal-1.0-py3-none-any.whl":
                        hashlib.sha256((dist / "acme_internal-1.0-py3-none-any.whl")
                                       .read_bytes()).hexdigest()}, page
        assert listed(server.url + "simple/acme-secret/") == 404
        assert listed(server.url + "simple/gone-pkg/") == 404
        # Nor the upstream's files, at this repository's file URLs.
        for project, filename in (("acme-internal", "acme_internal-9.0-py3-none-any.whl"),
                                  ("acme-secret", "acme_secret-1.0-py3-none-any.whl"),
                                  ("gone-pkg", "gone_pkg-5.0-py3-none-any.whl")):
            status, _, _ = get(server.url + f"packages/{project}/{filename}")
            assert status == 404, (filename, status)

    confused(server.url + "simple/acme-internal/")
    python = bare_venv(tmp_path / "venv")
    pip_install(python, server.url + "simple/", "acme-internal")
    assert versions(python, "acme_internal", "pub_a") == ["1.0", "1.0"]
    # The upstream was never asked for those names: only the chain's.
    asked = {r.path for r in fake.requests if r.path.startswith("/simple/")}
    assert asked == {"/simple/pub-a/", "/simple/pub-b/", "/simple/pub-c/"}, asked
    assert fake.count(r"acme|gone") == 0
    # The names held are remembered across a restart (the folder holds no
    # gone-pkg file any more), once a sync has saved them.
    wait_for(lambda: server.health()["repositories"]["default"]["last_sync"] > removed + 0.6,
             what="a sync begun after the removal")
    server.stop()
    server.start()
    confused(server.url + "simple/acme-internal/")
    assert fake.count(r"acme|gone") == 0


def test_a_name_removed_just_before_a_restart_is_still_never_proxied(fake, tmp_path,
                                                                    daemon_factory):
    fake.add("gone-pkg", "5.0")
    server = start(tmp_path, daemon_factory, one_url(fake))
    twine(server.url, write_wheel(tmp_path / "dist", "gone-pkg", "1.0"))
    assert remove_release(server.url, "gone-pkg", "1.0") == 200
    assert listed(server.url + "simple/gone-pkg/") == 404
    server.stop()   # a clean SIGTERM, within sync_interval (60 s) of the removal
    server.start()
    assert listed(server.url + "simple/gone-pkg/") == 404
    assert fake.count(r"gone") == 0


# -- 3. integrity ---------------------------------------------------------------

def download(url, headers=None):
    """(status, body), or (None, the exception) when the connection was cut short."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (http.client.IncompleteRead, http.client.RemoteDisconnected,
            ConnectionError) as e:
        return None, e


def short(body):
    """How many bytes a cut download had (see download())."""
    return len(getattr(body, "partial", b""))


def test_tampered_bytes_are_never_delivered_nor_kept(fake, tmp_path, daemon_factory):
    small = fake.add("tampered", "1.0")
    big = fake.add("tampered", "2.0", payload=os.urandom(3 << 20))
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    files = server.url + "pypi/packages/tampered/"
    cache = os.path.join(server.root, ".ppypi", "cache", "pypi")
    assert listed(server.url + "pypi/simple/tampered/") == {
        small.filename: small.sha256, big.filename: big.sha256}
    fake.tamper(small.filename)
    # No client ever has the whole file: a 502, or (test_a_small_tampered_file_is_a_502)
    # a connection cut before the last byte.
    status, body = download(files + small.filename)
    assert status == 502 or (status is None and short(body) < small.size), (status, body)
    # A large file is streamed to the client while it is fetched: the
    # mismatch is known only at its end, and the connection is cut before
    # the last byte.
    fake.tamper(big.filename)
    fake.slow(4 << 20)
    status, body = download(files + big.filename)
    assert status is None and short(body) < big.size, (status, body)
    assert fake.count(big.filename, status=200) == 1
    server.log_when("connection cut")
    # pip, asked to install it, fails.
    python = bare_venv(tmp_path / "venv")
    result = pip_install(python, server.url + "pypi/simple/", "tampered==1.0", check=False)
    assert result.returncode != 0, result.stdout
    assert run([python, "-c", "import tampered"], check=False).returncode != 0
    # Nothing was kept, not even a part.
    for f in (small, big):
        assert not os.path.exists(cached_file(server, "pypi", "tampered", f.filename))
    assert os.listdir(os.path.join(cache, ".incoming")) == []
    # The upstream mends: the right bytes, then kept.
    fake.slow(None)
    fake.untamper(small.filename)
    fake.untamper(big.filename)
    for f in (small, big):
        assert download(files + f.filename) == (200, f.data)
        with open(cached_file(server, "pypi", "tampered", f.filename), "rb") as kept:
            assert kept.read() == f.data
    pip_install(python, server.url + "pypi/simple/", "tampered==1.0")
    assert versions(python, "tampered") == ["1.0"]


def test_a_small_tampered_file_is_a_502(fake, tmp_path, daemon_factory):
    small = fake.add("tampered", "1.0")
    fake.tamper(small.filename)
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    assert listed(server.url + "pypi/simple/tampered/") == {small.filename: small.sha256}
    status, body = download(server.url + "pypi/packages/tampered/" + small.filename)
    assert status == 502, (status, body)
    assert b"sha256" in body


# -- 4. single flight -----------------------------------------------------------

def at_once(server, fake, f, n):
    """
    n downloads of one uncached file, all under way together: the upstream
    holds the file half sent until every client has had its first quarter.
    [(status, body)].
    """
    parts = urllib.parse.urlsplit(server.url)
    path = "/pypi/packages/" + f.project + "/" + f.filename
    fake.stall(path=f.filename)
    results = [None] * n
    begun = []

    def fetch(i):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            first = response.read(f.size // 4)
            begun.append(i)
            results[i] = (response.status, first + response.read())
        finally:
            conn.close()

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    wait_for(lambda: len(begun) == n, what=f"{n} downloads under way")
    assert fake.held >= 1
    fake.release()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_downloads_of_one_file_make_one_upstream_request(fake, tmp_path,
                                                                   daemon_factory):
    # Over 1 MiB: it flows to clients while it arrives (smaller files are
    # checked whole first).
    f = fake.add("popular", "1.0", payload=os.urandom(2 << 20))
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    assert listed(server.url + "pypi/simple/popular/") == {f.filename: f.sha256}
    assert at_once(server, fake, f, 8) == [(200, f.data)] * 8
    assert fake.count(f.filename) == 1
    # Then from the cache.
    assert download(server.url + "pypi/packages/popular/" + f.filename) == (200, f.data)
    assert fake.count(f.filename) == 1


def test_a_file_flows_to_the_client_while_it_is_fetched(fake, tmp_path, daemon_factory):
    f = fake.add("popular", "1.0", payload=os.urandom(2 << 20))
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    assert listed(server.url + "pypi/simple/popular/") == {f.filename: f.sha256}
    # The upstream sends half the file and holds the rest: the client has
    # that half meanwhile (pip gives up after 15 s without a byte).
    fake.stall(path=f.filename)
    parts = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", "/pypi/packages/popular/" + f.filename)
    response = conn.getresponse()
    assert response.status == 200 and response.headers["Content-Length"] == str(f.size)
    first = response.read(f.size // 4)
    assert first == f.data[:f.size // 4] and fake.held == 1
    fake.release()
    assert first + response.read() == f.data
    conn.close()


def test_upstream_requests_metric_counts_requests_made(fake, tmp_path, daemon_factory):
    f = fake.add("popular", "1.0", payload=os.urandom(2 << 20))
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    assert listed(server.url + "pypi/simple/popular/") == {f.filename: f.sha256}
    assert at_once(server, fake, f, 3) == [(200, f.data)] * 3
    assert len(fake.requests) == 2
    metrics = get(server.url + "metrics")[2].decode()
    assert 'ppypi_mirror_upstream_requests_total{repository="pypi"} 2.0' in metrics, \
        [line for line in metrics.splitlines() if "upstream_requests" in line]


def test_concurrent_metadata_requests_make_one_upstream_request(fake, tmp_path,
                                                               daemon_factory):
    f = fake.add("popular", "1.0")
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    assert listed(server.url + "pypi/simple/popular/") == {f.filename: f.sha256}
    # Held a second: askers that come later find it cached, whatever the timing.
    fake.stall(path=r"\.metadata$", seconds=1)
    url = server.url + "pypi/packages/popular/" + f.filename + ".metadata"
    results = [None] * 6

    def fetch(i):
        results[i] = download(url)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [(200, f.metadata)] * 6
    assert fake.count(r"\.metadata$") == 1


# -- 5. upstream down -----------------------------------------------------------

def test_upstream_down_serves_the_cache(fake, tmp_path, daemon_factory):
    wheel = fake.add("steady", "1.0")
    sdist = fake.add("steady", "1.0", kind="sdist")
    server = start(tmp_path, daemon_factory, one_url(fake, page_ttl=1))
    for base in (server.url, server.url + "pypi/"):
        status, headers, _ = get(base + "simple/steady/")
        assert status == 200 and headers["X-PPyPI-Stale"] is None
    # An install caches the wheel and its metadata.
    uv_install(bare_venv(tmp_path / "before"), server.url + "simple/", "steady")
    for fault in ("fail", "refuse"):
        if fault == "fail":
            fake.fail(status=500)
        else:
            fake.refuse()

        def stale():
            status, headers, body = get(server.url + "pypi/simple/steady/",
                                        {"Accept": JSON_SIMPLE})
            return status == 200 and headers["X-PPyPI-Stale"] and (headers, body)

        headers, body = wait_for(stale, what=f"the page served stale ({fault})")
        assert "upstream" in headers["X-PPyPI-Stale"]
        assert headers["Warning"].startswith("110")
        assert [f["filename"] for f in json.loads(body)["files"]] == [
            wheel.filename, sdist.filename]
        # The same at the hosted repository's URL.
        status, headers, _ = get(server.url + "simple/steady/")
        assert status == 200 and headers["X-PPyPI-Stale"]
        # A project never fetched: 503, at both URLs (never a 404, nor a 302).
        for base in (server.url, server.url + "pypi/"):
            status, headers, _ = get(base + "simple/never-fetched/")
            assert status == 503 and int(headers["Retry-After"]) > 0, (base, status)
        # Files: the cached one is served, the other is a 503.
        for base in (server.url, server.url + "pypi/"):
            assert download(base + "packages/steady/" + wheel.filename) == (200, wheel.data)
            status, headers, _ = get(base + "packages/steady/" + sdist.filename)
            assert status == 503 and int(headers["Retry-After"]) > 0
        assert get(server.url + "health")[0] == 200
        server.log_when("serving the page cached")
    # The same install from the stale cache (uv: no client cache).
    python = bare_venv(tmp_path / "after")
    uv_install(python, server.url + "simple/", "steady")
    assert versions(python, "steady") == ["1.0"]
    # The upstream back: the page is fresh again.
    fake.heal()
    fake.accept()
    wait_for(lambda: get(server.url + "pypi/simple/steady/")[1]["X-PPyPI-Stale"] is None,
             what="a fresh page")


def test_a_cached_wheels_metadata_is_served_while_the_upstream_is_down(fake, tmp_path,
                                                                      daemon_factory):
    wheel = fake.add("steady", "1.0")
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    url = server.url + "pypi/packages/steady/" + wheel.filename
    assert listed(server.url + "pypi/simple/steady/") == {wheel.filename: wheel.sha256}
    assert download(url) == (200, wheel.data)
    fake.refuse()
    assert download(url) == (200, wheel.data)
    assert download(url + ".metadata") == (200, wheel.metadata)


# -- 6. revalidation, and DELETE of a cached page ---------------------------------

def test_pages_are_revalidated_and_can_be_dropped(fake, tmp_path, daemon_factory):
    fake.add("fresh-pkg", "1.0")
    first = fake.add("late", "1.0")
    server = start(tmp_path, daemon_factory, one_url(fake) + (
        f"  quick: {{type: proxy, upstream: '{fake.index_url}', page_ttl: 1}}\n"))
    quick = server.url + "quick/simple/fresh-pkg/"
    assert list(listed(quick)) == ["fresh_pkg-1.0-py3-none-any.whl"]
    pages = [r for r in fake.requests if r.path == "/simple/fresh-pkg/"]
    assert len(pages) == 1 and "if-none-match" not in pages[0].headers
    # After page_ttl the page is revalidated: the upstream's ETag, a 304.
    wait_for(lambda: listed(quick) and fake.count("^/simple/fresh-pkg/$", status=304),
             what="a revalidation")
    revalidated = [r for r in fake.requests if r.status == 304][0]
    assert revalidated.headers["if-none-match"].startswith('"')
    assert list(listed(quick)) == ["fresh_pkg-1.0-py3-none-any.whl"]
    # A new version upstream shows once the page is next revalidated.
    fake.add("fresh-pkg", "2.0")
    wait_for(lambda: len(listed(quick)) == 2, what="the new version")
    assert fake.count("^/simple/fresh-pkg/$", status=200) == 2

    # page_ttl 600: a new version waits ... unless the page is dropped.
    page = server.url + "pypi/simple/late/"
    assert listed(page) == {first.filename: first.sha256}
    second = fake.add("late", "2.0")
    assert listed(page) == {first.filename: first.sha256}
    for headers, status in (({}, 401), ({"Authorization": basic("ci", "wrong")}, 401),
                            (BOB, 403)):
        assert get(page, headers, method="DELETE")[0] == status
    assert listed(page) == {first.filename: first.sha256}
    assert fake.count("^/simple/late/$") == 1
    assert get(page, CI, method="DELETE")[0] == 204
    both = {first.filename: first.sha256, second.filename: second.sha256}
    assert listed(page) == both
    assert listed(server.url + "simple/late/") == both
    assert fake.count("^/simple/late/$") == 2
    # Nothing cached under that name: 404; a hosted repository's page is no mirror's.
    assert get(server.url + "pypi/simple/not-cached/", CI, method="DELETE")[0] == 404
    assert get(server.url + "simple/late/", CI, method="DELETE")[0] == 405


# -- 7. a hostile upstream --------------------------------------------------------

class Page(HTMLParser):
    """Every tag with its attributes, and the text."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_a_hostile_upstream_reaches_no_page(fake, tmp_path, daemon_factory):
    real = fake.add("evil-proj", "1.0")
    fake.hostile("evil-proj")
    server = start(tmp_path, daemon_factory, one_url(fake))
    for base in (server.url, server.url + "pypi/"):
        url = base + "simple/evil-proj/"
        status, _, html = get(url, {"Accept": "text/html"})
        assert status == 200
        status, _, body = get(url, {"Accept": JSON_SIMPLE})
        assert status == 200
        for text in (html.decode(), body.decode()):
            found = [name for name, s in HOSTILE.items() if s in text]
            assert not found, (found, text)
        page = Page(html.decode())
        assert {tag for tag, _ in page.tags} <= {"html", "head", "meta", "title", "body",
                                                 "h1", "a", "br"}, page.tags
        assert all(not k.startswith("on") for _, attrs in page.tags for k in attrs)
        links = {a["href"].split("#")[0]: a for tag, a in page.tags if tag == "a"}
        data = json.loads(body)
        assert set(data) <= {"meta", "name", "files", "versions", "project-status"}, data
        urls = {f["url"]: f for f in data["files"]}
        # Every link is ours (relative), to a file of this project: the real
        # one with its hash, and only what the hostile page names as one of
        # its files with a sha256 (a proxy cannot tell those from real ones
        # before it fetches them; a fetch would check them).
        assert set(links) == set(urls)
        for href in links:
            assert href.startswith("../../packages/evil-proj/evil_proj-"), href
            filename = href.rsplit("/", 1)[1]
            assert filename.endswith((".whl", ".tar.gz")) and "<" not in filename
        ours = f"../../packages/evil-proj/{real.filename}"
        assert links[ours]["href"] == f"{ours}#sha256={real.sha256}"
        assert urls[ours]["hashes"] == {"sha256": real.sha256}
        # The real file downloads from this server; the made-up ones never do
        # (but 9.8, whose upstream URL is off host: this test stays on loopback).
        assert download(base + "packages/evil-proj/" + real.filename) == (200, real.data)
        off_host = "../../packages/evil-proj/evil_proj-9.8-py3-none-any.whl"
        for href in set(links) - {ours, off_host}:
            status, _ = download(base + href[len("../../"):])
            assert status in (404, 502, 503), (href, status)


# -- 8. no uploads to a mirror ------------------------------------------------------

def test_uploads_to_the_mirror_are_refused_with_the_reason(fake, tmp_path, daemon_factory):
    fake.add("pub-c", "2.0")
    server = start(tmp_path, daemon_factory, one_url(fake))
    wheel = write_wheel(tmp_path / "dist", "pub-c", "9.0")
    result = twine(server.url + "pypi/", wheel, check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "405" in out and "mirror" in out, out
    # The same for removals and yanks, with or without credentials.
    assert listed(server.url + "pypi/simple/pub-c/") == {
        "pub_c-2.0-py3-none-any.whl": fake.file("pub_c-2.0-py3-none-any.whl").sha256}
    status, _, body = get(server.url + "pypi/yank/pub-c/2.0", CI, method="POST")
    assert status == 405 and b"mirror" in body, (status, body)
    with pytest.raises(urllib.error.HTTPError) as refused:
        remove_release(server.url + "pypi/", "pub-c", "2.0")
    assert refused.value.code == 405 and b"mirror" in refused.value.read()
    # Nothing changed; the hosted repository takes the same upload.
    assert list(listed(server.url + "pypi/simple/pub-c/")) == ["pub_c-2.0-py3-none-any.whl"]
    twine(server.url, wheel)


# -- 9. min_age ---------------------------------------------------------------------

def test_min_age_hides_fresh_upstream_files(fake, tmp_path, daemon_factory):
    old = fake.add("aged", "1.0", upload_time="2020-01-01T00:00:00Z")
    new = fake.add("aged", "2.0")
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}', min_age: 7d}}\n")
    base = server.url + "pypi/"
    assert listed(base + "simple/aged/") == {old.filename: old.sha256}
    status, _, html = get(base + "simple/aged/")
    assert status == 200 and old.filename.encode() in html and new.filename.encode() not in html
    assert download(base + "packages/aged/" + new.filename)[0] == 404
    assert download(base + "packages/aged/" + old.filename) == (200, old.data)
    python = bare_venv(tmp_path / "venv")
    uv_install(python, base + "simple/", "aged")
    assert versions(python, "aged") == ["1.0"]
    assert fake.count(new.filename) == 0


# -- 10. the cache budget ------------------------------------------------------------

def test_least_recently_used_files_leave_the_cache_first(fake, tmp_path, daemon_factory):
    one, two, three = (fake.add("bulky", v, payload=os.urandom(16 << 10))
                       for v in ("1.0", "2.0", "3.0"))
    budget = one.size + two.size + three.size - 1   # two fit, three do not
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}', path: mirror-cache, "
                   f"max_cache_bytes: {budget}}}\n")
    base = server.url + "pypi/packages/bulky/"
    folder = os.path.join(server.root, "mirror-cache", "files", "bulky")

    def kept():
        return set(os.listdir(folder))

    assert len(listed(server.url + "pypi/simple/bulky/")) == 3
    for f in (one, two, one):   # one is used again: two is now the least recent
        assert download(base + f.filename) == (200, f.data)
    assert kept() == {one.filename, two.filename}
    assert fake.count(one.filename) == 1
    assert download(base + three.filename) == (200, three.data)
    wait_for(lambda: kept() == {one.filename, three.filename}, what="two evicted")
    # Evicted is not lost: fetched again (and one, least recent now, goes).
    assert download(base + two.filename) == (200, two.data)
    assert fake.count(two.filename) == 2
    wait_for(lambda: kept() == {three.filename, two.filename}, what="one evicted")
    status = server.health()["repositories"]["pypi"]
    assert status["evicted"] == 2 and status["cache_bytes"] == three.size + two.size


def abandon(url, keep=64 << 10):
    """Start a download, take C{keep} bytes of it, and hang up."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    assert response.status == 200
    taken = response.read(keep)
    conn.close()
    return taken


def test_a_client_that_leaves_does_not_stop_the_fetch(fake, tmp_path, daemon_factory):
    f = fake.add("bulky", "1.0", payload=os.urandom(512 << 10))
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    url = server.url + "pypi/packages/bulky/" + f.filename
    assert listed(server.url + "pypi/simple/bulky/") == {f.filename: f.sha256}
    fake.slow(1 << 20)
    assert abandon(url) == f.data[:64 << 10]
    # The fetch goes on without it, into the cache.
    wait_for(lambda: os.path.exists(cached_file(server, "pypi", "bulky", f.filename)),
             what="the file kept")
    fake.slow(None)
    assert download(url) == (200, f.data)
    assert fake.count(f.filename) == 1


def test_a_client_that_leaves_is_no_error(fake, tmp_path, daemon_factory):
    f = fake.add("bulky", "1.0", payload=os.urandom(512 << 10))
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}'}}\n")
    url = server.url + "pypi/packages/bulky/" + f.filename
    assert listed(server.url + "pypi/simple/bulky/") == {f.filename: f.sha256}
    fake.slow(1 << 20)
    abandon(url)
    wait_for(lambda: os.path.exists(cached_file(server, "pypi", "bulky", f.filename)),
             what="the file kept")
    fake.slow(None)
    assert download(url) == (200, f.data)   # its access line follows the other's
    log = server.log_when(f.filename + " HTTP/1.1\" 200")
    assert "Unhandled Error" not in log and "Traceback" not in log, log
    assert "source failed" not in log, log


def test_the_budget_holds_when_the_client_left(fake, tmp_path, daemon_factory):
    one = fake.add("bulky", "1.0", payload=os.urandom(512 << 10))
    two = fake.add("bulky", "2.0", payload=os.urandom(512 << 10))
    budget = one.size + two.size - 1
    server = start(tmp_path, daemon_factory,
                   f"  pypi: {{type: proxy, upstream: '{fake.index_url}', "
                   f"max_cache_bytes: {budget}}}\n")
    base = server.url + "pypi/packages/bulky/"
    assert len(listed(server.url + "pypi/simple/bulky/")) == 2
    assert download(base + one.filename) == (200, one.data)
    fake.slow(1 << 20)
    abandon(base + two.filename)
    wait_for(lambda: os.path.exists(cached_file(server, "pypi", "bulky", two.filename)),
             what="the file kept")
    wait_for(lambda: server.health()["repositories"]["pypi"]["cache_bytes"] <= budget,
             timeout=3, what="the cache back within its budget")
