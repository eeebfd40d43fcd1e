"""torch.hub entry points: ``torch.hub.load(REPO, "alexnet2012", weights=..., **options)``.

One entry per registered model (``alexnet.models.list_models()``: alexnet2012, alexnet2014,
the cuda-convnet CIFAR-10 nets). ``weights`` is a checkpoint, a safetensors file, a run
folder or a Hugging Face folder written by ``alexnet``; without it the model is built with
the given ``create_model`` options and its default initialisation. See
``alexnet.evaluate.entrypoints.hub_model``.
"""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "torchvision", "numpy", "safetensors", "huggingface_hub"]

try:
    import alexnet as _alexnet  # noqa: F401 (installed: pip install -e .)
except ImportError:  # a plain checkout (torch.hub's download of the repository): use src/
    _sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from alexnet.evaluate.entrypoints import hub_model as _hub_model  # noqa: E402
from alexnet.models import list_models as _list_models  # noqa: E402


def _entry(name):
    def entry(weights=None, **options):
        return _hub_model(name, weights, **options)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"{name}: weights = a checkpoint, safetensors file, run folder or Hugging Face "
                     "folder written by alexnet (None: a new model); options go to create_model.")
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
