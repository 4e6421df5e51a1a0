"""Where a result came from: the package version, the git commit of the source tree,
the versions of torch, NumPy and Numba, and the CPU (recorded in every run's config.json).

The CPU matters: Numba compiles the fast and tree engines' kernels for the host's LLVM
target (``cpu_target``, e.g. znver4 or icelake-server) and its instruction-set features
(``cpu_features``), whose vector code sums float32 in its own order, so the same seeds give
the same bits for the same target and features, and runs in the middle regime can end far
apart on another (docs/ENGINES.md, "Exactness and determinism"). ``NUMBA_CPU_NAME`` and
``NUMBA_CPU_FEATURES`` set to the recorded values make another host's Numba build the same
kernels, provided it has every feature the record enables (else they stop on an illegal
instruction); NumPy and torch still pick their own kernels by the CPU."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from supermem import __version__


@functools.cache
def git_commit() -> str | None:
    """The commit of the source tree supermem runs from, '+dirty' if modified; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def cpu_model() -> str | None:
    """The CPU's model name as the OS gives it (/proc/cpuinfo; platform elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


@functools.cache
def cpu_target() -> str:
    """The LLVM CPU Numba compiles its kernels for: NUMBA_CPU_NAME if set, else the host's."""
    import llvmlite.binding as ll  # type: ignore[import-untyped]
    from numba.core import config

    # numba.config reads NUMBA_CPU_NAME at import, from the environment: not in its types
    return str(config.CPU_NAME or ll.get_host_cpu_name())  # type: ignore[attr-defined]


@functools.cache
def cpu_features() -> str:
    """The LLVM features Numba compiles for ('+avx2,-avx512f,...'): NUMBA_CPU_FEATURES if
    set, else the host's as Numba reads them; with ``cpu_target`` they fix the kernels' code."""
    from numba.core import codegen, config

    # numba.config reads NUMBA_CPU_FEATURES at import, from the environment; it is '' (the
    # target's own) where unset and NUMBA_CPU_NAME is generic, which Numba then uses as is
    features = config.CPU_FEATURES  # type: ignore[attr-defined]
    return str(codegen.get_host_cpu_features() if features is None else features)


def provenance() -> dict[str, Any]:
    import numba
    import torch

    return {
        "supermem_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "cpu": cpu_model(),
        "cpu_target": cpu_target(),
        "cpu_features": cpu_features(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
