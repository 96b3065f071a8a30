"""
Uploads to a live daemon: real twine and pip, raw sockets for what clients
do wrong, concurrency, and SIGKILL in the middle of an upload.
"""

import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading

import bcrypt
import pytest

from .conftest import BIN, client_env, get, make_corpus, wait_for
from .helpers import multipart_body, upload_fields, wheel_bytes

TWINE = os.path.join(BIN, "twine")


def hashed(password):
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture
def secured(tmp_path, daemon_factory):
    config = tmp_path / "ppypi.yaml"
    config.write_text(f"""
repositories:
  default:
    read: [alice, bob]
    write: [alice]
users:
  alice: {{password: "{hashed('alice-pw')}"}}
  bob: {{password: "{hashed('bob-pw')}"}}
""")
    return daemon_factory(tmp_path / "root", "--config", config, "--extra-index-url", "")


def twine(*args, check=True):
    result = subprocess.run([TWINE, "upload", "--non-interactive", "--disable-progress-bar",
                             *map(str, args)], capture_output=True, text=True, env=client_env(),
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"twine failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_twine_upload_then_pip_install(secured, tmp_path):
    dist = tmp_path / "dist"
    make_corpus(dist, projects=1, versions=2, prefix="Team")
    files = sorted(dist.iterdir())
    twine("--repository-url", secured.url, "-u", "alice", "-p", "alice-pw", *files)
    # pip installs it at once, with the reader's credentials in the URL.
    subprocess.run([sys.executable, "-m", "venv", tmp_path / "venv"], check=True)
    index = secured.url.replace("http://", "http://bob:bob-pw@") + "simple/"
    result = subprocess.run([tmp_path / "venv" / "bin" / "pip", "install", "--no-cache-dir",
                             "--index-url", index, "team-pkg-00000"],
                            capture_output=True, text=True, env=client_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bob-pw" not in secured.log()

    # The identical file again: 200, nothing changes.
    twine("--repository-url", secured.url, "-u", "alice", "-p", "alice-pw", files[0])

    # Other content under the same name: 409, which --skip-existing skips.
    other = tmp_path / "other"
    other.mkdir()
    conflicting = other / files[0].name
    name, version = "team_pkg_00000", "1.0.0"
    if files[0].name.endswith(".whl"):
        conflicting.write_bytes(wheel_bytes(name, version, requires_python=">=3.1"))
    else:
        pytest.fail("expected a wheel first")
    failed = twine("--repository-url", secured.url, "-u", "alice", "-p", "alice-pw",
                   conflicting, check=False)
    assert failed.returncode != 0 and "409" in failed.stdout + failed.stderr
    skipped = twine("--repository-url", secured.url, "-u", "alice", "-p", "alice-pw",
                    "--skip-existing", conflicting)
    assert "Skipping" in skipped.stdout + skipped.stderr
    stored = os.path.join(secured.root, "team-pkg-00000", files[0].name)
    assert open(stored, "rb").read() == files[0].read_bytes()


def test_twine_without_and_with_wrong_or_read_only_credentials(secured, tmp_path):
    dist = tmp_path / "dist"
    make_corpus(dist, projects=1, versions=1)
    (wheel,) = dist.iterdir()
    wrong = twine("--repository-url", secured.url, "-u", "alice", "-p", "nope", wheel, check=False)
    assert wrong.returncode != 0 and "401" in wrong.stdout + wrong.stderr
    read_only = twine("--repository-url", secured.url, "-u", "bob", "-p", "bob-pw", wheel,
                      check=False)
    assert read_only.returncode != 0 and "403" in read_only.stdout + read_only.stderr
    # No credentials at all (twine always sends some, so a plain request).
    ctype, body = multipart_body(upload_fields("bench-pkg-00000", "1.0.0", wheel.read_bytes()),
                                 [("content", wheel.name, wheel.read_bytes())])
    status, headers, _ = get_post(secured.url, body, {"Content-Type": ctype})
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="ppypi"'
    assert not os.path.exists(os.path.join(secured.root, "bench-pkg-00000"))
    for secret in ("nope", "bob-pw", "alice-pw"):
        assert secret not in secured.log()


def get_post(url, body, headers):
    import urllib.request
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw_request(port, head, body=b"", read=True):
    """Send bytes on a socket; return the status line (or None if none came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        if not read:
            return None
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data.split(b"\r\n", 1)[0] if data else None


def auth_header(token):
    return b"Authorization: Basic " + base64.b64encode(b"__token__:" + token.encode()) + b"\r\n"


@pytest.fixture
def open_server(tmp_path, daemon_factory):
    d = daemon_factory(tmp_path / "root", "--extra-index-url", "")
    d.token = open(os.path.join(d.root, ".ppypi", "upload-token")).read().strip()
    return d


def stored_files(root):
    out = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        out |= {os.path.relpath(os.path.join(folder, f), root) for f in files}
    return out


def test_oversized_declared_length_is_refused_before_reading(open_server):
    head = (b"POST / HTTP/1.1\r\nHost: x\r\n" + auth_header(open_server.token) +
            b"Content-Type: multipart/form-data; boundary=zz\r\n"
            b"Content-Length: 100000000000\r\n\r\n")
    # No body is sent at all: the answer comes from the headers alone.
    assert raw_request(open_server.port, head) == b"HTTP/1.1 413 Request body too large"
    assert get(open_server.url + "health")[0] == 200


def test_truncated_body_writes_nothing(open_server):
    data = wheel_bytes("acme_tool", "1.0") + os.urandom(300_000)
    ctype, body = multipart_body(upload_fields("acme-tool", "1.0", data),
                                 [("content", "acme_tool-1.0-py3-none-any.whl", data)])
    head = (b"POST / HTTP/1.1\r\nHost: x\r\n" + auth_header(open_server.token) +
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    raw_request(open_server.port, head, body[: len(body) // 2], read=False)
    assert get(open_server.url + "simple/")[0] == 200
    assert stored_files(open_server.root) == set()
    assert os.listdir(os.path.join(open_server.root, ".ppypi", "incoming")) == []


def test_16_concurrent_uploads(open_server):
    uploads = []
    for i in range(8):  # one project, eight versions
        uploads.append(("acme_tool", f"1.{i}"))
    for i in range(8):  # eight projects
        uploads.append((f"proj_{i}", "1.0"))
    uploads += uploads[:2]  # and the same two files twice, at the same time
    results = [None] * len(uploads)

    def send(i, dist, version):
        data = wheel_bytes(dist, version)
        filename = f"{dist}-{version}-py3-none-any.whl"
        ctype, body = multipart_body(upload_fields(dist.replace("_", "-"), version, data),
                                     [("content", filename, data)])
        creds = base64.b64encode(f"__token__:{open_server.token}".encode()).decode()
        results[i] = get_post(open_server.url, body, {"Content-Type": ctype,
                                                      "Authorization": "Basic " + creds})[0]

    threads = [threading.Thread(target=send, args=(i, *u)) for i, u in enumerate(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * len(uploads)
    expected = {f"{d.replace('_', '-')}/{d}-{v}-py3-none-any.whl" for d, v in set(uploads)}
    assert stored_files(open_server.root) == expected
    listed = set()
    for project in {d.replace("_", "-") for d, _ in uploads}:
        status, _, body = get(open_server.url + f"simple/{project}/")
        assert status == 200
        names = [line.split(">")[1].split("<")[0] for line in body.decode().splitlines()
                 if line.startswith("<a href")]
        assert len(names) == len(set(names))
        listed |= {f"{project}/{n}" for n in names}
    assert listed == expected
    assert open_server.health()["repositories"]["default"]["files"] == 16


@pytest.mark.parametrize("when", ["while the body arrives", "after the body was sent"])
def test_sigkill_during_a_large_upload(tmp_path, daemon_factory, when):
    root = tmp_path / "root"
    d = daemon_factory(root, "--extra-index-url", "")
    token = open(root / ".ppypi" / "upload-token").read().strip()
    payload = wheel_bytes("big_tool", "1.0")
    # A valid wheel with a large member, so parsing and storing take a while.
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        with zipfile.ZipFile(io.BytesIO(payload)) as src:
            for item in src.infolist():
                z.writestr(item, src.read(item))
        z.writestr("big_tool/blob.bin", os.urandom(64 << 20))
    data = buf.getvalue()
    ctype, body = multipart_body(upload_fields("big-tool", "1.0", data),
                                 [("content", "big_tool-1.0-py3-none-any.whl", data)])
    head = (b"POST / HTTP/1.1\r\nHost: x\r\n" + auth_header(token) +
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        if when == "while the body arrives":
            s.sendall(head + body[: len(body) * 2 // 3])
            wait_for(lambda: _spooled(root) > 0, what="the body to be spooled")
        else:
            s.sendall(head + body)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
    finally:
        s.close()
    d.start()
    status = d.health()["repositories"]["default"]
    files = stored_files(root)
    if files:  # the upload finished before the kill: then whole and indexed
        assert files == {"big-tool/big_tool-1.0-py3-none-any.whl"}
        assert hashlib.sha256((root / "big-tool" / "big_tool-1.0-py3-none-any.whl")
                              .read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert status["files"] == 1
    else:
        assert status["files"] == 0
        assert get(d.url + "simple/big-tool/")[0] == 404
    assert os.listdir(root / ".ppypi" / "incoming") == []
    assert os.listdir(root / ".ppypi" / "tmp") == []


def _spooled(root):
    """Bytes of request bodies being spooled under ROOT/.ppypi/tmp. The spool
    file is unlinked at once, so look at the open files of processes."""
    tmp = os.path.join(root, ".ppypi", "tmp")
    size = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(tmp):
                    size += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
    return size


def test_twine_to_simple_as_configured_for_private_pypi(tmp_path, daemon_factory):
    """
    private-pypi took uploads at /simple/ (choosing the repository by the
    username); twine configured that way, or with /R/simple/, keeps working.
    """
    config = tmp_path / "private.toml"
    config.write_text('[first]\ntype = "file_system"\nread_secret = "first-r"\n'
                      'write_secret = "first-w"\n'
                      '[acme]\ntype = "file_system"\nread_secret = "acme-r"\n'
                      'write_secret = "acme-w"\n')
    d = daemon_factory(tmp_path / "root", "--config", config, "--extra-index-url", "")
    cases = [("Alpha", "simple/", "first", "first-w", "first"),
             ("Beta", "simple/", "acme", "acme-w", "acme"),      # chosen by the username
             ("Gamma", "acme/simple/", "acme", "acme-w", "acme")]
    for prefix, path, user, password, repository in cases:
        dist = tmp_path / prefix
        make_corpus(dist, projects=1, versions=1, prefix=prefix)
        (wheel,) = dist.iterdir()
        twine("--repository-url", d.url + path, "-u", user, "-p", password, wheel)
        project = f"{prefix.lower()}-pkg-00000"
        assert os.path.exists(os.path.join(d.root, repository, project, wheel.name)), prefix
        index = d.url + ("acme/" if repository == "acme" else "") + f"simple/{project}/"
        status, _, body = get(index, {"Authorization": "Basic " + base64.b64encode(
            f"{repository}:{repository}-r".encode()).decode()})
        assert status == 200 and wheel.name.encode() in body, prefix
    # A reader's secret may not upload there either.
    (wheel,) = (tmp_path / "Alpha").iterdir()
    refused = twine("--repository-url", d.url + "simple/", "-u", "first", "-p", "first-r",
                    wheel, check=False)
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
