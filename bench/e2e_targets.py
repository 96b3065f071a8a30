"""
The servers of the end-to-end benchmark (bench/e2e.py): how each one is
installed, given the corpus, started on 127.0.0.1 and asked for pages.

Each target has: prepare() (install and lay out its data, cached on disk,
no server left running), start() and stop(), index_url (what the clients
are given) and versions(). A target that cannot be prepared or started
raises Skip with the reason.
"""

import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import e2e_corpus as ec  # noqa: E402
import servers  # noqa: E402
from servers import Server, free_port  # noqa: E402

BIN = os.path.dirname(sys.executable)
PY39 = "/root/.pyenv/versions/3.9.18/bin/python"
# private-pypi lets a request in only when its User-Agent names python, curl or wget.
PROBE_UA = "python-requests/2 (ppypi e2e bench)"


class Skip(Exception):
    """The target cannot be installed or started: the message says why."""


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


def run(cmd, timeout=900, env=None, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=env or clean_env(), **kw)
    if out.returncode != 0:
        raise Skip(f"{shlex.join(cmd)} failed ({out.returncode}): "
                   f"{(out.stdout + out.stderr).strip()[-1500:]}")
    return out.stdout


def versions_in(python, names):
    code = ("import importlib.metadata as m, json, sys\nout = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def peer_venv(venvs, name, packages, probe, python=None, reuse=()):
    """
    VENVS/NAME with PACKAGES installed by pip from the package index, made
    when missing (an existing virtualenv in REUSE with PROBE is taken
    instead: the other benchmarks' ones). Raises Skip with why not.
    """
    for candidate in reuse:
        if os.path.exists(os.path.join(candidate, "bin", probe)):
            return candidate
    venv = os.path.join(venvs, name)
    if os.path.exists(os.path.join(venv, "bin", probe)):
        return venv
    python = python or sys.executable
    if not os.path.exists(python):
        raise Skip(f"{python} is missing")
    log(f"{name}: creating {venv} (pip install {' '.join(packages)})")
    os.makedirs(venvs, exist_ok=True)
    run([python, "-m", "venv", "--clear", venv], timeout=300)
    run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", *packages],
        timeout=1200, env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"))
    if not os.path.exists(os.path.join(venv, "bin", probe)):
        raise Skip(f"pip install {' '.join(packages)}: no bin/{probe}")
    return venv


class Target(servers.Target):
    auth = None  # (user, password) for the clients and the probes

    def __init__(self, work, corpus):
        self.work, self.corpus = work, corpus
        self.server = None
        self.command = None

    def log_path(self, tag):
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
        return os.path.join(self.work, "logs", f"{self.name}-{tag}.log")

    def prepare(self):
        pass

    def start(self, tag):
        raise NotImplementedError

    simple_prefix = "/simple/"
    # Where the clients connect: the server's port, or a simulated link's in front of it.
    client_port = None

    @property
    def index_url(self):
        port = self.client_port or self.port
        if self.auth:
            return f"http://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{port}{self.simple_prefix}"
        return f"http://127.0.0.1:{port}{self.simple_prefix}"

    def page_path(self, project):
        return f"{self.simple_prefix}{project}/"

    def get(self, path, headers=None, timeout=30):
        """(status, headers, body as sent): what a client of this target receives."""
        h = {"User-Agent": PROBE_UA}
        if self.auth:
            import base64
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=h)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def wait_ready(self, timeout):
        """Until the download project's page answers 200 (every file indexed)."""
        path = self.page_path(self.corpus.download_project)
        deadline = time.monotonic() + timeout
        while True:
            if not self.server.alive():
                raise Skip(f"{self.name} exited ({self.server.proc.returncode}): "
                           f"{self.server.log_tail()}")
            try:
                status, _, body = self.get(path, timeout=max(2.0, timeout / 10))
                if status == 200 and body.count(b".whl") >= self.corpus.fill_versions:
                    return time.monotonic() - self.server.started
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Skip(f"{self.name}: {path} not complete within {timeout:.0f}s: "
                           f"{self.server.log_tail()}")
            time.sleep(0.05)  # sleep-ok: polling a child process, with a deadline

    def versions(self):
        return {}


class PPyPI(Target):
    name = "ppypi"

    def start(self, tag):
        root = ec.flat_copy(self.corpus, os.path.join(self.work, "serve", f"ppypi-{tag}"))
        port = free_port()
        cmd = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "ppypi", "--root", root,
               "--extra-index-url", "", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        self.command = shlex.join(cmd).replace(root, "ROOT").replace(f":{port}:", ":PORT:")
        self.server = Server(self.name, cmd, port, self.log_path(tag), cwd=self.work,
                             env=clean_env()).start()
        self.wait_ready(300)
        return self.wait_synced(300)

    def wait_synced(self, timeout):
        """Until /health says every repository finished its first sync (all files indexed)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _, body = self.get("/health")
                repos = json.loads(body)["repositories"].values()
                if status == 200 and all(r["last_sync"] for r in repos):
                    return time.monotonic() - self.server.started
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or not self.server.alive():
                raise Skip(f"ppypi: no first sync within {timeout}s: {self.server.log_tail()}")
            time.sleep(0.05)  # sleep-ok: polling a child process, with a deadline

    def versions(self):
        v = versions_in(sys.executable, ["ppypi", "twisted", "klein"])
        try:
            v["ppypi_revision"] = subprocess.run(
                ["git", "-C", PROJECT, "describe", "--always", "--dirty"], capture_output=True,
                text=True, timeout=10).stdout.strip()
        except OSError:
            pass
        return v


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include {mime};
    default_type application/octet-stream;
    types {{ text/plain metadata; }}
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 10000;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""


class Static(Target):
    """
    The bench's pre-rendered PEP 503 tree served by nginx (sendfile on, a
    child with its own prefix and configuration), or by Python's http.server
    where nginx is missing and allowed (--static-server auto: the smoke test on
    a machine without nginx). The name in the results says which.
    """

    def __init__(self, work, corpus, server="nginx"):
        super().__init__(work, corpus)
        self.nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                               else None)
        # "auto": nginx where installed, else Python's http.server.
        self.fallback = server == "http.server" or (server == "auto" and not self.nginx)
        self.name = "static-http.server" if self.fallback else "nginx"
        self.root = None

    def prepare(self):
        if not self.nginx and not self.fallback:
            raise Skip("nginx is not installed (apt-get install -y nginx; or "
                       "--static-server auto to use python -m http.server instead)")
        self.root = ec.static_tree(self.corpus, os.path.join(self.work, "static",
                                                              self.corpus.key), log)

    def start(self, tag):
        port = free_port()
        if self.fallback:
            cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                   "--directory", self.root, str(port)]
        else:
            prefix = os.path.join(self.work, "nginx", tag)
            shutil.rmtree(prefix, ignore_errors=True)
            os.makedirs(os.path.join(prefix, "tmp"))
            mime = "/etc/nginx/mime.types"
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(prefix=prefix, port=port, root=self.root, mime=mime))
            if os.geteuid() == 0:
                # Its workers would run as nobody: give them the files' owner.
                with open(conf) as f:
                    text = f.read()
                with open(conf, "w") as f:
                    f.write("user root;\n" + text)
            cmd = [self.nginx, "-p", prefix, "-c", conf]
        self.command = (shlex.join(cmd).replace(self.root, "STATIC_TREE").replace(str(port), "PORT")
                        .replace(self.work, "WORK"))
        self.server = Server(self.name, cmd, port, self.log_path(tag), cwd=self.work).start()
        return self.wait_ready(60)

    def versions(self):
        if self.fallback:
            import platform
            return {"http.server": platform.python_version()}
        out = subprocess.run([self.nginx, "-v"], capture_output=True, text=True, timeout=10)
        return {"nginx": (out.stderr or out.stdout).strip().split("/")[-1]}


class PyPIServer(Target):
    name = "pypiserver"

    def __init__(self, work, corpus, venvs):
        super().__init__(work, corpus)
        self.venvs = venvs
        self.venv = None

    def prepare(self):
        self.venv = peer_venv(self.venvs, "pypiserver", ["pypiserver[cache]", "watchdog"],
                              "pypi-server", reuse=[os.path.join(HERE, "out", "pypiserver-venv")])

    def start(self, tag):
        root = ec.flat_copy(self.corpus, os.path.join(self.work, "serve", f"pypiserver-{tag}"))
        port = free_port()
        # As bench/run.py runs it: the cached-dir backend its docs give for
        # thousands of packages, nothing from pypi.org.
        cmd = [os.path.join(self.venv, "bin", "pypi-server"), "run", "-p", str(port),
               "-i", "127.0.0.1", "--backend", "cached-dir", "-a", ".", "-P", ".",
               "--disable-fallback", root]
        self.command = (shlex.join(cmd).replace(root, "ROOT").replace(self.venv + "/bin/", "")
                        .replace(f"-p {port}", "-p PORT"))
        self.server = Server(self.name, cmd, port, self.log_path(tag), cwd=self.work,
                             env=clean_env()).start()
        return self.wait_ready(300)

    def versions(self):
        return versions_in(os.path.join(self.venv, "bin", "python"),
                           ["pypiserver", "watchdog", "waitress", "bottle"])


class Devpi(Target):
    name = "devpi"
    simple_prefix = f"/{ec.DEVPI_INDEX}/+simple/"

    def __init__(self, work, corpus, venvs):
        super().__init__(work, corpus)
        self.venvs = venvs
        self.venv = None
        self.serverdir = None

    def exe(self, name):
        return os.path.join(self.venv, "bin", name)

    def prepare(self):
        self.venv = peer_venv(self.venvs, "devpi", ["devpi-server", "devpi-client"],
                              "devpi-import",
                              reuse=[os.path.join(HERE, "out", "proxy-venvs", "devpi")])
        version = versions_in(self.exe("python"), ["devpi-server"]).get("devpi-server", "?")
        self.serverdir = os.path.join(self.work, "devpi", self.corpus.key)
        marker = self.serverdir + ".json"
        describe = dict(self.corpus.describe(), devpi_server=version, layout="devpi-1")
        self.secret = os.path.join(self.work, "devpi", "secret")
        if ec._fresh(self.serverdir, marker, describe):
            log(f"devpi: reusing {self.serverdir}")
            return
        os.makedirs(os.path.dirname(self.serverdir), exist_ok=True)
        if not os.path.exists(self.secret):
            run([self.exe("devpi-gen-secret"), "--secretfile", self.secret])
        export = ec.devpi_export(self.corpus, self.serverdir + "-export", version)
        shutil.rmtree(self.serverdir, ignore_errors=True)
        log(f"devpi: devpi-import of {self.corpus.describe()['files']} files into "
            f"{self.serverdir} (about 80 files/s)")
        run([self.exe("devpi-import"), "--serverdir", self.serverdir, "--no-root-pypi",
             export], timeout=3600)
        shutil.rmtree(export, ignore_errors=True)
        ec._mark(marker, describe)

    def start(self, tag):
        port = free_port()
        cmd = [self.exe("devpi-server"), "--serverdir", self.serverdir, "--host", "127.0.0.1",
               "--port", str(port), "--secretfile", self.secret, "--offline-mode"]
        self.command = shlex.join(cmd).replace(self.venv + "/bin/", "").replace(
            self.serverdir, "SERVERDIR").replace(self.secret, "SECRET").replace(str(port), "PORT")
        self.server = Server(self.name, cmd, port, self.log_path(tag), cwd=self.work,
                             env=clean_env()).start()
        return self.wait_ready(300)

    def versions(self):
        return versions_in(self.exe("python"), ["devpi-server", "devpi-common", "waitress",
                                                "pyramid"])


REDIS_WRAPPER = """#!/bin/sh
# ppypi's e2e bench: private-pypi starts Redis without --bind, which listens
# on every interface; loopback only here.
exec "$(dirname "$0")/redis-server.real" --bind 127.0.0.1 "$@"
"""


class PrivatePyPI(Target):
    name = "private-pypi"
    auth = (ec.PRIVATE_PYPI_REPO, ec.PRIVATE_PYPI_READ)

    def __init__(self, work, corpus, venvs):
        super().__init__(work, corpus)
        self.venvs = venvs
        self.venv = None

    def prepare(self):
        # 0.2.0 only: its redis-server dependency has wheels up to cp39; its
        # Flask 1 needs MarkupSafe < 2.1 (soft_unicode).
        self.venv = peer_venv(self.venvs, "private-pypi", ["private-pypi==0.2.0", "MarkupSafe<2.1"],
                              "private_pypi_server", python=PY39)
        python = os.path.join(self.venv, "bin", "python")
        redis = subprocess.run([python, "-c", "import redis_server; print(redis_server.REDIS_SERVER_PATH)"],
                               capture_output=True, text=True, timeout=60).stdout.strip()
        if not redis or not os.path.exists(redis):
            raise Skip("private-pypi: redis_server's binary not found")
        real = redis + ".real"
        if not os.path.exists(real):
            os.rename(redis, real)
        with open(redis, "w") as f:
            f.write(REDIS_WRAPPER)
        os.chmod(redis, 0o755)
        self.root, self.config, self.admin = ec.private_pypi_root(
            self.corpus, os.path.join(self.work, "private-pypi", self.corpus.key), python, log)

    def start(self, tag):
        port = free_port()
        cmd = [os.path.join(self.venv, "bin", "private_pypi_server"), "--root", self.root,
               "--config", self.config, "--admin_secret", self.admin, "--extra_index_url", "",
               "--host", "127.0.0.1", "--port", str(port)]
        self.command = (shlex.join(cmd).replace(self.venv + "/bin/", "").replace(self.root, "ROOT")
                        .replace(self.config, "CONFIG").replace(self.admin, "ADMIN_SECRET")
                        .replace(f"--port {port}", "--port PORT"))
        # Its dramatiq worker is found on PATH.
        env = clean_env(PATH=os.path.join(self.venv, "bin") + os.pathsep + os.environ["PATH"])
        self.server = Server(self.name, cmd, port, self.log_path(tag), cwd=self.work,
                             env=env).start()
        return self.wait_ready(300)

    def stop(self):
        # It makes itself a process-group leader and starts Redis and a
        # dramatiq worker in its group; SIGTERM skips its atexit clean-up.
        if self.server is not None:
            pid = self.server.pid
            super().stop()
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                pass

    def versions(self):
        return versions_in(os.path.join(self.venv, "bin", "python"),
                           ["private-pypi", "private-pypi-core", "flask", "waitress", "redis-server",
                            "dramatiq"])


ALL = ("ppypi", "nginx", "pypiserver", "devpi", "private-pypi")


def make(name, work, corpus, venvs, static_server="nginx"):
    if name == "ppypi":
        return PPyPI(work, corpus)
    if name in ("nginx", "static"):
        return Static(work, corpus, server=static_server)
    if name == "pypiserver":
        return PyPIServer(work, corpus, venvs)
    if name == "devpi":
        return Devpi(work, corpus, venvs)
    if name == "private-pypi":
        return PrivatePyPI(work, corpus, venvs)
    raise ValueError(f"unknown peer {name!r} (known: {', '.join(ALL)})")
