"""Draws the recall/QPS curves of grape-bench's `ann` scenario.

Usage (venv from bench/peers/setup.sh, which installs matplotlib):
    ~/.cache/grape-peer-venv/bin/python bench/peers/plot_curve.py bench/results/ann.json bench/results/ann.png

Reads the scenario's JSON ("curves": points with series, ef, threads, recall, qps) and
draws recall@k (x) against QPS (y, log scale): one colour per series (Grape in process and
through gRPC per quantization, hnswlib, faiss_hnsw, usearch), solid at the most threads measured
and dashed at 1 thread; exact searches (Grape gRPC exact, faiss exact) as single markers.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    doc = json.load(open(sys.argv[1]))
    points = doc.get("curves", [])
    if not points:
        sys.exit(f"{sys.argv[1]} has no curves")
    params = doc.get("params", {})
    most = max(p["threads"] for p in points)
    series = list(dict.fromkeys(p["series"] for p in points))
    colours = plt.get_cmap("tab10")

    fig, ax = plt.subplots(figsize=(10, 6.5))
    for i, name in enumerate(series):
        colour = colours(i % 10)
        for threads, style in ((most, "-"), (1, "--")) if most > 1 else ((most, "-"),):
            curve = sorted((p for p in points if p["series"] == name and p["threads"] == threads),
                           key=lambda p: (p["ef"] is None, p["ef"] or 0))
            if not curve:
                continue
            exact = all(p["ef"] is None for p in curve)
            label = f"{name}, {threads} thr"
            ax.plot([p["recall"] for p in curve], [p["qps"] for p in curve],
                    linestyle="none" if exact else style, marker="*" if exact else "o",
                    markersize=10 if exact else 3, color=colour, label=label,
                    fillstyle="full" if threads == most else "none")
    ax.set_xlabel(f"recall@{params.get('k', 'k')}")
    ax.set_ylabel("queries per second (log)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"ANN: {params.get('rows')} × {params.get('dim')}, {params.get('clusters')} clusters, "
                 f"{params.get('metric')}, {params.get('profile')} build "
                 f"(solid: {most} threads/clients, dashed: 1)")
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)


if __name__ == "__main__":
    main()
