"""
Shared test helpers: corpora of wheels, a live twistd daemon, and clean
environments for real pip/uv/twine.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from .corpus import make_corpus  # noqa: F401 (the tests import it from here)

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)


def pytest_collection_modifyitems(config, items):
    """
    .ci/run, run by someone who is not root on a machine without Chromium,
    sets PPYPI_SKIP_BROWSER to the reason: the browser tests skip with it.
    Anywhere else a missing browser fails those tests (CI installs one).
    """
    reason = os.environ.get("PPYPI_SKIP_BROWSER")
    if reason:
        for item in items:
            if item.path.name == "test_browser.py":
                item.add_marker(pytest.mark.skip(reason=reason))


def client_env(**extra):
    """
    An environment for pip/uv/twine that ignores this machine's own package
    index settings, so that they talk to the server under test only.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "TWINE_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_OFFLINE="0")
    env.update(extra)
    return env


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Poll C{predicate} until it is true or C{timeout} passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # sleep-ok: polling a subprocess with a deadline


class Daemon:
    """A real C{twistd -n ppypi} on a free loopback port."""

    def __init__(self, root, *args, env=None):
        self.root = str(root)
        self.args = list(args)
        self.env = env
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.root, "..", f"twistd-{os.path.basename(self.root)}.log")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def start(self, wait_ready=True):
        os.makedirs(self.root, exist_ok=True)
        self.logfile = open(self.log_path, "ab")
        self._log_start = self.logfile.tell()  # a restart appends to the same log
        cmd = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "ppypi",
               "--root", self.root, "--listen", "tcp:0:interface=127.0.0.1", *self.args]
        env = dict(os.environ if self.env is None else self.env)
        self.proc = subprocess.Popen(cmd, stdout=self.logfile, stderr=subprocess.STDOUT, env=env)
        self.port = int(wait_for(self._port_from_log, what="the daemon to listen").group(1))
        if wait_ready:
            wait_for(self.ready, what="the first sync")
        return self

    def _port_from_log(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"twistd exited with {self.proc.returncode}:\n{self.log()}")
        return re.search(r"Site starting on (\d+)", self.log())

    def log(self):
        """What this run of the daemon logged."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode("utf-8", "replace")

    def log_when(self, *needles, timeout=10):
        """The log, once it holds every needle (access lines come in batches)."""
        return wait_for(lambda: (lambda text: all(n in text for n in needles) and text)(self.log()),
                        timeout=timeout, what=f"the log to show {needles}")

    def health(self):
        try:
            with urllib.request.urlopen(self.url + "health", timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def ready(self):
        return all(r["last_sync"] for r in self.health()["repositories"].values())

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logfile.close()
        self.proc = None


@pytest.fixture
def daemon_factory():
    daemons = []

    def start(root, *args, wait_ready=True, env=None):
        d = Daemon(root, *args, env=env)
        daemons.append(d)
        return d.start(wait_ready)

    yield start
    for d in daemons:
        d.stop()


def get(url, headers=None, method="GET"):
    """One HTTP request without following redirects: (status, headers, body)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
