"""
Credentials end to end: live daemons (--debug) with every kind of
credential ppypi takes (a bcrypt user from `ppypi passwd`, an htpasswd user,
private-pypi secrets in its TOML, the zero-config upload token, GitHub tokens
through a live fake GitHub), every request type with right, wrong, missing
and malformed credentials, 401 vs 403 under concurrent load, and then the
daemons' whole logs searched for every secret in every encoding.
"""

import base64
import hmac
import http.client
import json
import os
import random
import re
import stat
import subprocess
import threading
import time
import urllib.parse

import bcrypt
import pytest
import pytest_twisted
from twisted.internet.task import Clock

from ppypi.auth import READ, WRITE, Authenticator, Credentials
from ppypi.backends.github import LAYOUT, LAYOUT_FILE
from ppypi.config import ANYONE, AUTHENTICATED, Config, RepositoryConfig, Secret

from .fake_github import FakeGitHubProcess, repository_yaml
from .conftest import BIN, Daemon, client_env, make_corpus, wait_for
from .helpers import multipart_body, run_now, upload_fields, wheel_bytes

PPYPI = os.path.join(BIN, "ppypi")
TWINE = os.path.join(BIN, "twine")

# Every secret carries a marker (Qz...) found in no other text.
ALICE_PW = "alice:Qz1-S3cret/pw+%&= x"      # config user, bcrypt cost 12 (ppypi passwd)
CAROL_PW = "carol-Qz2-htpasswd!#pw"         # htpasswd user, bcrypt cost 12 (ppypi passwd)
BOB_PW = "bob-Qz3-readonly@pw"              # config user, read only (cost 4)
ALICE_WRONG = "alice-Qz4-wrong?pw"
MALLORY_PW = "mallory-Qz5-unknown$pw"
READ_SECRET = "toml-Qz6-read-secret"
WRITE_SECRET = "toml-Qz7-write/secret"
TOML_WRONG = "toml-Qz8-wrong-secret"
GH_ADMIN = "ghp_Qz9adminTOKEN"
GH_WRITER = "ghp_Qz10writerTOKEN"
GH_READER = "ghp_Qz11readerTOKEN"
GH_WRONG = "ghp_Qz12wrongTOKEN"
TOKEN_WRONG = "Qz13-not-the-upload-token-xxxxxxxxxx"
MALFORMED = {   # Authorization values that are not valid Basic credentials
    "no colon": "Basic " + base64.b64encode(b"Qz14-nocolon-secret").decode(),
    "bearer": "Bearer Qz15-bearer-secret",
    "not base64": "Basic Qz16!!secret**",
    "digest": 'Digest username="alice", response="Qz17digestsecret"',
    "empty user": "Basic " + base64.b64encode(b":Qz18-emptyuser-secret").decode(),
    "latin-1": "Basic " + base64.b64encode("alice:Qz19-caf\xe9".encode("latin-1")).decode(),
    "scheme only": "Basic",
}
WRONG_SECRETS = [ALICE_WRONG, MALLORY_PW, TOML_WRONG, GH_WRONG, TOKEN_WRONG,
                 "Qz14-nocolon-secret", "Qz15-bearer-secret", "Qz16!!secret**",
                 "Qz17digestsecret", "Qz18-emptyuser-secret", "Qz19-caf\xe9"]


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the servers --------------------------------------------------------------


LiveFakeGitHub = FakeGitHubProcess


def ppypi_passwd(user, password, *options):
    return subprocess.Popen([PPYPI, "passwd", *options, user], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, stdin=None):
    out, err = proc.communicate(stdin, timeout=120)
    assert proc.returncode == 0, out + err
    return out


class World:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """
    Three daemons with --debug: A (YAML: a cost-12 user, an htpasswd user, a
    read-only user, and a GitHub repository "gh" on a live fake), B
    (private-pypi TOML with read_secret/write_secret), C (zero
    configuration, the upload token). Then the whole request matrix.
    """
    w = World()
    base = tmp_path_factory.mktemp("credentials")
    w.base = base
    w.daemons = []
    w.fake = LiveFakeGitHub(base / "fake-github.log")
    try:
        # Hashes as `ppypi passwd` makes them (both at once: cost 12 is slow on purpose).
        alice = ppypi_passwd("alice", ALICE_PW, "--yaml")
        carol = ppypi_passwd("carol", CAROL_PW)
        w.alice_line = finish(alice, ALICE_PW + "\n").strip()
        w.carol_line = finish(carol, CAROL_PW + "\n").strip()
        bob_hash = bcrypt.hashpw(BOB_PW.encode(), bcrypt.gensalt(4)).decode()

        fake = w.fake
        fake.control("repos", {"owner": "acme", "name": "pkgs", "private": True})
        for token, user, level in ((GH_ADMIN, "bot", "admin"), (GH_WRITER, "writer", "push"),
                                   (GH_READER, "reader", "pull")):
            fake.control("tokens", {"token": token, "user": user, "repos": {"acme/pkgs": level}})
        layout = base64.b64encode(json.dumps(LAYOUT).encode()).decode()
        fake.control("commit", {"repo": "acme/pkgs", "branch": "ppypi",
                                "files": {LAYOUT_FILE: layout}})

        (base / "users.htpasswd").write_text(w.carol_line + "\n")
        (base / "ppypi.yaml").write_text(f"""
repositories:
  default:
    read: [alice, bob, carol]
    write: [alice, carol]
{repository_yaml(fake.api, name="gh")}users:
  {w.alice_line}
  bob: {{password: "{bob_hash}"}}
htpasswd: users.htpasswd
""")
        (base / "secrets.yaml").write_text(f"gh: {{raw: {json.dumps(GH_ADMIN)}}}\n")
        (base / "private.toml").write_text(f"""
[private]
type = "file_system"
read_secret = {json.dumps(READ_SECRET)}
write_secret = {json.dumps(WRITE_SECRET)}
""")
        common = ("--debug", "--extra-index-url", "")
        w.a = Daemon(base / "a", "--config", str(base / "ppypi.yaml"), "--admin-secret",
                     str(base / "secrets.yaml"), *common)
        w.b = Daemon(base / "b", "--config", str(base / "private.toml"), *common)
        w.c = Daemon(base / "c", *common)
        for d in (w.a, w.b, w.c):
            w.daemons.append(d)
            d.start(wait_ready=False)
        for d in (w.a, w.b, w.c):
            wait_for(d.ready, what=f"the first sync of {d.root}")
        w.token = open(base / "c" / ".ppypi" / "upload-token").read().strip()
        w.twine = run_twine(w)
        w.results = run_matrix(w)
        yield w
    finally:
        for d in w.daemons:
            d.stop()
        w.fake.stop()


def run_twine(w):
    """twine upload with each kind of credential, all at once."""
    dist = w.base / "dist"
    make_corpus(dist, projects=4, versions=1, prefix="Team")
    wheels = sorted(dist.iterdir())
    jobs = {
        "A config user (cost 12)": (w.a.url, "alice", ALICE_PW, wheels[0]),
        "A github writer token": (w.a.url + "gh/", "gh", GH_WRITER, wheels[1]),
        "B private-pypi write secret": (w.b.url, "private", WRITE_SECRET, wheels[2]),
        "C zero-config token": (w.c.url, "__token__", w.token, wheels[3]),
    }
    procs = {name: subprocess.Popen(
        [TWINE, "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
         url, "-u", user, "-p", password, str(wheel)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=client_env())
        for name, (url, user, password, wheel) in jobs.items()}
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, jobs[name][3].name)
    return results


# -- the request matrix ---------------------------------------------------------


def request(url, method="GET", headers=None, body=None, timeout=60):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def upload_request(dist, version):
    data = wheel_bytes(dist, version)
    ctype, body = multipart_body(upload_fields(dist.replace("_", "-"), version, data),
                                 [("content", f"{dist}-{version}-py3-none-any.whl", data)])
    return ctype, body


class Target:
    """One repository as a client sees it, and the credentials to try on it."""

    def __init__(self, name, base, project, filename, creds, read_open=False, file_status=200):
        self.name, self.base, self.project, self.filename = name, base, project, filename
        self.creds = creds                # {label: (Authorization value or None, role)}
        self.read_open = read_open        # anyone may read
        self.file_status = file_status    # 302 for GitHub's signed URLs


def expected(role, write, read_open):
    if role == "write":
        return 200
    if not write and read_open:
        return 200
    if role == "read":
        return 403 if write else 200
    return 401


# Credentials whose every check costs a bcrypt run at cost 12 (failures are never
# cached) try these request types only; the others try them all.
FEW = {"simple root", "upload", "yank"}


def check_matrix(target, label, auth, role, slot):
    """Every request type with one credential: [(what, got, wanted)] that differ."""
    headers = {"Authorization": auth} if auth else {}
    wrong = []
    few = label in ("unknown user", "token where there is none")

    def one(what, method, path, write, body=None, ctype=None, want=None):
        if few and what not in FEW:
            return None, {}, b""
        h = dict(headers)
        if ctype:
            h["Content-Type"] = ctype
        status, rh, data = request(target.base + path, method, h, body)
        want = want or expected(role, write, target.read_open)
        if status != want:
            wrong.append((target.name, label, what, status, want, data[:200]))
        if status == 401 and rh.get("WWW-Authenticate") != 'Basic realm="ppypi"':
            wrong.append((target.name, label, what, "no WWW-Authenticate", rh.items()))
        return status, rh, data

    p, f = target.project, target.filename
    one("home", "GET", "", False)
    one("simple root", "GET", "simple/", False)
    one("project page", "GET", f"simple/{p}/", False)
    one("project JSON", "GET", f"simple/{p}/?format=application/vnd.pypi.simple.v1%2Bjson",
        False)
    ok = expected(role, False, target.read_open) == 200
    status, rh, _ = one("file", "GET", f"packages/{p}/{f}", False,
                        want=target.file_status if ok else None)
    if status == 302:
        location = rh["Location"]
        assert "Qz" not in location and location.startswith("http://127.0.0.3:"), location
    one("metadata", "GET", f"packages/{p}/{f}.metadata", False)
    one("pypi json", "GET", f"pypi/{p}/json", False)
    # A fresh file each: upload, yank, unyank, remove.
    dist = f"cred_{slot}"
    ctype, body = upload_request(dist, "1.0")
    one("upload", "POST", "", True, body, ctype)
    one("upload via /legacy/", "POST", "legacy/", True, *upload_request(dist, "1.1")[::-1])
    release = f"{dist.replace('_', '-')}/1.0"
    one("yank", "POST", f"yank/{release}", True, b"reason=Qz-not-a-secret",
        "application/x-www-form-urlencoded")
    one("unyank", "DELETE", f"yank/{release}", True)
    form_type, form = multipart_body([(":action", "remove_pkg"), ("name", dist.replace("_", "-")),
                                      ("version", "1.0")])
    one("remove_pkg", "POST", "", True, form, form_type)
    # Refused writes changed nothing: the shared project is still whole.
    status, _, page = request(target.base + f"simple/{p}/",
                              headers={"Authorization": target.creds["writer"][0]}
                              if "writer" in target.creds else {})
    if status != 200 or f.encode() not in page:
        wrong.append((target.name, label, "project still there", status))
    return wrong


def targets(w):
    bad = {f"malformed: {k}": (v, "wrong") for k, v in MALFORMED.items()}
    a_default = Target(
        "A default", w.a.url, "team-pkg-00000", w.twine["A config user (cost 12)"][2], {
            "none": (None, "none"), "writer": (basic("alice", ALICE_PW), "write"),
            "htpasswd writer": (basic("carol", CAROL_PW), "write"),
            "reader": (basic("bob", BOB_PW), "read"),
            "wrong password": (basic("alice", ALICE_WRONG), "wrong"),
            "unknown user": (basic("mallory", MALLORY_PW), "wrong"),
            "token where there is none": (basic("__token__", TOKEN_WRONG), "wrong"), **bad})
    a_default_prefixed = Target("A /default/", w.a.url + "default/", a_default.project,
                                a_default.filename, {k: a_default.creds[k] for k in
                                                     ("none", "writer", "reader")})
    a_github = Target(
        "A gh (GitHub)", w.a.url + "gh/", "team-pkg-00001",
        w.twine["A github writer token"][2], {
            "none": (None, "none"), "writer": (basic("gh", GH_WRITER), "write"),
            "reader": (basic("anyone", GH_READER), "read"),
            "wrong token": (basic("gh", GH_WRONG), "wrong"),
            "admin token": (basic("gh", GH_ADMIN), "write"),
            "malformed: bearer": (MALFORMED["bearer"], "wrong")}, file_status=302)
    b = Target("B (private-pypi TOML)", w.b.url, "team-pkg-00002",
               w.twine["B private-pypi write secret"][2], {
                   "none": (None, "none"), "writer": (basic("private", WRITE_SECRET), "write"),
                   "reader": (basic("private", READ_SECRET), "read"),
                   "wrong secret": (basic("private", TOML_WRONG), "wrong"),
                   "secret, other username": (basic("alice", WRITE_SECRET), "wrong"),
                   "malformed: not base64": (MALFORMED["not base64"], "wrong")})
    b_prefixed = Target("B /private/", w.b.url + "private/", b.project, b.filename,
                        {k: b.creds[k] for k in ("none", "writer", "reader")})
    c = Target("C (zero config)", w.c.url, "team-pkg-00003",
               w.twine["C zero-config token"][2], {
                   "none": (None, "none"), "writer": (basic("__token__", w.token), "write"),
                   "wrong token": (basic("__token__", TOKEN_WRONG), "wrong"),
                   "malformed: no colon": (MALFORMED["no colon"], "wrong")}, read_open=True)
    return [a_default, a_default_prefixed, a_github, b, b_prefixed, c]


def run_matrix(w):
    """Each (target, credential) in its own thread: bcrypt of wrong passwords is slow."""
    jobs = [(t, label, auth, role) for t in targets(w) for label, (auth, role) in t.creds.items()]
    results = [None] * len(jobs)

    def run(i, job):
        try:
            results[i] = check_matrix(*job, slot=i)
        except Exception as e:  # reported by the test, with its job
            results[i] = [(job[0].name, job[1], "raised", repr(e))]

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return {(job[0].name, job[1]): r for job, r in zip(jobs, results)}


# -- the tests --------------------------------------------------------------------


def test_twine_uploads_with_every_kind_of_credential(world):
    for name, (code, out, _) in world.twine.items():
        assert code == 0, (name, out)


def test_every_request_type_answers_as_the_credentials_allow(world):
    assert len(world.results) >= 30
    assert all(r is not None for r in world.results.values()), "a matrix thread hung"
    wrong = [x for r in world.results.values() for x in r]
    assert wrong == []


def test_401_and_403_stay_right_under_load(world):
    """32 clients for ~3 s mixing no, wrong, read-only and writer credentials."""
    a = world.a
    gh = a.url + "gh/"
    cases = [  # (weight, label, base, Authorization, kind, expected status)
        (6, "none read", a.url, None, "read", 401),
        (4, "none upload", a.url, None, "upload", 401),
        (2, "wrong password, cost 12", a.url, basic("alice", ALICE_WRONG), "read", 401),
        (2, "unknown user, cost 12", a.url, basic("mallory", MALLORY_PW), "upload", 401),
        (3, "wrong password, cost 4", a.url, basic("bob", "Qz20-bob-wrong"), "read", 401),
        (3, "malformed", a.url, MALFORMED["not base64"], "upload", 401),
        (6, "reader read", a.url, basic("bob", BOB_PW), "read", 200),
        (5, "reader upload", a.url, basic("bob", BOB_PW), "upload", 403),
        (6, "writer read", a.url, basic("alice", ALICE_PW), "read", 200),
        (3, "writer upload", a.url, basic("alice", ALICE_PW), "upload", 200),
        (3, "htpasswd writer upload", a.url, basic("carol", CAROL_PW), "upload", 200),
        (3, "github none", gh, None, "read", 401),
        (3, "github wrong token", gh, basic("gh", GH_WRONG), "read", 401),
        (3, "github reader read", gh, basic("x", GH_READER), "read", 200),
        (3, "github reader upload", gh, basic("x", GH_READER), "upload", 403),
    ]
    weights = [c[0] for c in cases]
    deadline = time.monotonic() + 3.0
    lock = threading.Lock()
    counts = {c[1]: 0 for c in cases}
    wrong = []

    def client(n):
        rng = random.Random(n)
        conns = {}
        i = 0
        while time.monotonic() < deadline and i < 2000:
            i += 1
            _, label, base, auth, kind, want = rng.choices(cases, weights)[0]
            if "cost 12" in label:
                # bcrypt at cost 12 is slow on purpose, and failures are never
                # cached: a few of them, so that they do not starve the rest.
                with lock:
                    if counts[label] >= 6:
                        continue
                    counts[label] += 1
            parts = urllib.parse.urlsplit(base)
            headers = {"Authorization": auth} if auth else {}
            if kind == "read":
                method, path, body = "GET", parts.path + "simple/", None
            else:
                method, path = "POST", parts.path
                ctype, body = upload_request(f"load_{n}_{i}", "1.0")
                headers["Content-Type"] = ctype
            conn = conns.get(parts.netloc)
            if conn is None:
                conn = conns[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=60)
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status, www = r.status, r.headers.get("WWW-Authenticate")
                if r.will_close:
                    conn.close()
                    conns.pop(parts.netloc)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conns.pop(parts.netloc)
                status, www = repr(e), None
            with lock:
                counts[label] += "cost 12" not in label
                if status != want or (want == 401 and www != 'Basic realm="ppypi"'):
                    wrong.append((label, status, want, www))
        for conn in conns.values():
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []
    assert all(n > 0 for n in counts.values()), counts
    assert sum(counts.values()) >= 200, counts


def encodings(secret):
    """The secret as a log might carry it."""
    raw = secret.encode("utf-8")
    out = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret),
           urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1], repr(secret)[1:-1],
           raw.hex(), secret.encode("latin-1", "replace").decode("latin-1")}
    # base64 at any alignment (as inside "Basic base64(user:password)"), and urlsafe
    for k in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * k + raw).decode()
            middle = text[4 if k else 0: -4]
            if len(middle) >= 8:
                out.add(middle)
    return {e for e in out if len(e) >= 6}


def test_no_secret_in_any_log(world):
    for d in world.daemons:
        d.stop()   # the access log is written in batches: all of it, then
    logs = {d.root: open(d.log_path, encoding="utf-8", errors="replace").read()
            for d in world.daemons}
    everything = "\n".join(logs.values())
    # The logs saw the traffic (a search of empty logs proves nothing).
    assert everything.count('"POST / HTTP/1.1" 401') >= 5
    assert everything.count('"POST / HTTP/1.1" 403') >= 5
    assert everything.count('"POST / HTTP/1.1" 200') >= 5
    assert '"POST /gh/ HTTP/1.1" 200' in everything
    assert "DELETE /yank/" in everything
    secrets = [ALICE_PW, CAROL_PW, BOB_PW, READ_SECRET, WRITE_SECRET, GH_ADMIN, GH_WRITER,
               GH_READER, world.token, "Qz20-bob-wrong", *WRONG_SECRETS]
    credentials = [f"{u}:{p}" for u, p in (
        ("alice", ALICE_PW), ("carol", CAROL_PW), ("bob", BOB_PW), ("private", READ_SECRET),
        ("private", WRITE_SECRET), ("gh", GH_WRITER), ("x", GH_READER), ("anyone", GH_READER),
        ("__token__", world.token), ("alice", ALICE_WRONG), ("mallory", MALLORY_PW))]
    found = []
    for secret in secrets + credentials:
        for form in encodings(secret):
            for root, text in logs.items():
                if form in text:
                    found.append((os.path.basename(root), secret, form))
    assert found == []
    # The markers every secret carries, whatever else happened to them.
    markers = sorted(set(re.findall(r"Qz\d+", everything)) - {"Qz"})
    assert markers == [], [line for line in everything.splitlines() if "Qz" in line][:10]
    # And the bcrypt hashes are not logged either.
    for line in (world.alice_line, world.carol_line):
        assert re.search(r"\$2b\$\d\d\$[./A-Za-z0-9]{53}", line).group(0) not in everything


def test_upload_token_file_is_0600(world):
    path = world.base / "c" / ".ppypi" / "upload-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(world.token) >= 32
    assert str(path) in world.c.log()   # named by its path...
    assert world.token not in world.c.log()   # ...never by its value


def test_ppypi_passwd_hashes_cost_at_least_12(world):
    bcrypt_hash = r"(\$2b\$(\d\d)\$[./A-Za-z0-9]{53})"
    for line, form in ((world.alice_line, r'"alice": \{password: "%s"\}'),   # --yaml
                       (world.carol_line, r"carol:%s")):                   # htpasswd
        m = re.fullmatch(form % bcrypt_hash, line)
        assert m, line
        assert int(m.group(2)) >= 12, line
    alice_hash = re.search(r"\$2b\$\d\d\$[./A-Za-z0-9]{53}", world.alice_line).group(0)
    assert bcrypt.checkpw(ALICE_PW.encode(), alice_hash.encode())
    # and the command refuses a lower cost
    low = subprocess.run([PPYPI, "passwd", "--cost", "10", "x"], input="pw\n",
                         capture_output=True, text=True, timeout=60)
    assert low.returncode != 0 and "$2" not in low.stdout


# -- constant-time comparisons, in process ----------------------------------------


@pytest_twisted.ensureDeferred
async def test_auth_compares_secrets_with_compare_digest_and_passwords_with_checkpw(
        monkeypatch):
    token = "T" * 43
    user_hash = bcrypt.hashpw(b"user-pw", bcrypt.gensalt(4)).decode()
    legacy = RepositoryConfig("legacy", "filesystem", path="/nonexistent", read=AUTHENTICATED,
                              write=("legacy",), read_secret=Secret("read-s"),
                              write_secret=Secret("write-s"))
    zero = RepositoryConfig("default", "filesystem", path="/nonexistent", read=ANYONE,
                            write=("__token__",))
    users = RepositoryConfig("users", "filesystem", path="/nonexistent", read=("erin",),
                             write=("erin",))
    config = Config([zero, legacy, users], {"erin": user_hash})
    compared, checked = [], []
    real_compare, real_checkpw = hmac.compare_digest, bcrypt.checkpw

    def compare_digest(a, b):
        compared.append((a, b))
        return real_compare(a, b)

    def checkpw(password, hashed):
        checked.append((password, hashed))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    monkeypatch.setattr(bcrypt, "checkpw", checkpw)

    def authenticator():
        return Authenticator(config, run_now, Clock(), token=token)

    a = authenticator()
    assert (await a.authenticate(zero, Credentials("__token__", token), WRITE)).name == \
        "__token__"
    assert compared == [(token.encode(), token.encode())]
    compared.clear()
    assert (await a.authenticate(legacy, Credentials("legacy", "read-s"), READ)).scopes == \
        frozenset({READ})
    assert (b"read-s", b"read-s") in compared
    compared.clear()
    assert await a.authenticate(legacy, Credentials("legacy", "nope"), READ) is None
    assert {(x, y) for x, y in compared} == {(b"nope", b"write-s"), (b"nope", b"read-s")}
    assert (await a.authenticate(users, Credentials("erin", "user-pw"), READ)).name == "erin"
    assert checked == [(b"user-pw", user_hash.encode())]
    assert not any(b"user-pw" in pair for pair in compared)

    # The answer is theirs: a comparison that says no is a refusal.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    monkeypatch.setattr(bcrypt, "checkpw", lambda p, h: False)
    a = authenticator()
    assert await a.authenticate(zero, Credentials("__token__", token), WRITE) is None
    assert await a.authenticate(legacy, Credentials("legacy", "write-s"), WRITE) is None
    assert await a.authenticate(users, Credentials("erin", "user-pw"), READ) is None
