"""
The modern index standards, in process: PEP 691 negotiation and JSON (with
a schema written from the PEPs), PEP 658/714 metadata, PEP 592 yanks, PEP 700
fields, Warehouse's /pypi JSON, and HTTP caching.
"""

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zipfile
from email.utils import formatdate

import jsonschema
import pytest
import pytest_twisted

from .conftest import HERE, make_corpus
from .helpers import InProcess, basic, sdist_bytes, upload_fields, wheel_bytes

SCHEMA = json.load(open(os.path.join(HERE, "fixtures", "pep691_schema.json")))
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"


def header(r, name):
    values = r.headers.getRawHeaders(name)
    return values[0] if values else None


def html_links(body):
    """[(href, {attr: value}, text)] of an HTML simple page."""
    from html import unescape
    out = []
    for attrs, text in re.findall(r"<a ([^>]*)>([^<]*)</a>", body.decode()):
        parsed = {k: unescape(v) for k, v in re.findall(r'([a-z-]+)="([^"]*)"', attrs)}
        out.append((parsed.pop("href"), parsed, unescape(text)))
    return out


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    make_corpus(root, projects=4, versions=3, sdist=True)
    # A Requires-Python that needs escaping, and a static sdist (2.2, no Dynamic).
    (root / "odd_tool-1.0-py3-none-any.whl").write_bytes(
        wheel_bytes("odd_tool", "1.0", requires_python='>=3.8,!=3.9.*,<"4"'))
    static = b"Metadata-Version: 2.2\nName: odd-tool\nVersion: 1.0\nSummary: static\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("odd_tool-1.0/PKG-INFO")
        info.size = len(static)
        t.addfile(info, io.BytesIO(static))
    (root / "odd_tool-1.0.tar.gz").write_bytes(buf.getvalue())
    # An sdist of Metadata-Version 2.1: its PKG-INFO may not be trusted (PEP 658).
    (root / "old_tool-1.0.tar.gz").write_bytes(sdist_bytes("old_tool", "1.0", metadata_version="2.1"))
    return InProcess(root, config_text=(
        "repositories:\n  main:\n    write: [alice]\n    page_max_age: 30\n"
        "users:\n  alice: {password: \"%s\"}\n" % _hash("pw")), extra_index_url=None)


def _hash(pw):
    import bcrypt
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()


async def yank(server, name, version, reason="", method="POST", auth=("alice", "pw")):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth:
        headers["Authorization"] = basic(*auth)
    from urllib.parse import urlencode
    return await server.get(f"/yank/{name}/{version}", headers, method=method,
                            data=urlencode({"reason": reason}).encode() if method == "POST" else None)


@pytest_twisted.ensureDeferred
async def test_json_validates_and_agrees_with_html_for_every_project(server):
    await server.sync()
    r, _ = await yank(server, "bench-pkg-00001", "1.1.0", "broken <b>build</b>")
    assert r.code == 200
    r, body = await server.get("/simple/", {"Accept": JSON_TYPE})
    root = json.loads(body)
    jsonschema.validate(root, SCHEMA)
    assert root["meta"]["api-version"] == "1.4"
    r, html_root = await server.get("/simple/")
    assert [p["name"] for p in root["projects"]] == [t for _, _, t in html_links(html_root)]
    for project in root["projects"]:
        name = project["name"]
        r, body = await server.get(f"/simple/{name}/", {"Accept": JSON_TYPE})
        assert r.code == 200
        page = json.loads(body)
        jsonschema.validate(page, SCHEMA)
        r, html = await server.get(f"/simple/{name}/")
        links = html_links(html)
        assert len(links) == len(page["files"])
        for (href, attrs, text), f in zip(links, page["files"]):
            url, _, fragment = href.partition("#")
            assert (text, url, fragment) == (f["filename"], f["url"], "sha256=" + f["hashes"]["sha256"])
            assert attrs.get("data-requires-python") == f["requires-python"]
            meta = f["core-metadata"]
            assert f["dist-info-metadata"] == meta
            if meta:
                assert attrs["data-core-metadata"] == "sha256=" + meta["sha256"]
                assert attrs["data-dist-info-metadata"] == "sha256=" + meta["sha256"]
            else:
                assert "data-core-metadata" not in attrs
            if f["yanked"] is False:
                assert "data-yanked" not in attrs
            else:
                assert attrs["data-yanked"] == f["yanked"]
            data = open(os.path.join(server.root, f["filename"]), "rb").read()
            assert f["size"] == len(data)
            assert hashlib.sha256(data).hexdigest() == f["hashes"]["sha256"]
        assert page["versions"] == sorted({f["filename"].split("-")[1].replace(".tar.gz", "")
                                           for f in page["files"]},
                                          key=lambda v: tuple(int(x) for x in v.split(".")))
    r, body = await server.get("/simple/bench-pkg-00001/", {"Accept": JSON_TYPE})
    yanked = {f["filename"]: f["yanked"] for f in json.loads(body)["files"]}
    assert yanked["bench_pkg_00001-1.1.0-py3-none-any.whl"] == "broken <b>build</b>"
    assert yanked["bench_pkg_00001-1.0.0-py3-none-any.whl"] is False


def test_schema_rejects_what_it_should():
    """The fixture can fail: a few wrong documents."""
    good = {"meta": {"api-version": "1.1"}, "name": "x", "versions": ["1"], "files": [
        {"filename": "x-1.tar.gz", "url": "x", "hashes": {"sha256": "a" * 64}, "size": 1,
         "upload-time": "2024-01-01T00:00:00.000000Z"}]}
    jsonschema.validate(good, SCHEMA)
    for broken in (
        {**good, "meta": {}},
        {**good, "name": "Not_Normalised"},
        {**good, "files": [{**good["files"][0], "upload-time": "2024-01-01 00:00"}]},
        {**good, "files": [{**good["files"][0], "size": -1}]},
        {**good, "files": [{**good["files"][0], "yanked": 1}]},
        {k: v for k, v in good.items() if k != "versions"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


NEGOTIATION = [
    # (Accept, ?format=, expected Content-Type)
    (None, None, "text/html"),
    ("text/html", None, "text/html"),
    ("*/*", None, "text/html"),
    ("application/json", None, "text/html"),          # names nothing supported
    ("image/png, text/plain", None, "text/html"),
    ("garbage;;;,,", None, "text/html"),
    (JSON_TYPE, None, JSON_TYPE),
    ("application/vnd.pypi.simple.latest+json", None, JSON_TYPE),
    ("application/vnd.pypi.simple.latest+html", None, HTML_V1),
    (HTML_V1, None, HTML_V1),
    # uv's header
    (f"{JSON_TYPE}, {HTML_V1};q=0.2, text/html;q=0.01", None, JSON_TYPE),
    # pip's header
    (f"{JSON_TYPE}, {HTML_V1}; q=0.1, text/html; q=0.01", None, JSON_TYPE),
    (f"text/html, {JSON_TYPE};q=0.5", None, "text/html"),
    (f"{JSON_TYPE};q=0, text/html;q=0.1", None, "text/html"),
    (f"{JSON_TYPE};q=2, {HTML_V1}", None, HTML_V1),    # q out of range counts as 0
    ("text/html", JSON_TYPE, JSON_TYPE),               # ?format= wins
    (JSON_TYPE, "text/html", "text/html"),
    (None, HTML_V1, HTML_V1),
]


@pytest.mark.parametrize("path", ["/simple/", "/simple/bench-pkg-00000/"])
@pytest.mark.parametrize("accept, fmt, expected", NEGOTIATION)
@pytest.mark.parametrize("gz", [False, True])
@pytest_twisted.ensureDeferred
async def test_every_way_of_asking_for_a_page(server, path, accept, fmt, expected, gz):
    await server.sync()
    headers = {}
    if accept is not None:
        headers["Accept"] = accept
    if gz:
        headers["Accept-Encoding"] = "gzip"
    url = path + (f"?format={fmt}" if fmt else "")
    response = await server.treq.request("GET", "http://ppypi.test" + url, headers=headers,
                                         allow_redirects=False)
    raw = await response.content()  # treq un-gzips: compare with the plain answer below
    assert response.code == 200
    ctype = header(response, "Content-Type")
    assert ctype.split(";")[0] == expected
    vary = "Accept, Accept-Encoding" + ("" if path == "/simple/" else ", User-Agent")
    assert header(response, "Vary") == vary
    assert header(response, "Cache-Control") == "public, max-age=30"
    etag = header(response, "ETag")
    # A matching ETag: 304 and no body; a stale one: the page again.
    for validator, status in ((etag, 304), ('"stale"', 200), (f'"x", {etag}', 304)):
        again = await server.treq.request("GET", "http://ppypi.test" + url,
                                          headers={**headers, "If-None-Match": validator},
                                          allow_redirects=False)
        body = await again.content()
        assert again.code == status, validator
        assert (body == b"") == (status == 304)
        assert header(again, "Vary") == vary
    if expected == JSON_TYPE:
        json.loads(raw)
    else:
        assert raw.startswith(b"<!DOCTYPE html>")


@pytest_twisted.ensureDeferred
async def test_gzip_on_the_wire(server):
    """treq un-gzips; look at the bytes with a client that does not."""
    from twisted.web.client import readBody
    await server.sync()
    agent = server.treq._agent
    from twisted.web.http_headers import Headers
    response = await agent.request(b"GET", b"http://ppypi.test/simple/bench-pkg-00000/",
                                   Headers({b"Accept-Encoding": [b"gzip"]}))
    body = await readBody(response)
    assert response.headers.getRawHeaders(b"content-encoding") == [b"gzip"]
    plain = await agent.request(b"GET", b"http://ppypi.test/simple/bench-pkg-00000/", Headers({}))
    plain_body = await readBody(plain)
    assert gzip.decompress(body) == plain_body
    assert response.headers.getRawHeaders(b"etag") != plain.headers.getRawHeaders(b"etag")
    for refused in (b"gzip;q=0", b"identity", b"br"):
        r = await agent.request(b"GET", b"http://ppypi.test/simple/bench-pkg-00000/",
                                Headers({b"Accept-Encoding": [refused]}))
        assert await readBody(r) == plain_body, refused


@pytest.mark.parametrize("fmt", ["application/json", "text/plain", "x"])
@pytest_twisted.ensureDeferred
async def test_unknown_format_parameter_is_406(server, fmt):
    await server.sync()
    r, _ = await server.get(f"/simple/?format={fmt}")
    assert r.code == 406


@pytest_twisted.ensureDeferred
async def test_last_modified_and_if_modified_since(server):
    await server.sync()
    r, _ = await server.get("/simple/bench-pkg-00000/")
    last = header(r, "Last-Modified")
    r, body = await server.get("/simple/bench-pkg-00000/", {"If-Modified-Since": last})
    assert (r.code, body) == (304, b"")
    r, _ = await server.get("/simple/bench-pkg-00000/",
                            {"If-Modified-Since": formatdate(0, usegmt=True)})
    assert r.code == 200
    r, _ = await server.get("/simple/bench-pkg-00000/", {"If-Modified-Since": "garbage"})
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_page_is_rendered_once_per_change(server, monkeypatch):
    import ppypi.simple_pages as index
    await server.sync()
    calls = []
    real = index.RENDERERS[index.HTML]
    monkeypatch.setitem(index.RENDERERS, index.HTML,
                        (real[0], lambda *a: calls.append(a) or real[1](*a)))
    for _ in range(5):
        r, first = await server.get("/simple/bench-pkg-00000/")
    assert len(calls) == 1
    await yank(server, "bench-pkg-00000", "1.0.0")
    r, second = await server.get("/simple/bench-pkg-00000/")
    assert len(calls) == 2 and second != first


@pytest_twisted.ensureDeferred
async def test_core_metadata_files(server):
    await server.sync()
    wheel = "bench_pkg_00002-1.1.0-py3-none-any.whl"
    data = open(os.path.join(server.root, wheel), "rb").read()
    meta = zipfile.ZipFile(io.BytesIO(data)).read("bench_pkg_00002-1.1.0.dist-info/METADATA")
    r, body = await server.get(f"/packages/bench-pkg-00002/{wheel}.metadata")
    assert (r.code, body) == (200, meta)
    assert header(r, "ETag") == f'"{hashlib.sha256(meta).hexdigest()}"'
    # Static sdists' PKG-INFO is served (the corpus writes 2.2); 2.1 sdists' is not.
    r, body = await server.get("/packages/odd-tool/odd_tool-1.0.tar.gz.metadata")
    assert r.code == 200 and b"Metadata-Version: 2.2" in body
    r, body = await server.get("/packages/bench-pkg-00002/bench_pkg_00002-1.1.0.tar.gz.metadata")
    assert r.code == 200 and body.startswith(b"Metadata-Version: 2.2\nName: bench_pkg_00002\n")
    r, _ = await server.get("/packages/old-tool/old_tool-1.0.tar.gz.metadata")
    assert r.code == 404
    r, _ = await server.get(f"/packages/bench-pkg-00003/{wheel}.metadata")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_uploaded_wheel_metadata_and_upload_time(server):
    import time
    await server.sync()
    data = wheel_bytes("fresh_tool", "3.0")
    before = time.time()
    r, body = await server.upload(upload_fields("fresh-tool", "3.0", data),
                                  [("content", "fresh_tool-3.0-py3-none-any.whl", data)],
                                  auth=("alice", "pw"))
    assert r.code == 200, body
    r, body = await server.get("/simple/fresh-tool/", {"Accept": JSON_TYPE})
    (f,) = json.loads(body)["files"]
    from datetime import datetime
    uploaded = datetime.strptime(f["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() - \
        (datetime.now() - datetime.utcnow()).total_seconds()
    assert before - 1 <= uploaded <= time.time() + 1
    r, meta = await server.get("/packages/fresh-tool/fresh_tool-3.0-py3-none-any.whl.metadata")
    assert r.code == 200 and f["core-metadata"] == {"sha256": hashlib.sha256(meta).hexdigest()}


@pytest_twisted.ensureDeferred
async def test_hand_dropped_upload_time_is_the_mtime(tmp_path):
    root = tmp_path / "root"
    make_corpus(root, projects=1, versions=1)
    path = root / "bench_pkg_00000-1.0.0-py3-none-any.whl"
    os.utime(path, (1700000000, 1700000000))
    server = InProcess(root)
    await server.sync()
    r, body = await server.get("/simple/bench-pkg-00000/", {"Accept": JSON_TYPE})
    assert json.loads(body)["files"][0]["upload-time"] == "2023-11-14T22:13:20.000000Z"


@pytest_twisted.ensureDeferred
async def test_yank_and_unyank_over_http(server):
    await server.sync()
    r, _ = await yank(server, "bench-pkg-00000", "1.0.0", auth=None)
    assert r.code == 401
    r, _ = await yank(server, "bench-pkg-00000", "1.0.0", auth=("alice", "wrong"))
    assert r.code == 401
    r, _ = await yank(server, "bench-pkg-00000", "9.9", "x")
    assert r.code == 404
    r, body = await yank(server, "Bench_Pkg.00000", "1.0", "bad release")
    assert r.code == 200, body
    assert json.loads(body)["files"] == ["bench_pkg_00000-1.0.0-py3-none-any.whl",
                                         "bench_pkg_00000-1.0.0.tar.gz"]
    r, html = await server.get("/simple/bench-pkg-00000/")
    yanked = {t: a.get("data-yanked") for _, a, t in html_links(html)}
    assert yanked["bench_pkg_00000-1.0.0.tar.gz"] == "bad release"
    assert yanked["bench_pkg_00000-1.1.0.tar.gz"] is None
    # Kept by the backend: a new server on the same folder knows it.
    again = InProcess(server.root, config_text=(
        "repositories:\n  main:\n    write: [alice]\n"
        "users:\n  alice: {password: \"%s\"}\n" % _hash("pw")))
    await again.sync()
    r, html = await again.get("/simple/bench-pkg-00000/")
    assert 'data-yanked="bad release"' in html.decode()
    r, _ = await yank(again, "bench-pkg-00000", "1.0.0", method="DELETE")
    assert r.code == 200
    r, html = await again.get("/simple/bench-pkg-00000/")
    assert b"data-yanked" not in html


@pytest.mark.parametrize("reason, status", [("x" * 1001, 400), ("a\nb", 400), ("ok", 200)])
@pytest_twisted.ensureDeferred
async def test_yank_reason_limits(server, reason, status):
    await server.sync()
    r, _ = await yank(server, "bench-pkg-00000", "1.0.0", reason)
    assert r.code == status


@pytest_twisted.ensureDeferred
async def test_warehouse_json(server):
    await server.sync()
    await yank(server, "bench-pkg-00003", "1.2.0", "oops")
    r, body = await server.get("/pypi/bench-pkg-00003/json", {"Host": "idx.example"})
    assert r.code == 200 and header(r, "Content-Type") == "application/json"
    doc = json.loads(body)
    # The latest release that is not yanked.
    assert doc["info"]["version"] == "1.1.0"
    assert doc["info"]["summary"] == "bench package bench_pkg_00003"
    assert doc["info"]["requires_python"] == ">=3.8"
    assert doc["info"]["description"].strip() == "Long description of bench_pkg_00003."
    assert list(doc["releases"]) == ["1.0.0", "1.1.0", "1.2.0"]
    files = doc["releases"]["1.2.0"]
    assert {f["packagetype"] for f in files} == {"bdist_wheel", "sdist"}
    assert all(f["yanked"] and f["yanked_reason"] == "oops" for f in files)
    wheel = [f for f in files if f["packagetype"] == "bdist_wheel"][0]
    data = open(os.path.join(server.root, wheel["filename"]), "rb").read()
    assert wheel["digests"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert wheel["url"] == f"http://idx.example/packages/bench-pkg-00003/{wheel['filename']}"
    assert wheel["size"] == len(data)
    assert wheel["upload_time_iso_8601"].endswith("Z")
    assert [f["filename"] for f in doc["urls"]] == [
        "bench_pkg_00003-1.1.0-py3-none-any.whl", "bench_pkg_00003-1.1.0.tar.gz"]
    r, body = await server.get("/pypi/bench-pkg-00003/1.2.0/json")
    one = json.loads(body)
    assert one["info"]["version"] == "1.2.0" and one["info"]["yanked"] is True
    assert "releases" not in one
    r, _ = await server.get("/pypi/Bench_Pkg.00003/json")
    assert r.code == 301 and header(r, "Location").endswith("/pypi/bench-pkg-00003/json")
    for missing in ("/pypi/nope/json", "/pypi/bench-pkg-00003/7.0/json",
                    "/pypi/bench-pkg-00003/not!a!version/json"):
        r, _ = await server.get(missing)
        assert r.code == 404, missing
