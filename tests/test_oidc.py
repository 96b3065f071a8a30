"""
Trusted publishing's matching rules and configuration, in process (the
whole exchange, with real JWTs, uv and twine, is tests/test_live_oidc.py).
"""

import pytest

from ppypi.config import ConfigError, load_config
from ppypi.oidc import GitHubPublisher, GitLabPublisher

GH = GitHubPublisher("acme/acme-tool", "release.yml", "pypi")


def github(**claims):
    base = {"repository": "acme/acme-tool", "environment": "pypi",
            "job_workflow_ref": "acme/acme-tool/.github/workflows/release.yml@refs/heads/main"}
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("claims, matches", [
    ({}, True),
    ({"repository": "ACME/Acme-Tool"}, True),             # case-insensitive, as Warehouse
    ({"environment": "PyPI"}, True),
    ({"job_workflow_ref": "acme/acme-tool/.github/workflows/release.yml@refs/tags/v1"}, True),
    ({"repository": "acme/other"}, False),
    ({"repository": "acme/acme-tool-fork"}, False),
    ({"environment": "staging"}, False),
    ({"environment": None}, False),
    ({"job_workflow_ref": "acme/acme-tool/.github/workflows/ci.yml@refs/heads/main"}, False),
    # A reusable workflow of another repository is not this repository's.
    ({"job_workflow_ref": "evil/lib/.github/workflows/release.yml@refs/heads/main"}, False),
    ({"job_workflow_ref": None}, False),
    ({"repository": 7}, False),
])
def test_github_claims(claims, matches):
    assert GH.matches(github(**claims)) is matches


def test_github_without_environment_takes_any():
    assert GitHubPublisher("acme/acme-tool", "release.yml").matches(github(environment="x"))


GL = GitLabPublisher("acme/acme-tool", ".gitlab-ci.yml")


@pytest.mark.parametrize("claims, matches", [
    ({}, True),
    ({"project_path": "Acme/Acme-Tool",
      "ci_config_ref_uri": "gitlab.com/Acme/Acme-Tool//.gitlab-ci.yml@refs/heads/main"}, True),
    # A self-managed instance: its own host (and port) in the URI.
    ({"ci_config_ref_uri": "git.acme.example:8443/acme/acme-tool//.gitlab-ci.yml@refs/tags/v1"},
     True),
    ({"ci_config_ref_uri": "gitlab.com/acme/acme-tool//ci/other.yml@refs/heads/main"}, False),
    ({"ci_config_ref_uri": "gitlab.com/evil/x//.gitlab-ci.yml@refs/heads/main"}, False),
    ({"project_path": "acme/other"}, False),
    ({"ci_config_ref_uri": "gitlab.com/acme/acme-tool/.gitlab-ci.yml@refs/heads/main"}, False),
])
def test_gitlab_claims(claims, matches):
    base = {"project_path": "acme/acme-tool",
            "ci_config_ref_uri": "gitlab.com/acme/acme-tool//.gitlab-ci.yml@refs/heads/main"}
    base.update(claims)
    assert GL.matches(base) is matches


def test_gitlab_environment_is_case_sensitive():
    p = GitLabPublisher("acme/acme-tool", ".gitlab-ci.yml", "production")
    base = {"project_path": "acme/acme-tool",
            "ci_config_ref_uri": "gitlab.com/acme/acme-tool//.gitlab-ci.yml@refs/heads/main"}
    assert p.matches(dict(base, environment="production"))
    assert not p.matches(dict(base, environment="Production"))


def config(tmp_path, text):
    return load_config(text, str(tmp_path), is_text=True)


def test_publishers_and_issuers_load(tmp_path):
    c = config(tmp_path, """\
repositories:
  default:
    publishers:
      Acme_Tool:
        - github: {repository: acme/acme-tool, workflow: release.yml, environment: pypi}
        - gitlab: {project: acme/acme-tool, ci_config: .gitlab-ci.yml}
oidc:
  audience: pypi.internal
  github: {issuer: "https://ghe.acme.example/_services/token/"}
  gitlab: {issuer: "http://127.0.0.1:9999"}
""")
    pubs = c.repositories[0].publishers["acme-tool"]
    assert [type(p).__name__ for p in pubs] == ["GitHubPublisher", "GitLabPublisher"]
    assert c.oidc.audience == "pypi.internal"
    assert c.oidc.issuers == {"github": "https://ghe.acme.example/_services/token",
                              "gitlab": "http://127.0.0.1:9999"}


def test_the_defaults(tmp_path):
    c = config(tmp_path, "repositories:\n  default: {}\n")
    assert c.oidc.audience == "ppypi"
    assert c.oidc.issuers["github"] == "https://token.actions.githubusercontent.com"
    assert c.repositories[0].publishers == {}


@pytest.mark.parametrize("text, key, problem", [
    ("    publishers: {acme-tool: [{github: {repository: acme/x}}]}\n",
     "repositories.default.publishers.acme-tool[0].github.workflow", "required"),
    ("    publishers: {acme-tool: [{github: {repository: x, workflow: r.yml}}]}\n",
     "repositories.default.publishers.acme-tool[0].github.repository", "OWNER/NAME"),
    ("    publishers: {acme-tool: [{github: {repository: a/b, workflow: .github/r.yml}}]}\n",
     "repositories.default.publishers.acme-tool[0].github.workflow", "file name"),
    ("    publishers: {acme-tool: [{bitbucket: {}}]}\n",
     "repositories.default.publishers.acme-tool[0]", "github"),
    ("    publishers: {acme-tool: []}\n", "repositories.default.publishers.acme-tool", "list"),
    ("    publishers: {'not a name!': [{gitlab: {project: a/b, ci_config: c}}]}\n",
     "repositories.default.publishers.not a name!", "project name"),
])
def test_publisher_mistakes(tmp_path, text, key, problem):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, "repositories:\n  default:\n" + text)
    assert e.value.key == key and problem in e.value.problem


def test_an_issuer_must_be_https_off_loopback(tmp_path):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, "repositories:\n  default: {}\n"
                         "oidc: {github: {issuer: 'http://token.example'}}\n")
    assert e.value.key == "oidc.github.issuer" and "https" in e.value.problem
