"""
PEP 740 attestations and PEP 792 project status, in process: real signed
files and attestations (tests/fixtures/attestations, from pypi-attestations'
own tests), verified offline against the trusted root the sigstore package
carries; what is kept, what is served, what is refused.
"""

import hashlib
import json
import os

import pytest
import pytest_twisted

from ppypi.attestations import AttestationVerifier, Refused, packaged_trusted_root
from ppypi.oidc import GitHubPublisher, GitLabPublisher

from .helpers import InProcess, basic, upload_fields

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "attestations")
GITLAB_DIST = "gitlab_oidc_project-0.0.3.tar.gz"
GITHUB_DIST = "pypi_attestation_models-0.0.4a2.tar.gz"
GITLAB = GitLabPublisher("facutuesca/gitlab-oidc-project", ".gitlab-ci.yml")
GITHUB = GitHubPublisher("trailofbits/pypi-attestation-models", "release.yml")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def attestation_of(dist):
    """The attestation of a fixture, as JSON text (the Sigstore bundle one made into one)."""
    if dist == GITHUB_DIST:
        from pypi_attestations import Attestation
        from sigstore.models import Bundle
        bundle = Bundle.from_json(fixture(dist + ".sigstore"))
        return Attestation.from_bundle(bundle).model_dump_json()
    return fixture(dist + ".publish.attestation").decode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


# -- the verifier ---------------------------------------------------------------


@pytest.fixture(scope="module")
def verifier():
    return AttestationVerifier()


@pytest.mark.parametrize("dist, publisher", [(GITLAB_DIST, GITLAB), (GITHUB_DIST, GITHUB)])
def test_real_attestations_verify_offline(verifier, dist, publisher):
    data = fixture(dist)
    provenance = json.loads(verifier.verify(f"[{attestation_of(dist)}]", dist, sha(data),
                                            [publisher]))
    assert provenance["version"] == 1
    (bundle,) = provenance["attestation_bundles"]
    assert bundle["publisher"]["kind"] == {"github": "GitHub", "gitlab": "GitLab"}[
        publisher.issuer]
    assert len(bundle["attestations"]) == 1
    assert bundle["attestations"][0] == json.loads(attestation_of(dist))


def test_the_publisher_that_verifies_is_the_one_named(verifier):
    data = fixture(GITLAB_DIST)
    provenance = json.loads(verifier.verify(
        f"[{attestation_of(GITLAB_DIST)}]", GITLAB_DIST, sha(data),
        [GITHUB, GitLabPublisher("someone/else", ".gitlab-ci.yml"), GITLAB]))
    publisher = provenance["attestation_bundles"][0]["publisher"]
    assert publisher["repository"] == "facutuesca/gitlab-oidc-project"
    assert publisher["workflow_filepath"] == ".gitlab-ci.yml"


@pytest.mark.parametrize("publishers, match", [
    ([GitLabPublisher("facutuesca/other-project", ".gitlab-ci.yml")], "OIDCSourceRepositoryURI"),
    ([GitLabPublisher("facutuesca/gitlab-oidc-project", "other.yml")], "does not verify"),
    ([GITHUB], "does not verify"),
    ([], "no trusted publishers"),
])
def test_another_publisher_is_refused(verifier, publishers, match):
    data = fixture(GITLAB_DIST)
    with pytest.raises(Refused, match=match):
        verifier.verify(f"[{attestation_of(GITLAB_DIST)}]", GITLAB_DIST, sha(data), publishers)


def test_the_attestation_beside_another_file_is_refused(verifier):
    other = fixture(GITHUB_DIST)
    with pytest.raises(Refused, match="subject .* is not the uploaded file"):
        verifier.verify(f"[{attestation_of(GITLAB_DIST)}]", GITHUB_DIST, sha(other), [GITLAB])
    # The right name with other bytes: the digest gives it away.
    with pytest.raises(Refused, match="sha256"):
        verifier.verify(f"[{attestation_of(GITLAB_DIST)}]", GITLAB_DIST, sha(other), [GITLAB])


@pytest.mark.parametrize("field, match", [
    ("", "Malformed"), ("[]", "empty attestation set"), ("{}", "Malformed"),
    ("[{}]", "Malformed"), ("[1]", "Malformed"), ("null", "Malformed"),
    ("[" * 5000, "Malformed"), ('"x"', "Malformed"),
])
def test_malformed_attestations_are_refused(verifier, field, match):
    with pytest.raises(Refused, match=match):
        verifier.verify(field, GITLAB_DIST, "0" * 64, [GITLAB])


def test_two_of_one_kind_are_refused(verifier):
    data = fixture(GITLAB_DIST)
    one = attestation_of(GITLAB_DIST)
    with pytest.raises(Refused, match="more than one attestation of type"):
        verifier.verify(f"[{one},{one}]", GITLAB_DIST, sha(data), [GITLAB])


def test_more_attestations_than_kinds_are_refused_unread(verifier):
    one = attestation_of(GITLAB_DIST)
    with pytest.raises(Refused, match="Too many attestations"):
        verifier.verify("[" + ",".join([one] * 3) + "]", GITLAB_DIST, "0" * 64, [GITLAB])


def test_a_tampered_signature_is_refused(verifier):
    data = fixture(GITLAB_DIST)
    attestation = json.loads(attestation_of(GITLAB_DIST))
    envelope = attestation["envelope"]
    envelope["signature"] = envelope["signature"][:-8] + "AAAAAAA="
    with pytest.raises(Refused):
        verifier.verify(json.dumps([attestation]), GITLAB_DIST, sha(data), [GITLAB])


def test_a_bad_trusted_root_is_said(tmp_path):
    bad = tmp_path / "trusted_root.json"
    bad.write_text("{}")
    with pytest.raises(Exception):
        AttestationVerifier(str(bad)).load()
    assert os.path.exists(packaged_trusted_root())


# -- through the server ---------------------------------------------------------------

CONFIG = """
repositories:
  main:
    path: packages
    write: [alice]
    publishers:
      gitlab-oidc-project:
        - gitlab: {project: facutuesca/gitlab-oidc-project, ci_config: .gitlab-ci.yml}
      pypi-attestation-models:
        - github: {repository: trailofbits/pypi-attestation-models, workflow: release.yml}
      other-project:
        - github: {repository: acme/other, workflow: release.yml}
  strict:
    path: strict
    write: [alice]
    require_attestations: true
    publishers:
      gitlab-oidc-project:
        - gitlab: {project: facutuesca/gitlab-oidc-project, ci_config: .gitlab-ci.yml}
users:
  alice: {password: "$2b$04$Ly3Vx7mfXzTCSgJhRN1JoeXVV1ZyIQLPLtRg/KIHAXNZCkH6bLvCu"}
"""
ALICE = ("alice", "secret")


@pytest.fixture
def server(tmp_path):
    import bcrypt
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    text = CONFIG.replace("$2b$04$Ly3Vx7mfXzTCSgJhRN1JoeXVV1ZyIQLPLtRg/KIHAXNZCkH6bLvCu", hashed)
    return InProcess(tmp_path / "root", config_text=text, extra_index_url=None)


async def upload(server, dist, name, version, attestations=None, path="/"):
    data = fixture(dist)
    extra = {} if attestations is None else {"attestations": attestations}
    return await server.upload(upload_fields(name, version, data, filetype="sdist", **extra),
                               [("content", dist, data)], path=path, auth=ALICE)


@pytest_twisted.ensureDeferred
async def test_verified_upload_is_served_with_its_provenance(server):
    await server.sync()
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3",
                           f"[{attestation_of(GITLAB_DIST)}]")
    assert r.code == 200, body
    url = "/integrity/gitlab-oidc-project/0.0.3/gitlab_oidc_project-0.0.3.tar.gz/provenance"
    r, body = await server.get(url)
    assert r.code == 200, body
    assert r.headers.getRawHeaders("Content-Type") == ["application/vnd.pypi.integrity.v1+json"]
    provenance = json.loads(body)
    assert provenance["attestation_bundles"][0]["publisher"]["repository"] == \
        "facutuesca/gitlab-oidc-project"
    # Beside the file in the folder.
    assert os.path.exists(os.path.join(server.root, "packages", "gitlab-oidc-project",
                                       GITLAB_DIST + ".provenance"))
    # The index says so, in both formats, with the API version that has it.
    r, page = await server.get("/simple/gitlab-oidc-project/",
                               {"Accept": "application/vnd.pypi.simple.v1+json"})
    data = json.loads(page)
    assert data["meta"]["api-version"] == "1.4"
    assert data["files"][0]["provenance"] == "../.." + url
    r, page = await server.get("/simple/gitlab-oidc-project/")
    assert f'data-provenance="../..{url}"'.encode() in page
    # The page for people names the publisher.
    r, page = await server.get("/project/gitlab-oidc-project/")
    assert b"published by facutuesca/gitlab-oidc-project, CI config .gitlab-ci.yml" in page
    # A sync (a restart would do the same) finds it again beside the file.
    await server.sync()
    r, page = await server.get("/simple/gitlab-oidc-project/")
    assert b"data-provenance=" in page


@pytest_twisted.ensureDeferred
async def test_a_file_without_attestations_has_no_provenance(server):
    await server.sync()
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3")
    assert r.code == 200, body
    r, page = await server.get("/simple/gitlab-oidc-project/",
                               {"Accept": "application/vnd.pypi.simple.v1+json"})
    assert json.loads(page)["files"][0]["provenance"] is None
    r, _ = await server.get(
        "/integrity/gitlab-oidc-project/0.0.3/gitlab_oidc_project-0.0.3.tar.gz/provenance")
    assert r.code == 404


@pytest.mark.parametrize("url", [
    "/integrity/gitlab-oidc-project/9.9/gitlab_oidc_project-0.0.3.tar.gz/provenance",
    "/integrity/other/0.0.3/gitlab_oidc_project-0.0.3.tar.gz/provenance",
    "/integrity/gitlab-oidc-project/not a version/gitlab_oidc_project-0.0.3.tar.gz/provenance",
    "/integrity/gitlab-oidc-project/0.0.3/nothing.tar.gz/provenance",
    "/integrity/gitlab-oidc-project/0.0.3/gitlab_oidc_project-0.0.3.tar.gz/other",
    "/integrity/gitlab-oidc-project/0.0.3/../../etc/passwd/provenance",
])
@pytest_twisted.ensureDeferred
async def test_provenance_of_something_else_is_404(server, url):
    await server.sync()
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3",
                           f"[{attestation_of(GITLAB_DIST)}]")
    assert r.code == 200, body
    r, _ = await server.get(url)
    assert r.code == 404


@pytest.mark.parametrize("dist, name, version, field, match", [
    # Another project's publishers do not vouch for this one.
    (GITLAB_DIST, "gitlab-oidc-project", "0.0.3", "other", b"does not verify"),
    # The attestation of another file.
    (GITHUB_DIST, "pypi-attestation-models", "0.0.4a2", "gitlab", b"not the uploaded file"),
    (GITLAB_DIST, "gitlab-oidc-project", "0.0.3", "[]", b"empty attestation set"),
    (GITLAB_DIST, "gitlab-oidc-project", "0.0.3", "not json", b"Malformed"),
])
@pytest_twisted.ensureDeferred
async def test_unverified_attestations_are_refused_and_nothing_is_kept(
        server, dist, name, version, field, match):
    await server.sync()
    if field == "other":
        # Configured for other-project only: served under its name, this fails.
        server.config.repository("main").publishers["gitlab-oidc-project"] = [
            GitLabPublisher("facutuesca/another", ".gitlab-ci.yml")]
        field = f"[{attestation_of(GITLAB_DIST)}]"
    elif field == "gitlab":
        # The signer is one of the project's publishers; the file is not the one signed.
        server.config.repository("main").publishers["pypi-attestation-models"].append(GITLAB)
        field = f"[{attestation_of(GITLAB_DIST)}]"
    before = sorted(os.listdir(os.path.join(server.root, "packages")))
    r, body = await upload(server, dist, name, version, field)
    assert r.code == 400, body
    assert match in body
    assert sorted(os.listdir(os.path.join(server.root, "packages"))) == before
    r, _ = await server.get(f"/simple/{name}/")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_a_repository_may_require_attestations(server):
    await server.sync()
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3", path="/strict/")
    assert r.code == 400 and b"requires attestations" in body
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3",
                           f"[{attestation_of(GITLAB_DIST)}]", path="/strict/")
    assert r.code == 200, body


# -- project status -------------------------------------------------------------------


async def set_status(server, name, status, reason="", auth=ALICE, path="/"):
    body = f"status={status}&reason={reason}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth:
        headers["Authorization"] = basic(*auth)
    return await server.get(f"{path}status/{name}", headers, method="POST", data=body)


@pytest_twisted.ensureDeferred
async def test_each_status_in_both_formats_and_its_effects(server):
    await server.sync()
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3")
    assert r.code == 200, body
    file_url = "/packages/gitlab-oidc-project/gitlab_oidc_project-0.0.3.tar.gz"
    for status, uploads, files in (("archived", False, True), ("deprecated", True, True),
                                   ("quarantined", False, False), ("active", True, True)):
        r, body = await set_status(server, "Gitlab_OIDC.project", status, "see%20acme-2")
        assert r.code == 200, body
        assert json.loads(body) == {"project": "gitlab-oidc-project", "status": status,
                                    "reason": "see acme-2"}
        r, page = await server.get("/simple/gitlab-oidc-project/",
                                   {"Accept": "application/vnd.pypi.simple.v1+json"})
        data = json.loads(page)
        assert data["project-status"] == {"status": status, "reason": "see acme-2"}
        assert bool(data["files"]) is files
        r, page = await server.get("/simple/gitlab-oidc-project/")
        assert f'<meta name="pypi:project-status" content="{status}">'.encode() in page
        assert b'<meta name="pypi:project-status-reason" content="see acme-2">' in page
        assert (b"gitlab_oidc_project-0.0.3.tar.gz#sha256=" in page) is files
        r, _ = await server.get(file_url)
        assert (r.code == 200) is files
        r, page = await server.get("/project/gitlab-oidc-project/")
        assert f"This project is {status}: see acme-2".encode() in page
        # A new upload: refused naming the status, or taken.
        r, body = await upload(server, GITHUB_DIST, "gitlab-oidc-project", "0.0.4")
        # (the file is another project's: refused for its name either way, unless
        # the status refuses first)
        r, body = await server.upload(
            upload_fields("gitlab-oidc-project", "0.0.3", fixture(GITLAB_DIST),
                          filetype="sdist"),
            [("content", GITLAB_DIST, fixture(GITLAB_DIST))], auth=ALICE)
        if uploads:
            assert r.code == 200, body
        else:
            assert r.code == 400 and f"is {status}".encode() in body
    # Active with no reason: as if never set.
    r, body = await set_status(server, "gitlab-oidc-project", "active")
    r, page = await server.get("/simple/gitlab-oidc-project/",
                               {"Accept": "application/vnd.pypi.simple.v1+json"})
    assert "project-status" not in json.loads(page)
    assert os.path.exists(os.path.join(server.root, ".ppypi", "repositories", "main",
                                       "project-status.json"))


@pytest_twisted.ensureDeferred
async def test_status_survives_a_restart(server, tmp_path):
    await server.sync()
    r, body = await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3")
    r, body = await set_status(server, "gitlab-oidc-project", "archived", "done")
    assert r.code == 200, body
    again = InProcess(tmp_path / "root", config_text=open(
        os.path.join(str(tmp_path), "ppypi-test.yaml")).read(), extra_index_url=None)
    await again.sync()
    r, page = await again.get("/simple/gitlab-oidc-project/")
    assert b'<meta name="pypi:project-status" content="archived">' in page


@pytest.mark.parametrize("body, code, match", [
    (b"status=gone", 400, b"status must be one of"),
    (b"reason=x", 400, b"status must be one of"),
    (b"status=archived&status=active", 400, b"Give one status"),
    (b"status=archived&reason=" + b"x" * 1001, 400, b"longer than 1000"),
    (b"status=archived&reason=%01", 400, b"control characters"),
    (b"status=archived&reason=%ff", 400, b"not UTF-8"),
    (b"status=archived&reason=" + b"x" * 20000, 413, b""),
])
@pytest_twisted.ensureDeferred
async def test_bad_status_requests_are_refused(server, body, code, match):
    await server.sync()
    await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3")
    r, answer = await server.get("/status/gitlab-oidc-project", {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": basic(*ALICE)}, method="POST", data=body)
    assert r.code == code, answer
    assert match in answer
    r, page = await server.get("/simple/gitlab-oidc-project/")
    assert b"project-status" not in page


@pytest_twisted.ensureDeferred
async def test_status_needs_write_permission_and_a_known_project(server):
    await server.sync()
    await upload(server, GITLAB_DIST, "gitlab-oidc-project", "0.0.3")
    r, _ = await set_status(server, "gitlab-oidc-project", "archived", auth=None)
    assert r.code == 401
    r, _ = await set_status(server, "gitlab-oidc-project", "archived",
                            auth=("alice", "wrong"))
    assert r.code == 401
    r, _ = await set_status(server, "never-uploaded", "archived")
    assert r.code == 404
    r, _ = await set_status(server, "not/a/name", "archived")
    assert r.code == 404
    r, _ = await server.get("/status/gitlab-oidc-project")
    assert r.code == 405
