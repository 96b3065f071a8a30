"""
The one path that serves /simple/ (ppypi.web.simple.SimpleIndex), in
process: answered at once for a public repository, after a credentials check
for a private one; large pages written in pieces either way; the URL forms
around it (no trailing slash, other methods, deeper paths).
"""

import pytest
import pytest_twisted

from ppypi.web.body import PIECE

from .conftest import get
from .helpers import InProcess, basic
from .test_standards import _hash

ACCEPT_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def _many_versions(folder, versions):
    """One project of C{versions} wheels."""
    from .corpus import wheel_bytes
    folder.mkdir(parents=True, exist_ok=True)
    for v in range(versions):
        name = f"big_tool-1.{v}.0-py3-none-any.whl"
        (folder / name).write_bytes(wheel_bytes("big_tool", f"1.{v}.0"))


def _server(tmp_path, kind, versions):
    root = tmp_path / "root"
    _many_versions(root, versions)
    if kind == "public":
        return InProcess(root, extra_index_url=None)
    config = ("repositories:\n  main:\n    read: [alice]\n"
              f"users:\n  alice: {{password: \"{_hash('pw')}\"}}\n")
    return InProcess(root, config_text=config, extra_index_url=None)


@pytest.fixture(params=["public", "private"])
def server(request, tmp_path):
    return _server(tmp_path, request.param, 3)


def _auth(server):
    return {} if server.config.repositories[0].read == "anyone" else {
        "Authorization": basic("alice", "pw")}


@pytest.mark.parametrize("kind", ["public", "private"])
def test_a_large_page_arrives_whole(tmp_path, daemon_factory, kind):
    """
    Over loopback (the in-memory transport of the other tests does not pull
    a large body): a page over 2 PIECEs, answered at once (public) or after
    the credentials check (private), arrives whole, in both formats.
    """
    root = tmp_path / "root"
    _many_versions(root, 1500)
    args = []
    headers = {"Accept-Encoding": "identity"}
    if kind == "private":
        config = tmp_path / "ppypi.yaml"
        config.write_text("repositories:\n  main:\n    read: [alice]\n"
                          f"users:\n  alice: {{password: \"{_hash('pw')}\"}}\n")
        args = ["--config", str(config)]
        headers["Authorization"] = basic("alice", "pw")
    d = daemon_factory(root, *args, "--extra-index-url", "")
    for accept in ({}, ACCEPT_JSON):
        status, got, body = get(d.url + "simple/big-tool/", {**headers, **accept})
        assert status == 200
        assert len(body) > 2 * PIECE and int(got["Content-Length"]) == len(body)
        assert body.count(b"big_tool-1.") >= 1500
        status, got, head = get(d.url + "simple/big-tool/", {**headers, **accept}, method="HEAD")
        assert (status, head, int(got["Content-Length"])) == (200, b"", len(body))


@pytest_twisted.ensureDeferred
async def test_credentials_are_checked_before_anything_is_said(server):
    await server.sync()
    r, body = await server.get("/simple/big-tool/")
    if _auth(server):
        assert r.code == 401 and b"big_tool" not in body
        assert r.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="ppypi"']
        r, _ = await server.get("/simple/no-such-tool/")
        assert r.code == 401
    else:
        assert r.code == 200


@pytest.mark.parametrize("path, code, location", [
    ("/simple", 308, "/simple/"),
    ("/simple/big-tool", 308, "/simple/big-tool/"),
    ("/simple/big-tool?format=json", 308, "/simple/big-tool/?format=json"),
    ("/simple/Big.Tool/", 301, "/simple/big-tool/"),
    ("/simple/big-tool/extra", 404, None),
    ("/simple/big-tool/extra/", 404, None),
    ("/simple/no-such-tool/", 404, None),
    ("/simple/not%20valid/", 404, None),
])
@pytest_twisted.ensureDeferred
async def test_url_forms_around_the_pages(server, path, code, location):
    await server.sync()
    r, _ = await server.get(path, _auth(server))
    assert r.code == code, path
    assert r.headers.getRawHeaders("Location") == ([location] if location else None)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PROPFIND", "PATCH"])
@pytest_twisted.ensureDeferred
async def test_other_methods_are_405(server, method):
    await server.sync()
    for path in ("/simple/", "/simple/big-tool/"):
        r, body = await server.get(path, _auth(server), method=method)
        assert r.code == 405, (method, path)
        assert r.headers.getRawHeaders("Allow") == ["GET, HEAD"]
        assert b"big_tool" not in body
