"""``supermem dims``: D*_t (and D_t) of every example in an activation file."""

from __future__ import annotations

from pathlib import Path

from supermem.cli.common import CLIError, check_writable, parse_float, progress_enabled


def register(sub) -> None:
    p = sub.add_parser(
        "dims",
        help="D* (leverage) of every example in an activation file",
        description="Read activations H (T x m; more axes are flattened into rows) from a "
        ".npy, .npz or .safetensors file, stream D*_t = h_t^T (H^T H)^+ h_t over them "
        "(memory O(m^2 + T)), and write OUT.csv (index, dstar, rank[, data_dim][, label]), "
        "OUT.png (sorted D*, log scale) and OUT.json (rank, cut-off, summary).",
    )
    p.add_argument("activations", type=Path, help=".npy, .npz or .safetensors file")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (PNG, JSON beside)")
    p.add_argument("--key", default=None, help="array name in a .npz or .safetensors file")
    p.add_argument("--labels", type=Path, default=None, help=".npy or text, one label a line")
    p.add_argument("--data-dims", action="store_true", help="also write D_t (data_dim column)")
    p.add_argument("--center", action="store_true", help="subtract the mean activation first")
    p.add_argument(
        "--rcond",
        type=parse_float,
        default=None,
        help="pseudo-inverse cut-off: drop eigenvalues of H^T H at or below RCOND times the "
        "largest (default 1e-10, i.e. 1e-5 on H's singular values)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from supermem.real import RCOND, ActivationError, dims, load_activations, read_labels
    from supermem.real.output import OutputExistsError, check_outputs, write_dims

    rcond = RCOND if args.rcond is None else args.rcond
    if not 0 <= rcond < 1:
        raise CLIError(f"--rcond must be in [0, 1), got {rcond}")
    try:
        check_outputs(args.out, args.overwrite)  # before any work
        check_writable(args.out)
        src = load_activations(args.activations, args.key)
        labels = read_labels(args.labels) if args.labels is not None else None
        if labels is not None and src.T is not None and len(labels) != src.T:
            raise ActivationError(f"{args.labels}: {len(labels)} labels for {src.T} examples")
        d = dims(src, args.center, rcond, args.data_dims, progress=progress_enabled(args))
        paths = write_dims(d, args.out, src.name, labels, args.overwrite)
    except (ActivationError, OutputExistsError) as e:
        raise CLIError(str(e)) from None
    print(
        f"{src.name}: T={d.T}, m={d.m}, rank {d.rank} (eigenvalues of H^T H above "
        f"{d.cutoff:.3g} = {d.rcond:g} x {d.eig_max:.3g}), sum D* = {d.dstar.sum():.6g}, "
        f"median D* = {d.summary()['dstar_median']:.4g}"
    )
    for p in paths.values():
        print(p)
    return 0
