"""
The benchmark's tables: per size and server, ratios, and the targets.
"""

SERVERS = ("ppypi", "pypiserver", "ceiling")

# (key, label, getter) of the ratio rows
METRICS = (
    ("simple_root_rps", "/simple/ req/s", lambda s: _get(s, "simple_root", "rps")),
    ("simple_project_rps", "/simple/NAME/ req/s", lambda s: _get(s, "simple_project", "rps")),
    ("download_small_rps", "small download req/s", lambda s: _get(s, "download_small", "rps")),
    ("download_big_mb_s", "large-file download MB/s", lambda s: _get(s, "download_big", "mb_per_s")),
    ("upload_files_s", "uploads/s (twine)", lambda s: _get(s, "upload_small", "files_per_s")),
    ("peak_rss_mb", "peak RSS MB", lambda s: _get(s, "peak_rss_mb")),
    ("cold_start_s", "cold start s", lambda s: _get(s, "cold_start_s")),
)


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _server(results, size, name):
    return _get(results, "sizes", str(size), "servers", name) or {}


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def _num(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _x(v):
    if v is None:
        return "-"
    return f"{v:,.0f}x" if v >= 100 else f"{v:.3g}x"


def ratios(results):
    sizes = sorted(int(s) for s in results["sizes"])
    rows = []
    for key, label, get in METRICS:
        row = {"metric": key, "label": label, "per_size": {}}
        for size in sizes:
            p = get(_server(results, size, "ppypi"))
            row["per_size"][str(size)] = {
                "ppypi/pypiserver": _ratio(p, get(_server(results, size, "pypiserver"))),
                "ppypi/ceiling": _ratio(p, get(_server(results, size, "ceiling"))),
            }
        if len(sizes) > 1:
            row["ppypi_largest/smallest"] = _ratio(get(_server(results, sizes[-1], "ppypi")),
                                                   get(_server(results, sizes[0], "ppypi")))
        else:
            row["ppypi_largest/smallest"] = None
        rows.append(row)
    return rows


# -- targets

def _verdict(ok):
    return "MET" if ok else "NOT MET"


def targets(results):
    sizes = sorted(int(s) for s in results["sizes"])
    quick = results["settings"].get("quick")
    big_mb = results["settings"]["big_file_bytes"] / 1e6
    out = []

    def add(name, measured, required, ok, note=""):
        out.append({"target": name, "measured": measured, "required": required,
                    "verdict": "not measured" if ok is None else _verdict(ok), "note": note})

    def at(size, name, *keys):
        if size not in sizes:
            return None
        return _get(_server(results, size, name), *keys)

    # /simple/NAME/ against the ceiling and pypiserver
    p, c = at(100000, "ppypi", "simple_project", "rps"), at(100000, "ceiling", "simple_project", "rps")
    r = _ratio(p, c)
    add("/simple/NAME/ req/s at 100,000 files >= 60% of the ceiling's",
        "-" if r is None else f"{p:,.0f} vs {c:,.0f} = {r:.0%}", ">= 60%",
        None if r is None else r >= 0.6)
    p, q = at(10000, "ppypi", "simple_project", "rps"), at(10000, "pypiserver", "simple_project", "rps")
    r = _ratio(p, q)
    add("/simple/NAME/ req/s at 10,000 files >= 100x pypiserver's",
        "-" if r is None else f"{p:,.0f} vs {q:,.1f} = {r:,.1f}x", ">= 100x",
        None if r is None else r >= 100)

    # scaling
    for key, label in (("simple_project", "/simple/NAME/ req/s"),
                       ("download_small", "small-wheel download req/s")):
        a, b = at(1000, "ppypi", key, "rps"), at(100000, "ppypi", key, "rps")
        r = _ratio(b, a)
        add(f"{label} at 100,000 files >= 80% of those at 1,000",
            "-" if r is None else f"{b:,.0f} vs {a:,.0f} = {r:.0%}", ">= 80%",
            None if r is None else r >= 0.8)

    # memory and start-up with 100,000 files
    v = at(100000, "ppypi", "peak_rss_mb")
    add("peak RSS with 100,000 files <= 200 MB",
        "-" if v is None else f"{v:.1f} MB (serving {at(100000, 'ppypi', 'peak_rss_serving_mb'):.1f}, "
        f"first start {at(100000, 'ppypi', 'peak_rss_first_start_mb'):.1f})",
        "<= 200 MB", None if v is None else v <= 200)
    v = at(100000, "ppypi", "cold_start_s")
    add("cold start to the first /simple/NAME/ with the persisted index, 100,000 files <= 3 s",
        "-" if v is None else (f"{v:.2f} s (first sync over at {at(100000, 'ppypi', 'first_sync_s'):.2f} s; "
                               f"without the persisted index: {at(100000, 'ppypi', 'cold_start_first_s'):.2f} s)"),
        "<= 3 s", None if v is None else v <= 3)

    # large files, at every size run (the worst counts)
    note = f"{big_mb:g} MB file (--quick)" if quick else ""
    for key, label in (("download_big", "download"), ("upload_big", "upload")):
        values = [(s, at(s, "ppypi", key, "rss_growth_mb")) for s in sizes]
        values = [(s, v) for s, v in values if v is not None]
        worst = max((v for _, v in values), default=None)
        add(f"a {big_mb:g} MB {label} grows ppypi's RSS by < 20 MB",
            ", ".join(f"{v:.1f} MB @{s:,}" for s, v in values) or "-", "< 20 MB",
            None if worst is None else worst < 20, note)
    values = [(s, at(s, "ppypi", "download_big", "mb_per_s")) for s in sizes]
    values = [(s, v) for s, v in values if v is not None]
    worst = min((v for _, v in values), default=None)
    add(f"{big_mb:g} MB download >= 300 MB/s",
        ", ".join(f"{v:,.0f} MB/s @{s:,}" for s, v in values) or "-", ">= 300 MB/s",
        None if worst is None else worst >= 300, note)

    # uploads against pypiserver, at every size where both ran
    pairs = [(s, at(s, "ppypi", "upload_small", "files_per_s"),
              at(s, "pypiserver", "upload_small", "files_per_s")) for s in sizes]
    pairs = [(s, a, b) for s, a, b in pairs if a is not None and b is not None]
    add("uploads/s with twine >= pypiserver's",
        ", ".join(f"{a:.1f} vs {b:.1f} @{s:,}" for s, a, b in pairs) or "-", ">= 1x",
        None if not pairs else all(a >= b for _, a, b in pairs))
    return out


# -- markdown

def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


NOISY_PCT = 10  # other processes took more than this share of the CPUs during a load


def _load_cells(s, key):
    r = s.get(key) or {}
    cells = [_num(r.get("rps")), _num(r.get("p50_ms"), 2), _num(r.get("p99_ms"), 2)]
    bad = (r.get("errors") or 0) + (r.get("non_2xx") or 0)
    if bad:
        cells[0] += f" ({bad} err)"
    if (r.get("other_cpu_pct") or 0) > NOISY_PCT:
        cells[0] += f" †{r['other_cpu_pct']:.0f}%"
    return cells


def _version_at_least(version, wanted):
    try:
        return tuple(int(x) for x in version.split(".")[:2]) >= wanted
    except ValueError:
        return False


def markdown(results):
    m = results["machine"]
    st = results["settings"]
    out = ["# ppypi benchmark", ""]
    out.append(f"Machine: {m['nproc']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}, "
               f"Linux {m['kernel']}, Python {m['python']}; load generator: {m['load_generator']}; "
               f"ppypi {m['ppypi_revision']}"
               + (f" (uncommitted diff {m['ppypi_uncommitted_diff_sha256']})"
                  if m.get("ppypi_uncommitted_diff_sha256") else "") + ".")
    out.append(f"Loads: {st['concurrency']} connections, {st['duration_s']:g} s each, the same for "
               f"every server; /simple/NAME/ and downloads rotate over up to {st['rotated_names']} "
               f"projects. Large file: {st['big_file_bytes'] / 1e6:g} MB, {st['big_downloads']} "
               f"downloads by one client. Uploads: {st['uploads']} small wheels in one twine command.")
    ps = results.get("pypiserver")
    if ps:
        out.append(f"pypiserver {ps['version']} (watchdog {ps['watchdog']}), backend "
                   f"{ps['backend']}, uploads without authentication (-a . -P .); ppypi's uploads "
                   f"use __token__ and the upload-token file.")
        if _version_at_least(ps["watchdog"], (2, 3)):
            out.append("Note: with watchdog 2.3 or later, pypiserver's cached-dir backend empties its "
                       "cache whenever a package file is opened for reading (watchdog reports opens; "
                       "pypiserver issue #502), so its listing and digests are mostly recomputed.")
    else:
        out.append("pypiserver: not run.")
    out.append(f"† other processes used that share of the CPUs during the load (more than "
               f"{NOISY_PCT}%: the number is skewed).")
    out.append("Memory in MB of 10^6 bytes. RSS growth: peak (VmHWM reset just before) minus "
               "VmRSS before; retained growth (after - before) in results.json.")
    out.append("")
    for size, entry in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        out.append(f"## {entry['files']:,} files ({entry['projects']:,} projects)")
        out.append("")
        rows = []
        for name in SERVERS:
            s = entry["servers"].get(name)
            if s is None:
                continue
            if s.get("error"):
                rows.append([name, f"error: {s['error'].splitlines()[0][:80]}"] + [""] * 8)
                continue
            rows.append([name] + _load_cells(s, "simple_root") + _load_cells(s, "simple_project")
                        + _load_cells(s, "download_small"))
        out.append(_table(["server", "/simple/ req/s", "p50 ms", "p99 ms",
                           "/simple/NAME/ req/s", "p50 ms", "p99 ms",
                           "small download req/s", "p50 ms", "p99 ms"], rows))
        out.append("")
        rows = []
        for name in SERVERS:
            s = entry["servers"].get(name)
            if not s or s.get("error"):
                continue
            cold = _num(s.get("cold_start_s"), 2)
            if s.get("cold_start_first_s") is not None:
                cold = f"{_num(s['cold_start_first_s'], 2)} / {cold}"
            ub = s.get("upload_big") or {}
            rows.append([
                name,
                _num(_get(s, "download_big", "mb_per_s")),
                _num(_get(s, "upload_small", "files_per_s")),
                "-" if not ub else f"{ub['seconds']:.2f} s",
                _num(s.get("peak_rss_mb")),
                cold,
                _num(_get(s, "download_big", "rss_growth_mb")),
                _num(ub.get("rss_growth_mb")),
            ])
        out.append(_table(["server", f"{st['big_file_bytes'] / 1e6:g} MB download MB/s",
                           "uploads/s", f"{st['big_file_bytes'] / 1e6:g} MB upload",
                           "peak RSS MB", "cold start s (ppypi: first / persisted)",
                           "RSS growth download MB", "RSS growth upload MB"], rows))
        out.append("")
    sizes = sorted(int(s) for s in results["sizes"])
    out.append("## Ratios")
    out.append("")
    header = ["metric"]
    for s in sizes:
        header += [f"ppypi/pypiserver @{s:,}", f"ppypi/ceiling @{s:,}"]
    header.append(f"ppypi @{sizes[-1]:,} / @{sizes[0]:,}")
    rows = []
    for r in results["ratios"]:
        row = [r["label"]]
        for s in sizes:
            ps = r["per_size"][str(s)]
            row += [_x(ps["ppypi/pypiserver"]), _x(ps["ppypi/ceiling"])]
        row.append(_x(r["ppypi_largest/smallest"]))
        rows.append(row)
    out.append(_table(header, rows))
    out.append("")
    out.append("## Targets")
    out.append("")
    out.append(_table(["target", "measured", "required", "verdict"],
                      [[t["target"], t["measured"] + (f" ({t['note']})" if t["note"] else ""),
                        t["required"], f"**{t['verdict']}**"] for t in results["targets"]]))
    out.append("")
    for name in SERVERS:
        for size, entry in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
            cmd = _get(entry, "servers", name, "command")
            if cmd:
                out.append(f"- {name} @{int(size):,}: `{cmd}`")
                break
    if results.get("errors"):
        out.append("")
        out.append("Errors: " + "; ".join(results["errors"]))
    out.append("")
    out.append(f"Elapsed: {results.get('elapsed_s', 0):g} s.")
    return "\n".join(out) + "\n"
