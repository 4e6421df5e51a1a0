"""Real networks beside the toy model: D, D* and D_i of any activations and weights.

``dims`` streams D*_t (the leverage of each example, PAPER.md) over activations from an
array, a ``.npy``/``.npz``/``.safetensors`` file or a PyTorch module's layer; memory is
O(m^2 + T). ``supermem dims`` is the command-line face of the same functions.
"""

from supermem.real.activations import (
    ActivationError,
    ActivationSource,
    from_array,
    from_module,
    load_activations,
    read_array,
    read_labels,
)
from supermem.real.dims import RCOND, Dims, dims, weight_dims
from supermem.real.output import OutputExistsError, write_dims

__all__ = [
    "RCOND",
    "ActivationError",
    "ActivationSource",
    "Dims",
    "OutputExistsError",
    "dims",
    "from_array",
    "from_module",
    "load_activations",
    "read_array",
    "read_labels",
    "weight_dims",
    "write_dims",
]
