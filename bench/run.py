"""
ppypi's benchmark: ppypi against pypiserver and a bare twisted.web ceiling.

    python bench/run.py [--sizes 1000,10000,100000] [--duration 10]
                        [--concurrency 16] [--out bench/out] [--quick]

For each size (number of files in the index) it writes a corpus with
tests/corpus.py (cached in OUT/corpus/, a re-run reuses it:
(SIZE-1)//3 projects x 3 versions plus one 100 MB wheel), then starts, one at
a time and each on its own 127.0.0.1 port:

  ppypi       twistd -n --pidfile= ppypi --root COPY --extra-index-url ""
              --listen tcp:PORT:interface=127.0.0.1
              (started twice: a first start that indexes every file, and a
              second with the index persisted under COPY/.ppypi)
  pypiserver  the latest release, in its own virtualenv OUT/pypiserver-venv
              (pip install 'pypiserver[cache]' watchdog when missing), with its
              documented set-up for thousands of packages: the cached-dir
              backend (watchdog), uploads without authentication (-a . -P .)
  ceiling     bench/ceiling.py, a bare twisted.web resource: fixed pages the
              sizes of ppypi's /simple/ and /simple/NAME/, a fixed body the
              size of a small wheel, and the 100 MB body streamed from memory
              in 256 KiB chunks

COPY is a hard-linked copy of the corpus, fresh for each server. Each server
is driven from a separate process (wrk if installed, else bench/load.py) with
the same concurrency and duration, and measured for:

  - req/s, p50 and p99 of GET /simple/, of /simple/NAME/ (rotating over up to
    1000 projects) and of small-wheel downloads (rotating likewise);
  - MB/s of a single client downloading the 100 MB wheel (3 times);
  - files/s uploading 200 small wheels with one twine command (clean
    environment), and the time of one 100 MB upload with twine;
  - RSS growth during the 100 MB download and upload (VmHWM, reset just
    before, minus VmRSS before; and VmRSS after minus before);
  - peak RSS (the highest VmHWM of the server's process) and cold start
    (process spawned -> first 200 for /simple/NAME/).

The machine may be shared: before each load the run waits (--quiet-wait, at
most 180 s) for other processes to use < 10% of the CPUs and the server to be
idle, and records the
share of the CPUs other processes took during each load (marked with a dagger
in the tables when over 10%).

It prints a table per size and server, the ratios and the targets (MET / NOT
MET / not measured), and writes OUT/results.md, OUT/results.json and
OUT/rps.png (matplotlib from this Python or the pypiserver virtualenv).

--quick: one corpus of 30 files, 1-second loads, no pypiserver, a 5 MB wheel,
10 uploads; no network access needed; under a minute (the test suite runs it).

Every server is stopped at the end, on errors and on Ctrl-C too. Memory is in
MB of 10^6 bytes, like throughput.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus as corpusmod  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
from servers import Server, first_sync, free_port, http_get, stop_all  # noqa: E402

PROJECT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
MB = 1e6

SAMPLE_NAMES = 1000


def log(message):
    print(message, flush=True)


def tool(name):
    """An executable beside this Python (the ppypi virtualenv), else on PATH."""
    path = os.path.join(BIN, name)
    if os.path.exists(path):
        return path
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found beside {sys.executable} nor on PATH")
    return found


def client_env(**extra):
    """An environment for twine that ignores this machine's index settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "TWINE_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1",
               PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    env.update(extra)
    return env


def kib_to_mb(kib):
    return kib * 1024 / MB


# -- pypiserver's virtualenv and matplotlib

def pypiserver_venv(out, allow_install):
    venv = os.path.join(out, "pypiserver-venv")
    exe = os.path.join(venv, "bin", "pypi-server")
    if not os.path.exists(exe):
        if not allow_install:
            return None
        log(f"pypiserver: creating {venv} (pip install 'pypiserver[cache]' watchdog)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True, timeout=300)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                        "pypiserver[cache]", "watchdog"], check=True, timeout=900)
    return venv


def pypiserver_version(venv):
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                          "import importlib.metadata as m; print(m.version('pypiserver'), "
                          "m.version('watchdog'))"],
                         capture_output=True, text=True, timeout=60)
    parts = out.stdout.split()
    return (parts + ["?", "?"])[:2]


def python_with_matplotlib(out, allow_install):
    """A Python that imports matplotlib: this one, or the pypiserver venv's (installed there)."""
    candidates = [sys.executable]
    venv_python = os.path.join(out, "pypiserver-venv", "bin", "python")
    if os.path.exists(venv_python):
        candidates.append(venv_python)
    for python in candidates:
        ok = subprocess.run([python, "-c", "import matplotlib"], capture_output=True,
                            timeout=120).returncode == 0
        if ok:
            return python
    if allow_install and os.path.exists(venv_python):
        log("plot: installing matplotlib into the pypiserver virtualenv")
        done = subprocess.run([venv_python, "-m", "pip", "install", "-q", "matplotlib"],
                              timeout=900).returncode == 0
        if done:
            return venv_python
    return None


# -- machine

def machine():
    cpu = load.cpu_model()
    if load.have_wrk():
        v = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        loadgen = (v.stdout or v.stderr).splitlines()[0].split(" [")[0] if (v.stdout or v.stderr) else "wrk"
    else:
        loadgen = "python client (bench/load.py)"
    try:
        rev = subprocess.run(["git", "-C", PROJECT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        rev = "?"
    try:
        diff = subprocess.run(["git", "-C", PROJECT, "diff", "HEAD", "--", "ppypi", "twisted"],
                              capture_output=True, timeout=30).stdout
        diff = hashlib.sha256(diff).hexdigest()[:12] if diff else None
    except OSError:
        diff = None
    return {
        "ppypi_uncommitted_diff_sha256": diff,
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_generator": loadgen,
        "ppypi_revision": rev,
    }


# -- one server, measured

class Run:
    """The settings of the whole run."""

    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        self.quick = args.quick
        self.duration = args.duration
        self.concurrency = args.concurrency
        self.big_bytes = 5 * 1000 * 1000 if args.quick else 100 * 1000 * 1000
        self.uploads = 10 if args.quick else 200
        self.big_downloads = 3
        self.logs = os.path.join(self.out, "logs")
        self.quiet_wait = 0 if args.quick else args.quiet_wait


def paths_for(kind, c):
    """The URL paths a server of C{kind} serves for corpus C{c}."""
    sample = c.sample(SAMPLE_NAMES)
    mid = c.mid()
    project = [f"/simple/{corpusmod.normalize(c.dist(i))}/" for i in sample]
    mid_project = f"/simple/{corpusmod.normalize(c.dist(mid))}/"
    if kind == "pypiserver":
        files = [f"/packages/{corpusmod.wheel_name(c.dist(i))}" for i in sample]
        big = f"/packages/{c.big_file}"
    else:
        files = [f"/packages/{corpusmod.normalize(c.dist(i))}/{corpusmod.wheel_name(c.dist(i))}"
                 for i in sample]
        big = f"/packages/{corpusmod.normalize(corpusmod.BIG_DOWNLOAD)}/{c.big_file}"
    return {"root": "/simple/", "project": project, "mid_project": mid_project,
            "files": files, "big": big}


def check_paths(server, paths):
    """Every kind of URL answers 200 before the load starts."""
    for path in (paths["root"], paths["project"][0], paths["files"][0]):
        status, _ = http_get(server.port, path, timeout=120)
        if status != 200:
            raise RuntimeError(f"{server.name}: GET {path} answered {status}")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(pid):
    """(machine busy s, machine steal s, server CPU s, our own and our children's CPU s)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[0:3])  # user, nice, system
    steal = fields[7] if len(fields) > 7 else 0
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    server = int(stat[11]) + int(stat[12])  # utime, stime
    t = os.times()
    return (busy / CLK_TCK, steal / CLK_TCK, server / CLK_TCK,
            t.user + t.system + t.children_user + t.children_system)


def other_cpu(server, action):
    """
    Run C{action}; return its result and the share of the machine's CPUs that
    went to neither the server nor the load generator meanwhile (other work on
    a shared machine skews the numbers), and the share stolen by the hypervisor.
    """
    before = _cpu_snapshot(server.pid)
    started = time.monotonic()
    result = action()
    elapsed = time.monotonic() - started
    after = _cpu_snapshot(server.pid)
    d = [a - b for a, b in zip(after, before)]
    capacity = elapsed * len(os.sched_getaffinity(0))
    foreign = max(0.0, d[0] - d[2] - d[3])
    return result, {"other_cpu_pct": 100 * foreign / capacity, "steal_pct": 100 * d[1] / capacity,
                    "server_cpu_pct": 100 * d[2] / capacity}


def busy_pct(server, seconds=1.0):
    """
    Over C{seconds}: the share of the CPUs busy (user, nice, system) with
    other work than the server, and the share busy with the server.
    """
    def sample():
        with open("/proc/stat") as f:
            machine = sum(int(x) for x in f.readline().split()[1:4])
        with open(f"/proc/{server.pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        return machine / CLK_TCK, (int(stat[11]) + int(stat[12])) / CLK_TCK

    (m0, s0), t0 = sample(), time.monotonic()
    time.sleep(seconds)  # sleep-ok: sampling the CPU counters
    (m1, s1), t1 = sample(), time.monotonic()
    capacity = (t1 - t0) * len(os.sched_getaffinity(0))
    return 100 * max(0.0, (m1 - m0) - (s1 - s0)) / capacity, 100 * (s1 - s0) / capacity


def wait_quiet(server, max_seconds, threshold=10.0):
    """
    On a shared machine, wait (at most C{max_seconds}) until other work uses
    less than C{threshold}% of the CPUs and the server is idle (pypiserver
    keeps answering requests queued by the previous load after its clients
    left).
    """
    deadline = time.monotonic() + max_seconds
    waited = False
    while True:
        other, own = busy_pct(server)
        if (other < threshold and own < threshold) or time.monotonic() >= deadline:
            if waited:
                log(f"  (waited {max_seconds - max(0.0, deadline - time.monotonic()):.0f}s: "
                    f"other work {other:.0f}%, {server.name} {own:.0f}% of the CPUs)")
            return other
        waited = True


def loads(run, server, paths):
    result = {}
    for key, urls in (("simple_root", [paths["root"]]), ("simple_project", paths["project"]),
                      ("download_small", paths["files"])):
        if run.quiet_wait:
            wait_quiet(server, run.quiet_wait)
        r, cpu = other_cpu(server, lambda: load.measure(server.port, urls, run.duration,
                                                        run.concurrency))
        r.update(cpu)
        log(f"  {server.name} {key}: {r['rps']:.1f} req/s, p50 {_fmt(r['p50_ms'])} ms, "
            f"p99 {_fmt(r['p99_ms'])} ms, errors {r['errors']}, non-2xx {r['non_2xx']}; "
            f"CPU: server {cpu['server_cpu_pct']:.0f}%, other processes {cpu['other_cpu_pct']:.0f}%, "
            f"steal {cpu['steal_pct']:.0f}%")
        result[key] = r
    return result


def _fmt(v):
    return "-" if v is None else f"{v:.2f}"


def rss_during(server, action):
    """Run C{action}; return its result and the server's RSS growth around it."""
    before = server.rss_kib()
    hwm_before = server.hwm_kib()
    was_reset = server.reset_hwm()
    result = action()
    after = server.rss_kib()
    hwm = server.hwm_kib()
    growth = hwm - before if was_reset else max(0, hwm - hwm_before)
    return result, {
        "rss_before_mb": kib_to_mb(before),
        "rss_after_mb": kib_to_mb(after),
        "rss_growth_mb": kib_to_mb(growth),           # peak during the action - before
        "rss_retained_mb": kib_to_mb(after - before),  # after - before
        "hwm_reset": was_reset,
    }


def big_download(run, server, path):
    if run.quiet_wait:
        wait_quiet(server, run.quiet_wait)
    (result, mem), cpu = other_cpu(server, lambda: rss_during(server, lambda: load.measure_download(
        server.port, path, run.big_downloads, max_seconds=120)))
    result.update(mem)
    result.update(cpu)
    log(f"  {server.name} big download: {result['mb_per_s']:.1f} MB/s "
        f"({result['downloads']} x {result['bytes'] / max(1, result['downloads']) / MB:.1f} MB), "
        f"RSS growth {result['rss_growth_mb']:.1f} MB")
    return result


def twine_upload(url, files, user, password, timeout):
    cmd = [tool("twine"), "upload", "--disable-progress-bar", "--non-interactive",
           "--repository-url", url, "-u", user, "-p", password, *files]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=client_env(), stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise RuntimeError(f"twine upload to {url} failed ({out.returncode}):\n"
                           f"{(out.stdout + out.stderr)[-2000:]}")
    return elapsed


def uploads(run, server, user, password):
    url = f"http://127.0.0.1:{server.port}/"
    files = corpusmod.upload_set(run.out, run.uploads)
    seconds = twine_upload(url, files, user, password, timeout=900)
    small = {"files": len(files), "seconds": round(seconds, 3), "files_per_s": len(files) / seconds}
    log(f"  {server.name} uploads: {len(files)} wheels in {seconds:.2f}s "
        f"= {small['files_per_s']:.1f} files/s (twine)")
    big_path = corpusmod.big_upload(run.out, run.big_bytes)
    size = os.path.getsize(big_path)
    seconds, mem = rss_during(server, lambda: twine_upload(url, [big_path], user, password,
                                                           timeout=600))
    big = {"bytes": size, "seconds": round(seconds, 3), "mb_per_s": size / MB / seconds, **mem}
    log(f"  {server.name} big upload: {size / MB:.1f} MB in {seconds:.2f}s, "
        f"RSS growth {big['rss_growth_mb']:.1f} MB")
    return small, big


def start_timeout(c):
    return 120 + c.files / 50


def bench_ppypi(run, c):
    root = corpusmod.working_copy(c, os.path.join(run.out, "work", f"ppypi-{c.size}"))
    paths = paths_for("ppypi", c)
    result = {}
    try:
        def start():
            port = free_port()
            cmd = [tool("twistd"), "-n", "--pidfile=", "ppypi", "--root", root,
                   "--extra-index-url", "", "--listen", f"tcp:{port}:interface=127.0.0.1"]
            return Server("ppypi", cmd, port, os.path.join(run.logs, f"ppypi-{c.size}.log"),
                          cwd=run.out).start()

        first = start()
        result["command"] = shlex.join(first.cmd)
        result["cold_start_first_s"] = first.wait_status(paths["mid_project"], timeout=start_timeout(c))
        result["first_sync_first_s"] = first_sync(first, start_timeout(c))
        first.hwm_kib()
        result["peak_rss_first_start_mb"] = kib_to_mb(first.peak_kib)
        first.stop()
        log(f"  ppypi first start (indexing {c.files} files): {result['cold_start_first_s']:.2f}s "
            f"to the first 200, {result['first_sync_first_s']:.2f}s to the end of the first sync, "
            f"peak RSS {result['peak_rss_first_start_mb']:.1f} MB")

        server = start()
        result["cold_start_s"] = server.wait_status(paths["mid_project"], timeout=start_timeout(c))
        result["first_sync_s"] = first_sync(server, start_timeout(c))
        log(f"  ppypi second start (persisted index): {result['cold_start_s']:.2f}s to the first 200, "
            f"{result['first_sync_s']:.2f}s to the end of the first sync")
        check_paths(server, paths)
        _, page = http_get(server.port, paths["mid_project"])
        _, root_page = http_get(server.port, paths["root"])
        result["page_bytes"] = {"project": len(page), "root": len(root_page)}
        result.update(loads(run, server, paths))
        result["download_big"] = big_download(run, server, paths["big"])
        with open(os.path.join(root, ".ppypi", "upload-token")) as f:
            token = f.read().strip()
        result["upload_small"], result["upload_big"] = uploads(run, server, "__token__", token)
        result["upload_auth"] = "__token__ + ROOT/.ppypi/upload-token"
        server.hwm_kib()
        result["peak_rss_serving_mb"] = kib_to_mb(server.peak_kib)
        result["peak_rss_mb"] = max(result["peak_rss_serving_mb"], result["peak_rss_first_start_mb"])
        server.stop()
    finally:
        stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return result


def bench_pypiserver(run, c, venv):
    root = corpusmod.working_copy(c, os.path.join(run.out, "work", f"pypiserver-{c.size}"))
    paths = paths_for("pypiserver", c)
    result = {}
    try:
        port = free_port()
        cmd = [os.path.join(venv, "bin", "pypi-server"), "run", "-p", str(port), "-i", "127.0.0.1",
               "--backend", "cached-dir", "-a", ".", "-P", ".", "--disable-fallback", root]
        server = Server("pypiserver", cmd, port,
                        os.path.join(run.logs, f"pypiserver-{c.size}.log"), cwd=run.out).start()
        result["command"] = shlex.join(cmd)
        result["cold_start_s"] = server.wait_status(paths["mid_project"], timeout=start_timeout(c))
        log(f"  pypiserver start: {result['cold_start_s']:.2f}s to the first 200")
        check_paths(server, paths)
        result.update(loads(run, server, paths))
        result["download_big"] = big_download(run, server, paths["big"])
        result["upload_small"], result["upload_big"] = uploads(run, server, "bench", "unused")
        result["upload_auth"] = "none (-a . -P .: uploads without authentication)"
        server.hwm_kib()
        result["peak_rss_mb"] = kib_to_mb(server.peak_kib)
        result["wsgi_server"] = _wsgi_server(server.log_tail(200))
        server.stop()
    finally:
        stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return result


def _wsgi_server(log_text):
    m = re.search(r"server starting up \(using (\w+)", log_text)
    return m.group(1) if m else "?"


def bench_ceiling(run, c, ppypi):
    paths = paths_for("ceiling", c)
    result = {}
    pages = ppypi.get("page_bytes") or {}
    if not pages:
        raise RuntimeError("no ppypi page sizes to copy (ppypi failed)")
    try:
        port = free_port()
        cmd = [sys.executable, os.path.join(HERE, "ceiling.py"), "--port", str(port),
               "--page-bytes", str(pages["project"]), "--root-page-bytes", str(pages["root"]),
               "--file-bytes", str(c.small_file_bytes()),
               "--big-bytes", str(os.path.getsize(os.path.join(c.path, c.big_file))),
               "--big-name", c.big_file]
        # glibc would otherwise give the heap back after every large page and
        # grow it again for the next (a brk per request): a bare server with a
        # small heap pays that, a bigger one does not; the ceiling should not.
        env = dict(os.environ, MALLOC_TRIM_THRESHOLD_=str(256 << 20), MALLOC_TOP_PAD_=str(64 << 20))
        server = Server("ceiling", cmd, port, os.path.join(run.logs, f"ceiling-{c.size}.log"),
                        env=env, cwd=run.out).start()
        result["command"] = (f"MALLOC_TRIM_THRESHOLD_={env['MALLOC_TRIM_THRESHOLD_']} "
                             f"MALLOC_TOP_PAD_={env['MALLOC_TOP_PAD_']} " + shlex.join(cmd))
        result["cold_start_s"] = server.wait_status(paths["mid_project"], timeout=60)
        check_paths(server, paths)
        result.update(loads(run, server, paths))
        result["download_big"] = big_download(run, server, paths["big"])
        server.hwm_kib()
        result["peak_rss_mb"] = kib_to_mb(server.peak_kib)
        server.stop()
    finally:
        stop_all()
    return result


# -- the whole run

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None,
                    help="comma-separated numbers of files (default 1000,10000,100000; 30 with --quick)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of each load (default 10; 1 with --quick)")
    ap.add_argument("--concurrency", type=int, default=16, help="connections of each load (16)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"),
                    help="corpora, virtualenv, logs and results (default bench/out)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny corpus, 1 s loads, no pypiserver, 5 MB files, 10 uploads, offline")
    ap.add_argument("--quiet-wait", type=float, default=180,
                    help="before each load, wait up to this many seconds for other work on the "
                         "machine to use < 10%% of the CPUs and the server to be idle (default 180; "
                         "0 with --quick)")
    ap.add_argument("--no-pypiserver", action="store_true", help="skip pypiserver")
    ap.add_argument("--pypiserver-venv", default=None,
                    help="an existing virtualenv with pypiserver (default OUT/pypiserver-venv, "
                         "created when missing)")
    a = ap.parse_args(argv)
    default_sizes = "30" if a.quick else "1000,10000,100000"
    try:
        a.sizes = sorted({int(s) for s in (a.sizes or default_sizes).split(",") if s.strip()})
    except ValueError:
        ap.error("--sizes takes numbers separated by commas")
    if not a.sizes or min(a.sizes) < 4:
        ap.error("--sizes: each size must be at least 4 files")
    if a.duration is None:
        a.duration = 1 if a.quick else 10
    if not 0 < a.duration <= 600:
        ap.error("--duration must be in (0, 600] seconds")
    if not 0 <= a.quiet_wait <= 3600:
        ap.error("--quiet-wait must be in [0, 3600] seconds")
    if not 1 <= a.concurrency <= 1000:
        ap.error("--concurrency must be in [1, 1000]")
    return a


def main(argv=None):
    args = parse_args(argv)
    run = Run(args)
    os.makedirs(run.logs, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with_pypiserver = not (args.quick or args.no_pypiserver)
    results = {
        "machine": machine(),
        "settings": {"sizes": args.sizes, "duration_s": run.duration,
                     "concurrency": run.concurrency, "quick": run.quick,
                     "big_file_bytes": run.big_bytes, "uploads": run.uploads,
                     "big_downloads": run.big_downloads, "rotated_names": SAMPLE_NAMES,
                     "quiet_wait_s": run.quiet_wait},
        "sizes": {},
        "errors": [],
    }
    log(f"machine: {results['machine']}")
    try:
        venv = None
        if with_pypiserver:
            venv = (os.path.abspath(args.pypiserver_venv) if args.pypiserver_venv
                    else pypiserver_venv(run.out, allow_install=True))
            version, watchdog = pypiserver_version(venv)
            results["pypiserver"] = {"version": version, "watchdog": watchdog,
                                     "venv": venv, "backend": "cached-dir",
                                     "upload_auth": "none (-a . -P .)"}
            log(f"pypiserver {version} (watchdog {watchdog}) in {venv}")
        for size in args.sizes:
            c = corpusmod.Corpus(run.out, size, run.big_bytes).ensure(log)
            entry = {"files": c.files, "projects": c.projects, "servers": {}}
            results["sizes"][str(size)] = entry
            log(f"== {c.files} files ({c.projects} projects)")
            plan = [("ppypi", lambda: bench_ppypi(run, c))]
            if with_pypiserver:
                plan.append(("pypiserver", lambda: bench_pypiserver(run, c, venv)))
            plan.append(("ceiling", lambda: bench_ceiling(run, c, entry["servers"].get("ppypi", {}))))
            for name, bench in plan:
                log(f"-- {name}, {c.files} files")
                try:
                    entry["servers"][name] = bench()
                except (Exception, subprocess.TimeoutExpired) as e:
                    traceback.print_exc()
                    entry["servers"][name] = {"error": str(e)}
                    results["errors"].append(f"{name} at {size} files: {e}")
    finally:
        stop_all()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    text = report.markdown(results)
    print()
    print(text)
    with open(os.path.join(run.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(run.out, "results.md"), "w") as f:
        f.write(text)
    python = python_with_matplotlib(run.out, allow_install=with_pypiserver)
    png = os.path.join(run.out, "rps.png")
    if python is None:
        log("plot: matplotlib cannot be imported here nor in the pypiserver virtualenv: "
            "no rps.png")
    else:
        done = subprocess.run([python, os.path.join(HERE, "plot.py"),
                               os.path.join(run.out, "results.json"), png], timeout=300)
        log(f"plot: {png}" if done.returncode == 0 else "plot: failed, no rps.png")
    log(f"results: {os.path.join(run.out, 'results.md')}, results.json "
        f"({results['elapsed_s']}s)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every server was stopped", file=sys.stderr)
        sys.exit(130)
