"""The MNIST model of C. Olah's comment (PAPER.md): 784 -> 512 ReLU -> 10, cross-entropy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class MLPConfig:
    """Training of the one-hidden-layer MLP (minibatch Adam, cross-entropy)."""

    hidden: int = 512  # ReLU units: the m of D*
    epochs: int = 100  # passes over the training set
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    seed: int = 0  # initialisation and batch order

    def to_dict(self) -> dict:
        return asdict(self)


class MLP(torch.nn.Module):
    """x (B, 784) -> logits (B, 10); ``hidden(x)`` (B, m) is the ReLU layer D* is taken on."""

    def __init__(self, hidden: int = 512, inputs: int = 784, classes: int = 10):
        super().__init__()
        self.W_in = torch.nn.Linear(inputs, hidden)
        self.W_out = torch.nn.Linear(hidden, classes)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.W_in(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_out(self.hidden(x))


def train_mlp(cfg: MLPConfig, X: np.ndarray, y: np.ndarray, progress: bool = False) -> MLP:
    """Train on X (T, 784), y (T,) from a seeded init; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # nn.Linear's init draws from the global generator
    model = MLP(cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    for _ in tqdm(range(cfg.epochs), desc=f"MLP T={len(y)}", disable=not progress):
        for idx in torch.randperm(len(yt), generator=gen).split(cfg.batch_size):
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def evaluate(model: MLP, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """X (T, 784), y (T,) -> hidden (T, m) float32, pred (T,), loss (T,) per example."""
    Xt = torch.as_tensor(X, dtype=torch.float32)
    h = model.hidden(Xt)
    logits = model.W_out(h)
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y), reduction="none")
    return {"hidden": h.numpy(), "pred": logits.argmax(1).numpy(), "loss": loss.double().numpy()}


def weights(model: MLP) -> dict[str, np.ndarray]:
    """Parameters by name (W_in.weight (m, 784), ...), for a safetensors file."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
