"""Paper appendix, m = 4: the test-loss bump grows with training length, and weight
decay 1.0 (instead of 1e-2) removes it (PAPER.md, item 5).

Two grids: training lengths at weight decay 1e-2, and weight decay 1.0 at the scale's
default length (the 1e-2 run at that length comes from the first grid). Both use the
same warm-up, so the decay comparison differs in weight decay alone.
"""

from __future__ import annotations

from pathlib import Path

from supermem.recipes import claims
from supermem.recipes.base import Recipe, RecipeError, scale_costs
from supermem.recipes.scales import SCALES, get_scale
from supermem.report import figures

STRONG_DECAY = 1.0


def grids(scale: str) -> list:
    s = get_scale(scale)
    seeds = list(range(s.data_seeds))
    if s.steps not in s.m4_steps:  # the decay runs' 1e-2 twins come from the steps grid
        raise ValueError(f"scale {scale}: steps {s.steps} not among m4_steps {s.m4_steps}")
    # warm-up fixed at 5% of the shortest run, so every length (and the decay grid) shares it
    f = s.fixed(hidden=4, restarts=1, warmup=min(s.m4_steps) // 20)
    lengths = {"train_size": list(s.m4_T), "steps": list(s.m4_steps), "data_seed": seeds}
    decay = {"train_size": list(s.m4_T), "data_seed": seeds}
    return [
        ("m4-steps", {k: v for k, v in f.items() if k != "steps"}, lengths),
        ("m4-decay", {**f, "weight_decay": STRONG_DECAY}, decay),
    ]


def _default_steps(runs: list) -> int:
    """The length the weight-decay comparison ran at (that of the strong-decay runs)."""
    strong = [r.config["steps"] for r in runs if r.config["weight_decay"] == STRONG_DECAY]
    return strong[0] if strong else max(r.config["steps"] for r in runs)


def _m4(run) -> bool:
    return run.config["hidden"] == 4


def draw(runs: list, out: Path) -> list[Path]:
    runs = [r for r in runs if _m4(r)]
    return figures.fig_m4(runs, out, _default_steps(runs))


def check(runs: list) -> list[claims.Claim]:
    runs = [r for r in runs if _m4(r)]
    steps = _default_steps(runs)
    weak = [r for r in runs if r.config["weight_decay"] != STRONG_DECAY]
    if not weak:
        raise RecipeError(f"no m = 4 runs at weight decay other than {STRONG_DECAY:g}")
    return [
        claims.bump_grows(weak),
        claims.decay_removes_bump([r for r in runs if r.config["steps"] == steps], STRONG_DECAY),
    ]


def _text() -> str:
    return "; ".join(
        f"{k}: {len(s.m4_T)} T from {s.m4_T[0]} to {s.m4_T[-1]}, steps {list(s.m4_steps)}, "
        f"{s.data_seeds} data seeds"
        for k, s in SCALES.items()
    )


RECIPE = Recipe(
    name="appendix-m4",
    title="Appendix: m = 4, bump vs training length and weight decay",
    description=f"{_text()}; plus weight decay {STRONG_DECAY:g} at the default length. "
    f"{scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    keep=_m4,
    wants="m = 4",
)
