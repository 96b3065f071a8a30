"""
One step further in scale (issue 18): ppypi over 1,000,000 files in 100,000
projects, against the same server over 1,000 files.

    python bench/scale.py [--files 1000000] [--versions 10] [--duration 10]
                          [--out bench/results-scale] [--work bench/out/scale]

The files are hard links: one small real wheel per version (written by
tests/corpus.py), linked under every project's name (PROJECT/FILE, as
uploads lay them out). The index does not need distinct bytes: it hashes
each path once and reads its metadata, so the first indexing costs what
distinct files of that size would.

Measured, for each size: the first indexing (spawn to the end of the first
sync, /health), the peak RSS during it (VmHWM), the restart on the
persisted index (spawn to the first 200 of a project page, and to the end
of the first sync), RSS then, and /simple/NAME/ with wrk (16 connections,
pages rotating over up to 1,000 projects). Writes OUT/results.json and
OUT/results.md.
"""

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import load  # noqa: E402
from servers import Server, first_sync, free_port, stop_all  # noqa: E402
from tests.corpus import wheel_bytes  # noqa: E402


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def tool(name):
    return os.path.join(os.path.dirname(sys.executable), name)


LINKS_PER_COPY = 50_000


def write_tree(root, projects, versions):
    """PROJECT/FILE hard links to one template wheel per version; returns the file count."""
    marker = root + ".json"
    want = {"projects": projects, "versions": versions}
    try:
        with open(marker) as f:
            if json.load(f) == want:
                return projects * versions
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    templates = os.path.join(root + "-templates")
    shutil.rmtree(templates, ignore_errors=True)
    os.makedirs(templates, exist_ok=True)
    os.makedirs(root)
    wheels = [wheel_bytes("scale_tpl", f"1.0.{v}", requires_python=">=3.8")
              for v in range(versions)]

    def copies(batch):
        # A copy of the templates per LINKS_PER_COPY projects: ext4 allows
        # 65,000 links to one inode.
        paths = []
        for v, data in enumerate(wheels):
            path = os.path.join(templates, f"b{batch}-v{v}.whl")
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        return paths

    started = time.monotonic()
    for p in range(projects):
        if p % LINKS_PER_COPY == 0:
            sources = copies(p // LINKS_PER_COPY)
        name = f"scale_{p:06d}"
        folder = os.path.join(root, f"scale-{p:06d}")
        os.mkdir(folder)
        for v, source in enumerate(sources):
            os.link(source, os.path.join(folder, f"{name}-1.0.{v}-py3-none-any.whl"))
        if p and p % 20000 == 0:
            log(f"  {p * versions} links ({time.monotonic() - started:.0f}s)")
    with open(marker, "w") as f:
        json.dump(want, f)
    return projects * versions


def start(root, out, tag):
    port = free_port()
    cmd = [tool("twistd"), "-n", "--pidfile=", "ppypi", "--root", root, "--extra-index-url", "",
           "--listen", f"tcp:{port}:interface=127.0.0.1"]
    return Server("ppypi", cmd, port, os.path.join(out, f"ppypi-{tag}.log"), cwd=out).start()


def measure(root, files, projects, args, tag):
    page = f"/simple/scale-{projects // 2:06d}/"
    result = {"files": files, "projects": projects}
    first = start(root, args.work, f"{tag}-first")
    try:
        result["first_index_s"] = round(first_sync(first, args.timeout), 2)
        first.hwm_kib()
        result["first_index_peak_rss_mb"] = round(first.peak_kib * 1024 / 1e6, 1)
        result["rss_after_first_index_mb"] = round(first.rss_kib() * 1024 / 1e6, 1)
        log(f"{tag}: first indexing {result['first_index_s']}s, peak RSS "
            f"{result['first_index_peak_rss_mb']} MB")
    finally:
        first.stop()
    again = start(root, args.work, f"{tag}-restart")
    try:
        result["restart_first_page_s"] = round(again.wait_status(page, timeout=args.timeout), 2)
        result["restart_synced_s"] = round(first_sync(again, args.timeout), 2)
        again.hwm_kib()
        result["restart_peak_rss_mb"] = round(again.peak_kib * 1024 / 1e6, 1)
        log(f"{tag}: restart {result['restart_first_page_s']}s to the first page, "
            f"{result['restart_synced_s']}s to the end of its first sync, peak RSS "
            f"{result['restart_peak_rss_mb']} MB")
        step = max(1, projects // 1000)
        pages = [f"/simple/scale-{p:06d}/" for p in range(0, projects, step)][:1000]
        r = load.measure(again.port, pages, args.duration, 16)
        result["simple_project"] = r
        again.hwm_kib()
        result["serving_peak_rss_mb"] = round(again.peak_kib * 1024 / 1e6, 1)
        result["rss_serving_mb"] = round(again.rss_kib() * 1024 / 1e6, 1)
        log(f"{tag}: /simple/NAME/ {r['rps']:.0f} req/s, p50 {r['p50_ms']} ms, "
            f"p99 {r['p99_ms']} ms; RSS {result['rss_serving_mb']} MB")
    finally:
        again.stop()
    return result


def markdown(res):
    rows = [("files", "files", "{:,}"), ("projects", "projects", "{:,}"),
            ("first indexing (s)", "first_index_s", "{}"),
            ("peak RSS, first indexing (MB)", "first_index_peak_rss_mb", "{}"),
            ("restart: first page (s)", "restart_first_page_s", "{}"),
            ("restart: first sync done (s)", "restart_synced_s", "{}"),
            ("peak RSS, restart (MB)", "restart_peak_rss_mb", "{}"),
            ("RSS serving (MB)", "rss_serving_mb", "{}")]
    sizes = res["sizes"]
    out = [f"# ppypi at {sizes[-1]['files']:,} files ({res['date']})", "",
           f"Machine: {res['machine']}; ppypi {res['revision']}. Files are hard links "
           f"of one real wheel per version, PROJECT/FILE; wrk 16 connections, "
           f"{res['duration_s']} s, pages rotating over up to 1,000 projects.", "",
           "| | " + " | ".join(f"{s['files']:,} files" for s in sizes) + " |",
           "|---|" + "---:|" * len(sizes)]
    for label, key, fmt in rows:
        out.append(f"| {label} | " + " | ".join(fmt.format(s.get(key, "-")) for s in sizes)
                   + " |")
    out.append("| /simple/NAME/ req/s | " + " | ".join(
        f"{s['simple_project']['rps']:,.0f}" for s in sizes) + " |")
    out.append("| /simple/NAME/ p50 / p99 ms | " + " | ".join(
        f"{s['simple_project']['p50_ms']} / {s['simple_project']['p99_ms']}" for s in sizes)
        + " |")
    if len(sizes) > 1:
        ratio = sizes[-1]["simple_project"]["rps"] / sizes[0]["simple_project"]["rps"]
        out += ["", f"/simple/NAME/ at {sizes[-1]['files']:,} files is {ratio:.2f}x its rate "
                    f"at {sizes[0]['files']:,}."]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=os.path.join(HERE, "results-scale"))
    ap.add_argument("--work", default=os.path.join(HERE, "out", "scale"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    import subprocess
    revision = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "revision": revision,
           "machine": f"{os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}",
           "duration_s": args.duration, "sizes": []}
    try:
        for files in (1000, args.files):
            projects = max(1, files // args.versions)
            root = os.path.join(args.work, f"root-{files}")
            log(f"{files} files: writing the tree (hard links) ...")
            write_tree(root, projects, args.versions)
            shutil.rmtree(os.path.join(root, ".ppypi"), ignore_errors=True)  # a first start
            res["sizes"].append(measure(root, projects * args.versions, projects, args,
                                        str(files)))
    finally:
        stop_all()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = markdown(res)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
