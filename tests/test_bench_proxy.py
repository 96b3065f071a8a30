"""
The proxy benchmark runs end to end (bench/proxy.py --quick: no peers, a
tiny corpus, 1-second loads, one round, all on loopback) and writes its
results: the first install of the 20-project tree through ppypi and straight
from the fake upstream, and ppypi's cached loads served without asking the
upstream.
"""

import json
import os
import subprocess
import sys

from .conftest import PROJECT


def test_quick_proxy_benchmark(tmp_path):
    out = tmp_path / "bench-proxy-out"
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "bench", "proxy.py"), "--quick", "--out", str(out),
         "--venvs", str(tmp_path / "no-venvs")],
        capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["errors"] == [] and results["notes"] == []
    assert set(results["versions"]) == {"own"}            # no peer was installed
    assert not (tmp_path / "no-venvs").exists()

    (cold,) = results["cold_install"].values()             # loopback only
    assert set(cold) == {"upstream", "ppypi"}
    for name, entry in cold.items():
        assert entry["median_s"] > 0, (name, entry)
    # pip asked the upstream for 20 pages, their metadata and the wheels;
    # through ppypi it asked for the pages and the wheels only (pip's pages
    # leave out the metadata of small wheels: ppypi.simple_pages.LEAN_BELOW), and
    # ppypi asked the upstream for exactly those, once each.
    want = {"pages": 20, "redirects": 0, "metadata": 20, "files": 20, "head": 0, "all": 60}
    assert cold["upstream"]["upstream_requests"] == [want]
    assert cold["ppypi"]["upstream_requests"] == [dict(want, metadata=0, all=40)]

    ppypi = results["cached"]["ppypi"]
    assert ppypi["files_per_page"] == [4]                  # 2 versions, a wheel and an sdist
    assert ppypi["warming"]["files_fetched"] == 5 * 4
    (one,) = ppypi["rounds"]
    assert one["upstream_requests_during_loads"] == 0
    assert one["warm_install_s"] > 0
    for key in ("simple_html", "download"):
        assert one[key]["rps"] > 0 and one[key]["errors"] == 0 and one[key]["non_2xx"] == 0, one
        assert ppypi["median"][key]["rps"] == one[key]["rps"]
    if "simple_pip" in one:                                # with wrk only
        assert one["simple_pip"]["non_2xx"] == 0
    shape = ppypi["page_shape"]
    assert shape["pip"]["content_type"] == "application/vnd.pypi.simple.v1+json"
    assert shape["pip"]["core_metadata"] and shape["html"]["core_metadata"]

    text = (out / "results.md").read_text()
    assert "| through | loopback: median (rounds) | vs straight | upstream requests |" in text
    assert "| ppypi | " in text and "devpi" not in text.split("## How each was run")[1]
