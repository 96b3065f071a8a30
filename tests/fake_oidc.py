"""
A fake OpenID Connect issuer for the tests of trusted publishing: GitHub
Actions' (token.actions.githubusercontent.com and the job's ID-token request
endpoint) or GitLab CI's (gitlab.com), on 127.0.0.1 (a free port, its own
threads, no Twisted reactor, so that live tests with real twistd daemons and
`uv publish` can use it), sharp edges included.

    fake = FakeIssuer(audience="ppypi").start()   # or: with FakeIssuer(...) as fake:
    jwt = fake.github_token(environment="pypi")   # a real RS256 token
    env = fake.env(base=client_env())             # a GitHub Actions job for uv
    fake.stop()

Constructor (keyword-only):

    FakeIssuer(flavour="github"|"gitlab", path="", audience=None)

    path      the issuer URL's path, as GitHub Enterprise Server
              (https://HOST/_services/token) and GitLab under a relative URL
              root have one: the configuration is then at
              URL/.well-known/openid-configuration (OIDC Discovery appends to
              the issuer's path; it does not replace it).
    audience  the default `aud` of the tokens made here; None: what the
              provider does without one (GitHub: https://github.com/OWNER;
              GitLab has no default and always needs one).

Served (http://127.0.0.1:PORT, `url` is the issuer: that plus `path`):

    URL/.well-known/openid-configuration   the provider's shape (configuration())
    jwks_url                               {"keys": [JWK...]} (jwks()); GitHub's at
                                           URL/.well-known/jwks, GitLab's at
                                           URL/oauth/discovery/keys
    token_request_url (github)             GitHub's runtime ID-token endpoint,
                                           what ACTIONS_ID_TOKEN_REQUEST_URL holds:
                                           /_apis/.../idtoken?api-version=2.0 (it
                                           has a query already: clients must append
                                           `audience` to it, not replace it).
                                           GET with `Authorization: Bearer
                                           <request_token>` (scheme in any case, as
                                           `id` sends "bearer") answers 200
                                           {"count": N, "value": "<jwt>"} with
                                           aud = the `audience` parameter (GitHub's
                                           default aud without one); the claims are
                                           github_claims(**fake.job). Wrong or no
                                           bearer: 401.

Keys: RSA 2048, RS256, each JWK with kid, kty, n, e, use "sig", alg "RS256".

    kid                 the key that signs now
    rotate() -> kid     a new key signs from now on; the old stays in the JWKS
    retire(kid)         drop a key from the JWKS (its tokens no longer verify)
    stranger_key()      a new RSA private key that is not (and will never be) published

Tokens (every claim can be overridden with a keyword; a value of None drops it):

    github_claims(repository="acme/acme-tool", workflow="release.yml",
                  ref="refs/heads/main", environment=None, audience=None, *,
                  event_name="push", workflow_name="Release", now=None,
                  lifetime=300, **overrides) -> dict
    github_token(...same...) -> str     signed with the current key
    gitlab_claims(project_path="acme/acme-tool", ci_config_ref_uri=None,
                  environment=None, audience=None, *, ref="main",
                  ref_type="branch", ci_config=".gitlab-ci.yml", now=None,
                  lifetime=3600, **overrides) -> dict
    gitlab_token(...same...) -> str
    claims(**kw) / identity_token(**kw)   the flavour's own
    sign(claims, kid=None, key=None, headers=None, alg="RS256") -> str
                                      PyJWT's encoding, kid in the header
    token(claims, alg="RS256"|"none"|"HS256-with-public-key"|"HS256-with-jwk"|
          "RS512"|..., kid=None|"unknown"|str, key=None, headers=None) -> str
                                      any token, its header built field by field
    hostile(kind, size=1_100_000, **claim_overrides) -> str
                                      one of HOSTILE, built on claims(); all but
                                      "oversized" (signed right: for the body
                                      limit) fail a careful verification
    public_pem(kid=None), jwk(kid=None), jwks(), configuration()

    HOSTILE = ("alg-none", "hs256-public-key", "hs256-jwk", "stranger-key",
               "unknown-kid", "no-kid", "bad-signature", "expired",
               "not-yet-valid", "issued-in-future", "wrong-aud", "multi-aud",
               "wrong-iss", "no-exp", "oversized", "malformed")

CI environments:

    env(request_token=None, *, base=None, permission=True, audience=None, **job) -> dict
        (audience_token= is another name for request_token=)
        github: GITHUB_ACTIONS=true, CI=true, ACTIONS_ID_TOKEN_REQUEST_URL and
        _TOKEN (absent without `id-token: write`: permission=False), and the
        GITHUB_* a job has; `job` sets fake.job (the claims the runtime mints).
        gitlab: GITLAB_CI=true, CI=true, CI_SERVER_URL, ..., and the ID token
        itself in <AUDIENCE>_ID_TOKEN (the name uv and `id` look for: the
        audience upper-cased, every non-alphanumeric character an underscore);
        needs audience= (or the constructor's).
        base: an environment to start from (e.g. conftest.client_env()); the
        variables that would make uv pick another provider first (GCP's
        GOOGLE_SERVICE_ACCOUNT_NAME, GITLAB_CI, BUILDKITE, CIRCLECI, ...) are
        dropped from it.

Faults and observation (thread-safe):

    fail(status, *endpoints)    answer `status` (JSON body) on these endpoints
                                ("configuration", "jwks", "token"; default the
                                first two)
    refuse(*endpoints)          cut those connections without an answer
    hold(*endpoints) / release()   keep those answers waiting until release()
    accept()                    undo fail/refuse/hold
    override_configuration(**fields)   merge into the configuration (e.g. a
                                wrong `issuer`, or a `jwks_uri` elsewhere)
    counts                      Counter of requests by endpoint
                                ("configuration", "jwks", "token", "other")
    requests                    [Seen(method, path, query, endpoint, status,
                                authorization)] oldest first; `authorization` is
                                the scheme only (never the secret)
    reset()                     forget counts and requests

What the real providers do, and this fake copies (read for it: GitHub's OIDC
reference and configuration; a real token's claims printed by
andreaso/output-oidc-claims-action; GitLab MR 122373's token and
docs.gitlab.com/ci/secrets/id_token_authentication; pypi/warehouse
warehouse/oidc/{services,models/github,models/gitlab}.py; astral-sh/ambient-id
src/{github,gitlab,lib}.rs, which uv's crates/uv-publish uses; di/id, which
pypa/gh-action-pypi-publish uses):
  - every ID-like claim is a JSON string ("repository_owner_id": "65"), and
    uv's claim parser needs them so; GitLab's runner_id is a number.
  - GitHub: iat = now, nbf = iat - 300, exp = iat + 300; GitLab: nbf = iat - 5,
    exp = iat + the job's timeout (60 minutes by default), issued when the job
    starts, not when it is used.
  - GitHub's `workflow` is the workflow's display name, not its file; the file
    is in `job_workflow_ref` (the called workflow's, for a reusable one) and
    `workflow_ref` (the caller's).
  - GitHub's `sub` is repo:OWNER/REPO:environment:ENV when the job has an
    environment, repo:OWNER/REPO:pull_request for pull requests, else
    repo:OWNER/REPO:ref:REF; repositories may customise it, so it decides nothing.
  - GitLab's `ref` is the short name (main); `ref_path` is refs/heads/main;
    ci_config_ref_uri is HOST[/PATH]/PROJECT//CONFIG@REF_PATH, its host the
    instance's (gitlab.com for gitlab.com).
"""

import base64
import collections
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HOSTILE = ("alg-none", "hs256-public-key", "hs256-jwk", "stranger-key", "unknown-kid", "no-kid",
           "bad-signature", "expired", "not-yet-valid", "issued-in-future", "wrong-aud",
           "multi-aud", "wrong-iss", "no-exp", "oversized", "malformed")

ENDPOINTS = ("configuration", "jwks", "token")

# Variables that make uv (ambient-id: GCP, then GitHub, GitLab, Buildkite,
# CircleCI) or `id` pick another provider before the one we fake.
OTHER_PROVIDERS = ("GOOGLE_SERVICE_ACCOUNT_NAME", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE",
                   "CIRCLECI", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                   "BUILDKITE_AGENT_ACCESS_TOKEN")

GITHUB_CLAIMS_SUPPORTED = [
    "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository", "repository_id",
    "repository_owner", "repository_owner_id", "enterprise", "enterprise_id", "run_id",
    "run_number", "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha",
    "head_ref", "base_ref", "event_name", "ref_type", "ref_protected", "environment",
    "environment_node_id", "job_workflow_ref", "job_workflow_sha", "repository_visibility",
    "runner_environment", "issuer_scope", "check_run_id"]

GITLAB_SCOPES = [
    "api", "read_api", "read_user", "create_runner", "manage_runner", "k8s_proxy", "self_rotate",
    "read_repository", "write_repository", "read_registry", "write_registry",
    "read_virtual_registry", "write_virtual_registry", "read_observability",
    "write_observability", "ai_features", "sudo", "admin_mode", "read_service_ping", "openid",
    "profile", "email"]

GITLAB_CLAIMS_SUPPORTED = [
    "iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username",
    "email", "email_verified", "website", "profile", "picture", "groups", "groups_direct",
    "https://gitlab.org/claims/groups/owner", "https://gitlab.org/claims/groups/maintainer",
    "https://gitlab.org/claims/groups/developer"]

Seen = collections.namedtuple("Seen", "method path query endpoint status authorization")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def stable_id(*parts, digits=9):
    """The same name always gets the same numeric ID, as a string like GitHub's."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 10 ** digits + 10 ** (digits - 1))


def stable_sha(*parts):
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def env_name_for_audience(audience):
    """GitLab: the variable uv (ambient-id) and `id` read the ID token from."""
    name = "".join(c.upper() if c.isascii() and c.isalnum() else "_" for c in audience)
    return name + "_ID_TOKEN"


def _apply(claims, overrides):
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


class _Hold:
    def __init__(self):
        self.event = threading.Event()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "fake-oidc"

    def log_message(self, *args):
        pass  # the test output is no place for an access log

    def do_GET(self):
        self.server.fake._serve(self)

    def do_HEAD(self):
        self.server.fake._serve(self)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.fake._serve(self)


class FakeIssuer:
    def __init__(self, *, flavour="github", path="", audience=None):
        if flavour not in ("github", "gitlab"):
            raise ValueError(f"flavour must be 'github' or 'gitlab', not {flavour!r}")
        if path and (not path.startswith("/") or path.endswith("/")):
            raise ValueError("path starts with / and does not end with one")
        self.flavour = flavour
        self.path = path
        self.audience = audience
        self.request_token = secrets.token_urlsafe(32)
        self.job = {}
        self._plan, self._job_id = uuid.uuid4(), uuid.uuid4()
        self._lock = threading.Lock()
        self._keys = {}           # kid -> private key, in the order they were made
        self._published = []      # kids in the JWKS
        self.kid = None
        self._failing = {}        # endpoint -> status
        self._refused = set()
        self._holds = {}          # endpoint -> _Hold
        self._config_overrides = {}
        self._counts = collections.Counter()
        self._requests = []
        self._run = 0
        self._server = None
        self._thread = None
        self.rotate()

    # -- lifecycle

    def start(self):
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        # A short poll so that stop() (shutdown waits for a poll) is quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="fake-oidc", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self):
        """The issuer: what `iss` holds and what the server is configured with."""
        return self.origin + self.path

    @property
    def configuration_url(self):
        return self.url + "/.well-known/openid-configuration"

    @property
    def jwks_url(self):
        tail = "/.well-known/jwks" if self.flavour == "github" else "/oauth/discovery/keys"
        return self.url + tail

    @property
    def token_request_path(self):
        # The shape of the real one (a pipelines.actions.githubusercontent.com
        # URL); its query string is why clients must append `audience`.
        return (f"/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/"
                f"{self._plan}/jobs/{self._job_id}/idtoken")

    @property
    def token_request_url(self):
        return f"{self.origin}{self.token_request_path}?api-version=2.0"

    # -- keys

    @staticmethod
    def stranger_key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def _new_kid(self, public_jwk):
        if self.flavour == "gitlab":
            # GitLab's kids are RFC 7638 thumbprints.
            canonical = json.dumps({k: public_jwk[k] for k in ("e", "kty", "n")},
                                   separators=(",", ":"), sort_keys=True)
            return b64url(hashlib.sha256(canonical.encode()).digest())
        return str(uuid.uuid4())

    @staticmethod
    def _public_jwk(key):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.pop("key_ops", None)  # PyJWT adds it; the providers don't
        return jwk

    def rotate(self):
        """A new key signs from now on; the old ones stay published until retired."""
        key = self.stranger_key()
        kid = self._new_kid(self._public_jwk(key))
        with self._lock:
            self._keys[kid] = key
            self._published.append(kid)
            self.kid = kid
        return kid

    def retire(self, kid):
        with self._lock:
            self._published.remove(kid)

    def public_pem(self, kid=None):
        """The SubjectPublicKeyInfo PEM of a published key (what an HS256 confusion uses)."""
        return self._keys[kid or self.kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self, kid=None):
        kid = kid or self.kid
        jwk = self._public_jwk(self._keys[kid])
        # The order the providers use: kty, kid, e, n, use, alg.
        return {"kty": "RSA", "kid": kid, "e": jwk["e"], "n": jwk["n"], "use": "sig",
                "alg": "RS256"}

    def jwks(self):
        with self._lock:
            kids = list(self._published)
        return {"keys": [self.jwk(kid) for kid in kids]}

    def configuration(self):
        if self.flavour == "github":
            config = {
                "issuer": self.url,
                "jwks_uri": self.jwks_url,
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "claims_supported": list(GITHUB_CLAIMS_SUPPORTED),
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid"],
            }
        else:
            u = self.url
            config = {
                "issuer": u,
                "authorization_endpoint": u + "/oauth/authorize",
                "token_endpoint": u + "/oauth/token",
                "revocation_endpoint": u + "/oauth/revoke",
                "introspection_endpoint": u + "/oauth/introspect",
                "userinfo_endpoint": u + "/oauth/userinfo",
                "jwks_uri": self.jwks_url,
                "scopes_supported": list(GITLAB_SCOPES),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "grant_types_supported": ["authorization_code", "password", "client_credentials",
                                          "device_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claim_types_supported": ["normal"],
                "claims_supported": list(GITLAB_CLAIMS_SUPPORTED),
                "code_challenge_methods_supported": ["plain", "S256"],
            }
        with self._lock:
            config.update(self._config_overrides)
        return config

    def override_configuration(self, **fields):
        with self._lock:
            self._config_overrides.update(fields)

    # -- claims

    def _next_run(self):
        with self._lock:
            self._run += 1
            return self._run

    def github_claims(self, repository="acme/acme-tool", workflow="release.yml",
                      ref="refs/heads/main", environment=None, audience=None, *,
                      event_name="push", workflow_name="Release", now=None, lifetime=300,
                      **overrides):
        owner = repository.split("/", 1)[0]
        iat = int(time.time() if now is None else now)
        sha = stable_sha(repository, ref)
        run = self._next_run()
        workflow_ref = f"{repository}/.github/workflows/{workflow}@{ref}"
        if environment:
            sub = f"repo:{repository}:environment:{environment}"
        elif event_name in ("pull_request", "pull_request_target"):
            sub = f"repo:{repository}:pull_request"
        else:
            sub = f"repo:{repository}:ref:{ref}"
        if audience is None:
            audience = self.audience or f"https://github.com/{owner}"
        pull = event_name in ("pull_request", "pull_request_target")
        claims = {
            "jti": str(uuid.uuid4()),
            "sub": sub,
            "aud": audience,
            "ref": ref,
            "sha": sha,
            "repository": repository,
            "repository_owner": owner,
            "repository_owner_id": stable_id(owner),
            "repository_visibility": "private",
            "repository_id": stable_id(repository),
            "run_id": str(16_000_000_000 + run),
            "run_number": str(run),
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "actor": "octocat",
            "actor_id": stable_id("octocat"),
            "workflow": workflow_name,
            "head_ref": "feature" if pull else "",
            "base_ref": "main" if pull else "",
            "event_name": event_name,
            "ref_protected": "true" if ref == "refs/heads/main" else "false",
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
            "workflow_ref": workflow_ref,
            "workflow_sha": sha,
            "job_workflow_ref": workflow_ref,
            "job_workflow_sha": sha,
            "check_run_id": str(40_000_000_000 + run),
        }
        if environment:
            claims["environment"] = environment
            claims["environment_node_id"] = "EN_kwDO" + b64url(
                hashlib.sha256(f"{repository}/{environment}".encode()).digest())[:16]
        claims.update({"iss": self.url, "nbf": iat - 300, "exp": iat + lifetime, "iat": iat})
        return _apply(claims, overrides)

    def gitlab_claims(self, project_path="acme/acme-tool", ci_config_ref_uri=None,
                      environment=None, audience=None, *, ref="main", ref_type="branch",
                      ci_config=".gitlab-ci.yml", now=None, lifetime=3600, **overrides):
        namespace = project_path.rsplit("/", 1)[0]
        audience = audience or self.audience
        if audience is None:
            raise ValueError("GitLab ID tokens always have the audience the job asks for")
        iat = int(time.time() if now is None else now)
        ref_path = f"refs/{'tags' if ref_type == 'tag' else 'heads'}/{ref}"
        sha = stable_sha(project_path, ref_path)
        if ci_config_ref_uri is None:
            host = self.url.split("://", 1)[1]   # the instance's host[:port][/path]
            ci_config_ref_uri = f"{host}/{project_path}//{ci_config}@{ref_path}"
        run = self._next_run()
        claims = {
            "namespace_id": stable_id(namespace, digits=8),
            "namespace_path": namespace,
            "project_id": stable_id(project_path, digits=8),
            "project_path": project_path,
            "user_id": stable_id("alice", digits=8),
            "user_login": "alice",
            "user_email": "alice@example.com",
            "user_access_level": "maintainer",
            "pipeline_id": str(1_900_000_000 + run),
            "pipeline_source": "push",
            "job_id": str(10_000_000_000 + run),
            "ref": ref,
            "ref_type": ref_type,
            "ref_path": ref_path,
            "ref_protected": "true" if ref == "main" else "false",
        }
        if environment:
            claims.update(environment=environment, environment_protected="false",
                          deployment_tier="production", environment_action="start")
        claims.update({
            "runner_id": 12270837,
            "runner_environment": "gitlab-hosted",
            "sha": sha,
            "project_visibility": "public",
            "ci_config_ref_uri": ci_config_ref_uri,
            "ci_config_sha": sha,
            "jti": str(uuid.uuid4()),
            "iss": self.url,
            "iat": iat,
            "nbf": iat - 5,
            "exp": iat + lifetime,
            "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
            "aud": audience,
        })
        return _apply(claims, overrides)

    def claims(self, **kw):
        return (self.github_claims if self.flavour == "github" else self.gitlab_claims)(**kw)

    # -- tokens

    def sign(self, claims, kid=None, key=None, headers=None, alg="RS256"):
        """A token signed with a published key (or `key`), its kid in the header."""
        kid = kid or self.kid
        key = key or self._keys[self.kid if kid not in self._keys else kid]
        header = {"kid": kid}
        header.update(headers or {})
        return jwt.encode(claims, key, algorithm=alg, headers=header)

    def github_token(self, *args, **kwargs):
        return self.sign(self.github_claims(*args, **kwargs))

    def gitlab_token(self, *args, **kwargs):
        return self.sign(self.gitlab_claims(*args, **kwargs))

    def identity_token(self, **kw):
        return self.sign(self.claims(**kw))

    def token(self, claims, alg="RS256", kid=None, key=None, headers=None):
        """
        Any token, honest or not, its header built here field by field.
        alg: an asymmetric alg PyJWT has (RS256, the default; RS512, PS256...);
        "none" (unsigned: the signature part is empty); "HS256-with-public-key"
        (HMAC-SHA256 keyed with the SubjectPublicKeyInfo PEM of the signing
        key's public half: the classic algorithm confusion); "HS256-with-jwk"
        (keyed with json.dumps of the JWKS entry). kid: None for the current key's,
        "unknown" for one the JWKS never had, or any string; key: a private key
        to sign with instead of the kid's (stranger_key()). headers: merged
        into the header; a None value drops that field.
        """
        if kid == "unknown":
            kid = "unknown-" + uuid.uuid4().hex
        kid = kid or self.kid
        signer = key or self._keys.get(kid) or self._keys[self.kid]
        header = {"alg": "HS256" if alg.startswith("HS256-with-") else alg, "typ": "JWT",
                  "kid": kid}
        _apply(header, headers or {})
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        data = signing_input.encode()
        if alg == "none":
            signature = b""
        elif alg.startswith("HS256-with-"):
            # PyJWT rightly refuses a PEM as an HMAC secret, so this is done by hand.
            if alg == "HS256-with-public-key":
                secret = signer.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            elif alg == "HS256-with-jwk":
                # The JWKS entry as published, for a server keyed by what it fetched.
                published = kid in self._keys and key is None
                jwk = self.jwk(kid) if published else self._public_jwk(signer)
                secret = json.dumps(jwk).encode()
            else:
                raise ValueError(f"unknown alg {alg!r}")
            signature = hmac.new(secret, data, hashlib.sha256).digest()
        else:
            signature = jwt.algorithms.get_default_algorithms()[alg].sign(data, signer)
        return signing_input + "." + b64url(signature)

    def hostile(self, kind, size=1_100_000, **overrides):
        """A token that a careful server refuses, built on this flavour's claims."""
        now = int(time.time())
        if kind == "expired":
            return self.sign(self.claims(now=now - 3 * 3600, lifetime=300, **overrides))
        if kind == "not-yet-valid":
            claims = self.claims(now=now, **overrides)
            claims.update(nbf=now + 3600, iat=now, exp=now + 7200)
            return self.sign(claims)
        if kind == "issued-in-future":
            return self.sign(self.claims(now=now + 3600, **overrides))
        if kind == "wrong-aud":
            return self.sign(self.claims(**{"audience": "someone-else", **overrides}))
        if kind == "multi-aud":
            claims = self.claims(**overrides)
            claims["aud"] = [claims["aud"], "someone-else"]
            return self.sign(claims)
        if kind == "wrong-iss":
            return self.sign(self.claims(**{"iss": "https://token.actions.example.com",
                                            **overrides}))
        if kind == "no-exp":
            return self.sign(self.claims(**{"exp": None, **overrides}))
        if kind == "oversized":
            return self.sign(self.claims(**{"padding": "A" * size, **overrides}))
        if kind == "malformed":
            return "eyJhbGciOiJSUzI1NiJ9.%%%not-base64%%%.AAAA"
        claims = self.claims(**overrides)
        if kind == "alg-none":
            return self.token(claims, alg="none")
        if kind == "hs256-public-key":
            return self.token(claims, alg="HS256-with-public-key")
        if kind == "hs256-jwk":
            return self.token(claims, alg="HS256-with-jwk")
        if kind == "stranger-key":
            return self.token(claims, key=self.stranger_key())   # the current kid, forged
        if kind == "unknown-kid":
            return self.token(claims, kid="unknown", key=self.stranger_key())
        if kind == "no-kid":
            return jwt.encode(claims, self._keys[self.kid], algorithm="RS256")
        if kind == "bad-signature":
            head, payload, sig = self.sign(claims).split(".")
            flipped = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
            flipped[len(flipped) // 2] ^= 1
            return f"{head}.{payload}.{b64url(bytes(flipped))}"
        raise ValueError(f"unknown kind {kind!r}; one of {HOSTILE}")

    # -- a CI job's environment

    def env(self, request_token=None, *, base=None, permission=True, audience=None,
            audience_token=None, **job):
        """The environment a CI job of this provider has (see the module docstring)."""
        request_token = request_token or audience_token
        out = {k: v for k, v in (base or {}).items()
               if k not in OTHER_PROVIDERS and not k.startswith(("GITHUB_", "CI_"))
               and not k.endswith("_ID_TOKEN")}
        out["CI"] = "true"
        if self.flavour == "github":
            self.job = dict(job)
            repository = job.get("repository", "acme/acme-tool")
            ref = job.get("ref", "refs/heads/main")
            workflow = job.get("workflow", "release.yml")
            out.update({
                "GITHUB_ACTIONS": "true",
                "GITHUB_REPOSITORY": repository,
                "GITHUB_REPOSITORY_OWNER": repository.split("/")[0],
                "GITHUB_REF": ref,
                "GITHUB_SHA": stable_sha(repository, ref),
                "GITHUB_WORKFLOW": job.get("workflow_name", "Release"),
                "GITHUB_WORKFLOW_REF": f"{repository}/.github/workflows/{workflow}@{ref}",
                "GITHUB_EVENT_NAME": job.get("event_name", "push"),
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_API_URL": "https://api.github.com",
                "RUNNER_ENVIRONMENT": "github-hosted",
            })
            if permission:
                out["ACTIONS_ID_TOKEN_REQUEST_URL"] = self.token_request_url
                out["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = request_token or self.request_token
            return out
        audience = audience or self.audience
        if audience is None:
            raise ValueError("a GitLab job names the audience of its ID token: audience=")
        project_path = job.get("project_path", "acme/acme-tool")
        out.update({
            "GITLAB_CI": "true",
            "CI_SERVER_URL": self.url,
            "CI_PROJECT_PATH": project_path,
            "CI_COMMIT_REF_NAME": job.get("ref", "main"),
            env_name_for_audience(audience): self.gitlab_token(audience=audience, **job),
        })
        return out

    # -- faults and observation

    def _targets(self, endpoints):
        endpoints = endpoints or ("configuration", "jwks")
        unknown = set(endpoints) - set(ENDPOINTS)
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; one of {ENDPOINTS}")
        return endpoints

    def fail(self, status, *endpoints):
        with self._lock:
            for e in self._targets(endpoints):
                self._failing[e] = status

    def refuse(self, *endpoints):
        with self._lock:
            self._refused.update(self._targets(endpoints))

    def hold(self, *endpoints):
        with self._lock:
            for e in self._targets(endpoints):
                self._holds.setdefault(e, _Hold())

    def release(self):
        with self._lock:
            holds, self._holds = list(self._holds.values()), {}
        for h in holds:
            h.event.set()

    def accept(self):
        with self._lock:
            self._failing.clear()
            self._refused.clear()
        self.release()

    @property
    def counts(self):
        with self._lock:
            return collections.Counter(self._counts)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def reset(self):
        with self._lock:
            self._counts.clear()
            self._requests.clear()

    # -- serving

    def _endpoint(self, path):
        if path == urlsplit(self.configuration_url).path:
            return "configuration"
        if path == urlsplit(self.jwks_url).path:
            return "jwks"
        if self.flavour == "github" and path == self.token_request_path:
            return "token"
        return "other"

    def _serve(self, h):
        split = urlsplit(h.path)
        endpoint = self._endpoint(split.path)
        auth = h.headers.get("Authorization")
        scheme = auth.split(" ", 1)[0] if auth else None
        with self._lock:
            self._counts[endpoint] += 1
            index = len(self._requests)
            self._requests.append(Seen(h.command, split.path, split.query, endpoint, None, scheme))
            failing = self._failing.get(endpoint)
            refused = endpoint in self._refused
            hold = self._holds.get(endpoint)
        if hold is not None:
            hold.event.wait(timeout=60)
        if refused:
            # No answer at all: the client sees the connection end, as with an
            # issuer that is down behind a load balancer.
            self._record(index, 0)
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if failing is not None:
            return self._answer(h, index, failing, {"message": "fake-oidc: failing on purpose"})
        if h.command not in ("GET", "HEAD") or endpoint == "other":
            return self._answer(h, index, 404 if endpoint == "other" else 405,
                                {"message": "Not Found" if endpoint == "other" else
                                 "Method Not Allowed"})
        if endpoint == "configuration":
            return self._answer(h, index, 200, self.configuration())
        if endpoint == "jwks":
            return self._answer(h, index, 200, self.jwks())
        return self._answer_token_request(h, index, split.query, auth)

    def _answer_token_request(self, h, index, query, auth):
        m = re.fullmatch(r"(?i:bearer)\s+(\S+)\s*", auth or "")
        if not m or not hmac.compare_digest(m.group(1), self.request_token):
            return self._answer(h, index, 401, {"message": "Unauthorized"})
        params = parse_qs(query, keep_blank_values=True)
        job = dict(self.job)
        audience = params.get("audience", [None])[0]
        if audience is not None:
            job["audience"] = audience
        elif "audience" not in job:
            # GitHub's default audience, whatever the fake's default is.
            owner = job.get("repository", "acme/acme-tool").split("/")[0]
            job["audience"] = f"https://github.com/{owner}"
        value = self.github_token(**job)
        # The runtime wraps the token as its collections: count is its length.
        return self._answer(h, index, 200, {"count": len(value), "value": value})

    def _record(self, index, status):
        with self._lock:
            self._requests[index] = self._requests[index]._replace(status=status)

    def _answer(self, h, index, status, body):
        data = json.dumps(body).encode()
        self._record(index, status)
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
