"""
Uploads through the legacy API, in process: what is accepted, what is
refused (and that a refusal writes nothing), existing files, removal.
"""

import hashlib
import io
import os
import tarfile
import zipfile

import pytest
import pytest_twisted

from .helpers import InProcess, sdist_bytes, upload_fields, wheel_bytes

WHEEL = "acme_tool-1.0-py3-none-any.whl"


@pytest.fixture
def server(tmp_path):
    return InProcess(tmp_path / "root", extra_index_url=None)


def snapshot(root):
    """Every file below ROOT but the server's spool of request bodies."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for f in files:
            path = os.path.relpath(os.path.join(folder, f), root)
            if not path.startswith(os.path.join(".ppypi", "tmp")):
                found.add(path)
    return found


async def upload(server, data=None, filename=WHEEL, name="acme-tool", version="1.0",
                 auth="token", path="/", **fields):
    data = wheel_bytes("acme_tool", "1.0") if data is None else data
    creds = ("__token__", server.token()) if auth == "token" else auth
    return await server.upload(upload_fields(name, version, data, **fields),
                               [("content", filename, data)], path=path, auth=creds)


@pytest_twisted.ensureDeferred
async def test_upload_is_indexed_at_once(server):
    await server.sync()
    data = wheel_bytes("acme_tool", "1.0", requires_python=">=3.9")
    r, body = await upload(server, data)
    assert r.code == 200, body
    # Visible without a sync, with its hash and Requires-Python.
    r, body = await server.get("/simple/acme-tool/")
    assert r.code == 200
    assert f"{WHEEL}#sha256={hashlib.sha256(data).hexdigest()}".encode() in body
    assert b'data-requires-python="&gt;=3.9"' in body
    stored = os.path.join(server.root, "acme-tool", WHEEL)
    assert open(stored, "rb").read() == data
    r, got = await server.get(f"/packages/acme-tool/{WHEEL}")
    assert got == data
    assert os.listdir(os.path.join(server.root, ".ppypi", "incoming")) == []
    # ...and a sync afterwards agrees, without re-hashing it.
    await server.sync()
    r, body2 = await server.get("/simple/acme-tool/")
    assert body2 == body
    assert server.repository.backend.hashed_total == 0


@pytest_twisted.ensureDeferred
async def test_sdist_and_legacy_path(server):
    await server.sync()
    data = sdist_bytes("acme_tool", "2.0")
    r, body = await upload(server, data, filename="acme_tool-2.0.tar.gz", version="2.0",
                           filetype="sdist", path="/legacy/")
    assert r.code == 200, body
    r, body = await server.get("/simple/acme-tool/")
    assert b"acme_tool-2.0.tar.gz" in body


@pytest_twisted.ensureDeferred
async def test_same_file_again_is_200_and_changes_nothing(server):
    await server.sync()
    assert (await upload(server))[0].code == 200
    before = os.stat(os.path.join(server.root, "acme-tool", WHEEL))
    r, body = await upload(server)
    assert r.code == 200
    after = os.stat(os.path.join(server.root, "acme-tool", WHEEL))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


@pytest_twisted.ensureDeferred
async def test_other_content_is_409(server):
    await server.sync()
    assert (await upload(server))[0].code == 200
    other = wheel_bytes("acme_tool", "1.0", requires_python=">=3.12")
    r, body = await upload(server, other)
    assert r.code == 409
    assert r.phrase == b"File already exists"
    assert b"File already exists" in body
    assert open(os.path.join(server.root, "acme-tool", WHEEL), "rb").read() != other


@pytest_twisted.ensureDeferred
async def test_hand_dropped_file_not_yet_synced_is_a_conflict_too(server):
    await server.sync()
    os.makedirs(os.path.join(server.root, "acme-tool"))
    with open(os.path.join(server.root, "acme-tool", WHEEL), "wb") as f:
        f.write(wheel_bytes("acme_tool", "1.0", requires_python=">=3.12"))
    r, _ = await upload(server)
    assert r.code == 409


@pytest_twisted.ensureDeferred
async def test_allow_overwrite_replaces(tmp_path):
    server = InProcess(tmp_path / "root", config_text=(
        "repositories:\n  main:\n    read: anyone\n    write: anyone\n    allow_overwrite: true\n"))
    await server.sync()
    first = wheel_bytes("acme_tool", "1.0")
    second = wheel_bytes("acme_tool", "1.0", requires_python=">=3.12")
    for data in (first, second):
        r, body = await upload(server, data, auth=None)
        assert r.code == 200, body
    r, body = await server.get("/simple/acme-tool/")
    assert hashlib.sha256(second).hexdigest().encode() in body
    assert open(os.path.join(server.root, "acme-tool", WHEEL), "rb").read() == second


@pytest_twisted.ensureDeferred
async def test_remove_pkg_deletes_a_release(server):
    await server.sync()
    for version in ("1.0", "2.0"):
        data = wheel_bytes("acme_tool", version)
        r, _ = await upload(server, data, filename=f"acme_tool-{version}-py3-none-any.whl",
                            version=version)
        assert r.code == 200
    creds = ("__token__", server.token())
    r, body = await server.upload([(":action", "remove_pkg"), ("name", "Acme.Tool"),
                                   ("version", "1.0")], [], auth=creds)
    assert r.code == 200, body
    r, body = await server.get("/simple/acme-tool/")
    assert b"acme_tool-1.0" not in body and b"acme_tool-2.0" in body
    assert not os.path.exists(os.path.join(server.root, "acme-tool", WHEEL))
    r, _ = await server.upload([(":action", "remove_pkg"), ("name", "acme-tool"),
                                ("version", "9.9")], [], auth=creds)
    assert r.code == 404
    r, _ = await server.upload([(":action", "remove_pkg"), ("name", "acme-tool"),
                                ("version", "2.0")], [])
    assert r.code == 401


@pytest_twisted.ensureDeferred
async def test_upload_needs_credentials(server):
    await server.sync()
    r, _ = await upload(server, auth=None)
    assert r.code == 401
    assert r.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="ppypi"']
    r, _ = await upload(server, auth=("__token__", "wrong"))
    assert r.code == 401
    r, _ = await upload(server, auth=("alice", server.token()))
    assert r.code == 401
    assert snapshot(server.root) == {".ppypi/upload-token"}


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


HOSTILE = {
    "traversal ../": dict(filename="../acme_tool-1.0-py3-none-any.whl"),
    "traversal a/b": dict(filename="a/acme_tool-1.0-py3-none-any.whl"),
    "traversal backslash": dict(filename="..\\acme_tool-1.0-py3-none-any.whl"),
    "absolute path": dict(filename="/etc/acme_tool-1.0-py3-none-any.whl"),
    "leading dot": dict(filename=".acme_tool-1.0-py3-none-any.whl"),
    "control character": dict(filename="acme_tool-1.0-py3-none-any\x01.whl"),
    "not a distribution name": dict(filename="acme_tool.txt"),
    "egg": dict(filename="acme_tool-1.0-py3.11.egg"),
    "name mismatch": dict(name="other-tool"),
    "version mismatch": dict(version="1.1"),
    "invalid version": dict(version="not.a.version!"),
    "invalid name": dict(name="acme tool"),
    "wrong sha256": dict(sha256_digest="0" * 64),
    "wrong md5": dict(md5_digest="0" * 32),
    "wrong blake2": dict(blake2_256_digest="f" * 64),
    "filetype mismatch": dict(filetype="sdist"),
    "unknown protocol": dict(protocol_version="2"),
    "missing name": dict(name=None),
    "missing version": dict(version=None),
    "not a zip": dict(data=b"this is not a zip file"),
    "zip without METADATA": dict(data=_zip({"acme_tool/__init__.py": b""})),
    "METADATA of another project": dict(data=_zip({
        "acme_tool-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n"})),
    "METADATA of another version": dict(data=_zip({
        "acme_tool-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: acme-tool\nVersion: 6\n"})),
    "empty file": dict(data=b""),
    "unsupported action": dict(**{":action": "submit"}),
    "missing action": dict(**{":action": None}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest_twisted.ensureDeferred
async def test_hostile_upload_is_400_and_writes_nothing(server, case):
    await server.sync()
    before = snapshot(server.root)
    spec = dict(HOSTILE[case])
    data = spec.pop("data", None)
    filename = spec.pop("filename", WHEEL)
    r, body = await upload(server, data, filename=filename, **spec)
    assert r.code == 400, (case, r.code, body)
    # twine shows the status line's reason: it says what is wrong.
    assert r.phrase and r.phrase != b"Bad Request", case
    assert r.phrase.decode() in body.decode()
    assert snapshot(server.root) == before
    r, _ = await server.get("/simple/")
    assert r.code == 200


@pytest.mark.parametrize("case, ctype, body", [
    ("not multipart", "application/x-www-form-urlencoded", b":action=file_upload&name=x"),
    ("json", "application/json", b'{"name": "x"}'),
    ("no content type", None, b"x"),
    ("no boundary", "multipart/form-data", b"--x\r\n"),
    ("garbage", "multipart/form-data; boundary=zz", b"\x00\xff" * 1000),
    ("truncated", "multipart/form-data; boundary=zz",
     b'--zz\r\nContent-Disposition: form-data; name="content"; filename="a.whl"\r\n\r\nPK'),
])
@pytest_twisted.ensureDeferred
async def test_malformed_bodies_are_400(server, case, ctype, body):
    await server.sync()
    before = snapshot(server.root)
    headers = {"Authorization": "Basic " + __import__("base64").b64encode(
        f"__token__:{server.token()}".encode()).decode()}
    if ctype:
        headers["Content-Type"] = ctype
    r, answer = await server.get("/", headers, method="POST", data=body)
    assert r.code == 400, (case, answer)
    assert snapshot(server.root) == before


@pytest_twisted.ensureDeferred
async def test_two_content_parts_and_missing_content(server):
    await server.sync()
    data = wheel_bytes("acme_tool", "1.0")
    creds = ("__token__", server.token())
    fields = upload_fields("acme-tool", "1.0", data)
    r, body = await server.upload(fields, [("content", WHEEL, data), ("content", WHEEL, data)],
                                  auth=creds)
    assert r.code == 400 and b"more than one" in body
    r, body = await server.upload(fields, [], auth=creds)
    assert r.code == 400 and b"does not have a file" in body
    assert not os.path.exists(os.path.join(server.root, "acme-tool"))


@pytest_twisted.ensureDeferred
async def test_file_over_max_file_bytes_is_413(tmp_path):
    server = InProcess(tmp_path / "root", config_text=(
        "repositories:\n  main:\n    write: anyone\n    max_file_bytes: 1000\n"))
    await server.sync()
    data = wheel_bytes("acme_tool", "1.0") + b"\0" * 1000
    r, _ = await upload(server, data, auth=None)
    assert r.code == 413
    assert os.listdir(os.path.join(server.root, ".ppypi", "incoming")) == []


@pytest_twisted.ensureDeferred
async def test_upload_to_named_repository(tmp_path):
    server = InProcess(tmp_path / "root", config_text=(
        "repositories:\n  main: {}\n  acme:\n    path: acme\n    write: anyone\n"))
    await server.sync()
    r, body = await upload(server, auth=None, path="/acme/")
    assert r.code == 200, body
    assert os.path.exists(tmp_path / "root" / "acme" / "acme-tool" / WHEEL)
    r, _ = await server.get("/acme/simple/acme-tool/")
    assert r.code == 200
    # main does not hold it (each repository is an index of its own).
    r, _ = await server.get("/simple/acme-tool/")
    assert r.code == 302
    # main has no writers at all
    r, _ = await upload(server, auth=None, path="/")
    assert r.code == 401


@pytest_twisted.ensureDeferred
async def test_upload_during_a_sync_is_not_lost(server):
    """A scan that started before the upload must not drop it from the index."""
    from twisted.internet.defer import Deferred

    await server.sync()
    backend = server.repository.backend
    real = backend.list_files
    gate = Deferred()

    async def slow_list():
        result = await real()   # the scan sees the folder before the upload
        await gate
        return result

    backend.list_files = slow_list
    syncing = Deferred.fromCoroutine(server.repository.sync())
    r, _ = await upload(server)
    assert r.code == 200
    gate.callback(None)
    await syncing
    r, _ = await server.get("/simple/acme-tool/")
    assert r.code == 200


# -- private-pypi's upload URL: POST /simple/ (and /R/simple/) -----------------


def _samples(body):
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


@pytest_twisted.ensureDeferred
async def test_upload_and_remove_at_simple_as_private_pypi_took_them(server):
    """twine configured for private-pypi (--repository-url http://HOST/simple/)."""
    await server.sync()
    r, body = await upload(server, path="/simple/")
    assert r.code == 200, body
    assert os.path.exists(os.path.join(server.root, "acme-tool", WHEEL))
    # The index pages still answer GETs at the same URL.
    r, body = await server.get("/simple/")
    assert r.code == 200 and b"acme-tool" in body
    r, body = await server.get("/simple/acme-tool/")
    assert r.code == 200 and WHEEL.encode() in body
    # The same checks as at /: credentials, then the upload's own.
    r, _ = await upload(server, path="/simple/", auth=None)
    assert r.code == 401
    assert r.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="ppypi"']
    r, body = await upload(server, path="/simple/", version="1.1")
    assert r.code == 400 and r.phrase != b"Bad Request", body
    # ...and pypiserver's removal.
    r, body = await server.upload([(":action", "remove_pkg"), ("name", "acme-tool"),
                                   ("version", "1.0")], [], path="/simple/",
                                  auth=("__token__", server.token()))
    assert r.code == 200, body
    assert not os.path.exists(os.path.join(server.root, "acme-tool", WHEEL))
    # Counted as the uploads they are.
    r, body = await server.get("/metrics")
    samples = _samples(body)
    uploads = {outcome: samples.get(("ppypi_uploads_total",
                                     (("outcome", outcome), ("repository", "default"))))
               for outcome in ("stored", "unauthorized", "rejected", "removed")}
    assert uploads == {"stored": 1, "unauthorized": 1, "rejected": 1, "removed": 1}
    assert samples[("ppypi_requests_total",
                    (("method", "POST"), ("route", "upload"), ("status", "200")))] == 2


@pytest_twisted.ensureDeferred
async def test_upload_at_a_named_repositorys_simple(tmp_path):
    server = InProcess(tmp_path / "root", extra_index_url=None, config_text=(
        "repositories:\n  main: {}\n  acme:\n    path: acme\n    write: anyone\n"
        "    max_file_bytes: 100000\n"))
    await server.sync()
    r, body = await upload(server, auth=None, path="/acme/simple/")
    assert r.code == 200, body
    assert os.path.exists(tmp_path / "root" / "acme" / "acme-tool" / WHEEL)
    r, _ = await server.get("/acme/simple/acme-tool/")
    assert r.code == 200
    r, _ = await server.get("/simple/acme-tool/")
    assert r.code == 404
    # main has no writers; acme's own limit holds at its /simple/ too.
    assert (await upload(server, auth=None, path="/simple/"))[0].code == 401
    big = wheel_bytes("acme_tool", "1.0") + b"\0" * 100_000
    r, _ = await upload(server, big, auth=None, path="/acme/simple/")
    assert r.code == 413


# -- archives that would unpack outside their folder -------------------------------

SDIST = "acme_tool-1.0.tar.gz"
TOP = "acme_tool-1.0"
PKG_INFO = b"Metadata-Version: 2.1\nName: acme-tool\nVersion: 1.0\n"


def _member(name, kind=tarfile.REGTYPE, link="", data=b""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def _pax_named(name):
    """A file named NAME in a pax header only (ustar names end at a NUL)."""
    info, data = _member(f"{TOP}/file", data=b"x")
    info.pax_headers = {"path": name}
    return info, data


def _sdist(*members):
    """A valid sdist of acme-tool 1.0 (its PKG-INFO first), with MEMBERS after."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for info, data in (_member(f"{TOP}/PKG-INFO", data=PKG_INFO), *members):
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wheel(*names, top=""):
    """A valid wheel of acme-tool 1.0 (or zip sdist, with TOP), with files NAMES."""
    meta = ((f"{top}/PKG-INFO", PKG_INFO) if top else
            ("acme_tool-1.0.dist-info/METADATA", PKG_INFO))
    return _zip({meta[0]: meta[1], **{n: b"print('pwned')\n" for n in names}})


# case: (archive bytes, filename, the member the refusal names)
UNSAFE = {
    "sdist symlink to /etc/passwd": (
        lambda: _sdist(_member(f"{TOP}/passwd", tarfile.SYMTYPE, "/etc/passwd")),
        SDIST, f"{TOP}/passwd"),
    "sdist symlink climbing out": (
        lambda: _sdist(_member(f"{TOP}/up", tarfile.SYMTYPE, "../../etc/passwd")),
        SDIST, f"{TOP}/up"),
    "sdist hard link outside": (
        lambda: _sdist(_member(f"{TOP}/hard", tarfile.LNKTYPE, "../etc/passwd")),
        SDIST, f"{TOP}/hard"),
    "sdist hard link to an absolute path": (
        lambda: _sdist(_member(f"{TOP}/hard", tarfile.LNKTYPE, "/etc/passwd")),
        SDIST, f"{TOP}/hard"),
    "sdist absolute member": (
        lambda: _sdist(_member("/tmp/evil.py", data=b"x")), SDIST, "/tmp/evil.py"),
    "sdist member climbing out with ..": (
        lambda: _sdist(_member(f"{TOP}/../../evil.py", data=b"x")),
        SDIST, f"{TOP}/../../evil.py"),
    "sdist member climbing out with backslashes": (
        lambda: _sdist(_member(f"{TOP}/..\\..\\evil.py", data=b"x")),
        SDIST, f"{TOP}/..\\..\\evil.py"),
    "sdist member on a Windows drive": (
        lambda: _sdist(_member("C:/evil.py", data=b"x")), SDIST, "C:/evil.py"),
    "sdist character device": (
        lambda: _sdist(_member(f"{TOP}/tty", tarfile.CHRTYPE)), SDIST, f"{TOP}/tty"),
    "sdist block device": (
        lambda: _sdist(_member(f"{TOP}/sda", tarfile.BLKTYPE)), SDIST, f"{TOP}/sda"),
    "sdist FIFO": (
        lambda: _sdist(_member(f"{TOP}/fifo", tarfile.FIFOTYPE)), SDIST, f"{TOP}/fifo"),
    "sdist NUL in a name": (
        lambda: _sdist(_pax_named(f"{TOP}/a\0b")), SDIST, f"{TOP}/a\0b"),
    # Each link stays inside on paper; unpacked, x is TOP, so y is TOP's
    # parent and y/../evil.py lands beside the unpack folder.
    "sdist file through a chain of symlinks": (
        lambda: _sdist(_member(f"{TOP}/x", tarfile.SYMTYPE, "."),
                       _member(f"{TOP}/y", tarfile.SYMTYPE, "x/.."),
                       _member(f"{TOP}/y/../evil.py", data=b"x")),
        SDIST, f"{TOP}/y/../evil.py"),
    # ...and the same chain with the file first: the link that leads out is
    # refused whatever order the members come in.
    "sdist symlink through a symlink that comes later": (
        lambda: _sdist(_member(f"{TOP}/y", tarfile.SYMTYPE, "x/../.."),
                       _member(f"{TOP}/x", tarfile.SYMTYPE, ".")),
        SDIST, f"{TOP}/y"),
    # tarfile unpacks a hard link to a symlink as that symlink, from the
    # hard link's folder: ../../README from TOP is outside.
    "sdist hard link to a deeper symlink": (
        lambda: _sdist(_member(f"{TOP}/README", data=b"x"),
                       _member(f"{TOP}/a/b/s", tarfile.SYMTYPE, "../../README"),
                       _member(f"{TOP}/h", tarfile.LNKTYPE, f"{TOP}/a/b/s")),
        SDIST, f"{TOP}/h"),
    "sdist name longer than PATH_MAX": (
        lambda: _sdist(_member(f"{TOP}/" + "a" * 5000, data=b"x")), SDIST, f"{TOP}/" + "a" * 80),
    "wheel member climbing out with ..": (
        lambda: _wheel("../../evil.py"), WHEEL, "../../evil.py"),
    "wheel member climbing out with backslashes": (
        lambda: _wheel("acme_tool\\..\\..\\evil.py"), WHEEL, "acme_tool\\..\\..\\evil.py"),
    "wheel absolute member": (
        lambda: _wheel("/usr/lib/python3/evil.py"), WHEEL, "/usr/lib/python3/evil.py"),
    "zip sdist member climbing out": (
        lambda: _wheel(f"{TOP}/../../evil.py", top=TOP), "acme_tool-1.0.zip",
        f"{TOP}/../../evil.py"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
@pytest_twisted.ensureDeferred
async def test_archive_unpacking_outside_is_400_naming_the_member(server, case):
    await server.sync()
    before = snapshot(server.root)
    build, filename, member = UNSAFE[case]
    data = build()
    kind = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    r, body = await upload(server, data, filename=filename, filetype=kind)
    assert r.code == 400, (case, body)
    # twine shows the status line: it names the member (quoted as repr() does).
    reason = r.phrase.decode()
    assert reason.startswith("Invalid distribution file: member "), reason
    assert repr(member).rstrip("'") in reason, reason
    assert reason in body.decode()
    # Nothing stored, nothing listed, nothing left behind.
    assert snapshot(server.root) == before
    assert os.listdir(os.path.join(server.root, ".ppypi", "incoming")) == []
    r, listing = await server.get("/simple/")
    assert r.code == 200 and b"acme-tool" not in listing
    r, _ = await server.get("/simple/acme-tool/")
    assert r.code == 404


def _inside_links():
    return _sdist(_member(f"{TOP}/README", data=b"read me\n"),
                  _member(f"{TOP}/link", tarfile.SYMTYPE, "README"),
                  _member(f"{TOP}/docs", tarfile.DIRTYPE),
                  _member(f"{TOP}/docs/readme", tarfile.SYMTYPE, "../README"),
                  _member(f"{TOP}/docs/here", tarfile.SYMTYPE, "."),
                  _member(f"{TOP}/copy", tarfile.LNKTYPE, f"{TOP}/README"),
                  _member(f"{TOP}/src/../setup.py", data=b"x"),
                  _member(f"./{TOP}/MANIFEST.in", data=b"x"))


@pytest_twisted.ensureDeferred
async def test_links_inside_the_archive_are_accepted(server):
    await server.sync()
    r, body = await upload(server, _inside_links(), filename=SDIST, filetype="sdist")
    assert r.code == 200, body
    r, listing = await server.get("/simple/acme-tool/")
    assert r.code == 200 and SDIST.encode() in listing


@pytest.mark.parametrize("case", sorted(UNSAFE) + ["inside links"])
def test_without_tarfile_data_filter_the_same_archives_are_refused(tmp_path, monkeypatch, case):
    """Pythons before 3.10.12 and 3.11.4 have no tarfile.data_filter: the
    check's stand-in for it refuses the same members, and only those."""
    from ppypi import archives, metadata

    monkeypatch.setattr(archives, "_data_filter", None)
    build, filename, member = UNSAFE.get(case, (_inside_links, SDIST, None))
    path = tmp_path / filename
    path.write_bytes(build())
    kind = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    if member is None:
        assert metadata.read_metadata(str(path), kind, filename, check=True) == PKG_INFO
        return
    with pytest.raises(metadata.UnsafeArchive) as refused:
        metadata.read_metadata(str(path), kind, filename, check=True)
    assert f"member {repr(member).rstrip(chr(39))}" in str(refused.value)
