"""PNG figures of a run: confusion matrices, reliability diagram, loss curves."""

from __future__ import annotations

from pathlib import Path


def figure(figsize: tuple[float, float]):
    """A matplotlib Figure outside pyplot: no GUI backend, no global state to leak."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def confusion_matrices(panels: dict[str, dict], path: Path) -> Path:
    """One panel per named metrics dict (e.g. before / after)."""
    fig = figure((4.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, m) in zip(axes[0], panels.items(), strict=True):
        cm, labels = m["confusion_matrix"], m["labels"]
        ax.imshow(cm, cmap="Blues", vmin=0)
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center",
                        color="white" if v > max(map(max, cm)) / 2 else "black")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: accuracy {m['accuracy']:.3f}")
    return _save(fig, path)


def _annotate_counts(ax, bins: list[dict]) -> None:
    """Papers per bin, beside each (confidence, accuracy) point."""
    for b in bins:
        ax.annotate(str(b["count"]), (b["confidence"], b["accuracy"]), fontsize=7,
                    textcoords="offset points", xytext=(3, -9))


def reliability_diagram(curves: dict[str, dict], path: Path) -> Path:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    fig = figure((5, 4.5))
    ax = fig.subplots()
    ax.plot([0.5, 1], [0.5, 1], ls="--", color="grey", label="perfectly calibrated")
    for title, m in curves.items():
        bins = m["reliability"]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"{title} (ECE {m['ece']:.3f})")
        _annotate_counts(ax, bins)
    ax.set_xlim(0.45, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (probability of the predicted label)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (numbers: papers per bin)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def reliability_per_source(per_source: dict[str, dict], path: Path) -> Path:
    """One reliability panel per source (metrics dicts with `reliability` and `ece`)."""
    fig = figure((4.2 * len(per_source), 4))
    axes = fig.subplots(1, len(per_source), squeeze=False)[0]
    for ax, (source, m) in zip(axes, per_source.items(), strict=True):
        bins = m["reliability"]
        ax.plot([0.5, 1], [0.5, 1], ls="--", color="grey")
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["accuracy"] for b in bins],
               width=0.09, alpha=0.6, label="accuracy per bin")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o",
                color="black", label="mean confidence")
        _annotate_counts(ax, bins)
        ax.set_xlim(0.45, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence")
        ax.set_title(f"{source}: n {m['n']}, ECE {m['ece']:.3f}")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def loss_curves(log_history: list[dict], path: Path) -> Path:
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    val = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig = figure((6, 4))
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss (answer token)")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Fine-tuning loss")
    return _save(fig, path)
