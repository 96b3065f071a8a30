#!/usr/bin/env python3
"""
A load test of a live ppypi: correctness under concurrency, with latencies.

    python bench/load_test.py [--clients 64] [--duration 30] [--root DIR]

starts a zero-configuration ppypi (twistd -n ppypi) on a free loopback port
over a small corpus of wheels, runs CLIENTS threads, each with one keep-alive
http.client connection, for DURATION seconds, each request one of:

    simple     GET /simple/                      200, lists the projects
    project    GET /simple/NAME/                 200, no filename twice
    download   GET a link of a project page      200, sha256 as the link says
    upload     POST / a fresh unique wheel       200 (with the upload token)
    missing    GET /simple/NAME/ of no project   404 (the extra index is off)

and at the end checks that every uploaded file is listed exactly once (with
its sha256) and stored exactly once on disk, that no page lists a file
twice, that /health counts what is on disk, and that nothing partial is left.
It prints totals and p50/p99 per kind of request (and a SUMMARY line of
JSON), and exits 1 on any problem (2 if the server did not start).

Bounded: the run stops at its deadline (and after --max-requests), every
request has a timeout, only 127.0.0.1 is addressed, and the daemon is
stopped in a finally.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

from corpus import wheel_bytes  # bench/corpus.py: the tests' own wheel writer

HOST = "127.0.0.1"
KINDS = ("simple", "project", "download", "upload", "missing")
WEIGHTS = {"simple": 15, "project": 35, "download": 35, "upload": 10, "missing": 5}
LINK = re.compile(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})"[^>]*>([^<]+)</a>')
PROJECT_LINK = re.compile(r'<a href="[^"]*">([^<]+)</a>')
MAX_ERRORS_SHOWN = 20


# -- uploads ----------------------------------------------------------------------


def upload_body(dist, version, data):
    """The multipart body twine sends: (content type, body)."""
    boundary = uuid.uuid4().hex
    filename = f"{dist}-{version}-py3-none-any.whl"
    fields = [(":action", "file_upload"), ("protocol_version", "1"),
              ("name", dist.replace("_", "-")), ("version", version),
              ("filetype", "bdist_wheel"), ("pyversion", "py3"), ("metadata_version", "2.1"),
              ("sha256_digest", hashlib.sha256(data).hexdigest())]
    out = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
           for k, v in fields]
    out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
               f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
               .encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(out)


def write_corpus(folder, projects, versions):
    os.makedirs(folder, exist_ok=True)
    for i in range(projects):
        dist = f"load_base_{i:04d}"
        for v in range(versions):
            with open(os.path.join(folder, f"{dist}-1.{v}.0-py3-none-any.whl"), "wb") as f:
                f.write(wheel_bytes(dist, f"1.{v}.0"))
    return projects * versions


# -- the daemon ---------------------------------------------------------------------


def twistd_command():
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class Server:
    def __init__(self, root, log_path):
        self.root = root
        self.log_path = log_path
        self.proc = None
        self.port = None

    def start(self, timeout=60):
        self.log = open(self.log_path, "ab")
        cmd = twistd_command() + ["-n", "--pidfile=", "ppypi", "--root", self.root,
                                  "--listen", f"tcp:0:interface={HOST}",
                                  "--extra-index-url", ""]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.proc.returncode}:\n{self.tail()}")
            m = re.search(r"Site starting on (\d+)", self.text())
            if m:
                self.port = int(m.group(1))
            elif time.monotonic() > deadline:
                raise RuntimeError(f"twistd did not listen within {timeout}s:\n{self.tail()}")
            else:
                time.sleep(0.05)
        while True:
            health = self.health()
            if health and all(r["last_sync"] for r in health["repositories"].values()):
                return health
            if time.monotonic() > deadline:
                raise RuntimeError(f"no first sync within {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self, n=40):
        return "\n".join(self.text().splitlines()[-n:])

    def health(self):
        try:
            status, _, body = fetch(self.port, "GET", "/health")
        except OSError:
            return None
        return json.loads(body) if status in (200, 503) else None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if self.proc is not None:
            self.log.close()


def fetch(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def parse_links(page_path, html):
    """{filename: (absolute path, sha256)} and the filenames in page order."""
    links, names = {}, []
    for href, sha, name in LINK.findall(html):
        path = urllib.parse.urljoin(page_path, href)
        names.append(name)
        links[name] = (path, sha)
    return links, names


# -- the load -----------------------------------------------------------------------


class Shared:
    """What the clients know and found, behind one lock."""

    def __init__(self, projects, links):
        self.lock = threading.Lock()
        self.projects = list(projects)
        self.links = dict(links)              # filename -> (path, sha256)
        self.link_names = list(links)
        self.uploaded = {}                    # filename -> (project, sha256)
        self.latencies = {k: [] for k in KINDS}
        self.statuses = {k: {} for k in KINDS}
        self.errors = []
        self.error_count = 0
        self.requests = 0

    def error(self, message):
        with self.lock:
            self.error_count += 1
            if len(self.errors) < MAX_ERRORS_SHOWN:
                self.errors.append(message)

    def learn(self, links):
        with self.lock:
            for name, link in links.items():
                if name not in self.links:
                    self.link_names.append(name)
                self.links[name] = link


def client(n, port, token, shared, deadline, max_requests, seed):
    rng = random.Random(seed * 1000 + n)
    auth = "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    conn = None
    count = 0
    while time.monotonic() < deadline:
        with shared.lock:
            if shared.requests >= max_requests:
                break
            shared.requests += 1
            projects = shared.projects
            project = projects[rng.randrange(len(projects))]
            name = shared.link_names[rng.randrange(len(shared.link_names))]
            link = shared.links[name]
        kind = rng.choices(kinds, weights)[0]
        body, headers, expect = None, {}, 200
        if kind == "simple":
            method, path = "GET", "/simple/"
        elif kind == "project":
            method, path = "GET", f"/simple/{project}/"
        elif kind == "download":
            method, path = "GET", link[0]
        elif kind == "missing":
            method, path, expect = "GET", f"/simple/no-such-project-{rng.randrange(10**9)}/", 404
        else:
            count += 1
            # Half new projects, half new versions of one shared project.
            if count % 2:
                dist, version = f"load_c{n:03d}_{count:05d}", "1.0"
            else:
                dist, version = "load_shared", f"2.{n}.{count}"
            data = wheel_bytes(dist, version, payload=os.urandom(rng.randrange(64, 4096)))
            ctype, body = upload_body(dist, version, data)
            method, path = "POST", "/"
            headers = {"Content-Type": ctype, "Authorization": auth}
            filename = f"{dist}-{version}-py3-none-any.whl"
        if conn is None:
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data_in = r.read()
            status = r.status
            if r.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            conn = None
            shared.error(f"{kind} {method} {path}: {type(e).__name__}: {e}")
            continue
        elapsed = time.perf_counter() - started
        with shared.lock:
            shared.latencies[kind].append(elapsed)
            shared.statuses[kind][status] = shared.statuses[kind].get(status, 0) + 1
        if status != expect:
            shared.error(f"{kind} {method} {path}: {status} (expected {expect}): "
                         f"{data_in[:200]!r}")
            continue
        if kind == "simple":
            if not PROJECT_LINK.search(data_in.decode("utf-8", "replace")):
                shared.error("simple: no project listed")
        elif kind == "project":
            links, names = parse_links(path, data_in.decode("utf-8", "replace"))
            if not names or len(names) != len(set(names)):
                shared.error(f"project {path}: {len(names)} links, "
                             f"{len(names) - len(set(names))} listed twice")
            shared.learn(links)
        elif kind == "download":
            if hashlib.sha256(data_in).hexdigest() != link[1]:
                shared.error(f"download {path}: sha256 is not the link's")
        elif kind == "upload":
            project_name = dist.replace("_", "-")
            with shared.lock:
                if filename in shared.uploaded:
                    shared.error(f"upload {filename}: made twice")
                shared.uploaded[filename] = (project_name, hashlib.sha256(data).hexdigest())
                if project_name not in shared.projects:
                    shared.projects = shared.projects + [project_name]
    if conn is not None:
        conn.close()


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


# -- the checks after the load ------------------------------------------------------------


def verify(port, root, shared, initial_files):
    problems = []
    # Every project page: no filename twice; every uploaded file exactly once, right hash.
    status, _, body = fetch(port, "GET", "/simple/")
    if status != 200:
        return [f"/simple/ answered {status} after the load"]
    projects = PROJECT_LINK.findall(body.decode())
    if len(projects) != len(set(projects)):
        problems.append("/simple/ lists a project twice")
    listed = {}
    for project in projects:
        path = f"/simple/{project}/"
        status, _, page = fetch(port, "GET", path)
        if status != 200:
            problems.append(f"{path}: {status}")
            continue
        links, names = parse_links(path, page.decode())
        for name in set(names):
            if names.count(name) != 1:
                problems.append(f"{path} lists {name} {names.count(name)} times")
        for name, (_, sha) in links.items():
            listed.setdefault(name, []).append((project, sha))
    for filename, (project, sha) in shared.uploaded.items():
        entries = listed.get(filename, [])
        if entries != [(project, sha)]:
            problems.append(f"uploaded {filename} listed as {entries}, not once in {project}")
    # On disk: every uploaded file exactly once, with its bytes; nothing partial.
    on_disk = {}
    partial = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        if rel == ".ppypi" or rel.startswith(".ppypi" + os.sep):
            partial += [os.path.join(rel, f) for f in files
                        if rel.endswith(("incoming", "tmp")) or ".tmp-" in f]
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".") or d == ".ppypi"]
        for f in files:
            if f.endswith(".whl"):
                on_disk.setdefault(f, []).append(os.path.join(folder, f))
    for filename, (project, sha) in shared.uploaded.items():
        paths = on_disk.get(filename, [])
        if len(paths) != 1:
            problems.append(f"uploaded {filename} stored {len(paths)} times: {paths}")
            continue
        with open(paths[0], "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != sha:
                problems.append(f"uploaded {filename}: bytes on disk are not the upload's")
    twice = [f for f, paths in on_disk.items() if len(paths) > 1]
    if twice:
        problems.append(f"stored more than once: {twice[:5]}")
    if partial:
        problems.append(f"partial files left: {partial[:5]}")
    expected = initial_files + len(shared.uploaded)
    if len(on_disk) != expected:
        problems.append(f"{len(on_disk)} files on disk, expected {expected}")
    status, _, body = fetch(port, "GET", "/health")
    files = json.loads(body)["repositories"]["default"]["files"] if status == 200 else None
    if files != len(on_disk):
        problems.append(f"/health: {status}, {files} files; {len(on_disk)} on disk")
    if len(listed) != len(on_disk):
        problems.append(f"{len(listed)} files listed, {len(on_disk)} on disk")
    return problems


def report(shared, seconds, clients):
    rows = []
    total = sum(len(v) for v in shared.latencies.values())
    print(f"\n{clients} clients, {seconds:.1f} s, {total} requests, "
          f"{total / seconds:.0f} requests/s, {shared.error_count} errors")
    print(f"{'kind':<10}{'requests':>10}{'per s':>9}{'p50_ms':>10}{'p99_ms':>10}"
          f"{'max_ms':>10}  statuses")
    summary = {"clients": clients, "seconds": round(seconds, 2), "requests": total,
               "errors": shared.error_count, "uploads": len(shared.uploaded), "kinds": {}}
    for kind in KINDS:
        values = shared.latencies[kind]
        p50, p99 = percentile(values, 50), percentile(values, 99)
        ms = lambda v: f"{v * 1000:.1f}" if v is not None else "-"   # noqa: E731
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(shared.statuses[kind].items()))
        rows.append(f"{kind:<10}{len(values):>10}{len(values) / seconds:>9.0f}{ms(p50):>10}"
                    f"{ms(p99):>10}{ms(max(values) if values else None):>10}  {statuses}")
        summary["kinds"][kind] = {
            "requests": len(values), "statuses": shared.statuses[kind],
            "p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 2) if p99 is not None else None}
    print("\n".join(rows))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--root", help="the ppypi ROOT (default: a temporary folder, removed after)")
    p.add_argument("--projects", type=int, default=20, help="projects in the starting corpus")
    p.add_argument("--versions", type=int, default=3, help="versions of each")
    p.add_argument("--max-requests", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 1024:
        p.error("--clients must be 1-1024")
    if not 0 < args.duration <= 3600:
        p.error("--duration must be more than 0 and at most 3600 seconds")

    work = tempfile.mkdtemp(prefix="ppypi-load-")
    root = os.path.abspath(args.root) if args.root else os.path.join(work, "root")
    server = Server(root, os.path.join(work, "twistd.log"))
    try:
        write_corpus(root, args.projects, args.versions)
        try:
            health = server.start()
        except RuntimeError as e:
            print(f"load_test: the server did not start: {e}", file=sys.stderr)
            return 2
        initial = health["repositories"]["default"]["files"]
        token = open(os.path.join(root, ".ppypi", "upload-token")).read().strip()
        print(f"ppypi on {HOST}:{server.port}, ROOT {root}, {initial} files; "
              f"{args.clients} clients for {args.duration:g} s")
        # What the clients start from: the projects and their links.
        status, _, body = fetch(server.port, "GET", "/simple/")
        projects = PROJECT_LINK.findall(body.decode())
        links = {}
        for project in projects:
            path = f"/simple/{project}/"
            links.update(parse_links(path, fetch(server.port, "GET", path)[2].decode())[0])
        if status != 200 or not projects or not links:
            print(f"load_test: nothing to load: /simple/ {status}, {len(links)} links",
                  file=sys.stderr)
            return 1
        shared = Shared(projects, links)
        started = time.monotonic()
        deadline = started + args.duration
        threads = [threading.Thread(target=client, daemon=True,
                                    args=(n, server.port, token, shared, deadline,
                                          args.max_requests, args.seed))
                   for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, deadline - time.monotonic()) + 60)
        seconds = time.monotonic() - started
        hung = sum(t.is_alive() for t in threads)
        if hung:
            shared.error(f"{hung} clients still waiting 60 s after the deadline")
        summary = report(shared, seconds, args.clients)
        problems = verify(server.port, root, shared, initial)
        print(f"uploads: {len(shared.uploaded)} files, each checked: listed once with its "
              f"sha256, stored once on disk")
        if server.proc.poll() is not None:
            problems.append(f"the server exited with {server.proc.returncode}")
        if "Unhandled Error" in server.text() or "Traceback" in server.text():
            problems.append("the server logged a traceback:\n" + server.tail())
        problems = shared.errors + problems
        summary["problems"] = len(problems) + max(0, shared.error_count - len(shared.errors))
        print("SUMMARY " + json.dumps(summary, sort_keys=True))
        if shared.error_count or problems:
            print(f"\nFAILED: {shared.error_count} request errors, "
                  f"{len(problems) - len(shared.errors)} problems found after the load")
            for problem in problems[:2 * MAX_ERRORS_SHOWN]:
                print("  " + problem)
            return 1
        print("\nOK")
        return 0
    finally:
        server.stop()
        if not args.root:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"(twistd log: {server.log_path})")


if __name__ == "__main__":
    sys.exit(main())
