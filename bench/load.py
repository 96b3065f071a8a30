"""
Load generation: wrk when installed, else a bounded Python client.

As a program (the load generator runs in its own process):

    python bench/load.py http --port P --paths-file F --duration S --concurrency C
        GET the paths of F (one per line, rotated) from 127.0.0.1:P with C
        keep-alive connections for S seconds; prints JSON: requests, rps,
        p50_ms, p99_ms, errors, non_2xx.

    python bench/load.py download --port P --path PATH --count N --max-seconds S
        One client downloads PATH N times (stops early after S seconds);
        prints JSON: downloads, bytes, seconds, mb_per_s (10^6 bytes).

From run.py, L{measure} runs one of these (or wrk) as a subprocess and
returns the same dictionary. Only 127.0.0.1 is ever addressed.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"
MAX_WRK_PATHS = 2000


# -- the Python client

def _percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def python_http_load(port, paths, duration, concurrency, timeout=30.0):
    """C{concurrency} threads, each with one keep-alive connection, for C{duration} s."""
    deadline = time.monotonic() + duration
    results = []
    lock = threading.Lock()

    def worker(offset):
        latencies, errors, non_2xx = [], 0, 0
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        i = offset
        while time.monotonic() < deadline:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
                continue
            latencies.append(time.perf_counter() - t0)
            if not 200 <= resp.status < 400:
                non_2xx += 1
            if resp.will_close:
                conn.close()
        conn.close()
        with lock:
            results.append((latencies, errors, non_2xx))

    started = time.monotonic()
    step = max(1, len(paths) // max(1, concurrency))
    threads = [threading.Thread(target=worker, args=(n * step,), daemon=True)
               for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout + 5)
    elapsed = time.monotonic() - started
    latencies = sorted(x for r in results for x in r[0])
    return {
        "tool": "python",
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _ms(_percentile(latencies, 50)),
        "p99_ms": _ms(_percentile(latencies, 99)),
        "errors": sum(r[1] for r in results),
        "non_2xx": sum(r[2] for r in results),
    }


def _ms(seconds):
    return None if seconds is None else seconds * 1000.0


def download(port, path, count, max_seconds, buffer_bytes=1 << 20):
    """One client, C{count} sequential downloads of C{path}, bounded by C{max_seconds}."""
    buf = bytearray(buffer_bytes)
    view = memoryview(buf)
    total = 0
    done = 0
    started = time.monotonic()
    deadline = started + max_seconds
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {resp.reason}")
            expected = int(resp.getheader("Content-Length", "-1"))
            got = 0
            while True:
                n = resp.readinto(view)
                if not n:
                    break
                got += n
                if time.monotonic() > deadline + 60:
                    raise RuntimeError(f"GET {path}: too slow, gave up")
            if expected >= 0 and got != expected:
                raise RuntimeError(f"GET {path}: {got} bytes of {expected}")
            total += got
            done += 1
            if resp.will_close:
                conn.close()
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    return {"downloads": done, "bytes": total, "seconds": round(elapsed, 3),
            "mb_per_s": total / 1e6 / elapsed if elapsed else 0.0}


# -- wrk

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(output):
    """req/s, p50/p99 (ms), errors and non-2xx counts from C{wrk --latency} output."""
    result = {"tool": "wrk", "errors": 0, "non_2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    result["requests"] = int(m.group(1)) if m else 0
    for q in ("50", "99"):
        m = re.search(rf"^\s*{q}%\s+(\S+)\s*$", output, re.M)
        result[f"p{q}_ms"] = _wrk_ms(m.group(1)) if m else None
    if not result["requests"]:
        result["p50_ms"] = result["p99_ms"] = None  # wrk prints 0 for no answers
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if m:
        result["errors"] = sum(int(x) for x in m.groups())
        result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                           map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if m:
        result["non_2xx"] = int(m.group(1))
    return result


def _lua_rotation(paths):
    """A wrk script that rotates over C{paths}, each thread from its own offset."""
    quoted = ",\n".join(json.dumps(p) for p in paths)  # JSON strings are valid Lua strings here
    return f"""
local paths = {{
{quoted}
}}
local counter = 0
local i = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  i = ((id or 1) - 1) * math.floor(#paths / 2)
end
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
"""


def run_wrk(port, paths, duration, concurrency, timeout_s=30):
    paths = list(paths)[:MAX_WRK_PATHS]
    seconds = max(1, int(round(duration)))  # wrk takes whole seconds
    cmd = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency",
           f"--timeout={timeout_s}s"]
    script = None
    try:
        if len(paths) > 1:
            fd, script = tempfile.mkstemp(suffix=".lua", prefix="bench-rotate-")
            with os.fdopen(fd, "w") as f:
                f.write(_lua_rotation(paths))
            cmd += ["-s", script]
        cmd.append(f"http://{HOST}:{port}{paths[0]}")
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=seconds + timeout_s + 30)
    finally:
        if script:
            os.unlink(script)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {(out.stderr + out.stdout).strip()[-500:]}")
    result = parse_wrk(out.stdout)
    result["command"] = " ".join(c if c != script else "ROTATE.lua" for c in cmd)
    return result


def cpu_model():
    """The CPU's model name (Linux), or "?"."""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            return m.group(1).strip() if m else "?"
    except OSError:
        return "?"


def have_wrk():
    return shutil.which("wrk") is not None


def measure(port, paths, duration, concurrency, use_wrk=None):
    """req/s and latency of GETs rotating over C{paths}, from a separate process."""
    if use_wrk is None:
        use_wrk = have_wrk()
    if use_wrk:
        return run_wrk(port, paths, duration, concurrency)
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as f:
        f.write("\n".join(paths) + "\n")
        paths_file = f.name
    try:
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "load.py"), "http", "--port", str(port),
             "--paths-file", paths_file, "--duration", str(duration),
             "--concurrency", str(concurrency)],
            capture_output=True, text=True, timeout=duration + 120)
    finally:
        os.unlink(paths_file)
    if out.returncode != 0:
        raise RuntimeError(f"load.py http failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def measure_download(port, path, count, max_seconds):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "load.py"), "download", "--port", str(port),
         "--path", path, "--count", str(count), "--max-seconds", str(max_seconds)],
        capture_output=True, text=True, timeout=max_seconds + 180)
    if out.returncode != 0:
        raise RuntimeError(f"load.py download failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    h = sub.add_parser("http")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--paths-file", required=True)
    h.add_argument("--duration", type=float, default=10)
    h.add_argument("--concurrency", type=int, default=16)
    d = sub.add_parser("download")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--path", required=True)
    d.add_argument("--count", type=int, default=3)
    d.add_argument("--max-seconds", type=float, default=60)
    a = ap.parse_args(argv)
    if a.command == "http":
        with open(a.paths_file) as f:
            paths = [line.strip() for line in f if line.strip()]
        result = python_http_load(a.port, paths, a.duration, a.concurrency)
    else:
        result = download(a.port, a.path, a.count, a.max_seconds)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    sys.exit(main())
