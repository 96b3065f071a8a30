"""
Faults: a full disk, a read-only repository, a damaged index cache, SIGKILL
while the index is written, SIGTERM during a sync, and GitHub failing in the
middle of an upload.

Where things are written: a request body of 100,000 bytes or more is spooled
to ROOT/.ppypi/tmp (an unlinked temporary file) as it arrives; the upload's
file part is then written to the repository folder's .ppypi/incoming and
linked into PROJECT/FILENAME; the index cache is ROOT/.ppypi/repositories/R.

The disk tests put ROOT on a small tmpfs (they need root to mount one, and
are skipped otherwise); the GitHub tests run in process, against
tests/fake_github.py with time on a Clock, with faults injected at chosen
requests.
"""

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
import zipfile

import bcrypt
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET

from ppypi.backends.github import CLEANUP_GRACE, CLEANUP_INTERVAL

from .conftest import Daemon, get, make_corpus, wait_for
from .fake_github import FakeGitHub, repository_yaml
from .helpers import InProcess, StubHTTP, basic, drive, multipart_body, upload_fields, wheel_bytes

# -- helpers --------------------------------------------------------------


def big_wheel(dist, version, extra_bytes):
    """A valid wheel carrying C{extra_bytes} of incompressible data."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        with zipfile.ZipFile(io.BytesIO(wheel_bytes(dist, version))) as src:
            for item in src.infolist():
                z.writestr(item, src.read(item))
        z.writestr(f"{dist}/blob.bin", os.urandom(extra_bytes))
    return buf.getvalue()


def upload_body(dist, version, data):
    return multipart_body(upload_fields(dist.replace("_", "-"), version, data),
                          [("content", f"{dist}-{version}-py3-none-any.whl", data)])


def post(url, body, headers, timeout=60):
    """(status, body) of a POST; status None when the connection broke without an answer."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (ConnectionError, urllib.error.URLError, OSError) as e:
        return None, repr(e).encode()


def upload(url, user, password, dist, version, data=None):
    data = wheel_bytes(dist, version) if data is None else data
    ctype, body = upload_body(dist, version, data)
    return post(url, body, {"Content-Type": ctype, "Authorization": basic(user, password)})


def raw_post(port, head, body, timeout=30):
    """
    Send a request whose body the server may stop reading (a thread sends,
    this one reads): the status line the server answered, or None.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send():
        with contextlib.suppress(OSError):
            sock.sendall(head + body)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        sock.close()
        sender.join(timeout)
    return data.split(b"\r\n", 1)[0] if data else None


def dist_files(root):
    """Distribution files below ROOT (the state folder and dot entries aside)."""
    out = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out |= {os.path.relpath(os.path.join(folder, f), root) for f in files
                if f.endswith((".whl", ".tar.gz", ".zip"))}
    return out


def snapshot(root):
    """Every file below ROOT with its size and mtime."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


def leftovers(root):
    """Partial files anywhere below ROOT: uploads in progress and atomic-write temporaries."""
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files
                  if f.endswith(".part") or ".tmp-" in f]
    for sub in ("incoming", "tmp"):
        path = os.path.join(root, ".ppypi", sub)
        if os.path.isdir(path):
            found += [f".ppypi/{sub}/{f}" for f in os.listdir(path)]
    return sorted(set(found))


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def token_of(root):
    with open(os.path.join(root, ".ppypi", "upload-token")) as f:
        return f.read().strip()


def listed(url, project):
    status, _, body = get(url + f"simple/{project}/")
    assert status == 200, (project, status, body)
    return re.findall(r'<a href="[^"#]*/([^/"#]+)#sha256=([0-9a-f]{64})"', body.decode())


class Machine:
    """tmpfs mounts and daemons, torn down in the right order (daemons first)."""

    def __init__(self):
        self.mounts = []
        self.daemons = []

    def mount(self, path, size="8m"):
        os.makedirs(path, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                 str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        self.mounts.append(str(path))
        return path

    def remount(self, path, mode):
        subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)

    def daemon(self, root, *args):
        d = Daemon(root, *args)
        self.daemons.append(d)
        return d.start()

    def close(self):
        for d in self.daemons:
            d.stop()
        for path in reversed(self.mounts):
            if subprocess.run(["umount", path]).returncode != 0:
                subprocess.run(["umount", "-l", path])


@pytest.fixture
def machine():
    m = Machine()
    try:
        yield m
    finally:
        m.close()


# -- a full disk -----------------------------------------------------------


def _full_disk_server(machine, tmp_path):
    root = machine.mount(tmp_path / "root", "8m")
    make_corpus(root, projects=3, versions=1)
    d = machine.daemon(root, "--extra-index-url", "")
    assert d.health()["repositories"]["default"]["files"] == 3
    return root, d


def _still_serving(d, root, files_before, free_before):
    """Pages, downloads and health after a failed upload; then a small upload lands."""
    assert dist_files(root) == files_before
    assert leftovers(root) == []
    assert get(d.url + "simple/")[0] == 200
    (name, sha), = listed(d.url, "bench-pkg-00000")
    status, _, data = get(d.url + f"packages/bench-pkg-00000/{name}")
    assert status == 200 and hashlib.sha256(data).hexdigest() == sha
    health = d.health()["repositories"]["default"]
    assert health["ok"] and health["files"] == 3
    # Whatever the failed upload held is given back...
    wait_for(lambda: free_bytes(root) >= free_before - (256 << 10), timeout=15,
             what="the failed upload's space to be freed")
    # ...and a small upload then succeeds.
    status, body = upload(d.url, "__token__", token_of(root), "small_tool", "1.0")
    assert status == 200, body
    assert listed(d.url, "small-tool")[0][0] == "small_tool-1.0-py3-none-any.whl"
    assert dist_files(root) == files_before | {"small-tool/small_tool-1.0-py3-none-any.whl"}
    assert leftovers(root) == []


def test_disk_full_while_storing_the_upload_is_507_and_nothing_partial(machine, tmp_path):
    """The body fits in the spool (ROOT/.ppypi/tmp) but not a second time in .ppypi/incoming."""
    root, d = _full_disk_server(machine, tmp_path)
    files_before, free = dist_files(root), free_bytes(root)
    data = big_wheel("big_tool", "1.0", free * 6 // 10)
    status, body = upload(d.url, "__token__", token_of(root), "big_tool", "1.0", data)
    assert (status, body) == (507, b"507 Insufficient storage\n")
    _still_serving(d, root, files_before, free)
    assert "Unhandled Error" not in d.log() and "Traceback" not in d.log()


def _spool_overflow(machine, tmp_path):
    """Upload a valid wheel larger than the free space: the spool fills the disk first."""
    root, d = _full_disk_server(machine, tmp_path)
    files_before, free = dist_files(root), free_bytes(root)
    data = big_wheel("big_tool", "1.0", free + (1 << 20))
    ctype, body = upload_body("big_tool", "1.0", data)
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            f"{basic('__token__', token_of(root))}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return root, d, files_before, free, raw_post(d.port, head, body)


def test_disk_full_while_spooling_the_body_keeps_nothing_and_recovers(machine, tmp_path):
    root, d, files_before, free, status_line = _spool_overflow(machine, tmp_path)
    assert status_line is None or not status_line.startswith(b"HTTP/1.1 2"), status_line
    _still_serving(d, root, files_before, free)


def test_disk_full_while_spooling_the_body_answers_507(machine, tmp_path):
    _, _, _, _, status_line = _spool_overflow(machine, tmp_path)
    assert status_line is not None and status_line.startswith(b"HTTP/1.1 507"), status_line


# -- a read-only repository ------------------------------------------------


def _read_only_server(machine, tmp_path):
    root = machine.mount(tmp_path / "root", "16m")
    make_corpus(root, projects=2, versions=2)
    config = tmp_path / "ppypi.yaml"
    pw = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode()
    config.write_text(f"""
repositories:
  default:
    read: anyone
    write: [alice]
    sync_interval: 0.2
users:
  alice: {{password: "{pw}"}}
""")
    d = machine.daemon(root, "--config", str(config), "--extra-index-url", "")
    machine.remount(root, "ro")
    return root, d


def test_read_only_repository_serves_refuses_uploads_with_503_and_keeps_syncing(
        machine, tmp_path):
    root, d = _read_only_server(machine, tmp_path)
    before = snapshot(root)
    remounted = d.health()["repositories"]["default"]["last_sync"]
    # Pages, downloads and metadata.
    assert get(d.url + "simple/")[0] == 200
    links = listed(d.url, "bench-pkg-00001")
    assert len(links) == 2
    for name, sha in links:
        status, _, data = get(d.url + f"packages/bench-pkg-00001/{name}")
        assert status == 200 and hashlib.sha256(data).hexdigest() == sha
        assert get(d.url + f"packages/bench-pkg-00001/{name}.metadata")[0] == 200
    # A small upload (its body is kept in memory): a clear 503.
    status, body = upload(d.url, "alice", "alice-pw", "new_tool", "1.0")
    assert (status, body) == (503, b"503 Repository cannot store uploads now\n")
    # pypiserver's remove_pkg goes through the same handler.
    ctype, form = multipart_body([(":action", "remove_pkg"), ("name", "bench-pkg-00000"),
                                  ("version", "1.0.0")])
    status, body = post(d.url, form, {"Content-Type": ctype,
                                      "Authorization": basic("alice", "alice-pw")})
    assert status == 503, body
    assert len(listed(d.url, "bench-pkg-00000")) == 2
    # Nothing was written, and the sync keeps running and succeeding.
    wait_for(lambda: d.health()["repositories"]["default"]["last_sync"] > remounted + 0.5,
             timeout=10, what="syncs after the remount")
    health = d.health()
    assert health["status"] == "ok" and health["repositories"]["default"]["files"] == 4
    assert snapshot(root) == before
    assert "Unhandled Error" not in d.log() and "Traceback" not in d.log()


def test_read_only_repository_large_upload_gets_a_clear_503(machine, tmp_path):
    root, d = _read_only_server(machine, tmp_path)
    before = snapshot(root)
    data = big_wheel("big_tool", "1.0", 300_000)
    status, body = upload(d.url, "alice", "alice-pw", "big_tool", "1.0", data)
    assert snapshot(root) == before
    assert status in (503, 507), (status, body)


def test_read_only_repository_yank_is_a_clear_503_not_a_500(machine, tmp_path):
    root, d = _read_only_server(machine, tmp_path)
    status, body = post(d.url + "yank/bench-pkg-00000/1.0.0", b"reason=broken",
                        {"Content-Type": "application/x-www-form-urlencoded",
                         "Authorization": basic("alice", "alice-pw")})
    assert status == 503, (status, body)


# -- the index cache, deleted or damaged while stopped ---------------------


def _restart(d):
    d.stop()
    d.start()
    return d.health()["repositories"]["default"]


@pytest.fixture
def stopped_server(tmp_path, daemon_factory):
    root = tmp_path / "root"
    make_corpus(root, projects=4, versions=2, sdist=True)   # 16 files
    d = daemon_factory(root, "--extra-index-url", "")
    assert d.health()["repositories"]["default"]["files"] == 16
    return root, d


def _state(root):
    return root / ".ppypi" / "repositories" / "default"


def test_deleted_index_cache_is_rebuilt_on_restart(stopped_server):
    root, d = stopped_server
    links = listed(d.url, "bench-pkg-00002")
    for damage in ("files.json", "repositories", ".ppypi"):
        d.stop()
        target = {"files.json": _state(root) / "files.json",
                  "repositories": root / ".ppypi" / "repositories",
                  ".ppypi": root / ".ppypi"}[damage]
        subprocess.run(["rm", "-rf", str(target)], check=True)
        d.start()
        health = d.health()["repositories"]["default"]
        assert (health["files"], health["hashed_since_start"]) == (16, 16), (damage, health)
        assert listed(d.url, "bench-pkg-00002") == links, damage
        assert "#warn]" not in d.log(), (damage, d.log())
        # What was rebuilt is whole: the next start reads nothing again.
        assert _restart(d)["hashed_since_start"] == 0, damage


def test_corrupt_index_cache_is_rebuilt_with_a_warning(stopped_server):
    root, d = stopped_server
    links = listed(d.url, "bench-pkg-00003")
    cache = _state(root) / "files.json"
    good = cache.read_bytes()
    middle = len(good) // 2
    for name, damaged in [("garbage", b"\x00\xff{not json"),
                          ("truncated", good[:middle]),
                          ("empty", b""),
                          ("a list", b"[1, 2, 3]\n"),
                          ("bytes overwritten in the middle",
                           good[:middle] + b'}{"\xff[,' + good[middle + 6:])]:
        d.stop()
        cache.write_bytes(damaged)
        d.start()
        health = d.health()["repositories"]["default"]
        assert (health["ok"], health["files"]) == (True, 16), (name, health)
        assert health["hashed_since_start"] > 0, (name, health)
        assert listed(d.url, "bench-pkg-00003") == links, name
        warnings = [line for line in d.log().splitlines() if "#warn]" in line]
        assert any("index cache" in w and "rebuilt" in w for w in warnings), (name, d.log())
        # What was rebuilt is whole: the next start reads nothing again.
        assert _restart(d)["hashed_since_start"] == 0, name


def test_deleted_metadata_store_is_rebuilt_on_restart(stopped_server):
    root, d = stopped_server
    (name, _), *_ = listed(d.url, "bench-pkg-00000")
    path = f"packages/bench-pkg-00000/{name}.metadata"
    status, _, meta = get(d.url + path)
    assert status == 200 and meta.startswith(b"Metadata-Version")
    d.stop()
    subprocess.run(["rm", "-rf", str(_state(root) / "metadata")], check=True)
    d.start()
    _, _, page = get(d.url + "simple/bench-pkg-00000/")
    assert f'data-core-metadata="sha256={hashlib.sha256(meta).hexdigest()}"'.encode() in page
    status, _, again = get(d.url + path)
    assert (status, again) == (200, meta)


# -- SIGKILL while the index cache is written -------------------------------


def _proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture(scope="module")
def killed_mid_index_write(tmp_path_factory):
    """
    20,001 files (make_corpus 6667 x 3), then files added by hand: the next
    sync rewrites ROOT/.ppypi/repositories/default/files.json (megabytes, and
    fsynced). When its temporary file appears the daemon is stopped (SIGSTOP,
    until /proc says T) and, if the temporary file is still there, killed
    with SIGKILL in the middle of the write; if not, it goes on, and the
    next file added tries again.

    The files are on a tmpfs when one can be mounted (making the corpus and
    the first sync faster); ROOT/.ppypi stays on disk.
    """
    base = tmp_path_factory.mktemp("sigkill")
    root = base / "root"
    packages = root / "packages"
    packages.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs",
                              str(packages)], capture_output=True).returncode == 0
    config = base / "ppypi.yaml"
    config.write_text("repositories:\n  default:\n    path: packages\n    sync_interval: 0.2\n")
    d = Daemon(root, "--config", str(config), "--extra-index-url", "")
    cache = _state(root) / "files.json"
    result = {"attempts": 0}

    def writing():
        return [n for n in os.listdir(cache.parent) if n.startswith("files.json.tmp-")]

    try:
        make_corpus(packages, projects=6667, versions=3)
        d.start()
        assert d.health()["repositories"]["default"]["files"] == 20001
        killed_writing = None
        for attempt in range(20):
            result["attempts"] += 1
            before = os.stat(cache).st_ino
            (packages / f"extra_pkg_{attempt:02d}-1.0-py3-none-any.whl").write_bytes(
                wheel_bytes(f"extra_pkg_{attempt:02d}", "1.0"))
            try:   # the write begins, or it is over already (files.json replaced)
                wait_for(lambda: writing() or os.stat(cache).st_ino != before, timeout=10,
                         interval=0, what="the index write")
            except AssertionError:
                continue
            if not writing():
                continue
            os.kill(d.proc.pid, signal.SIGSTOP)
            wait_for(lambda: _proc_state(d.proc.pid) == "T", timeout=5, interval=0.001,
                     what="the daemon to stop")
            if writing():
                killed_writing = writing()
                d.proc.send_signal(signal.SIGKILL)
                d.proc.wait(10)
                break
            os.kill(d.proc.pid, signal.SIGCONT)
        assert killed_writing, "never caught the daemon writing files.json"
        result["killed_writing"] = killed_writing
        # From here on, restarts with the default sync interval: a SIGTERM that
        # lands in a sync hangs the daemon (see test_sigterm_during_a_sync_exits).
        config.write_text("repositories:\n  default:\n    path: packages\n")
        d.stop()
        d.start()
        result["health"] = d.health()["repositories"]["default"]
        result["on_disk"] = dist_files(root)
        result["page"] = listed(d.url, "extra-pkg-00")
        # The index cache rewritten after the crash is whole: the next start reads nothing.
        d.stop()
        d.start()
        result["again"] = d.health()["repositories"]["default"]
        result["leftovers"] = sorted(
            os.path.relpath(p, root) for p in glob.glob(str(root / ".ppypi" / "**" / "*.tmp-*"),
                                                        recursive=True))
        result["log"] = d.log()
    finally:
        d.stop()
        if mounted and subprocess.run(["umount", str(packages)]).returncode != 0:
            subprocess.run(["umount", "-l", str(packages)])
    return result


def _has_open(pid, path):
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_sigterm_during_a_sync_exits(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big_tool-1.0-py3-none-any.whl"
    with open(big, "wb") as f:
        f.truncate(1 << 30)    # sparse: no disk used, and hashing it takes a second or two
    d = Daemon(root, "--extra-index-url", "")
    try:
        d.start(wait_ready=False)
        wait_for(lambda: _has_open(d.proc.pid, big), timeout=20, interval=0.001,
                 what="the first sync to read the big file")
        d.proc.send_signal(signal.SIGTERM)
        try:
            code = d.proc.wait(8)
        except subprocess.TimeoutExpired:
            code = None
        assert code is not None, "twistd still running 8 s after SIGTERM:\n" + d.log()
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.stop()


def test_sigkill_during_index_write_restart_is_consistent(killed_mid_index_write):
    r = killed_mid_index_write
    assert r["health"]["ok"] and r["health"]["files"] == len(r["on_disk"]) > 20001
    assert [name for name, _ in r["page"]] == ["extra_pkg_00-1.0-py3-none-any.whl"]
    assert (r["again"]["files"], r["again"]["hashed_since_start"]) == (len(r["on_disk"]), 0)


def test_sigkill_during_index_write_leaves_no_temporary_files(killed_mid_index_write):
    assert killed_mid_index_write["leftovers"] == []


# -- GitHub failing in the middle of an upload ------------------------------

GH_CONFIG = "repositories:\n" + repository_yaml("http://api.github.test")
READER = "reader-tok"


class GitHub:
    """A fake GitHub (on a Clock) with faults at chosen requests, and one ppypi on it."""

    def __init__(self, tmp_path):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.fake = FakeGitHub(clock=self.clock)
        self.fake.add_repo("acme", "pkgs", private=True)
        self.fake.add_token("admin-tok", "bot", {"acme/pkgs": "admin"})
        self.fake.add_token("writer-tok", "alice", {"acme/pkgs": "push"})
        self.fake.add_token(READER, "bob", {"acme/pkgs": "pull"})
        self.http = StubHTTP(self.fake)
        self.server = InProcess(tmp_path / "root", config_text=GH_CONFIG,
                                extra_index_url="https://pypi.example/simple/",
                                http=self.http, admin_secret_text="acme: {raw: admin-tok}",
                                clock=self.clock)
        self.repo = self.fake.repo("acme/pkgs")
        self.run(self.server.repository.backend.init())
        assert self.run(self.server.repository.sync()) is True
        self.hooks = []
        self.abandoned = []
        self._render = self.fake.render
        self.fake.render = self._hooked

    def _hooked(self, request):
        kind, path = self.fake._which(request)
        for hook in list(self.hooks):
            answer = hook(request.method.decode(), kind, path, request)
            if answer is not None:
                return answer
        return self._render(request)

    def lose_answer(self, request):
        """Let the fake do the request, then never answer (the client times out)."""
        self._render(request)
        self.abandoned.append(request)
        return NOT_DONE_YET

    def run(self, d):
        if not isinstance(d, Deferred):
            d = Deferred.fromCoroutine(d)
        return drive(d, self.clock, stubs=[self.http, self.server.treq])

    def upload(self, dist="acme_tool", version="1.0", token="writer-tok"):
        data = wheel_bytes(dist, version)
        r, body = self.run(self.server.upload(
            upload_fields(dist.replace("_", "-"), version, data),
            [("content", f"{dist}-{version}-py3-none-any.whl", data)], auth=("x", token)))
        return r.code, r.headers, body

    def get(self, path, token=READER):
        r, body = self.run(self.server.get(path, {"Authorization": basic("x", token)}))
        return r.code, r.headers, body

    def published(self):
        """(index entries {filename: entry}, assets {id: name}) as GitHub holds them now."""
        entries = {}
        for path, data in self.repo.files.get("ppypi", {}).items():
            if path.startswith("index/"):
                entries.update(json.loads(data).get("files", {}))
        return entries, {a.id: a.name for a in self.repo.assets.values()}

    def half_published(self):
        """Index entries without their assets, and assets without an index entry."""
        entries, assets = self.published()
        named = set()
        problems = []
        for filename, entry in entries.items():
            for key, name in (("asset_id", filename), ("metadata_asset_id",
                                                       filename + ".metadata")):
                if entry.get(key) is not None:
                    named.add(entry[key])
                    if assets.get(entry[key]) != name:
                        problems.append(f"index entry {filename}: no asset {name}")
        problems += [f"asset {name} ({id}) in no index entry"
                     for id, name in assets.items() if id not in named]
        return problems


def _nth(method, kind, pattern, n, action):
    """A hook applying C{action(request)} to the n-th request matching."""
    seen = []

    def hook(m, k, path, request):
        if m == method and k == kind and re.search(pattern, path):
            seen.append(path)
            if len(seen) == n:
                hook.fired = True
                return action(request)
        return None
    hook.fired = False
    return hook


def _fail_502(gh):
    return lambda request: gh.fake._send(request, gh.fake._failure("uploads", 502))


def _hang(gh):
    def action(request):
        gh.fake.fail_next(1, host="uploads", timeout=True)
        return gh._render(request)   # the fake hangs it, before doing anything
    return action


def _rate_limit_after(gh):
    def action(request):
        answer = gh._render(request)
        gh.fake.exhaust_rate_limit("writer-tok", reset_in=120)
        return answer
    return action


ASSETS = r"/releases/\d+/assets$"
FAULTS = {
    # the uploads host answers 502 to the distribution, or to its metadata
    "502 on the file asset": lambda gh: _nth("POST", "uploads", ASSETS, 1, _fail_502(gh)),
    "502 on the metadata asset": lambda gh: _nth("POST", "uploads", ASSETS, 2, _fail_502(gh)),
    # the uploads host never answers (fail_next(timeout=True))
    "timeout on the file asset": lambda gh: _nth("POST", "uploads", ASSETS, 1, _hang(gh)),
    # the writer's token runs out between the release and the asset, or
    # between the assets and the index write
    "rate limited after the release": lambda gh: _nth(
        "POST", "api", r"/releases$", 1, _rate_limit_after(gh)),
    "rate limited after the assets": lambda gh: _nth(
        "POST", "uploads", ASSETS, 2, _rate_limit_after(gh)),
    # the asset landed, but its answer was lost
    "answer lost after the file asset landed": lambda gh: _nth(
        "POST", "uploads", ASSETS, 1, gh.lose_answer),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_github_fault_mid_upload_never_half_publishes(tmp_path, fault):
    gh = GitHub(tmp_path)
    assert gh.upload("other_tool", "1.0")[0] == 200   # the writer's permissions are cached
    hook = FAULTS[fault](gh)
    gh.hooks.append(hook)
    status, headers, body = gh.upload()
    gh.hooks.clear()
    assert hook.fired
    assert status in (200, 503), (status, body)
    if status == 503 and fault.startswith("rate limited"):
        assert 1 <= int(headers.getRawHeaders("Retry-After")[0]) <= 120
    # At no moment is there an index entry without its asset.
    assert [p for p in gh.half_published() if p.startswith("index entry")] == []
    if status == 200:
        assert "acme_tool-1.0-py3-none-any.whl" in gh.published()[0]
    else:
        assert "acme_tool-1.0-py3-none-any.whl" not in gh.published()[0]
    # While GitHub fails the sync, names are never sent to the extra index.
    gh.fake.fail_next(3, status=502)
    assert gh.run(gh.server.repository.sync()) is False
    for project in ("acme-tool", "never-seen"):
        code, headers, _ = gh.get(f"/simple/{project}/")
        assert code == 503 and headers.getRawHeaders("Retry-After"), (project, code)
    assert gh.get("/simple/other-tool/")[0] == 200
    # GitHub back, rate limits reset, leftovers past their grace period: the
    # next cleanup leaves every asset named by the index and nothing else.
    gh.clock.advance(CLEANUP_INTERVAL + CLEANUP_GRACE + 1)
    assert gh.run(gh.server.repository.sync()) is True
    assert gh.half_published() == []
    # And the upload, tried again, lands whole.
    status, _, body = gh.upload()
    assert status == 200, body
    assert gh.half_published() == []
    assert sorted(gh.published()[0]) == ["acme_tool-1.0-py3-none-any.whl",
                                        "other_tool-1.0-py3-none-any.whl"]
    code, _, page = gh.get("/simple/acme-tool/")
    assert code == 200 and b"acme_tool-1.0-py3-none-any.whl" in page
    assert gh.get("/simple/never-seen/")[0] == 302


def test_github_index_write_answer_lost_never_leaves_an_entry_without_its_asset(tmp_path):
    gh = GitHub(tmp_path)
    assert gh.upload("other_tool", "1.0")[0] == 200
    hook = _nth("PUT", "api", r"/contents/index/acme-tool\.json$", 1, gh.lose_answer)
    gh.hooks.append(hook)
    status, _, body = gh.upload()
    gh.hooks.clear()
    assert hook.fired
    assert status in (200, 503), (status, body)
    gh.clock.advance(CLEANUP_INTERVAL + CLEANUP_GRACE + 1)
    assert gh.run(gh.server.repository.sync()) is True
    assert gh.half_published() == []
    code, _, page = gh.get("/simple/acme-tool/")
    if code == 200:
        assert gh.get("/packages/acme-tool/acme_tool-1.0-py3-none-any.whl")[0] == 302


def test_github_unreachable_during_upload_is_never_a_redirect(tmp_path):
    gh = GitHub(tmp_path)
    assert gh.upload("other_tool", "1.0")[0] == 200   # the writer's permissions are cached
    gh.fake.fail_next(3, status=502)    # creating the release fails, every try
    status, _, body = gh.upload()
    assert status == 503, body
    code, _, _ = gh.get("/simple/acme-tool/")
    assert code != 302


def test_a_spool_that_fails_again_when_closed_still_gets_its_507_out(tmp_path):
    """
    CI once lost the 507: the disk filled under a buffered spool write, and
    closing the spool (which writes what it still buffers) failed a second
    time, so the error escaped and the connection dropped before the
    answer. Here both the write and the close fail, as they did then.
    """
    import errno as errno_

    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from ppypi.web.site import IndexSite

    class FullDisk:
        closed = False

        def write(self, data):
            raise OSError(errno_.ENOSPC, "No space left on device")

        def close(self):
            self.closed = True
            raise OSError(errno_.ENOSPC, "No space left on device")

    site = IndexSite(None, str(tmp_path), {"default": 10**9}, reactor=Clock())
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
    request = channel.requests[-1]
    spool, request.content = request.content, FullDisk()
    spool.close()
    channel.dataReceived(b"x" * 1000)      # raised out of dataReceived before the fix
    assert transport.value().startswith(b"HTTP/1.1 507 Insufficient storage\r\n")
    channel.dataReceived(b"x" * 199_000)   # the rest is read and thrown away...
    assert transport.disconnecting          # ...then the connection closes
