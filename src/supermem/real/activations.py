"""Where activations come from: arrays, files, or a PyTorch module seen through a hook.

An ``ActivationSource`` is a matrix H (T, m) that can be read twice, batch by batch, in
the same order (``supermem.real.dims`` needs one pass for the Gram matrix and one for the
per-example values). Rows are examples (tokens, for a transformer), columns are the m
hidden dimensions. Arrays with more than two axes are read with every axis but the last
flattened into rows (``(B, seq, d)`` residual streams become ``B * seq`` rows of width d).

Nothing here loads a whole file when it can avoid it: ``.npy`` files are memory-mapped and
``.safetensors`` tensors are read slice by slice; ``.npz`` members are read whole (zip
members cannot be memory-mapped). No pickle is ever loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUFFIXES = (".npy", ".npz", ".safetensors")


class ActivationError(ValueError):
    """Activations that cannot be measured (a one-line message a user can act on)."""


@dataclass(frozen=True)
class ActivationSource:
    """H (T, m), read as (B, m) batches; ``read(rows)`` starts a fresh pass each call.

    ``T`` is None when it is known only after a pass (a module over a data loader).
    """

    read: Callable[[int], Iterator[np.ndarray]]
    m: int
    T: int | None
    name: str

    def batches(self, rows: int) -> Iterator[np.ndarray]:
        """One pass over H as (B, m) arrays, B <= rows (the last may be shorter)."""
        return self.read(rows)

    def to_array(self) -> np.ndarray:
        """All of H (T, m) in memory (float64): for small sources and tests."""
        parts = list(self.batches(1 << 16))
        return np.concatenate(parts) if parts else np.zeros((0, self.m))


def _check_shape(shape: tuple[int, ...], name: str) -> tuple[int, int]:
    """(T, m) of an array of ``shape`` read as rows of its last axis; errors if unusable."""
    if len(shape) < 2:
        raise ActivationError(
            f"{name} has shape {shape}: activations need two dimensions (examples x hidden)"
        )
    m, T = int(shape[-1]), int(np.prod(shape[:-1]))
    if m == 0 or T == 0:
        raise ActivationError(f"{name} is empty (shape {shape})")
    return T, m


def _check_dtype(dtype: Any, name: str) -> None:
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        raise ActivationError(f"{name} has dtype {dt}: activations must be real numbers")


def from_array(H: Any, name: str = "array") -> ActivationSource:
    """H (..., m) array-like (NumPy, memmap, torch) -> a source of T = prod(...) rows."""
    if hasattr(H, "detach"):  # torch: no grad, on the CPU
        H = H.detach().cpu().numpy()
    H = np.asarray(H)
    _check_dtype(H.dtype, name)
    T, m = _check_shape(H.shape, name)
    rows_view = H.reshape(T, m)  # a view for C-ordered arrays and memmaps

    def read(rows: int) -> Iterator[np.ndarray]:
        for a in range(0, T, rows):
            yield np.asarray(rows_view[a : a + rows])

    return ActivationSource(read, m, T, name)


def _pick_key(keys: list[str], key: str | None, name: str) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        listed = ", ".join(keys) if keys else "none"
        raise ActivationError(f"{name} holds several arrays; pass a key (one of: {listed})")
    if key not in keys:
        listed = ", ".join(keys) if keys else "none"
        raise ActivationError(f"{name} has no array {key!r} (keys: {listed})")
    return key


def _safetensors_source(path: Path, key: str | None) -> ActivationSource:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        k = _pick_key(list(f.keys()), key, str(path))
        sl = f.get_slice(k)
        shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
    if dtype in ("BOOL",) or dtype.startswith("C"):
        raise ActivationError(f"{path}:{k} has dtype {dtype}: activations must be real numbers")
    T, m = _check_shape(shape, f"{path}:{k}")
    per = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1  # rows per slice of axis 0

    def read(rows: int) -> Iterator[np.ndarray]:
        step = max(1, rows // per)
        with safe_open(str(path), framework="pt") as f:
            s = f.get_slice(k)
            for a in range(0, shape[0], step):
                yield s[a : a + step].double().reshape(-1, m).numpy()

    return ActivationSource(read, m, T, f"{path}:{k}")


def load_activations(path: str | os.PathLike, key: str | None = None) -> ActivationSource:
    """A ``.npy``, ``.npz`` or ``.safetensors`` file as a source; ``key`` names the array
    in a file that holds several (optional when it holds one)."""
    path = Path(path)
    if not path.is_file():
        raise ActivationError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if key is not None:
                raise ActivationError(f"{path} is a .npy file: it has no keys (drop --key)")
            return from_array(np.load(path, mmap_mode="r", allow_pickle=False), str(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                k = _pick_key(list(z.files), key, str(path))
                return from_array(z[k], f"{path}:{k}")
        if suffix == ".safetensors":
            return _safetensors_source(path, key)
    except ActivationError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError) as e:  # corrupt or pickled content
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ActivationError(f"{path}: cannot read ({first})") from None
    raise ActivationError(f"{path}: unknown format {suffix!r}; use one of {', '.join(SUFFIXES)}")


def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """A whole array (T, m) from a file, as ``load_activations`` reads it, in float64."""
    return load_activations(path, key).to_array().astype(np.float64, copy=False)


def _first(x: Any) -> Any:
    """The tensor in a module's output or a loader's batch (first of a tuple or list)."""
    return x[0] if isinstance(x, tuple | list) else x


def _hooked(model, layer: str):
    modules = dict(model.named_modules())
    if layer not in modules:
        near = [n for n in modules if n][:8]
        raise ActivationError(
            f"model has no layer {layer!r} (named modules: {', '.join(near) or 'none'})"
        )
    return modules[layer]


def from_module(
    model,
    loader: Iterable,
    layer: str,
    select: Callable[[Any], Any] | None = None,
) -> ActivationSource:
    """The output of ``model``'s sub-module ``layer`` over every batch of ``loader``.

    A forward hook records the layer's output (B, ..., m) while the model runs on each
    batch (the first element when a batch is a tuple, as DataLoaders give ``(x, y)``),
    under ``torch.no_grad`` on the model's device. ``select`` maps the raw output to the
    activations to measure (default: the first element of a tuple output). The loader
    is iterated twice and must give the same examples in the same order both times:
    a shuffling DataLoader is refused.
    """
    import torch

    module = _hooked(model, layer)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler):
        raise ActivationError("the data loader shuffles; D* needs the same order twice")
    select = select or _first
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    m = _probe_width(model, module, loader, select, device)

    def read(rows: int) -> Iterator[np.ndarray]:
        for batch in loader:
            out = _run_hooked(model, module, _first(batch), select, device)
            yield out.reshape(-1, out.shape[-1])

    return ActivationSource(read, m, None, f"{type(model).__name__}.{layer}")


def _run_hooked(model, module, x, select, device) -> np.ndarray:
    import torch

    seen: list = []
    handle = module.register_forward_hook(lambda mod, inp, out: seen.append(select(out)))
    try:
        with torch.no_grad():
            model(x.to(device) if hasattr(x, "to") else x)
    finally:
        handle.remove()
    if not seen:
        raise ActivationError("the hooked layer did not run in the model's forward pass")
    out = seen[-1].detach().to("cpu", torch.float64).numpy()
    if out.ndim < 2:
        raise ActivationError(f"the hooked layer gives shape {out.shape}: need (batch, ..., m)")
    return out


def _probe_width(model, module, loader, select, device) -> int:
    for batch in loader:
        return int(_run_hooked(model, module, _first(batch), select, device).shape[-1])
    raise ActivationError("the data loader is empty")


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """One label per example (T,): a 1-D ``.npy``, or a text file with one label a line."""
    path = Path(path)
    if not path.is_file():
        raise ActivationError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            y = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ActivationError(f"{path}: cannot read labels ({e})") from None
        if y.ndim != 1:
            raise ActivationError(f"{path}: labels must be one-dimensional, got shape {y.shape}")
        return y
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ActivationError(f"{path}: labels must be .npy or text, one a line") from None
    return np.array([s.strip() for s in lines if s.strip()])
