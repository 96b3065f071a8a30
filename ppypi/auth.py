"""
Credentials, permissions and the cache of successful authentications.

Who may read or write a repository is decided here, in one place:

- C{anyone}: no credentials are looked at.
- C{authenticated}: any known user (config, htpasswd, the upload token).
- a list of users: those users. Write permission implies read permission.
- private-pypi's secrets: the username is the repository's name and the
  password its C{read_secret} (read) or C{write_secret} (read and write).

bcrypt is slow on purpose, and pip makes many requests, so successful
checks are cached for C{--auth-read-expires}/C{--auth-write-expires}
seconds, keyed by an HMAC of the username, the password presented and the
stored hash: a changed password (or a changed hash) never meets an old
entry. Failures are never cached. Passwords are compared in constant time
and never logged.
"""

import base64
import binascii
import hmac
import os
import re
import secrets
import time

import bcrypt
from twisted.logger import Logger

from .validate import ANYONE, AUTHENTICATED, ConfigError

READ = "read"
WRITE = "write"
TOKEN_USER = "__token__"
_BCRYPT_ENTRY = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")

# A hash to check unknown users against, so that an unknown user costs as
# long as a known one with a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"ppypi-dummy-password", bcrypt.gensalt(12))


class Credentials:
    """A username and password from a Basic Authorization header."""

    __slots__ = ("username", "password")

    def __init__(self, username, password):
        self.username = username
        self.password = password

    def __repr__(self):
        return f"Credentials({self.username!r}, <password hidden>)"


def parse_basic(header):
    """
    Parse an C{Authorization} header value (bytes or str).

    @return: L{Credentials}, or None when the header is absent.
    @raise ValueError: when it is present but not valid Basic credentials.
    """
    if header is None:
        return None
    if isinstance(header, str):
        header = header.encode("latin-1", "replace")
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() != b"basic" or not value or len(value) > 8192:
        raise ValueError("not Basic credentials")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise ValueError("malformed Basic credentials")
    return Credentials(username, password)


class Principal:
    """
    Who a request is, once authenticated.

    @ivar scopes: for private-pypi secrets and GitHub tokens, what the
        credential allows; None for users, whose permissions come from the
        repository's lists.
    @ivar token: a GitHub token that writes on this person's behalf.
    """

    __slots__ = ("name", "scopes", "token", "projects")

    def __init__(self, name, scopes=None, token=None, projects=None):
        self.name = name
        self.scopes = scopes
        self.token = token
        # An upload token's projects (None: every project of the repository).
        self.projects = projects

    def may_change(self, project):
        """May this principal upload, yank or remove C{project} (given write permission)?"""
        return self.projects is None or project in self.projects

    def __repr__(self):
        return f"Principal({self.name!r})"


def permitted(repository, principal, need):
    """May C{principal} (None: anonymous) do C{need} on C{repository}?"""
    if need == READ and ANYONE in (repository.read, repository.write):
        return True  # write permission implies read
    if need == WRITE and repository.write == ANYONE:
        return True
    if principal is None:
        return False
    if principal.scopes is not None:
        return need in principal.scopes
    lists = [repository.write] if need == WRITE else [repository.read, repository.write]
    for access in lists:
        if access == AUTHENTICATED:
            return True
        if isinstance(access, tuple) and principal.name in access:
            return True
    return False


def needs_credentials(repository, need):
    return not permitted(repository, None, need)


def load_htpasswd(path):
    """
    Read an Apache htpasswd file of bcrypt entries.

    @return: {user: hash bytes}
    @raise ConfigError: naming the line of anything that is not bcrypt.
    """
    users = {}
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8").splitlines()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read htpasswd file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        where = f"line {number}"
        if not sep or not user:
            raise ConfigError(path, where, "not a user:hash line")
        if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            scheme = hashed.split("$")[1] if hashed.startswith("$") else hashed[:5]
            raise ConfigError(path, where,
                              f"user {user!r}: only bcrypt entries are supported "
                              f"(htpasswd -B), not {scheme!r}")
        if not _BCRYPT_ENTRY.fullmatch(hashed):
            raise ConfigError(path, where, f"user {user!r}: malformed bcrypt hash")
        users[user] = hashed.encode()
    return users


def _bcrypt_checkpw(password, hashed):
    # Apache writes $2y$, which some bcrypt builds do not accept; it is $2b$.
    if hashed.startswith(b"$2y$"):
        hashed = b"$2b$" + hashed[4:]
    # bcrypt uses the first 72 bytes (as htpasswd -B does); bcrypt>=5
    # refuses longer input instead of cutting it.
    try:
        return bcrypt.checkpw(password.encode("utf-8")[:72], hashed)
    except ValueError:
        return False


class Authenticator:
    """
    Checks credentials against local users, the htpasswd file, the upload
    token and private-pypi secrets, with an expiring cache of successes.

    @param run_in_thread: where bcrypt runs (it takes ~0.2 s at cost 12).
    @param clock: an L{IReactorTime}; expiry follows it.
    """

    log = Logger()

    def __init__(self, config, run_in_thread, clock, read_expires=3600,
                 write_expires=300, token=None, store_permissions=None, token_books=None):
        self.config = config
        self._run = run_in_thread
        self._clock = clock
        self._expires = {READ: read_expires, WRITE: write_expires}
        self._token = token
        self._users = {u: h.encode() for u, h in config.users.items()}
        self._htpasswd = {}
        self._htpasswd_stamp = None
        if config.htpasswd:
            self._htpasswd = load_htpasswd(config.htpasswd)
            self._htpasswd_stamp = self._stamp()
        self._key = os.urandom(32)
        self._cache = {}  # (hmac, level) -> expiry time
        # Repositories whose read or write is their store's own mode (github):
        # {repository name: async f(token) -> scopes or None}, the backend's
        # permissions.
        self._store_permissions = dict(store_permissions or {})
        self._store_cache = {}  # (hmac, level) -> (expiry time, scopes)
        # Upload tokens per repository: {name: ppypi.tokens.TokenBook}.
        self._token_books = dict(token_books or {})

    def _stamp(self):
        try:
            st = os.stat(self.config.htpasswd)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def _reload_htpasswd(self):
        """Re-read the htpasswd file if it changed (blocking: in a thread)."""
        stamp = self._stamp()
        if stamp == self._htpasswd_stamp:
            return None
        return stamp, load_htpasswd(self.config.htpasswd)

    async def maintain(self):
        """
        Periodic upkeep: drop expired cache entries, pick up a changed
        htpasswd file. Never raises.
        """
        now = self._clock.seconds()
        for key in [k for k, expiry in self._cache.items() if expiry <= now]:
            del self._cache[key]
        for key in [k for k, (expiry, _) in self._store_cache.items() if expiry <= now]:
            del self._store_cache[key]
        if not self.config.htpasswd:
            return
        try:
            changed = await self._run(self._reload_htpasswd)
        except ConfigError as e:
            self.log.error("htpasswd not reloaded, keeping the users it had: {e}", e=str(e))
            return
        except Exception:
            self.log.failure("htpasswd not reloaded")
            return
        if changed is not None:
            self._htpasswd_stamp, self._htpasswd = changed
            self.log.info("htpasswd {path} reloaded: {count} users",
                          path=self.config.htpasswd, count=len(self._htpasswd))

    def cache_size(self):
        return len(self._cache) + len(self._store_cache)

    def _cache_key(self, username, password, stored):
        mac = hmac.new(self._key, digestmod="sha256")
        for part in (username.encode("utf-8"), password.encode("utf-8"), stored):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def _cached(self, key, need):
        now = self._clock.seconds()
        levels = (WRITE,) if need == WRITE else (READ, WRITE)
        return any(self._cache.get((key, level), 0) > now for level in levels)

    async def authenticate(self, repository, credentials, need):
        """
        @return: a L{Principal}, or None if the credentials are wrong.
        """
        username, password = credentials.username, credentials.password
        access = repository.read if need == READ else repository.write
        if access not in (ANYONE, AUTHENTICATED) and isinstance(access, str):
            # The store's own mode (github): the password is its token.
            return await self._store_authenticate(repository, username, password, need)
        # private-pypi: the repository's name as username, a secret as password.
        if username == repository.name and (repository.read_secret or repository.write_secret):
            scopes = None
            if repository.write_secret is not None and hmac.compare_digest(
                    password.encode(), repository.write_secret.value.encode()):
                scopes = frozenset({READ, WRITE})
            elif repository.read_secret is not None and hmac.compare_digest(
                    password.encode(), repository.read_secret.value.encode()):
                scopes = frozenset({READ})
            return Principal(username, scopes) if scopes else None
        if username == TOKEN_USER:
            # An upload token of this repository (ppypi token create, or minted
            # for a CI job): only its projects, until it expires.
            book = self._token_books.get(repository.name)
            record = book.check(password, time.time()) if book is not None else None
            if record is not None:
                projects = frozenset(record["projects"]) \
                    if record.get("projects") is not None else None
                return Principal(f"{TOKEN_USER}:{record['id']}", frozenset({READ, WRITE}),
                                 projects=projects)
            if self._token is not None:
                if hmac.compare_digest(password.encode(), self._token.encode()):
                    return Principal(TOKEN_USER)
                return None
        stored = self._users.get(username) or self._htpasswd.get(username)
        key = self._cache_key(username, password, stored or b"")
        if stored is not None and self._cached(key, need):
            return Principal(username)
        ok = await self._run(_bcrypt_checkpw, password, stored or _DUMMY_HASH)
        if not ok or stored is None:
            return None
        self._cache[(key, need)] = self._clock.seconds() + self._expires[need]
        return Principal(username)

    async def _store_authenticate(self, repository, username, password, need):
        """
        The password is a token of the store (a GitHub token): the backend
        says what it may do on the repository (GitHub: pull is read, push is
        write). Any username is accepted (private-pypi's clients send the
        repository's name). A revoked token works until its cache entry
        expires, no longer.
        """
        check = self._store_permissions.get(repository.name)
        if check is None or not password:
            return None
        key = self._cache_key("store:" + repository.name, password, b"")
        now = self._clock.seconds()
        levels = (WRITE,) if need == WRITE else (READ, WRITE)
        for level in levels:
            hit = self._store_cache.get((key, level))
            if hit is not None and hit[0] > now:
                return Principal(username, hit[1], token=password)
        scopes = await check(password)
        if not scopes:
            return None
        self._store_cache[(key, need)] = (self._clock.seconds() + self._expires[need], scopes)
        return Principal(username, scopes, token=password)


def load_or_create_token(path):
    """
    The zero-configuration upload token: created once (mode 0600), then read.

    Blocking: run it at start-up or in a thread.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        st = os.stat(path)
        if st.st_mode & 0o077:
            os.chmod(path, 0o600)
        with open(path) as f:
            token = f.read().strip()
        if len(token) < 16:
            raise ConfigError(path, None, "upload token is empty or too short; "
                                          "delete the file to make a new one")
        return token, False
    # Prefixed: a URL-safe token may begin with "-", and then
    # `twine upload -p "$(cat upload-token)"` takes it for an option.
    token = "ppypi-" + secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token, True
