"""
C{twistd ppypi} options (SPEC.md "Running"), and the real command's start-up:
a bad config stops it with one line naming the file, the key and the problem.
"""

import os
import re
import socket
import subprocess

import pytest
from twisted.python import usage

from ppypi.tap import Options

from .conftest import BIN, get, wait_for

# twistd itself, as conftest's Daemon runs it (`python -m twisted` is `twist`).
TWISTD = [os.path.join(BIN, "twistd")]
START_TIMEOUT = 60


def parse(*args):
    options = Options()
    options.parseOptions(list(args))
    return options


# -- defaults and spellings ------------------------------------------------------


def test_defaults():
    o = parse("--root", "data")
    assert o["root"] == "data"
    assert o["auth-read-expires"] == 3600
    assert o["auth-write-expires"] == 300
    assert o["extra-index-url"] == "https://pypi.org/simple/"
    assert o["host"] == "0.0.0.0"
    assert o["port"] == 8888
    assert o["listen"] == ["tcp:8888:interface=0.0.0.0"]
    assert o["config"] is None and o["admin-secret"] is None
    assert not o["config-or-admin-secret-can-be-text"]
    assert not o["debug"]


def test_root_is_required():
    with pytest.raises(usage.UsageError, match="--root"):
        parse()
    with pytest.raises(usage.UsageError, match="--root"):
        parse("--config", "ppypi.yaml")


# private-pypi's server was started as `private_pypi_server ROOT --config ...`.
@pytest.mark.parametrize("args", [
    ["data"], ["data", "--config", "c.toml"], ["--config", "c.toml", "data"],
    ["--admin_secret", "s.toml", "data", "--port=9000"], ["--root", "data", "data"],
    ["data", "--root", "./data"], ["--debug", "data"], ["--", "data"],
])
def test_root_as_the_one_positional_argument(args):
    o = parse(*args)
    assert os.path.abspath(o["root"]) == os.path.abspath("data")
    assert o["config"] == ("c.toml" if "c.toml" in args else None)
    assert o["admin-secret"] == ("s.toml" if "s.toml" in args else None)
    assert o["port"] == (9000 if "--port=9000" in args else 8888)
    assert o["debug"] == ("--debug" in args)


@pytest.mark.parametrize("args, message", [
    (["a", "b"], "one ROOT"), (["a", "--config", "c.toml", "b"], "one ROOT"),
    (["--root", "a", "b"], "differ"),
])
def test_root_given_twice_is_a_one_line_error(args, message):
    with pytest.raises(usage.UsageError, match=message) as e:
        parse(*args)
    assert "\n" not in str(e.value)


def test_every_option_is_parsed():
    o = parse("--root", "r", "--config", "c.yaml", "--admin-secret", "s.toml",
              "--auth-read-expires", "10", "--auth-write-expires", "2.5", "--debug",
              "--config-or-admin-secret-can-be-text")
    assert (o["config"], o["admin-secret"]) == ("c.yaml", "s.toml")
    assert (o["auth-read-expires"], o["auth-write-expires"]) == (10, 2.5)
    assert o["debug"] and o["config-or-admin-secret-can-be-text"]


@pytest.mark.parametrize("underscored, dashed, key, value", [
    (["--auth_read_expires=5"], ["--auth-read-expires=5"], "auth-read-expires", 5),
    (["--auth_write_expires", "7"], ["--auth-write-expires", "7"], "auth-write-expires", 7),
    (["--extra_index_url", "https://mirror.example/simple/"],
     ["--extra-index-url", "https://mirror.example/simple/"],
     "extra-index-url", "https://mirror.example/simple/"),
    (["--config_or_admin_secret_can_be_text"], ["--config-or-admin-secret-can-be-text"],
     "config-or-admin-secret-can-be-text", 1),
    (["--admin_secret=s.toml"], ["--admin-secret=s.toml"], "admin-secret", "s.toml"),
])
def test_underscore_spellings(underscored, dashed, key, value):
    a = parse("--root", "r", *underscored)
    b = parse("--root", "r", *dashed)
    assert a[key] == value
    assert dict(a) == dict(b)


def test_underscores_in_values_are_kept():
    o = parse("--root", "my_root", "--config=/etc/my_ppypi/my_config.yaml",
              "--admin_secret=/etc/my_ppypi/admin_secret.toml",
              "--extra_index_url=https://my_mirror.example/simple/")
    assert o["root"] == "my_root"
    assert o["config"] == "/etc/my_ppypi/my_config.yaml"
    assert o["admin-secret"] == "/etc/my_ppypi/admin_secret.toml"
    assert o["extra-index-url"] == "https://my_mirror.example/simple/"


@pytest.mark.parametrize("args", [["--extra-index-url", ""], ["--extra-index-url="],
                                  ["--extra_index_url", ""]])
def test_empty_extra_index_url_turns_it_off(args):
    assert parse("--root", "r", *args)["extra-index-url"] is None


def test_extra_index_url_gets_its_slash():
    o = parse("--root", "r", "--extra-index-url", "https://mirror.example/simple")
    assert o["extra-index-url"] == "https://mirror.example/simple/"


def test_extra_index_url_must_be_http():
    with pytest.raises(usage.UsageError, match="extra-index-url"):
        parse("--root", "r", "--extra-index-url", "ftp://mirror.example/simple/")


# -- where to listen -----------------------------------------------------------


def test_host_and_port():
    o = parse("--root", "r", "--host", "127.0.0.1", "--port", "9000")
    assert o["listen"] == ["tcp:9000:interface=127.0.0.1"]


def test_listen_is_repeatable_and_replaces_host_and_port():
    o = parse("--root", "r", "--host", "10.0.0.1", "--port", "9000",
              "--listen", "tcp:8080:interface=127.0.0.1", "--listen", "unix:/tmp/ppypi-x.sock")
    assert o["listen"] == ["tcp:8080:interface=127.0.0.1", "unix:/tmp/ppypi-x.sock"]


@pytest.mark.parametrize("endpoint", ["unix:/tmp/x.sock", "tcp:8888:interface=127.0.0.1",
                                      "tcp:0", "tcp6:8888:interface=\\:\\:1"])
def test_good_endpoint(endpoint):
    assert parse("--root", "r", "--listen", endpoint)["listen"] == [endpoint]


def test_systemd_endpoint_outside_systemd(monkeypatch):
    # Checked when parsing without a socket to look up (systemd passes it at start).
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(var, raising=False)
    endpoint = "systemd:domain=INET:index=0"
    assert parse("--root", "r", "--listen", endpoint)["listen"] == [endpoint]


@pytest.mark.parametrize("endpoint", ["bogus:1", "tcp:notaport", "tcp:8888:nosuch=1", "",
                                      "systemd:domain=INET", "systemd:domain=INET:index=x",
                                      "systemd:domain=NOPE:index=0"])
def test_bad_endpoint(endpoint):
    with pytest.raises(usage.UsageError, match="--listen"):
        parse("--root", "r", "--listen", endpoint)


@pytest.mark.parametrize("endpoint", [
    "tcp:70000", "ssl:8443:privateKey=/nonexistent/key.pem:certKey=/nonexistent/cert.pem",
], ids=["port-too-big", "missing-tls-key"])
def test_bad_endpoint_caught_late(endpoint):
    with pytest.raises(usage.UsageError, match="--listen"):
        parse("--root", "r", "--listen", endpoint)


@pytest.mark.parametrize("args", [
    ["--port", "http"], ["--port", "-1"], ["--port", "65536"], ["--port", "80.5"],
    ["--auth-read-expires", "-1"], ["--auth-write-expires", "-5"],
    ["--auth-read-expires", "soon"], ["--auth_write_expires=-1"],
])
def test_bad_number(args):
    with pytest.raises(usage.UsageError, match=args[0].split("=")[0].replace("_", "-")):
        parse("--root", "r", *args)


def test_nan_expiry():
    with pytest.raises(usage.UsageError):
        parse("--root", "r", "--auth-read-expires", "nan")


def test_unknown_option():
    with pytest.raises(usage.UsageError):
        parse("--root", "r", "--no-such-option")
    # after ROOT too, named as it is
    with pytest.raises(usage.UsageError, match="--no-such-option"):
        parse("r", "--no-such-option")


# -- the real command --------------------------------------------------------


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_twistd(tmp_path, *args, env=None, stream="stderr"):
    """Run C{twistd -n ppypi} expecting it to stop: (exit code, last line of C{stream})."""
    cmd = [*TWISTD, "-n", "--pidfile=", "ppypi", "--root", str(tmp_path / "root"), *args,
           "--listen", "tcp:0:interface=127.0.0.1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT,
                          env=dict(os.environ) if env is None else env)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, last_line(getattr(proc, stream))


BAD_CONFIGS = {
    "bad YAML": ("repositories:\n  default: {}\n  other: x: y\n", ["invalid YAML", "line 3"]),
    "unknown key": ("repositories:\n  default:\n    sync_intervall: 5\n",
                    ["repositories.default.sync_intervall", "unknown key"]),
    "bad value": ("repositories:\n  default:\n    max_file_bytes: 0\n",
                  ["repositories.default.max_file_bytes", "at least 1"]),
    "plain-text password": ("repositories:\n  default: {}\nusers:\n  alice: {password: pw}\n",
                            ["users.alice.password", "bcrypt"]),
}


@pytest.mark.parametrize("text, expected", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_stops_start_up(tmp_path, text, expected):
    path = tmp_path / "ppypi.yaml"
    path.write_text(text)
    code, last = run_twistd(tmp_path, "--config", str(path))
    assert code != 0
    assert last.startswith("ppypi: ")
    assert str(path) in last
    for part in expected:
        assert part in last


def test_missing_config_file_stops_start_up(tmp_path):
    path = str(tmp_path / "missing.yaml")
    code, last = run_twistd(tmp_path, "--config", path)
    assert code != 0
    assert path in last and "cannot read" in last


def test_missing_secret_env_var_stops_start_up(tmp_path):
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  default: {}\n")
    secret = tmp_path / "admin-secret.yaml"
    secret.write_text("default: {env: PPYPI_TEST_NO_SUCH_VAR}\n")
    env = {k: v for k, v in os.environ.items() if k != "PPYPI_TEST_NO_SUCH_VAR"}
    code, last = run_twistd(tmp_path, "--config", str(config), "--admin-secret", str(secret),
                            env=env)
    assert code != 0
    assert str(secret) in last
    assert "default.env" in last and "PPYPI_TEST_NO_SUCH_VAR is not set" in last


def test_bad_text_config_stops_start_up(tmp_path):
    code, last = run_twistd(tmp_path, "--config-or-admin-secret-can-be-text",
                            "--config", "repositories:\n  default:\n    sync_intervall: 5\n")
    assert code != 0
    assert "--config (text)" in last
    assert "repositories.default.sync_intervall" in last and "unknown key" in last


def test_bad_option_stops_start_up(tmp_path):
    # twistd prints its usage, then the problem, to stdout.
    code, last = run_twistd(tmp_path, "--auth-read-expires", "-1", stream="stdout")
    assert code != 0
    assert "--auth-read-expires" in last and "negative" in last


def test_root_as_a_positional_argument_starts(tmp_path, daemon_factory):
    """`twistd -n ppypi ROOT --config ...`, as private-pypi's server was started."""
    root = tmp_path / "root"
    config = tmp_path / "ppypi.yaml"
    config.write_text("repositories:\n  default:\n    path: pkgs\n")
    cmd = [*TWISTD, "-n", "--pidfile=", "ppypi", str(root), "--config", str(config),
           "--listen", "tcp:0:interface=127.0.0.1"]
    with open(tmp_path / "twistd.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or os.path.isdir(root / "pkgs"),
                 timeout=START_TIMEOUT, what="the daemon to prepare ROOT/pkgs")
        assert proc.poll() is None, (tmp_path / "twistd.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_two_roots_stop_start_up(tmp_path):
    code, last = run_twistd(tmp_path, str(tmp_path / "other"), stream="stdout")
    assert code != 0
    assert "ROOT" in last and "--root" in last and "differ" in last


@pytest.fixture
def taken_port():
    """A loopback port that a socket of the test listens on."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    yield held.getsockname()[1]
    held.close()


def test_port_in_use_is_one_line(tmp_path, taken_port):
    endpoint = f"tcp:{taken_port}:interface=127.0.0.1"
    # The default pidfile (twistd.pid in the working folder) is written
    # before twistd listens: a failed start must not leave it behind.
    cmd = [*TWISTD, "-n", "ppypi", "--root", str(tmp_path / "root"), "--listen", endpoint]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT,
                          cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output, output
    assert proc.stderr.splitlines() == [
        f"ppypi: cannot listen on {endpoint}: address already in use"], output
    assert not (tmp_path / "twistd.pid").exists()


def test_port_in_use_when_daemonised(tmp_path, taken_port):
    """Daemonised, twistd reports the child's failure itself (its stderr is
    gone by then): the line says what happened, and the log has it."""
    endpoint = f"tcp:{taken_port}:interface=127.0.0.1"
    cmd = [*TWISTD, "--pidfile", str(tmp_path / "twistd.pid"), "--logfile",
           str(tmp_path / "twistd.log"), "ppypi", "--root", str(tmp_path / "root"),
           "--listen", endpoint]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert f"cannot listen on {endpoint}: address already in use" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    log = (tmp_path / "twistd.log").read_text()
    assert f"cannot listen on {endpoint}: address already in use" in log
    assert not (tmp_path / "twistd.pid").exists()


def test_readme_quick_start_leaves_no_pidfile(tmp_path):
    """
    README's `twistd -n --pidfile= ppypi --root ./packages` (on a free
    loopback port here): no twistd.pid in the working folder, so another
    instance started there runs too.
    """
    procs = []
    try:
        for root in ("./packages", "./other"):
            log_path = tmp_path / f"{root[2:]}.log"
            with open(log_path, "wb") as log:
                procs.append(subprocess.Popen(
                    [*TWISTD, "-n", "--pidfile=", "ppypi", "--root", root,
                     "--listen", "tcp:0:interface=127.0.0.1"],
                    cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))

            def port(proc=procs[-1], log_path=log_path):
                assert proc.poll() is None, log_path.read_text()
                return re.search(r"Site starting on (\d+)", log_path.read_text())

            url = "http://127.0.0.1:%s/" % wait_for(port, timeout=START_TIMEOUT).group(1)
            wait_for(lambda: health_status(url) == 200, timeout=START_TIMEOUT,
                     what=f"{root} to answer /health")
        assert not (tmp_path / "twistd.pid").exists()
        assert (tmp_path / "packages" / ".ppypi" / "upload-token").exists()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


def health_status(url):
    try:
        return get(url + "health")[0]
    except OSError:  # not listening yet, or the connection was reset
        return None


def test_text_config_starts(tmp_path, daemon_factory):
    text = "repositories:\n  default:\n    path: pkgs\n"
    d = daemon_factory(tmp_path / "root", "--config-or-admin-secret-can-be-text",
                       "--config", text, wait_ready=False)
    assert wait_for(lambda: health_status(d.url) == 200, what="/health to answer 200")
    assert os.path.isdir(tmp_path / "root" / "pkgs")


def test_systemd_socket_activation(tmp_path):
    """--listen systemd:domain=INET:index=0 serves a socket passed as fd 3."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = "http://127.0.0.1:%d/" % sock.getsockname()[1]
    # What systemd does: the socket as fd 3, LISTEN_PID naming the server's own pid.
    script = 'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=ppypi.socket; ' \
             'exec "$@" 3<&0 </dev/null'
    cmd = ["sh", "-c", script, "sh", *TWISTD, "-n", "--pidfile=", "ppypi",
           "--root", str(tmp_path / "root"), "--listen", "systemd:domain=INET:index=0"]
    with open(tmp_path / "twistd.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=sock.fileno(), stdout=log, stderr=subprocess.STDOUT)
    sock.close()
    try:
        wait_for(lambda: proc.poll() is not None or health_status(url) == 200,
                 timeout=START_TIMEOUT, what="/health through the inherited socket")
        assert proc.poll() is None, (tmp_path / "twistd.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
