"""
ppypi.auth: Basic credentials, the permission matrix, htpasswd, the
authentication cache (driven by a Clock), the upload token, and 401/403 over
HTTP in process.
"""

import base64
import os
import stat

import bcrypt
import pytest
import pytest_twisted
from twisted.internet.task import Clock

from ppypi import auth
from ppypi.auth import (READ, WRITE, Authenticator, Credentials, Principal, load_htpasswd,
                        load_or_create_token, needs_credentials, parse_basic, permitted)
from ppypi.config import ANYONE, AUTHENTICATED, Config, ConfigError, RepositoryConfig, Secret

from .conftest import make_corpus
from .helpers import InProcess, run_now


def hashed(password):
    """A fast (cost 4) bcrypt hash, as str."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


ALICE, BOB, CI = hashed("alice-pw"), hashed("bob-pw"), hashed("ci-pw")


def basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- parse_basic ------------------------------------------------------------


def test_parse_basic_valid_str_and_bytes():
    for header in (basic("alice", "s3cret"), basic("alice", "s3cret").encode()):
        c = parse_basic(header)
        assert (c.username, c.password) == ("alice", "s3cret")
    assert "s3cret" not in repr(c)
    c = parse_basic("basic " + base64.b64encode(b"bob:").decode())  # scheme is case-insensitive
    assert (c.username, c.password) == ("bob", "")


def test_parse_basic_absent_is_none():
    assert parse_basic(None) is None


def test_parse_basic_password_keeps_its_colons_and_utf8():
    c = parse_basic(basic("alice", "a:b::c"))
    assert (c.username, c.password) == ("alice", "a:b::c")
    c = parse_basic(basic("élodie", "pâté"))
    assert (c.username, c.password) == ("élodie", "pâté")


@pytest.mark.parametrize("header", [
    "Bearer " + base64.b64encode(b"alice:pw").decode(),    # wrong scheme
    "Digest username=alice",
    "Basic",                                              # no value
    "Basic ",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"alice:pw").decode()[:-2],  # bad padding
    "Basic " + base64.b64encode(b"al\xffce:pw").decode(),    # not UTF-8
    "Basic " + base64.b64encode(b"alice-no-colon").decode(),
    "Basic " + base64.b64encode(b":pw").decode(),            # empty username
    "Basic " + base64.b64encode(b"alice:" + b"p" * 9000).decode(),  # oversized
])
def test_parse_basic_malformed_raises(header):
    with pytest.raises(ValueError):
        parse_basic(header)


# -- permitted ----------------------------------------------------------------

USER = Principal("alice")
OTHER = Principal("bob")


def repo(read=ANYONE, write=(), **kwargs):
    return RepositoryConfig("r", "filesystem", path="/nonexistent", read=read, write=write,
                            **kwargs)


@pytest.mark.parametrize("read, write, principal, may_read, may_write", [
    (ANYONE, (), None, True, False),
    (ANYONE, ("alice",), None, True, False),
    (ANYONE, ("alice",), USER, True, True),
    (ANYONE, ("alice",), OTHER, True, False),
    (AUTHENTICATED, (), None, False, False),
    (AUTHENTICATED, (), OTHER, True, False),
    (AUTHENTICATED, AUTHENTICATED, OTHER, True, True),
    (("alice",), ("alice",), USER, True, True),
    (("alice",), ("alice",), OTHER, False, False),
    (("alice",), ("alice",), None, False, False),
    (("bob",), (), USER, False, False),
    # write implies read
    (("bob",), ("alice",), USER, True, True),
    ((), ("alice",), USER, True, True),
    (("bob",), AUTHENTICATED, USER, True, True),
])
def test_permitted_matrix(read, write, principal, may_read, may_write):
    r = repo(read, write)
    assert permitted(r, principal, READ) is may_read
    assert permitted(r, principal, WRITE) is may_write
    if principal is None:
        assert needs_credentials(r, READ) is not may_read
        assert needs_credentials(r, WRITE) is not may_write


def test_write_anyone_implies_read():
    r = repo(("alice",), ANYONE)
    for principal in (OTHER, None):
        assert permitted(r, principal, WRITE)
        assert permitted(r, principal, READ)


def test_permitted_secret_scopes():
    r = repo(AUTHENTICATED, ("r",), read_secret=Secret("rs"), write_secret=Secret("ws"))
    reader = Principal("r", frozenset({READ}))
    writer = Principal("r", frozenset({READ, WRITE}))
    assert permitted(r, reader, READ) and not permitted(r, reader, WRITE)
    assert permitted(r, writer, READ) and permitted(r, writer, WRITE)
    assert not permitted(r, None, READ) and not permitted(r, None, WRITE)
    # scopes rule even when a user list would say otherwise
    assert not permitted(repo(("r",), ("r",)), reader, WRITE)


# -- load_htpasswd ------------------------------------------------------------


def write_htpasswd(tmp_path, *lines, name="users.htpasswd"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_load_htpasswd_bcrypt_variants(tmp_path):
    y = "$2y$" + hashed("carol-pw")[4:]
    path = write_htpasswd(tmp_path, "# comment", "", f"alice:{ALICE}", f"carol:{y}")
    assert load_htpasswd(path) == {"alice": ALICE.encode(), "carol": y.encode()}


@pytest.mark.parametrize("bad, problem", [
    ("dave:$apr1$salt$Sx0QpG1y1cWU0nLyPp4B0.", "'apr1'"),
    ("dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "'{SHA}'"),
    ("dave:abJnggxhB/yWI", "only bcrypt"),
    ("dave:$2b$04$tooshort", "malformed bcrypt"),
    ("dave:$2b$04$" + "!" * 53, "malformed bcrypt"),
    ("just-a-name", "not a user:hash line"),
    (":" + ALICE, "not a user:hash line"),
])
def test_load_htpasswd_rejects_naming_the_line(tmp_path, bad, problem):
    path = write_htpasswd(tmp_path, f"alice:{ALICE}", "# two", bad, f"bob:{BOB}")
    with pytest.raises(ConfigError) as info:
        load_htpasswd(path)
    assert info.value.source == path
    assert info.value.key == "line 3"
    assert problem in info.value.problem
    assert path in str(info.value) and "line 3" in str(info.value)


def test_load_htpasswd_missing_file(tmp_path):
    path = str(tmp_path / "absent")
    with pytest.raises(ConfigError) as info:
        load_htpasswd(path)
    assert info.value.source == path and "cannot read" in info.value.problem


# -- Authenticator ------------------------------------------------------------


class CountingRunner:
    """run_now that records every bcrypt check: (password, stored hash)."""

    def __init__(self):
        self.bcrypt_calls = []

    def __call__(self, f, *args, **kwargs):
        if f is auth._bcrypt_checkpw:
            self.bcrypt_calls.append(args)
        return run_now(f, *args, **kwargs)

    @property
    def runs(self):
        return len(self.bcrypt_calls)


PRIVATE = repo(("alice", "bob"), ("alice",))
LEGACY = RepositoryConfig("legacy", "filesystem", path="/nonexistent", read=AUTHENTICATED,
                          write=("legacy",), read_secret=Secret("r"), write_secret=Secret("w"))


def make_auth(users=None, htpasswd=None, token=None, read_expires=3600, write_expires=300):
    clock, runner = Clock(), CountingRunner()
    config = Config([PRIVATE, LEGACY], users if users is not None else {"alice": ALICE},
                    htpasswd)
    a = Authenticator(config, runner, clock, read_expires=read_expires,
                      write_expires=write_expires, token=token)
    return a, clock, runner


async def check(a, username, password, need=READ, repository=PRIVATE):
    return await a.authenticate(repository, Credentials(username, password), need)


@pytest_twisted.ensureDeferred
async def test_read_success_is_cached_until_read_expires():
    a, clock, runner = make_auth(read_expires=100)
    assert (await check(a, "alice", "alice-pw")).name == "alice"
    assert runner.runs == 1
    clock.advance(99)
    assert (await check(a, "alice", "alice-pw")).name == "alice"
    assert runner.runs == 1
    clock.advance(2)
    assert (await check(a, "alice", "alice-pw")).name == "alice"
    assert runner.runs == 2
    assert runner.bcrypt_calls[0] == ("alice-pw", ALICE.encode())


@pytest_twisted.ensureDeferred
async def test_write_success_uses_write_expires_and_serves_reads():
    a, clock, runner = make_auth(read_expires=3600, write_expires=300)
    assert await check(a, "alice", "alice-pw", WRITE)
    assert runner.runs == 1
    assert await check(a, "alice", "alice-pw", READ)  # a write check also vouches for reads
    assert runner.runs == 1
    clock.advance(301)
    assert await check(a, "alice", "alice-pw", WRITE)
    assert runner.runs == 2


@pytest_twisted.ensureDeferred
async def test_read_success_does_not_vouch_for_writes():
    a, clock, runner = make_auth()
    assert await check(a, "alice", "alice-pw", READ)
    assert await check(a, "alice", "alice-pw", WRITE)
    assert runner.runs == 2
    assert a.cache_size() == 2


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_never_cached():
    a, clock, runner = make_auth()
    for n in range(1, 4):
        assert await check(a, "alice", "wrong") is None
        assert runner.runs == n
    assert a.cache_size() == 0
    # ...nor does a cached right password make a wrong one pass
    assert await check(a, "alice", "alice-pw")
    assert await check(a, "alice", "alice-pw ") is None


@pytest_twisted.ensureDeferred
async def test_unknown_user_costs_a_bcrypt_run_against_the_dummy_hash():
    a, clock, runner = make_auth()
    assert await check(a, "mallory", "ppypi-dummy-password") is None
    assert runner.bcrypt_calls == [("ppypi-dummy-password", auth._DUMMY_HASH)]
    assert a.cache_size() == 0


@pytest_twisted.ensureDeferred
async def test_maintain_drops_expired_entries():
    a, clock, runner = make_auth(users={"alice": ALICE, "bob": BOB},
                                 read_expires=100, write_expires=10)
    assert await check(a, "alice", "alice-pw", WRITE)
    clock.advance(5)
    assert await check(a, "bob", "bob-pw", READ)
    assert a.cache_size() == 2
    clock.advance(6)  # alice's write entry expired at 10
    await a.maintain()
    assert a.cache_size() == 1
    clock.advance(100)
    await a.maintain()
    assert a.cache_size() == 0


def replace_file(path, text, bump):
    with open(path, "w") as f:
        f.write(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


@pytest_twisted.ensureDeferred
async def test_changed_htpasswd_password_invalidates_the_cache(tmp_path):
    path = write_htpasswd(tmp_path, f"carol:{hashed('old-pw')}", f"dave:{hashed('dave-pw')}")
    a, clock, runner = make_auth(users={}, htpasswd=path)
    assert await check(a, "carol", "old-pw")
    assert await check(a, "carol", "old-pw") and runner.runs == 1  # cached
    replace_file(path, f"carol:{hashed('new-pw')}\n", bump=5)
    await a.maintain()
    assert await check(a, "carol", "old-pw") is None
    assert runner.runs == 2
    assert (await check(a, "carol", "new-pw")).name == "carol"
    assert await check(a, "dave", "dave-pw") is None  # removed from the file


@pytest_twisted.ensureDeferred
async def test_broken_htpasswd_keeps_the_users_it_had(tmp_path):
    path = write_htpasswd(tmp_path, f"carol:{hashed('carol-pw')}")
    a, clock, runner = make_auth(users={}, htpasswd=path)
    replace_file(path, "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", bump=5)
    await a.maintain()  # logged, not raised
    assert await check(a, "carol", "carol-pw")
    os.unlink(path)
    await a.maintain()
    assert await check(a, "carol", "carol-pw")


@pytest_twisted.ensureDeferred
async def test_upload_token():
    token = "t" * 43
    a, clock, runner = make_auth(token=token)
    assert (await check(a, "__token__", token, WRITE)).name == "__token__"
    assert await check(a, "__token__", token[:-1] + "u", WRITE) is None
    assert await check(a, "__token__", "", WRITE) is None
    assert runner.runs == 0
    # without a token, __token__ is just an unknown user
    a, clock, runner = make_auth(token=None)
    assert await check(a, "__token__", "", WRITE) is None
    assert runner.runs == 1


@pytest_twisted.ensureDeferred
async def test_private_pypi_secrets():
    a, clock, runner = make_auth()
    reader = await check(a, "legacy", "r", READ, LEGACY)
    assert reader.scopes == frozenset({READ})
    assert permitted(LEGACY, reader, READ) and not permitted(LEGACY, reader, WRITE)
    writer = await check(a, "legacy", "w", WRITE, LEGACY)
    assert writer.scopes == frozenset({READ, WRITE})
    assert permitted(LEGACY, writer, WRITE)
    for wrong in ("", "x", "rr", "W"):
        assert await check(a, "legacy", wrong, READ, LEGACY) is None
    assert runner.runs == 0
    # the secret only opens its own repository
    assert await check(a, "legacy", "w", READ, PRIVATE) is None


@pytest_twisted.ensureDeferred
async def test_long_password_matches_apache_htpasswd_entry():
    password = "x" * 100
    apache = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(4)).decode()
    a, clock, runner = make_auth(users={"erin": apache})
    assert await check(a, "erin", password) is not None


# -- load_or_create_token -----------------------------------------------------


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_token_created_once_with_mode_0600(tmp_path):
    path = str(tmp_path / ".ppypi" / "upload-token")
    token, created = load_or_create_token(path)
    assert created and len(token) >= 32
    assert mode(path) == 0o600
    assert open(path).read().strip() == token
    again, created = load_or_create_token(path)
    assert (again, created) == (token, False)


def test_a_new_token_never_reads_as_a_command_line_option(tmp_path, monkeypatch):
    """One URL-safe token in 64 begins with "-": twine then took the
    README's `-p "$(cat upload-token)"` for an option (CI met it)."""
    import secrets
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: "-" + "x" * (n + 10))
    token, created = load_or_create_token(str(tmp_path / "upload-token"))
    assert created and not token.startswith("-") and token.startswith("ppypi-")


def test_token_file_permissions_are_fixed(tmp_path):
    path = tmp_path / "upload-token"
    path.write_text("a-token-that-is-long-enough\n")
    os.chmod(path, 0o664)
    assert load_or_create_token(str(path)) == ("a-token-that-is-long-enough", False)
    assert mode(path) == 0o600


@pytest.mark.parametrize("content", ["", "\n", "short\n"])
def test_token_too_short(tmp_path, content):
    path = tmp_path / "upload-token"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_or_create_token(str(path))
    assert info.value.source == str(path)
    assert "too short" in info.value.problem


# -- over HTTP ----------------------------------------------------------------

CONFIG = f"""\
repositories:
  private: {{read: [alice], write: [alice]}}
  pub: {{path: pub, read: anyone, write: [ci]}}
users:
  alice: {{password: "{ALICE}"}}
  bob: {{password: "{BOB}"}}
  ci: {{password: "{CI}"}}
"""


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    make_corpus(root / "pub", projects=1, versions=1, prefix="Pub")
    return InProcess(root, config_text=CONFIG)


def header(response, name):
    return response.headers.getRawHeaders(name, [None])[0]


@pytest.mark.parametrize("authorization", [
    None, basic("alice", "wrong"), basic("nobody", "alice-pw"), "Basic ###", "Bearer abc",
])
@pytest_twisted.ensureDeferred
async def test_http_401_asks_for_basic(server, authorization):
    await server.sync()
    headers = {"Authorization": authorization} if authorization else None
    for path in ("/simple/", "/private/simple/"):
        r, body = await server.get(path, headers)
        assert r.code == 401, path
        assert header(r, "WWW-Authenticate") == 'Basic realm="ppypi"'
        assert b"pw" not in body


@pytest_twisted.ensureDeferred
async def test_http_403_and_200(server):
    await server.sync()
    for user in ("bob", "ci"):
        r, _ = await server.get("/simple/", {"Authorization": basic(user, f"{user}-pw")})
        assert r.code == 403, user
    r, body = await server.get("/simple/", {"Authorization": basic("alice", "alice-pw")})
    assert r.code == 200
    assert b"pub-pkg" not in body  # private's own (empty) list


@pytest_twisted.ensureDeferred
async def test_http_username_selects_a_repository(server):
    await server.sync()
    r, body = await server.get("/pub/simple/")
    assert r.code == 200 and b"pub-pkg-00000" in body
    # private-pypi clients: the repository's name as the username, at /
    r, body = await server.get("/simple/", {"Authorization": basic("pub", "anything")})
    assert r.code == 200 and b"pub-pkg-00000" in body
