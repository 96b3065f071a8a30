"""
The end-to-end client benchmark (bench/e2e.py): its --quick mode runs real
pip and uv against ppypi and the static tree (nginx, or python -m
http.server where nginx is missing) on loopback, offline, and writes a time
for every scenario; and a client run that fails is reported as a failure,
never as a time.
"""

import json
import os
import subprocess
import sys

from .conftest import PROJECT

sys.path.insert(0, os.path.join(PROJECT, "bench"))

import e2e  # noqa: E402
import e2e_corpus as ec  # noqa: E402
import e2e_targets as et  # noqa: E402
from servers import Server, free_port  # noqa: E402


def test_quick_e2e_benchmark(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "bench", "e2e.py"), "--quick", "--out", str(out),
         "--work", str(work)],
        capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["ok"] and results["failures"] == []
    loopback = results["conditions"]["loopback"]
    names = set(loopback["targets"])
    assert names in ({"ppypi", "nginx"}, {"ppypi", "static-http.server"}), names
    for name in names:
        assert "skipped" not in loopback["targets"][name], loopback["targets"][name]
    assert set(loopback["scenarios"]) == set(e2e.SCENARIOS)
    for scenario, cells in loopback["scenarios"].items():
        for name in names:
            cell = cells[name]
            assert cell["failures"] == [], (scenario, name, cell)
            assert len(cell["runs_s"]) == 1 and cell["median_s"] > 0, (scenario, name, cell)
            assert cell["min_s"] <= cell["median_s"] <= cell["max_s"]
        assert cells["ppypi"]["ratio_to_ppypi"] == 1.0
    assert results["clients"]["pip"] and results["clients"]["uv"]
    text = (out / "results.md").read_text()
    assert "| scenario | " in text and "FAILED" not in text


class EmptyIndex(et.Target):
    """An index that answers 404 for everything: every client run must fail."""

    name = "empty"

    def start(self, tag):
        folder = os.path.join(self.work, "empty")
        os.makedirs(folder, exist_ok=True)
        port = free_port()
        self.server = Server(self.name, [sys.executable, "-m", "http.server", "--bind",
                                         "127.0.0.1", "--directory", folder, str(port)],
                             port, self.log_path(tag)).start()
        self.server.wait_status("/", 200, timeout=30)
        return 0.0


def test_failed_client_runs_are_failures_not_times(tmp_path, monkeypatch):
    args = e2e.parse_args(["--quick", "--work", str(tmp_path), "--out", str(tmp_path / "out")])
    corpus = ec.Corpus(str(tmp_path), 4, 1, 2)
    monkeypatch.setattr(et, "make", lambda name, work, c, *a: EmptyIndex(work, c))
    result = e2e.measure(args, corpus, ["empty"], "loopback", str(tmp_path))

    assert len(result["failures"]) == len(e2e.SCENARIOS), result["failures"]
    for scenario in e2e.SCENARIOS:
        cell = result["scenarios"][scenario]["empty"]
        assert cell["runs_s"] == [] and cell["median_s"] is None, (scenario, cell)
        assert len(cell["failures"]) == 1


def test_a_wrong_resolution_is_a_failure(tmp_path, monkeypatch):
    """The install succeeded but not with the tree's one right answer: a failure."""
    args = e2e.parse_args(["--quick", "--work", str(tmp_path), "--out", str(tmp_path / "out"),
                           "--static-server", "http.server", "--scenarios", "uv-install,uv-lock"])
    corpus = ec.Corpus(str(tmp_path), 4, 1, 2).ensure(lambda *_: None)
    expected = corpus.expected()
    wrong = dict(expected, **{ec.tree_name(1): "2.0.0"})
    monkeypatch.setattr(corpus, "expected", lambda: wrong)
    result = e2e.measure(args, corpus, ["static"], "loopback", str(tmp_path))

    assert len(result["failures"]) == 2, result["failures"]
    for scenario in ("uv-install", "uv-lock"):
        (failure,) = result["scenarios"][scenario]["static-http.server"]["failures"]
        assert "expected the tree's 4 pins" in failure
