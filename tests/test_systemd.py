"""The systemd units parse, and what they run is a command line ppypi accepts."""

import os
import shlex
import shutil
import subprocess

import pytest

from ppypi.tap import Options

from .conftest import BIN, PROJECT

UNITS = os.path.join(PROJECT, "systemd")
DROP_IN = os.path.join(UNITS, "ppypi.service.d", "socket-activation.conf")


def read(name):
    with open(os.path.join(UNITS, name)) as f:
        return f.read()


def unit_sections(text):
    """Parse a unit: {section: {key: [values]}} (keys repeat in systemd units)."""
    sections = {}
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {lineno} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"line {lineno} is not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exec_start(sections):
    values = [v for v in sections["Service"]["ExecStart"] if v]
    return shlex.split(values[-1])


def ppypi_args(argv):
    assert argv[0].endswith("/twistd")
    assert argv[1:4] == ["-n", "--pidfile=", "--logfile=-"]
    assert argv[4] == "ppypi"
    return argv[5:]


def test_service_runs_twistd_sandboxed_and_restarts():
    s = unit_sections(read("ppypi.service"))
    svc = s["Service"]
    assert svc["Restart"] == ["on-failure"]
    assert svc["ProtectSystem"] == ["strict"]
    assert svc["NoNewPrivileges"] == ["true"]
    assert svc["User"] == ["ppypi"]
    options = Options()
    options.parseOptions(ppypi_args(exec_start(s)))
    assert svc["ReadWritePaths"] == [options["root"]]
    assert options["listen"] == ["tcp:8888"]


def test_socket_activation_endpoint_is_accepted():
    s = unit_sections(read("ppypi.socket"))
    assert s["Socket"]["ListenStream"] == ["8888"]
    drop_in = unit_sections(open(DROP_IN).read())
    assert drop_in["Service"]["ExecStart"][0] == ""  # resets the service's own
    assert "ppypi.socket" in drop_in["Unit"]["Requires"]
    options = Options()
    options.parseOptions(ppypi_args(exec_start(drop_in)))
    assert options["listen"] == ["systemd:domain=INET:index=0"]


def test_bad_endpoint_would_be_refused():
    """The check above can fail: a wrong endpoint string is a usage error."""
    from twisted.python.usage import UsageError
    with pytest.raises(UsageError):
        Options().parseOptions(["--root", "/x", "--listen", "systemd:domain=BOGUS:index=x"])


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    twistd = os.path.join(BIN, "twistd")
    service = read("ppypi.service").replace("/opt/ppypi/bin/twistd", twistd)
    drop_in = open(DROP_IN).read().replace("/opt/ppypi/bin/twistd", twistd)
    (tmp_path / "ppypi.service").write_text(service)
    (tmp_path / "ppypi.socket").write_text(read("ppypi.socket"))
    # The service as it is with the drop-in applied (sections may repeat).
    activated = tmp_path / "activated"
    activated.mkdir()
    (activated / "ppypi.service").write_text(service + "\n" + drop_in)
    (activated / "ppypi.socket").write_text(read("ppypi.socket"))
    for folder in (tmp_path, activated):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no",
             str(folder / "ppypi.service"), str(folder / "ppypi.socket")],
            capture_output=True, text=True)
        ours = [line for line in result.stderr.splitlines() if str(folder) in line]
        assert result.returncode == 0 and not ours, result.stderr


def test_serves_on_a_socket_handed_over_as_systemd_does(tmp_path):
    """Socket activation for real: fd 3, LISTEN_FDS=1, LISTEN_PID of twistd
    and LISTEN_FDNAMES, as systemd (227 and newer) hands them over."""
    import socket

    from .conftest import get, wait_for

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    twistd = os.path.join(BIN, "twistd")
    script = (f'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=ppypi.socket exec {shlex.quote(twistd)} -n --pidfile= ppypi '
              f'--root {shlex.quote(str(tmp_path / "root"))} '
              '--listen systemd:domain=INET:index=0')
    log = open(tmp_path / "log", "wb")
    fd = listener.fileno()
    proc = subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                            pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
    try:
        wait_for(lambda: _answers(get, f"http://127.0.0.1:{port}/health"),
                 what="ppypi on the inherited socket")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        listener.close()


def _answers(get, url):
    try:
        return get(url)[0] == 200
    except OSError:
        return False
