"""
The fake OIDC issuer (tests/fake_oidc.py) answers as GitHub Actions' and
GitLab CI's do: the configuration and JWKS shapes, tokens that verify with
PyJWT against the JWKS and carry the providers' claims, key rotation, the
GitHub runtime's ID-token endpoint, hostile tokens that are what they say,
and faults that do what they say.
"""

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from .conftest import wait_for
from .fake_oidc import HOSTILE, FakeIssuer, env_name_for_audience

AUD = "ppypi"

GITHUB_CLAIMS = {
    "jti", "sub", "aud", "ref", "sha", "repository", "repository_owner", "repository_owner_id",
    "repository_visibility", "repository_id", "run_id", "run_number", "run_attempt",
    "runner_environment", "actor", "actor_id", "workflow", "head_ref", "base_ref", "event_name",
    "ref_protected", "ref_type", "workflow_ref", "workflow_sha", "job_workflow_ref",
    "job_workflow_sha", "check_run_id", "iss", "nbf", "exp", "iat"}

GITLAB_CLAIMS = {
    "namespace_id", "namespace_path", "project_id", "project_path", "user_id", "user_login",
    "user_email", "user_access_level", "pipeline_id", "pipeline_source", "job_id", "ref",
    "ref_type", "ref_path", "ref_protected", "runner_id", "runner_environment", "sha",
    "project_visibility", "ci_config_ref_uri", "ci_config_sha", "jti", "iss", "iat", "nbf",
    "exp", "sub", "aud"}


@pytest.fixture
def github():
    with FakeIssuer(audience=AUD) as fake:
        yield fake


@pytest.fixture
def gitlab():
    with FakeIssuer(flavour="gitlab", path="/gitlab", audience=AUD) as fake:
        yield fake


def fetch(url, headers=None):
    """(status, parsed JSON body)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def careful_verify(fake, token, audience=AUD):
    """
    What a careful server does (Warehouse's oidc/services.py): the key by
    kid from the issuer's JWKS, RS256 only, one audience, iss, exp/nbf/iat
    with a 30 s leeway.
    """
    keys = {k["kid"]: k for k in fetch(fake.jwks_url)[1]["keys"]}
    kid = jwt.get_unverified_header(token).get("kid")
    if kid not in keys:
        raise LookupError(f"no key {kid!r}")
    return jwt.decode(token, jwt.PyJWK(keys[kid]), algorithms=["RS256"], audience=audience,
                      issuer=fake.url, leeway=30,
                      options={"require": ["iss", "iat", "exp", "aud"], "strict_aud": True})


def payload(token):
    return jwt.decode(token, options={"verify_signature": False})


# -- configuration and JWKS


def test_github_configuration_has_githubs_shape(github):
    status, config = fetch(github.url + "/.well-known/openid-configuration")
    assert status == 200
    assert list(config) == ["issuer", "jwks_uri", "subject_types_supported",
                            "response_types_supported", "claims_supported",
                            "id_token_signing_alg_values_supported", "scopes_supported"]
    assert config["issuer"] == github.url
    assert config["jwks_uri"] == github.url + "/.well-known/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["response_types_supported"] == ["id_token"]
    assert config["scopes_supported"] == ["openid"]
    assert GITHUB_CLAIMS - {"check_run_id"} <= set(config["claims_supported"]) | {"environment"}


def test_gitlab_configuration_has_gitlabs_shape_under_the_issuers_path(gitlab):
    assert gitlab.url.endswith("/gitlab")
    status, config = fetch(gitlab.url + "/.well-known/openid-configuration")
    assert status == 200
    assert config["issuer"] == gitlab.url
    assert config["jwks_uri"] == gitlab.url + "/oauth/discovery/keys"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["response_types_supported"] == ["code"]
    assert config["subject_types_supported"] == ["public"]
    assert "openid" in config["scopes_supported"]
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        assert config[endpoint].startswith(gitlab.url + "/oauth/")
    # Discovery appends to the issuer's path: the root has no configuration.
    assert fetch(gitlab.origin + "/.well-known/openid-configuration")[0] == 404


@pytest.mark.parametrize("flavour", ["github", "gitlab"])
def test_jwks_has_rs256_signing_keys_with_kids(flavour):
    with FakeIssuer(flavour=flavour, audience=AUD) as fake:
        status, jwks = fetch(fake.jwks_url)
    assert status == 200
    [key] = jwks["keys"]
    assert set(key) == {"kid", "kty", "n", "e", "use", "alg"}
    assert (key["kty"], key["e"], key["use"], key["alg"]) == ("RSA", "AQAB", "sig", "RS256")
    n = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
    assert len(n) * 8 >= 2048
    assert key["kid"] == fake.kid
    assert jwt.PyJWK(key).algorithm_name == "RS256"
    if flavour == "gitlab":
        # GitLab's kid is the key's RFC 7638 thumbprint.
        canonical = json.dumps({"e": key["e"], "kty": "RSA", "n": key["n"]},
                               separators=(",", ":")).encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=")
        assert key["kid"] == digest.decode()


# -- tokens


def test_github_token_verifies_against_the_jwks_and_has_githubs_claims(github):
    token = github.github_token(environment="pypi")
    key = jwt.PyJWKClient(github.jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUD, issuer=github.url)
    assert set(claims) == GITHUB_CLAIMS | {"environment", "environment_node_id"}
    assert claims["sub"] == "repo:acme/acme-tool:environment:pypi"
    assert claims["job_workflow_ref"] == ("acme/acme-tool/.github/workflows/release.yml"
                                          "@refs/heads/main")
    assert claims["workflow_ref"] == claims["job_workflow_ref"]
    assert (claims["repository"], claims["repository_owner"]) == ("acme/acme-tool", "acme")
    assert (claims["ref"], claims["ref_type"], claims["environment"]) == ("refs/heads/main",
                                                                          "branch", "pypi")
    assert claims["workflow"] == "Release"   # the display name, not the file
    assert claims["exp"] - claims["iat"] == 300 and claims["iat"] - claims["nbf"] == 300
    assert abs(claims["iat"] - time.time()) < 60
    # uv's claim parser needs the IDs as strings, as GitHub sends them.
    for name in ("repository_owner_id", "repository_id", "run_id", "run_number", "actor_id"):
        assert isinstance(claims[name], str) and claims[name].isdigit()
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": github.kid, "typ": "JWT"}


def test_github_token_without_environment_has_no_environment_claim(github):
    claims = careful_verify(github, github.github_token(ref="refs/tags/v1.0"))
    assert "environment" not in claims
    assert claims["sub"] == "repo:acme/acme-tool:ref:refs/tags/v1.0"
    assert claims["ref_type"] == "tag"
    assert claims["job_workflow_ref"].endswith("release.yml@refs/tags/v1.0")


def test_github_ids_are_stable_per_name_and_jtis_unique(github):
    one, two = github.github_claims(), github.github_claims()
    other = github.github_claims(repository="evil/acme-tool")
    assert one["repository_owner_id"] == two["repository_owner_id"] != other["repository_owner_id"]
    assert one["repository_id"] == two["repository_id"] != other["repository_id"]
    assert one["jti"] != two["jti"]


def test_overrides_replace_or_drop_claims(github):
    claims = careful_verify(github, github.github_token(
        job_workflow_ref="acme/shared/.github/workflows/publish.yml@refs/heads/main",
        actor=None))
    assert claims["job_workflow_ref"].startswith("acme/shared/")
    assert claims["workflow_ref"].startswith("acme/acme-tool/")   # the caller's
    assert "actor" not in claims


def test_github_default_audience_is_the_owners_url():
    with FakeIssuer() as fake:
        claims = payload(fake.github_token(repository="octo-org/x"))
    assert claims["aud"] == "https://github.com/octo-org"


def test_gitlab_token_verifies_and_has_gitlabs_claims(gitlab):
    token = gitlab.gitlab_token(environment="pypi")
    key = jwt.PyJWKClient(gitlab.jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUD, issuer=gitlab.url)
    assert set(claims) == GITLAB_CLAIMS | {"environment", "environment_protected",
                                           "deployment_tier", "environment_action"}
    assert claims["sub"] == "project_path:acme/acme-tool:ref_type:branch:ref:main"
    assert (claims["project_path"], claims["namespace_path"]) == ("acme/acme-tool", "acme")
    assert (claims["ref"], claims["ref_path"]) == ("main", "refs/heads/main")
    host = gitlab.url.split("://")[1]   # 127.0.0.1:PORT/gitlab, as a self-managed instance
    assert claims["ci_config_ref_uri"] == f"{host}/acme/acme-tool//.gitlab-ci.yml@refs/heads/main"
    assert claims["iat"] - claims["nbf"] == 5 and claims["exp"] - claims["iat"] == 3600
    assert claims["environment"] == "pypi"
    for name in ("namespace_id", "project_id", "user_id", "pipeline_id", "job_id"):
        assert isinstance(claims[name], str)
    assert isinstance(claims["runner_id"], int)


def test_gitlab_token_for_a_tag_and_an_explicit_config_uri(gitlab):
    uri = "gitlab.com/acme/acme-tool//ci/release.yml@refs/tags/v1"
    claims = careful_verify(gitlab, gitlab.gitlab_token(ref="v1", ref_type="tag",
                                                        ci_config_ref_uri=uri))
    assert claims["sub"] == "project_path:acme/acme-tool:ref_type:tag:ref:v1"
    assert (claims["ref_path"], claims["ci_config_ref_uri"]) == ("refs/tags/v1", uri)
    assert "environment" not in claims


def test_gitlab_needs_an_audience():
    with FakeIssuer(flavour="gitlab") as fake, pytest.raises(ValueError):
        fake.gitlab_token()


# -- rotation


def test_rotation_publishes_the_new_key_and_signs_with_it(github):
    old_kid = github.kid
    old = github.github_token()
    new_kid = github.rotate()
    new = github.github_token()
    assert new_kid != old_kid
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert [k["kid"] for k in fetch(github.jwks_url)[1]["keys"]] == [old_kid, new_kid]
    assert careful_verify(github, old)["jti"] != careful_verify(github, new)["jti"]
    github.retire(old_kid)
    assert [k["kid"] for k in fetch(github.jwks_url)[1]["keys"]] == [new_kid]
    with pytest.raises(LookupError):
        careful_verify(github, old)
    careful_verify(github, new)


def test_counts_record_each_fetch(github):
    fetch(github.configuration_url)
    for _ in range(3):
        fetch(github.jwks_url)
    fetch(github.origin + "/elsewhere")
    assert github.counts == {"configuration": 1, "jwks": 3, "other": 1}
    assert [r.endpoint for r in github.requests] == ["configuration", "jwks", "jwks", "jwks",
                                                     "other"]
    assert [r.status for r in github.requests] == [200, 200, 200, 200, 404]
    github.reset()
    assert not github.counts and not github.requests


# -- hostile tokens


@pytest.fixture(scope="module")
def issuers():
    with FakeIssuer(audience=AUD) as gh, FakeIssuer(flavour="gitlab", audience=AUD) as gl:
        yield {"github": gh, "gitlab": gl}


@pytest.mark.parametrize("flavour", ["github", "gitlab"])
@pytest.mark.parametrize("kind", sorted(set(HOSTILE) - {"oversized"}))
def test_every_hostile_token_is_refused_by_a_careful_verifier(issuers, flavour, kind):
    # "oversized" is signed right: it is for the server's limit on the body.
    fake = issuers[flavour]
    careful_verify(fake, fake.identity_token())   # the honest one passes
    with pytest.raises((jwt.PyJWTError, LookupError)):
        careful_verify(fake, fake.hostile(kind))


def test_alg_none_is_unsigned(github):
    token = github.hostile("alg-none")
    header, body, signature = token.split(".")
    assert signature == ""
    assert jwt.get_unverified_header(token) == {"alg": "none", "typ": "JWT", "kid": github.kid}
    assert payload(token)["aud"] == AUD


def test_hs256_confusion_is_keyed_with_the_public_key(github):
    token = github.hostile("hs256-public-key")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.get_unverified_header(token)["kid"] == github.kid
    signing_input, signature = token.rsplit(".", 1)
    # The PEM a naive server would make of the published JWK.
    pem = jwt.PyJWK(fetch(github.jwks_url)[1]["keys"][0]).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----") and pem == github.public_pem()
    expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature
    # A verifier that lets the token choose its algorithm, keyed by the PEM, is fooled
    # (PyJWT refuses a PEM as an HMAC secret, so here by hand): the point of the test.
    assert payload(token)["repository"] == "acme/acme-tool"


def test_hs256_jwk_variant_is_keyed_with_the_jwk_json(github):
    token = github.hostile("hs256-jwk")
    signing_input, signature = token.rsplit(".", 1)
    secret = json.dumps(github.jwk()).encode()
    expected = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature


def test_forged_and_unknown_key_tokens(github):
    forged = github.hostile("stranger-key")
    assert jwt.get_unverified_header(forged)["kid"] == github.kid   # names the real key
    with pytest.raises(jwt.InvalidSignatureError):
        careful_verify(github, forged)
    unknown = github.hostile("unknown-kid")
    published = {k["kid"] for k in github.jwks()["keys"]}
    assert jwt.get_unverified_header(unknown)["kid"] not in published
    assert "kid" not in jwt.get_unverified_header(github.hostile("no-kid"))
    with pytest.raises(jwt.InvalidSignatureError):
        careful_verify(github, github.hostile("bad-signature"))


def test_token_kid_unknown_with_the_real_key_verifies_once_its_kid_is_known(github):
    token = github.token(github.github_claims(), kid="unknown")
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid.startswith("unknown-")
    jwk = dict(github.jwk(), kid=kid)
    assert jwt.decode(token, jwt.PyJWK(jwk), algorithms=["RS256"], audience=AUD)["aud"] == AUD


@pytest.mark.parametrize("kind, error", [
    ("expired", jwt.ExpiredSignatureError),
    ("not-yet-valid", jwt.ImmatureSignatureError),
    ("issued-in-future", jwt.ImmatureSignatureError),
    ("wrong-aud", jwt.InvalidAudienceError),
    ("multi-aud", jwt.InvalidAudienceError),
    ("wrong-iss", jwt.InvalidIssuerError),
    ("no-exp", jwt.MissingRequiredClaimError),
    ("malformed", jwt.DecodeError),
])
def test_claim_hostile_tokens_are_signed_right_and_wrong_in_their_claims(github, kind, error):
    token = github.hostile(kind)
    with pytest.raises(error):
        careful_verify(github, token)


def test_hostile_times_and_audiences(github):
    now = time.time()
    assert payload(github.hostile("expired"))["exp"] < now - 3600
    assert payload(github.hostile("not-yet-valid"))["nbf"] > now + 1800
    assert payload(github.hostile("multi-aud"))["aud"] == [AUD, "someone-else"]
    # A verifier without strict_aud takes the list: why the server must be strict.
    multi = github.hostile("multi-aud")
    key = jwt.PyJWK(github.jwk())
    claims = jwt.decode(multi, key, algorithms=["RS256"], audience=AUD)
    assert claims["aud"] == [AUD, "someone-else"]
    assert "exp" not in payload(github.hostile("no-exp"))


def test_oversized_token_is_over_a_megabyte_and_otherwise_valid(github):
    token = github.hostile("oversized")
    assert len(token) > 1_000_000
    assert careful_verify(github, token)["repository"] == "acme/acme-tool"


def test_hostile_kinds_take_claim_overrides(gitlab):
    token = gitlab.hostile("expired", project_path="evil/acme-tool")
    assert payload(token)["project_path"] == "evil/acme-tool"
    with pytest.raises(ValueError):
        gitlab.hostile("no-such-kind")


# -- GitHub's ID-token request endpoint and a job's environment


def request_token(env, audience=None, scheme="Bearer", token=None):
    url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    if audience is not None:
        url += "&audience=" + urllib.parse.quote(audience, safe="")
    token = token or env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    return fetch(url, {"Authorization": f"{scheme} {token}"})


def test_token_endpoint_answers_like_githubs_runtime(github):
    env = github.env()
    assert "?api-version=2.0" in env["ACTIONS_ID_TOKEN_REQUEST_URL"]   # clients append
    status, body = request_token(env, "https://pkg.example/x y")
    assert status == 200
    assert set(body) == {"count", "value"}
    assert body["count"] == len(body["value"])
    claims = careful_verify(github, body["value"], audience="https://pkg.example/x y")
    assert claims["repository"] == "acme/acme-tool"
    seen = github.requests[0]
    assert (seen.endpoint, seen.status, seen.authorization) == ("token", 200, "Bearer")
    assert "api-version=2.0&audience=" in seen.query


def test_token_endpoint_takes_the_scheme_in_any_case(github):
    # di/id (pypa/gh-action-pypi-publish) sends "bearer".
    assert request_token(github.env(), AUD, scheme="bearer")[0] == 200


def test_token_endpoint_refuses_a_wrong_or_missing_bearer(github):
    env = github.env()
    assert request_token(env, AUD, token="not-the-token")[0] == 401
    assert fetch(env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=x")[0] == 401
    assert request_token(github.env(request_token="forged"), AUD)[0] == 401
    assert request_token(env, AUD, scheme="Basic")[0] == 401
    assert github.counts["token"] == 4


def test_token_endpoint_without_audience_gives_githubs_default(github):
    status, body = request_token(github.env(), None)
    assert status == 200
    assert payload(body["value"])["aud"] == "https://github.com/acme"


def test_token_endpoint_mints_for_the_job_the_env_describes(github):
    env = github.env(repository="octo/tool", workflow="publish.yml", environment="release")
    assert env["GITHUB_REPOSITORY"] == "octo/tool"
    claims = careful_verify(github, request_token(env, AUD)[1]["value"])
    assert claims["sub"] == "repo:octo/tool:environment:release"
    assert claims["job_workflow_ref"] == "octo/tool/.github/workflows/publish.yml@refs/heads/main"


def test_github_env_has_what_uv_and_id_look_for(github):
    base = {"PATH": "/usr/bin", "GOOGLE_SERVICE_ACCOUNT_NAME": "sa@x", "GITLAB_CI": "true",
            "BUILDKITE": "true", "CIRCLECI": "true", "GITHUB_TOKEN": "x", "SIGSTORE_ID_TOKEN": "y"}
    env = github.env(base=base)
    assert env["GITHUB_ACTIONS"] == "true" and env["CI"] == "true"
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"] == github.token_request_url
    assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == github.request_token
    assert env["PATH"] == "/usr/bin"
    for name in ("GOOGLE_SERVICE_ACCOUNT_NAME", "GITLAB_CI", "BUILDKITE", "CIRCLECI",
                 "GITHUB_TOKEN", "SIGSTORE_ID_TOKEN"):
        assert name not in env
    without = github.env(permission=False)
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" not in without
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in without


def test_gitlab_env_carries_the_token_under_the_audiences_name(gitlab):
    assert env_name_for_audience("pypi") == "PYPI_ID_TOKEN"
    assert env_name_for_audience("https://pkg.example:8443") == "HTTPS___PKG_EXAMPLE_8443_ID_TOKEN"
    env = gitlab.env(environment="pypi")
    assert env["GITLAB_CI"] == "true" and env["CI_SERVER_URL"] == gitlab.url
    claims = careful_verify(gitlab, env["PPYPI_ID_TOKEN"])
    assert claims["environment"] == "pypi" and claims["aud"] == AUD
    assert "GITHUB_ACTIONS" not in gitlab.env(base={"GITHUB_ACTIONS": "true"})


# -- faults


def test_fail_answers_the_status_on_configuration_and_jwks_only(github):
    github.fail(503)
    assert fetch(github.configuration_url)[0] == 503
    assert fetch(github.jwks_url)[0] == 503
    assert request_token(github.env(), AUD)[0] == 200
    github.accept()
    assert fetch(github.jwks_url)[0] == 200
    github.fail(500, "token")
    assert request_token(github.env(), AUD)[0] == 500
    assert fetch(github.jwks_url)[0] == 200


def test_refuse_cuts_the_connection_without_an_answer(github):
    github.refuse("jwks")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        fetch(github.jwks_url)
    assert fetch(github.configuration_url)[0] == 200
    assert github.requests[0].status == 0
    github.accept()
    assert fetch(github.jwks_url)[0] == 200


def test_hold_keeps_the_answer_until_release(github):
    github.hold("jwks")
    answers = []
    fetcher = threading.Thread(target=lambda: answers.append(fetch(github.jwks_url)[0]))
    fetcher.start()
    wait_for(lambda: github.counts["jwks"] == 1, what="the JWKS request")
    assert github.requests[0].status is None and not answers   # held
    assert fetch(github.configuration_url)[0] == 200            # others are not
    github.release()
    fetcher.join(timeout=10)
    assert answers == [200]


def test_override_configuration(github):
    github.override_configuration(issuer="https://token.actions.githubusercontent.com")
    config = fetch(github.configuration_url)[1]
    assert config["issuer"] == "https://token.actions.githubusercontent.com"
    assert config["jwks_uri"] == github.jwks_url


def test_unknown_flavour_and_endpoint_are_refused():
    with pytest.raises(ValueError):
        FakeIssuer(flavour="bitbucket")
    with FakeIssuer() as fake, pytest.raises(ValueError):
        fake.fail(500, "userinfo")
