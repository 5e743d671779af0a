"""PNG plots of results (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


MISSING_HEIGHT = 0.05  # the hatched stub standing where a model has no value


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_order_confusion(result: dict, path) -> Path:
    """3x3 confusion of the order task (rows: true forward / reversed / overlay audio; columns:
    the caption type chosen among "{a} before {b}", "{b} before {a}", "{a} while {b}"), as row
    shares with counts."""
    conf = result["metrics"]["task3_order"]["confusion"]
    counts = np.asarray(conf["counts"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = conf["labels"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    for i in range(3):
        for j in range(3):
            ax.text(j, i, f"{shares[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=9)
    captions = ["a before b", "b before a", "a while b"]
    ax.set_xticks(range(3), [f"{c}\n({lab})" for c, lab in zip(captions, labels)], fontsize=8)
    ax.set_yticks(range(3), labels, fontsize=9)
    ax.set_xlabel("predicted caption")
    ax.set_ylabel("true audio")
    ax.set_title(f"ZSTE order task: {result.get('label', '')}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, plt)


def plot_compare(results: Sequence[dict], labels: Sequence[str], path) -> Path:
    """Grouped bars: one group per headline metric, one bar per model, with the 95% interval
    as an error bar, each task's own chance level (and the order tasks' order-blind ceiling)
    drawn across its bar, and "n/a" where a model has no value for a metric."""
    from teminal.evaluate.report import headline_scores

    heads = [headline_scores(r) for r in results]
    names = list(max(heads, key=len))          # the fullest result's order, then the rest
    names += [n for h in heads for n in h if n not in names]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.4), dpi=120)
    width = 0.8 / max(1, len(results))
    x = np.arange(len(names))
    for i, (label, head) in enumerate(zip(labels, heads)):
        at = x + (i - (len(results) - 1) / 2) * width
        _bars(ax, at, [head.get(n) or {} for n in names], width, label, f"C{i}")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("accuracy / score")
    synthetic = any(r["data"].get("synthetic") for r in results)
    ax.set_title("model comparison: accuracy with 95% intervals"
                 + (" (SYNTHETIC data)" if synthetic else ""), fontsize=10)
    bars, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*bars, *_marks_legend()], fontsize=7, loc="upper center",
              ncol=min(6, len(results) + 3), frameon=False)
    fig.tight_layout()
    return _save(fig, path, plt)


def sweep_series(result: dict, part: str | None) -> dict:
    """One model's line of the timing sweep: junctions, order accuracies on `part` ("seen",
    "unseen"; None: all pairs) and their intervals as distances below and above; points
    without a value (no such pairs) are left out."""
    points = result["metrics"].get("timing_sweep", {}).get("points", [])
    scores = [(p["junction"], p["order"] if part is None else p["order"].get(part) or {})
              for p in points]
    kept = [(j, bar_marks(s)) for j, s in scores if s.get("accuracy") is not None]
    return {"junction": [j for j, _ in kept], "value": [m["value"] for _, m in kept],
            "below": [m["below"] for _, m in kept], "above": [m["above"] for _, m in kept]}


def plot_timing_sweep(results: Sequence[dict], labels: Sequence[str], path) -> Path:
    """Order accuracy (task 3) against the junction, one line per model with its 95% intervals
    as error bars, in one panel for class pairs seen in training and one for held-out pairs
    (one panel, all pairs, when no result knows which pairs it trained on); chance (1/3) and
    the order-blind ceiling (0.5) drawn across, the paper's midpoint marked."""
    split = any("unseen" in p["order"] for r in results
                for p in r["metrics"].get("timing_sweep", {}).get("points", []))
    panels = [("seen", "class pairs seen in training"), ("unseen", "held-out class pairs")] \
        if split else [(None, "all class pairs")]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), dpi=120,
                             sharey=True, squeeze=False)
    for ax, (part, title) in zip(axes[0], panels):
        for i, (label, result) in enumerate(zip(labels, results)):
            line = sweep_series(result, part)
            # models side by side around each junction, so their intervals do not overlap
            shift = (i - (len(results) - 1) / 2) * 0.012
            if line["junction"]:
                ax.errorbar([j + shift for j in line["junction"]], line["value"],
                            yerr=[line["below"], line["above"]], fmt="o-", color=f"C{i}",
                            capsize=3, lw=1.4, ms=4, label=label)
        ax.axhline(1 / 3, color="black", ls=":", lw=1.1, label="chance (1/3)")
        ax.axhline(0.5, color="black", ls="--", lw=1.1, label="order-blind ceiling")
        ax.axvline(0.5, color="grey", lw=0.8, alpha=0.5, label="the paper's midpoint")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("where the second event starts (fraction of the clip)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower center", frameon=False)
    axes[0][0].set_ylabel("order accuracy (task 3)")
    synthetic = any(r["data"].get("synthetic") for r in results)
    fig.suptitle("ZSTE timing sweep: order against where the second event starts"
                 + (" (SYNTHETIC data)" if synthetic else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, path, plt)


def bar_marks(score: dict) -> dict:
    """What one bar shows: value (None: no value), the interval as distances below and above
    it, and the levels drawn across it (chance, order-blind ceiling; None when undefined)."""
    value, ci = score.get("accuracy"), score.get("ci95")
    low, high = (value - ci[0], ci[1] - value) if value is not None and ci else (0.0, 0.0)
    return {"value": value, "below": low, "above": high, "chance": score.get("chance"),
            "ceiling": score.get("order_blind_ceiling")}


def _bars(ax, at: np.ndarray, scores: list[dict], width: float, label: str, color: str) -> None:
    """One model's bars, intervals, value labels, chance/ceiling marks and missing marks."""
    marks = [bar_marks(s) for s in scores]
    heights = [np.nan if m["value"] is None else m["value"] for m in marks]
    ax.bar(at, heights, width, label=label, color=color)
    ax.errorbar(at, heights, yerr=[[m["below"] for m in marks], [m["above"] for m in marks]],
                fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    for pos, m in zip(at, marks):
        if m["value"] is None:   # not measured for this model (or no items): say so, not a gap
            ax.bar(pos, MISSING_HEIGHT, width, fill=False, hatch="///", edgecolor="dimgrey",
                   linewidth=0.6)
            ax.text(pos, MISSING_HEIGHT + 0.01, "n/a", ha="center", va="bottom", fontsize=6,
                    color="dimgrey")
            continue
        ax.text(pos, m["value"] + m["above"] + 0.01, f"{m['value']:.2f}", ha="center",
                va="bottom", fontsize=6)
        for level, style in ((m["chance"], ":"), (m["ceiling"], "--")):
            if level is not None:
                ax.hlines(level, pos - width / 2, pos + width / 2, colors="black", linestyles=style,
                          linewidth=1.1)


def _marks_legend() -> list:
    """Legend entries for the marks drawn per bar (proxies: nothing is drawn)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Line2D([], [], color="black", ls=":", lw=1.1, label="chance (each task's own)"),
            Line2D([], [], color="black", ls="--", lw=1.1, label="order-blind ceiling"),
            Patch(fill=False, hatch="///", edgecolor="dimgrey", linewidth=0.6,
                  label="n/a: no value")]


def _save(fig, path, plt) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
