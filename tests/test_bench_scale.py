"""
The scale bench (bench/scale.py), tiny: it writes its hard-linked tree,
indexes it, restarts on the persisted index and loads /simple/NAME/, and
writes a number for each; a restart serves the whole index.
"""

import json
import os
import subprocess
import sys

from .conftest import PROJECT


def test_scale_bench_smoke(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "bench", "scale.py"), "--files", "300",
         "--versions", "3", "--duration", "0.5", "--timeout", "60", "--out", str(out),
         "--work", str(work)],
        capture_output=True, text=True, timeout=180, cwd=PROJECT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    small, big = results["sizes"]
    assert (small["files"], big["files"], big["projects"]) == (999, 300, 100)  # 1000 // 3 x 3
    for size in (small, big):
        for key in ("first_index_s", "first_index_peak_rss_mb", "restart_first_page_s",
                    "restart_synced_s", "rss_serving_mb"):
            assert size[key] > 0, (key, size)
        load = size["simple_project"]
        assert load["rps"] > 0 and load["errors"] == 0 and load["non_2xx"] == 0, load
    # The tree is PROJECT/FILE links: 100 folders of 3 wheels.
    tree = work / "root-300"
    assert len([d for d in os.listdir(tree) if not d.startswith(".")]) == 100
    text = (out / "results.md").read_text()
    assert text.startswith("# ppypi at 300 files") and "| 999 files | 300 files |" in text
