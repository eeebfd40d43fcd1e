"""Training: ``train(resolve_config("imagenette"))`` from a notebook, ``alexnet train`` from a shell.

- ``config``: the typed TrainConfig, the named presets and their sources, overrides
- ``loop``: the training loop, ``train(config) -> TrainResult``
- ``step``: one SGD step (precision, DDP, torch.compile), shared with ``alexnet bench train``
- ``schedule``: learning rate per step (§5's plateau rule, step, cosine, linear + warmup)
- ``checkpointing``: the run folder, atomic checkpoints, resume, fine-tuning weights
- ``distributed``: torchrun data parallelism; ``towers``: the paper's two-device towers (§3.2)
"""

from alexnet.train.config import PRESETS, TrainConfig, resolve_config
from alexnet.train.loop import TrainResult, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "resolve_config", "train"]
