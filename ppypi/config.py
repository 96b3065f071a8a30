"""
Loading and validating the configuration and the admin secret.

Every mistake is reported as a L{ConfigError} that names the file, the key
and the problem, so that start-up stops with one line a person can act on.
"""

import fnmatch
import os
import re
import sys
from types import SimpleNamespace
from urllib.parse import urlsplit

import yaml

from .backends import registry
from .names import is_valid_name, normalize
from .urls import RESERVED_NAMES
from .validate import ANYONE, AUTHENTICATED, Checker, ConfigError, Secret, kind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Names that are URL segments of their own at the top of the server.
RESERVED_REPOSITORY_NAMES = RESERVED_NAMES
_REPOSITORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# private-pypi allowed any TOML key; keep the URL-safe ones working.
_LEGACY_REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_USER_NAME = re.compile(r"^[^\s:]{1,100}$")
_BCRYPT = re.compile(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$")

DEFAULT_SYNC_INTERVAL = 60.0
DEFAULT_MAX_FILE_BYTES = 1 << 30
# Index pages may be cached this long (seconds); files are immutable.
DEFAULT_PAGE_MAX_AGE = 60
__all__ = ["ANYONE", "AUTHENTICATED", "Config", "ConfigError", "RepositoryConfig",
           "Secret", "load_admin_secret", "load_config", "zero_config"]


class RepositoryConfig:
    """
    One repository: the settings every kind has (who may read and write,
    sync interval, limits), and C{settings}, its backend's own (a namespace
    the backend type made from its keys; keywords not named here go there).
    """

    def __init__(self, name, type, *, read=ANYONE, write=(),
                 sync_interval=DEFAULT_SYNC_INTERVAL,
                 max_file_bytes=DEFAULT_MAX_FILE_BYTES, allow_overwrite=False,
                 read_secret=None, write_secret=None, admin_secret=None,
                 page_max_age=DEFAULT_PAGE_MAX_AGE, upstream=None, publishers=None,
                 require_attestations=False, settings=None, **backend_settings):
        self.name = name
        self.type = type
        self.read = read
        self.write = write
        self.sync_interval = sync_interval
        self.max_file_bytes = max_file_bytes
        self.allow_overwrite = allow_overwrite
        self.read_secret = read_secret
        self.write_secret = write_secret
        self.admin_secret = admin_secret
        self.page_max_age = page_max_age
        # The proxy repository that answers names this one does not hold.
        self.upstream = upstream
        # Trusted publishing: {project: [publisher]} (ppypi.oidc).
        self.publishers = publishers or {}
        # PEP 740: refuse uploads that carry no verified attestations.
        self.require_attestations = require_attestations
        self.settings = settings if settings is not None else SimpleNamespace(**backend_settings)

    def __repr__(self):
        return f"RepositoryConfig({self.name!r}, {self.type!r}, {self.settings!r})"


class Config:
    """The whole configuration: repositories in order, users, reservations."""

    def __init__(self, repositories, users=None, htpasswd=None, reserved=(),
                 zero_config=False):
        self.repositories = list(repositories)
        self.users = dict(users or {})
        self.htpasswd = htpasswd
        self.reserved = tuple(reserved)
        self.zero_config = zero_config
        # Trusted publishing: audience and issuers (see _oidc); publishers are per repository.
        self.oidc = _oidc(Checker("defaults"), None)
        # The Sigstore trusted root attestations are verified against (a
        # trusted_root.json), or None: the one the sigstore package carries.
        self.trusted_root = None

    def repository(self, name):
        for r in self.repositories:
            if r.name == name:
                return r
        raise KeyError(name)

    def is_reserved(self, normalized_name):
        return any(fnmatch.fnmatchcase(normalized_name, p) for p in self.reserved)


def zero_config(root):
    """One repository of the default kind in ROOT; anyone reads; the upload token writes."""
    return Config(
        [RepositoryConfig("default", registry.DEFAULT, read=ANYONE, write=("__token__",),
                          settings=registry.get(registry.DEFAULT).settings(
                              Checker("zero configuration"), {}, "default", root))],
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

COMMON_KEYS = frozenset({"type", "read", "write", "sync_interval", "max_file_bytes",
                         "allow_overwrite", "page_max_age", "upstream", "publishers",
                         "require_attestations"})


def _yaml_config(data, source, root, config_dir):
    c = Checker(source)
    c.mapping(data, "")
    c.unknown(data, {"repositories", "users", "htpasswd", "reserved", "oidc", "attestations"},
              "")
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
        rtype = spec.get("type", registry.DEFAULT)
        backend_type = registry.get(rtype) if isinstance(rtype, str) else None
        if backend_type is None or backend_type.name != rtype:
            known = " or ".join(t.name for t in registry.types())
            c.fail(f"{key}.type", f"must be {known}, not {rtype!r}")
        c.unknown(spec, COMMON_KEYS | backend_type.keys, key)
        kwargs = _common_repo_settings(c, spec, key, backend_type)
        kwargs["settings"] = backend_type.settings(c, spec, key, root)
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
        c.fail("reserved", f"must be a list of name patterns, not {kind(reserved)}")
    for i, pattern in enumerate(reserved):
        c.string(pattern, f"reserved[{i}]")
    # Patterns match normalised names, so normalise them the same way.
    reserved = [re.sub(r"[-_.]+", "-", p).lower() for p in reserved]

    config = Config(repositories, users, htpasswd, reserved)
    config.oidc = _oidc(c, data.get("oidc"))
    attestations = data.get("attestations")
    if attestations is not None:
        c.mapping(attestations, "attestations")
        c.unknown(attestations, {"trusted_root"}, "attestations")
        if "trusted_root" in attestations:
            config.trusted_root = os.path.join(
                config_dir, c.string(attestations["trusted_root"], "attestations.trusted_root"))
    _check_repositories(c, config, users)
    return config


def _common_repo_settings(c, spec, key, backend_type):
    mode = backend_type.store_mode
    return dict(
        read=c.access(spec.get("read", ANYONE), f"{key}.read", mode),
        write=c.access(spec.get("write", []), f"{key}.write", mode),
        sync_interval=float(c.number(spec.get("sync_interval", DEFAULT_SYNC_INTERVAL),
                                     f"{key}.sync_interval", minimum=0.1)),
        max_file_bytes=c.number(spec.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES),
                                f"{key}.max_file_bytes", integer=True, minimum=1),
        allow_overwrite=c.boolean(spec.get("allow_overwrite", False),
                                  f"{key}.allow_overwrite"),
        page_max_age=c.number(spec.get("page_max_age", DEFAULT_PAGE_MAX_AGE),
                              f"{key}.page_max_age", integer=True, minimum=0),
        publishers=_publishers(c, spec.get("publishers"), f"{key}.publishers"),
        require_attestations=c.boolean(spec.get("require_attestations", False),
                                       f"{key}.require_attestations"),
        # A kind whose own key is "upstream" (a mirror's URL) keeps it.
        upstream=(c.string(spec["upstream"], f"{key}.upstream")
                  if "upstream" in spec and "upstream" not in backend_type.keys else None),
    )


_PUBLISHER_KEYS = {"github": ({"repository", "workflow"}, {"environment"}),
                   "gitlab": ({"project", "ci_config"}, {"environment"})}


def _publishers(c, spec, key):
    """{project: [GitHubPublisher | GitLabPublisher]} of a repository's publishers."""
    from .oidc import GitHubPublisher, GitLabPublisher
    out = {}
    if spec is None:
        return out
    for project, entries in c.mapping(spec, key).items():
        where = f"{key}.{project}"
        if not isinstance(project, str) or not is_valid_name(project):
            c.fail(where, "must be a project name")
        if not isinstance(entries, list) or not entries:
            c.fail(where, "must be a list of publishers (github: or gitlab:)")
        found = []
        for i, entry in enumerate(entries):
            at = f"{where}[{i}]"
            c.mapping(entry, at)
            if len(entry) != 1 or next(iter(entry)) not in _PUBLISHER_KEYS:
                c.fail(at, "must be one of github: {...} or gitlab: {...}")
            flavour, fields = next(iter(entry.items()))
            required, optional = _PUBLISHER_KEYS[flavour]
            c.mapping(fields, f"{at}.{flavour}")
            c.unknown(fields, required | optional, f"{at}.{flavour}")
            values = {}
            for name in sorted(required | optional):
                if name in fields:
                    values[name] = c.string(fields[name], f"{at}.{flavour}.{name}")
                elif name in required:
                    c.fail(f"{at}.{flavour}.{name}", "is required")
            if flavour == "github":
                if values["repository"].count("/") != 1:
                    c.fail(f"{at}.github.repository", "must be OWNER/NAME")
                if "/" in values["workflow"]:
                    c.fail(f"{at}.github.workflow",
                           "is the workflow's file name (release.yml), not a path")
                found.append(GitHubPublisher(values["repository"], values["workflow"],
                                             values.get("environment")))
            else:
                found.append(GitLabPublisher(values["project"], values["ci_config"],
                                             values.get("environment")))
        out[normalize(project)] = found
    return out


def _oidc(c, spec):
    """The trusted-publishing settings: audience and issuers (defaults: GitHub's, GitLab's)."""
    from .oidc import DEFAULT_AUDIENCE, DEFAULT_ISSUERS
    out = SimpleNamespace(audience=DEFAULT_AUDIENCE, issuers=dict(DEFAULT_ISSUERS))
    if spec is None:
        return out
    c.mapping(spec, "oidc")
    c.unknown(spec, {"audience", "github", "gitlab"}, "oidc")
    if "audience" in spec:
        out.audience = c.string(spec["audience"], "oidc.audience")
    for flavour in ("github", "gitlab"):
        if flavour not in spec:
            continue
        c.mapping(spec[flavour], f"oidc.{flavour}")
        c.unknown(spec[flavour], {"issuer"}, f"oidc.{flavour}")
        issuer = c.string(spec[flavour].get("issuer", DEFAULT_ISSUERS[flavour]),
                          f"oidc.{flavour}.issuer")
        parts = urlsplit(issuer)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            c.fail(f"oidc.{flavour}.issuer", "must be an https URL (http only on loopback)")
        out.issuers[flavour] = issuer.rstrip("/")
    return out


def _check_repositories(c, config, users):
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
    named = {r.name: r for r in config.repositories}
    for r in config.repositories:
        if r.upstream is None:
            continue
        target = named.get(r.upstream)
        if target is None:
            c.fail(f"repositories.{r.name}.upstream", f"no repository {r.upstream!r}")
        if not getattr(registry.get(target.type), "mirror", False):
            c.fail(f"repositories.{r.name}.upstream",
                   f"{r.upstream!r} is not a proxy repository (type: proxy)")
    for backend_type in registry.types():
        backend_type.check(c, [r for r in config.repositories if r.type == backend_type.name])


# private-pypi's TOML ------------------------------------------------------

_TOML_COMMON_KEYS = frozenset({"type", "max_file_bytes", "sync_index_interval"})


def _toml_config(data, source, root):
    c = Checker(source)
    if not data:
        c.fail(None, "names no repository")
    toml_names = [t.toml_name for t in registry.types() if t.toml_name]
    repositories = []
    for name, spec in data.items():
        key = name
        if not _LEGACY_REPOSITORY_NAME.fullmatch(name):
            c.fail(key, "repository names are letters, digits, '.', '_' and '-'")
        if name.lower() in RESERVED_REPOSITORY_NAMES:
            c.fail(key, f"{name!r} is a URL of the server; choose another name")
        c.mapping(spec, key)
        if "type" not in spec:
            c.fail(f"{key}.type", f"is required ({' or '.join(toml_names)})")
        backend_type = registry.get(spec["type"]) if isinstance(spec["type"], str) else None
        if backend_type is None or backend_type.toml_name != spec["type"]:
            c.fail(f"{key}.type", f"must be {' or '.join(toml_names)}, not {spec['type']!r}")
        c.unknown(spec, _TOML_COMMON_KEYS | backend_type.toml_keys, key)
        kwargs = dict(
            sync_interval=float(c.number(spec.get("sync_index_interval", DEFAULT_SYNC_INTERVAL),
                                         f"{key}.sync_index_interval", minimum=0.1)),
            max_file_bytes=c.number(spec.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES),
                                    f"{key}.max_file_bytes", integer=True, minimum=1),
        )
        settings, common = backend_type.toml_settings(c, spec, key, root, name)
        kwargs.update(common)
        repositories.append(RepositoryConfig(name, backend_type.name, settings=settings, **kwargs))
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
        raise ConfigError(label, None, f"must be a mapping, not {kind(data)}")
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
    c = Checker(label)
    if not isinstance(data, dict):
        c.fail(None, f"must be a mapping of repository names, not {kind(data)}")
    names = {r.name: r for r in config.repositories}
    for name, spec in data.items():
        if name not in names:
            c.fail(name, "no such repository in the configuration")
        c.mapping(spec, name)
        backend_type = registry.get(names[name].type)
        own = backend_type.secret_keys if backend_type else frozenset()
        c.unknown(spec, {"raw", "env", "type"} | own, name)
        if "type" in spec and (not isinstance(spec["type"], str) or
                               getattr(registry.get(spec["type"]), "name", None) != names[name].type):
            c.fail(f"{name}.type", f"says {spec['type']!r} but the repository is {names[name].type}")
        if own & set(spec):
            # A credential of several parts (an S3 key pair), as the backend names them.
            if "raw" in spec or "env" in spec:
                c.fail(name, f"takes either raw/env or {', '.join(sorted(own))}, not both")
            parts = {}
            for key in sorted(own & set(spec)):
                parts[key] = c.string(spec[key], f"{name}.{key}")
            missing = backend_type.secret_required - set(parts)
            if missing:
                c.fail(name, f"needs {' and '.join(sorted(missing))}")
            names[name].admin_secret = Secret(parts)
            continue
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
