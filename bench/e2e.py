"""
What users feel: wall time of real pip and uv commands, from a cold client
cache, against ppypi and its peers serving the same files (issue 18).

    python bench/e2e.py [--quick] [--rounds N] [--wan]
                        [--peers ppypi,nginx,pypiserver,devpi,private-pypi]
                        [--out bench/results-e2e] [--work bench/out/e2e]

The files (bench/e2e_corpus.py, cached in WORK/corpus/): a 30-project
dependency tree (4 versions each, real Requires-Dist, two traps that make
the resolvers step back) and a filler of 10 projects x 1,000 versions, so
pages are the size real ones are.

The targets (bench/e2e_targets.py), every one on 127.0.0.1, each installed
by the bench into its own virtualenv (WORK/venvs/) or skipped with the
reason:

  ppypi         twistd -n ppypi from this checkout's virtualenv, the files in ROOT
  nginx         a static PEP 503 tree rendered by the bench (same links,
                #sha256=, data-requires-python and PEP 658 metadata as ppypi),
                sendfile on, one worker, no gzip; a child with its own prefix
                (--static-server http.server, or auto without nginx: python -m http.server)
  pypiserver    the latest release, cached-dir backend, as bench/run.py runs it
  devpi         devpi-server --offline-mode, one stage index root/bench filled
                with devpi-import (an export written by the bench)
  private-pypi  0.2.0 on Python 3.9, file_system backend, its storage layout
                and index.toml written by the bench, Basic auth, its Redis
                bound to 127.0.0.1 by a wrapper

The scenarios, each timed around the client's process (its start included:
what the user waits for), every run with a fresh, empty cache folder:

  pip-download  pip download --no-deps e2e-fill-05 (a 1,000-version page,
                its .metadata where offered, one wheel)
  pip-install   pip --python VENV install e2e-tree-00 into a fresh virtualenv
                without pip (made beforehand, untimed): resolve with
                backtracking, 30 downloads, 30 installs. A real install,
                not --dry-run: the downloads are part of the wait, and
                --dry-run would skip them where PEP 658 metadata is offered.
  uv-install    uv pip install --python VENV e2e-tree-00, the same way
  uv-lock       uv lock of a one-dependency project (a fresh copy each run)

Rounds alternate: in each round every scenario runs against every target,
the targets' order rotated by one each round. Every result is checked (the
downloaded file, the installed set against the one right resolution, the
lock file's packages): a failed or wrong client run is a failure, reported,
never a time.

--wan: the same again over a simulated WAN link, 20 ms each way, 50 Mbit/s:
a network namespace made by the bench whose loopback has MTU 1500 and a
tc netem qdisc (delay 20ms rate 50mbit); servers and clients run in it
(the bench re-runs itself inside with `ip netns exec`). Root only: skipped
with the reason otherwise. The namespace is deleted in a finally. On a
kernel without netem (this one: CONFIG_NET_SCH_NETEM is not set), a link
in user space instead: bench/e2e_link.py in front of each server, the same
delay and rate, the handshake modelled, no loss or slow start.

Writes OUT/results.json, OUT/results.md (scenario x target: median
[min-max], ratio to ppypi) and OUT/e2e.png. --quick (the test suite): one
round, a 10-project tree, 2 x 30 filler, ppypi and the static tree only.
Exit status 1 when any client run failed or a requested target was skipped
in --quick.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import e2e_corpus as ec  # noqa: E402
import e2e_targets as et  # noqa: E402
from servers import Server, free_port, stop_all  # noqa: E402

BIN = os.path.dirname(sys.executable)
SCENARIOS = ("pip-download", "pip-install", "uv-install", "uv-lock")
SCENARIO_TITLES = {
    "pip-download": "pip download --no-deps (1 package, {fill_versions}-version page)",
    "pip-install": "pip install ({tree_projects}-package tree, fresh venv)",
    "uv-install": "uv pip install ({tree_projects}-package tree, fresh venv)",
    "uv-lock": "uv lock (project depending on the tree)",
}
NETNS = "ppypi-e2e"
WAN_DELAY_MS = 20
WAN_RATE = "50mbit"

log = et.log


def tool(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        raise RuntimeError(f"{name} not found beside {sys.executable}")
    return path


def client_versions():
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                         text=True, timeout=60).stdout.split()
    uv = subprocess.run([tool("uv"), "--version"], capture_output=True, text=True,
                        timeout=60).stdout.split()
    return {"pip": pip[1] if len(pip) > 1 else "?", "uv": uv[1] if len(uv) > 1 else "?",
            "python": platform.python_version()}


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", PROJECT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        rev = "?"
    return {"cpu_model": cpu, "cpus_usable": len(os.sched_getaffinity(0)),
            "kernel": platform.release(), "python": platform.python_version(),
            "ppypi_revision": rev}


# -- the client runs ------------------------------------------------------------------

class ClientFailed(Exception):
    pass


def fresh_venv(path):
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True,
                   capture_output=True, timeout=300)
    return os.path.join(path, "bin", "python")


def installed(python):
    """{project: version} in a virtualenv (uv pip freeze: quick, untimed)."""
    out = subprocess.run([tool("uv"), "pip", "freeze", "--python", python], capture_output=True,
                         text=True, timeout=120, env=et.clean_env())
    pins = {}
    for line in out.stdout.splitlines():
        name, _, version = line.partition("==")
        if version:
            pins[ec.normalize(name)] = version.strip()
    return pins


class Scenario:
    """One client command against one target: set up (untimed), run (timed), check."""

    def __init__(self, name, corpus, folder, index_url, timeout):
        self.name, self.corpus, self.folder = name, corpus, folder
        self.index_url, self.timeout = index_url, timeout
        self.cache = os.path.join(folder, "cache")
        os.makedirs(self.cache)

    def setup(self):
        c = self.corpus
        env = et.clean_env(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="copy")
        if self.name == "pip-download":
            self.dest = os.path.join(self.folder, "dl")
            self.cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--cache-dir",
                        self.cache, "--index-url", self.index_url, "-d", self.dest,
                        c.download_project]
        elif self.name == "pip-install":
            self.python = fresh_venv(os.path.join(self.folder, "venv"))
            self.cmd = [sys.executable, "-m", "pip", "--python", self.python, "install",
                        "--cache-dir", self.cache, "--index-url", self.index_url,
                        c.root_project]
        elif self.name == "uv-install":
            self.python = fresh_venv(os.path.join(self.folder, "venv"))
            self.cmd = [tool("uv"), "pip", "install", "--python", self.python, "--cache-dir",
                        self.cache, "--index-url", self.index_url, c.root_project]
        elif self.name == "uv-lock":
            self.project = os.path.join(self.folder, "project")
            os.makedirs(self.project)
            with open(os.path.join(self.project, "pyproject.toml"), "w") as f:
                f.write('[project]\nname = "e2e-app"\nversion = "0.1.0"\n'
                        'requires-python = ">=3.11"\n'
                        f'dependencies = ["{c.root_project}"]\n\n'
                        '[tool.uv]\npackage = false\n')
            self.cmd = [tool("uv"), "lock", "--directory", self.project, "--cache-dir",
                        self.cache, "--default-index", self.index_url, "--python",
                        sys.executable]
        else:
            raise ValueError(self.name)
        self.env = env
        return self

    def run(self):
        # Its own session: pip --python runs a second pip process, which a
        # timeout or Ctrl-C must stop too.
        proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=self.env, cwd=self.folder,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        started = time.monotonic()
        try:
            output, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise ClientFailed(f"timed out after {self.timeout}s")
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            raise ClientFailed(f"exit {proc.returncode}: {output.strip()[-1500:]}")
        self.check()
        return elapsed

    def check(self):
        """The command did what it says, or ClientFailed."""
        c = self.corpus
        if self.name == "pip-download":
            want = f"{ec.dist_of(c.download_project)}-1.0.{c.fill_versions - 1}-py3-none-any.whl"
            got = sorted(os.listdir(self.dest)) if os.path.isdir(self.dest) else []
            if got != [want]:
                raise ClientFailed(f"downloaded {got}, expected [{want}]")
        elif self.name in ("pip-install", "uv-install"):
            got = installed(self.python)
            if got != c.expected():
                raise ClientFailed(f"installed {sorted(got.items())}, expected the tree's "
                                   f"{len(c.expected())} pins")
        elif self.name == "uv-lock":
            try:
                with open(os.path.join(self.project, "uv.lock")) as f:
                    text = f.read()
            except OSError:
                raise ClientFailed("no uv.lock written")
            got = dict(re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text))
            got.pop("e2e-app", None)
            if got != c.expected():
                raise ClientFailed(f"locked {sorted(got.items())}, expected the tree's "
                                   f"{len(c.expected())} pins")


# -- a shared machine ---------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_trees(roots):
    """The pids of ROOTS and all their descendants (nginx's workers, private-pypi's Redis...)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [r for r in roots if r in parent]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(c for c, p in parent.items() if p == pid)
    return out


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            total += int(stat[11]) + int(stat[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def machine_busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields[0:3] + fields[5:7]) / CLK_TCK  # user nice system irq softirq


class CpuWatch:
    """
    The share of the machine's CPUs that went to other work than the
    servers under test and our own clients during an action: other people's
    jobs on a shared machine skew a wall time, so each run records it.
    """

    def __init__(self, targets):
        self.roots = [t.server.pid for t in targets if t.server is not None]

    def snapshot(self):
        t = os.times()
        pids = process_trees(self.roots)
        return (time.monotonic(), machine_busy_seconds(), cpu_seconds(pids),
                t.user + t.system + t.children_user + t.children_system)

    @staticmethod
    def shares(a, b):
        capacity = max(1e-6, (b[0] - a[0]) * len(os.sched_getaffinity(0)))
        servers = b[2] - a[2]
        other = max(0.0, (b[1] - a[1]) - servers - (b[3] - a[3]))
        return 100 * servers / capacity, 100 * other / capacity

    def wait_quiet(self, max_seconds, window=0.5, threshold=10.0):
        """
        Until the servers are idle (pypiserver goes on answering what a
        client left queued) and other work uses < THRESHOLD% of the CPUs,
        at most MAX_SECONDS. Returns the seconds waited.
        """
        started = time.monotonic()
        while time.monotonic() - started < max_seconds:
            a = self.snapshot()
            time.sleep(window)  # sleep-ok: sampling CPU counters
            servers, other = self.shares(a, self.snapshot())
            if servers < threshold and other < threshold:
                break
        return time.monotonic() - started


# -- one condition (loopback or WAN) ------------------------------------------------------

def summarize(runs):
    if not runs:
        return {"median_s": None, "min_s": None, "max_s": None}
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}


def page_bytes(target, project):
    """The bytes a client receives for a project page: as pip 26 asks, as uv asks, plain HTML."""
    pip_accept = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; "
                  "q=0.1, text/html; q=0.01")
    uv_accept = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;"
                 "q=0.2, text/html;q=0.01")
    out = {}
    for key, headers in (("pip", {"Accept": pip_accept, "Accept-Encoding": "gzip, deflate"}),
                         ("uv", {"Accept": uv_accept, "Accept-Encoding": "gzip, deflate, br"}),
                         ("html_identity", {"Accept": "text/html"})):
        try:
            status, h, body = target.get(target.page_path(project), headers=headers)
            h = {k.lower(): v for k, v in h.items()}
            out[key] = {"status": status, "bytes": len(body),
                        "content_type": h.get("content-type", "").split(";")[0],
                        "content_encoding": h.get("content-encoding", "identity")}
        except OSError as e:
            out[key] = {"error": str(e)}
    return out


def start_link(target, work):
    """A simulated WAN link (bench/e2e_link.py) in front of a target; the clients use it."""
    port = free_port()
    link = Server(f"link-{target.name}", [
        sys.executable, os.path.join(HERE, "e2e_link.py"), str(port), str(target.port),
        "--delay-ms", str(WAN_DELAY_MS), "--rate-mbit", WAN_RATE.rstrip("mbit")],
        port, os.path.join(work, f"link-{target.name}.log")).start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or not link.alive():
                raise RuntimeError(f"the link in front of {target.name} did not start")
            time.sleep(0.02)  # sleep-ok: polling a child process, with a deadline
    target.client_port = port
    return link


def measure(args, corpus, names, condition, work, link=False):
    """
    Start every target (with C{link}, each behind a simulated WAN link in
    user space), run the rounds, stop them. Returns
    {targets: {name: {...}}, scenarios: {scenario: {target: {...}}}, failures: [...]}.
    """
    result = {"targets": {}, "scenarios": {s: {} for s in args.scenarios}, "failures": []}
    targets = []
    try:
        for name in names:
            t = et.make(name, work, corpus, args.venvs, args.static_server)
            entry = result["targets"].setdefault(t.name, {})
            try:
                t.prepare()
                entry["start_s"] = round(t.start(condition), 2)
                entry["command"] = t.command
                entry["versions"] = t.versions()
                entry["index_url"] = t.index_url.replace(str(t.port), "PORT")
                if link:
                    start_link(t, work)
                entry["page_bytes"] = {
                    "download_project": page_bytes(t, corpus.download_project),
                    "tree_root": page_bytes(t, corpus.root_project)}
                targets.append(t)
                log(f"{t.name}: up in {entry['start_s']}s at {t.base}; "
                    f"{corpus.download_project} page as pip gets it: "
                    f"{entry['page_bytes']['download_project'].get('pip')}")
            except (et.Skip, OSError, subprocess.SubprocessError, RuntimeError) as e:
                log(f"{t.name}: SKIPPED: {e}")
                entry["skipped"] = str(e)[-2000:]
                t.stop()
        for s in args.scenarios:
            for t in targets:
                result["scenarios"][s][t.name] = {"runs_s": [], "failures": [],
                                                  "other_cpu_pct": [], "quiet_wait_s": []}
        watch = CpuWatch(targets)
        runs_root = os.path.join(work, "runs", condition)
        for r in range(args.rounds):
            order = targets[r % len(targets):] + targets[:r % len(targets)] if targets else []
            log(f"== {condition}, round {r + 1}/{args.rounds}: {', '.join(t.name for t in order)}")
            for s in args.scenarios:
                for t in order:
                    folder = os.path.join(runs_root, f"r{r}-{s}-{t.name}")
                    shutil.rmtree(folder, ignore_errors=True)
                    os.makedirs(folder)
                    cell = result["scenarios"][s][t.name]
                    try:
                        if not t.server.alive():
                            raise ClientFailed(f"{t.name} is no longer running: "
                                               f"{t.server.log_tail(10)}")
                        scenario = Scenario(s, corpus, folder, t.index_url, args.timeout).setup()
                        waited = watch.wait_quiet(args.quiet_wait)
                        before = watch.snapshot()
                        seconds = scenario.run()
                        _, other = watch.shares(before, watch.snapshot())
                        cell["runs_s"].append(round(seconds, 4))
                        cell["other_cpu_pct"].append(round(other, 1))
                        cell["quiet_wait_s"].append(round(waited, 1))
                        log(f"  {s:13s} {t.name:14s} {seconds:7.3f} s   (other work "
                            f"{other:3.0f}% of the CPUs; waited {waited:.1f}s for quiet)")
                    except ClientFailed as e:
                        msg = f"{condition} round {r + 1} {s} against {t.name}: {e}"
                        log(f"  {s:13s} {t.name:14s} FAILED: {str(e)[:300]}")
                        cell["failures"].append(str(e)[-2000:])
                        result["failures"].append(msg[-2000:])
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
        for s, cells in result["scenarios"].items():
            base = summarize(cells.get("ppypi", {}).get("runs_s", []))["median_s"]
            for name, cell in cells.items():
                cell.update(summarize(cell["runs_s"]))
                cell["ratio_to_ppypi"] = (cell["median_s"] / base
                                          if base and cell["median_s"] else None)
    finally:
        for t in targets:
            t.stop()
        stop_all()
    return result


# -- the simulated WAN -----------------------------------------------------------------

def wan_unavailable():
    """Why the WAN link cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root: the WAN link needs a network namespace and tc netem (run as root)"
    for exe in ("ip", "tc"):
        if not shutil.which(exe):
            return f"{exe} (iproute2) is not installed"
    return None


def sh(*cmd):
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(out.stdout + out.stderr).strip()}")
    return out.stdout


def netns_pids():
    out = subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, text=True,
                         timeout=30)
    return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []


def delete_netns():
    """Stop what still runs in our namespace (all started by this bench), then delete it."""
    for pid in netns_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, timeout=60)


def wan_condition(args, argv):
    """
    Make the namespace (loopback: MTU 1500, netem 20 ms + 50 Mbit/s), re-run
    this script inside it for the WAN condition, delete it. Returns the
    child's result, or {"skipped": why}.
    """
    why = wan_unavailable()
    if why:
        log(f"WAN: skipped: {why}")
        return {"skipped": why}
    if NETNS in sh("ip", "netns", "list").split():
        delete_netns()  # left by an interrupted run of this bench
    child_json = os.path.join(args.work, "wan-result.json")
    if os.path.exists(child_json):
        os.unlink(child_json)
    try:
        sh("ip", "netns", "add", NETNS)
        sh("ip", "-n", NETNS, "link", "set", "lo", "mtu", "1500")
        sh("ip", "-n", NETNS, "link", "set", "lo", "up")
        try:
            sh("tc", "-n", NETNS, "qdisc", "add", "dev", "lo", "root", "netem",
               "delay", f"{WAN_DELAY_MS}ms", "rate", WAN_RATE, "limit", "10000")
        except RuntimeError as e:
            return {"netem_unavailable": str(e)}
        qdisc = sh("tc", "-n", NETNS, "qdisc", "show", "dev", "lo").strip()
        ping = subprocess.run(["ip", "netns", "exec", NETNS, "ping", "-c", "3", "-i", "0.2",
                               "127.0.0.1"], capture_output=True, text=True, timeout=30).stdout
        rtt = re.search(r"= ([\d.]+)/([\d.]+)/", ping)
        log(f"WAN: namespace {NETNS}, {qdisc}; ping RTT avg {rtt.group(2) if rtt else '?'} ms")
        cmd = ["ip", "netns", "exec", NETNS, sys.executable, os.path.abspath(__file__),
               *argv, "--inside-wan", child_json]
        proc = subprocess.run(cmd, timeout=args.timeout * 8 * args.rounds * 5 + 3600)
        try:
            with open(child_json) as f:
                child = json.load(f)
        except (OSError, ValueError):
            return {"skipped": f"the run inside the namespace failed ({proc.returncode}), "
                               f"no results"}
        child["link"] = {"namespace": NETNS, "qdisc": qdisc, "lo_mtu": 1500,
                         "ping_rtt_avg_ms": float(rtt.group(2)) if rtt else None,
                         "model": f"{WAN_DELAY_MS} ms each way (netem on the namespace's "
                                  f"loopback, which every packet crosses once), {WAN_RATE} "
                                  f"shared by both directions"}
        return child
    finally:
        delete_netns()


# -- report ----------------------------------------------------------------------------

def fmt_s(v):
    return "-" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}")


def markdown(res):
    lines = [f"# End-to-end client wall time ({res['date']})", "",
             "What a user waits for: one pip or uv command from a cold client cache "
             "(a fresh cache folder per run), against each server holding the same files. "
             "Seconds: median [min–max] over the rounds, then the ratio to ppypi's median "
             "in the same run (> 1: slower than ppypi).", ""]
    st = res["settings"]
    lines.append(f"Corpus: {st['corpus']['tree_projects']}-project dependency tree x "
                 f"{len(st['corpus']['tree_versions'])} versions + filler "
                 f"{st['corpus']['fill_projects']} x {st['corpus']['fill_versions']} "
                 f"({st['corpus']['files']} wheels). {st['rounds']} alternating rounds.")
    lines.append("")
    for cond, data in res["conditions"].items():
        lines.append(f"## {cond}")
        lines.append("")
        if "skipped" in data:
            lines += [f"Skipped: {data['skipped']}", ""]
            continue
        if data.get("link"):
            rtt = data["link"].get("ping_rtt_avg_ms")
            lines += [f"Link: {data['link']['model']}"
                      + (f"; measured ping RTT {rtt} ms." if rtt else "."), ""]
        names = [n for n, t in data["targets"].items() if "skipped" not in t]
        lines.append("| scenario | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for s, cells in data["scenarios"].items():
            row = [SCENARIO_TITLES.get(s, s).format(**st["corpus"])]
            for n in names:
                c = cells.get(n)
                if not c or c["median_s"] is None:
                    row.append("FAILED" if c and c["failures"] else "-")
                    continue
                text = f"{fmt_s(c['median_s'])} [{fmt_s(c['min_s'])}–{fmt_s(c['max_s'])}]"
                if n != "ppypi" and c.get("ratio_to_ppypi"):
                    text += f" ×{c['ratio_to_ppypi']:.2f}"
                if c["failures"]:
                    text += f" ({len(c['failures'])} failed)"
                if c.get("other_cpu_pct") and statistics.median(c["other_cpu_pct"]) > 25:
                    text += " †"
                row.append(text)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        busy = [c2 for cells in data["scenarios"].values() for c2 in cells.values()
                if c2.get("other_cpu_pct")]
        if busy:
            allp = sorted(p for c2 in busy for p in c2["other_cpu_pct"])
            lines += [f"Other work on the machine during the runs (its share of the CPUs, not "
                      f"the servers' nor the clients'): median {statistics.median(allp):.0f}%, "
                      f"max {allp[-1]:.0f}%; † marks a cell whose runs had a median over 25%.", ""]
        skipped = {n: t["skipped"] for n, t in data["targets"].items() if "skipped" in t}
        for n, why in skipped.items():
            lines.append(f"- {n} skipped: {why[:400]}")
        if skipped:
            lines.append("")
        if cond == "loopback":
            lines += [f"Bytes a client receives for the {st['corpus']['fill_versions']}-version page "
                      f"(`{res['settings']['download_project']}`):", "",
                      "| target | as pip asks | as uv asks | text/html, no gzip |", "|---|---|---|---|"]
            for n in names:
                pb = data["targets"][n].get("page_bytes", {}).get("download_project", {})
                cells = []
                for k in ("pip", "uv", "html_identity"):
                    p = pb.get(k, {})
                    cells.append(f"{p.get('bytes', '?'):,} B {p.get('content_type', '')}"
                                 f"{' gzip' if p.get('content_encoding') == 'gzip' else ''}"
                                 if "bytes" in p else "?")
                lines.append(f"| {n} | " + " | ".join(cells) + " |")
            lines.append("")
        if data.get("failures"):
            lines.append("Failures:")
            lines += [f"- {f[:500]}" for f in data["failures"][:20]]
            lines.append("")
    lines += ["## Versions", "", f"- clients: pip {res['clients']['pip']}, uv {res['clients']['uv']} "
              f"(Python {res['clients']['python']}, from ppypi's virtualenv)"]
    seen = {}
    for data in res["conditions"].values():
        for n, t in data.get("targets", {}).items():
            if t.get("versions"):
                seen.setdefault(n, t)
    for n, t in seen.items():
        lines.append(f"- {n}: " + ", ".join(f"{k} {v}" for k, v in t["versions"].items())
                     + f"; `{t.get('command', '')}`")
    m = res["machine"]
    lines += [f"- machine: {m['cpu_model']}, {m['cpus_usable']} CPUs, Linux {m['kernel']}, "
              f"ppypi {m['ppypi_revision']}", ""]
    return "\n".join(lines) + "\n"


def python_with_matplotlib(venvs):
    candidates = [sys.executable, os.path.join(venvs, "pypiserver", "bin", "python"),
                  os.path.join(HERE, "out", "pypiserver-venv", "bin", "python")]
    for python in candidates:
        if os.path.exists(python) and subprocess.run(
                [python, "-c", "import matplotlib"], capture_output=True, timeout=120).returncode == 0:
            return python
    return None


PLOT = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
res = json.load(open(sys.argv[1]))
conds = [(c, d) for c, d in res["conditions"].items() if "scenarios" in d]
fig, axes = plt.subplots(1, max(1, len(conds)), figsize=(6.5 * max(1, len(conds)), 4.6), squeeze=False)
for ax, (cond, data) in zip(axes[0], conds):
    scen = list(data["scenarios"])
    names = [n for n, t in data["targets"].items() if "skipped" not in t]
    width = 0.8 / max(1, len(names))
    for k, n in enumerate(names):
        med, lo, hi = [], [], []
        for s in scen:
            c = data["scenarios"][s].get(n) or {}
            m = c.get("median_s") or 0
            med.append(m)
            lo.append(m - (c.get("min_s") or m))
            hi.append((c.get("max_s") or m) - m)
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(scen))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=n)
    ax.set_xticks(range(len(scen)))
    ax.set_xticklabels(scen)
    ax.set_yscale("log")  # pypiserver is 100x the others: a linear axis hides them
    ax.set_ylabel("seconds (median, min-max), log scale")
    ax.set_title(f"{cond}: client wall time, cold cache")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=120)
"""


# -- main --------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="one round, a 10-project tree, 2 x 30 filler, ppypi and the static tree")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5)")
    ap.add_argument("--wan", action="store_true",
                    help="also over a simulated WAN link (20 ms each way, 50 Mbit/s; root only)")
    ap.add_argument("--peers", default=None,
                    help=f"targets, comma-separated (default {','.join(et.ALL)}; "
                         "ppypi,nginx with --quick)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--out", default=os.path.join(HERE, "results-e2e"))
    ap.add_argument("--work", default=os.path.join(HERE, "out", "e2e"),
                    help="corpus, server data, virtualenvs and logs (default bench/out/e2e)")
    ap.add_argument("--venvs", default=None, help="the peers' virtualenvs (default WORK/venvs)")
    ap.add_argument("--tree", type=int, default=None, help="tree projects (30; 10 with --quick)")
    ap.add_argument("--fill", default=None,
                    help="filler PROJECTSxVERSIONS (10x1000; 2x30 with --quick)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per client run")
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="before each client run, wait up to this many seconds for the servers "
                         "to be idle and other work to use < 10%% of the CPUs (default 15; "
                         "0 with --quick)")
    ap.add_argument("--static-server", choices=("nginx", "http.server", "auto"), default=None,
                    help="what serves the static tree: nginx (default), python -m http.server, "
                         "or auto: nginx where installed, else http.server (the default with --quick)")
    ap.add_argument("--inside-wan", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 5)
    if a.quiet_wait is None:
        a.quiet_wait = 0 if a.quick else 15
    a.tree = a.tree or (10 if a.quick else 30)
    fill = a.fill or ("2x30" if a.quick else "10x1000")
    try:
        a.fill_projects, a.fill_versions = (int(x) for x in fill.lower().split("x"))
    except ValueError:
        ap.error("--fill takes PROJECTSxVERSIONS, e.g. 10x1000")
    if a.tree < 4 or a.fill_projects < 1 or a.fill_versions < 1:
        ap.error("--tree must be at least 4, --fill at least 1x1")
    a.peers = [p.strip() for p in (a.peers or ("ppypi,nginx" if a.quick else ",".join(et.ALL))).split(",")
               if p.strip()]
    for p in a.peers:
        if p not in et.ALL and p != "static":
            ap.error(f"--peers: unknown {p!r} (known: {', '.join(et.ALL)})")
    if "ppypi" not in a.peers:
        a.peers.insert(0, "ppypi")
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for s in a.scenarios:
        if s not in SCENARIOS:
            ap.error(f"--scenarios: unknown {s!r}")
    a.static_server = a.static_server or ("auto" if a.quick else "nginx")
    a.work = os.path.abspath(a.work)
    a.out = os.path.abspath(a.out)
    a.venvs = os.path.abspath(a.venvs or os.path.join(a.work, "venvs"))
    return a


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    corpus = ec.Corpus(os.path.join(args.work, "work"), args.tree, args.fill_projects,
                       args.fill_versions)
    work = os.path.join(args.work, "work")
    corpus.ensure(log)
    if args.inside_wan:
        # The child of wan_condition: in the namespace, the WAN condition only.
        data = measure(args, corpus, args.peers, "wan", work)
        with open(args.inside_wan, "w") as f:
            json.dump(data, f)
        return 0
    started = time.monotonic()
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "clients": client_versions(),
           "settings": {"rounds": args.rounds, "peers": args.peers, "scenarios": args.scenarios,
                        "quick": args.quick, "corpus": corpus.describe(),
                        "download_project": corpus.download_project,
                        "root_project": corpus.root_project,
                        "expected_tree": corpus.expected(), "client_timeout_s": args.timeout,
                        "scenario_commands": {
                            "pip-download": "pip download --no-deps --cache-dir FRESH "
                                            "--index-url URL -d DEST " + corpus.download_project,
                            "pip-install": "pip --python FRESH_VENV/bin/python install "
                                           "--cache-dir FRESH --index-url URL " + corpus.root_project,
                            "uv-install": "uv pip install --python FRESH_VENV/bin/python "
                                          "--cache-dir FRESH --index-url URL " + corpus.root_project,
                            "uv-lock": "uv lock --directory FRESH_PROJECT --cache-dir FRESH "
                                       "--default-index URL --python PYTHON "
                                       "(UV_NO_CONFIG=1, UV_LINK_MODE=copy)"}},
           "conditions": {}}
    log(f"clients: {res['clients']}; machine: {res['machine']}")
    try:
        res["conditions"]["loopback"] = measure(args, corpus, args.peers, "loopback", work)
        if args.wan:
            child_argv = [a for a in argv if a != "--wan"]
            wan = wan_condition(args, child_argv)
            if "netem_unavailable" in wan:
                # A kernel without netem: the link in user space instead.
                log(f"WAN: tc netem unavailable ({wan['netem_unavailable']}); "
                    f"a simulated link in user space (bench/e2e_link.py) instead")
                wan = measure(args, corpus, args.peers, "wan", work, link=True)
                wan["link"] = {"model": f"bench/e2e_link.py in front of each server: "
                                        f"{WAN_DELAY_MS} ms each way, {WAN_RATE} each "
                                        f"direction per connection, the TCP handshake as "
                                        f"3 one-way delays before the first bytes; no "
                                        f"loss, no slow start (tc netem is not in this "
                                        f"kernel)"}
            res["conditions"]["wan"] = wan
    finally:
        stop_all()
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    failures = [f for d in res["conditions"].values() for f in d.get("failures", [])]
    skipped = [f"{n}: {t['skipped']}" for d in res["conditions"].values()
               for n, t in d.get("targets", {}).items() if "skipped" in t]
    if "ppypi" in {n for d in res["conditions"].values() for n, t in d.get("targets", {}).items()
                   if "skipped" in t}:
        failures.append("ppypi could not be started")
    res["failures"] = failures
    res["ok"] = not failures and not (args.quick and skipped)
    os.makedirs(args.out, exist_ok=True)
    text = markdown(res)
    print()
    print(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    python = None if args.quick else python_with_matplotlib(args.venvs)
    if python:
        png = os.path.join(args.out, "e2e.png")
        done = subprocess.run([python, "-c", PLOT, os.path.join(args.out, "results.json"), png],
                              timeout=300, capture_output=True, text=True)
        log(f"plot: {png}" if done.returncode == 0 else f"plot failed: {done.stderr[-500:]}")
    log(f"results: {args.out}/results.md, results.json ({res['elapsed_s']}s)")
    if not res["ok"]:
        log(f"FAILED: {failures[:5]} {skipped if args.quick else ''}")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        print("interrupted: every server was stopped", file=sys.stderr)
        sys.exit(130)
