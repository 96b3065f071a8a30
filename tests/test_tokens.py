"""
Upload tokens: `ppypi token create|list|revoke`, and a live server that
honours them for their projects only, until they expire or are revoked.
"""

import os
import subprocess
import time

import bcrypt
import pytest
import pytest_twisted

from ppypi.tokens import TokenBook, digest, prune

from . import memory_backend  # noqa: F401 (registers type memory)
from .conftest import BIN, wait_for
from .helpers import basic, multipart_body, upload_fields, wheel_bytes

PPYPI = os.path.join(BIN, "ppypi")
ALICE = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode()


def ppypi_token(root, config, *args):
    return subprocess.run([PPYPI, "token", *args, "--root", str(root), "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def server(tmp_path, daemon_factory):
    root = tmp_path / "root"
    config = tmp_path / "ppypi.yaml"
    config.write_text(f"""\
repositories:
  default: {{type: filesystem, path: pkgs, write: [alice], sync_interval: 0.5}}
users:
  alice: {{password: "{ALICE}"}}
""")
    daemon = daemon_factory(root, "--config", str(config))
    daemon.config = config
    return daemon


def post(daemon, project, version, password, user="__token__"):
    import urllib.error
    import urllib.request
    dist = project.replace("-", "_")
    data = wheel_bytes(dist, version)
    ctype, body = multipart_body(upload_fields(project, version, data),
                                 [("content", f"{dist}-{version}-py3-none-any.whl", data)])
    req = urllib.request.Request(daemon.url, data=body, method="POST", headers={
        "Content-Type": ctype, "Authorization": basic(user, password)})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_scoped_token_uploads_its_projects_only_until_revoked(server, tmp_path):
    made = ppypi_token(server.root, server.config, "create", "default", "--project",
                       "Acme_Tool", "--description", "CI of acme-tool")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ppypi-") and len(token) > 40
    assert "shown once" in made.stderr
    listed = ppypi_token(server.root, server.config, "list", "default")
    assert listed.returncode == 0 and "acme-tool" in listed.stdout
    assert token not in listed.stdout and "CI of acme-tool" in listed.stdout
    token_id = listed.stdout.split()[0]
    # The server reads the store's tokens at each sync.
    wait_for(lambda: post(server, "acme-tool", "1.0", token)[0] == 200, timeout=15,
             what="the token to be honoured")
    status, body = post(server, "other-tool", "1.0", token)
    assert status == 403 and b"may not change project other-tool" in body
    assert post(server, "acme-tool", "1.1", token[:-2] + "xx")[0] == 401
    revoked = ppypi_token(server.root, server.config, "revoke", "default", token_id)
    assert revoked.returncode == 0, revoked.stderr
    wait_for(lambda: post(server, "acme-tool", "1.2", token)[0] == 401, timeout=15,
             what="the revocation to be seen")
    again = ppypi_token(server.root, server.config, "revoke", "default", token_id)
    assert again.returncode != 0 and "no token" in again.stderr
    assert token not in server.log()


def test_an_expired_token_is_refused(server):
    made = ppypi_token(server.root, server.config, "create", "default", "--all-projects",
                       "--expires", "3s")
    token = made.stdout.strip()
    wait_for(lambda: post(server, "any-tool", "1.0", token)[0] == 200, timeout=15,
             what="the token to be honoured")
    wait_for(lambda: post(server, "any-tool", "1.1", token)[0] == 401, timeout=15,
             what="the token to expire")


@pytest.mark.parametrize("args, message", [
    (["create", "default"], "--project NAME"),
    (["create", "default", "--project", "x", "--all-projects"], "--project NAME"),
    (["create", "default", "--project", "not a name"], "not a project name"),
    (["create", "default", "--project", "x", "--expires", "soon"], "not a duration"),
    (["create", "nope", "--all-projects"], "no repository 'nope'"),
    (["revoke", "default"], "name the token's id"),
])
def test_the_command_refuses(tmp_path, args, message):
    config = tmp_path / "c.yaml"
    config.write_text("repositories:\n  default: {path: pkgs}\n")
    out = ppypi_token(tmp_path / "root", config, *args)
    assert out.returncode != 0 and message in out.stderr, out.stderr


@pytest_twisted.ensureDeferred
async def test_records_are_hashed_pruned_and_a_jti_is_taken_once(tmp_path):
    from ppypi.backends import registry
    from ppypi.config import load_config
    from ppypi.tokens import ReplayedToken
    from twisted.internet import reactor
    from twisted.internet.defer import maybeDeferred

    config = load_config("repositories:\n  m: {type: memory}\n", str(tmp_path), is_text=True)
    rc, = config.repositories
    backend = registry.create(registry.BackendContext(
        config=rc, state_dir=str(tmp_path / "state"), run_in_thread=maybeDeferred,
        clock=reactor, http=None, others=[], on_retry=None))
    book = TokenBook(backend)
    token, record = await book.create({"acme-tool"}, expires=time.time() + 60, kind="oidc",
                                      jti="jti-1", jti_expires=time.time() + 120)
    stored = await backend.load_tokens()
    assert token not in repr(stored) and stored[record["id"]]["sha256"] == digest(token)
    assert book.check(token)["id"] == record["id"]
    assert book.check(token, now=time.time() + 61) is None
    with pytest.raises(ReplayedToken):
        await book.create({"acme-tool"}, kind="oidc", jti="jti-1", jti_expires=time.time() + 1)
    # Expired, but its JWT could still be replayed: kept until the JWT expires.
    later = time.time() + 100
    assert list(prune(stored, later)) == [record["id"]]
    assert prune(stored, time.time() + 200) == {}
