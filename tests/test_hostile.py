"""
A catalogue of hostile inputs against a live daemon (raw sockets, so that
nothing is normalised on the way), plus XSS payloads in metadata and slow
clients.

Every catalogue case checks the same things: a clear 4xx (not a 5xx, not a
hang), the daemon still answers /health, nothing was written below ROOT
(but for ROOT/.ppypi/tmp, the spool of request bodies), and no answer
carries the upload token, a file from outside ROOT or an injected header.

Known bugs are strict xfails whose reason names the code at fault; they turn
into failures once the bug is fixed, so that the mark is removed.
"""

import base64
import functools
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
import uuid
import warnings
import zipfile
from html.parser import HTMLParser

import pytest
import pytest_twisted

from .conftest import Daemon, get, wait_for
from .helpers import InProcess, basic, multipart_body, sdist_bytes, upload_fields, wheel_bytes

TIMEOUT = 2            # --timeout of the live daemon
HANG = 10              # no answer and no close within this: the server hangs
SECRET = b"HOSTILE-SECRET-OUTSIDE-THE-ROOT"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'
XSS_URL = "javascript:alert(1)"
BIG = "1" * 5000       # an integer longer than int() converts (4300 digits)
WHEEL = "acme_tool-1.0-py3-none-any.whl"


# -- the live daemon ---------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """
    A zero-config daemon with --timeout 2 and no extra index, holding one
    project (dropped in before start, so that no later sync rewrites state).
    """
    base = tmp_path_factory.mktemp("hostile")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "root"
    (root / "acme-tool").mkdir(parents=True)
    (root / "acme-tool" / WHEEL).write_bytes(wheel_bytes("acme_tool", "1.0"))
    d = Daemon(root, "--extra-index-url", "", "--timeout", str(TIMEOUT))
    d.start()
    d.token = (root / ".ppypi" / "upload-token").read_text().strip()
    assert get(d.url + "simple/acme-tool/")[0] == 200
    d.fds_at_start = _fds(d)
    yield d
    d.stop()


def _fds(daemon):
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def snapshot(root):
    """Every file below ROOT (but the spool of request bodies) with its sha256."""
    root = str(root)
    spool = os.path.join(root, ".ppypi", "tmp")
    found = {}
    for folder, dirs, files in os.walk(root):
        if folder == spool or folder.startswith(spool + os.sep):
            continue
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return found


class Answer:
    """What the server did with one raw request: status None means it closed."""

    def __init__(self, raw, elapsed):
        self.raw = raw
        self.elapsed = elapsed
        self.status = self.reason = None
        self.headers = []
        self.body = b""
        head, sep, rest = raw.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ?([^\r\n]*)", head)
        if m:
            self.status = int(m.group(1))
            self.reason = m.group(2)
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                self.headers.append((name.strip().lower(), value.strip()))
            self.body = rest

    def header(self, name):
        return [v for n, v in self.headers if n == name.lower().encode()]

    def __repr__(self):
        return f"<{self.status} {self.reason!r} after {self.elapsed:.1f}s: {self.raw[:300]!r}>"


def exchange(port, data, timeout=HANG):
    """Send raw bytes, read until the server closes (every request says close)."""
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    chunks = []
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early; its answer may still be readable
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(f"no answer and no close within {timeout}s: "
                                     f"{b''.join(chunks)[:200]!r}") from None
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        s.close()
    return Answer(b"".join(chunks), time.monotonic() - start)


def http(method, path, headers=(), body=b"", host=b"ppypi.test", length=True):
    lines = [method + b" " + path + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host)
    lines.append(b"Connection: close")
    lines += list(headers)
    if body and length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def auth(live):
    return b"Authorization: " + basic("__token__", live.token).encode()


def upload_request(live, data, filename, name="acme-tool", version="1.0", headers=None,
                   boundary=None, **fields):
    ctype, body = multipart_body(upload_fields(name, version, data, **fields),
                                 [("content", filename, data)], boundary)
    if headers is None:
        headers = [auth(live)]
    return http(b"POST", b"/", headers + [b"Content-Type: " + ctype.encode()], body)


def raw_multipart(live, body, ctype=b"multipart/form-data; boundary=zz", extra=(), length=True):
    return http(b"POST", b"/", [auth(live), b"Content-Type: " + ctype, *extra], body,
                length=length)


def raw_chunked(live, body):
    """A multipart upload sent with Transfer-Encoding: chunked (no Content-Length)."""
    return raw_multipart(live, body, extra=[b"Transfer-Encoding: chunked"], length=False)


def chunked(body, size=1000):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


# -- hostile archives (built once, on demand) ---------------------------------------


def _zip(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, data in members:
                z.writestr(name, data)
    return buf.getvalue()


def _metadata(name, version, extra=""):
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}".encode()


@functools.lru_cache(None)
def zip_bomb(compression, version):
    """A wheel whose METADATA inflates to 110 MB (bzip2: from a few hundred bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(f"acme_tool-{version}.dist-info/METADATA")
        info.compress_type = compression
        with z.open(info, "w") as f:
            f.write(_metadata("acme-tool", version, "Summary: "))
            block = b"A" * (1 << 20)
            for _ in range(110):
                f.write(block)
    return buf.getvalue()


@functools.lru_cache(None)
def many_members():
    return _zip([(f"acme_tool/m{i}.py", b"") for i in range(10_000)], zipfile.ZIP_STORED)


@functools.lru_cache(None)
def encrypted_member():
    """A wheel whose METADATA has the 'encrypted' flag set (in both headers)."""
    data = bytearray(_zip([("acme_tool-2.4.dist-info/METADATA", _metadata("acme-tool", "2.4"))]))
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 6] |= 1
    data[central + 8] |= 1
    return bytes(data)


@functools.lru_cache(None)
def bad_crc():
    meta = _metadata("acme-tool", "2.5")
    data = _zip([("acme_tool-2.5.dist-info/METADATA", meta)], zipfile.ZIP_STORED)
    return data.replace(meta, meta.replace(b"Version", b"Versiom"))


class _Repeat(io.RawIOBase):
    def __init__(self, size):
        self.left = size

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = b"A" * n
        self.left -= n
        return n


def _tar(members, compresslevel=9):
    """members: [(TarInfo, file object or None)]"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=compresslevel) as t:
        for info, f in members:
            t.addfile(info, f)
    return buf.getvalue()


def _link(name, kind, target):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@functools.lru_cache(None)
def tar_bomb():
    """An sdist whose PKG-INFO inflates to 110 MB."""
    info = tarfile.TarInfo("acme_tool-3.2/PKG-INFO")
    info.size = 110 << 20
    return _tar([(info, _Repeat(info.size))], compresslevel=1)


def _tar_escape():
    """An sdist whose only PKG-INFO lies outside its top folder."""
    meta = _metadata("acme-tool", "3.4")
    info = tarfile.TarInfo("acme_tool-3.4/../../PKG-INFO")
    info.size = len(meta)
    return _tar([(info, io.BytesIO(meta))])


# -- the catalogue ------------------------------------------------------------------


class Case:
    """
    One hostile request. C{build(live)} returns its raw bytes. C{closed_ok}:
    the server may also close without an answer (it cannot answer what it has
    not received, or Twisted drops the line), within --timeout plus a margin.
    """

    def __init__(self, build, closed_ok=False, xfail=None):
        self.build = build
        self.closed_ok = closed_ok
        self.xfail = xfail


def GET(path, *headers, host=b"ppypi.test"):
    return lambda live: http(b"GET", path, headers, host=host)


def POST_AUTH(path, body=b"", *headers, method=b"POST"):
    return lambda live: http(method, path, [auth(live), *headers], body)


URL_CASES = {
    # path traversal, in every spelling, under every prefix
    "url: ../ raw in /simple/": Case(GET(b"/simple/../.ppypi/upload-token")),
    "url: ../ raw under /R/": Case(GET(b"/default/../../secret.txt")),
    "url: %2e%2e%2f in /packages/": Case(GET(b"/packages/acme-tool/%2e%2e%2f%2e%2e%2fsecret.txt")),
    "url: double-encoded %252e in /packages/":
        Case(GET(b"/packages/acme-tool/%252e%252e%252f.ppypi%252fupload-token")),
    "url: double-encoded %252e in /simple/": Case(GET(b"/simple/%252e%252e%252f/")),
    "url: ..%5c in /pypi/ version": Case(GET(b"/pypi/acme-tool/..%5c..%5csecret.txt/json")),
    "url: %2e%2e as /pypi/ name": Case(GET(b"/pypi/%2e%2e/json")),
    "url: encoded traversal under /R/packages/":
        Case(GET(b"/default/packages/acme-tool/..%2f..%2f.ppypi%2fupload-token")),
    "url: absolute path via //": Case(GET(b"/pypi//etc/passwd/json")),
    "url: absolute path via // under /R/": Case(GET(b"/default//etc/passwd")),
    "url: absolute-form request target": Case(GET(b"http://evil.example/../../etc/passwd")),
    "url: NUL in /pypi/ name": Case(GET(b"/pypi/acme-tool%00/json")),
    "url: NUL before .metadata":
        Case(GET(b"/packages/acme-tool/" + WHEEL.encode() + b"%00.metadata")),
    "url: 10k-char project name": Case(GET(b"/default/simple/" + b"a" * 10_000 + b"/")),
    "url: 10k-char filename .metadata":
        Case(GET(b"/packages/acme-tool/" + b"a" * 10_000 + b".whl.metadata")),
    "url: non-UTF-8 %ff in /pypi/": Case(GET(b"/pypi/%ff%fe/json")),
    "url: non-UTF-8 %ff as repository": Case(GET(b"/%ff%fe/simple/")),
    "url: fullwidth dots and slashes": Case(GET(
        b"/packages/acme-tool/%EF%BC%8E%EF%BC%8E%EF%BC%8F.ppypi%EF%BC%8Fupload-token")),
    "url: Unicode hyphen lookalike": Case(GET(b"/simple/acme%E2%80%90tool/")),
    "url: two-dot leader lookalike": Case(GET(b"/pypi/%E2%80%A5/json")),
    "url: trailing dot on project": Case(GET(b"/simple/acme-tool./")),
    "url: trailing dot on filename": Case(GET(b"/packages/acme-tool/" + WHEEL.encode() + b".")),
    "url: trailing dot on version": Case(GET(b"/pypi/acme-tool/1.0./json")),
    "url: /yank/ traversal (write token)": Case(POST_AUTH(b"/yank/%2e%2e/%2e%2e")),
    "url: /yank/ encoded slash version": Case(POST_AUTH(b"/yank/acme-tool/1.0%2f..%2f..")),
    "url: /R/yank/ NUL version":
        Case(POST_AUTH(b"/default/yank/acme-tool/1.0%00", method=b"DELETE")),
    "url: wrong method on /simple/": Case(lambda live: http(b"PROPFIND", b"/simple/")),
    "url: /pypi/ 5000-digit version": Case(GET(b"/pypi/acme-tool/" + BIG.encode() + b"/json")),
    "url: /project/ 5000-digit version": Case(GET(b"/project/acme-tool/" + BIG.encode() + b"/")),
    "url: /yank/ 5000-digit version": Case(POST_AUTH(b"/yank/acme-tool/" + BIG.encode())),
}

HEADER_CASES = {
    "headers: 501 headers (Twisted's limit is 500)":
        Case(GET(b"/simple/", *[b"X-H%d: v" % i for i in range(501)])),
    "headers: one 16,370-byte header value": Case(GET(b"/simple/", b"X-Big: " + b"a" * 16_370)),
    # Twisted's LineReceiver drops a line longer than 16 KiB without an answer.
    "headers: one 64 KiB header line": Case(GET(b"/simple/", b"X-Big: " + b"a" * 65_536),
                                            closed_ok=True),
    "headers: CR injection in a value": Case(GET(b"/simple/", b"X-A: a\rSet-Cookie: pwned=1")),
    "headers: LF injection in a value": Case(GET(b"/simple/", b"X-A: a\nSet-Cookie: pwned=1")),
    "headers: NUL in a value": Case(GET(b"/simple/", b"X-A: a\x00b")),
    "headers: non-ASCII header name": Case(GET(b"/simple/", b"X-\xff\xfe: a")),
    "headers: Host with CR and Set-Cookie":
        Case(GET(b"/pypi/Acme_Tool/json", host=b"ppypi.test\rSet-Cookie: pwned=1")),
    "headers: Host with a URL": Case(GET(b"/pypi/Acme_Tool/json", host=b"evil.example/phish?")),
    "headers: Content-Length and Transfer-Encoding (smuggling)":
        Case(lambda live: http(b"POST", b"/", [auth(live), b"Content-Length: 5",
                                               b"Transfer-Encoding: chunked"], b"0\r\n\r\n",
                               length=False)),
    "headers: two Content-Length values":
        Case(lambda live: http(b"POST", b"/", [auth(live), b"Content-Length: 1",
                                               b"Content-Length: 50"], b"x", length=False)),
    "headers: negative Content-Length":
        Case(lambda live: http(b"POST", b"/", [b"Content-Length: -1"], length=False)),
    "headers: unknown Transfer-Encoding":
        Case(lambda live: http(b"POST", b"/", [auth(live), b"Transfer-Encoding: gzip"],
                               length=False)),
    "headers: non-UTF-8 Content-Type on upload":
        Case(lambda live: raw_multipart(live, b"--zz--\r\n",
                                        b"multipart/form-data; boundary=\xff\xfe")),
}

QUERY_CASES = {
    "query: ?format= garbage": Case(GET(b"/simple/?format=text/plain%3Cscript%3E")),
    "query: ?format= 12 KB": Case(GET(b"/simple/acme-tool/?format=" + b"x" * 12_000)),
    "query: ?format= repeated 1000 times": Case(GET(b"/simple/?" + b"&".join(
        b"format=x%d" % i for i in range(1000)))),
    "query: ?format= non-UTF-8 and NUL": Case(GET(b"/simple/?format=%ff%00text/html")),
    "query: ?format= a supported type plus NUL":
        Case(GET(b"/simple/?format=application/vnd.pypi.simple.v1%2Bjson%00")),
}


def _auth_upload(value_or_values):
    """A valid upload of a fresh project, with hostile Authorization header(s)."""
    values = value_or_values if isinstance(value_or_values, list) else [value_or_values]

    def build(live):
        data = wheel_bytes("authprobe", "1.0")
        return upload_request(live, data, "authprobe-1.0-py3-none-any.whl", name="authprobe",
                              headers=[b"Authorization: " + v(live) for v in values])
    return build


def _b64(raw):
    return b"Basic " + base64.b64encode(raw)


AUTH_CASES = {
    "auth: not base64": Case(_auth_upload(lambda live: b"Basic !!not*base64!!")),
    "auth: base64 of non-UTF-8": Case(_auth_upload(lambda live: _b64(b"__token__:\xff\xfe\xfd"))),
    "auth: no colon": Case(_auth_upload(lambda live: _b64(b"__token__" + live.token.encode()))),
    "auth: empty user": Case(_auth_upload(lambda live: _b64(b":" + live.token.encode()))),
    "auth: 10 KB credentials": Case(_auth_upload(
        lambda live: _b64(b"__token__:" + live.token.encode() + b"x" * 10_000))),
    "auth: Bearer scheme with the token": Case(_auth_upload(
        lambda live: b"Bearer " + live.token.encode())),
    "auth: Digest scheme": Case(_auth_upload(
        lambda live: b'Digest username="__token__", realm="ppypi", nonce="x", uri="/", '
                     b'response="' + live.token.encode() + b'"')),
    "auth: Basic without a value": Case(_auth_upload(lambda live: b"Basic")),
    "auth: token with a trailing space": Case(_auth_upload(
        lambda live: _b64(b"__token__:" + live.token.encode() + b" "))),
    "auth: many Authorization headers, the last one valid": Case(_auth_upload(
        [lambda live, i=i: _b64(b"mallory:guess%d" % i) for i in range(50)]
        + [lambda live: basic("__token__", live.token).encode()])),
}


def _overstated(request, extra=5000):
    """The request with a Content-Length C{extra} bytes larger than its body."""
    head, _, body = request.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Length: %d" % len(body),
                        b"Content-Length: %d" % (len(body) + extra))
    return head + b"\r\n\r\n" + body


def _form(live, fields):
    ctype, body = multipart_body(fields)
    return raw_multipart(live, body, ctype.encode())


def _parts(n):
    return b"".join(b'--zz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
                    for i in range(n)) + b"--zz--\r\n"


MULTIPART_CASES = {
    "multipart: not multipart/form-data":
        Case(lambda live: raw_multipart(live, _parts(1), b"multipart/mixed; boundary=zz")),
    "multipart: empty boundary":
        Case(lambda live: raw_multipart(live, _parts(1), b"multipart/form-data; boundary=")),
    "multipart: boundary with invalid characters":
        Case(lambda live: raw_multipart(live, _parts(1),
                                        b'multipart/form-data; boundary="<zz>\x01"')),
    "multipart: 5000-char boundary":
        Case(lambda live: raw_multipart(live, b"--" + b"b" * 5000 + b"--\r\n",
                                        b"multipart/form-data; boundary=" + b"b" * 5000)),
    "multipart: boundary not in the body":
        Case(lambda live: raw_multipart(live, b"x" * 20_000 + _parts(1).replace(b"zz", b"yy"))),
    "multipart: part headers without CRLF CRLF":
        Case(lambda live: raw_multipart(
            live, b'--zz\r\nContent-Disposition: form-data; name="a"\r\nX-A: b\r\n--zz--\r\n')),
    "multipart: 100 KB part header block":
        Case(lambda live: raw_multipart(
            live, b'--zz\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: '
                  + b"p" * 100_000 + b"\r\n\r\nv\r\n--zz--\r\n")),
    "multipart: 2000 parts": Case(lambda live: raw_multipart(live, _parts(2000))),
    "multipart: field name with CRLF (a second Content-Disposition)":
        Case(lambda live: raw_multipart(
            live, b'--zz\r\nContent-Disposition: form-data; name="a\r\nContent-Disposition: '
                  b'form-data; name=\\"content\\"; filename=\\"' + WHEEL.encode() + b'\\""\r\n\r\n'
                  b"PK\r\n--zz--\r\n")),
    "multipart: field name with quotes and RFC 2231 encoding":
        Case(lambda live: raw_multipart(
            live, b"--zz\r\nContent-Disposition: form-data; name*=UTF-8''%22content%22\r\n\r\n"
                  b"v\r\n--zz--\r\n")),
    "multipart: filename with NUL": Case(lambda live: upload_request(
        live, wheel_bytes("acme_tool", "1.1"), "acme_tool-1.1-py3-none-any.whl\x00.txt",
        version="1.1")),
    "multipart: filename* with encoded traversal": Case(lambda live: raw_multipart(
        live, b"--zz\r\nContent-Disposition: form-data; name=\"content\"; "
              b"filename*=UTF-8''..%2F..%2F" + WHEEL.encode() + b"\r\n\r\nPK\r\n--zz--\r\n")),
    "multipart: filename with percent-encoded traversal": Case(lambda live: upload_request(
        live, wheel_bytes("acme_tool", "1.4"), "%2E%2E%2F%2E%2E%2Facme_tool-1.4-py3-none-any.whl",
        version="1.4")),
    "multipart: filename with fullwidth-solidus traversal": Case(lambda live: upload_request(
        live, wheel_bytes("acme_tool", "1.5"),
        "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0facme_tool-1.5-py3-none-any.whl", version="1.5")),
    "multipart: filename of 300 chars": Case(lambda live: upload_request(
        live, wheel_bytes("acme_tool", "1.2"),
        "acme_tool-1.2-py3-none-" + "x" * 272 + ".whl", version="1.2")),
    "multipart: declared Content-Length larger than the body": Case(
        lambda live: _overstated(upload_request(live, wheel_bytes("acme_tool", "1.3"),
                                                "acme_tool-1.3-py3-none-any.whl", version="1.3")),
        closed_ok=True),
    "multipart: chunked body with 2000 parts":
        Case(lambda live: raw_chunked(live, chunked(_parts(2000)))),
    "multipart: chunked body with a malformed chunk size":
        Case(lambda live: raw_chunked(live, b"zz\r\nabc\r\n0\r\n\r\n")),
    "multipart: chunked body announcing a 2**76-byte chunk":
        Case(lambda live: raw_chunked(live, b"fffffffffffffffffff\r\n--zz\r\n"),
             closed_ok=True),
    "multipart: chunked body, truncated part headers":
        Case(lambda live: raw_chunked(live, chunked(
            b'--zz\r\nContent-Disposition: form-data; name="content"; filename="' + WHEEL.encode()
            + b'"\r\n--zz--\r\n', size=7))),
    "multipart: version field of 5000 digits": Case(
        lambda live: upload_request(live, wheel_bytes("acme_tool", "1.0"), WHEEL, version=BIG)),
    "multipart: remove_pkg with a 5000-digit version": Case(
        lambda live: _form(live, [(":action", "remove_pkg"), ("name", "acme-tool"),
                                  ("version", BIG)])),
}


def _archive(data, filename, version, filetype="bdist_wheel"):
    return lambda live: upload_request(live, data() if callable(data) else data, filename,
                                       version=version, filetype=filetype)


ARCHIVE_CASES = {
    "archive: bzip2 zip bomb (METADATA of 110 MB)":
        Case(_archive(lambda: zip_bomb(zipfile.ZIP_BZIP2, "2.0"),
                      "acme_tool-2.0-py3-none-any.whl", "2.0")),
    "archive: deflate zip bomb (METADATA of 110 MB)":
        Case(_archive(lambda: zip_bomb(zipfile.ZIP_DEFLATED, "2.1"),
                      "acme_tool-2.1-py3-none-any.whl", "2.1")),
    "archive: METADATA named ../../METADATA": Case(_archive(
        lambda: _zip([("../../METADATA", _metadata("acme-tool", "2.2"))]),
        "acme_tool-2.2-py3-none-any.whl", "2.2")),
    "archive: two .dist-info/METADATA": Case(_archive(
        lambda: _zip([("acme_tool-2.3.dist-info/METADATA", _metadata("acme-tool", "2.3")),
                      ("other-2.3.dist-info/METADATA", _metadata("other", "2.3"))]),
        "acme_tool-2.3-py3-none-any.whl", "2.3")),
    "archive: 10k members and no METADATA":
        Case(_archive(many_members, "acme_tool-2.6-py3-none-any.whl", "2.6")),
    "archive: encrypted METADATA":
        Case(_archive(encrypted_member, "acme_tool-2.4-py3-none-any.whl", "2.4")),
    "archive: METADATA with a bad CRC":
        Case(_archive(bad_crc, "acme_tool-2.5-py3-none-any.whl", "2.5")),
    "archive: sdist PKG-INFO symlink to /etc/passwd": Case(_archive(
        lambda: _tar([_link("acme_tool-3.0/PKG-INFO", tarfile.SYMTYPE, "/etc/passwd")]),
        "acme_tool-3.0.tar.gz", "3.0", "sdist")),
    "archive: sdist PKG-INFO hardlink outside": Case(_archive(
        lambda: _tar([_link("acme_tool-3.1/PKG-INFO", tarfile.LNKTYPE,
                            "../../../../etc/passwd")]),
        "acme_tool-3.1.tar.gz", "3.1", "sdist")),
    "archive: tar bomb (PKG-INFO of 110 MB)":
        Case(_archive(tar_bomb, "acme_tool-3.2.tar.gz", "3.2", "sdist")),
    "archive: truncated gzip": Case(_archive(
        lambda: (lambda b: b[:len(b) // 2])(sdist_bytes("acme_tool", "3.3")),
        "acme_tool-3.3.tar.gz", "3.3", "sdist")),
    "archive: sdist PKG-INFO only via ../": Case(_archive(
        _tar_escape, "acme_tool-3.4.tar.gz", "3.4", "sdist")),
    "archive: METADATA Version of 5000 digits": Case(_archive(
        lambda: _zip([("acme_tool-2.7.dist-info/METADATA", _metadata("acme-tool", BIG))]),
        "acme_tool-2.7-py3-none-any.whl", "2.7")),
}

CATALOGUE = {**URL_CASES, **HEADER_CASES, **QUERY_CASES, **AUTH_CASES, **MULTIPART_CASES,
             **ARCHIVE_CASES}


def _params(cases):
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=case.xfail))
            if case.xfail else name for name, case in cases.items()]


def check_common(live, answer, before):
    """What every hostile request must leave as it was."""
    for needle in (live.token.encode(), SECRET, b"root:x:0:0"):
        assert needle not in answer.raw, answer
    assert not answer.header("set-cookie"), answer
    if any(b"html" in v for v in answer.header("content-type")):
        assert_no_live_payload(answer.body, answer)
    assert get(live.url + "health")[0] == 200
    assert snapshot(live.root) == before


@pytest.mark.parametrize("name", _params(CATALOGUE))
def test_hostile_request_is_4xx(live, name):
    case = CATALOGUE[name]
    data = case.build(live)
    before = snapshot(live.root)
    answer = exchange(live.port, data)
    if answer.status is None:
        assert case.closed_ok and answer.raw == b"", f"closed without an answer: {answer}"
        assert answer.elapsed < TIMEOUT + 5, answer
    else:
        assert 400 <= answer.status < 500, answer
    check_common(live, answer, before)


# Accept: the README says an Accept naming nothing supported gets text/html (a
# 200): these must get exactly that, quickly, and never a 5xx.
ACCEPT_CASES = {
    "accept: garbage": b"Accept: ;;;,,,=/=;q=,*/;/*",
    "accept: 15 KB": b"Accept: " + b"application/x-" + b"y" * 15_000,
    "accept: 3000 entries": b"Accept: " + b",".join([b"a/b"] * 3000),
    "accept: JSON with q=nan": b"Accept: application/vnd.pypi.simple.v1+json;q=nan",
    "accept: JSON with q=1e999": b"Accept: application/vnd.pypi.simple.v1+json;q=1e999",
    "accept: JSON with q=-1 and q=inf":
        b"Accept: application/vnd.pypi.simple.v1+json;q=-1, "
        b"application/vnd.pypi.simple.v1+html;q=inf",
}


@pytest.mark.parametrize("name", list(ACCEPT_CASES))
@pytest.mark.parametrize("path", [b"/simple/", b"/simple/acme-tool/"])
def test_hostile_accept_falls_back_to_html(live, name, path):
    before = snapshot(live.root)
    answer = exchange(live.port, http(b"GET", path, [ACCEPT_CASES[name]]))
    assert answer.status == 200, answer
    assert answer.header("content-type") == [b"text/html; charset=utf-8"], answer
    assert b'<meta name="pypi:repository-version"' in answer.body
    assert answer.elapsed < 2, answer
    check_common(live, answer, before)


# -- XSS payloads in every metadata field shown --------------------------------------

_FIELDS = (
    f"Summary: {XSS_SCRIPT}\n"
    f"Requires-Python: {XSS_ATTR}\n"
    f"Home-page: {XSS_URL}\n"
    f"Download-URL: {XSS_URL}\n"
    f"Project-URL: Homepage, {XSS_URL}\n"
    f"Project-URL: {XSS_ATTR}, https://example.com/\n"
    f"Project-URL: Docs, https://example.com/{XSS_ATTR}\n"
    f"Project-URL: Data, data:text/html,{XSS_SCRIPT}\n"
    f"Classifier: {XSS_SCRIPT}\n"
    f"Author: {XSS_ATTR}\n"
    f"Author-email: {XSS_SCRIPT} <a@example.com>\n"
    f"Maintainer: {XSS_SCRIPT}\n"
    f"License: {XSS_SCRIPT}\n"
    f"Keywords: {XSS_SCRIPT}\n"
    f"Requires-Dist: x ; python_version > '{XSS_SCRIPT}'\n")
MARKDOWN = (f"{XSS_SCRIPT}\n\n{XSS_ATTR}\n\n[x]({XSS_URL})\n\n"
            f'<a href="{XSS_URL}">y</a> <svg onload=alert(1)>\n\n'
            f'<iframe src="{XSS_URL}"></iframe>\n')
RST = (f"`x <{XSS_URL}>`_\n\n.. raw:: html\n\n   {XSS_SCRIPT}\n\n"
       f".. image:: {XSS_URL}\n\n{XSS_ATTR}\n")
FILENAME_XSS = '"><svg onload=alert(1)>'
HTML_TYPES = ("text/html; charset=utf-8", "application/vnd.pypi.simple.v1+html; charset=utf-8")
JSON_TYPES = ("application/json", "application/vnd.pypi.simple.v1+json")
PEP691_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def evil_wheel(dist, version, name, description=MARKDOWN, ctype="text/markdown"):
    meta = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{_FIELDS}"
            f"Description-Content-Type: {ctype}\n\n{description}")
    return _zip([(f"{dist}-{version}.dist-info/METADATA", meta.encode()),
                 (f"{dist}-{version}.dist-info/WHEEL", b"Wheel-Version: 1.0\n")])


class _Markup(HTMLParser):
    """The tags, attributes and script text of an HTML answer, as a browser sees them."""

    def __init__(self, body):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.scripts = []
        self._script = None
        self.feed(body.decode("utf-8", "replace"))
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, [(k, v or "") for k, v in attrs]))
        if tag == "script":
            self._script = []

    def handle_data(self, data):
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None


def assert_no_live_payload(body, where):
    """No payload survives as markup: only as escaped text, or not at all."""
    assert XSS_SCRIPT.encode() not in body.lower(), where
    markup = _Markup(body)
    for tag, attrs in markup.tags:
        assert tag not in ("iframe", "object", "embed", "svg"), (where, tag, attrs)
        for name, value in attrs:
            assert not name.startswith("on"), (where, tag, name, value)
            if name in ("href", "src", "action", "formaction", "xlink:href", "srcset"):
                scheme = re.sub(r"[\s\x00-\x1f]", "", value).lower()
                assert not scheme.startswith(("javascript:", "data:", "vbscript:")), \
                    (where, tag, name, value)
    for script in markup.scripts:
        assert "alert" not in script, (where, script)


@pytest.fixture
def xss_server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    # Dropped in by hand: the name in METADATA is the payload (an upload would refuse it).
    (root / "dropped_xss-1.0-py3-none-any.whl").write_bytes(
        evil_wheel("dropped_xss", "1.0", XSS_SCRIPT, RST, "text/x-rst"))
    return InProcess(root, extra_index_url=None)


XSS_IDS = ["xss: uploaded metadata fields (markdown description)",
           "xss: uploaded metadata fields (rst description)", "xss: hostile filename",
           "xss: yank reason", "xss: Name of a dropped-in wheel", "xss: search query",
           "xss: error pages echoing the URL", "xss: Host header on the home page"]

XSS_PAGES = [
    ("/", {}), ("/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", {}), ("/?q=%22%3E%3Cimg", {}),
    ("/simple/", {}), ("/simple/", PEP691_JSON),
    ("/simple/?format=application/vnd.pypi.simple.v1%2Bhtml", {}),
    ("/simple/evil-xss/", {}), ("/simple/evil-xss/", PEP691_JSON),
    ("/simple/evil-xss/", {"Accept": "application/vnd.pypi.simple.v1+html"}),
    ("/simple/dropped-xss/", {}), ("/simple/dropped-xss/", PEP691_JSON),
    ("/project/evil-xss/", {}), ("/project/evil-xss/1.0/", {}), ("/project/evil-xss/2.0/", {}),
    ("/project/dropped-xss/", {}),
    ("/pypi/evil-xss/json", {}), ("/pypi/evil-xss/1.0/json", {}), ("/pypi/dropped-xss/json", {}),
    ("/packages/evil-xss/evil_xss-1.0-py3-none-any.whl.metadata", {}),
    # error answers that echo what the URL said
    ("/simple/%3Cscript%3Ealert(1)%3C%2Fscript%3E/", {}),
    ("/pypi/evil-xss/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E/json", {}),
    ("/project/evil-xss/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E/", {}),
    ("/packages/evil-xss/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E.whl", {}),
    ("/pypi/%3Cscript%3E/json", {}),
]


@pytest_twisted.ensureDeferred
async def test_xss_payloads_are_escaped_or_json(xss_server):
    server = xss_server
    await server.sync()
    creds = ("__token__", server.token())
    data = evil_wheel("evil_xss", "1.0", "evil-xss")
    r, body = await server.upload(upload_fields("evil-xss", "1.0", data),
                                  [("content", "evil_xss-1.0-py3-none-any.whl", data)], auth=creds)
    assert r.code == 200, body
    filename = f"evil_xss-2.0-py3-none-{FILENAME_XSS}.whl"
    data2 = evil_wheel("evil_xss", "2.0", "evil-xss", RST, "text/x-rst")
    r, body = await server.upload(upload_fields("evil-xss", "2.0", data2),
                                  [("content", filename, data2)], auth=creds)
    assert r.code == 200, body
    r, body = await server.get("/yank/evil-xss/1.0", {
        "Authorization": basic(*creds), "Content-Type": "application/x-www-form-urlencoded"},
        method="POST", data=b"reason=" + XSS_ATTR.encode())
    assert r.code == 200, body

    seen = {}
    for path, headers in XSS_PAGES:
        r, body = await server.get(path, headers)
        assert r.code < 500, (path, r.code, body)
        ctype = r.headers.getRawHeaders("Content-Type", [""])[0]
        seen[(path, tuple(headers.values()))] = (r.code, ctype, body)
        if "html" in ctype:
            assert ctype in HTML_TYPES, (path, ctype)
            assert_no_live_payload(body, path)
        elif r.code == 200 and ("json" in path or headers is PEP691_JSON):
            assert ctype in JSON_TYPES, (path, ctype)
            json.loads(body)
        else:
            assert ctype.startswith("text/plain"), (path, ctype)

    # The payloads did reach the pages (escaped), so the checks above mean something.
    _, _, page = seen[("/simple/evil-xss/", ())]
    assert b'data-requires-python="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page
    assert b'data-yanked="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page
    assert b"&quot;&gt;&lt;svg onload=alert(1)&gt;.whl</a>" in page
    assert b"%22%3E%3Csvg%20onload%3Dalert%281%29%3E.whl#sha256=" in page
    for path in ("/project/evil-xss/1.0/", "/project/evil-xss/2.0/", "/project/dropped-xss/"):
        code, _, page = seen[(path, ())]
        assert code == 200, path
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page, path   # summary, classifier...
    _, _, page = seen[("/project/evil-xss/2.0/", ())]
    assert b"&gt;&lt;svg onload=alert(1)&gt;.whl</a>" in page
    _, ctype, doc = seen[("/simple/evil-xss/", tuple(PEP691_JSON.values()))]
    assert ctype == "application/vnd.pypi.simple.v1+json"
    assert filename in [f["filename"] for f in json.loads(doc)["files"]]
    _, ctype, doc = seen[("/pypi/evil-xss/1.0/json", ())]
    info = json.loads(doc)["info"]
    assert ctype == "application/json"
    assert info["summary"] == XSS_SCRIPT and XSS_URL in info["project_urls"].values()
    assert info["classifiers"] == [XSS_SCRIPT]
    _, ctype, doc = seen[("/pypi/dropped-xss/json", ())]
    assert json.loads(doc)["info"]["name"] == XSS_SCRIPT
    code, ctype, _ = seen[("/packages/evil-xss/evil_xss-1.0-py3-none-any.whl.metadata", ())]
    assert code == 200 and ctype == "text/plain; charset=utf-8"


def test_xss_in_host_header_is_escaped(live):
    before = snapshot(live.root)
    answer = exchange(live.port, http(b"GET", b"/", host=XSS_SCRIPT.encode()))
    assert answer.status in (200, 400), answer
    assert_no_live_payload(answer.body, "/")
    if answer.status == 200:
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in answer.body
    assert get(live.url + "health")[0] == 200
    assert snapshot(live.root) == before


# -- the extra-index redirect ---------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_held_name_with_a_newline_is_not_redirected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / WHEEL).write_bytes(wheel_bytes("acme_tool", "1.0"))
    server = InProcess(root, extra_index_url="https://pypi.example/simple/")
    await server.sync()
    for path in ("/simple/acme-tool%0A/", "/simple/acme-tool%0D%0A/", "/simple/acme-tool%09/"):
        r, _ = await server.get(path)
        assert 400 <= r.code < 500, (path, r.code, r.headers.getRawHeaders("Location"))


# -- slow clients ---------------------------------------------------------------------

SLOW_IDS = ["slow: silent connection", "slow: trickling body", "slow: others served meanwhile",
            "slow: trickling headers"]


def test_silent_connection_is_closed(live):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=HANG) as s:
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
    elapsed = time.monotonic() - start
    assert data == b"" and elapsed < 5, (data, elapsed)


def _trickle(port, head, piece, every, limit):
    """
    Send C{head}, then C{piece} every C{every} seconds until the server
    answers or closes: (what it sent back, seconds, closed).
    """
    start = time.monotonic()
    got = b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head)
        s.settimeout(every)
        while time.monotonic() - start < limit:
            try:
                chunk = s.recv(4096)
                if not chunk:
                    return got, time.monotonic() - start, True
                got += chunk
                continue
            except socket.timeout:
                pass
            except ConnectionResetError:
                return got, time.monotonic() - start, True
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass
        return got, time.monotonic() - start, False


def test_trickling_body_gets_408_and_others_are_served(live):
    before = snapshot(live.root)
    data = wheel_bytes("acme_tool", "4.0")
    ctype, body = multipart_body(upload_fields("acme-tool", "4.0", data),
                                 [("content", "acme_tool-4.0-py3-none-any.whl", data)])
    head = (b"POST / HTTP/1.1\r\nHost: ppypi.test\r\n" + auth(live) + b"\r\n"
            b"Content-Type: " + ctype.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    result = {}

    def slow():
        # 3 bytes every 0.25 s: ~12 bytes a second, far below 1 KiB/s.
        start = time.monotonic()
        got = b""
        with socket.create_connection(("127.0.0.1", live.port)) as s:
            s.sendall(head)
            s.settimeout(0.25)
            for i in range(0, len(body), 3):
                if time.monotonic() - start > 12:
                    break
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                    if b"\r\n\r\n" in got:
                        break
                except socket.timeout:
                    pass  # the recv timeout paces the client
                except ConnectionResetError:
                    break
                try:
                    s.sendall(body[i:i + 3])
                except (BrokenPipeError, ConnectionResetError):
                    break
        result["answer"] = (got, time.monotonic() - start)

    t = threading.Thread(target=slow)
    t.start()
    try:
        # Meanwhile, other clients are served at once.
        served = 0
        while t.is_alive() and served < 50:
            start = time.monotonic()
            assert get(live.url + "simple/acme-tool/")[0] == 200
            assert get(live.url + "health")[0] == 200
            assert time.monotonic() - start < 1
            served += 1
            t.join(0.1)  # paces the other clients; returns at once when the slow one is done
    finally:
        t.join(20)
    got, elapsed = result["answer"]
    assert served >= 5
    assert got.startswith(b"HTTP/1.1 408") or got == b"", got
    assert elapsed < 10, elapsed
    assert get(live.url + "health")[0] == 200
    assert snapshot(live.root) == before
    assert os.listdir(os.path.join(live.root, ".ppypi", "incoming")) == []


def test_trickling_headers_are_cut_off(live):
    """Slowloris: a head sent a byte at a time, each inside --timeout, is
    cut off once --timeout has passed since its first byte."""
    head = b"GET /simple/ HTTP/1.1\r\nHost: ppypi.test\r\n"
    got, elapsed, closed = _trickle(live.port, head, b"X", 0.5, TIMEOUT + 6)
    assert got.startswith(b"HTTP/1.1 408 ") and closed, (got, elapsed)
    assert elapsed < TIMEOUT + 2, elapsed
    assert get(live.url + "health")[0] == 200


# -- metrics ---------------------------------------------------------------------------

def test_invented_methods_do_not_grow_metrics(live):
    methods = [b"X" + uuid.uuid4().hex[:12].upper().encode() for _ in range(20)]
    for method in methods:
        answer = exchange(live.port, http(method, b"/simple/"))
        assert answer.status is not None and 400 <= answer.status < 600, answer
    status, _, text = get(live.url + "metrics")
    assert status == 200
    assert not any(m in text for m in methods)


# -- after all of it ------------------------------------------------------------------

def test_no_descriptor_leaked(live):
    """Spool files and sockets of refused, timed-out and aborted requests are all closed."""
    wait_for(lambda: _fds(live) <= live.fds_at_start + 2, timeout=TIMEOUT + 20,
             what=f"the daemon's descriptors to come back to {live.fds_at_start}")


# -- the catalogue, counted -----------------------------------------------------------

CASE_IDS = (list(CATALOGUE) + list(ACCEPT_CASES) + XSS_IDS + SLOW_IDS
            + ["metrics: invented methods", "url: held name plus %0A (extra index on)"])


def test_catalogue_size():
    assert len(CASE_IDS) == len(set(CASE_IDS))
    assert len(CATALOGUE) >= 40, len(CATALOGUE)
    for category in ("url", "headers", "query", "auth", "multipart", "archive"):
        assert sum(1 for c in CATALOGUE if c.startswith(category + ":")) >= 3, category
    assert len(CASE_IDS) >= 40


@pytest.mark.parametrize("path, header", [
    (b"/simple/", b"Accept: \xff\xfe/\xff"),
    (b"/packages/acme-tool/" + WHEEL.encode(), b"Range: bytes=\xff-"),
])
def test_non_utf8_optional_headers_are_ignored(live, path, header):
    """Bytes 0x80-0xFF (obs-text) in Accept or Range: the header is ignored
    (text/html, the whole file), never a 500."""
    answer = exchange(live.port, http(b"GET", path, [header]))
    assert answer.status == 200, answer


# -- archives whose members lead outside them, and bombs of the full member scan ------
# (an upload's archive is read to its end: every member is checked.)

import gzip  # noqa: E402

from ppypi import archives, metadata  # noqa: E402


def _sdist_with(version, *members):
    """A valid acme-tool sdist of VERSION, its PKG-INFO first, MEMBERS after."""
    meta = _metadata("acme-tool", version)
    info = tarfile.TarInfo(f"acme_tool-{version}/PKG-INFO")
    info.size = len(meta)
    return _tar([(info, io.BytesIO(meta)), *members])


def _pkg_info_tar(version):
    """A whole tar holding only PKG-INFO: the end of a bomb."""
    buf = io.BytesIO()
    meta = _metadata("acme-tool", version)
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(f"acme_tool-{version}/PKG-INFO")
        info.size = len(meta)
        t.addfile(info, io.BytesIO(meta))
    return buf.getvalue()


# name: (version, filename, build, the member the refusal names)
LEADING_OUT = {
    "sdist symlink to /etc/passwd beside a good PKG-INFO": (
        "3.6", "acme_tool-3.6.tar.gz",
        lambda: _sdist_with("3.6", _link("acme_tool-3.6/passwd", tarfile.SYMTYPE, "/etc/passwd")),
        "acme_tool-3.6/passwd"),
    "sdist hard link outside beside a good PKG-INFO": (
        "3.7", "acme_tool-3.7.tar.gz",
        lambda: _sdist_with("3.7", _link("acme_tool-3.7/h", tarfile.LNKTYPE, "../../etc/passwd")),
        "acme_tool-3.7/h"),
    "sdist FIFO beside a good PKG-INFO": (
        "3.8", "acme_tool-3.8.tar.gz",
        lambda: _sdist_with("3.8", _link("acme_tool-3.8/fifo", tarfile.FIFOTYPE, "")),
        "acme_tool-3.8/fifo"),
    "wheel with ../../evil.py beside a good METADATA": (
        "2.8", "acme_tool-2.8-py3-none-any.whl",
        lambda: _zip([("acme_tool-2.8.dist-info/METADATA", _metadata("acme-tool", "2.8")),
                      ("../../evil.py", b"print('pwned')\n")]),
        "../../evil.py"),
}


@pytest.mark.parametrize("name", list(LEADING_OUT))
def test_archive_leading_outside_itself_is_400_naming_the_member(live, name):
    version, filename, build, member = LEADING_OUT[name]
    kind = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    before = snapshot(live.root)
    answer = exchange(live.port, upload_request(live, build(), filename, version=version,
                                                filetype=kind))
    assert answer.status == 400, answer
    assert repr(member).encode() in answer.reason, answer
    check_common(live, answer, before)
    assert filename.encode() not in get(live.url + "simple/acme-tool/")[2]


@functools.lru_cache(None)
def long_name_bomb(version):
    """
    An sdist that starts with a GNU long-name header claiming 64 MiB (tarfile
    reads such a header whole), then a good PKG-INFO: 300 KB, gzipped.
    """
    size = 64 << 20
    head = tarfile.TarInfo("././@LongLink")
    head.type = tarfile.GNUTYPE_LONGNAME
    head.size = size
    named = tarfile.TarInfo("named-by-the-long-name")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as g:
        g.write(head.tobuf(tarfile.GNU_FORMAT))
        for _ in range(size >> 20):
            g.write(b"a" * (1 << 20))
        g.write(named.tobuf(tarfile.GNU_FORMAT))
        g.write(_pkg_info_tar(version))
    return buf.getvalue()


@functools.lru_cache(None)
def unpacks_past_4_gib(version):
    """
    An sdist with a member of 4160 MiB of zeros (65 gzip members of 64 MiB
    each, one after the other: 4 MB in all), then a good PKG-INFO.
    """
    chunk = 64 << 20
    count = (4 << 30) // chunk + 1
    big = tarfile.TarInfo(f"acme_tool-{version}/zeros.bin")
    big.size = count * chunk
    return (gzip.compress(big.tobuf()) + gzip.compress(b"\0" * chunk) * count
            + gzip.compress(_pkg_info_tar(version)))


def _many_members(version, count):
    return _sdist_with(version, *[(tarfile.TarInfo(f"acme_tool-{version}/m{i:04}"), None)
                                  for i in range(count)])


def _pax_header(version, **records):
    """An sdist with a member whose pax header holds RECORDS, then a good PKG-INFO."""
    info = tarfile.TarInfo(f"acme_tool-{version}/file")
    info.pax_headers = records
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        t.addfile(info)
        meta = _metadata("acme-tool", version)
        info = tarfile.TarInfo(f"acme_tool-{version}/PKG-INFO")
        info.size = len(meta)
        t.addfile(info, io.BytesIO(meta))
    return buf.getvalue()


def pax_digits(version):
    """A pax header with 8000 digits in a row: tarfile before 3.11.10 parses
    that in time quadratic in the run (CVE-2024-6232)."""
    return _pax_header(version, comment="1" * 8000)


def pax_large(version):
    """A pax header of 64 KiB."""
    return _pax_header(version, comment="x" * (64 << 10))


@pytest.fixture
def in_process(tmp_path):
    return InProcess(tmp_path / "root", extra_index_url=None)


async def _upload_sdist(server, data, version):
    creds = ("__token__", server.token())
    filename = f"acme_tool-{version}.tar.gz"
    return await server.upload(upload_fields("acme-tool", version, data, filetype="sdist"),
                               [("content", filename, data)], auth=creds)


@pytest.mark.parametrize("build, version, reason", [
    (long_name_bomb, "4.0", b"a tar header claims more than 16384 bytes"),
    (unpacks_past_4_gib, "4.1", b"sdist unpacks to more than 4 GiB"),
    (pax_digits, "4.3", b"a tar header holds more than 64 digits in a row"),
    (pax_large, "4.4", b"a tar header claims more than 16384 bytes"),
])
@pytest_twisted.ensureDeferred
async def test_sdist_bombs_are_refused_before_they_go_off(in_process, build, version, reason):
    await in_process.sync()
    r, body = await _upload_sdist(in_process, build(version), version)
    assert r.code == 400, body
    assert reason in r.phrase, r.phrase
    assert os.listdir(os.path.join(in_process.root, ".ppypi", "incoming")) == []
    assert (await in_process.get("/simple/acme-tool/"))[0].code == 404


@pytest.mark.parametrize("build, version", [(long_name_bomb, "4.0"), (unpacks_past_4_gib, "4.1"),
                                            (pax_digits, "4.3")])
def test_sdist_bombs_dropped_in_by_hand_are_read_within_bounds(tmp_path, build, version):
    """A sync reads PKG-INFO of a file put in the folder by hand: the same bounds hold."""
    import tracemalloc

    path = tmp_path / f"acme_tool-{version}.tar.gz"
    path.write_bytes(build(version))
    tracemalloc.start()
    try:
        with pytest.raises(metadata.MetadataError):
            metadata.inspect(str(path), "sdist", path.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak


@pytest.mark.parametrize("limit, value, reason", [
    ("MAX_CHECKED_MEMBERS", 100, b"archive has more than 100 members"),
    ("MAX_NAME_CHARS", 1000, b"archive member names add up to more than 1000 characters"),
])
@pytest_twisted.ensureDeferred
async def test_member_scan_is_bounded(in_process, monkeypatch, limit, value, reason):
    # The real limits (100000 members, 16 Mi characters of names) made small:
    # the same code, a quicker archive (PKG-INFO and 100 members of 19
    # characters: 1922 characters).
    monkeypatch.setattr(archives, limit, value)
    await in_process.sync()
    r, body = await _upload_sdist(in_process, _many_members("4.2", 100), "4.2")
    assert r.code == 400, body
    assert reason in r.phrase, r.phrase
    assert (await in_process.get("/simple/acme-tool/"))[0].code == 404
    # ...and one member fewer is checked in full and accepted.
    monkeypatch.setattr(archives, limit, value * 2)
    r, body = await _upload_sdist(in_process, _many_members("4.2", 100), "4.2")
    assert r.code == 200, body


# -- heads over Twisted's line limit: answered, not dropped ---------------------------

OVERLONG_HEADS = {
    "a 64 KiB header line": (GET(b"/simple/", b"X-Big: " + b"a" * 65_536), 431),
    "a 1 MiB header line": (GET(b"/simple/", b"X-Big: " + b"a" * (1 << 20)), 431),
    "a 64 KiB request line": (GET(b"/simple/?q=" + b"a" * 65_536), 414),
    "501 headers": (GET(b"/simple/", *[b"X-H%d: v" % i for i in range(501)]), 431),
}


@pytest.mark.parametrize("name", list(OVERLONG_HEADS))
def test_an_overlong_head_is_answered_and_closed(live, name):
    """A request line or header line over 16 KiB (Twisted's MAX_LENGTH) was
    dropped without an answer: 431 Request Header Fields Too Large for a
    header line (RFC 6585), 414 URI Too Long for the request line, with
    Connection: close, as for too many headers."""
    build, status = OVERLONG_HEADS[name]
    before = snapshot(live.root)
    answer = exchange(live.port, build(live))
    assert answer.status == status, answer
    assert answer.header("connection") == [b"close"], answer
    assert answer.header("content-length") == [b"%d" % len(answer.body)], answer
    assert answer.elapsed < TIMEOUT, answer
    check_common(live, answer, before)
