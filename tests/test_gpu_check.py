"""scripts/gpu-check, the command a session lent a GPU runs first, cannot rot: the same
parts run here on the CPU with --quick (bench, prepare + train the imagenette preset,
evaluate, two towers on one device, a one-process torchrun)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO

PARTS = ("bench", "pipeline", "evaluate", "towers", "torchrun")


def test_gpu_check_runs_every_part_on_a_cpu(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu-check"), "--device", "cpu",
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((tmp_path / "gpu-check.json").read_text())
    rows = {(row["part"], row["what"]): row["value"] for row in record["rows"]}
    assert not [key for key in rows if key[1] == "FAILED"]
    assert {part for part, _ in rows} == set(PARTS)
    assert rows[("bench", "alexnet2012 bf16 eager images/s")] > 0
    assert rows[("pipeline", "imagenette preset, 2 epochs: images/s")] > 0
    assert 0 <= rows[("pipeline", "data wait fraction")] <= 1
    assert rows[("torchrun", "1 process (gloo): status")] == "finished"
    assert rows[("torchrun", "world_size")] == 1
    assert rows[("towers", "towers on cpu,cpu: images/s")] > 0
    assert "cores" in record["machine"] and "torch" in record["machine"]
    assert (tmp_path / "gpu-check.txt").read_text().startswith("gpu-check on ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the check would run in full")
def test_gpu_check_without_a_gpu_says_so(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu-check"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "--device cpu --quick" in done.stderr
