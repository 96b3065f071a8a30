"""
The index over HTTP, in process: routing, normalisation, escaping, files,
the extra-index redirect and hostile paths.
"""

import hashlib
import json
import io
import os
import re
import tarfile
import zipfile

import pytest
import pytest_twisted

from .conftest import make_corpus
from .helpers import InProcess

SECRET = b"TOP-SECRET-CONTENT-OUTSIDE-THE-REPOSITORY"


@pytest.fixture
def corpus_server(tmp_path):
    root = tmp_path / "root"
    make_corpus(root, projects=3, versions=2, sdist=True)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return InProcess(root)


def header(response, name):
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


def links(body):
    return re.findall(r'<a href="([^"]+)"([^>]*)>([^<]+)</a>', body.decode())


@pytest_twisted.ensureDeferred
async def test_not_ready_until_first_sync(corpus_server):
    r, _ = await corpus_server.get("/simple/")
    assert r.code == 503
    assert header(r, "Retry-After")
    # Never a redirect while we do not know what we hold.
    r, _ = await corpus_server.get("/simple/requests/")
    assert r.code == 503


@pytest_twisted.ensureDeferred
async def test_root_page_lists_normalised_projects(corpus_server):
    await corpus_server.sync()
    r, body = await corpus_server.get("/simple/")
    assert r.code == 200
    assert header(r, "Content-Type") == "text/html; charset=utf-8"
    assert b'<meta name="pypi:repository-version" content="1.4">' in body
    assert [(h, t) for h, _, t in links(body)] == [
        (f"bench-pkg-0000{i}/", f"bench-pkg-0000{i}") for i in range(3)]
    assert r.length == len(body)


@pytest_twisted.ensureDeferred
async def test_project_page_links_hashes_and_requires_python(corpus_server):
    await corpus_server.sync()
    r, body = await corpus_server.get("/simple/bench-pkg-00001/")
    assert r.code == 200
    found = links(body)
    assert [t for _, _, t in found] == [
        "bench_pkg_00001-1.0.0-py3-none-any.whl", "bench_pkg_00001-1.0.0.tar.gz",
        "bench_pkg_00001-1.1.0-py3-none-any.whl", "bench_pkg_00001-1.1.0.tar.gz"]
    for href, attrs, text in found:
        path, _, fragment = href.partition("#sha256=")
        data = open(os.path.join(corpus_server.root, text), "rb").read()
        assert fragment == hashlib.sha256(data).hexdigest()
        assert path == f"../../packages/bench-pkg-00001/{text}"
        stem = text.split("-")[0] + "-" + text.split("-")[1]
        if text.endswith(".whl"):
            meta = zipfile.ZipFile(io.BytesIO(data)).read(stem + ".dist-info/METADATA")
        else:
            # The corpus's sdists are Metadata-Version 2.2 without Dynamic: PEP 658
            # lets an index serve their PKG-INFO.
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                meta = t.extractfile(stem.replace(".tar.gz", "") + "/PKG-INFO").read()
        digest = hashlib.sha256(meta).hexdigest()
        assert attrs == (' data-requires-python="&gt;=3.8"'
                         f' data-dist-info-metadata="sha256={digest}"'
                         f' data-core-metadata="sha256={digest}"')
        r, served = await corpus_server.get(f"/packages/bench-pkg-00001/{text}.metadata")
        assert (r.code, served) == (200, meta)


@pytest.mark.parametrize("name", ["Bench_Pkg.00001", "BENCH-PKG-00001", "bench__pkg--00001",
                                  "bench.pkg.00001"])
@pytest_twisted.ensureDeferred
async def test_non_normalised_name_redirects(corpus_server, name):
    await corpus_server.sync()
    r, _ = await corpus_server.get(f"/simple/{name}/")
    assert r.code == 301
    assert header(r, "Location") == "/simple/bench-pkg-00001/"


@pytest_twisted.ensureDeferred
async def test_named_repository_redirects_inside_itself(tmp_path):
    server = InProcess(tmp_path / "root", config_text=(
        "repositories:\n  main: {}\n  acme: {path: acme}\n"))
    make_corpus(tmp_path / "root" / "acme", projects=1, versions=1, prefix="Acme")
    await server.sync()
    r, _ = await server.get("/acme/simple/Acme_Pkg.00000/")
    assert r.code == 301
    assert header(r, "Location") == "/acme/simple/acme-pkg-00000/"
    r, body = await server.get("/acme/simple/acme-pkg-00000/")
    assert r.code == 200
    href = links(body)[0][0].split("#")[0]
    assert href == "../../packages/acme-pkg-00000/acme_pkg_00000-1.0.0-py3-none-any.whl"
    r, _ = await server.get("/acme/packages/acme-pkg-00000/acme_pkg_00000-1.0.0-py3-none-any.whl")
    assert r.code == 200
    # The first repository is served at / and at /main/; it does not see acme's
    # folder although acme's folder is inside its own.
    for prefix in ("", "/main"):
        r, body = await server.get(f"{prefix}/simple/")
        assert r.code == 200 and links(body) == []


@pytest_twisted.ensureDeferred
async def test_unknown_project_redirects_to_extra_index(corpus_server):
    await corpus_server.sync()
    r, _ = await corpus_server.get("/simple/Requests/")
    assert r.code == 301  # normalisation first
    r, _ = await corpus_server.get("/simple/requests/")
    assert r.code == 302
    assert header(r, "Location") == "https://pypi.example/simple/requests/"


@pytest_twisted.ensureDeferred
async def test_extra_index_off(tmp_path):
    server = InProcess(tmp_path / "root", extra_index_url=None)
    await server.sync()
    r, _ = await server.get("/simple/requests/")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_held_name_is_never_redirected(corpus_server):
    await corpus_server.sync()
    for f in os.listdir(corpus_server.root):
        if f.startswith("bench_pkg_00002"):
            os.unlink(os.path.join(corpus_server.root, f))
    await corpus_server.sync()
    r, _ = await corpus_server.get("/simple/bench-pkg-00002/")
    assert r.code == 404
    # ...also after a restart: the held names are persisted.
    again = InProcess(corpus_server.root)
    await again.sync()
    r, _ = await again.get("/simple/bench-pkg-00002/")
    assert r.code == 404
    r, _ = await again.get("/simple/bench-pkg-00009/")
    assert r.code == 302


@pytest_twisted.ensureDeferred
async def test_reserved_name_is_never_redirected(tmp_path):
    server = InProcess(tmp_path / "root", config_text=(
        "repositories:\n  main: {}\nreserved: ['acme-*', 'Internal_Tool']\n"))
    await server.sync()
    for name in ("acme-utils", "internal-tool"):
        r, _ = await server.get(f"/simple/{name}/")
        assert r.code == 404, name
    r, _ = await server.get("/simple/acmeutils/")
    assert r.code == 302


@pytest_twisted.ensureDeferred
async def test_failing_backend_answers_503_never_redirects(corpus_server, tmp_path):
    await corpus_server.sync()
    moved = tmp_path / "moved"
    os.rename(corpus_server.root, moved)
    assert await corpus_server.repository.sync() is False
    r, _ = await corpus_server.get("/simple/requests/")
    assert r.code == 503
    assert header(r, "Retry-After")
    # What we know is still served.
    r, _ = await corpus_server.get("/simple/bench-pkg-00000/")
    assert r.code == 200
    r, body = await corpus_server.get("/health")
    assert r.code == 503
    assert b'"ok": false' in body
    os.rename(moved, corpus_server.root)
    assert await corpus_server.repository.sync() is True
    r, _ = await corpus_server.get("/health")
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_page_etag_and_304(corpus_server):
    await corpus_server.sync()
    r, body = await corpus_server.get("/simple/bench-pkg-00000/")
    etag = header(r, "ETag")
    assert etag.startswith('"') and etag.endswith('"')
    r, body = await corpus_server.get("/simple/bench-pkg-00000/", {"If-None-Match": etag})
    assert r.code == 304 and body == b""
    r, _ = await corpus_server.get("/simple/bench-pkg-00000/", {"If-None-Match": '"stale"'})
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_file_download_headers_and_body(corpus_server):
    await corpus_server.sync()
    name = "bench_pkg_00000-1.0.0-py3-none-any.whl"
    data = open(os.path.join(corpus_server.root, name), "rb").read()
    r, body = await corpus_server.get(f"/packages/bench-pkg-00000/{name}")
    assert r.code == 200
    assert body == data
    assert r.length == len(data)
    assert header(r, "Content-Type") == "application/zip"
    assert header(r, "ETag") == f'"{hashlib.sha256(data).hexdigest()}"'
    assert header(r, "Last-Modified").endswith("GMT")
    # (treq's client leaves an empty Content-Encoding of its own; the live
    # tests check the raw headers.)
    assert not header(r, "Content-Encoding")
    r, body = await corpus_server.get(f"/packages/bench-pkg-00000/{name}", method="HEAD")
    assert r.code == 200 and body == b""
    sdist = "bench_pkg_00000-1.0.0.tar.gz"
    r, body = await corpus_server.get(f"/packages/bench-pkg-00000/{sdist}")
    assert header(r, "Content-Type") == "application/gzip"
    # (treq's client leaves an empty Content-Encoding of its own; the live
    # tests check the raw headers.)
    assert not header(r, "Content-Encoding")


@pytest_twisted.ensureDeferred
async def test_file_ranges(corpus_server):
    await corpus_server.sync()
    name = "bench_pkg_00000-1.0.0-py3-none-any.whl"
    data = open(os.path.join(corpus_server.root, name), "rb").read()
    url = f"/packages/bench-pkg-00000/{name}"
    size = len(data)
    for spec, expected, content_range in [
        ("bytes=0-9", data[:10], f"bytes 0-9/{size}"),
        ("bytes=10-", data[10:], f"bytes 10-{size - 1}/{size}"),
        ("bytes=-20", data[-20:], f"bytes {size - 20}-{size - 1}/{size}"),
        (f"bytes=5-{size + 100}", data[5:], f"bytes 5-{size - 1}/{size}"),
    ]:
        r, body = await corpus_server.get(url, {"Range": spec})
        assert (r.code, body, header(r, "Content-Range")) == (206, expected, content_range), spec
    for ignored in ("bytes=0-1,5-6", "lines=1-2", "bytes=x-y", "bytes=9-3"):
        r, body = await corpus_server.get(url, {"Range": ignored})
        assert (r.code, body) == (200, data), ignored
    r, _ = await corpus_server.get(url, {"Range": f"bytes={size}-"})
    assert r.code == 416
    assert header(r, "Content-Range") == f"bytes */{size}"
    # If-Range with another validator: the whole file.
    r, body = await corpus_server.get(url, {"Range": "bytes=0-9", "If-Range": '"old"'})
    assert (r.code, body) == (200, data)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    r, body = await corpus_server.get(url, {"If-None-Match": etag})
    assert (r.code, body) == (304, b"")


@pytest_twisted.ensureDeferred
async def test_small_files_and_metadata_are_served_from_memory_once_read(corpus_server):
    await corpus_server.sync()
    backend = corpus_server.repository.backend
    calls = []
    for method in ("download", "read_metadata"):
        real = getattr(backend, method)

        async def counted(*args, real=real, method=method, **kwargs):
            calls.append(method)
            return await real(*args, **kwargs)
        setattr(backend, method, counted)
    name = "bench_pkg_00000-1.0.0-py3-none-any.whl"
    data = open(os.path.join(corpus_server.root, name), "rb").read()
    url = f"/packages/bench-pkg-00000/{name}"
    for _ in range(3):
        r, body = await corpus_server.get(url)
        assert (r.code, body, r.length) == (200, data, len(data))
        r, meta = await corpus_server.get(url + ".metadata")
        assert r.code == 200 and meta.startswith(b"Metadata-Version")
    assert calls == ["download", "read_metadata"]
    # Ranges and HEAD from memory too.
    r, body = await corpus_server.get(url, {"Range": "bytes=2-5"})
    assert (r.code, body, header(r, "Content-Range")) == (206, data[2:6], f"bytes 2-5/{len(data)}")
    r, body = await corpus_server.get(url, method="HEAD")
    assert (r.code, body, header(r, "Content-Length")) == (200, b"", str(len(data)))
    assert calls == ["download", "read_metadata"]
    # A held file is answered before the router (which authorizes every
    # request it routes), with the headers the router gave it; a range or a
    # validator still goes through the router.
    sdist = "/packages/bench-pkg-00002/bench_pkg_00002-1.0.0.tar.gz"
    r1, _ = await corpus_server.get(sdist)
    routed = []
    ctx = corpus_server.site.resource._default._app.ctx
    real_authorize = ctx.authorize

    async def authorize(*args, **kwargs):
        routed.append(args[1])
        return await real_authorize(*args, **kwargs)
    ctx.authorize = authorize
    r2, body = await corpus_server.get(sdist)
    assert routed == [] and r2.code == 200
    for name in ("ETag", "Last-Modified", "Content-Type", "Cache-Control", "Accept-Ranges",
                 "Content-Length"):
        assert header(r2, name) == header(r1, name), name
    r, _ = await corpus_server.get(url, {"If-None-Match": header(r1, "ETag")})
    r, _ = await corpus_server.get(url, {"Range": "bytes=0-1"})
    assert len(routed) == 2
    # Bytes that are not the index's (changed by hand since the sync) are
    # served as they are, never kept.
    other = "bench_pkg_00001-1.0.0-py3-none-any.whl"
    path = os.path.join(corpus_server.root, other)
    original = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(bytes(reversed(original)))
    for _ in range(2):
        await corpus_server.get(f"/packages/bench-pkg-00001/{other}")
    assert calls.count("download") == 4  # (one for the sdist above)


@pytest_twisted.ensureDeferred
async def test_pip_gets_small_wheels_without_their_metadata(tmp_path):
    from ppypi.simple_pages import LEAN_BELOW
    root = tmp_path / "root"
    make_corpus(root, projects=1, versions=1, sdist=True)
    big = root / "bench_pkg_00000-2.0.0-py3-none-any.whl"
    from .helpers import wheel_bytes
    big.write_bytes(wheel_bytes("bench_pkg_00000", "2.0.0", payload=os.urandom(LEAN_BELOW)))
    server = InProcess(root)
    await server.sync()
    url = "/simple/bench-pkg-00000/"
    json_type = "application/vnd.pypi.simple.v1+json"
    pages = {}
    for agent in ("pip/26.3 {}", "uv/0.13.9", None):
        headers = {"Accept": json_type}
        if agent:
            headers["User-Agent"] = agent
        r, body = await server.get(url, headers)
        pages[agent] = {f["filename"]: f["core-metadata"] for f in json.loads(body)["files"]}
        r, html = await server.get(url, {"User-Agent": agent} if agent else {})
        pages[agent, "html"] = html.count(b"data-core-metadata=")
        assert header(r, "Vary") == "Accept, Accept-Encoding, User-Agent"
    small, sdist, large = ("bench_pkg_00000-1.0.0-py3-none-any.whl",
                           "bench_pkg_00000-1.0.0.tar.gz", big.name)
    # pip: a small wheel without (it downloads the wheel instead of the
    # metadata, one round trip either way); an sdist and a large wheel with.
    assert pages["pip/26.3 {}"][small] is False
    assert pages["pip/26.3 {}"][sdist] and pages["pip/26.3 {}"][large]
    assert pages["pip/26.3 {}", "html"] == 2
    for agent in ("uv/0.13.9", None):
        assert all(pages[agent].values()) and pages[agent, "html"] == 3


@pytest_twisted.ensureDeferred
async def test_large_file_is_streamed_whole(tmp_path):
    server = InProcess(tmp_path / "root")
    data = os.urandom(3 * 1024 * 1024 + 7)
    # A wheel name on arbitrary bytes: the index does not need to open it.
    (tmp_path / "root" / "big-1.0-py3-none-any.whl").write_bytes(data)
    await server.sync()
    r, body = await server.get("/packages/big/big-1.0-py3-none-any.whl")
    assert r.code == 200 and body == data


@pytest_twisted.ensureDeferred
async def test_file_deleted_after_sync_is_404(corpus_server):
    await corpus_server.sync()
    name = "bench_pkg_00000-1.0.0-py3-none-any.whl"
    os.unlink(os.path.join(corpus_server.root, name))
    r, _ = await corpus_server.get(f"/packages/bench-pkg-00000/{name}")
    assert r.code == 404


HOSTILE_PATHS = [
    "/packages/../secret.txt",
    "/packages/%2e%2e/secret.txt",
    "/packages/bench-pkg-00000/..%2f..%2fsecret.txt",
    "/packages/bench-pkg-00000/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/packages/bench-pkg-00000/..%5c..%5csecret.txt",
    "/packages/bench-pkg-00000/%2Fetc%2Fpasswd",
    "/packages//etc/passwd",
    "/packages/bench-pkg-00000//etc/passwd",
    "/packages/bench-pkg-00000/secret.txt%00.whl",
    "/packages/bench-pkg-00000/" + "a" * 5000 + ".whl",
    "/packages/bench-pkg-00001/bench_pkg_00000-1.0.0-py3-none-any.whl",  # wrong project
    "/packages/bench-pkg-00000/.ppypi",
    "/packages/.ppypi/repositories/default/files.json",
    "/.ppypi/repositories/default/files.json",
    "/simple/../secret.txt",
    "/simple/%2e%2e/",
    "/simple/..%2f..%2fsecret.txt/",
    "/simple/%00/",
    "/simple/a%0d%0aSet-Cookie:x/",
    "/simple/%ff%fe/",
    "/simple/" + "a" * 5000 + "/",
    "/simple/-leading-dash/",
    "/simple/<script>/",
    "/%2e%2e/%2e%2e/secret.txt",
    "/default/../secret.txt",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
@pytest_twisted.ensureDeferred
async def test_hostile_paths_are_4xx_and_read_nothing_outside(corpus_server, path, monkeypatch):
    await corpus_server.sync()
    opened = []
    import builtins
    real_open = builtins.open

    def spy_open(file, *args, **kwargs):
        opened.append(os.path.abspath(str(file)))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    r, body = await corpus_server.get(path)
    monkeypatch.undo()
    assert 300 <= r.code < 500, (path, r.code)
    assert r.code not in (301, 302) or not header(r, "Location").startswith("http"), path
    assert SECRET not in body
    root = os.path.abspath(corpus_server.root) + os.sep
    assert all(p.startswith(root) and "/.ppypi/" not in p for p in opened), opened


@pytest_twisted.ensureDeferred
async def test_hostile_requires_python_is_escaped(tmp_path):
    import zipfile
    root = tmp_path / "root"
    root.mkdir()
    payload = '"><script>alert(1)</script>&'
    with zipfile.ZipFile(root / "evil-1.0-py3-none-any.whl", "w") as z:
        z.writestr("evil-1.0.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\nRequires-Python: {payload}\n")
    server = InProcess(root)
    await server.sync()
    r, body = await server.get("/simple/evil/")
    assert b"<script>" not in body
    assert b'data-requires-python="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;"' in body


@pytest_twisted.ensureDeferred
async def test_health_and_home(corpus_server):
    await corpus_server.sync()
    r, body = await corpus_server.get("/health")
    assert r.code == 200
    import json
    status = json.loads(body)
    assert status["repositories"]["default"]["files"] == 12
    r, body = await corpus_server.get("/", {"Host": "index.example:8080"})
    assert r.code == 200
    assert b"pip install --index-url http://index.example:8080/simple/" in body
    assert b"uv pip install --index-url http://index.example:8080/simple/" in body
    etag = header(r, "ETag")
    r, body = await corpus_server.get("/", {"Host": "index.example:8080", "If-None-Match": etag})
    assert (r.code, body) == (304, b"")


@pytest_twisted.ensureDeferred
async def test_hand_dropped_file_appears_after_one_sync(corpus_server):
    corpus_server.start_timers()  # the first sync runs at once
    try:
        r, _ = await corpus_server.get("/simple/bench-pkg-00007/")
        assert r.code == 302
        make_corpus(corpus_server.root + "/nested/deeper", projects=8, versions=1)
        r, _ = await corpus_server.get("/simple/bench-pkg-00007/")
        assert r.code == 302  # not yet: no sync has run
        corpus_server.clock.advance(corpus_server.config.repositories[0].sync_interval)
        r, body = await corpus_server.get("/simple/bench-pkg-00007/")
        assert r.code == 200
        assert b"bench_pkg_00007-1.0.0-py3-none-any.whl" in body
    finally:
        corpus_server.stop_timers()


@pytest_twisted.ensureDeferred
async def test_sync_error_is_logged_and_next_sync_runs(corpus_server, tmp_path):
    corpus_server.start_timers()
    try:
        interval = corpus_server.config.repositories[0].sync_interval
        os.rename(corpus_server.root, tmp_path / "away")
        corpus_server.clock.advance(interval)
        assert not corpus_server.repository.healthy
        os.rename(tmp_path / "away", corpus_server.root)
        corpus_server.clock.advance(interval)
        assert corpus_server.repository.healthy
    finally:
        corpus_server.stop_timers()


@pytest_twisted.ensureDeferred
async def test_method_not_allowed(corpus_server):
    await corpus_server.sync()
    for method in ("PUT", "DELETE", "PATCH"):
        r, _ = await corpus_server.get("/simple/", method=method)
        assert r.code == 405
