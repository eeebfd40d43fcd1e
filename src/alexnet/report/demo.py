"""The main job, what ``make demo`` runs: the paper's network and recipe on Imagenette.

prepare (once, cached in the store folder) -> train the ``imagenette`` preset -> evaluate
(centre crop, and the paper's 10 patches) -> write RUN_DIR/report.html. Each stage is the
package's own function; this module only chains them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.errors import AlexNetError
from alexnet.report.build import ReportOptions, build_report
from alexnet.train import train
from alexnet.train.config import resolve_config


@dataclass
class DemoResult:
    run_dir: Path
    report: Path
    summary: str


def run_demo(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] = "runs/imagenette",
    *,
    fresh: bool = False,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train the ``imagenette`` preset on ``data`` into ``out`` and write its report."""
    data = os.fspath(data)
    if not data.startswith("torchvision:") and not Path(data).exists():
        raise AlexNetError(
            f"Imagenette not found at {data}; pass --data DIR (a folder with train/ and val/), "
            "or, online, download it with: alexnet prepare torchvision:imagenette DEST --download"
        )
    config = resolve_config("imagenette", {**(overrides or {}), "data": data, "out": os.fspath(out)})
    log(f"demo: training {config.model} on {data} -> {config.out} (preset imagenette)")
    result = train(config, fresh=fresh, preset="imagenette", log=log)
    log(result.summary())
    if result.status != "finished":
        raise AlexNetError(f"training stopped early ({result.status}); rerun `make demo` to resume")
    log("demo: evaluating (centre crop and 10 patches) and writing the report")
    report = build_report(result.run_dir, ReportOptions(ten_crop=True))
    return DemoResult(result.run_dir, report, result.summary())
