"""
The ppypi command: `ppypi passwd USER [--yaml] [--cost N]` prints a bcrypt
line for htpasswd or the YAML config, reading the password from stdin (never
from the command line) and never printing it.
"""

import contextlib
import io
import os
import subprocess
import sys

import bcrypt
import pytest
import yaml

from ppypi import cli
from ppypi.auth import load_htpasswd
from ppypi.config import load_config

from . import conftest

PPYPI = os.path.join(conftest.BIN, "ppypi")
PASSWORD = "correct horse: battery staple"


def ppypi(*args, stdin=""):
    """Run the console script: (exit code, stdout, stderr)."""
    p = subprocess.run([PPYPI, *args], input=stdin, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


class FakeStdin(io.StringIO):
    def isatty(self):
        return False


def run_main(monkeypatch, argv, stdin):
    """
    cli.main in process with C{stdin} as standard input: (exit code, stdout).

    passwd() binds sys.stdin/sys.stdout as default arguments when it is
    defined, so both the defaults and sys are replaced.
    """
    fake_in = stdin if isinstance(stdin, FakeStdin) else FakeStdin(stdin)
    fake_out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", fake_in)
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setattr(cli.passwd, "__defaults__", (fake_in, fake_out))
    try:
        cli.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, fake_out.getvalue()


def only_line(out):
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert out.endswith("\n")
    return lines[0]


# -- the console script ---------------------------------------------------------


def test_passwd_prints_an_htpasswd_line(tmp_path):
    code, out, err = ppypi("passwd", "alice", stdin=PASSWORD + "\n")
    assert code == 0, err
    user, _, hashed = only_line(out).partition(":")
    assert user == "alice"
    assert hashed.startswith("$2b$12$") and len(hashed) == 60
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"correct horse", hashed.encode())
    assert PASSWORD not in out + err and "battery" not in out + err
    # ...and it is a line that the htpasswd loader accepts
    path = tmp_path / "users.htpasswd"
    path.write_text(out)
    assert load_htpasswd(str(path)) == {"alice": hashed.encode()}


def test_passwd_yaml_line_loads_as_a_users_entry(tmp_path):
    code, out, err = ppypi("passwd", "alice", "--yaml", stdin=PASSWORD + "\n")
    assert code == 0, err
    entry = yaml.safe_load(only_line(out))
    assert list(entry) == ["alice"] and list(entry["alice"]) == ["password"]
    hashed = entry["alice"]["password"]
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    assert PASSWORD not in out + err
    # pasted under users:, the config loads with that hash
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  default: {write: [alice]}\nusers:\n  " + out)
    assert load_config(str(config), str(tmp_path / "root")).users == {"alice": hashed}


@pytest.mark.parametrize("stdin", ["", "\n", "\nsecond line\n"])
def test_passwd_empty_password_fails(stdin):
    code, out, err = ppypi("passwd", "alice", stdin=stdin)
    assert code != 0
    assert out == ""
    assert "empty password" in err


def test_passwd_refuses_a_password_on_the_command_line():
    code, out, err = ppypi("passwd", "alice", "hunter2-on-argv", stdin=PASSWORD + "\n")
    assert code == 2
    assert out == ""
    assert "unrecognized arguments" in err


@pytest.mark.parametrize("user", ["bad user", "a:b", "", "x" * 101, "tab\tuser"])
def test_passwd_rejects_bad_user_names(user):
    code, out, err = ppypi("passwd", user, stdin=PASSWORD + "\n")
    assert code != 0
    assert out == ""
    assert "user names" in err


def test_passwd_long_password_is_a_clear_error():
    code, out, err = ppypi("passwd", "alice", stdin="p" * 100 + "\n")
    assert code != 0
    assert out == ""
    assert "Traceback" not in err and "72" in err


# -- in process -------------------------------------------------------------------


def test_main_reads_only_the_first_line_and_keeps_spaces(monkeypatch):
    code, out = run_main(monkeypatch, ["passwd", "bob"], "  spaced pass  \nignored\n")
    assert code == 0
    user, _, hashed = only_line(out).partition(":")
    assert user == "bob"
    assert bcrypt.checkpw(b"  spaced pass  ", hashed.encode())
    assert not bcrypt.checkpw(b"spaced pass", hashed.encode())


def test_main_password_without_final_newline(monkeypatch):
    code, out = run_main(monkeypatch, ["passwd", "bob", "--yaml"], "pâté")
    assert code == 0
    hashed = yaml.safe_load(out)["bob"]["password"]
    assert bcrypt.checkpw("pâté".encode(), hashed.encode())


def test_main_cost(monkeypatch):
    code, out = run_main(monkeypatch, ["passwd", "bob", "--cost", "13"], "pw\n")
    assert code == 0
    assert only_line(out).startswith("bob:$2b$13$")


@pytest.mark.parametrize("argv", [
    ["passwd", "bob", "--cost", "4"], ["passwd", "bob", "--cost", "18"],
    ["passwd", "bob", "--cost", "twelve"], ["passwd", "bob", "pw"], ["passwd"], [],
    ["shadow", "bob"],
])
def test_main_argument_errors(monkeypatch, capsys, argv):
    code, out = run_main(monkeypatch, argv, "pw\n")
    assert code == 2
    assert out == ""
    assert "usage: ppypi" in capsys.readouterr().err


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_main_empty_password(monkeypatch, stdin):
    assert run_main(monkeypatch, ["passwd", "bob"], stdin) == (1, "")


@pytest.mark.parametrize("user", ["bad user", "a:b", "x" * 101])
def test_main_bad_user_is_refused_before_reading(monkeypatch, user):
    fake = FakeStdin("pw\n")
    code, out = run_main(monkeypatch, ["passwd", user], fake)
    assert (code, out) == (1, "")
    assert fake.tell() == 0


@pytest.mark.parametrize("user", ["alice", "a.b-c_d", "élodie", "ci@example.com", "x" * 100])
def test_yaml_line_keeps_the_user_name(monkeypatch, user):
    code, out = run_main(monkeypatch, ["passwd", user, "--yaml"], "pw\n")
    assert code == 0
    assert list(yaml.safe_load(out)) == [user]


@pytest.mark.parametrize("user", ["123", "null", "true", "*x", "[x]", "{x}", "@x", "'x"])
def test_yaml_line_keeps_tricky_user_names(monkeypatch, user):
    code, out = run_main(monkeypatch, ["passwd", user, "--yaml"], "pw\n")
    assert code == 0
    assert list(yaml.safe_load(out)) == [user]


def test_main_uses_the_current_standard_streams(monkeypatch):
    def read_password(stdin, prompt):  # never touches the real terminal or stdin
        assert stdin is sys.stdin, "passwd reads a stream other than the current sys.stdin"
        return stdin.readline().rstrip("\n")

    monkeypatch.setattr(cli, "_read_password", read_password)
    monkeypatch.setattr(sys, "stdin", FakeStdin("pw\n"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["passwd", "bob"])
    assert bcrypt.checkpw(b"pw", only_line(out.getvalue()).partition(":")[2].encode())


# -- ppypi yank: what a refusal says ---------------------------------------------


@pytest.fixture
def yank_server(tmp_path, daemon_factory):
    from .helpers import wheel_bytes

    root = tmp_path / "root"
    (root / "acme-tool").mkdir(parents=True)
    (root / "acme-tool" / "acme_tool-1.0-py3-none-any.whl").write_bytes(
        wheel_bytes("acme_tool", "1.0"))
    hashes = {u: bcrypt.hashpw(f"{u}-pw".encode(), bcrypt.gensalt(4)).decode()
              for u in ("alice", "bob")}
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  default:\n    write: [alice]\nusers:\n" + "".join(
        f'  {u}: {{password: "{h}"}}\n' for u, h in hashes.items()))
    return daemon_factory(root, "--config", str(config), "--extra-index-url", "")


def yank(url, *args, password=None):
    env = {k: v for k, v in os.environ.items() if k != "PPYPI_PASSWORD"}
    if password is not None:
        env["PPYPI_PASSWORD"] = password
    p = subprocess.run([PPYPI, "yank", url, "acme-tool", "1.0", *args], input="",
                       capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, p.stdout, p.stderr


def test_yank_without_credentials_says_which_it_needs(yank_server):
    code, out, err = yank(yank_server.url)
    assert code != 0 and out == ""
    line = only_line(err)
    assert line.startswith(f"ppypi yank: {yank_server.url}yank/acme-tool/1.0: 401 ")
    for part in ("needs credentials to yank", "-u USER", "-u __token__",
                 "ROOT/.ppypi/upload-token", "PPYPI_PASSWORD", "stdin"):
        assert part in line, part


def test_yank_with_refused_credentials(yank_server):
    code, out, err = yank(yank_server.url, "-u", "alice", password="wrong")
    assert code != 0 and out == ""
    line = only_line(err)
    assert ": 401 " in line and "refused" in line and "alice" in line
    assert "wrong" not in line


def test_yank_without_write_permission(yank_server):
    code, out, err = yank(yank_server.url, "-u", "bob", password="bob-pw")
    assert code != 0 and out == ""
    line = only_line(err)
    assert ": 403 " in line
    assert "bob may not yank" in line and "write permission" in line


def test_yank_with_write_permission(yank_server):
    code, out, err = yank(yank_server.url, "-u", "alice", "--reason", "broken",
                          password="alice-pw")
    assert code == 0, err
    assert only_line(out) == "yanked acme-tool 1.0: acme_tool-1.0-py3-none-any.whl"
    code, out, err = yank(yank_server.url + "no-such-repository/", "-u", "alice",
                          password="alice-pw")
    assert code != 0 and ": 404 " in only_line(err)
