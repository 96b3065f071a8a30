"""
The benchmark runs end to end (bench/run.py --quick: tiny corpus, 1-second
loads, no pypiserver, offline) and writes its results.
"""

import json
import os
import subprocess
import sys

from .conftest import PROJECT


def test_quick_benchmark(tmp_path):
    out = tmp_path / "bench-out"
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "bench", "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    with open(out / "results.json") as f:
        results = json.load(f)
    assert (out / "results.md").exists()
    (entry,) = results["sizes"].values()
    for name in ("ppypi", "ceiling"):
        server = entry["servers"][name]
        assert "error" not in server, server
        for load in ("simple_root", "simple_project", "download_small"):
            assert server[load]["rps"] > 0, (name, load, server[load])
            assert server[load]["p50_ms"] > 0 and server[load]["p99_ms"] >= server[load]["p50_ms"]
        assert server["download_big"]["mb_per_s"] > 0
        assert server["peak_rss_mb"] > 0
    ppypi = entry["servers"]["ppypi"]
    assert ppypi["upload_small"]["files_per_s"] > 0
    assert ppypi["cold_start_first_s"] > 0 and ppypi["cold_start_s"] > 0
    assert "pypiserver" not in entry["servers"]

    targets = results["targets"]
    assert len(targets) >= 9
    assert {t["verdict"] for t in targets} <= {"MET", "NOT MET", "not measured"}
    assert any(t["verdict"] != "not measured" for t in targets)
    assert "| target | measured | required | verdict |" in proc.stdout
