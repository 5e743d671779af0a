"""PNG plots of results (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


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
    """Grouped bars: one group per headline metric, one bar per model."""
    from teminal.evaluate.report import headline

    heads = [headline(r) for r in results]
    names = list(max(heads, key=len))          # the fullest result's order, then the rest
    names += [n for h in heads for n in h if n not in names]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2), dpi=120)
    width = 0.8 / max(1, len(results))
    x = np.arange(len(names))
    for i, (label, h) in enumerate(zip(labels, heads)):
        values = [h.get(n) for n in names]
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width,
                      [np.nan if v is None else v for v in values], width, label=label)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center",
                        va="bottom", fontsize=6)
    if "3 order" in names:
        ax.axhline(1 / 3, color="grey", lw=0.8, ls=":", label="order chance (1/3)")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="order-blind ceiling (0.5)")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("accuracy / score")
    synthetic = any(r["data"].get("synthetic") for r in results)
    ax.set_title("model comparison" + (" (SYNTHETIC data)" if synthetic else ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper center", ncol=min(4, len(results) + 2), frameon=False)
    fig.tight_layout()
    return _save(fig, path, plt)


def _save(fig, path, plt) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
