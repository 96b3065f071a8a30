"""
Starting, watching and stopping the servers under test.

Every server is a child process listening on 127.0.0.1 only. Each one
started is remembered in L{RUNNING} so that L{stop_all} (called from a
C{finally}) never leaves one behind, whatever went wrong.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

RUNNING = []


def free_port():
    """A TCP port free on 127.0.0.1 at the time of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=10.0, headers=None):
    """One GET to 127.0.0.1:port: (status, body). Raises OSError when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def _kib(value):
    return int(value.split()[0])


class Server:
    """
    One server process.

    @ivar started: time.monotonic() just before the process was spawned.
    """

    def __init__(self, name, cmd, port, log_path, env=None, cwd=None):
        self.name = name
        self.cmd = list(cmd)
        self.port = port
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc = None
        self.started = None
        self._log = None
        self.peak_kib = 0  # highest VmHWM seen before any reset

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self._log = open(self.log_path, "ab")
        self._log.write(("\n$ " + " ".join(self.cmd) + "\n").encode())
        self._log.flush()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd)
        RUNNING.append(self)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_status(self, path, status=200, timeout=60.0, interval=0.01):
        """
        Poll GET C{path} until it answers C{status}; return the seconds since
        the process was spawned. Bounded by C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                got, _ = http_get(self.port, path, timeout=max(1.0, timeout / 10))
                if got == status:
                    return time.monotonic() - self.started
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {status} for {path} within {timeout}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(interval)  # sleep-ok: polling a child process, with a deadline

    # -- memory (Linux /proc)

    def rss_kib(self):
        return _kib(_proc_status(self.pid)["VmRSS"])

    def hwm_kib(self):
        value = _kib(_proc_status(self.pid)["VmHWM"])
        self.peak_kib = max(self.peak_kib, value)
        return value

    def reset_hwm(self):
        """
        Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux 4.0+),
        after remembering the peak so far. Returns False where not allowed:
        the caller then measures with the unreset high-water mark.
        """
        self.hwm_kib()
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL after C{timeout}. Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.hwm_kib()
            except (OSError, KeyError):
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self in RUNNING:
            RUNNING.remove(self)


def stop_all():
    """Stop every server still running (from a finally: never raises)."""
    for server in list(RUNNING):
        try:
            server.stop()
        except Exception as e:  # keep stopping the others
            print(f"warning: could not stop {server.name} (pid {server.pid}): {e}")
            try:
                os.kill(server.pid, signal.SIGKILL)
            except OSError:
                pass
            if server in RUNNING:
                RUNNING.remove(server)


def first_sync(server, timeout):
    """Seconds from spawning ppypi until /health says every repository synced once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, body = http_get(server.port, "/health", timeout=30)
            if all(r["last_sync"] for r in json.loads(body)["repositories"].values()):
                return time.monotonic() - server.started
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline or not server.alive():
            raise RuntimeError(f"ppypi: no first sync within {timeout}s:\n{server.log_tail()}")
        time.sleep(0.01)  # sleep-ok: polling a child process, with a deadline


class Target:
    """A server under test: its L{Server} once started, where it listens, stop()."""

    name = "?"
    server = None

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def port(self):
        return self.server.port

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"
