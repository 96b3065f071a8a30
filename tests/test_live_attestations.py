"""
PEP 740 attestations and PEP 792 project status against a real twistd, with
the real clients: twine upload --attestations and uv publish with real
signed files (tests/fixtures/attestations), pip and uv installing from a
project in each status, uv audit reporting the status, twine uploads the
status refuses, and the ppypi status command. Loopback only: uv audit's
vulnerability service is a stand-in here that knows of no vulnerability.
"""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse

import bcrypt
import pytest

from .conftest import BIN, client_env, get
from .corpus import sdist_bytes, wheel_bytes

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "attestations")
GITLAB_DIST = "gitlab_oidc_project-0.0.3.tar.gz"
GITHUB_DIST = "pypi_attestation_models-0.0.4a2.tar.gz"
TWINE = os.path.join(BIN, "twine")
UV = os.path.join(BIN, "uv")
PPYPI = os.path.join(BIN, "ppypi")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
INTEGRITY_TYPE = "application/vnd.pypi.integrity.v1+json"

GITLAB = "- gitlab: {project: facutuesca/gitlab-oidc-project, ci_config: .gitlab-ci.yml}"
GITHUB = "- github: {repository: trailofbits/pypi-attestation-models, workflow: release.yml}"


def config_text():
    alice = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode()
    bob = bcrypt.hashpw(b"bob-pw", bcrypt.gensalt(4)).decode()
    # main: the right publishers (one named unnormalised, as people write it);
    # other: another GitLab project for gitlab-oidc-project, and the GitLab
    # signer beside the GitHub one for pypi-attestation-models (so that only
    # the subject can refuse its attestation); strict: attestations required.
    return f"""\
repositories:
  main:
    path: main
    write: [alice]
    publishers:
      Gitlab_OIDC.Project:
        {GITLAB}
      pypi-attestation-models:
        {GITHUB}
  other:
    path: other
    write: [alice]
    publishers:
      gitlab-oidc-project:
        - gitlab: {{project: facutuesca/another-project, ci_config: .gitlab-ci.yml}}
      pypi-attestation-models:
        {GITHUB}
        {GITLAB}
  strict:
    path: strict
    write: [alice]
    require_attestations: true
    publishers:
      gitlab-oidc-project:
        {GITLAB}
      pypi-attestation-models:
        {GITHUB}
users:
  alice: {{password: "{alice}"}}
  bob: {{password: "{bob}"}}
"""


@pytest.fixture
def server(tmp_path, daemon_factory):
    config = tmp_path / "ppypi.yaml"
    config.write_text(config_text())
    # No --extra-index-url: a name not here must never send a client elsewhere.
    d = daemon_factory(tmp_path / "root", "--config", config, "--extra-index-url", "")
    d.tmp = tmp_path
    return d


# -- clients ---------------------------------------------------------------------------


def run(cmd, check=True, cwd=None, **env):
    # COLUMNS: twine's rich output wraps at 80 columns otherwise.
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd,
                            env=client_env(COLUMNS="250", **env), timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def said(result):
    """All a client printed, its whitespace (rich's wrapping and padding) folded."""
    return " ".join((result.stdout + result.stderr).split())


def twine(url, *args, check=True):
    return run([TWINE, "--no-color", "upload", "--non-interactive", "--disable-progress-bar",
                "--repository-url", url, "-u", "alice", "-p", "alice-pw", *args], check=check)


def uv_publish(url, *args, check=True):
    return run([UV, "publish", "--no-cache", "--publish-url", url, "-u", "alice",
                "-p", "alice-pw", *args], check=check)


def status_cli(d, name, status, *args, password="alice-pw", check=True):
    return run([PPYPI, "status", d.url, name, status, *args], check=check,
               PPYPI_PASSWORD=password)


def attested(folder, dist, attestation=None):
    """
    Copy a fixture and its attestation into C{folder} as DIST and
    DIST.publish.attestation (twine and uv take the attestation files given
    with the dist); the GitHub fixture's Sigstore bundle made into one.
    C{attestation}: the fixture whose attestation to put beside DIST instead.
    @return: [the dist's path, the attestation's path]
    """
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(FIXTURES, dist), folder)
    source = attestation or dist
    target = os.path.join(folder, dist + ".publish.attestation")
    if source == GITHUB_DIST:
        from pypi_attestations import Attestation
        from sigstore.models import Bundle
        with open(os.path.join(FIXTURES, source + ".sigstore"), "rb") as f:
            bundle = Bundle.from_json(f.read())
        with open(target, "w") as f:
            f.write(Attestation.from_bundle(bundle).model_dump_json())
    else:
        shutil.copy(os.path.join(FIXTURES, source + ".publish.attestation"), target)
    return [os.path.join(folder, dist), target]


def integrity_url(base, project, version, filename):
    return f"{base}integrity/{project}/{version}/{filename}/provenance"


def files_under(folder):
    """Every file under a folder, hidden ones too (the incoming folder)."""
    found = []
    for path, _, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(path, f), folder) for f in files]
    return sorted(found)


def assert_nothing_kept(d, repository, project):
    base = d.url + ("" if repository == "main" else f"{repository}/")
    assert get(base + f"simple/{project}/")[0] == 404
    assert files_under(os.path.join(d.root, repository)) == []
    assert files_under(os.path.join(d.root, ".ppypi", "repositories", repository,
                                    "metadata")) == []


# -- attestations ----------------------------------------------------------------------


@pytest.mark.parametrize("dist, project, version, kind, publisher, shown", [
    (GITLAB_DIST, "gitlab-oidc-project", "0.0.3", "GitLab",
     {"repository": "facutuesca/gitlab-oidc-project", "workflow_filepath": ".gitlab-ci.yml"},
     "published by facutuesca/gitlab-oidc-project, CI config .gitlab-ci.yml"),
    (GITHUB_DIST, "pypi-attestation-models", "0.0.4a2", "GitHub",
     {"repository": "trailofbits/pypi-attestation-models", "workflow": "release.yml"},
     "published by trailofbits/pypi-attestation-models, workflow release.yml"),
], ids=["gitlab", "github"])
def test_twine_attestations_are_verified_kept_and_served(
        server, tmp_path, dist, project, version, kind, publisher, shown):
    paths = attested(tmp_path / "dist", dist)
    out = twine(server.url, "--attestations", *paths)
    assert f"Uploading {dist}" in said(out)
    # The provenance object, as PEP 740 serves it, with the very attestation sent.
    url = integrity_url(server.url, project, version, dist)
    status, headers, body = get(url)
    assert status == 200, body
    assert headers["Content-Type"] == INTEGRITY_TYPE
    provenance = json.loads(body)
    assert provenance["version"] == 1
    (bundle,) = provenance["attestation_bundles"]
    assert bundle["publisher"]["kind"] == kind
    assert publisher.items() <= bundle["publisher"].items()
    with open(paths[1]) as f:
        assert bundle["attestations"] == [json.load(f)]
    # The index points at it in both formats: the link resolves to the same object.
    page_url = server.url + f"simple/{project}/"
    _, headers, page = get(page_url, {"Accept": JSON_TYPE})
    assert headers["Content-Type"] == JSON_TYPE
    (entry,) = json.loads(page)["files"]
    assert urllib.parse.urljoin(page_url, entry["provenance"]) == url
    _, _, page = get(page_url)
    assert f'data-provenance="{entry["provenance"]}"'.encode() in page
    _, _, page = get(server.url + f"project/{project}/")
    assert shown.encode() in page
    # Installers read those pages as before: pip (HTML) and uv (JSON).
    index = ["--index-url", server.url + "simple/"]
    out = run([sys.executable, "-m", "pip", "index", "versions", "--pre", "--no-cache-dir", *index,
               project])
    assert f"Available versions: {version}" in out.stdout
    reqs = tmp_path / "requirements.in"
    reqs.write_text(project + "\n")
    out = run([UV, "pip", "compile", "--no-cache", "--no-deps", "--prerelease", "allow", *index,
               reqs])
    assert f"{project}=={version}" in out.stdout


def test_provenance_survives_a_restart_and_is_hidden_while_quarantined(server, tmp_path):
    twine(server.url, "--attestations", *attested(tmp_path / "dist", GITLAB_DIST))
    served = get(integrity_url(server.url, "gitlab-oidc-project", "0.0.3", GITLAB_DIST))[2]
    server.stop()
    server.start()  # on another port
    url = integrity_url(server.url, "gitlab-oidc-project", "0.0.3", GITLAB_DIST)
    status, _, body = get(url)
    assert status == 200 and body == served
    assert os.path.exists(os.path.join(server.root, "main", "gitlab-oidc-project",
                                       GITLAB_DIST + ".provenance"))
    status_cli(server, "gitlab-oidc-project", "quarantined", "--reason", "under review",
               "-u", "alice")
    assert get(url)[0] == 404
    assert b"data-provenance" not in get(server.url + "simple/gitlab-oidc-project/")[2]
    status_cli(server, "gitlab-oidc-project", "active", "-u", "alice")
    assert get(url)[2] == served


def test_twine_refuses_an_attestation_for_another_publisher(server, tmp_path):
    paths = attested(tmp_path / "dist", GITLAB_DIST)
    out = twine(server.url + "other/", "--attestations", *paths, check=False)
    assert out.returncode != 0
    text = said(out)
    assert "HTTPError: 400 Bad Request" in text
    # twine shows the status line only, which the server cuts at 300 characters.
    assert ("Invalid attestations: Attestation 1 does not verify for any of the project's "
            "publishers (GitLab facutuesca/another-project, .gitlab-ci.yml: Certificate's "
            "OIDCSourceRepositoryURI does not match (got "
            "https://gitlab.com/facutuesca/gitlab-oidc-project, expected ") in text
    assert_nothing_kept(server, "other", "gitlab-oidc-project")
    # Without attestations the same file is welcome: nothing was held against it.
    twine(server.url + "other/", paths[0])
    assert get(server.url + "other/simple/gitlab-oidc-project/")[0] == 200


def test_twine_refuses_an_attestation_beside_another_file(server, tmp_path):
    # pypi-attestation-models has the GitLab signer among its publishers in
    # "other": the identity verifies, the signed subject is another file.
    paths = attested(tmp_path / "dist", GITHUB_DIST, attestation=GITLAB_DIST)
    out = twine(server.url + "other/", "--attestations", *paths, check=False)
    assert out.returncode != 0
    assert ("400 Bad Request from " + server.url + "other/ Invalid attestations: Attestation 1: "
            "its subject 'gitlab_oidc_project-0.0.3.tar.gz' is not the uploaded file "
            "'pypi_attestation_models-0.0.4a2.tar.gz'") in said(out)
    assert_nothing_kept(server, "other", "pypi-attestation-models")
    # The signed name with other bytes: a real sdist of gitlab-oidc-project 0.0.3
    # that is not the one signed (to "main", whose publisher for it is right).
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / GITLAB_DIST).write_bytes(sdist_bytes("gitlab_oidc_project", "0.0.3"))
    shutil.copy(os.path.join(FIXTURES, GITLAB_DIST + ".publish.attestation"), forged)
    out = twine(server.url, "--attestations", *sorted(forged.iterdir()), check=False)
    assert out.returncode != 0
    assert ("Invalid attestations: Attestation 1: its subject's sha256 is not the uploaded "
            "file's") in said(out)
    assert_nothing_kept(server, "main", "gitlab-oidc-project")


def test_a_repository_may_require_attestations(server, tmp_path):
    strict = server.url + "strict/"
    paths = attested(tmp_path / "dist", GITLAB_DIST)
    out = twine(strict, paths[0], check=False)
    assert out.returncode != 0
    assert ("400 Bad Request from " + strict + " This repository requires attestations "
            "(PEP 740) with every upload: publish from CI with a trusted publisher "
            "(twine upload --attestations, or uv publish)") in said(out)
    assert_nothing_kept(server, "strict", "gitlab-oidc-project")
    twine(strict, "--attestations", *paths)
    assert get(integrity_url(strict, "gitlab-oidc-project", "0.0.3", GITLAB_DIST))[0] == 200


def test_uv_publish_sends_the_attestations_among_its_files(server, tmp_path):
    strict = server.url + "strict/"
    folder = tmp_path / "dist"
    dist, attestation = attested(folder, GITHUB_DIST)
    # uv 0.13.9 does not look beside a file it is given: the attestation goes
    # only when it is among the files (as `uv publish dist/*` has it).
    out = uv_publish(strict, dist, check=False)
    assert out.returncode != 0
    assert ("Server says: 400 This repository requires attestations (PEP 740) with every "
            "upload") in said(out)
    out = uv_publish(strict, "--no-attestations", f"{folder}/*", check=False)
    assert out.returncode != 0 and "requires attestations" in said(out)
    assert_nothing_kept(server, "strict", "pypi-attestation-models")
    uv_publish(strict, f"{folder}/*")
    status, headers, body = get(integrity_url(strict, "pypi-attestation-models", "0.0.4a2",
                                              GITHUB_DIST))
    assert status == 200 and headers["Content-Type"] == INTEGRITY_TYPE
    with open(attestation) as f:
        assert json.loads(body)["attestation_bundles"][0]["attestations"] == [json.load(f)]
    # A refusal, as uv shows it.
    paths = attested(tmp_path / "gitlab", GITLAB_DIST)
    out = uv_publish(server.url + "other/", *paths, check=False)
    assert out.returncode != 0
    # uv shows the body: the whole reason.
    assert (f"Failed to publish `{paths[0]}` to `{server.url}other/` cause: Server returned "
            "status code 400 Bad Request. Server says: 400 Invalid attestations: Attestation 1 "
            "does not verify for any of the project's publishers (GitLab "
            "facutuesca/another-project, .gitlab-ci.yml: Certificate's OIDCSourceRepositoryURI "
            "does not match (got https://gitlab.com/facutuesca/gitlab-oidc-project, expected "
            "https://gitlab.com/facutuesca/another-project))") in said(out)
    assert_nothing_kept(server, "other", "gitlab-oidc-project")


def test_attestations_sent_with_a_file_already_there_are_kept(server, tmp_path):
    paths = attested(tmp_path / "dist", GITLAB_DIST)
    twine(server.url, paths[0])
    twine(server.url, "--attestations", *paths)
    assert get(integrity_url(server.url, "gitlab-oidc-project", "0.0.3", GITLAB_DIST))[0] == 200


# -- project status --------------------------------------------------------------------


class NoVulnerabilities(http.server.BaseHTTPRequestHandler):
    """OSV's querybatch, knowing no vulnerability: uv audit then reports statuses only."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.queries.extend(body["queries"])
        answer = json.dumps({"results": [{} for _ in body["queries"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def osv():
    service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoVulnerabilities)
    service.queries = []
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    service.url = f"http://127.0.0.1:{service.server_address[1]}/"
    yield service
    service.shutdown()
    service.server_close()
    thread.join(10)


def locked_project(folder, index, requirement):
    """A project depending on C{requirement}, locked against the index."""
    os.makedirs(folder)
    with open(os.path.join(folder, "pyproject.toml"), "w") as f:
        f.write(f'[project]\nname = "app"\nversion = "0.1"\nrequires-python = ">=3.8"\n'
                f'dependencies = ["{requirement}"]\n')
    run([UV, "lock", "--no-cache", "--default-index", index], cwd=folder, UV_PYTHON=sys.executable)
    return folder


def uv_audit(folder, index, osv, *args):
    return run([UV, "audit", "--preview-features", "audit-command", "--no-cache", "--frozen",
                "--default-index", index, "--service-url", osv.url, *args], cwd=folder,
               UV_PYTHON=sys.executable)


def publish_wheel(d, folder, version, check=True):
    path = os.path.join(folder, f"statpkg-{version}-py3-none-any.whl")
    with open(path, "wb") as f:
        f.write(wheel_bytes("statpkg", version))
    return twine(d.url, path, check=check)


def pip_install(index, target):
    return run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", target,
                "--index-url", index, "statpkg"], check=False)


def uv_pip_install(index, target):
    return run([UV, "pip", "install", "--no-cache", "--python", sys.executable, "--target",
                target, "--index-url", index, "statpkg"], check=False)


def version_in(target):
    return run([sys.executable, "-c", "import statpkg; print(statpkg.__version__)"],
               PYTHONPATH=str(target)).stdout.strip()


# status: (installs, uploads)
EFFECTS = {"archived": (True, False), "deprecated": (True, True),
           "quarantined": (False, False), "active": (True, True)}


def test_each_status_with_pip_uv_and_twine(server, tmp_path, osv):
    index = server.url + "simple/"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    publish_wheel(server, wheels, "1.0")
    app = locked_project(str(tmp_path / "app"), index, "statpkg")
    latest, next_minor = "1.0", 1
    for step, (status, (installs, uploads)) in enumerate(EFFECTS.items()):
        reason = f"{status}: see statpkg2 & notes"
        out = status_cli(server, "StatPkg", status, "--reason", reason, "-u", "alice")
        assert out.stdout == f"statpkg is {status} ({reason})\n"
        _, _, page = get(index + "statpkg/", {"Accept": JSON_TYPE})
        assert json.loads(page)["project-status"] == {"status": status, "reason": reason}

        pip = pip_install(index, tmp_path / f"pip-{step}")
        uv = uv_pip_install(index, tmp_path / f"uv-{step}")
        if installs:
            assert pip.returncode == 0, said(pip)
            assert f"Successfully installed statpkg-{latest}" in pip.stdout
            assert version_in(tmp_path / f"pip-{step}") == latest
            assert uv.returncode == 0, said(uv)
            assert f"+ statpkg=={latest}" in uv.stderr
            assert version_in(tmp_path / f"uv-{step}") == latest
        else:
            # Quarantined: no file offered, so nothing to install.
            assert pip.returncode != 0
            assert ("ERROR: Could not find a version that satisfies the requirement statpkg "
                    "(from versions: none)") in pip.stderr
            assert uv.returncode != 0
            assert ("Because there are no versions of statpkg and you require statpkg, we can "
                    "conclude that your requirements are unsatisfiable.") in said(uv)

        # uv audit reads the status from the JSON page of the locked package.
        audit = uv_audit(app, index, osv)
        if status == "active":
            assert audit.stdout == ""
            assert ("Found no known vulnerabilities and no adverse project statuses in 1 "
                    "package") in audit.stderr
        else:
            assert audit.stdout == f"\nAdverse statuses:\n\n- statpkg is {status}: {reason}\n"
            assert ("Found no known vulnerabilities and 1 adverse project status in 1 "
                    "package") in audit.stderr

        version = f"1.{next_minor}"
        up = publish_wheel(server, wheels, version, check=False)
        if uploads:
            assert up.returncode == 0, said(up)
            latest, next_minor = version, next_minor + 1
        else:
            assert up.returncode != 0
            assert (f"400 Bad Request from {server.url} Project statpkg is {status}: "
                    f"{reason}; it takes no uploads") in said(up)
            assert not os.path.exists(os.path.join(
                server.root, "main", "statpkg", f"statpkg-{version}-py3-none-any.whl"))
    assert latest == "1.2"
    assert {q["package"]["name"] for q in osv.queries} == {"statpkg"}

    # The JSON form of uv audit says the same.
    status_cli(server, "statpkg", "deprecated", "--reason", "use statpkg2", "-u", "alice")
    report = json.loads(uv_audit(app, index, osv, "--output-format", "json",
                                 "--preview-features", "json-output").stdout)
    assert report["adverse_statuses"] == [
        {"name": "statpkg", "status": "deprecated", "reason": "use statpkg2"}]


def test_a_status_without_a_reason_has_none(server, tmp_path, osv):
    index = server.url + "simple/"
    publish_wheel(server, str(tmp_path), "1.0")
    app = locked_project(str(tmp_path / "app"), index, "statpkg")
    status_cli(server, "statpkg", "archived", "-u", "alice")
    out = uv_audit(app, index, osv)
    assert out.stdout.splitlines()[-1] == "- statpkg is archived"


def test_the_status_command_says_what_went_wrong(server, tmp_path):
    publish_wheel(server, str(tmp_path), "1.0")
    wrong = status_cli(server, "statpkg", "archived", "-u", "alice", password="nope",
                       check=False)
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr == (
        f"ppypi status: {server.url}status/statpkg: 401 Invalid credentials; the server "
        "refused the credentials of alice: check -u and the password (PPYPI_PASSWORD or "
        "stdin)\n")
    read_only = status_cli(server, "statpkg", "archived", "-u", "bob", password="bob-pw",
                           check=False)
    assert read_only.returncode == 1
    assert "403" in read_only.stderr and "bob may not set a status here" in read_only.stderr
    anonymous = status_cli(server, "statpkg", "archived", check=False)
    assert anonymous.returncode == 1
    assert "401 Authentication required; this server needs credentials to set a status: " \
        "give -u USER" in anonymous.stderr
    unknown = status_cli(server, "never-uploaded", "archived", "-u", "alice", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr == (f"ppypi status: {server.url}status/never-uploaded: 404 "
                              "never-uploaded is not a project of this repository\n")
    # None of them changed anything; no password reached the log.
    assert b"project-status" not in get(server.url + "simple/statpkg/")[2]
    assert "nope" not in server.log() and "alice-pw" not in server.log()
