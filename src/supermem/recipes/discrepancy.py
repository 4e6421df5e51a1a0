"""Issue 10, part 1: why A. Jermyn's replication disagreed with the paper (m = 2).

Paper (n = 10,000, S = 0.999): middle regime from T ~ 700, generalising from ~5,000,
middle-regime test loss ~1.01. Replication: ~100, ~20,000, ~5,000, and a 3x larger peak
||b|| (PAPER.md, "What the commenters add"). This recipe trains the paper's setting once
as we read the paper (``baseline``) and once per implementation difference that could
separate the two write-ups (``VARIANTS``: one knob at a time, and pairs that interact),
on one T grid around the middle regime, and measures per variant (``measures``):

- ``T_leave``: the smallest T from which on (every larger T of the grid too) the median
  D_t (seeds pooled) is below m/T by more than ``DT_FACTOR`` = 3: most points are not
  stored (a fluke at one small T does not count);
- ``T_five``: the smallest T from which on (every larger T of the grid too) the median
  over seeds of the 5th / 6th largest feature dimensionality is >= 3 (the pentagon);
- the peak seed-averaged test loss and its T (each run's over its zero model's, 1 for the
  paper's unit points: ``discrepancy_measures.zero_loss``); the peak seed-averaged ||b||
  and ||W||_F.

Ts of the write-ups are rescaled to the runs' sparsity by T(1-S) (A. Jermyn: where
generalisation starts scales with the expected count of each feature).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from supermem.config import TrainConfig
from supermem.recipes.base import Recipe, RecipeError, is_m2, scale_costs
from supermem.recipes.claims import Claim
from supermem.recipes.discrepancy_measures import (
    DT_FACTOR,
    LOSS_TOL,
    REFS,
    T_TOL,
    gives,
    markdown,
    measures,
    nearer,
    reference,
    storage_by_norm,
)
from supermem.recipes.runsets import by_T
from supermem.recipes.scales import SCALES, Scale, get_scale

MATTERS = {"peak_loss": 3.0, "peak_b": 2.0}  # a knob matters if it moves these this much
_DEFAULTS = {k: f.default for k, f in TrainConfig.__dataclass_fields__.items()}

# name -> (what differs from the paper's text as we read it, TrainConfig changes). The
# changes are functions of the scale where they depend on it (steps, restarts). Specs run
# in this order: the hypotheses that change the size of the updates or the decay first.
VARIANTS: dict[str, tuple[str, Any]] = {
    "baseline": ("the paper's text: AdamW, decay on W and b, Xavier normal, float32", {}),
    "l2": ("weight decay as L2 in the loss (Adam)", {"decay_mode": "l2"}),
    "unscaled": ("decay not scaled by lr (wd per step)", {"decay_mode": "decoupled_unscaled"}),
    "eps-1e-4": (
        "Adam eps 1e-4 (= eps 1e-8 with the loss averaged over 10^4 features)",
        {"adam_eps": 1e-4},
    ),
    "feature-mean": (
        "Adam eps 1e-8 n: the same updates as eps 1e-8 on the loss averaged over the n "
        "features (eps 1e-5 at n = 10^3, 1e-4 at 10^4)",
        lambda s: {"adam_eps": float(f"{1e-8 * s.features:.6g}")},
    ),
    "lr-x3": ("peak learning rate 3e-3", {"lr": 3e-3}),
    "no-decay": ("no weight decay", {"weight_decay": 0.0}),
    "decay-W": ("decoupled decay on W only", {"decay_params": "W"}),
    "l2-W": ("L2 in the loss on W only", {"decay_mode": "l2", "decay_params": "W"}),
    "colab-init": ("the Toy Models colab's 3-D fan init", {"init": "xavier_normal_colab"}),
    "no-restarts": ("one init per model at small T", lambda s: {"restarts": 1}),
    "no-warmup": ("no warm-up", {"warmup": 0}),
    "beta2-0.99": ("Adam beta2 0.99", {"adam_beta2": 0.99}),
    "bias-0.1": ("b starts at 0.1", {"init_bias": 0.1}),
    "xavier-uniform": ("Xavier uniform init", {"init": "xavier_uniform"}),
    "steps-x2": (
        "2x the steps (and warm-up)",
        lambda s: {"steps": 2 * s.steps, "warmup": 2 * s.warmup},
    ),
    "steps-x0.2": (
        "a fifth of the steps (and warm-up)",
        lambda s: {"steps": s.steps // 5, "warmup": s.warmup // 5},
    ),
    "constant-lr": (
        "no annealing: lr held at its peak after the warm-up",
        {"lr_schedule": "constant"},
    ),
    "raw-points": (
        "data points left as drawn, not rescaled to unit norm (the 'Toy Models' data)",
        {"point_norm": "raw"},
    ),
    "raw-constant-lr": (
        "raw points and no annealing: the two leads combined (T_leave moves with the first, "
        "the bump's height with the second)",
        {"point_norm": "raw", "lr_schedule": "constant"},
    ),
    "raw-constant-lr-steps-x2": (
        "raw points, no annealing and 2x the steps (and warm-up): does the bump's height "
        "grow with the length of an unannealed run?",
        lambda s: _changes(s, "raw-constant-lr") | _changes(s, "steps-x2"),
    ),
    "float64": (
        "float64 (reference engine), at the middle T of the grid only",
        {"dtype": "float64", "engine": "reference"},
    ),
}
FEW_T = {"float64"}  # trained at the middle T of the grid only (the reference engine is slow)


def _changes(s: Scale, name: str) -> dict[str, Any]:
    ch = VARIANTS[name][1]
    return dict(ch(s) if callable(ch) else ch)


def variant_Ts(s: Scale, name: str) -> list[int]:
    Ts = list(s.discrepancy_T)
    if name in FEW_T:
        mid = len(Ts) // 2
        return Ts[mid : mid + 1]
    return Ts


def expected(s: Scale, name: str, T: int) -> dict[str, Any]:
    """Every TrainConfig field a run of variant ``name`` at ``T`` fixes (seeds aside): the
    scale's, the variant's changes, and every other variant's knob at its default, so that
    a run matches exactly one variant (and no-restarts shares the baseline's large T)."""
    knobs = {k for v in VARIANTS for k in _changes(s, v)} - {"restarts", "steps", "warmup"}
    ch = _changes(s, name)
    restarts = ch.pop("restarts", s.restarts) if T < s.small_T else 1
    ch.pop("restarts", None)
    return {k: _DEFAULTS[k] for k in sorted(knobs)} | s.fixed(hidden=2, restarts=restarts, **ch)


def grids(scale: str) -> list:
    """Per variant a small-T (restarts) and a large-T spec; configs equal to an earlier
    variant's (no-restarts at large T is the baseline; feature-mean at n = 10^4 is
    eps-1e-4) are left to that variant's spec, so each trains once."""
    s = get_scale(scale)
    seeds = list(range(s.data_seeds))
    out = []
    for v, name in enumerate(VARIANTS):
        for part, pick in (
            ("small-T", lambda t: t < s.small_T),
            ("large-T", lambda t: t >= s.small_T),
        ):
            Ts = [t for t in variant_Ts(s, name) if pick(t)]
            if not Ts or any(_same_runs(s, name, o, Ts) for o in list(VARIANTS)[:v]):
                continue
            f = expected(s, name, Ts[0])
            out.append((f"disc-{name}-{part}", f, {"train_size": Ts, "data_seed": seeds}))
    return out


def _same_runs(s: Scale, name: str, other: str, Ts: list[int]) -> bool:
    """Whether variant ``other`` trains every run of ``name`` at these Ts."""
    theirs = variant_Ts(s, other)
    return all(t in theirs and expected(s, name, t) == expected(s, other, t) for t in Ts)


def _matches(run, want: dict[str, Any]) -> bool:
    return all(run.config.get(k, _DEFAULTS.get(k)) == v for k, v in want.items())


def assign(runs: list) -> tuple[str, dict[str, list]]:
    """(scale, {variant: its runs}) for the first scale any run matches (one with baseline
    runs first); a run may belong to several variants (no-restarts shares the
    baseline's large-T runs)."""
    found = []
    for scale, s in SCALES.items():
        table = {
            name: [r for r in runs if _matches(r, expected(s, name, r.config["train_size"]))]
            for name in VARIANTS
        }
        table = {k: v for k, v in table.items() if v}
        if "baseline" in table:
            return scale, table
        if table:
            found.append((scale, table))
    if found:  # a part of the grid without the baseline (reproduce --specs)
        return found[0]
    raise RecipeError("no runs of the discrepancy recipe's variants at any scale")


def table(runs: list) -> dict[str, dict[str, Any]]:
    """{variant: measures} for the runs, plus each variant's baseline on its own Ts (None
    where the baseline has no run at any of them: a part of the grid, ``reproduce
    --specs/--only``; the comparison is then undecided). A variant whose runs are an
    earlier one's (feature-mean at n = 10^4 is eps-1e-4) is left out."""
    scale, groups = assign(runs)
    s = get_scale(scale)
    base = groups.get("baseline", [])
    base_T = set(by_T(base))
    out, seen = {}, set()
    for name, rs in groups.items():
        ids = frozenset(id(r) for r in rs)
        if ids in seen:
            continue
        seen.add(ids)
        m = measures(rs)
        m["baseline_same_T"] = measures(base, m["T"]) if base_T & set(m["T"]) else None
        m["what"] = VARIANTS[name][0]
        m["part"] = _part(m, list(s.discrepancy_T))
        m["full_grid"] = not m["part"]
        out[name] = m
    return out


def _part(m: dict[str, Any], grid: list[int]) -> str:
    """What a variant's runs lack to be the whole grid ('' if nothing): Ts, or the same
    data seeds at every T (seed means over different seeds do not compare across T, so
    peaks and boundaries are only read on a balanced grid)."""
    if m["T"] != grid:
        return f"T = {', '.join(map(str, m['T']))} only"
    at: dict[tuple[int, ...], list[str]] = {}
    for T, seeds in zip(m["T"], m["data_seeds"]):
        at.setdefault(tuple(seeds), []).append(f"{T:g}")
    if len(at) == 1:
        return ""
    return "data seeds differ over T: " + "; ".join(
        f"{', '.join(map(str, k))} at T = {', '.join(v)}" for k, v in at.items()
    )


def _T(T: int | None) -> str:
    return "beyond the grid" if T is None else f"{T:g}"


def _steps(grid: list[int], a: int | None, b: int | None) -> int:
    """How many grid steps apart two Ts are (None = one step past the grid's end)."""
    return abs(
        (len(grid) if a is None else grid.index(a)) - (len(grid) if b is None else grid.index(b))
    )


def effects(m: dict[str, Any]) -> dict[str, float] | None:
    """A variant against the baseline on the same Ts: ratios of peaks, moves in grid steps
    (None: no baseline run at its Ts yet)."""
    base = m["baseline_same_T"]
    if base is None:
        return None
    return {
        "peak_loss": m["peak_loss"] / base["peak_loss"],
        "peak_b": m["peak_b"] / base["peak_b"],
        "peak_W": m["peak_W"] / base["peak_W"],
        "T_leave": _steps(m["T"], m["T_leave"], base["T_leave"]),
        "T_five": _steps(m["T"], m["T_five"], base["T_five"]),
    }


def matters(e: dict[str, float]) -> bool:
    out = any(max(e[k], 1 / e[k]) >= MATTERS[k] for k in MATTERS)
    return bool(out or e["T_leave"] >= 2 or e["T_five"] >= 2)


def _describe(m: dict[str, Any], S: float) -> str:
    return (
        f"T_leave {_T(m['T_leave'])} ({nearer(m['T_leave'], 'T_leave', S)}), "
        f"T_five {_T(m['T_five'])} ({nearer(m['T_five'], 'T_five', S)}), "
        f"peak test loss {m['peak_loss']:.4g} at T={m['peak_loss_T']:g} "
        f"({nearer(m['peak_loss'], 'peak_loss', S)}; seeds "
        + ", ".join(f"{v:.3g}" for v in m["test_loss_per_seed"][m["T"].index(m["peak_loss_T"])])
        + f"), peak ||b|| {m['peak_b']:.3g} at T={m['peak_b_T']:g}, peak ||W||_F "
        f"{m['peak_W']:.3g} at T={m['peak_W_T']:g}"
    )


def variant_claim(name: str, m: dict[str, Any], S: float) -> Claim:
    e = effects(m)
    where = "" if m["full_grid"] else f" ({m['part']})"
    if e is None:  # the baseline itself always has its own runs at its T
        return Claim(
            claim=f"Variant {name} ({m['what']}) moves the measures{where}",
            paper=_refs(S),
            measured=_describe(m, S) + "; vs baseline: undecided (no baseline run at these T "
            "yet); " + _verdict(m, S),
            holds=None,
            note="the baseline's runs at the same T decide it (reproduce without --specs)",
        )
    if name == "baseline":
        full = m["full_grid"]
        return Claim(
            claim=f"The paper's text as we read it (baseline) gives the paper's numbers{where}",
            paper=_refs(S),
            measured=_describe(m, S)
            + (
                f"; replication's numbers: {_yes(gives(m, 'replication', S))}"
                if full
                else f"; either write-up's numbers: undecided ({m['part']})"
            ),
            holds=gives(m, "paper", S) if full else None,
            note=_gives_note(),
        )
    return Claim(
        claim=f"Variant {name} ({m['what']}) moves the measures{where}",
        paper=_refs(S),
        measured=_describe(m, S)
        + f"; vs baseline on the same T: peak test loss x{e['peak_loss']:.3g}, peak ||b|| "
        f"x{e['peak_b']:.3g}, peak ||W||_F x{e['peak_W']:.3g}, T_leave moved "
        f"{e['T_leave']:g} and T_five {e['T_five']:g} grid steps; " + _verdict(m, S),
        holds=matters(e),
        note=f"holds (the knob matters) if it changes the peak test loss by >= "
        f"{MATTERS['peak_loss']:g}x or the peak ||b|| by >= {MATTERS['peak_b']:g}x (either "
        "way), or moves T_leave or T_five by >= 2 grid steps; (paper)/(replication) name the "
        "write-up nearer on a log scale",
    )


def _verdict(m: dict[str, Any], S: float) -> str:
    """Whether it gives each write-up's numbers; undecided on part of the grid, where
    T_leave and T_five are boundaries of the part, not of the curve."""
    if not m["full_grid"]:
        return f"gives either write-up's numbers: undecided ({m['part']})"
    return (
        f"gives the paper's numbers: {_yes(gives(m, 'paper', S))}, the replication's: "
        f"{_yes(gives(m, 'replication', S))}"
    )


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _refs(S: float) -> str:
    p, r = reference("paper", S), reference("replication", S)
    return (
        f"rescaled to S={S:g} by T(1-S): paper T_leave ~{p['T_leave']:.3g}, T_five "
        f"~{p['T_five']:.3g}, peak loss ~1.01; replication ~{r['T_leave']:.3g}, "
        f"~{r['T_five']:.3g}, ~5,000; peak ||b|| 3x the paper's"
    )


def _gives_note() -> str:
    return (
        f"a variant gives a write-up's numbers if T_leave and T_five are within a factor "
        f"{T_TOL:g} of its T(1-S)-rescaled values and the peak test loss within a factor "
        f"{LOSS_TOL['paper']:g} (paper) or {LOSS_TOL['replication']:g} (replication) of its"
    )


def summary_claim(tab: dict[str, dict[str, Any]], who: str, S: float) -> Claim:
    full = {k: m for k, m in tab.items() if m["full_grid"]}
    if not full:  # a part of the grid so far (reproduce --only)
        return Claim(
            claim=f"Some variant gives the {who}'s numbers",
            paper=_refs(S),
            measured="undecided: no variant has the whole T grid at the same data seeds yet "
            "(runs at T = "
            + ", ".join(f"{t:g}" for t in sorted({t for m in tab.values() for t in m["T"]}))
            + ")",
            holds=None,
            note=_gives_note(),
        )
    hits = [k for k, m in full.items() if gives(m, who, S)]
    ref = reference(who, S)

    def distance(m: dict[str, Any]) -> float:  # sum of log distances; beyond grid = 10x
        return sum(
            abs(math.log((m[k] if m[k] is not None else 10 * max(m["T"])) / ref[k]))
            for k in ("T_leave", "T_five", "peak_loss")
        )

    best = min(full, key=lambda k: distance(full[k]))
    return Claim(
        claim=f"Some variant gives the {who}'s numbers",
        paper=_refs(S),
        measured=(f"variants that do: {', '.join(hits)}" if hits else "none")
        + f"; nearest ({len(full)} full-grid variants, sum of log distances): {best} "
        f"({distance(full[best]):.2f}; {_describe(full[best], S)})",
        holds=bool(hits),
        note=_gives_note(),
    )


def check(runs: list) -> list[Claim]:
    tab = table(runs)
    S = runs[0].config["sparsity"]
    return [
        summary_claim(tab, "paper", S),
        summary_claim(tab, "replication", S),
        *(variant_claim(k, m, S) for k, m in tab.items()),
    ]


def rows(runs: list) -> list[dict]:
    """Per variant and T: the seed means behind the measures (the report's table)."""
    out = []
    for name, m in table(runs).items():
        for j, T in enumerate(m["T"]):
            out.append(
                {
                    "variant": name,
                    "T": T,
                    "runs": len(m["test_loss_per_seed"][j]),
                    "test_loss": m["test_loss"][j],
                    "test_loss_min": min(m["test_loss_per_seed"][j]),  # the seeds' spread
                    "test_loss_max": max(m["test_loss_per_seed"][j]),
                    "b_norm": m["b_norm"][j],
                    "W_norm": m["W_norm"][j],
                    "median_D_t / (m/T)": m["median_Dt_over_m_T"][j],
                    "5th/6th D_i": m["five_sixth_ratio"][j],
                }
            )
    return out


def draw(runs: list, out: Path) -> list[Path]:
    import json

    from supermem.report.fig_discrepancy import fig_discrepancy, fig_storage_by_norm

    tab = table(runs)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "discrepancy_measures.json"
    path.write_text(json.dumps(tab, indent=1) + "\n")
    S = runs[0].config["sparsity"]
    refs = {w: reference(w, S) for w in REFS}
    paths = [*fig_discrepancy(tab, refs, out, leave_below=1 / DT_FACTOR), path]
    _, groups = assign(runs)
    for name, rs in groups.items():  # variants whose points differ in norm (raw-points)
        by_norm = storage_by_norm(rs)
        if by_norm:
            paths += fig_storage_by_norm(by_norm, out, name, below=1 / DT_FACTOR)
            arrays = ("sq_norm", "ratio", "ratio_unit")
            summary = {
                T: {k: v for k, v in d.items() if k not in arrays} for T, d in by_norm.items()
            }
            (out / f"storage_by_norm_{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
            paths.append(out / f"storage_by_norm_{name}.json")
    return paths


def _text() -> str:
    return "; ".join(
        f"{k}: n={s.features}, S={s.sparsity}, {s.steps} steps, {len(VARIANTS)} variants x "
        f"{len(s.discrepancy_T)} T from {s.discrepancy_T[0]} to {s.discrepancy_T[-1]} x "
        f"{s.data_seeds} data seeds"
        for k, s in SCALES.items()
    )


RECIPE = Recipe(
    name="discrepancy",
    title="Why the replication disagreed: implementation variants side by side (m = 2)",
    description=f"{_text()}; variants: {', '.join(VARIANTS)}. {scale_costs(grids)}.",
    grids=grids,
    draw=draw,
    check=check,
    keep=is_m2,
    wants="m = 2",
    rows=rows,
)


__all__ = [
    "RECIPE",
    "VARIANTS",
    "assign",
    "gives",
    "grids",
    "markdown",
    "measures",
    "nearer",
    "reference",
    "table",
]
