"""
Plot /simple/NAME/ req/s against index size (log x) from results.json.

    python bench/plot.py OUT/results.json OUT/rps.png

Run by run.py with a Python that imports matplotlib.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(results_path, png_path):
    with open(results_path) as f:
        results = json.load(f)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("ppypi", "o-"), ("pypiserver", "s-"), ("ceiling", "^--")):
        points = []
        for entry in results["sizes"].values():
            rps = ((entry["servers"].get(name) or {}).get("simple_project") or {}).get("rps")
            if rps:
                points.append((entry["files"], rps))
        if points:
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("files in the index")
    ax.set_ylabel("/simple/NAME/ requests per second")
    st = results["settings"]
    ax.set_title(f"/simple/NAME/, {st['concurrency']} connections, {st['duration_s']:g} s "
                 f"({results['machine']['load_generator']})")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
