"""Figures of the MNIST recipe, each from run arrays (``mnist_runs.load_arrays``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from supermem.real.plots import dstar_curves, plt
from supermem.report.plots import save as _save  # PNG and SVG, as every figure


def curves(main: dict, sizes: dict[int, dict], out: Path) -> list[Path]:
    """Left: D* sorted, training and validation sets of the main model (log scale).
    Right: training D* x T / rank for every training-set size (1 = the mean)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    dstar_curves(a, {"training": main["dstar_train"], "validation": main["dstar_val"]})
    a.set_title("D* of the hidden layer (each set's own Gram matrix)", fontsize=9)
    norm = {f"T={T}": s["dstar_train"] * T / s["ranks"][0] for T, s in sorted(sizes.items())}
    dstar_curves(b, norm)
    b.set_ylabel("$D^*_t$ x T / rank (1 = mean)")
    b.set_title("training sets from memorising to generalising", fontsize=9)
    return _save(fig, out, "mnist_dstar_curves")


def gallery(main: dict, images: np.ndarray, out: Path, k: int = 12) -> list[Path]:
    """Top-k D* training examples (row 1) beside k around the median (row 2).
    images (T, 784) are the training images in the order of ``main``'s arrays."""
    d = main["dstar_train"]
    order = np.argsort(-d)
    mid = len(d) // 2
    rows = [
        ("highest D*", order[:k]),
        ("typical (median) D*", order[mid - k // 2 : mid + k - k // 2]),
    ]
    fig, axes = plt.subplots(2, k, figsize=(1.2 * k, 3.2))
    for r, (title, idx) in enumerate(rows):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(images[i].reshape(28, 28), cmap="gray_r")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{main['y_train'][i]}->{main['pred_train'][i]}\n{d[i]:.2g}", fontsize=7)
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.suptitle("training examples: label->prediction, D*", fontsize=9)
    return _save(fig, out, "mnist_gallery")


def by_class(main: dict, out: Path) -> list[Path]:
    """D* per digit (training set), and the D* percentiles of wrongly vs rightly
    classified validation examples."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    d, y = main["dstar_train"], main["y_train"]
    a.boxplot([d[y == c] for c in range(10)], tick_labels=[str(c) for c in range(10)], whis=(1, 99))
    a.set_yscale("log")
    a.set_xlabel("digit (label trained on)")
    a.set_ylabel("$D^*_t$, training set")
    pct = (np.argsort(np.argsort(main["dstar_val"])) + 0.5) / len(main["dstar_val"])
    wrong = main["pred_val"] != main["y_val"]
    bins = np.linspace(0, 1, 11)
    b.hist([pct[~wrong], pct[wrong]], bins=bins, density=True, label=["correct", "wrong"])
    b.set_xlabel("D* percentile within the validation set")
    b.set_ylabel("density")
    b.set_title(f"validation: {int(wrong.sum())} wrong of {len(wrong)}", fontsize=9)
    b.legend(fontsize=8)
    return _save(fig, out, "mnist_dstar_by_class")


def _roc(ax, score: np.ndarray, positive: np.ndarray, label: str) -> None:
    o = np.argsort(-score)
    p = positive[o]
    tpr = np.r_[0, np.cumsum(p) / max(p.sum(), 1)]
    fpr = np.r_[0, np.cumsum(~p) / max((~p).sum(), 1)]
    ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")


def detection(noisy: dict | None, main: dict, metrics: dict, out: Path) -> list[Path]:
    """ROC curves: D* finding flipped labels (noisy run), D* and loss telling training
    from validation examples (main run, pooled Gram)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if noisy is not None:
        fl = noisy["flipped"].astype(bool)
        m = metrics["noisy"]
        _roc(a, noisy["dstar_train"], fl, f"D* (AUROC {m['auroc_flipped_dstar']:.3f})")
        _roc(
            a,
            noisy["dstar_train_centered"],
            fl,
            f"centred D* ({m['auroc_flipped_dstar_centered']:.3f})",
        )
        a.set_title(f"{int(fl.sum())} flipped labels among {len(fl)}", fontsize=9)
        a.legend(fontsize=8)
    T = len(main["y_train"])
    member = np.r_[np.ones(T, dtype=bool), np.zeros(len(main["y_val"]), dtype=bool)]
    m = metrics["main"]
    _roc(b, main["dstar_pool"], member, f"D* (AUROC {m['auroc_member_dstar']:.3f})")
    loss = -np.r_[main["loss_train"], main["loss_val"]]
    _roc(b, loss, member, f"-loss ({m['auroc_member_loss']:.3f})")
    b.set_title("membership: training vs validation", fontsize=9)
    b.legend(fontsize=8)
    return _save(fig, out, "mnist_detection")
