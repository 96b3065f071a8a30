"""
Trusted publishing: a CI job's OIDC token (GitHub Actions, GitLab CI)
exchanged for a short-lived upload token of the projects whose publishers
match it, as pypi.org does, so that `uv publish` and
pypa/gh-action-pypi-publish work with no stored secret.

The JWT is verified with PyJWT (signature against the issuer's JWKS,
fetched with treq from its OpenID configuration and cached, refetched on an
unknown key id at most every L{JWKS_REFETCH_FLOOR} seconds; only asymmetric
algorithms; C{iss}, C{aud}, C{exp}/C{nbf}/C{iat} with L{LEEWAY}); its
C{jti} is kept with the minted token's record in the repository's store, so
a JWT is never exchanged twice. Claims are matched as Warehouse matches
them (L{GitHubPublisher}, L{GitLabPublisher}).
"""

import json
import time
from urllib.parse import urlsplit

import jwt
from twisted.logger import Logger

from .backends.interface import BackendError
from .tokens import MINTED_SECONDS, ReplayedToken

# Asymmetric algorithms only: an HMAC "signed" with a public key is forged
# by anyone (algorithm confusion), and "none" is no signature at all.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
LEEWAY = 30
JWKS_REFETCH_FLOOR = 60.0
JWKS_MAX_AGE = 3600.0
MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_AUDIENCE = "ppypi"
DEFAULT_ISSUERS = {"github": "https://token.actions.githubusercontent.com",
                   "gitlab": "https://gitlab.com"}


class Refused(Exception):
    """A mint refused: Warehouse's error C{code} and a description for the CI log."""

    def __init__(self, code, description, outcome=None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.outcome = outcome or code


def answer(error):
    """Warehouse's shape of a refusal (uv and the GitHub action print it)."""
    return {"message": "Token request failed",
            "errors": [{"code": error.code, "description": error.description}]}


class GitHubPublisher:
    """
    A GitHub Actions workflow allowed to publish: the C{repository} claim
    (owner/name, case-insensitive), the workflow file named in
    C{job_workflow_ref} (OWNER/NAME/.github/workflows/FILE@REF), and when
    set, the C{environment} claim (case-insensitive).
    """

    issuer = "github"

    def __init__(self, repository, workflow, environment=None):
        self.repository = repository
        self.workflow = workflow
        self.environment = environment

    def matches(self, claims):
        repository = claims.get("repository")
        ref = claims.get("job_workflow_ref")
        if not isinstance(repository, str) or not isinstance(ref, str):
            return False
        if repository.lower() != self.repository.lower():
            return False
        path, _, _ = ref.partition("@")
        expected = f"{self.repository}/.github/workflows/{self.workflow}"
        if path.lower() != expected.lower():
            return False
        if self.environment is not None:
            env = claims.get("environment")
            return isinstance(env, str) and env.lower() == self.environment.lower()
        return True

    def __str__(self):
        env = f", environment {self.environment}" if self.environment else ""
        return f"GitHub {self.repository}, workflow {self.workflow}{env}"


class GitLabPublisher:
    """
    A GitLab CI pipeline allowed to publish: the C{project_path} claim
    (case-insensitive), the CI config file in C{ci_config_ref_uri}
    (HOST/PROJECT//PATH@REF), and when set, the C{environment} claim.
    """

    issuer = "gitlab"

    def __init__(self, project, ci_config, environment=None):
        self.project = project
        self.ci_config = ci_config
        self.environment = environment

    def matches(self, claims):
        project = claims.get("project_path")
        uri = claims.get("ci_config_ref_uri")
        if not isinstance(project, str) or not isinstance(uri, str):
            return False
        if project.lower() != self.project.lower():
            return False
        # HOST[/RELATIVE_ROOT]/PROJECT//PATH@REF: the project ends what is
        # before "//" (GitLab may be served under a relative URL root).
        path, _, _ = uri.rpartition("@")
        before, sep, config_path = path.partition("//")
        if not sep or not before.lower().endswith("/" + self.project.lower()) or \
                config_path != self.ci_config:
            return False
        if self.environment is not None:
            env = claims.get("environment")
            return isinstance(env, str) and env == self.environment
        return True

    def __str__(self):
        env = f", environment {self.environment}" if self.environment else ""
        return f"GitLab {self.project}, {self.ci_config}{env}"


class KeySet:
    """One issuer's signing keys, fetched and cached."""

    def __init__(self, issuer, http, clock):
        self.issuer = issuer
        self.http = http
        self.clock = clock
        self.keys = {}
        self.fetched_at = None
        self.fetches = 0

    async def key(self, kid):
        now = self.clock.seconds()
        stale = self.fetched_at is None or now - self.fetched_at > JWKS_MAX_AGE
        if kid not in self.keys or stale:
            if self.fetched_at is None or now - self.fetched_at >= JWKS_REFETCH_FLOOR:
                await self._fetch()
        found = self.keys.get(kid)
        if found is None:
            raise Refused("invalid-token", "the token's signing key is not the issuer's")
        return found

    async def _fetch(self):
        self.fetched_at = self.clock.seconds()
        self.fetches += 1
        try:
            config = await self._json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            jwks_uri = config.get("jwks_uri") if isinstance(config, dict) else None
            if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("https", "http"):
                raise ValueError("no jwks_uri")
            jwks = await self._json(jwks_uri)
            keys = {}
            for entry in jwks.get("keys", []):
                try:
                    keys[entry["kid"]] = jwt.PyJWK(entry)
                except (KeyError, TypeError, jwt.PyJWKError, jwt.InvalidKeyError):
                    continue
        except Refused:
            raise
        except Exception as e:
            raise Refused("invalid-token", f"the issuer's keys cannot be had now ({e})",
                          outcome="issuer-unreachable") from None
        self.keys = keys

    async def _json(self, url):
        response = await self.http.get(url, timeout=10)
        body = await response.content()
        if response.code != 200:
            raise ValueError(f"{url} answered {response.code}")
        return json.loads(body)


class Minter:
    """
    @param publishers: [(repository name, project, publisher)].
    @param issuers: {"github": URL, "gitlab": URL}.
    @param books: {repository name: L{ppypi.tokens.TokenBook}}.
    """

    log = Logger()

    def __init__(self, audience, issuers, publishers, books, http, clock, metrics=None):
        self.audience = audience
        self.issuers = dict(issuers)
        self.publishers = publishers
        self.books = books
        self.http = http
        self.clock = clock
        self.metrics = metrics
        self.keysets = {url: KeySet(url, http, clock) for url in self.issuers.values()}

    async def mint(self, body):
        """
        The answer to a mint request: (HTTP status, JSON-able dict). Every
        outcome is counted in /metrics and logged without the JWT.
        """
        try:
            result = await self._mint(body)
        except Refused as e:
            self._count(e.outcome)
            self.log.info("trusted publishing: refused ({code}: {why})", code=e.code,
                          why=e.description)
            return 422, answer(e)
        except BackendError as e:
            # The token store failed: nothing was recorded, so the client's
            # retry with the same JWT is no replay.
            self._count("store-failing")
            self.log.error("trusted publishing: the token store failed: {e}", e=str(e))
            return 503, answer(Refused("store-unavailable", "try again shortly"))
        self._count("minted")
        return 200, result

    async def burn(self, body):
        """
        C{POST /_/oidc/burn-token} (uv does it after an upload): the minted
        token revoked at once, on every repository it was minted for.
        """
        try:
            token = json.loads(body).get("token")
        except (ValueError, UnicodeDecodeError, AttributeError):
            token = None
        if not isinstance(token, str) or len(token) > 200:
            return 422, answer(Refused("invalid-payload", "token is missing"))
        burnt = False
        for book in self.books.values():
            record = book.check(token)
            if record is not None and record.get("kind") == "oidc":
                try:
                    burnt = await book.revoke(record["id"]) or burnt
                except BackendError:
                    return 503, answer(Refused("store-unavailable", "try again shortly"))
        if not burnt:
            return 422, answer(Refused("invalid-token", "no such minted token"))
        self._count("burnt")
        return 200, {"success": True}

    def _count(self, outcome):
        if self.metrics is not None:
            self.metrics.mint(outcome)

    async def _mint(self, body):
        if len(body) > MAX_TOKEN_BYTES + 100:
            raise Refused("invalid-payload", "the request is too large")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused("invalid-payload", "the request is not JSON") from None
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise Refused("invalid-payload", "token is missing")
        claims = await self.verify(token)
        matched = [(repo, project, publisher) for repo, project, publisher in self.publishers
                   if self.issuers.get(publisher.issuer) == claims["iss"]
                   and publisher.matches(claims)]
        if not matched:
            raise Refused("invalid-publisher",
                          "valid token, but no trusted publisher matches it "
                          f"(issuer {claims['iss']})")
        now = time.time()
        expires = int(now + MINTED_SECONDS)
        by_repository = {}
        for repo, project, publisher in matched:
            by_repository.setdefault(repo, set()).add(project)
        minted = None
        for repo, projects in sorted(by_repository.items()):
            try:
                minted, record = await self.books[repo].create(
                    projects, expires=expires, kind="oidc", token=minted,
                    description=f"trusted publishing: {matched[0][2]}",
                    jti=claims["jti"], jti_expires=claims["exp"] + LEEWAY)
            except ReplayedToken:
                raise Refused("invalid-reuse-token",
                              "valid token, but it has already been used") from None
            self.log.info("trusted publishing: {publisher} may upload {projects} to "
                          "{repo} until {expires} ({id})", publisher=str(matched[0][2]),
                          projects=", ".join(sorted(projects)), repo=repo,
                          expires=expires, id=record["id"])
        return {"success": True, "token": minted, "expires": expires}

    async def verify(self, token):
        """The JWT's claims, verified; L{Refused} otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Refused("invalid-token", "the token is too large")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Refused("invalid-token", "not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Refused("invalid-token", f"algorithm {alg!r} is not accepted")
        issuer = unverified.get("iss")
        keyset = self.keysets.get(issuer) if isinstance(issuer, str) else None
        if keyset is None:
            raise Refused("invalid-token", "the token's issuer is not trusted here")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Refused("invalid-token", "the token names no signing key")
        key = await keyset.key(kid)
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.audience, issuer=issuer,
                leeway=LEEWAY, options={"require": ["exp", "iat", "jti", "iss", "aud"],
                                        "strict_aud": True})
        except jwt.ExpiredSignatureError:
            raise Refused("invalid-token", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Refused("invalid-token", "the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Refused("invalid-token", f"the token's audience is not {self.audience!r}") \
                from None
        except jwt.PyJWTError as e:
            raise Refused("invalid-token", f"the token does not verify ({type(e).__name__})") \
                from None
        if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("exp"), (int, float)):
            raise Refused("invalid-token", "the token lacks a jti or an expiry")
        return claims
