"""The systemd units parse, what they run is a command line ppypi accepts,
and socket activation serves (and logs client addresses) as ppypi.socket and
its drop-in set it up."""

import contextlib
import os
import shlex
import shutil
import socket
import subprocess

import pytest

from ppypi.tap import Options

from .conftest import BIN, PROJECT, get, wait_for

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
    assert options["listen"] == ["systemd:domain=INET6:index=0"]


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
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    with socket_activated(tmp_path, listener, "systemd:domain=INET:index=0"):
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"),
                 what="ppypi on the inherited socket")


# -- ppypi.socket and the drop-in agree on the socket's address family ---------------
#
# Twisted adopts the inherited socket as the family the endpoint's domain=
# names; the wrong one serves, but reads every client address as garbage
# (an AF_INET6 socket adopted as INET logged "::58cb:551b:e07f:0%454848430").

DOMAINS = {socket.AF_INET: "INET", socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}


def listen_stream(socket_unit):
    """(family, host, port or path) of the socket systemd makes for the
    unit's ListenStream= (systemd.socket(5)): a path is AF_UNIX, an IPv4
    address AF_INET, a bare port or an [IPv6] address AF_INET6 on this host
    (it has IPv6; systemd falls back to AF_INET for a bare port without)."""
    [value] = socket_unit["Socket"]["ListenStream"]
    if value.startswith(("/", "@")):
        return socket.AF_UNIX, None, value
    if value.isdigit():
        return socket.AF_INET6, "::", int(value)
    host, _, port = value.rpartition(":")
    if host.startswith("["):
        return socket.AF_INET6, host[1:-1], int(port)
    return socket.AF_INET, host, int(port)


def drop_in_listen(drop_in):
    """The --listen endpoint of the drop-in's command line."""
    options = Options()
    options.parseOptions(ppypi_args(exec_start(drop_in)))
    [endpoint] = options["listen"]
    return endpoint


def endpoint_domain(endpoint):
    kind, *fields = endpoint.split(":")
    assert kind == "systemd", endpoint
    return dict(field.partition("=")[::2] for field in fields)["domain"]


def disagreement(socket_unit, drop_in):
    """What is wrong between the two units, or None."""
    family = listen_stream(socket_unit)[0]
    domain = endpoint_domain(drop_in_listen(drop_in))
    if DOMAINS[family] != domain:
        return (f"ppypi.socket makes an {DOMAINS[family]} socket "
                f"but the drop-in adopts it as domain={domain}")
    return None


def test_socket_unit_and_drop_in_agree_on_the_address_family():
    socket_unit = unit_sections(read("ppypi.socket"))
    drop_in = unit_sections(open(DROP_IN).read())
    assert disagreement(socket_unit, drop_in) is None
    # Dual-stack whatever the host's net.ipv6.bindv6only: IPv4 clients too.
    assert socket_unit["Socket"]["BindIPv6Only"] == ["both"]


def test_a_disagreement_would_be_caught():
    """The check above can fail: the units as they were (ListenStream=8888
    with domain=INET), and an IPv4 socket with domain=INET6."""
    old_drop_in = open(DROP_IN).read().replace("domain=INET6", "domain=INET")
    assert "domain=INET:" in old_drop_in
    assert disagreement(unit_sections(read("ppypi.socket")), unit_sections(old_drop_in))
    ipv4 = unit_sections(read("ppypi.socket").replace("ListenStream=8888",
                                                      "ListenStream=0.0.0.0:8888"))
    assert disagreement(ipv4, unit_sections(open(DROP_IN).read()))


def socket_as_ppypi_socket_makes_it(socket_unit):
    """The listening socket of ppypi.socket, made as systemd makes it, on a
    free port: for ListenStream=8888, AF_INET6 on :: with IPV6_V6ONLY off
    (BindIPv6Only=both), TCP_NODELAY (NoDelay=true)."""
    family, host, _ = listen_stream(socket_unit)
    assert family == socket.AF_INET6, "the test below expects the dual-stack socket"
    settings = socket_unit["Socket"]
    listener = socket.socket(family, socket.SOCK_STREAM)
    v6only = {"both": 0, "ipv6-only": 1}[settings.get("BindIPv6Only", ["both"])[0]]
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    if settings.get("NoDelay") == ["true"]:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, 0))
    except OSError:
        listener.bind(("::1", 0))   # no wildcard here: loopback only (IPv6 only then)
    listener.listen(socket.SOMAXCONN)
    return listener


def test_socket_activation_logs_the_real_client_address(tmp_path):
    """The socket ppypi.socket makes (dual-stack IPv6), handed over as systemd
    does, adopted with the drop-in's own --listen: requests over IPv4 and
    IPv6 loopback are logged with their clients' addresses."""
    socket_unit = unit_sections(read("ppypi.socket"))
    endpoint = drop_in_listen(unit_sections(open(DROP_IN).read()))
    listener = socket_as_ppypi_socket_makes_it(socket_unit)
    port = listener.getsockname()[1]
    dual_stack = listener.getsockname()[0] == "::"
    with socket_activated(tmp_path, listener, endpoint) as run:
        wait_for(lambda: _answers(f"http://[::1]:{port}/health?from=ipv6"),
                 what="ppypi on the inherited socket")
        last = "ipv6"
        if dual_stack:
            assert _answers(f"http://127.0.0.1:{port}/health?from=ipv4")
            last = "ipv4"
        text = wait_for(lambda: run.log_with(f"/health?from={last} "), what="the access lines")
    lines = {line.split("/health?from=")[1].split()[0]: line
             for line in text.splitlines() if "/health?from=" in line}
    assert '"::1" - - ' in lines["ipv6"], text
    if dual_stack:
        # An IPv4 client of the dual-stack socket is logged as IPv4.
        assert '"127.0.0.1" - - ' in lines["ipv4"], text


def test_a_socket_of_another_family_than_domain_stops_start_up(tmp_path):
    """The units disagreeing (the dual-stack socket adopted as domain=INET)
    stops start-up with a line naming the fix, instead of serving and
    logging garbage for every client address."""
    listener = socket_as_ppypi_socket_makes_it(unit_sections(read("ppypi.socket")))
    with socket_activated(tmp_path, listener, "systemd:domain=INET:index=0") as run:
        run.proc.wait(timeout=30)
    text = run.log_with("")
    assert run.proc.returncode != 0, text
    assert "the socket systemd passed is INET6: use domain=INET6" in text, text


class SocketActivated:
    """A socket-activated twistd: its process and its log file."""

    def __init__(self, proc, log):
        self.proc = proc
        self.log = log

    def log_with(self, needle):
        """The log so far, if it holds NEEDLE."""
        text = self.log.read_text(errors="replace")
        return text if needle in text else None


@contextlib.contextmanager
def socket_activated(tmp_path, listener, endpoint):
    """twistd ppypi --listen ENDPOINT given LISTENER as systemd gives a
    socket: fd 3, LISTEN_FDS=1, LISTEN_PID of twistd, LISTEN_FDNAMES (227
    and newer). Stopped on the way out."""
    twistd = os.path.join(BIN, "twistd")
    script = (f'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=ppypi.socket exec {shlex.quote(twistd)} '
              f'-n --pidfile= --logfile=- ppypi --root {shlex.quote(str(tmp_path / "root"))} '
              f'--listen {shlex.quote(endpoint)}')
    log_path = tmp_path / "log"
    fd = listener.fileno()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
    try:
        yield SocketActivated(proc, log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=15)
        listener.close()


def _answers(url):
    try:
        return get(url)[0] == 200
    except OSError:
        return False
