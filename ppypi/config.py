"""
Loading and validating the configuration and the admin secret.

Every mistake is reported as a L{ConfigError} that names the file, the key
and the problem, so that start-up stops with one line a person can act on.
"""

import fnmatch
import math
import os
import re
import sys

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Names that are URL segments of their own at the top of the server.
RESERVED_REPOSITORY_NAMES = frozenset(
    {"simple", "packages", "legacy", "pypi", "project", "health", "metrics", "static", "yank"}
)
_REPOSITORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# private-pypi allowed any TOML key; keep the URL-safe ones working.
_LEGACY_REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_USER_NAME = re.compile(r"^[^\s:]{1,100}$")
_BCRYPT = re.compile(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$")

DEFAULT_SYNC_INTERVAL = 60.0
DEFAULT_MAX_FILE_BYTES = 1 << 30
# Index pages may be cached this long (seconds); files are immutable.
DEFAULT_PAGE_MAX_AGE = 60
ANYONE = "anyone"
AUTHENTICATED = "authenticated"
GITHUB = "github"
DOWNLOAD_MODES = ("redirect", "proxy")


class ConfigError(Exception):
    """A configuration mistake: where it is, which key, and what is wrong."""

    def __init__(self, source, key, problem):
        super().__init__(source, key, problem)
        self.source = source
        self.key = key
        self.problem = problem

    def __str__(self):
        if self.key:
            return f"{self.source}: {self.key}: {self.problem}"
        return f"{self.source}: {self.problem}"


class Secret:
    """A credential whose repr never shows its value."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "Secret(<hidden>)"

    def __eq__(self, other):
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self):
        return hash(self.value)


class RepositoryConfig:
    """One repository: where its files live and who may read and write."""

    def __init__(self, name, type, *, path=None, read=ANYONE, write=(),
                 sync_interval=DEFAULT_SYNC_INTERVAL,
                 max_file_bytes=DEFAULT_MAX_FILE_BYTES, allow_overwrite=False,
                 owner=None, repo=None, branch="main",
                 api_url="https://api.github.com", downloads="redirect",
                 read_secret=None, write_secret=None, admin_secret=None,
                 page_max_age=DEFAULT_PAGE_MAX_AGE):
        self.name = name
        self.type = type
        self.path = path
        self.read = read
        self.write = write
        self.sync_interval = sync_interval
        self.max_file_bytes = max_file_bytes
        self.allow_overwrite = allow_overwrite
        self.owner = owner
        self.repo = repo
        self.branch = branch
        self.api_url = api_url
        self.downloads = downloads
        self.read_secret = read_secret
        self.write_secret = write_secret
        self.admin_secret = admin_secret
        self.page_max_age = page_max_age

    def __repr__(self):
        return f"RepositoryConfig({self.name!r}, {self.type!r}, path={self.path!r})"


class Config:
    """The whole configuration: repositories in order, users, reservations."""

    def __init__(self, repositories, users=None, htpasswd=None, reserved=(),
                 zero_config=False):
        self.repositories = list(repositories)
        self.users = dict(users or {})
        self.htpasswd = htpasswd
        self.reserved = tuple(reserved)
        self.zero_config = zero_config

    def repository(self, name):
        for r in self.repositories:
            if r.name == name:
                return r
        raise KeyError(name)

    def is_reserved(self, normalized_name):
        return any(fnmatch.fnmatchcase(normalized_name, p) for p in self.reserved)


def zero_config(root):
    """One filesystem repository in ROOT; anyone reads; the upload token writes."""
    return Config(
        [RepositoryConfig("default", "filesystem", path=os.path.abspath(root),
                          read=ANYONE, write=("__token__",))],
        zero_config=True,
    )


# -- reading ---------------------------------------------------------------


def _read_source(value, is_text, what):
    """
    Return (source label, text, format) for --config/--admin-secret.
    """
    if is_text:
        label = f"{what} (text)"
        return label, value, None
    try:
        with open(value, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(value, None, f"cannot read file: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(value, None, "not UTF-8 text") from None
    ext = os.path.splitext(value)[1].lower()
    if ext in (".yaml", ".yml"):
        fmt = "yaml"
    elif ext == ".toml":
        fmt = "toml"
    else:
        fmt = None
    return value, text, fmt


def _parse(label, text, fmt):
    """Parse YAML or TOML; with no known format, TOML first, then YAML."""
    if fmt in ("toml", None):
        try:
            return tomllib.loads(text), "toml"
        except tomllib.TOMLDecodeError as e:
            if fmt == "toml":
                raise ConfigError(label, None, f"invalid TOML: {e}") from None
    try:
        return yaml.safe_load(text), "yaml"
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(label, None, f"invalid YAML{where}: {problem}") from None


# -- validating ------------------------------------------------------------


class _Checker:
    def __init__(self, source):
        self.source = source

    def fail(self, key, problem):
        raise ConfigError(self.source, key, problem)

    def mapping(self, value, key):
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, not {_kind(value)}")
        return value

    def string(self, value, key, nonempty=True):
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {_kind(value)}")
        if nonempty and not value:
            self.fail(key, "must not be empty")
        return value

    def number(self, value, key, integer=False, minimum=None):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, not {_kind(value)}")
        if integer and not isinstance(value, int):
            self.fail(key, "must be a whole number")
        if not math.isfinite(value):
            self.fail(key, "must be a finite number")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}")
        return value

    def boolean(self, value, key):
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_kind(value)}")
        return value

    def unknown(self, mapping, allowed, key):
        for k in mapping:
            if k not in allowed:
                where = f"{key}.{k}" if key else str(k)
                self.fail(where, "unknown key (known: " + ", ".join(sorted(allowed)) + ")")

    def access(self, value, key, allow_github):
        if isinstance(value, str):
            allowed = {ANYONE, AUTHENTICATED} | ({GITHUB} if allow_github else set())
            if value not in allowed:
                self.fail(key, f"must be {', '.join(sorted(allowed))} or a list of users, not {value!r}")
            return value
        if isinstance(value, list):
            for i, user in enumerate(value):
                self.string(user, f"{key}[{i}]")
            return tuple(value)
        self.fail(key, f"must be a string or a list of users, not {_kind(value)}")


def _kind(value):
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


_YAML_REPO_KEYS = {
    "filesystem": {"type", "path", "read", "write", "sync_interval", "max_file_bytes",
                   "allow_overwrite", "page_max_age"},
    "github": {"type", "owner", "repo", "branch", "api_url", "read", "write",
               "sync_interval", "max_file_bytes", "allow_overwrite", "downloads",
               "page_max_age"},
}


def _yaml_config(data, source, root, config_dir):
    c = _Checker(source)
    c.mapping(data, "")
    c.unknown(data, {"repositories", "users", "htpasswd", "reserved"}, "")
    if "repositories" not in data:
        c.fail("repositories", "is required")
    repos = c.mapping(data["repositories"], "repositories")
    if not repos:
        c.fail("repositories", "must name at least one repository")
    repositories = []
    for name, spec in repos.items():
        key = f"repositories.{name}"
        if not isinstance(name, str) or not _REPOSITORY_NAME.fullmatch(name):
            c.fail(key, "repository names are [a-z0-9][a-z0-9-]*")
        if name in RESERVED_REPOSITORY_NAMES:
            c.fail(key, f"{name!r} is a URL of the server; choose another name")
        c.mapping(spec, key)
        rtype = spec.get("type", "filesystem")
        if not isinstance(rtype, str) or rtype not in _YAML_REPO_KEYS:
            c.fail(f"{key}.type", f"must be filesystem or github, not {rtype!r}")
        c.unknown(spec, _YAML_REPO_KEYS[rtype], key)
        kwargs = _common_repo_settings(c, spec, key, rtype)
        if rtype == "filesystem":
            path = c.string(spec.get("path", "."), f"{key}.path")
            kwargs["path"] = os.path.normpath(os.path.join(root, path))
        else:
            kwargs.update(_github_settings(c, spec, key))
        repositories.append(RepositoryConfig(name, rtype, **kwargs))

    users = {}
    for user, spec in c.mapping(data.get("users", {}) or {}, "users").items():
        key = f"users.{user}"
        if not isinstance(user, str) or not _USER_NAME.fullmatch(user):
            c.fail(key, "user names are 1-100 characters, no spaces or colons")
        c.mapping(spec, key)
        c.unknown(spec, {"password"}, key)
        if "password" not in spec:
            c.fail(f"{key}.password", "is required (a bcrypt hash: ppypi passwd USER)")
        pw = c.string(spec["password"], f"{key}.password")
        if not _BCRYPT.fullmatch(pw):
            c.fail(f"{key}.password", "must be a bcrypt hash ($2b$...), never plain text; "
                                      "make one with: ppypi passwd USER")
        users[user] = pw

    htpasswd = data.get("htpasswd")
    if htpasswd is not None:
        htpasswd = os.path.join(config_dir, c.string(htpasswd, "htpasswd"))

    reserved = data.get("reserved", []) or []
    if not isinstance(reserved, list):
        c.fail("reserved", f"must be a list of name patterns, not {_kind(reserved)}")
    for i, pattern in enumerate(reserved):
        c.string(pattern, f"reserved[{i}]")
    # Patterns match normalised names, so normalise them the same way.
    reserved = [re.sub(r"[-_.]+", "-", p).lower() for p in reserved]

    config = Config(repositories, users, htpasswd, reserved)
    _check_repositories(c, config, users)
    return config


def _common_repo_settings(c, spec, key, rtype):
    allow_github = rtype == "github"
    return dict(
        read=c.access(spec.get("read", ANYONE), f"{key}.read", allow_github),
        write=c.access(spec.get("write", []), f"{key}.write", allow_github),
        sync_interval=float(c.number(spec.get("sync_interval", DEFAULT_SYNC_INTERVAL),
                                     f"{key}.sync_interval", minimum=0.1)),
        max_file_bytes=c.number(spec.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES),
                                f"{key}.max_file_bytes", integer=True, minimum=1),
        allow_overwrite=c.boolean(spec.get("allow_overwrite", False),
                                  f"{key}.allow_overwrite"),
        page_max_age=c.number(spec.get("page_max_age", DEFAULT_PAGE_MAX_AGE),
                              f"{key}.page_max_age", integer=True, minimum=0),
    )


def _github_settings(c, spec, key):
    out = {}
    for field in ("owner", "repo"):
        if field not in spec:
            c.fail(f"{key}.{field}", "is required for a github repository")
        out[field] = c.string(spec[field], f"{key}.{field}")
    out["branch"] = c.string(spec.get("branch", "main"), f"{key}.branch")
    api_url = c.string(spec.get("api_url", "https://api.github.com"), f"{key}.api_url")
    if not api_url.startswith(("https://", "http://")):
        c.fail(f"{key}.api_url", "must be an http(s) URL")
    out["api_url"] = api_url.rstrip("/")
    downloads = spec.get("downloads", "redirect")
    if downloads not in DOWNLOAD_MODES:
        c.fail(f"{key}.downloads", f"must be redirect or proxy, not {downloads!r}")
    out["downloads"] = downloads
    return out


def _check_repositories(c, config, users):
    seen_paths = {}
    for r in config.repositories:
        for what in ("read", "write"):
            access = getattr(r, what)
            if isinstance(access, tuple) and users is not None:
                for user in access:
                    if user not in users and config.htpasswd is None and not (
                        r.read_secret or r.write_secret
                    ):
                        c.fail(f"repositories.{r.name}.{what}",
                               f"user {user!r} is not defined under users")
        if r.type == "filesystem":
            if r.path in seen_paths:
                c.fail(f"repositories.{r.name}.path",
                       f"is the same folder as repository {seen_paths[r.path]!r}")
            seen_paths[r.path] = r.name


# private-pypi's TOML ------------------------------------------------------

_TOML_TYPES = {"file_system": "filesystem", "github": "github"}
_TOML_KEYS = {
    "filesystem": {"type", "read_secret", "write_secret", "max_file_bytes",
                   "sync_index_interval", "local_paths", "path"},
    "github": {"type", "owner", "repo", "branch", "index_filename",
               "max_file_bytes", "sync_index_interval", "api_url", "downloads"},
}


def _toml_config(data, source, root):
    c = _Checker(source)
    if not data:
        c.fail(None, "names no repository")
    repositories = []
    for name, spec in data.items():
        key = name
        if not _LEGACY_REPOSITORY_NAME.fullmatch(name):
            c.fail(key, "repository names are letters, digits, '.', '_' and '-'")
        if name.lower() in RESERVED_REPOSITORY_NAMES:
            c.fail(key, f"{name!r} is a URL of the server; choose another name")
        c.mapping(spec, key)
        if "type" not in spec:
            c.fail(f"{key}.type", "is required (file_system or github)")
        rtype = _TOML_TYPES.get(spec["type"]) if isinstance(spec["type"], str) else None
        if rtype is None:
            c.fail(f"{key}.type", f"must be file_system or github, not {spec['type']!r}")
        c.unknown(spec, _TOML_KEYS[rtype], key)
        kwargs = dict(
            sync_interval=float(c.number(spec.get("sync_index_interval", DEFAULT_SYNC_INTERVAL),
                                         f"{key}.sync_index_interval", minimum=0.1)),
            max_file_bytes=c.number(spec.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES),
                                    f"{key}.max_file_bytes", integer=True, minimum=1),
        )
        if rtype == "filesystem":
            # private-pypi's secrets: the repository name is the username.
            secrets = {}
            for field in ("read_secret", "write_secret"):
                if field in spec:
                    secrets[field] = Secret(c.string(spec[field], f"{key}.{field}"))
            if "write_secret" in secrets and "read_secret" not in secrets:
                c.fail(f"{key}.read_secret", "is required when write_secret is set")
            kwargs.update(secrets)
            kwargs["read"] = AUTHENTICATED if secrets else ANYONE
            kwargs["write"] = (name,) if "write_secret" in secrets else ()
            path = c.string(spec.get("path", name), f"{key}.path")
            kwargs["path"] = os.path.normpath(os.path.join(root, path))
        else:
            kwargs.update(_github_settings(c, spec, key))
            kwargs["read"] = GITHUB
            kwargs["write"] = GITHUB
        repositories.append(RepositoryConfig(name, rtype, **kwargs))
    config = Config(repositories)
    _check_repositories(c, config, None)
    return config


# -- entry points ----------------------------------------------------------


def load_config(value, root, is_text=False):
    """
    Load C{--config}: a path (or, with C{is_text}, the content).

    @raise ConfigError: on any mistake.
    """
    if value is None:
        return zero_config(root)
    label, text, fmt = _read_source(value, is_text, "--config")
    data, fmt = _parse(label, text, fmt)
    if data is None:
        raise ConfigError(label, None, "is empty")
    if not isinstance(data, dict):
        raise ConfigError(label, None, f"must be a mapping, not {_kind(data)}")
    config_dir = os.path.dirname(os.path.abspath(value)) if not is_text else os.path.abspath(root)
    if fmt == "toml" and "repositories" not in data:
        return _toml_config(data, label, root)
    return _yaml_config(data, label, root, config_dir)


def load_admin_secret(value, config, is_text=False, environ=os.environ):
    """
    Load C{--admin-secret} into the repositories of C{config}.

    Format (YAML or TOML): C{{repo: {raw: "..."}}} or C{{repo: {env: VAR}}};
    private-pypi's files also carry C{type}, which must match.

    @raise ConfigError: on any mistake.
    """
    if value is None:
        return
    label, text, fmt = _read_source(value, is_text, "--admin-secret")
    data, fmt = _parse(label, text, fmt)
    c = _Checker(label)
    if not isinstance(data, dict):
        c.fail(None, f"must be a mapping of repository names, not {_kind(data)}")
    names = {r.name: r for r in config.repositories}
    for name, spec in data.items():
        if name not in names:
            c.fail(name, "no such repository in the configuration")
        c.mapping(spec, name)
        c.unknown(spec, {"raw", "env", "type"}, name)
        if "type" in spec and (not isinstance(spec["type"], str) or
                               _TOML_TYPES.get(spec["type"], spec["type"]) != names[name].type):
            c.fail(f"{name}.type", f"says {spec['type']!r} but the repository is {names[name].type}")
        if ("raw" in spec) == ("env" in spec):
            c.fail(name, "needs exactly one of raw or env")
        if "raw" in spec:
            secret = c.string(spec["raw"], f"{name}.raw")
        else:
            var = c.string(spec["env"], f"{name}.env")
            if not environ.get(var):
                c.fail(f"{name}.env", f"environment variable {var} is not set")
            secret = environ[var]
        names[name].admin_secret = Secret(secret)
