"""The one provenance record: which code, which libraries, which machine produced a result.

config.json, summary tables of experiments, the report and the model card all take it from
here, so they give the same answer for the same checkout.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import torch
import torchvision

from alexnet.runtime.machine import describe_cpu

VERSION = "0.1.0"


def git_commit() -> str | None:
    """HEAD of the checkout this package runs from, with '+dirty' when src/ has uncommitted
    changes; None outside a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{'+dirty' if dirty else ''}" if head else None


def versions() -> dict[str, str]:
    return {"alexnet": VERSION, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def machine() -> str:
    """The CPU (its name and what it can do), the system and any GPUs."""
    text = f"{describe_cpu()}, {platform.system()}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return text
