"""Short binary codes for fast retrieval in fc7 space, as §6.1 suggests.

"Computing similarity by using Euclidean distance between two 4096-dimensional, real-valued
vectors is inefficient, but it could be made efficient by training an auto-encoder to
compress these vectors to short binary codes" (§6.1; Krizhevsky & Hinton 2011).

The auto-encoder: features are centred and divided by one global scale (so Euclidean
geometry is kept), encoded by D -> hidden -> bits with logistic code units, decoded back
to D. As in semantic hashing (Salakhutdinov & Hinton 2009), Gaussian noise is added to the
code units' input while training: to carry information through the noise the encoder must
push its units into saturation, so thresholding at 0.5 afterwards loses little.

Retrieval: Hamming distance between codes gives a shortlist of R gallery items; exact
Euclidean re-ranking of the shortlist then returns the k nearest. The measured quality is
recall: the fraction of the true k Euclidean nearest neighbours that are in the shortlist.
Random-projection hashing (sign of Gaussian projections, Charikar 2002) with the same number
of bits is measured beside it as a baseline.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import AlexNetError, check_positive
from alexnet.evaluate.inference import nearest_neighbors


@dataclass
class CodeConfig:
    bits: int = 64
    hidden: int = 512
    steps: int = 400  # Adam steps (on Imagenette fc7, 64 bits: as good as 1500, measured)
    batch_size: int = 128
    lr: float = 2e-3  # Adam
    noise: float = 3.0  # std of the Gaussian noise on the code units' input (logits)
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(code_bits=self.bits, code_steps=self.steps, hidden=self.hidden,
                       batch_size=self.batch_size)
        if not (math.isfinite(self.lr) and self.lr > 0) or not (math.isfinite(self.noise) and self.noise >= 0):
            raise AlexNetError(f"CodeConfig: lr must be positive and noise 0 or more, got lr={self.lr}, "
                               f"noise={self.noise}")


class BinaryAutoencoder(nn.Module):
    def __init__(self, dim: int, bits: int, hidden: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, bits))
        self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))

    def standardize(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.center) / self.scale

    def forward(self, x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Standardised (B, D) -> reconstruction (B, D) through noisy logistic codes."""
        logits = self.encoder(x)
        if noise > 0:
            logits = logits + noise * torch.randn_like(logits)
        return self.decoder(torch.sigmoid(logits))

    @torch.no_grad()
    def codes(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features (N, D) -> binary codes (N, bits) bool."""
        return self.encoder(self.standardize(features)) > 0


def train_autoencoder(features: torch.Tensor, config: CodeConfig) -> tuple[BinaryAutoencoder, list[float]]:
    """Fit the auto-encoder to ``features`` (N, D); returns it and the loss of every step."""
    if len(features) < 2:
        raise AlexNetError("binary codes need at least 2 gallery images to train on")
    if config.bits < 1:
        raise AlexNetError(f"--code-bits must be positive, got {config.bits}")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = BinaryAutoencoder(features.shape[1], config.bits, config.hidden)
    model.center.copy_(features.float().mean(dim=0))
    model.scale.copy_((features.float() - model.center).norm(dim=1).mean() / features.shape[1] ** 0.5)
    data = model.standardize(features)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses: list[float] = []
    order = torch.randperm(len(data), generator=generator)
    position = 0
    for _step in range(config.steps):
        if position + config.batch_size > len(data):  # a new epoch: reshuffle
            order, position = torch.randperm(len(data), generator=generator), 0
        x = data[order[position:position + config.batch_size]]
        position += config.batch_size
        loss = F.mse_loss(model(x, config.noise), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def random_projection_codes(features: torch.Tensor, center: torch.Tensor, bits: int,
                            seed: int = 0) -> torch.Tensor:
    """Baseline: sign of ``bits`` Gaussian random projections of the centred features."""
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(features.shape[1], bits, generator=generator)
    return (features.float() - center) @ projection > 0


def hamming_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(Q, bits) and (N, bits) bool -> (Q, N) number of differing bits.

    With codes as +-1 vectors, <a, b> = bits - 2 * hamming, so one matmul gives them all.
    """
    signed_a = a.float() * 2 - 1
    signed_b = b.float() * 2 - 1
    return ((a.shape[1] - signed_a @ signed_b.T) / 2).round().long()


def shortlist_recall(true_neighbors: torch.Tensor, query_codes: torch.Tensor,
                     gallery_codes: torch.Tensor, shortlist: int) -> float:
    """Mean fraction of each query's true neighbours (Q, k) among its ``shortlist`` gallery
    items of smallest Hamming distance (ties broken by index)."""
    distances = hamming_distances(query_codes, gallery_codes).float()
    # A tiny index-proportional term breaks ties deterministically (bits are integers).
    distances += torch.arange(distances.shape[1]) / (10.0 * distances.shape[1])
    candidates = distances.topk(min(shortlist, distances.shape[1]), dim=1, largest=False).indices
    found = (true_neighbors.unsqueeze(2) == candidates.unsqueeze(1)).any(dim=2)  # (Q, k)
    return found.float().mean().item()


@dataclass
class CodeReport:
    """Measured retrieval quality of the codes against exact Euclidean neighbours."""

    bits: int
    k: int
    gallery: int
    queries: int
    train_seconds: float
    final_loss: float
    bits_balanced: float  # mean over bits of min(p, 1 - p) * 2: 1 = every bit splits 50/50
    recall: dict[int, float]  # shortlist size R -> recall of the k true neighbours
    random_projection_recall: dict[int, float]

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"R={r}: {v:.1%} (random projections {self.random_projection_recall[r]:.1%})"
                 for r, v in self.recall.items()]
        return (f"{self.bits}-bit codes, recall of the {self.k} Euclidean nearest neighbours in a "
                f"Hamming shortlist of " + "; ".join(parts))


def measure_codes(gallery: torch.Tensor, queries: torch.Tensor, k: int = 5,
                  config: CodeConfig | None = None) -> tuple[BinaryAutoencoder, CodeReport]:
    """Train codes on ``gallery`` and measure shortlist recall for ``queries`` (held out)."""
    config = config or CodeConfig()
    start = time.perf_counter()
    model, losses = train_autoencoder(gallery, config)
    seconds = time.perf_counter() - start
    _, true_neighbors = nearest_neighbors(queries, gallery, k)
    gallery_codes, query_codes = model.codes(gallery), model.codes(queries)
    projected_g = random_projection_codes(gallery, model.center, config.bits, config.seed)
    projected_q = random_projection_codes(queries, model.center, config.bits, config.seed)
    sizes = sorted({r for r in (k, 10 * k, 100 * k) if r <= len(gallery)} or {len(gallery)})
    ones = gallery_codes.float().mean(dim=0)
    report = CodeReport(
        bits=config.bits, k=true_neighbors.shape[1], gallery=len(gallery), queries=len(queries),
        train_seconds=seconds, final_loss=float(np.mean(losses[-50:])),
        bits_balanced=(2 * torch.minimum(ones, 1 - ones)).mean().item(),
        recall={r: shortlist_recall(true_neighbors, query_codes, gallery_codes, r) for r in sizes},
        random_projection_recall={r: shortlist_recall(true_neighbors, projected_q, projected_g, r)
                                  for r in sizes},
    )
    return model, report
