"""The toy model of Henighan et al. (2023): data, model variants, engines, trainer.

Importing this package fills the model and engine registries that ``TrainConfig``
validates names against.
"""

from supermem.toy import engines, model  # noqa: F401  (registers models and engines)
