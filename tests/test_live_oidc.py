"""
Trusted publishing end to end: a real twistd on an HTTPS loopback port (a
test CA made here), a fake GitHub/GitLab OIDC issuer (tests/fake_oidc.py),
the real `uv publish --trusted-publishing always` and twine.
"""

import concurrent.futures
import datetime
import ipaddress
import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import bcrypt
import jwt
import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .conftest import BIN, Daemon, client_env, wait_for
from .corpus import wheel_bytes
from .fake_oidc import OTHER_PROVIDERS, FakeIssuer
from .helpers import basic, multipart_body, upload_fields

AUD = "ppypi-live-test"
PPYPI = os.path.join(BIN, "ppypi")
ALICE = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode()
# What a JWT and a minted token look like, to be sure neither reaches the log.
JWT_SHAPE = re.compile(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.")
TOKEN_SHAPE = re.compile(r"ppypi-[\w-]{40,}")
# Where clients look for CAs besides their options (this machine sets some).
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


# -- a test CA and a certificate for 127.0.0.1 and localhost

def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory):
    """(CA certificate path, server key path, server certificate path)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder()
          .subject_name(_name("ppypi test CA")).issuer_name(_name("ppypi test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(directory, n) for n in ("ca.pem", "server-key.pem", "server.pem")]
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths[1], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(paths[2], "wb") as f:
        f.write(cert.public_bytes(pem))
    return paths


# -- the server

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Server:
    """A twistd with a plain loopback port (for the Daemon helper) and an HTTPS one."""

    def __init__(self, tmp, pki, github, gitlab):
        self.ca, key, cert = pki
        self.root = os.path.join(tmp, "root")
        self.config = os.path.join(tmp, "ppypi.yaml")
        with open(self.config, "w") as f:
            f.write(f"""\
repositories:
  default:
    type: filesystem
    path: pkgs
    read: anyone
    write: [alice]
    sync_interval: 0.5
    publishers:
      acme-tool:
        - github: {{repository: acme/acme-tool, workflow: release.yml, environment: pypi}}
        - gitlab: {{project: acme/acme-tool, ci_config: .gitlab-ci.yml}}
users:
  alice: {{password: "{ALICE}"}}
oidc:
  audience: {AUD}
  github: {{issuer: {github.url}}}
  gitlab: {{issuer: {gitlab.url}}}
""")
        # No --extra-index-url: nothing here may send a client off loopback.
        self.daemon = Daemon(self.root, "--config", self.config, "--extra-index-url", "",
                             "--listen",
                             f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
        self.context = ssl.create_default_context(cafile=self.ca)
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context), NoRedirect)
        self.tokens_path = os.path.join(self.root, ".ppypi", "repositories", "default",
                                        "tokens.json")

    def start(self):
        self.daemon.start()
        # The Daemon helper reads the plain port; the TLS one is logged as well.
        self.port = int(wait_for(lambda: re.search(r"\(TLS\) starting on (\d+)",
                                                   self.daemon.log()),
                                 what="the TLS port").group(1))
        self.url = f"https://127.0.0.1:{self.port}"
        return self

    def stop(self):
        self.daemon.stop()

    def log(self):
        return self.daemon.log()

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body) over HTTPS, our CA trusted, redirects not followed."""
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with self.opener.open(req, timeout=20) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def mint(self, token=None, body=None):
        """POST /_/oidc/mint-token with {"token": token} (or body): (status, JSON answer)."""
        if body is None:
            body = json.dumps({"token": token}).encode()
        status, _, data = self.request("POST", "/_/oidc/mint-token", body,
                                             {"Content-Type": "application/json"})
        return status, json.loads(data)

    def burn(self, token):
        status, _, data = self.request("POST", "/_/oidc/burn-token",
                                       json.dumps({"token": token}).encode(),
                                       {"Content-Type": "application/json"})
        return status, json.loads(data)

    def records(self):
        """The store's token records (what a mint writes)."""
        try:
            with open(self.tokens_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def mints(self):
        """/metrics' ppypi_oidc_mints_total, by outcome."""
        _, _, text = self.request("GET", "/metrics")
        return {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^ppypi_oidc_mints_total\{outcome="([^"]+)"\} (\S+)$', text.decode(), re.M)}

    def requests(self):
        """/metrics' ppypi_requests_total: {(route, method, status): count}."""
        _, _, text = self.request("GET", "/metrics")
        out = {}
        for m in re.finditer(r"^ppypi_requests_total\{([^}]*)\} (\S+)$", text.decode(), re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[labels["route"], labels["method"], labels["status"]] = float(m.group(2))
        return out

    def files(self, project):
        _, _, page = self.request("GET", f"/simple/{project}/")
        return re.findall(r'>([^<]+\.whl)<', page.decode())

    def token_list(self):
        out = subprocess.run([PPYPI, "token", "list", "default", "--root", self.root,
                              "--config", self.config], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout


def wheels(directory, project, *versions):
    dist = project.replace("-", "_")
    os.makedirs(directory, exist_ok=True)
    paths = []
    for version in versions:
        path = os.path.join(directory, f"{dist}-{version}-py3-none-any.whl")
        with open(path, "wb") as f:
            f.write(wheel_bytes(dist, version))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def github():
    with FakeIssuer(audience=AUD) as fake:
        yield fake


@pytest.fixture(scope="module")
def gitlab():
    with FakeIssuer(flavour="gitlab", audience=AUD) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki, github, gitlab):
    s = Server(str(tmp_path_factory.mktemp("server")), pki, github, gitlab)
    try:
        yield s.start()
    finally:
        s.stop()


def job_token(fake, **claims):
    """A JWT of the job that acme-tool's GitHub publisher names."""
    return fake.github_token(**{"repository": "acme/acme-tool", "workflow": "release.yml",
                                "environment": "pypi", **claims})


def unknown_kid_tokens(fake):
    """Tokens naming a kid the issuer never had (fake.hostile's, one RSA key for them all)."""
    key = fake.stranger_key()
    while True:
        yield fake.token(fake.claims(environment="pypi"), kid="unknown", key=key)


def upload(server, project, version, token):
    """One upload with __token__ over HTTPS: the status."""
    dist = project.replace("-", "_")
    data = wheel_bytes(dist, version)
    ctype, body = multipart_body(upload_fields(project, version, data),
                                 [("content", f"{dist}-{version}-py3-none-any.whl", data)])
    status, _, _ = server.request("POST", "/legacy/", body, {
        "Content-Type": ctype, "Authorization": basic("__token__", token)})
    return status


def assert_no_secret_logged(server, *secrets):
    log = server.log()
    for secret in secrets:
        assert secret not in log
    assert not JWT_SHAPE.search(log) and not TOKEN_SHAPE.search(log)


def refusal(answer, code):
    """Warehouse's shape of a refusal, with this code; its description."""
    assert set(answer) == {"message", "errors"} and isinstance(answer["message"], str)
    (error,) = answer["errors"]
    assert set(error) == {"code", "description"} and error["code"] == code, answer
    assert isinstance(error["description"], str) and error["description"]
    return error["description"]


def tool_env(ca, **extra):
    """
    client_env with our CA only, and nothing that would make a client try
    trusted publishing itself. (requests lets REQUESTS_CA_BUNDLE and
    CURL_CA_BUNDLE override twine's --cert: they must be ours or unset.)
    """
    env = {k: v for k, v in client_env(**extra).items() if k not in OTHER_PROVIDERS
           and not k.startswith(("GITHUB_", "CI_")) and k != "CI" and k not in CA_VARIABLES}
    env.update(REQUESTS_CA_BUNDLE=ca, SSL_CERT_FILE=ca)
    return env


def test_uv_publish_mints_uploads_and_burns(server, github, tmp_path):
    issued = []
    original = github.github_token

    def recording(*args, **kwargs):
        issued.append(original(*args, **kwargs))
        return issued[-1]

    github.github_token = recording   # the JWT the fake runtime hands uv, to look for it
    github.reset()
    before, requests_before = server.mints(), server.requests()
    dist = wheels(tmp_path / "dist", "acme-tool", "1.0")
    env = github.env(base=tool_env(server.ca, UV_CACHE_DIR=str(tmp_path / "uv-cache")),
                     repository="acme/acme-tool", workflow="release.yml", environment="pypi")
    try:
        out = subprocess.run([os.path.join(BIN, "uv"), "publish", "--trusted-publishing",
                              "always", "--publish-url", server.url + "/legacy/", *dist],
                             env=env, capture_output=True, text=True, timeout=60)
    finally:
        del github.github_token
    assert out.returncode == 0, out.stdout + out.stderr
    # The server answered GET /_/oidc/audience, POST mint-token, the upload
    # and POST burn-token (a burn before the upload would have made it 401).
    requests = server.requests()
    made = {k: v - requests_before.get(k, 0) for k, v in requests.items()
            if k[0] != "metrics" and v != requests_before.get(k, 0)}
    assert made == {("oidc", "GET", "200"): 1, ("oidc", "POST", "200"): 2,
                    ("upload", "POST", "200"): 1}, made
    assert "acme_tool-1.0-py3-none-any.whl" in server.files("acme-tool")

    # The runtime was asked for a JWT for the audience the server names...
    (asked,) = [r for r in github.requests if r.endpoint == "token"]
    assert f"audience={AUD}" in asked.query and asked.authorization == "Bearer"
    assert len(issued) == 1 and jwt.decode(issued[0], options={"verify_signature": False})[
        "aud"] == AUD
    # ...exchanged once, and the minted token burnt after the upload.
    after = server.mints()
    assert after.get("minted", 0) - before.get("minted", 0) == 1
    assert after.get("burnt", 0) - before.get("burnt", 0) == 1
    minted_id = re.findall(r"may upload acme-tool to default until \d+ \((tok-\w+)\)",
                           server.log())[-1]
    # Burnt: no token is left, only the JWT's jti (spent until the JWT expires).
    left = server.records().get(minted_id)
    assert left is None or ("sha256" not in left and left.get("revoked") and left.get("jti"))
    assert minted_id not in server.token_list()
    assert_no_secret_logged(server, issued[0])


def test_a_minted_token_uploads_its_projects_with_twine(server, github, tmp_path):
    jwt_ = job_token(github)
    status, answer = server.mint(jwt_)
    assert status == 200, answer
    token = answer["token"]
    assert answer["success"] is True and token.startswith("ppypi-")
    assert 14 * 60 < answer["expires"] - time.time() <= 15 * 60
    record, = [r for r in server.records().values() if r.get("jti") ==
               jwt.decode(jwt_, options={"verify_signature": False})["jti"]]
    assert record["projects"] == ["acme-tool"] and record["kind"] == "oidc"

    def twine(*files):
        return subprocess.run(
            [os.path.join(BIN, "twine"), "upload", "--non-interactive", "--disable-progress-bar",
             "--repository-url", server.url + "/legacy/", "--cert", server.ca, *files],
            env=tool_env(server.ca, TWINE_USERNAME="__token__", TWINE_PASSWORD=token),
            capture_output=True, text=True, timeout=60)

    out = twine(*wheels(tmp_path / "dist", "acme-tool", "2.0"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "acme_tool-2.0-py3-none-any.whl" in server.files("acme-tool")
    out = twine(*wheels(tmp_path / "other", "other-tool", "1.0"))
    assert out.returncode != 0 and "403" in out.stdout + out.stderr, out.stdout + out.stderr
    assert server.files("other-tool") == []
    assert_no_secret_logged(server, jwt_, token)
    # Burnt (as uv does), it uploads no more; a second burn finds nothing.
    assert server.burn(token) == (200, {"success": True})
    assert upload(server, "acme-tool", "2.1", token) == 401
    status, answer = server.burn(token)
    assert status == 422 and refusal(answer, "invalid-token")


def github_job(**claims):
    return lambda gh: job_token(gh, **claims)


def hostile(kind):
    # The claims of acme-tool's publisher, so that only the hostile part is wrong.
    return lambda gh: gh.hostile(kind, environment="pypi")


def body(make):
    """A mint request's body whose token is made by make(fake)."""
    return lambda gh: json.dumps({"token": make(gh)}).encode()


# (case, body(fake), status, code, what the description says)
REFUSALS = [
    ("wrong-repository", body(github_job(repository="evil/acme-tool")), 422,
     "invalid-publisher", "no trusted publisher"),
    ("wrong-repository-owner", body(github_job(repository="acme-evil/acme-tool")), 422,
     "invalid-publisher", "no trusted publisher"),
    ("wrong-workflow", body(github_job(workflow="other.yml")), 422, "invalid-publisher",
     "no trusted publisher"),
    # Our job calling another repository's reusable workflow of the same file name...
    ("reusable-workflow-of-another-repository", body(github_job(
        job_workflow_ref="evil/acme-tool/.github/workflows/release.yml@refs/heads/main")), 422,
     "invalid-publisher", "no trusted publisher"),
    # ...and another repository's job calling ours: the repository claim decides.
    ("another-repository-calling-our-workflow", body(github_job(
        repository="evil/acme-tool",
        job_workflow_ref="acme/acme-tool/.github/workflows/release.yml@refs/heads/main")), 422,
     "invalid-publisher", "no trusted publisher"),
    ("wrong-environment", body(github_job(environment="staging")), 422, "invalid-publisher",
     "no trusted publisher"),
    ("no-environment", body(github_job(environment=None)), 422, "invalid-publisher",
     "no trusted publisher"),
    ("project-without-publishers", body(github_job(repository="acme/other-tool")), 422,
     "invalid-publisher", "no trusted publisher"),
    ("expired", body(hostile("expired")), 422, "invalid-token", "expired"),
    ("not-yet-valid", body(hostile("not-yet-valid")), 422, "invalid-token", "not valid yet"),
    ("issued-in-future", body(hostile("issued-in-future")), 422, "invalid-token", "not valid"),
    ("wrong-audience", body(hostile("wrong-aud")), 422, "invalid-token", "audience"),
    ("multi-audience", body(hostile("multi-aud")), 422, "invalid-token", "audience"),
    ("wrong-issuer", body(hostile("wrong-iss")), 422, "invalid-token", "issuer"),
    ("unknown-key", body(hostile("unknown-kid")), 422, "invalid-token", "signing key"),
    ("no-kid", body(hostile("no-kid")), 422, "invalid-token", "signing key"),
    ("stranger-key", body(hostile("stranger-key")), 422, "invalid-token", "does not verify"),
    ("bad-signature", body(hostile("bad-signature")), 422, "invalid-token", "does not verify"),
    ("alg-none", body(hostile("alg-none")), 422, "invalid-token", "algorithm"),
    ("hs256-with-the-rsa-public-key", body(hostile("hs256-public-key")), 422, "invalid-token",
     "algorithm"),
    ("hs256-with-the-jwk", body(hostile("hs256-jwk")), 422, "invalid-token", "algorithm"),
    ("no-exp", body(hostile("no-exp")), 422, "invalid-token", "does not verify"),
    ("not-a-jwt", body(hostile("malformed")), 422, "invalid-token", "not a JWT"),
    ("malformed-json", lambda gh: b'{"token": ', 422, "invalid-payload", "not JSON"),
    ("not-an-object", lambda gh: b'["token"]', 422, "invalid-payload", "token is missing"),
    ("missing-token", lambda gh: json.dumps({"jwt": job_token(gh)}).encode(), 422,
     "invalid-payload", "token is missing"),
    ("empty-token", lambda gh: b'{"token": ""}', 422, "invalid-payload", "token is missing"),
    ("oversized", body(hostile("oversized")), 413, "invalid-payload", "too large"),
]


@pytest.mark.parametrize("make, status, code, says",
                         [pytest.param(*case[1:], id=case[0]) for case in REFUSALS])
def test_a_refused_mint_mints_nothing_and_harms_nothing(server, github, make, status, code,
                                                         says):
    request = make(github)
    before = server.records()
    got, answer = server.mint(body=request)
    assert got == status, answer
    assert says in refusal(answer, code)
    assert server.records() == before
    # The server is unharmed: a valid mint works.
    assert server.mint(job_token(github))[0] == 200


def test_a_replayed_jwt_is_refused(server, github):
    jwt_ = job_token(github)
    assert server.mint(jwt_)[0] == 200
    before = server.records()
    status, answer = server.mint(jwt_)
    assert status == 422 and "already been used" in refusal(answer, "invalid-reuse-token")
    assert server.records() == before
    assert server.mint(job_token(github))[0] == 200


def test_a_jwt_sent_many_times_at_once_mints_once(server, github):
    jwt_ = job_token(github)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.mint(jwt_), range(8)))
    assert sorted(status for status, _ in answers) == [200] + [422] * 7
    for status, answer in answers:
        if status == 422:
            refusal(answer, "invalid-reuse-token")
    jti = jwt.decode(jwt_, options={"verify_signature": False})["jti"]
    assert [r["jti"] for r in server.records().values() if r.get("jti") == jti] == [jti]


def test_a_burnt_tokens_jwt_is_not_exchanged_again(server, github):
    jwt_ = job_token(github)
    status, answer = server.mint(jwt_)
    assert status == 200
    assert server.burn(answer["token"])[0] == 200
    status, answer = server.mint(jwt_)
    assert status == 422 and refusal(answer, "invalid-reuse-token")


def test_the_audience_and_the_metrics(server, github):
    status, headers, data = server.request("GET", "/_/oidc/audience")
    assert status == 200 and json.loads(data) == {"audience": AUD}
    assert headers["Content-Type"] == "application/json"
    before = server.mints()
    jwt_ = job_token(github)
    server.mint(jwt_)
    server.mint(jwt_)
    server.mint(job_token(github, workflow="other.yml"))
    server.mint(github.hostile("expired", environment="pypi"))
    server.mint(github.hostile("alg-none", environment="pypi"))
    server.mint(body=b"nonsense")
    after = server.mints()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in delta.items() if v} == {
        "minted": 1, "invalid-reuse-token": 1, "invalid-publisher": 1, "invalid-token": 2,
        "invalid-payload": 1}


def test_an_oversized_mint_request_is_counted(server, github):
    before = server.mints().get("invalid-payload", 0)
    status, _ = server.mint(github.hostile("oversized", environment="pypi"))
    assert status == 413
    assert server.mints().get("invalid-payload", 0) == before + 1


def test_a_gitlab_pipeline_mints(server, gitlab, github):
    jwt_ = gitlab.gitlab_token()
    status, answer = server.mint(jwt_)
    assert status == 200, answer
    record, = [r for r in server.records().values() if r.get("jti") ==
               jwt.decode(jwt_, options={"verify_signature": False})["jti"]]
    assert record["projects"] == ["acme-tool"] and "GitLab" in record["description"]
    assert upload(server, "acme-tool", "3.0", answer["token"]) == 200
    for wrong in (gitlab.gitlab_token(ci_config="other.yml"),
                  gitlab.gitlab_token(project_path="acme/other-tool")):
        status, answer = server.mint(wrong)
        assert status == 422 and refusal(answer, "invalid-publisher")
    # Claims are matched against the publishers of the token's own issuer only:
    # GitHub's claims signed by GitLab, and GitLab's signed by GitHub, match nothing.
    claims = {k: v for k, v in gitlab.claims().items()
              if k not in ("project_path", "ci_config_ref_uri")}
    claims.update(repository="acme/acme-tool", environment="pypi",
                  job_workflow_ref="acme/acme-tool/.github/workflows/release.yml@refs/heads/main")
    status, answer = server.mint(gitlab.sign(claims))
    assert status == 422 and refusal(answer, "invalid-publisher")
    status, answer = server.mint(github.sign(github.claims(
        repository="acme/other-tool", project_path="acme/acme-tool",
        ci_config_ref_uri=gitlab.claims()["ci_config_ref_uri"])))
    assert status == 422 and refusal(answer, "invalid-publisher")


def test_a_gitlab_under_a_relative_url_root_mints(tmp_path, pki, github):
    with FakeIssuer(flavour="gitlab", path="/gitlab", audience=AUD) as gitlab:
        server = Server(str(tmp_path), pki, github, gitlab).start()
        try:
            status, answer = server.mint(gitlab.gitlab_token())
        finally:
            server.stop()
    assert status == 200, answer


def test_key_rotation_and_a_flood_of_unknown_keys_live(tmp_path, pki, gitlab):
    """
    The live server fetches the JWKS on first use, then not again within a
    minute whatever kids it is shown (the refetch after a minute is driven
    with a Clock below).
    """
    with FakeIssuer(audience=AUD) as github:
        server = Server(str(tmp_path), pki, github, gitlab).start()
        try:
            old = github.kid
            new = github.rotate()   # published before the server ever looked
            assert server.mint(job_token(github))[0] == 200
            assert github.counts["jwks"] == 1 and github.counts["configuration"] == 1
            # The old key, still published, verifies with the keys in hand.
            assert server.mint(github.sign(github.claims(environment="pypi"), kid=old))[0] == 200
            flood = unknown_kid_tokens(github)
            for _ in range(30):
                status, answer = server.mint(next(flood))
                assert status == 422 and "signing key" in refusal(answer, "invalid-token")
            assert github.counts["jwks"] == 1
            assert server.mint(github.sign(github.claims(environment="pypi"), kid=new))[0] == 200
            assert server.records() and all(r["kind"] == "oidc" for r in server.records().values())
        finally:
            server.stop()


@pytest_twisted.ensureDeferred
async def test_key_rotation_refetches_at_most_once_a_minute(tmp_path, gitlab):
    """
    The Minter with the real reactor's HTTP client against the fake issuer,
    its refetch floor on a Clock: a rotated key mints once a minute has
    passed since the last fetch (one refetch), and a flood of made-up kids
    costs the issuer one fetch a minute.
    """
    from treq.client import HTTPClient
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
    from twisted.internet.task import Clock
    from twisted.web.client import Agent, HTTPConnectionPool

    from ppypi.backends import registry
    from ppypi.config import load_config
    from ppypi.oidc import JWKS_REFETCH_FLOOR, GitHubPublisher, Minter
    from ppypi.tokens import TokenBook

    from . import memory_backend  # noqa: F401 (registers type memory)

    config = load_config("repositories:\n  m: {type: memory}\n", str(tmp_path), is_text=True)
    rc, = config.repositories
    book = TokenBook(registry.create(registry.BackendContext(
        config=rc, state_dir=str(tmp_path / "state"), run_in_thread=maybeDeferred,
        clock=reactor, http=None, others=[], on_retry=None)))
    pool = HTTPConnectionPool(reactor, persistent=False)
    clock = Clock()
    with FakeIssuer(audience=AUD) as github:
        minter = Minter(AUD, {"github": github.url}, [
            ("m", "acme-tool", GitHubPublisher("acme/acme-tool", "release.yml", "pypi"))],
            {"m": book}, HTTPClient(Agent(reactor, pool=pool)), clock)

        async def mint(jwt_):
            status, answer = await minter.mint(json.dumps({"token": jwt_}).encode())
            return status

        unknown = unknown_kid_tokens(github)

        async def flood(n):
            """The statuses of n made-up kids sent at once."""
            return set(await gatherResults([Deferred.fromCoroutine(mint(next(unknown)))
                                            for _ in range(n)]))

        def rotated():
            return github.sign(github.claims(environment="pypi"), kid=new)

        assert await mint(job_token(github)) == 200
        assert github.counts["jwks"] == 1
        new = github.rotate()
        # Within the minute of the last fetch the new key is not looked for...
        clock.advance(JWKS_REFETCH_FLOOR - 1)
        assert await mint(rotated()) == 422
        assert await flood(20) == {422}
        assert github.counts["jwks"] == 1
        # ...then it is, once.
        clock.advance(1)
        assert await mint(rotated()) == 200
        assert github.counts["jwks"] == 2
        assert await mint(rotated()) == 200 and github.counts["jwks"] == 2
        # Floods over the next three minutes: one fetch a minute.
        refetched = clock.seconds()
        for minute in range(1, 4):
            clock.advance(refetched + minute * JWKS_REFETCH_FLOOR - clock.seconds())
            for _ in range(6):
                assert await flood(5) == {422}
                clock.advance(9)
            assert github.counts["jwks"] == 2 + minute
    await pool.closeCachedConnections()
