"""
The fake upstream index (tests/fake_upstream.py) answers as pypi.org and
files.pythonhosted.org do: real pip and uv install from it, its JSON
validates, negotiation and caching follow Warehouse, and its faults do what
they say.
"""

import base64
import gzip
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import jsonschema
import pytest

from .conftest import BIN, HERE, client_env, get, wait_for
from .fake_upstream import (HOSTILE, HUGE_REQUIRES_PYTHON, V1_HTML, V1_JSON, FakeUpstream,
                            acceptable_offers)

SCHEMA = json.load(open(os.path.join(HERE, "fixtures", "pep691_schema.json")))
PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
              "text/html; q=0.01")


@pytest.fixture
def fake():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


def chain(fake):
    """a -> b -> c, with versions pip must pass over."""
    fake.add("Chain-A", "1.0", requires_dist=["chain-b>=1.0"])
    fake.add("Chain-B", "0.9")
    fake.add("Chain-B", "1.0", requires_dist=["Chain_C"])
    fake.add("chain.c", "2.0", requires_python=">=3.8")
    fake.add("chain.c", "2.5", yanked="broken build")
    fake.add("chain.c", "3.0", requires_python=">=4")
    fake.add("chain.c", "2.0", kind="sdist", requires_python=">=3.8")


def run(cmd, env=None):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                            env=env or client_env(), timeout=120)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


def bare_venv(path):
    run([sys.executable, "-m", "venv", "--without-pip", path])
    return path / "bin" / "python"


class Links(HTMLParser):
    """The anchors of a page: [(attrs, text)]."""

    def __init__(self):
        super().__init__()
        self.anchors, self._open = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = (dict(attrs), [])
            self.anchors.append(self._open)

    def handle_data(self, data):
        if self._open:
            self._open[1].append(data)

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None


def anchors(body):
    parser = Links()
    parser.feed(body.decode())
    return [(attrs, "".join(text)) for attrs, text in parser.anchors]


# -- real clients -----------------------------------------------------------

def test_pip_installs_a_dependency_chain(fake, tmp_path):
    chain(fake)
    python = bare_venv(tmp_path / "venv")
    run([os.path.join(BIN, "python"), "-m", "pip", "--python", python, "install",
         "--no-cache-dir", "--index-url", fake.index_url, "Chain_A"])
    out = run([python, "-c", "import chain_a, chain_b, chain_c; "
               "print(chain_a.__version__, chain_b.__version__, chain_c.__version__)"])
    assert out.stdout.split() == ["1.0", "1.0", "2.0"]  # not 2.5 (yanked) nor 3.0 (Python 4)
    # pip asked for JSON, took the metadata (PEP 658) and downloaded the wheels only.
    pages = [r for r in fake.requests if r.path.startswith("/simple/")]
    assert {r.path for r in pages} == {"/simple/chain-a/", "/simple/chain-b/", "/simple/chain-c/"}
    assert all(r.headers["accept"].startswith(V1_JSON) for r in pages)
    assert fake.count(r"\.metadata$", status=200) == 3
    assert fake.count(r"\.whl$", status=200) == 3
    assert fake.count(r"\.tar\.gz") == 0


def test_uv_installs_a_dependency_chain(fake, tmp_path):
    chain(fake)
    python = bare_venv(tmp_path / "venv")
    run([os.path.join(BIN, "uv"), "pip", "install", "--no-cache", "--python", python,
         "--index-url", fake.index_url, "chain-a"])
    out = run([python, "-c", "import chain_c; print(chain_c.__version__)"])
    assert out.stdout.strip() == "2.0"
    assert fake.count(r"^/simple/chain-c/$", status=200) == 1


# -- pages ------------------------------------------------------------------

def test_json_pages_validate_against_the_schema(fake):
    chain(fake)
    fake.add("Chain-B", "1.1", kind="sdist", metadata=True, upload_time="2024-05-01T12:00:00Z")
    status, headers, body = get(fake.index_url, {"Accept": V1_JSON})
    assert (status, headers["Content-Type"]) == (200, V1_JSON)
    index = json.loads(body)
    jsonschema.validate(index, SCHEMA)
    assert index["meta"]["api-version"] == "1.4"
    assert [p["name"] for p in index["projects"]] == ["Chain-A", "Chain-B", "chain.c"]
    assert body.endswith(b"}\n") and b", " not in body  # compact, sorted, one newline
    for name in ("chain-a", "chain-b", "chain-c"):
        status, headers, body = get(fake.index_url + name + "/", {"Accept": V1_JSON})
        page = json.loads(body)
        jsonschema.validate(page, SCHEMA)
        assert page["name"] == name
        assert headers["X-PyPI-Last-Serial"] == str(page["meta"]["_last-serial"])
    assert page["versions"] == ["2.0", "2.5", "3.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    assert by_name["chain_c-2.5-py3-none-any.whl"]["yanked"] == "broken build"
    assert by_name["chain_c-3.0-py3-none-any.whl"]["requires-python"] == ">=4"
    assert by_name["chain_c-2.0.tar.gz"]["core-metadata"] is False  # Warehouse: wheels only
    sdist = json.loads(get(fake.index_url + "chain-b/", {"Accept": V1_JSON})[2])["files"][-1]
    assert sdist["upload-time"] == "2024-05-01T12:00:00Z"
    assert sdist["core-metadata"] == sdist["data-dist-info-metadata"] != False  # noqa: E712


def test_html_page_layout_hashes_and_files(fake):
    chain(fake)
    status, headers, body = get(fake.index_url + "chain-c/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b'<meta name="pypi:repository-version" content="1.4">' in body
    assert b'data-requires-python="&gt;=3.8"' in body
    assert b'data-yanked="broken build"' in body
    links = anchors(body)
    assert [text for _, text in links] == [
        "chain_c-2.0-py3-none-any.whl", "chain_c-2.0.tar.gz", "chain_c-2.5-py3-none-any.whl",
        "chain_c-3.0-py3-none-any.whl"]
    for attrs, filename in links:
        url, _, fragment = attrs["href"].partition("#sha256=")
        assert re.fullmatch(re.escape(fake.url) + r"files/packages/[0-9a-f]{2}/[0-9a-f]{2}/"
                            r"[0-9a-f]{60}/" + re.escape(filename), url)
        status, headers, data = get(url)
        assert status == 200 and int(headers["Content-Length"]) == len(data)
        assert hashlib.sha256(data).hexdigest() == fragment
        assert url.rsplit("/", 1)[0].endswith(hashlib.blake2b(data, digest_size=32).hexdigest()[4:])
        if filename.endswith(".whl"):
            digest = attrs["data-core-metadata"]
            assert attrs["data-dist-info-metadata"] == digest
            status, _, metadata = get(url + ".metadata")
            assert status == 200 and "sha256=" + hashlib.sha256(metadata).hexdigest() == digest
        else:
            assert "data-core-metadata" not in attrs
            assert get(url + ".metadata")[0] == 404
    assert b"Requires-Dist: Chain_C" in get(anchors(get(fake.index_url + "chain-b/")[2])[1][0]
                                            ["href"].split("#")[0] + ".metadata")[2]
    # The project list links to normalised names with the display name as text.
    index = get(fake.index_url)[2]
    assert b'<a href="/simple/chain-c/">chain.c</a>' in index


@pytest.mark.parametrize("accept, expected", [
    (None, "text/html"),
    ("*/*", "text/html"),
    ("text/html", "text/html"),
    (V1_JSON, V1_JSON),
    (PIP_ACCEPT, V1_JSON),
    (f"{V1_HTML}, {V1_JSON}", V1_HTML),                       # ties go to Warehouse's order
    (f"{V1_JSON};q=0.5, {V1_HTML};q=0.9", V1_HTML),
    (f"text/html;q=0, {V1_JSON};q=0.1", V1_JSON),
    ("application/*", V1_HTML),
    ("application/json", "text/html"),                       # nothing acceptable: the default
    (f"{V1_JSON};q=0", "text/html"),
    (f"{V1_JSON}, garbage", "text/html"),                    # one bad element spoils the header
    (f"{V1_JSON};q=0.5000", "text/html"),                    # so does a 4-digit q
    ("text/html;level=1, " + V1_JSON + ";q=0.5", V1_JSON),   # parameters must match exactly
])
def test_negotiation_follows_warehouse(fake, accept, expected):
    fake.add("Pkg", "1.0")
    for url in (fake.index_url, fake.index_url + "pkg/"):
        status, headers, body = get(url, {"Accept": accept} if accept else {})
        assert status == 200
        assert headers["Content-Type"].split(";")[0] == expected
        assert (body.startswith(b"{")) == (expected == V1_JSON)


def test_acceptable_offers_is_webobs():
    assert acceptable_offers(PIP_ACCEPT) == [(V1_JSON, 1.0), (V1_HTML, 0.1), ("text/html", 0.01)]
    assert acceptable_offers("*/*;q=0.5, text/html;q=0") == [(V1_HTML, 0.5), (V1_JSON, 0.5)]
    assert acceptable_offers("") == []                       # valid, and accepts nothing
    assert acceptable_offers(None) == acceptable_offers("bad header") == [
        ("text/html", 1.0), (V1_HTML, 1.0), (V1_JSON, 1.0)]


def test_warehouse_ignores_format_and_never_answers_406(fake):
    fake.add("Pkg", "1.0")
    status, headers, _ = get(fake.index_url + f"pkg/?format={V1_JSON}", {"Accept": "image/png"})
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")


def test_strict_negotiation_honours_format_and_answers_406():
    with FakeUpstream(negotiation="strict") as strict:
        strict.add("Pkg", "1.0")
        url = strict.index_url + "pkg/"
        headers = get(url + f"?format={V1_JSON}", {"Accept": "text/html"})[1]
        assert headers["Content-Type"] == V1_JSON
        assert get(url + "?format=text/plain")[0] == 406
        assert get(url, {"Accept": "application/json"})[0] == 406
        assert get(url)[1]["Content-Type"].startswith("text/html")


def test_redirects_and_not_found(fake):
    fake.add("Foo.Bar", "1.0")
    status, headers, _ = get(fake.index_url + "Foo_Bar/?x=1")
    assert status == 301
    assert headers["Location"] == fake.index_url + "foo-bar/?x=1"  # absolute, query kept
    assert headers["Cache-Control"] == "max-age=600, public"
    assert get(fake.index_url + "foo-bar")[1]["Location"] == fake.index_url + "foo-bar/"
    assert get(fake.url + "simple")[1]["Location"] == fake.index_url
    for missing in ("nothing/", "No_Thing/"):
        status, headers, body = get(fake.index_url + missing)
        assert (status, body) == (404, b"404 Not Found")
        assert headers["Content-Type"].startswith("text/plain")
    # urllib follows the redirect to the page.
    with urllib.request.urlopen(fake.index_url + "FOO.bar/") as r:
        assert r.url == fake.index_url + "foo-bar/" and b"foo_bar-1.0" in r.read()


def test_etag_and_304(fake):
    fake.add("Pkg", "1.0")
    url = fake.index_url + "pkg/"
    status, headers, body = get(url, {"Accept": V1_JSON})
    etag = headers["ETag"]
    assert etag == '"%s"' % base64.b64encode(hashlib.md5(body).digest()).decode().strip("=")
    assert headers["Cache-Control"] == "max-age=600, public"
    assert "Last-Modified" not in headers            # pypi.org sends none
    status, headers, body = get(url, {"Accept": V1_JSON, "If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    assert headers["X-PyPI-Last-Serial"] and "Content-Type" not in headers
    assert get(url, {"Accept": V1_JSON, "If-None-Match": "W/" + etag})[0] == 304
    assert get(url, {"Accept": V1_JSON, "If-None-Match": "*"})[0] == 200   # WebOb's quirk
    assert get(url, {"If-None-Match": etag})[0] == 200                     # the HTML's differs
    assert get(url, {"Accept": V1_JSON,
                     "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})[0] == 200
    fake.add("Pkg", "1.1")                                                 # published mid-test
    status, headers, body = get(url, {"Accept": V1_JSON, "If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag and b"1.1" in body


def test_last_modified_when_asked_for():
    with FakeUpstream(last_modified=True) as upstream:
        upstream.add("Pkg", "1.0")
        url = upstream.index_url + "pkg/"
        last_modified = get(url)[1]["Last-Modified"]
        assert get(url, {"If-Modified-Since": last_modified})[0] == 304
        assert get(url, {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})[0] == 200


def test_gzip_like_warehouse(fake):
    fake.add("Pkg", "1.0")
    url = fake.index_url + "pkg/"
    plain = get(url, {"Accept": V1_JSON})
    packed = get(url, {"Accept": V1_JSON, "Accept-Encoding": "gzip, deflate"})
    assert packed[1]["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain[1]
    assert gzip.decompress(packed[2]) == plain[2]
    assert packed[1]["ETag"] != plain[1]["ETag"]
    assert get(url, {"Accept-Encoding": "gzip;q=0.5, identity"})[1].get("Content-Encoding") is None


def test_files_answer_conditionals_and_ranges(fake):
    f = fake.add("Pkg", "1.0")
    url = fake.file_url(f.filename)
    status, headers, data = get(url)
    assert (status, data, headers["Content-Type"]) == (200, f.data, "binary/octet-stream")
    assert get(url, {"If-None-Match": headers["ETag"]})[0] == 304
    status, headers, part = get(url, {"Range": "bytes=10-19"})
    assert (status, part, headers["Content-Range"]) == (206, f.data[10:20], f"bytes 10-19/{f.size}")
    assert get(url, {"Range": "bytes=-5"})[2] == f.data[-5:]
    assert get(url, method="HEAD")[1]["Content-Length"] == str(f.size)


def test_separate_files_host():
    with FakeUpstream(credentials=("u", "p"), separate_files_host=True) as upstream:
        f = upstream.add("Pkg", "1.0")
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        href = anchors(get(upstream.index_url + "pkg/", auth)[2])[0][0]["href"]
        assert href.startswith(upstream.files_url + "packages/")
        assert not href.startswith(upstream.url)
        assert get(href.split("#")[0])[2] == f.data         # the CDN wants no credentials
        assert get(upstream.url + "files/packages/" + f.path, auth)[0] == 404
        assert upstream.requests[-2].origin == "files" and upstream.requests[-2].auth is None


# -- faults -----------------------------------------------------------------

def test_tamper_keeps_the_page_hash(fake):
    f = fake.add("Pkg", "1.0")
    page = get(fake.index_url + "pkg/")[2]
    fake.tamper(f.filename)
    data = get(fake.file_url(f.filename))[2]
    assert len(data) == f.size and hashlib.sha256(data).hexdigest() != f.sha256
    assert get(fake.index_url + "pkg/")[2] == page
    fake.tamper(f.filename, b"other bytes")
    assert get(fake.file_url(f.filename))[2] == b"other bytes"
    fake.tamper(f.filename + ".metadata", b"Name: evil\n")
    assert get(fake.file_url(f.filename) + ".metadata")[2] == b"Name: evil\n"
    fake.untamper(f.filename)
    assert get(fake.file_url(f.filename))[2] == f.data


def test_fail_count_and_path(fake):
    fake.add("Pkg", "1.0")
    fake.fail(count=2, status=503, path=r"^/simple/pkg/")
    for _ in range(2):
        status, headers, _ = get(fake.index_url + "pkg/")
        assert (status, headers["Retry-After"]) == (503, "1")
    assert get(fake.index_url)[0] == 200                   # another path: untouched
    assert get(fake.index_url + "pkg/")[0] == 200          # the count is spent
    fake.fail(status=500)
    assert [get(fake.index_url)[0] for _ in range(3)] == [500, 500, 500]
    fake.heal()
    assert get(fake.index_url)[0] == 200
    assert fake.count(r"^/simple/pkg/$", status=503) == 2


def test_refuse_and_accept(fake):
    fake.add("Pkg", "1.0")
    port = fake.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/simple/")
    conn.getresponse().read()                               # a kept-alive connection
    fake.refuse()
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(fake.index_url, timeout=5)
    assert isinstance(e.value.reason, ConnectionRefusedError)
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.request("GET", "/simple/")
        conn.getresponse()
    fake.accept()
    assert fake.port == port and get(fake.index_url)[0] == 200


def test_stall_a_page_until_release(fake):
    fake.add("Pkg", "1.0")
    fake.stall(path=r"^/simple/pkg/$")
    result = []
    thread = threading.Thread(target=lambda: result.append(get(fake.index_url + "pkg/")))
    thread.start()
    wait_for(lambda: fake.held == 1, what="the page to be held")
    assert get(fake.index_url)[0] == 200                    # other paths flow
    assert not result
    fake.release()
    thread.join(10)
    assert result[0][0] == 200 and fake.held == 0


def test_stall_for_some_seconds(fake):
    fake.add("Pkg", "1.0")
    fake.stall(path=r"^/simple/pkg/$", seconds=0.2)
    start = time.monotonic()
    assert get(fake.index_url + "pkg/")[0] == 200               # no release() needed
    assert time.monotonic() - start >= 0.2
    fake.release()


def test_stall_a_file_after_its_first_bytes(fake):
    f = fake.add("Pkg", "1.0", payload=os.urandom(50_000))
    fake.stall(path=r"\.whl$", first=1000)
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("GET", fake.file_url(f.filename))
    response = conn.getresponse()
    assert response.status == 200 and int(response.getheader("Content-Length")) == f.size
    assert response.read(1000) == f.data[:1000]
    wait_for(lambda: fake.held == 1, what="the rest to be held")
    assert fake.requests[-1].sent == 1000 and not fake.requests[-1].complete
    fake.release()
    assert response.read() == f.data[1000:]
    wait_for(lambda: fake.requests[-1].complete, what="the answer to be recorded as complete")


def test_refuse_cuts_a_held_download(fake):
    f = fake.add("Pkg", "1.0", payload=os.urandom(20_000))
    fake.stall(path=r"\.whl$")
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("GET", fake.file_url(f.filename))
    response = conn.getresponse()
    wait_for(lambda: fake.held == 1, what="the download to be held")
    fake.refuse()
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    fake.release()
    fake.accept()


def test_slow_bodies(fake):
    f = fake.add("Pkg", "1.0", payload=os.urandom(3_000))
    fake.slow(20_000)
    start = time.monotonic()
    assert get(fake.file_url(f.filename))[2] == f.data
    assert time.monotonic() - start >= 0.9 * f.size / 20_000
    fake.slow(None)


def test_requests_record_and_count(fake):
    fake.add("Pkg", "1.0")
    get(fake.index_url + "pkg/", {"Accept": V1_JSON, "If-None-Match": '"x"',
                                  "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT",
                                  "Authorization": "Basic " + base64.b64encode(b"a:b").decode()})
    get(fake.index_url + "pkg/", method="HEAD")
    seen = fake.requests[0]
    assert (seen.method, seen.path, seen.status, seen.origin, seen.auth) == (
        "GET", "/simple/pkg/", 200, "index", "a")
    assert seen.headers["if-none-match"] == '"x"' and "if-modified-since" in seen.headers
    assert seen.headers["authorization"] == "Basic <redacted>"
    assert fake.count() == 2 and fake.count(r"^/simple/pkg/$", method="HEAD") == 1
    fake.reset()
    assert fake.count() == 0 and fake.requests == []


def test_basic_auth():
    with FakeUpstream(credentials=("user", "pw")) as upstream:
        f = upstream.add("Pkg", "1.0")
        status, headers, _ = get(upstream.index_url)
        assert (status, headers["WWW-Authenticate"]) == (401, 'Basic realm="fake-upstream"')
        wrong = {"Authorization": "Basic " + base64.b64encode(b"user:nope").decode()}
        right = {"Authorization": "Basic " + base64.b64encode(b"user:pw").decode()}
        assert get(upstream.index_url, wrong)[0] == 401
        assert get(upstream.index_url, right)[0] == 200
        assert get(upstream.file_url(f.filename))[0] == 401   # same origin: files too
        assert get(upstream.file_url(f.filename), right)[2] == f.data
        assert [r.auth for r in upstream.requests] == [None, "user", "user", None, "user"]


def test_yank_remove_and_status(fake):
    keep = fake.add("Pkg", "1.0")
    gone = fake.add("Pkg", "1.1")
    serial = get(fake.index_url + "pkg/")[1]["X-PyPI-Last-Serial"]
    fake.yank("Pkg", "1.0", "CVE-0000")
    fake.remove("pkg", gone.filename)
    status, headers, body = get(fake.index_url + "pkg/", {"Accept": V1_JSON})
    page = json.loads(body)
    assert int(headers["X-PyPI-Last-Serial"]) == int(serial) + 2
    assert [(f["filename"], f["yanked"]) for f in page["files"]] == [(keep.filename, "CVE-0000")]
    assert get(fake.file_url(keep.filename).replace(keep.path, gone.path))[0] == 404
    with pytest.raises(ValueError, match="File already exists"):
        fake.add("Pkg", "1.0")                              # Warehouse refuses a re-upload
    fake.yank("Pkg", "1.0")
    assert b'data-yanked=""' in get(fake.index_url + "pkg/")[2]
    fake.status("Pkg", "quarantined")
    assert b"pkg" not in get(fake.index_url)[2].lower()
    page = json.loads(get(fake.index_url + "pkg/", {"Accept": V1_JSON})[2])
    assert (page["project-status"], page["files"]) == ({"status": "quarantined"}, [])


def test_hostile_pages_contain_what_they_claim(fake):
    good = fake.add("Evil", "1.0")
    fake.hostile("Evil")
    html = get(fake.index_url + "evil/")[2].decode()
    for needle in HOSTILE.values():
        assert needle in html, needle
    links = anchors(html.encode())
    hrefs = [attrs["href"] for attrs, _ in links]
    texts = [text for _, text in links]
    assert any(h.startswith("javascript:") for h in hrefs)
    assert any(h.startswith("https://evil.example/") for h in hrefs)
    assert "../../x.whl" in texts and "someone_else-1.0-py3-none-any.whl" in texts
    assert any(re.search(r"#md5=[0-9a-f]{32}$", h) for h in hrefs)
    assert "<b onmouseover=" in html                       # markup inside an anchor's text
    attrs = [a for a, _ in links]
    assert any('" onmouseover="' in a.get("data-requires-python", "") for a in attrs)
    assert any('"no" >' in a.get("data-yanked", "") for a in attrs)
    assert any(a.get("data-requires-python") == HUGE_REQUIRES_PYTHON for a in attrs)
    assert len(HUGE_REQUIRES_PYTHON) > 100_000
    assert good.filename in texts                           # the real file is still there
    page = json.loads(get(fake.index_url + "evil/", {"Accept": V1_JSON})[2])
    files = page["files"]
    assert good.filename in [f["filename"] for f in files if isinstance(f, dict)]
    assert any(isinstance(f, dict) and isinstance(f["filename"], int) for f in files)
    assert any(not isinstance(f, dict) for f in files)
    assert any(isinstance(f, dict) and f["url"].startswith("javascript:") for f in files)
    assert any(isinstance(f, dict) and f.get("x-evil") for f in files)
    assert "x-evil" in page and "__proto__" in page and "x-evil" in page["meta"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(page, SCHEMA)
    fake.hostile("Evil", False)
    jsonschema.validate(json.loads(get(fake.index_url + "evil/", {"Accept": V1_JSON})[2]), SCHEMA)
