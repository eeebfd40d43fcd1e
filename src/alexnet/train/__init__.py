"""Training: ``train(resolve_config("imagenette"))`` from a notebook, ``alexnet train`` from a shell.

- ``config``: the typed TrainConfig (each field with its help), the named presets and
  their sources, overrides, ``resume_config`` (a run folder's config)
- ``loop``: the training loop, ``train(config) -> TrainResult``
- ``state``: TrainState, what a checkpoint saves and a resume restores
- ``metrics``: the epoch's running sums, metrics.jsonl, the console, TrainResult
- ``step``: one SGD step (precision, DDP, torch.compile), shared with ``alexnet bench train``
- ``schedule``: learning rate per step (§5's plateau rule, step, cosine, linear + warmup)
- ``checkpointing``: the run folder, atomic checkpoints, resume, fine-tuning weights
- ``distributed``: torchrun data parallelism; ``towers``: the paper's two-device towers (§3.2)
"""

from alexnet.train.config import PRESETS, TrainConfig, resolve_config, resume_config
from alexnet.train.loop import TrainResult, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "resolve_config", "resume_config", "train"]
