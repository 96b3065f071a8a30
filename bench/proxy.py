"""
ppypi's caching proxy (type: proxy) against devpi-server's mirror and proxpi,
all three in front of one fake upstream (tests/fake_upstream.py, pypi.org's
simple API on loopback, in this process):

    python bench/proxy.py [--rounds 3] [--cold-rounds 5] [--latency-ms 50] [--duration 10]
                          [--concurrency 16] [--pages 100] [--versions 4]
                          [--out bench/out-proxy] [--venvs bench/out/proxy-venvs]
                          [--no-peers] [--quick]

The upstream holds a 20-project dependency tree (tree-00 needs three
projects, which need three each..., plus a few shared dependencies; every
project has versions 1.0, 1.1 and 2.0, a wheel with real Requires-Dist and an
sdist each, and the dependencies say >=1.0,<2) and --pages projects of
--versions versions (a wheel and an sdist each) for the page loads.

Each server listens on its own 127.0.0.1 port:

  ppypi     twistd -n ppypi, one repository {type: proxy, upstream: FAKE,
            page_ttl: 3600}
  devpi     devpi-server (latest, its own virtualenv VENVS/devpi, with
            devpi-client): devpi-init --no-root-pypi, then an index root/fake
            with type=mirror mirror_url=FAKE mirror_cache_expiry=3600 made
            with devpi-client; for the cached loads it is restarted with
            --offline-mode once warm
  proxpi    proxpi (latest, VENVS/proxpi) under gunicorn as its Docker image
            runs it (--preload, --threads 2, its logger class and access log),
            PROXPI_INDEX_URL=FAKE, PROXPI_INDEX_TTL=3600,
            PROXPI_CACHE_DIR=a fresh folder

A peer that cannot be installed (pip from PyPI) or started is skipped, and
the results say why.

1. The first install of the tree with empty caches: for each of
   --cold-rounds rounds and each server (order rotated every round), a fresh
   server with an empty state, a fresh virtualenv, then
   `pip install --no-cache-dir --index-url URL 'tree-00<2'` timed (wall
   clock, pip's start included), and the same straight from the fake
   upstream. Medians, and what each server asked the upstream. All of it
   twice: the upstream answering at once (loopback), then with every answer
   held --latency-ms before its status line (pages) or its body (files), as
   a distant upstream would (FakeUpstream.stall). The fake's connections have
   TCP_NODELAY (it writes headers and body apart: Nagle's algorithm with the
   client's delayed ACK would add its own ~40 ms to every answer).

2. Cached: each server is warmed (the tree installed through it once, every
   page of the --pages projects fetched and every file on them downloaded,
   so that devpi's offline mode, which lists cached files only, shows the
   same pages), then for --rounds rounds, the servers alternating (order
   rotated), each measured for req/s, p50 and p99 of:
     - /simple/NAME/ with Accept: text/html, rotating over the projects;
     - /simple/NAME/ as pip 26 asks (its Accept, which prefers PEP 691 JSON,
       and Accept-Encoding: gzip, deflate);
     - downloads of the small wheels on those pages (rotating);
   (wrk, from bench/load.py's machinery; without wrk, bench/load.py's Python
   client for the plain page load and the downloads and no pip-like load),
   and the time of an install of the tree through the warm server (pip
   --no-cache-dir, fresh virtualenv). The upstream's request count during the
   loads says whether they were served from the cache.

The machine may be shared: before each install and load the run waits
(--quiet-wait) for other processes to use < 10% of the CPUs, and records the
share of the CPUs they took meanwhile (a dagger in the tables when > 10%).

Writes OUT/results.md and OUT/results.json (versions, commands, every round,
medians, ratios within the run, notes on what did not work). --quick: no
peers, a tiny corpus, 1-second loads, one round of each (the test suite runs
it, offline).
"""

import argparse
import gzip
import hashlib
import html.parser
import http.client
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from urllib.parse import urljoin, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path.insert(0, PROJECT)
sys.path.insert(0, HERE)

import load  # noqa: E402
import servers  # noqa: E402
from servers import Server, free_port, http_get, stop_all  # noqa: E402

from tests.fake_upstream import FakeUpstream  # noqa: E402

BIN = os.path.dirname(sys.executable)
CLK_TCK = os.sysconf("SC_CLK_TCK")
TREE = 20
TREE_VERSIONS = ("1.0", "1.1", "2.0")
TREE_REQUIREMENT = "tree-00<2"
TTL = 3600          # every proxy's page lifetime: no revalidation during the run
# What pip 26 sends for an index page (pip/_internal/index/collector.py).
PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
              "text/html; q=0.01")
PIP_HEADERS = {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip, deflate"}
HTML_HEADERS = {"Accept": "text/html"}
PEERS = ("devpi", "proxpi")
LOADS = ("simple_html", "simple_pip", "download")
LOAD_TITLES = {"simple_html": "/simple/NAME/ text/html",
               "simple_pip": "/simple/NAME/ as pip asks",
               "download": "small downloads"}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def clean_env(**extra):
    """This machine's environment less its package-index settings (pip and uv)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


# -- the upstream's content ---------------------------------------------------

def tree_dependencies(n=TREE):
    """{i: [j, ...]}: a three-way tree over 0..n-1 and a few shared leaves (i < j always)."""
    deps = {i: [] for i in range(n)}
    for i in range(1, n):
        deps[(i - 1) // 3].append(i)
    for i in (4, 7, 10, 13):
        j = n - 1 - i % 3
        if i < j and j not in deps[i]:
            deps[i].append(j)
    return deps


def payload(rng, size):
    """Comment lines (the module stays valid Python), about C{size} bytes."""
    lines = max(0, size // 68)
    return b"".join(b"# " + rng.randbytes(32).hex().encode() + b"\n" for _ in range(lines))


def fill(fake, pages, versions):
    """The tree and the page projects; returns (tree names, page names)."""
    rng = random.Random(15)
    deps = tree_dependencies()
    tree = [f"tree-{i:02d}" for i in range(TREE)]
    for i, name in enumerate(tree):
        size = (1_000, 10_000, 100_000)[i % 3]
        requires = [f"{tree[j]}>=1.0,<2" for j in deps[i]]
        for version in TREE_VERSIONS:
            body = payload(rng, size)
            fake.add(name, version, requires_python=">=3.8", requires_dist=requires,
                     payload=body)
            fake.add(name, version, kind="sdist", requires_python=">=3.8",
                     requires_dist=requires, payload=body)
    names = [f"page-{i:03d}" for i in range(pages)]
    for name in names:
        for v in range(versions):
            fake.add(name, f"1.{v}", requires_python=">=3.8", payload=payload(rng, 1_000))
            fake.add(name, f"1.{v}", kind="sdist", requires_python=">=3.8")
    return tree, names


# -- CPU accounting (a server may be several processes: gunicorn's workers) ---

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(pid):
    """C{pid} and its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat(entry)[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return tree


def _cpu(pids):
    total = 0
    for pid in pids:
        try:
            stat = _stat(pid)
            total += int(stat[11]) + int(stat[12])
        except (OSError, IndexError, ValueError):
            pass  # gone meanwhile
    return total / CLK_TCK


def _machine_busy():
    with open("/proc/stat") as f:
        return sum(int(x) for x in f.readline().split()[1:4]) / CLK_TCK


def other_cpu(pids, action):
    """Run C{action}; its result and the shares of the CPUs the server and other work took."""
    t = os.times()
    before = (_machine_busy(), _cpu(pids), t.user + t.system + t.children_user + t.children_system)
    started = time.monotonic()
    result = action()
    elapsed = time.monotonic() - started
    t = os.times()
    after = (_machine_busy(), _cpu(pids), t.user + t.system + t.children_user + t.children_system)
    d = [a - b for a, b in zip(after, before)]
    capacity = elapsed * len(os.sched_getaffinity(0))
    return result, {"server_cpu_pct": round(100 * d[1] / capacity, 1),
                    "other_cpu_pct": round(100 * max(0.0, d[0] - d[1] - d[2]) / capacity, 1)}


def wait_quiet(pids, max_seconds, threshold=10.0):
    """Wait (at most C{max_seconds}) until other work and the server each use < C{threshold}%."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        m0, s0, t0 = _machine_busy(), _cpu(pids), time.monotonic()
        time.sleep(1)  # sleep-ok: sampling the CPU counters
        m1, s1, t1 = _machine_busy(), _cpu(pids), time.monotonic()
        capacity = (t1 - t0) * len(os.sched_getaffinity(0))
        other, own = 100 * max(0.0, (m1 - m0) - (s1 - s0)) / capacity, 100 * (s1 - s0) / capacity
        if other < threshold and own < threshold:
            return
    log(f"  (still busy after {max_seconds:.0f}s of waiting: measuring anyway)")


# -- loads ----------------------------------------------------------------------

def measure_with_headers(port, paths, duration, concurrency, headers):
    """L{load.measure} with request headers (wrk only: bench/load.py's client sends none)."""
    paths = list(paths)[:load.MAX_WRK_PATHS]
    seconds = max(1, int(round(duration)))
    cmd = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout=30s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    fd, script = tempfile.mkstemp(suffix=".lua", prefix="bench-rotate-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(load._lua_rotation(paths))
        cmd += ["-s", script, f"http://{load.HOST}:{port}{paths[0]}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
    finally:
        os.unlink(script)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {(out.stderr + out.stdout)[-500:]}")
    result = load.parse_wrk(out.stdout)
    result["command"] = " ".join(c if c != script else "ROTATE.lua" for c in cmd)
    return result


def run_load(key, port, paths, args):
    if key == "download":
        return load.measure(port, paths, args.duration, args.concurrency)
    if load.have_wrk():
        headers = PIP_HEADERS if key == "simple_pip" else HTML_HEADERS
        return measure_with_headers(port, paths, args.duration, args.concurrency, headers)
    if key == "simple_html":
        return load.measure(port, paths, args.duration, args.concurrency)  # no Accept header
    return None


# -- pip --------------------------------------------------------------------------

def fresh_venv(path):
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True,
                   timeout=120, capture_output=True)
    return os.path.join(path, "bin", "python")


def pip_install(work, index_url, tag):
    """Seconds of `pip install --no-cache-dir 'tree-00<2'` into a fresh virtualenv."""
    venv = os.path.join(work, f"venv-{tag}")
    python = fresh_venv(venv)
    cmd = [sys.executable, "-m", "pip", "--python", python, "install", "--no-cache-dir",
           "--disable-pip-version-check", "--no-input", "--index-url", index_url,
           TREE_REQUIREMENT]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=600)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"pip install through {index_url} failed:\n"
                           f"{(out.stdout + out.stderr)[-3000:]}")
    # In the venv's folder: sys.path[0] is the current one, and this one holds ppypi.egg-info.
    got = subprocess.run([python, "-c", "import importlib.metadata as m; "
                          "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"],
                         capture_output=True, text=True, timeout=60, cwd=venv).stdout.split()
    shutil.rmtree(venv, ignore_errors=True)
    got = sorted(re.sub(r"[-_.]+", "-", n).lower() for n in got)
    if got != [f"tree-{i:02d}" for i in range(TREE)]:
        raise RuntimeError(f"pip through {index_url} installed {got}, not the {TREE}-project tree")
    return seconds


def upstream_counts(fake):
    """What the upstream was asked since its last reset(), by kind."""
    return {"pages": fake.count(r"^/simple/.", method="GET", status=200),
            "redirects": fake.count(r"^/simple/", status=301),
            "metadata": fake.count(r"\.metadata$", method="GET"),
            "files": fake.count(r"^/files/.*(\.whl|\.tar\.gz)$", method="GET"),
            "head": fake.count(method="HEAD"), "all": fake.count()}


# -- links on a page ----------------------------------------------------------------

class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def file_paths(port, page_path):
    """The paths of the files a page links to (on this server), from its HTML."""
    status, body = http_get(port, page_path, timeout=60, headers=HTML_HEADERS)
    if status != 200:
        raise RuntimeError(f"GET {page_path}: {status}")
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    base = f"http://127.0.0.1:{port}{page_path}"
    paths = []
    for href in parser.hrefs:
        url = urlsplit(urljoin(base, href))
        if url.port == port and re.search(r"(\.whl|\.tar\.gz)$", url.path):
            paths.append(url.path)
    return paths


def page_shape(port, path):
    """What a page answers to a plain GET and to pip's headers: sizes and formats."""
    shape = {}
    for key, headers in (("plain", {}), ("html", HTML_HEADERS), ("pip", PIP_HEADERS)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            text = gzip.decompress(body) if resp.getheader("Content-Encoding") == "gzip" else body
            shape[key] = {"status": resp.status, "bytes": len(body),
                          "core_metadata": b"core-metadata" in text,
                          "content_type": resp.getheader("Content-Type"),
                          "content_encoding": resp.getheader("Content-Encoding"),
                          "connection": resp.getheader("Connection")}
        finally:
            conn.close()
    return shape


# -- the servers ---------------------------------------------------------------------

class Target(servers.Target):
    """A server under test; start() gives it an empty state unless told otherwise."""

    def pids(self):
        return process_tree(self.server.pid)



class PPyPI(Target):
    name = "ppypi"

    def __init__(self, work, upstream):
        self.work, self.upstream = work, upstream
        self.config_text = (f"repositories:\n  pypi: {{type: proxy, upstream: '{upstream}', "
                            f"page_ttl: {TTL}, read: anyone}}\n")

    def command(self, root, port, config):
        return [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "ppypi", "--root", root,
                "--listen", f"tcp:{port}:interface=127.0.0.1", "--extra-index-url", "",
                "--config", config]

    def start(self, tag):
        root = os.path.join(self.work, f"ppypi-{tag}")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        config = os.path.join(self.work, "ppypi.yaml")
        with open(config, "w") as f:
            f.write(self.config_text)
        port = free_port()
        self.server = Server(self.name, self.command(root, port, config), port,
                             os.path.join(self.work, f"ppypi-{tag}.log")).start()
        self.server.wait_status("/simple/", 200, timeout=120)
        return self

    @property
    def index_url(self):
        return f"{self.base}/simple/"

    def page_path(self, project):
        return f"/simple/{project}/"


class Devpi(Target):
    name = "devpi"

    def __init__(self, work, venv, upstream):
        self.work, self.venv, self.upstream = work, venv, upstream
        self.template = None
        self.offline = False

    def exe(self, name):
        return os.path.join(self.venv, "bin", name)

    def _run(self, *cmd):
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300,
                             env=clean_env())
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{(out.stdout + out.stderr)[-2000:]}")
        return out.stdout

    def command(self, serverdir, port, offline):
        return [self.exe("devpi-server"), "--serverdir", serverdir, "--host", "127.0.0.1",
                "--port", str(port), "--secretfile", os.path.join(self.work, "devpi-secret")] + (
                    ["--offline-mode"] if offline else [])

    def _serve(self, serverdir, tag, offline=False):
        port = free_port()
        self.server = Server(self.name, self.command(serverdir, port, offline), port,
                             os.path.join(self.work, f"devpi-{tag}.log"),
                             env=clean_env()).start()
        self.server.wait_status("/+api", 200, timeout=180)
        self.offline = offline

    def make_template(self):
        """A server dir with the mirror index made, nothing fetched: each fresh start copies it."""
        self.template = os.path.join(self.work, "devpi-template")
        shutil.rmtree(self.template, ignore_errors=True)
        secret = os.path.join(self.work, "devpi-secret")
        if not os.path.exists(secret):
            self._run(self.exe("devpi-gen-secret"), "--secretfile", secret)
        self._run(self.exe("devpi-init"), "--serverdir", self.template, "--no-root-pypi")
        self._serve(self.template, "template")
        client = os.path.join(self.work, "devpi-client")
        try:
            self._run(self.exe("devpi"), "use", "--clientdir", client, self.base + "/")
            self._run(self.exe("devpi"), "login", "--clientdir", client, "root", "--password", "")
            self.index_config = self._run(
                self.exe("devpi"), "index", "--clientdir", client, "-c", "root/fake",
                "type=mirror", f"mirror_url={self.upstream}",
                f"mirror_cache_expiry={TTL}").strip()
        finally:
            self.stop()

    def wait_synced(self, timeout=120):
        """Until devpi has processed every event (a fetched file is listed offline after that)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = http_get(self.port, "/+status", timeout=30,
                                    headers={"Accept": "application/json"})
            if status == 200:
                result = json.loads(body)["result"]
                if result.get("serial") == result.get("event-serial"):
                    return
            time.sleep(0.2)  # sleep-ok: polling a child process, with a deadline
        raise RuntimeError(f"devpi: events not processed within {timeout}s")

    def start(self, tag, offline=False, keep=False):
        serverdir = os.path.join(self.work, f"devpi-{tag}")
        if not keep:
            shutil.rmtree(serverdir, ignore_errors=True)
            shutil.copytree(self.template, serverdir)
        self._serve(serverdir, tag + ("-offline" if offline else ""), offline)
        return self

    @property
    def index_url(self):
        return f"{self.base}/root/fake/+simple/"

    def page_path(self, project):
        return f"/root/fake/+simple/{project}/"


class Proxpi(Target):
    name = "proxpi"

    def __init__(self, work, venv, upstream):
        self.work, self.venv, self.upstream = work, venv, upstream

    def command(self, port):
        # As its Docker image runs it (Dockerfile's ENTRYPOINT and CMD).
        return [os.path.join(self.venv, "bin", "gunicorn"), "--preload",
                "--access-logfile", "-",
                "--access-logformat", '%(h)s "%(r)s" %(s)s %(b)s %(M)dms',
                "--logger-class", "proxpi.server._GunicornLogger", "proxpi.server:app",
                "--bind", f"127.0.0.1:{port}", "--threads", "2", "--no-control-socket"]

    def environment(self, cache_dir):
        return {"PROXPI_INDEX_URL": self.upstream, "PROXPI_INDEX_TTL": str(TTL),
                "PROXPI_CACHE_DIR": cache_dir}

    def start(self, tag):
        cache_dir = os.path.join(self.work, f"proxpi-{tag}")
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
        port = free_port()
        self.server = Server(self.name, self.command(port), port,
                             os.path.join(self.work, f"proxpi-{tag}.log"),
                             env=clean_env(**self.environment(cache_dir)), cwd=self.work).start()
        self.server.wait_status("/health", 200, timeout=120)
        return self

    @property
    def index_url(self):
        return f"{self.base}/index/"

    def page_path(self, project):
        return f"/index/{project}/"


# -- the peers' virtualenvs ---------------------------------------------------------

PEER_PACKAGES = {"devpi": ["devpi-server", "devpi-client"], "proxpi": ["proxpi", "gunicorn"]}
PEER_VERSIONS = {"devpi": ["devpi-server", "devpi-common", "devpi-client", "waitress", "pyramid"],
                 "proxpi": ["proxpi", "gunicorn", "flask", "werkzeug", "requests"]}
PEER_PROBE = {"devpi": "devpi-server", "proxpi": "gunicorn"}


def peer_venv(venvs, peer):
    """VENVS/PEER with the peer installed (pip from the package index); raises with why not."""
    venv = os.path.join(venvs, peer)
    if not os.path.exists(os.path.join(venv, "bin", PEER_PROBE[peer])):
        log(f"{peer}: creating {venv} (pip install {' '.join(PEER_PACKAGES[peer])})")
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True, timeout=300,
                       capture_output=True)
        out = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                              *PEER_PACKAGES[peer]], capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(PEER_PACKAGES[peer])} failed: "
                               f"{(out.stdout + out.stderr).strip()[-1500:]}")
    return venv


def versions_in(python, names):
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def own_versions():
    versions = versions_in(sys.executable, ["ppypi", "twisted", "treq", "pip"])
    try:
        versions["ppypi_revision"] = subprocess.run(
            ["git", "-C", PROJECT, "describe", "--always", "--dirty"], capture_output=True,
            text=True, timeout=10).stdout.strip() or "?"
    except OSError:
        versions["ppypi_revision"] = "?"
    try:
        diff = subprocess.run(["git", "-C", PROJECT, "diff", "HEAD", "--", "ppypi", "twisted"],
                              capture_output=True, timeout=30).stdout
        versions["ppypi_uncommitted_diff_sha256"] = (
            hashlib.sha256(diff).hexdigest()[:12] if diff else None)
    except OSError:
        versions["ppypi_uncommitted_diff_sha256"] = "?"
    if load.have_wrk():
        v = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        text = (v.stdout or v.stderr).strip()
        versions["wrk"] = text.splitlines()[0].split(" [")[0] if text else "wrk"
    return versions


def machine():
    cpu = load.cpu_model()
    import platform
    return {"cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "kernel": platform.release(), "python": platform.python_version()}


# -- the phases ------------------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def conditions(args):
    """The upstream's added latency for each set of first installs: {label: ms}."""
    out = {"loopback": 0}
    if args.latency_ms:
        out[f"+{args.latency_ms:g} ms"] = args.latency_ms
    return out


def cold_installs(fake, targets, args, work, results):
    """The tree installed through a server with an empty state, and straight from upstream."""
    names = ["upstream"] + list(targets)
    results["cold_install"] = {}
    for label, ms in conditions(args).items():
        cold = results["cold_install"][label] = {
            n: {"rounds_s": [], "upstream_requests": [], "other_cpu_pct": []} for n in names}
        fake.release()
        if ms:
            # Every page held before its status line, every file after its headers.
            fake.stall(seconds=ms / 1000, first=0)
        for r in range(args.cold_rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                entry = cold[name]
                if "error" in entry:
                    continue
                target = targets.get(name)
                try:
                    if target is not None:
                        target.start(f"cold{r}")
                        url = target.index_url
                    else:
                        url = fake.index_url
                    pids = target.pids() if target is not None else set()
                    if args.quiet_wait:
                        wait_quiet(pids, args.quiet_wait)
                    fake.reset()
                    seconds, cpu = other_cpu(pids, lambda: pip_install(work, url, f"cold-{name}"))
                    entry["rounds_s"].append(round(seconds, 3))
                    entry["upstream_requests"].append(upstream_counts(fake))
                    entry["other_cpu_pct"].append(cpu["other_cpu_pct"])
                    log(f"cold install ({label}), round {r + 1}, {name}: {seconds:.2f}s "
                        f"(other processes {cpu['other_cpu_pct']}% of the CPUs; upstream: "
                        f"{entry['upstream_requests'][-1]})")
                except (Exception, subprocess.TimeoutExpired) as e:
                    traceback.print_exc()
                    if target is not None and target.server is not None:
                        print(target.server.log_tail(20))
                    entry["error"] = str(e)[-2000:]
                    results["errors"].append(f"cold install ({label}) through {name}: "
                                             f"{str(e)[-500:]}")
                finally:
                    if target is not None:
                        target.stop()
        for entry in cold.values():
            entry["median_s"] = median(entry["rounds_s"])
    fake.release()


def warm(target, pages, work):
    """Install the tree through C{target}, fetch every page project and all its files."""
    started = time.perf_counter()
    pip_install(work, target.index_url, f"warm-{target.name}")
    files = 0
    for project in pages:
        for path in file_paths(target.port, target.page_path(project)):
            status, _ = http_get(target.port, path, timeout=120)
            if status != 200:
                raise RuntimeError(f"{target.name}: GET {path} answered {status}")
            files += 1
        # What pip's Accept gets too: a proxy may keep each format apart.
        status, _ = http_get(target.port, target.page_path(project), timeout=60,
                             headers=PIP_HEADERS)
        if status != 200:
            raise RuntimeError(f"{target.name}: GET {target.page_path(project)} as pip: {status}")
    return {"seconds": round(time.perf_counter() - started, 2), "files_fetched": files}


def cached_loads(fake, targets, pages, args, work, results):
    cached = results["cached"] = {}
    ready = {}
    for name, target in targets.items():
        entry = cached[name] = {"rounds": []}
        try:
            target.start("warm")
            entry["warming"] = warm(target, pages, work)
            links = {p: file_paths(target.port, target.page_path(p)) for p in pages}
            if isinstance(target, Devpi):
                target.wait_synced()
                target.stop()
                target.start("warm", offline=True, keep=True)
                entry["offline_mode"] = True
                online, links = links, {p: file_paths(target.port, target.page_path(p))
                                        for p in pages}
                missing = sorted(os.path.basename(f) for p in pages
                                 for f in set(online[p]) - set(links[p]))
                if missing:
                    entry["missing_offline"] = missing
            entry["page_shape"] = page_shape(target.port, target.page_path(pages[0]))
            entry["files_per_page"] = sorted({len(v) for v in links.values()})
            paths = {"pages": [target.page_path(p) for p in pages],
                     "files": [f for v in links.values() for f in v if f.endswith(".whl")]}
            for sample, headers in ((paths["pages"][0], HTML_HEADERS), (paths["files"][0], {})):
                status, _ = http_get(target.port, sample, timeout=60, headers=headers)
                if status != 200:
                    raise RuntimeError(f"GET {sample}: {status}")
            ready[name] = paths
            log(f"{name}: warm ({entry['warming']}), files per page {entry['files_per_page']}")
        except (Exception, subprocess.TimeoutExpired) as e:
            traceback.print_exc()
            entry["error"] = str(e)[-2000:]
            results["errors"].append(f"warming {name}: {str(e)[-500:]}")
            target.stop()
    names = list(ready)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)] if names else []
        for name in order:
            target, paths, entry = targets[name], ready[name], cached[name]
            one = {"round": r + 1}
            try:
                pids = target.pids()
                fake.reset()
                for key in LOADS:
                    urls = paths["files"] if key == "download" else paths["pages"]
                    if args.quiet_wait:
                        wait_quiet(pids, args.quiet_wait)
                    result, cpu = other_cpu(pids, lambda: run_load(key, target.port, urls, args))
                    if result is None:
                        continue
                    result.update(cpu)
                    one[key] = result
                    log(f"round {r + 1}, {name} {key}: {result['rps']:,.0f} req/s, "
                        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, errors "
                        f"{result['errors']}, non-2xx {result['non_2xx']}; CPU: server "
                        f"{cpu['server_cpu_pct']}%, other {cpu['other_cpu_pct']}%")
                one["upstream_requests_during_loads"] = fake.count()
                one["warm_install_s"] = round(pip_install(work, target.index_url,
                                                          f"warm-{name}"), 3)
                log(f"round {r + 1}, {name}: warm install {one['warm_install_s']:.2f}s")
            except (Exception, subprocess.TimeoutExpired) as e:
                traceback.print_exc()
                one["error"] = str(e)[-1000:]
                results["errors"].append(f"round {r + 1}, {name}: {str(e)[-500:]}")
            entry["rounds"].append(one)
    for name, entry in cached.items():
        rounds = entry["rounds"]
        entry["median"] = {
            key: {"rps": median([x[key]["rps"] for x in rounds if key in x]),
                  "p50_ms": median([x[key]["p50_ms"] for x in rounds if key in x]),
                  "p99_ms": median([x[key]["p99_ms"] for x in rounds if key in x]),
                  "other_cpu_pct": median([x[key]["other_cpu_pct"] for x in rounds if key in x]),
                  "server_cpu_pct": median([x[key]["server_cpu_pct"] for x in rounds
                                            if key in x])}
            for key in LOADS if any(key in x for x in rounds)}
        entry["median"]["warm_install_s"] = median([x.get("warm_install_s") for x in rounds])
    for target in targets.values():
        target.stop()


def ratios(results):
    out = {"cold_install_vs_upstream": {}, "ppypi_vs": {}}
    for label, cold in results.get("cold_install", {}).items():
        base = cold.get("upstream", {}).get("median_s")
        out["cold_install_vs_upstream"][label] = {
            name: round(e["median_s"] / base, 3) for name, e in cold.items()
            if base and e.get("median_s")}
    cached = results.get("cached", {})
    ours = cached.get("ppypi", {}).get("median", {})
    for peer in PEERS:
        theirs = cached.get(peer, {}).get("median", {})
        r = {}
        for key in LOADS:
            a, b = ours.get(key, {}).get("rps"), theirs.get(key, {}).get("rps")
            if a and b:
                r[f"{key}_rps"] = round(a / b, 2)
        a, b = ours.get("warm_install_s"), theirs.get("warm_install_s")
        if a and b:
            r["warm_install_time"] = round(a / b, 3)
        for label, cold in results.get("cold_install", {}).items():
            a, b = cold.get("ppypi", {}).get("median_s"), cold.get(peer, {}).get("median_s")
            if a and b:
                r[f"cold_install_time ({label})"] = round(a / b, 3)
        if r:
            out["ppypi_vs"][peer] = r
    return out


def notes(results):
    """What did not work, or is not like for like, as found in this run's figures."""
    found = []
    for name, entry in results.get("cached", {}).items():
        for one in entry.get("rounds", []):
            for key in LOADS:
                r = one.get(key)
                if r and (r.get("errors") or r.get("non_2xx")):
                    found.append(f"{name}, round {one['round']}, {key}: {r.get('errors')} socket "
                                 f"errors, {r.get('non_2xx')} answers not 2xx/3xx "
                                 f"({r.get('socket_errors', '')})")
            if one.get("upstream_requests_during_loads"):
                found.append(f"{name}, round {one['round']}: the upstream got "
                             f"{one['upstream_requests_during_loads']} requests during the "
                             "loads (not all served from the cache)")
        shape = entry.get("page_shape", {})
        closed = [key for key, x in shape.items() if (x.get("connection") or "").lower() == "close"]
        if closed:
            found.append(f"{name}: its page answers ({', '.join(closed)} GET) close the "
                         "connection (Connection: close), so wrk (and pip) connect anew for "
                         "every page")
        if shape.get("plain", {}).get("status", 200) != 200:
            found.append(f"{name}: a GET of a project page without an Accept header answers "
                         f"{shape['plain']['status']} (RFC 9110: no Accept means anything is "
                         "acceptable); the page loads send Accept: text/html or pip's")
        if shape.get("pip", {}).get("status") == 200 and not shape["pip"]["core_metadata"]:
            found.append(f"{name}: its pages offer no core metadata (PEP 658/714), so pip "
                         "downloads every candidate wheel whole to read its dependencies: on a "
                         "cold cache that is one upstream round trip per project fewer than "
                         "metadata then wheel, and with large wheels many more bytes")
        if entry.get("missing_offline"):
            found.append(f"{name}: once restarted in --offline-mode, its pages no longer list "
                         f"{len(entry['missing_offline'])} file(s) fetched while online: "
                         f"{', '.join(entry['missing_offline'][:5])}")
        counts = entry.get("files_per_page")
        if counts and len(counts) > 1:
            found.append(f"{name}: pages list different numbers of files: {counts}")
    for label, cold in results.get("cold_install", {}).items():
        straight = (cold.get("upstream", {}).get("upstream_requests") or [{}])[0].get("all")
        for name, e in cold.items():
            req = (e.get("upstream_requests") or [{}])[0]
            if name != "upstream" and straight and req.get("all", 0) > straight:
                extra = ", ".join(f"{req[k]} {what}" for k, what in (
                    ("redirects", "301s followed (it asks for /simple/NAME without the slash)"),
                    ("head", "HEADs")) if req.get(k))
                found.append(f"{name}, first install ({label}): {req['all']} upstream requests "
                             f"where pip straight makes {straight}"
                             + (f": {extra}" if extra else ""))
        break  # the same requests under every condition
    per_page = {tuple(e["files_per_page"]) for e in results.get("cached", {}).values()
                if e.get("files_per_page")}
    if len(per_page) > 1:
        found.append(f"the servers' pages list different numbers of files: {sorted(per_page)}")
    return found


# -- the report -----------------------------------------------------------------------

def _n(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


def markdown(res):
    v = res["versions"]
    lines = [f"# ppypi's proxy against devpi-server and proxpi ({res['date']})", ""]
    peers = ", ".join(f"{p} {v[p]['main']}" for p in PEERS if p in v)
    diff = v["own"].get("ppypi_uncommitted_diff_sha256")
    lines.append(f"ppypi {v['own'].get('ppypi_revision')}"
                 + (f" (uncommitted changes to ppypi/: diff sha256 {diff})" if diff else "")
                 + f", Twisted {v['own'].get('twisted')}"
                 + (f"; {peers}" if peers else "; no peers (--quick or --no-peers)")
                 + f"; pip {v['own'].get('pip')} installs, {v['own'].get('wrk', 'bench/load.py')} "
                 f"loads. {res['machine']['cpus_usable']} CPUs ({res['machine']['cpu_model']}), "
                 f"Python {res['machine']['python']}. Everything on 127.0.0.1, the fake upstream "
                 "(tests/fake_upstream.py) in the bench's process.")
    for p in PEERS:
        if p in v:
            lines.append(f"- {p}: " + ", ".join(f"{k} {x}" for k, x in v[p]["all"].items()))
    c = res["corpus"]
    lines += ["", f"Upstream: a {TREE}-project tree (`pip install '{TREE_REQUIREMENT}'`, "
              f"{len(TREE_VERSIONS)} versions each, a wheel and an sdist per version, wheels of "
              f"about 1, 10 and 100 kB) and {c['pages']} projects x {c['versions']} versions "
              "(a wheel and an sdist each) for the page and download loads.", ""]

    colds = res.get("cold_install", {})
    if colds:
        labels = list(colds)
        lines += [f"## First install of the tree, empty caches (median of "
                  f"{res['settings']['cold_rounds']} rounds, wall clock, pip's start included)",
                  "", "A fresh server for every round. Loopback: the upstream answers at once. "
                  + (f"{labels[1]}: every upstream answer is held that long before its status "
                     "line (pages) or its body (files), as a distant upstream would. "
                     if len(labels) > 1 else "")
                  + "Upstream requests: the GETs of pages / metadata / files that the server "
                  "(or pip, straight) sent the upstream in the first round, and its other "
                  "requests (301 redirects followed, HEADs).", "",
                  "| through | " + " | ".join(f"{x}: median (rounds) | vs straight"
                                            for x in labels) + " | upstream requests |",
                  "|---|" + "---|---|" * len(labels) + "---|"]
        names = list(colds[labels[0]])
        for name in names:
            cells = []
            for label in labels:
                e = colds[label][name]
                vs = res["ratios"]["cold_install_vs_upstream"][label].get(name)
                if not e["rounds_s"]:
                    cells += [f"failed: {e.get('error', '?')[:100]!r}", "-"]
                    continue
                rounds = ", ".join(f"{x:.2f}" + (" †" if o > 10 else "")
                                   for x, o in zip(e["rounds_s"], e["other_cpu_pct"]))
                cells += [f"{_n(e['median_s'], '{:.2f} s')} ({rounds})",
                          _n(vs, "{:.2f}x")]
            reqs = [colds[x][name]["upstream_requests"] for x in labels]
            req = next((q[0] for q in reqs if q), {})
            extra = ", ".join(f"{req[k]} {k}" for k in ("redirects", "head") if req.get(k))
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {req.get('pages', '-')} / "
                         f"{req.get('metadata', '-')} / {req.get('files', '-')}"
                         + (f" (+ {extra})" if extra else "") + " |")
        lines.append("")

    cached = res.get("cached", {})
    if cached:
        s = res["settings"]
        lines += [f"## Cached (median of {s['rounds']} rounds, servers alternating; "
                  f"{s['duration']} s, {s['concurrency']} connections each)", "",
                  "| server | " + " | ".join(f"{LOAD_TITLES[k]} req/s (p50 / p99 ms)"
                                          for k in LOADS)
                  + " | install, warm | upstream requests during loads |",
                  "|---|" + "---|" * (len(LOADS) + 2)]
        for name, e in cached.items():
            if "error" in e:
                lines.append(f"| {name} | failed: {e['error'][:150]!r} |" + " |" * (len(LOADS) + 1))
                continue
            m = e["median"]
            cells = []
            for k in LOADS:
                x = m.get(k)
                cells.append("-" if not x else
                             f"{_n(x['rps'])} ({_n(x['p50_ms'], '{:.1f}')} / "
                             f"{_n(x['p99_ms'], '{:.1f}')})"
                             + (" †" if (x.get("other_cpu_pct") or 0) > 10 else ""))
            up = sum(one.get("upstream_requests_during_loads", 0) for one in e["rounds"])
            name_cell = name + (" (--offline-mode)" if e.get("offline_mode") else "")
            lines.append(f"| {name_cell} | " + " | ".join(cells)
                         + f" | {_n(m.get('warm_install_s'), '{:.2f} s')} | {up} |")
        lines.append("")
        rows = res["ratios"]["ppypi_vs"]
        if rows:
            lines += ["Ratios within this run (ppypi ÷ peer: above 1 means ppypi serves more "
                      "requests per second, or takes longer for the install times):", "",
                      "| | " + " | ".join(LOAD_TITLES[k] for k in LOADS)
                      + " | install, warm (time) | "
                      + " | ".join(f"install, cold, {x} (time)" for x in colds) + " |",
                      "|---|" + "---|" * (len(LOADS) + 1 + len(colds))]
            for peer, r in rows.items():
                lines.append(f"| ppypi ÷ {peer} | " + " | ".join(
                    _n(r.get(f"{k}_rps"), "{:.2f}") for k in LOADS)
                    + f" | {_n(r.get('warm_install_time'), '{:.2f}')} | " + " | ".join(
                        _n(r.get(f"cold_install_time ({x})"), "{:.2f}") for x in colds) + " |")
            lines.append("")
        lines += ["What one page answers (first page project):", "",
                  "| server | plain GET | Accept: text/html | as pip asks |", "|---|---|---|---|"]
        for name, e in cached.items():
            shape = e.get("page_shape")
            if not shape:
                continue
            cells = []
            for key in ("plain", "html", "pip"):
                x = shape[key]
                kind = (x["content_type"] or "").split(";")[0]
                cells.append(f"{x['status']}, {x['bytes']} B, {kind}"
                             + (f", {x['content_encoding']}" if x["content_encoding"] else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")

    if "†" in "\n".join(lines):
        lines += ["† other processes took more than 10% of the CPUs during that install or "
                  "load (the machine is shared; before each one the run waited up to "
                  f"{res['settings']['quiet_wait']:g} s for them to quiet down).", ""]
    lines += ["## How each was run", ""]
    for name, how in res["configuration"].items():
        lines.append(f"- **{name}**: {how}")
    if res["notes"] or res["errors"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in res["notes"]]
        lines += [f"- error: {e}" for e in res["errors"]]
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=None, help="cached-load rounds (3; 1 --quick)")
    ap.add_argument("--cold-rounds", type=int, default=None,
                    help="first-install rounds (5; 1 with --quick)")
    ap.add_argument("--duration", type=float, default=None, help="seconds a load (10; 1 --quick)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-ms", type=float, default=None,
                    help="first installs again with every upstream answer held this long "
                         "(50; 0 to skip, and with --quick)")
    ap.add_argument("--pages", type=int, default=None, help="page projects (100; 5 with --quick)")
    ap.add_argument("--versions", type=int, default=None,
                    help="versions of each page project (4; 2 with --quick)")
    ap.add_argument("--out", default=os.path.join(HERE, "out-proxy"))
    ap.add_argument("--venvs", default=os.path.join(HERE, "out", "proxy-venvs"),
                    help="the peers' virtualenvs, made when missing (bench/out/proxy-venvs)")
    ap.add_argument("--no-peers", action="store_true", help="ppypi and the upstream only")
    ap.add_argument("--peers", default=",".join(PEERS), help="devpi,proxpi")
    ap.add_argument("--quiet-wait", type=float, default=120,
                    help="before each load, wait up to this long for a quiet machine (0 --quick)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    quick = a.quick
    a.rounds = a.rounds or (1 if quick else 3)
    a.cold_rounds = a.cold_rounds or (1 if quick else 5)
    a.duration = a.duration or (1 if quick else 10)
    if a.latency_ms is None:
        a.latency_ms = 0 if quick else 50
    a.pages = a.pages or (5 if quick else 100)
    a.versions = a.versions or (2 if quick else 4)
    if quick:
        a.quiet_wait = 0
    a.peers = [] if (quick or a.no_peers) else [p for p in a.peers.split(",") if p]
    if any(p not in PEERS for p in a.peers):
        ap.error(f"--peers: some of {', '.join(PEERS)}")
    if not (0 < a.duration <= 600 and 1 <= a.concurrency <= 1000 and a.pages >= 1
            and a.versions >= 1):
        ap.error("--duration in (0, 600], --concurrency in [1, 1000], --pages and --versions >= 1")
    return a


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="ppypi-bench-proxy-")
    started = time.monotonic()
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
               "settings": {k: getattr(args, k) for k in (
                   "rounds", "cold_rounds", "latency_ms", "duration", "concurrency", "pages",
                   "versions", "quiet_wait", "quick", "peers")},
               "versions": {"own": own_versions()}, "configuration": {}, "notes": [],
               "errors": []}
    log(f"versions: {results['versions']['own']}; work in {work}")
    fake = FakeUpstream().start()
    try:
        tree, pages = fill(fake, args.pages, args.versions)
        results["corpus"] = {"tree": TREE, "tree_dependencies": tree_dependencies(),
                             "pages": args.pages, "versions": args.versions,
                             "upstream_files": sum(len(fake.files_of(p)) for p in tree + pages)}
        upstream = fake.index_url
        ppypi = PPyPI(work, upstream)
        targets = {"ppypi": ppypi}
        results["configuration"]["ppypi"] = (
            f"`{shlex.join(ppypi.command('ROOT', 'PORT', 'ppypi.yaml'))}` with ppypi.yaml "
            f"`{' '.join(ppypi.config_text.split())}`; pip's index URL /simple/").replace(
                upstream, "FAKE").replace(BIN + "/", "")
        for peer in args.peers:
            try:
                venv = peer_venv(os.path.abspath(args.venvs), peer)
                python = os.path.join(venv, "bin", "python")
                found = versions_in(python, PEER_VERSIONS[peer])
                results["versions"][peer] = {"main": found.get(PEER_VERSIONS[peer][0], "?"),
                                             "all": found}
                if peer == "devpi":
                    target = Devpi(work, venv, upstream)
                    target.make_template()
                    results["configuration"]["devpi"] = (
                        f"`devpi-init --serverdir DIR --no-root-pypi`; devpi-client: `devpi "
                        f"index -c root/fake type=mirror mirror_url=FAKE "
                        f"mirror_cache_expiry={TTL}`; "
                        f"`{shlex.join(target.command('DIR', 'PORT', False))}` (a copy of that "
                        "DIR for every fresh start), and `--offline-mode` added for the cached "
                        "loads; pip's index URL /root/fake/+simple/").replace(
                            os.path.join(work, "devpi-secret"), "SECRET").replace(
                            upstream, "FAKE").replace(os.path.join(venv, "bin") + "/", "")
                else:
                    target = Proxpi(work, venv, upstream)
                    env = ", ".join(f"{k}={x}" for k, x in target.environment("DIR").items())
                    results["configuration"]["proxpi"] = (
                        f"`{shlex.join(target.command('PORT'))}` (its Docker image's command) "
                        f"with {env}; pip's index URL /index/").replace(upstream, "FAKE").replace(
                            os.path.join(venv, "bin") + "/", "")
                targets[peer] = target
                log(f"{peer}: {found}")
            except (Exception, subprocess.TimeoutExpired) as e:
                traceback.print_exc()
                results["notes"].append(f"{peer} skipped: {str(e)[-800:]}")
        results["configuration"]["upstream"] = (
            "the fake upstream (tests/fake_upstream.py, Warehouse's negotiation, PEP 658 "
            "metadata for wheels, files on its own origin under /files/) in the bench's "
            "process, with TCP_NODELAY on its connections; 'upstream' rows are pip straight "
            "from its /simple/")

        log(f"== first install of the tree, empty caches ({args.cold_rounds} rounds each: "
            f"{', '.join(conditions(args))})")
        cold_installs(fake, targets, args, work, results)
        log(f"== cached loads ({args.rounds} rounds)")
        cached_loads(fake, targets, pages, args, work, results)
    finally:
        stop_all()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["ratios"] = ratios(results)
    results["notes"] += notes(results)
    text = markdown(results)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print()
    print(text)
    log(f"results: {os.path.join(out, 'results.md')} ({results['elapsed_s']}s)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
