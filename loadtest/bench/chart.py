"""bench.png: throughput, latency and MFU per path, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def bench_chart(result: dict[str, Any], png: Path) -> None:
    """Three bar charts of the result's paths: papers/s (with the ratio to the baseline),
    p50/p99 latency in ms (log scale), MFU in % against the 60 % target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["paths"])
    paths = [result["paths"][n] for n in names]
    fig, (thr, lat, util) = plt.subplots(1, 3, figsize=(13, 4))
    bars = thr.bar(names, [p["papers_per_s"] for p in paths], color="tab:blue")
    for bar, p in zip(bars, paths, strict=True):
        if p["ratio_to_baseline"]:
            thr.annotate(f"{p['ratio_to_baseline']:.1f}x", (bar.get_x() + bar.get_width() / 2,
                                                            bar.get_height()),
                         ha="center", va="bottom")
    thr.set_ylabel("papers/s")
    thr.set_title("throughput")
    x = range(len(names))
    lat.bar([i - 0.2 for i in x], [p["p50_ms"] or 0 for p in paths], 0.4, label="p50")
    lat.bar([i + 0.2 for i in x], [p["p99_ms"] or 0 for p in paths], 0.4, label="p99")
    lat.set_xticks(list(x), names)
    lat.set_yscale("log")
    lat.set_ylabel("ms per paper")
    lat.set_title("latency")
    lat.legend()
    util.bar(names, [p["mfu"] * 100 for p in paths], color="tab:green")
    util.axhline(60, color="tab:red", linestyle="--", label="target 60 %")
    util.set_ylabel(f"% of {result['peak_precision']} matmul peak")
    util.set_title("MFU")
    util.legend()
    fig.suptitle(f"{result['papers']} papers, {result['machine']['cpu']}, "
                 f"{result['machine']['usable_cores']} cores")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
