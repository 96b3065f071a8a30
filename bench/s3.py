"""
The s3 backend's costs, against a real moto_server on loopback:

    python bench/s3.py [--projects 3,300] [--uploads 20] [--syncs 20]
                       [--duration 5] [--concurrency 16] [--out bench/out-s3]

For each number of projects it makes a fresh bucket (a user holding exactly
the least IAM policy; moto checks SigV4 and IAM), fills it with one wheel
per project through `ppypi copy` from a folder, and measures through the
counting forwarder of tests/s3_server.py, in process (botocore as the
daemon runs it):

  - a fresh server's first sync, an idle sync and a sync after one other
    server's upload: requests and milliseconds (median of --syncs; in
    process the documents are fetched one at a time, the daemon fetches 8
    at once: its start with an empty ROOT is measured below);
  - an upload: requests and milliseconds (median of --uploads, each a new
    version of a random project).

Then, with the largest bucket, three daemons side by side: filesystem (the
same wheels in a folder), s3 with `downloads: redirect` and s3 with
`downloads: proxy`, each driven by wrk (else bench/load.py) for
/simple/NAME/ and for small downloads (a redirect's 302; a proxy's whole
file, fetched from moto, which is slow Python: the proxy figure is moto's).

moto is not S3: its latency is loopback plus Python, a real store's is
milliseconds to tens of milliseconds a request, so the request counts are
what carries over; the times are for comparing runs of this script.

Writes OUT/results.md and OUT/results.json.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from load import measure  # noqa: E402
from twisted.internet.defer import Deferred, maybeDeferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from ppypi.backends import registry  # noqa: E402
from ppypi.config import load_admin_secret, load_config  # noqa: E402
from ppypi.copy import check_file  # noqa: E402
from ppypi.domain import UploadedFile  # noqa: E402
from tests.corpus import make_corpus, wheel_bytes  # noqa: E402
from tests.s3_server import Forwarder, MotoServer  # noqa: E402

BIN = os.path.dirname(sys.executable)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_now(f, *args, **kwargs):
    return maybeDeferred(f, *args, **kwargs)


def wait(work, clock):
    d = Deferred.fromCoroutine(_await(work))
    for _ in range(1000):
        if d.called:
            break
        clock.advance(0.1)  # a compare-and-swap's pause, if any
    out = []
    d.addBoth(out.append)
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


async def _await(work):
    return await work


def repository_yaml(name, bucket, endpoint_url, downloads="redirect", sync_interval=60):
    return (f"  {name}: {{type: s3, bucket: {bucket.bucket}, prefix: {bucket.prefix}, "
            f"endpoint_url: '{endpoint_url}', region: {bucket.region}, "
            f"addressing_style: path, downloads: {downloads}, read: anyone, "
            f"sync_interval: {sync_interval}}}\n")


def secret_yaml(name, bucket):
    return (f"{name}: {{access_key_id: {bucket.access_key_id}, "
            f"secret_access_key: {bucket.secret_access_key}}}\n")


class InProcess:
    """A backend as the daemon makes it, synchronous (botocore in this thread)."""

    def __init__(self, root, bucket, endpoint_url):
        self.clock = Clock()
        config = load_config("repositories:\n" + repository_yaml("st", bucket, endpoint_url),
                             root, is_text=True)
        load_admin_secret(secret_yaml("st", bucket), config, is_text=True)
        rc, = config.repositories
        self.backend = registry.create(registry.BackendContext(
            config=rc, state_dir=os.path.join(root, "state"), run_in_thread=run_now,
            clock=self.clock, http=None, others=[], on_retry=None))
        self.backend.prepare()

    def run(self, work):
        return wait(work, self.clock)

    def upload(self, path):
        import hashlib
        with open(path, "rb") as f:
            data = f.read()
        incoming = os.path.join(self.backend.incoming_dir, "bench.part")
        with open(incoming, "wb") as f:
            f.write(data)
        upload = UploadedFile(os.path.basename(path), incoming, len(data),
                              hashlib.sha256(data).hexdigest())
        try:
            return self.run(self.backend.store(upload, check_file(upload)))
        finally:
            upload.discard()


def timed(f):
    start = time.perf_counter()
    f()
    return (time.perf_counter() - start) * 1000


def costs(moto, projects, uploads, syncs, work):
    """Requests and ms of syncs and uploads with C{projects} projects in the bucket."""
    bucket = moto.make_bucket()
    forwarder = Forwarder(moto.endpoint_url).start()
    through = forwarder.trust_bucket(bucket)
    folder = os.path.join(work, f"corpus-{projects}")
    shutil.rmtree(folder, ignore_errors=True)
    make_corpus(folder, projects=projects, versions=1, prefix="S3b")
    root = os.path.join(work, f"copy-root-{projects}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    config = os.path.join(work, f"copy-{projects}.yaml")
    secret = os.path.join(work, f"copy-{projects}-secret.yaml")
    with open(config, "w") as f:
        f.write(f"repositories:\n  local: {{type: filesystem, path: {folder}}}\n"
                + repository_yaml("store", bucket, moto.endpoint_url))
    with open(secret, "w") as f:
        f.write(secret_yaml("store", bucket))
    started = time.perf_counter()
    out = subprocess.run([os.path.join(BIN, "ppypi"), "copy", "--root", root, "--config",
                          config, "--admin-secret", secret, "local", "store"],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"ppypi copy failed: {out.stdout}{out.stderr}")
    fill_seconds = time.perf_counter() - started
    log(f"{projects} projects: filled by ppypi copy in {fill_seconds:.1f}s")

    result = {"projects": projects, "fill_seconds": round(fill_seconds, 2)}
    reader = InProcess(os.path.join(work, f"reader-{projects}"), through,
                       through.endpoint_url)
    writer = InProcess(os.path.join(work, f"writer-{projects}"), through,
                       through.endpoint_url)
    writer.run(writer.backend.list_files())

    forwarder.reset()
    ms = timed(lambda: reader.run(reader.backend.list_files()))
    result["first_sync"] = {"requests": len(forwarder.requests), "ms": round(ms, 1)}

    times, counts = [], []
    for _ in range(syncs):
        forwarder.reset()
        times.append(timed(lambda: reader.run(reader.backend.list_files())))
        counts.append(len(forwarder.requests))
    result["idle_sync"] = {"requests": statistics.median(counts),
                           "ms": round(statistics.median(times), 2)}

    names = sorted(n for n in os.listdir(folder) if n.endswith(".whl"))
    upload_dir = os.path.join(work, f"uploads-{projects}")
    os.makedirs(upload_dir, exist_ok=True)
    rng = random.Random(projects)
    times, counts, changed_times, changed_counts = [], [], [], []
    for i in range(uploads):
        dist = rng.choice(names).split("-")[0]
        path = os.path.join(upload_dir, f"{dist}-9.{i}.0-py3-none-any.whl")
        with open(path, "wb") as f:
            f.write(wheel_bytes(dist, f"9.{i}.0"))
        forwarder.reset()
        times.append(timed(lambda: writer.upload(path)))
        counts.append(len(forwarder.requests))
        forwarder.reset()
        changed_times.append(timed(lambda: reader.run(reader.backend.list_files())))
        changed_counts.append(len(forwarder.requests))
    result["upload"] = {"requests": statistics.median(counts),
                        "ms": round(statistics.median(times), 1)}
    result["changed_sync"] = {"requests": statistics.median(changed_counts),
                              "ms": round(statistics.median(changed_times), 1)}
    forwarder.stop()
    log(f"{projects} projects: {json.dumps(result)}")
    return result, bucket, folder


class Daemon:
    def __init__(self, work, name, args):
        self.root = os.path.join(work, f"daemon-{name}")
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)
        self.log_path = os.path.join(work, f"daemon-{name}.log")
        self.args = args
        self.proc = None
        self.port = None

    def start(self, timeout=300):
        began = time.perf_counter()
        self.logfile = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "ppypi", "--root", self.root,
             "--listen", "tcp:0:interface=127.0.0.1", "--extra-index-url", "", *self.args],
            stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            m = re.search(r"Site starting on (\d+)", text)
            if m and "files in" in text:
                self.port = int(m.group(1))
                self.started_in = time.perf_counter() - began
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the daemon did not start:\n{text[-3000:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logfile.close()


def throughput(moto, bucket, folder, work, duration, concurrency):
    """/simple/NAME/ and small downloads: filesystem, s3 redirect, s3 proxy."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".whl"))[:1000]
    projects = [n.split("-")[0].replace("_", "-").lower() for n in names]
    pages = [f"/simple/{p}/" for p in projects]
    files = [f"/packages/{p}/{n}" for p, n in zip(projects, names)]
    results = {}
    for kind in ("filesystem", "s3-redirect", "s3-proxy"):
        config = os.path.join(work, f"daemon-{kind}.yaml")
        secret = os.path.join(work, f"daemon-{kind}-secret.yaml")
        if kind == "filesystem":
            text = f"repositories:\n  default: {{type: filesystem, path: {folder}}}\n"
            args = ["--config", config]
        else:
            text = "repositories:\n" + repository_yaml(
                "default", bucket, moto.endpoint_url, downloads=kind.split("-")[1])
            with open(secret, "w") as f:
                f.write(secret_yaml("default", bucket))
            args = ["--config", config, "--admin-secret", secret]
        with open(config, "w") as f:
            f.write(text)
        daemon = Daemon(work, kind, args).start()
        try:
            results[kind] = {
                "cold_start_seconds": round(daemon.started_in, 2),
                "simple_project": measure(daemon.port, pages, duration, concurrency),
                "download": measure(daemon.port, files, duration, concurrency),
            }
        finally:
            daemon.stop()
        log(f"{kind}: {results[kind]['simple_project'].get('rps')} pages/s, "
            f"{results[kind]['download'].get('rps')} downloads/s")
    return results


def markdown(run):
    lines = [f"# The s3 backend's costs ({run['date']}, moto {run['moto']}, "
             f"botocore {run['botocore']})", "",
             "Requests are what carries over to a real store; times are moto's on loopback.",
             "", "| projects | first sync | idle sync | sync after an upload | upload |",
             "|---|---|---|---|---|"]
    for c in run["costs"]:
        cell = lambda k: f"{c[k]['requests']:g} req, {c[k]['ms']:g} ms"  # noqa: E731
        lines.append(f"| {c['projects']} | {cell('first_sync')} | {cell('idle_sync')} | "
                     f"{cell('changed_sync')} | {cell('upload')} |")
    if run.get("throughput"):
        t = run["throughput"]
        base = t["filesystem"]
        lines += ["", f"Against the filesystem backend, {run['largest']} projects "
                  f"({run['duration']} s, {run['concurrency']} connections):", "",
                  "| backend | start, empty ROOT | /simple/NAME/ req/s | vs filesystem | "
                  "downloads req/s | vs filesystem |", "|---|---|---|---|---|---|"]
        for kind, r in t.items():
            p, d = r["simple_project"]["rps"], r["download"]["rps"]
            lines.append(f"| {kind} | {r['cold_start_seconds']} s | {p:,.0f} | "
                         f"{p / base['simple_project']['rps']:.0%} | "
                         f"{d:,.0f} | {d / base['download']['rps']:.0%} |")
        lines += ["", "s3-redirect downloads are the 302 answers (the client then "
                  "fetches from the store); s3-proxy downloads are whole files "
                  "fetched from moto through the server."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", default="3,300")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--syncs", type=int, default=20)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "out-s3"))
    args = parser.parse_args(argv)
    import botocore
    import moto
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="ppypi-bench-s3-")
    server = MotoServer().start()
    run = {"date": time.strftime("%Y-%m-%d"), "moto": moto.__version__,
           "botocore": botocore.__version__, "costs": [], "duration": args.duration,
           "concurrency": args.concurrency}
    try:
        last = None
        for projects in [int(p) for p in args.projects.split(",")]:
            result, bucket, folder = costs(server, projects, args.uploads, args.syncs, work)
            run["costs"].append(result)
            last = (projects, bucket, folder)
        if not args.no_throughput and last:
            run["largest"] = last[0]
            run["throughput"] = throughput(server, last[1], last[2], work, args.duration,
                                           args.concurrency)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(run, f, indent=1)
    text = markdown(run)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
