"""
ppypi.config: every kind of mistake names the file, the key and the problem;
the good paths (zero config, SPEC.md's YAML, private-pypi's TOML, text
content, admin secrets) load as SPEC.md describes.
"""

import os
import textwrap

import bcrypt
import pytest

from ppypi.config import ConfigError, load_admin_secret, load_config

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()


def write(tmp_path, text, name="ppypi.yaml"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def root_of(tmp_path):
    return str(tmp_path / "root")


def load(tmp_path, text, name="ppypi.yaml"):
    return load_config(write(tmp_path, text, name), root_of(tmp_path))


def config_error(tmp_path, text, name="ppypi.yaml"):
    """Load C{text} from a file; return the ConfigError, checking it names the file."""
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_config(path, root_of(tmp_path))
    assert info.value.source == path
    return info.value


def repo(*lines, name="default"):
    """A YAML config with one repository whose settings are C{lines}."""
    if not lines:
        return f"repositories:\n  {name}: {{}}\n"
    return f"repositories:\n  {name}:\n" + "".join(f"    {line}\n" for line in lines)


GITHUB = ("type: github", "owner: acme", "repo: python-packages")

# (YAML text, the key named, a telling part of the problem)
YAML_MISTAKES = {
    "top level a list": ("- default\n", None, "must be a mapping, not a list"),
    "empty file": ("", None, "is empty"),
    "only comments": ("# nothing here\n", None, "is empty"),
    "repositories missing": (f"users: {{alice: {{password: '{HASH}'}}}}\n",
                             "repositories", "is required"),
    "repositories empty": ("repositories: {}\n", "repositories", "at least one"),
    "repositories a list": ("repositories: [default]\n", "repositories", "must be a mapping"),
    "name uppercase": (repo(name="Default"), "repositories.Default", "[a-z0-9][a-z0-9-]*"),
    "name underscore": (repo(name="my_repo"), "repositories.my_repo", "[a-z0-9][a-z0-9-]*"),
    "name leading dash": (repo(name="-x"), "repositories.-x", "[a-z0-9][a-z0-9-]*"),
    "repository not a mapping": ("repositories:\n  default: filesystem\n",
                                 "repositories.default", "must be a mapping"),
    "unknown repository key": (repo("sync_intervall: 5"),
                               "repositories.default.sync_intervall", "unknown key"),
    "github key on filesystem": (repo("owner: acme"), "repositories.default.owner", "unknown key"),
    "path on github": (repo(*GITHUB, "path: x"), "repositories.default.path", "unknown key"),
    "unknown top-level key": ("repository:\n  default: {}\n", "repository", "unknown key"),
    "bad type": (repo("type: ftp"), "repositories.default.type",
                 "must be filesystem or github or s3"),
    "upstream not a repository": (repo("upstream: pypi"), "repositories.default.upstream",
                                  "no repository 'pypi'"),
    "upstream not a proxy": (repo("upstream: other") + "  other: {path: o}\n",
                             "repositories.default.upstream", "not a proxy repository"),
    "proxy upstream not a URL": (repo("type: proxy", "upstream: pypi.org/simple"),
                                 "repositories.default.upstream", "http(s) URL"),
    "proxy upstream with credentials": (repo("type: proxy", "upstream: 'https://u:p@x/simple/'"),
                                        "repositories.default.upstream", "admin secret"),
    "proxy bad min_age": (repo("type: proxy", "min_age: soon"), "repositories.default.min_age",
                          "duration"),
    "proxy bad page_ttl": (repo("type: proxy", "page_ttl: -1"), "repositories.default.page_ttl",
                           "at least 0"),
    "proxy bad budget": (repo("type: proxy", "max_cache_bytes: lots"),
                         "repositories.default.max_cache_bytes", "number"),
    "s3 without bucket": (repo("type: s3"), "repositories.default.bucket", "is required"),
    "s3 bad bucket": (repo("type: s3", "bucket: 'A/b'"), "repositories.default.bucket",
                      "not a bucket name"),
    "s3 bad downloads": (repo("type: s3", "bucket: b1", "downloads: cdn"),
                         "repositories.default.downloads", "redirect or proxy"),
    "s3 bad endpoint": (repo("type: s3", "bucket: b1", "endpoint_url: s3.example.com"),
                        "repositories.default.endpoint_url", "http(s) URL"),
    "s3 bad addressing": (repo("type: s3", "bucket: b1", "addressing_style: dns"),
                          "repositories.default.addressing_style", "path or virtual"),
    "read wrong word": (repo("read: everyone"), "repositories.default.read", "'everyone'"),
    "read wrong type": (repo("read: 5"), "repositories.default.read", "not a number"),
    "write wrong word": (repo("write: somebody"), "repositories.default.write", "'somebody'"),
    "write user not a string": (repo("write: [authenticated, 3]"),
                                "repositories.default.write[1]", "must be a string"),
    "read github on filesystem": (repo("read: github"), "repositories.default.read", "'github'"),
    "write github on filesystem": (repo("write: github"), "repositories.default.write",
                                   "'github'"),
    "sync_interval a string": (repo("sync_interval: 60s"),
                               "repositories.default.sync_interval", "must be a number"),
    "sync_interval negative": (repo("sync_interval: -1"),
                               "repositories.default.sync_interval", "at least"),
    "sync_interval zero": (repo("sync_interval: 0"),
                           "repositories.default.sync_interval", "at least"),
    "sync_interval boolean": (repo("sync_interval: true"),
                              "repositories.default.sync_interval", "not a boolean"),
    "max_file_bytes float": (repo("max_file_bytes: 1.5"),
                             "repositories.default.max_file_bytes", "whole number"),
    "max_file_bytes zero": (repo("max_file_bytes: 0"),
                            "repositories.default.max_file_bytes", "at least 1"),
    "max_file_bytes a string": (repo("max_file_bytes: 1GB"),
                                "repositories.default.max_file_bytes", "must be a number"),
    "allow_overwrite a number": (repo("allow_overwrite: 1"),
                                 "repositories.default.allow_overwrite", "true or false"),
    "allow_overwrite a string": (repo("allow_overwrite: 'true'"),
                                 "repositories.default.allow_overwrite", "true or false"),
    "path not a string": (repo("path: [a, b]"), "repositories.default.path", "must be a string"),
    "github without owner": (repo("type: github", "repo: r"),
                             "repositories.default.owner", "is required"),
    "github without repo": (repo("type: github", "owner: o"),
                            "repositories.default.repo", "is required"),
    "github owner not a string": (repo("type: github", "owner: 5", "repo: r"),
                                  "repositories.default.owner", "must be a string"),
    "api_url not http": (repo(*GITHUB, "api_url: ftp://github.example"),
                         "repositories.default.api_url", "http(s) URL"),
    "api_url without scheme": (repo(*GITHUB, "api_url: api.github.com"),
                               "repositories.default.api_url", "http(s) URL"),
    "bad downloads": (repo(*GITHUB, "downloads: stream"),
                      "repositories.default.downloads", "redirect or proxy"),
    "plain-text password": (repo() + "users:\n  alice: {password: hunter2}\n",
                            "users.alice.password", "bcrypt"),
    "missing password": (repo() + "users:\n  alice: {}\n", "users.alice.password", "is required"),
    "password not a string": (repo() + "users:\n  alice: {password: 12}\n",
                              "users.alice.password", "must be a string"),
    "unknown user key": (repo() + f"users:\n  alice: {{password: '{HASH}', admin: true}}\n",
                         "users.alice.admin", "unknown key"),
    "username with a space": (repo() + f"users:\n  'al ice': {{password: '{HASH}'}}\n",
                              "users.al ice", "user names"),
    "username with a colon": (repo() + f"users:\n  'al:ice': {{password: '{HASH}'}}\n",
                              "users.al:ice", "user names"),
    "user not a mapping": (repo() + f"users:\n  alice: '{HASH}'\n", "users.alice",
                           "must be a mapping"),
    "users a list": (repo() + "users: [alice]\n", "users", "must be a mapping"),
    "write names undefined user": (repo("write: [alice, bob]")
                                   + f"users:\n  alice: {{password: '{HASH}'}}\n",
                                   "repositories.default.write", "'bob'"),
    "read names undefined user": (repo("read: [carol]"), "repositories.default.read", "'carol'"),
    "two repositories, same path": ("repositories:\n  one: {path: pkgs}\n  two: {path: ./pkgs/}\n",
                                    "repositories.two.path", "same folder as repository 'one'"),
    "two repositories, both in ROOT": ("repositories:\n  one: {}\n  two: {}\n",
                                       "repositories.two.path", "same folder"),
    "reserved not a list": (repo() + "reserved: 'acme-*'\n", "reserved", "must be a list"),
    "reserved pattern not a string": (repo() + "reserved: [3]\n", "reserved[0]",
                                      "must be a string"),
    "htpasswd not a string": (repo() + "htpasswd: [a]\n", "htpasswd", "must be a string"),
}


@pytest.mark.parametrize("text, key, problem", YAML_MISTAKES.values(), ids=YAML_MISTAKES.keys())
def test_yaml_mistake(tmp_path, text, key, problem):
    e = config_error(tmp_path, text)
    assert e.key == key
    assert problem in e.problem
    expected = f"{e.source}: {key}: {e.problem}" if key else f"{e.source}: {e.problem}"
    assert str(e) == expected


# Every URL segment of its own in SPEC.md's URL table, but "pypi": SPEC's own
# example names its mirror so (/pypi/NAME/json stays the JSON API).
@pytest.mark.parametrize("name", ["simple", "packages", "health", "legacy",
                                  "project", "metrics"])
def test_repository_name_that_is_a_server_url(tmp_path, name):
    e = config_error(tmp_path, repo(name=name))
    assert e.key == f"repositories.{name}"
    assert "URL" in e.problem and repr(name) in e.problem


def test_pypi_may_name_a_repository(tmp_path):
    config = load(tmp_path, repo(name="pypi"))
    assert [r.name for r in config.repositories] == ["pypi"]


def test_unknown_key_lists_the_known_ones(tmp_path):
    e = config_error(tmp_path, repo("sync_intervall: 5"))
    assert "sync_interval" in e.problem.replace("sync_intervall", "")
    assert str(e).startswith(f"{tmp_path / 'ppypi.yaml'}: repositories.default.sync_intervall: ")


def test_invalid_yaml_names_the_line(tmp_path):
    e = config_error(tmp_path, "repositories:\n  default: {}\n  other: x: y\n")
    assert e.key is None
    assert "invalid YAML" in e.problem and "line 3" in e.problem


def test_yaml_tab_indentation_names_the_line(tmp_path):
    e = config_error(tmp_path, "repositories:\n  default:\n\tpath: x\n")
    assert "invalid YAML" in e.problem and "line 3" in e.problem


def test_invalid_toml(tmp_path):
    e = config_error(tmp_path, '[local\ntype = "file_system"\n', name="ppypi.toml")
    assert e.key is None
    assert "invalid TOML" in e.problem and "line 1" in e.problem


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, root_of(tmp_path))
    assert info.value.source == path
    assert "cannot read" in info.value.problem and "No such file" in info.value.problem


def test_unreadable_file(tmp_path):
    path = tmp_path / "dir.yaml"
    path.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(str(path), root_of(tmp_path))
    assert info.value.source == str(path)
    assert "cannot read" in info.value.problem


def test_not_utf8(tmp_path):
    path = tmp_path / "ppypi.yaml"
    path.write_bytes(b"repositories:\n  d\xff\xfe: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), root_of(tmp_path))
    assert info.value.source == str(path) and "UTF-8" in info.value.problem


# A list where a word belongs must be a ConfigError, not a crash.
@pytest.mark.parametrize("text, name, key", [
    (repo("type: [filesystem]"), "ppypi.yaml", "repositories.default.type"),
    ('[local]\ntype = ["file_system"]\n', "ppypi.toml", "local.type"),
], ids=["yaml", "toml"])
def test_type_that_is_a_list(tmp_path, text, name, key):
    e = config_error(tmp_path, text, name)
    assert e.key == key


def test_admin_secret_type_that_is_a_list(tmp_path):
    e = secret_error(tmp_path, "acme: {type: [github], raw: x}\n")
    assert e.key == "acme.type"


def test_sync_interval_nan(tmp_path):
    e = config_error(tmp_path, repo("sync_interval: .nan"))
    assert e.key == "repositories.default.sync_interval"


# -- private-pypi TOML mistakes ---------------------------------------------

TOML_MISTAKES = {
    "empty": ("", None, "names no repository"),
    "missing type": ("[local]\nread_secret = 'r'\n", "local.type", "is required"),
    "bad type": ("[local]\ntype = 'ftp'\n", "local.type", "file_system or github"),
    "unknown key": ("[local]\ntype = 'file_system'\nread_secrett = 'r'\n",
                    "local.read_secrett", "unknown key"),
    "write without read secret": ("[local]\ntype = 'file_system'\nwrite_secret = 'w'\n",
                                  "local.read_secret", "is required"),
    "secret not a string": ("[local]\ntype = 'file_system'\nread_secret = 5\n",
                            "local.read_secret", "must be a string"),
    "github without owner": ("[gh]\ntype = 'github'\nrepo = 'r'\n", "gh.owner", "is required"),
    "negative interval": ("[local]\ntype = 'file_system'\nsync_index_interval = -5\n",
                          "local.sync_index_interval", "at least"),
    "server URL name": ("[simple]\ntype = 'file_system'\n", "simple", "URL"),
    "name with a space": ("['a b']\ntype = 'file_system'\n", "a b", "repository names"),
    "not a table": ("local = 'file_system'\n", "local", "must be a mapping"),
}


@pytest.mark.parametrize("text, key, problem", TOML_MISTAKES.values(), ids=TOML_MISTAKES.keys())
def test_toml_mistake(tmp_path, text, key, problem):
    e = config_error(tmp_path, text, name="ppypi.toml")
    assert e.key == key
    assert problem in e.problem


# -- good paths --------------------------------------------------------------


def test_zero_config(tmp_path):
    root = root_of(tmp_path)
    config = load_config(None, root)
    [r] = config.repositories
    assert (r.name, r.type, r.read) == ("default", "filesystem", "anyone")
    assert r.settings.path == os.path.abspath(root)


SPEC_EXAMPLE = f"""\
repositories:
  default:
    type: filesystem
    path: packages
    read: anyone
    write: [alice, ci]
    sync_interval: 60
    max_file_bytes: 1073741824
  acme:
    type: github
    owner: acme
    repo: python-packages
    branch: main
    api_url: https://api.github.com
    read: github
    write: github
users:
  alice: {{password: "{HASH}"}}
htpasswd: users.htpasswd
reserved: ["acme-*"]
"""


def test_spec_example(tmp_path):
    path = write(tmp_path, SPEC_EXAMPLE, name="etc/ppypi.yaml")
    root = root_of(tmp_path)
    config = load_config(path, root)
    assert [r.name for r in config.repositories] == ["default", "acme"]
    default, acme = config.repositories
    assert default.type == "filesystem"
    assert default.settings.path == os.path.join(root, "packages")
    assert default.read == "anyone" and tuple(default.write) == ("alice", "ci")
    assert default.sync_interval == 60 and default.max_file_bytes == 1 << 30
    assert default.allow_overwrite is False
    assert (acme.type, acme.settings.owner, acme.settings.repo, acme.settings.branch) == (
        "github", "acme", "python-packages", "main")
    assert acme.settings.api_url == "https://api.github.com"
    assert acme.read == acme.write == "github"
    assert config.users == {"alice": HASH}
    # htpasswd is relative to the config file's folder, not ROOT or the cwd.
    assert os.path.normpath(config.htpasswd) == str(tmp_path / "etc" / "users.htpasswd")
    assert config.is_reserved("acme-tools")
    assert not config.is_reserved("other-tools")


def test_order_of_repositories_is_kept(tmp_path):
    config = load(tmp_path, "repositories:\n  zeta: {path: z}\n  alpha: {path: a}\n"
                            "  mid: {path: m}\n")
    assert [r.name for r in config.repositories] == ["zeta", "alpha", "mid"]


def test_defaults_of_a_minimal_repository(tmp_path):
    config = load(tmp_path, repo())
    [r] = config.repositories
    assert r.settings.path == root_of(tmp_path)
    assert r.read == "anyone" and not r.write
    assert r.sync_interval == 60 and r.max_file_bytes == 1 << 30


def test_write_empty_list(tmp_path):
    [r] = load(tmp_path, repo("write: []")).repositories
    assert not r.write


def test_github_defaults_and_enterprise_url(tmp_path):
    [r] = load(tmp_path, repo(*GITHUB, "api_url: https://ghe.example/api/v3/",
                              "downloads: proxy")).repositories
    assert r.settings.branch == "main" and r.settings.downloads == "proxy"
    assert r.settings.api_url.rstrip("/") == "https://ghe.example/api/v3"


def test_users_with_htpasswd_may_be_named_in_write(tmp_path):
    config = load(tmp_path, repo("write: [bob]") + "htpasswd: users.htpasswd\n")
    assert tuple(config.repositories[0].write) == ("bob",)


def test_reserved_patterns_match_normalised_names(tmp_path):
    config = load(tmp_path, repo() + "reserved: ['Acme_Internal*', 'exact']\n")
    assert config.is_reserved("acme-internal-lib")
    assert config.is_reserved("exact")
    assert not config.is_reserved("exactly")


def test_yaml_schema_in_a_toml_file(tmp_path):
    config = load(tmp_path, "[repositories.default]\nwrite = 'authenticated'\n",
                  name="ppypi.toml")
    assert config.repositories[0].write == "authenticated"


PRIVATE_PYPI = """\
[local]
type = "file_system"
read_secret = "read-s3cret"
write_secret = "write-s3cret"

[gh]
type = "github"
owner = "o"
repo = "r"
"""


def test_private_pypi_toml(tmp_path):
    root = root_of(tmp_path)
    config = load(tmp_path, PRIVATE_PYPI, name="config.toml")
    local, gh = config.repositories
    assert (local.name, local.type, gh.name, gh.type) == ("local", "filesystem", "gh", "github")
    assert local.read_secret.value == "read-s3cret"
    assert local.write_secret.value == "write-s3cret"
    assert local.settings.path.startswith(root + os.sep)
    assert (gh.settings.owner, gh.settings.repo, gh.settings.branch) == ("o", "r", "main")
    for shown in (repr(local), repr(local.read_secret), repr(local.write_secret)):
        assert "s3cret" not in shown


def test_private_pypi_names_with_underscores(tmp_path):
    config = load(tmp_path, '[local_file_system]\ntype = "file_system"\n'
                            '[gh_mirror]\ntype = "github"\nowner = "o"\nrepo = "r"\n',
                  name="config.toml")
    assert [r.name for r in config.repositories] == ["local_file_system", "gh_mirror"]


@pytest.mark.parametrize("text", [repo("path: pkgs"), PRIVATE_PYPI], ids=["yaml", "toml"])
def test_text_content(tmp_path, text):
    config = load_config(text, root_of(tmp_path), is_text=True)
    assert config.repositories[0].name in ("default", "local")
    assert config.repositories[0].type == "filesystem"


@pytest.mark.parametrize("text, key", [
    (repo("sync_intervall: 5"), "repositories.default.sync_intervall"),
    ("repositories:\n  default: {}\n  other: x: y\n", None),
    ("[local]\ntype = 's3'\n", "local.type"),
], ids=["yaml-key", "yaml-syntax", "toml-key"])
def test_text_content_mistake_says_text(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_config(text, root_of(tmp_path), is_text=True)
    assert info.value.source == "--config (text)"
    assert info.value.key == key
    assert str(info.value).startswith("--config (text): ")


# -- admin secret ------------------------------------------------------------

TWO_REPOS = repo("path: pkgs") + "  acme:\n" + "".join(f"    {g}\n" for g in GITHUB)


def secret_error(tmp_path, text, name="secret.yaml", environ=None):
    config = load(tmp_path, TWO_REPOS)
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_admin_secret(path, config, environ=environ or {})
    assert info.value.source == path
    return info.value


def test_admin_secret_raw(tmp_path):
    config = load(tmp_path, TWO_REPOS)
    load_admin_secret(write(tmp_path, "acme: {raw: ghp_TOPSECRET}\n", "secret.yaml"),
                      config, environ={})
    acme = config.repository("acme")
    assert acme.admin_secret.value == "ghp_TOPSECRET"
    assert "TOPSECRET" not in repr(acme.admin_secret)
    assert "TOPSECRET" not in repr(acme)
    assert config.repository("default").admin_secret is None


def test_admin_secret_env(tmp_path):
    config = load(tmp_path, TWO_REPOS)
    load_admin_secret(write(tmp_path, "acme: {env: GH_TOKEN}\n", "secret.yaml"),
                      config, environ={"GH_TOKEN": "ghp_FROMENV"})
    assert config.repository("acme").admin_secret.value == "ghp_FROMENV"
    assert "FROMENV" not in repr(config.repository("acme").admin_secret)


def test_admin_secret_text(tmp_path):
    config = load(tmp_path, TWO_REPOS)
    load_admin_secret("acme: {raw: ghp_T}\n", config, is_text=True, environ={})
    assert config.repository("acme").admin_secret.value == "ghp_T"
    with pytest.raises(ConfigError) as info:
        load_admin_secret("nope: {raw: x}\n", config, is_text=True, environ={})
    assert info.value.source == "--admin-secret (text)"


def test_admin_secret_none_is_nothing(tmp_path):
    config = load(tmp_path, TWO_REPOS)
    load_admin_secret(None, config)
    assert config.repository("acme").admin_secret is None


SECRET_MISTAKES = {
    "env var missing": ("acme: {env: PPYPI_TEST_NO_SUCH_VAR}\n", "acme.env",
                        "PPYPI_TEST_NO_SUCH_VAR is not set"),
    "no such repository": ("nope: {raw: x}\n", "nope", "no such repository"),
    "both raw and env": ("acme: {raw: ghp_LEAK, env: GH_TOKEN}\n", "acme", "exactly one"),
    "neither raw nor env": ("acme: {}\n", "acme", "exactly one"),
    "unknown key": ("acme: {token: ghp_LEAK}\n", "acme.token", "unknown key"),
    "raw not a string": ("acme: {raw: [a]}\n", "acme.raw", "must be a string"),
    "not a mapping": ("- acme\n", None, "must be a mapping"),
    "entry not a mapping": ("acme: ghp_LEAK\n", "acme", "must be a mapping"),
    "empty": ("", None, "must be a mapping"),
    "type mismatch": ("acme: {type: file_system, raw: x}\n", "acme.type", "file_system"),
    "invalid YAML": ("acme: {raw: x\n", None, "invalid YAML"),
}


@pytest.mark.parametrize("text, key, problem", SECRET_MISTAKES.values(),
                         ids=SECRET_MISTAKES.keys())
def test_admin_secret_mistake(tmp_path, text, key, problem):
    e = secret_error(tmp_path, text)
    assert e.key == key
    assert problem in e.problem
    assert "LEAK" not in str(e)


S3_REPOS = repo("path: pkgs") + "  store:\n    type: s3\n    bucket: acme-packages\n"


def test_admin_secret_s3_key_pair(tmp_path):
    config = load(tmp_path, S3_REPOS)
    load_admin_secret("store: {access_key_id: AKIAEXAMPLE, secret_access_key: S3TOPSECRET}\n",
                      config, is_text=True, environ={})
    store = config.repository("store")
    assert store.admin_secret.value == {"access_key_id": "AKIAEXAMPLE",
                                        "secret_access_key": "S3TOPSECRET"}
    assert "S3TOPSECRET" not in repr(store.admin_secret) and "S3TOPSECRET" not in repr(store)
    assert hash(store.admin_secret) == hash(store.admin_secret)


S3_SECRET_MISTAKES = {
    "half a key pair": ("store: {access_key_id: AKIA}\n", "store", "secret_access_key"),
    "key pair and raw": ("store: {raw: x, access_key_id: AKIA, secret_access_key: LEAK}\n",
                         "store", "not both"),
    "key not a string": ("store: {access_key_id: [a], secret_access_key: LEAK}\n",
                         "store.access_key_id", "must be a string"),
    "a key pair for a folder": ("default: {access_key_id: AKIA, secret_access_key: LEAK}\n",
                                "default.access_key_id", "unknown key"),
}


@pytest.mark.parametrize("text, key, problem", S3_SECRET_MISTAKES.values(),
                         ids=S3_SECRET_MISTAKES.keys())
def test_admin_secret_s3_mistake(tmp_path, text, key, problem):
    config = load(tmp_path, S3_REPOS)
    with pytest.raises(ConfigError) as info:
        load_admin_secret(text, config, is_text=True, environ={})
    assert info.value.key == key and problem in info.value.problem
    assert "LEAK" not in str(info.value)


def test_admin_secret_missing_file(tmp_path):
    config = load(tmp_path, TWO_REPOS)
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_admin_secret(path, config, environ={})
    assert info.value.source == path and "cannot read" in info.value.problem


def test_private_pypi_admin_secret(tmp_path):
    config = load(tmp_path, PRIVATE_PYPI, name="config.toml")
    path = write(tmp_path, '[gh]\ntype = "github"\nraw = "ghp_PP"\n\n'
                           '[local]\ntype = "file_system"\nenv = "LOCAL_SECRET"\n',
                 name="admin_secret.toml")
    load_admin_secret(path, config, environ={"LOCAL_SECRET": "local-PP"})
    assert config.repository("gh").admin_secret.value == "ghp_PP"
    assert config.repository("local").admin_secret.value == "local-PP"


def test_private_pypi_admin_secret_type_mismatch(tmp_path):
    config = load(tmp_path, PRIVATE_PYPI, name="config.toml")
    path = write(tmp_path, '[gh]\ntype = "file_system"\nraw = "ghp_LEAK"\n',
                 name="admin_secret.toml")
    with pytest.raises(ConfigError) as info:
        load_admin_secret(path, config, environ={})
    e = info.value
    assert (e.source, e.key) == (path, "gh.type")
    assert "file_system" in e.problem and "github" in e.problem
    assert "LEAK" not in str(e)
