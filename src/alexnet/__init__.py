"""alexnet: Krizhevsky, Sutskever & Hinton (2012) as fast, faithful, tested software.

The package follows the data's path: ``data`` (prepare, store, augment) -> ``models``
-> ``train`` -> ``evaluate`` -> ``report``. The ``alexnet`` command is a thin layer over
these functions, which work the same from a notebook.
"""

from alexnet.errors import AlexNetError
from alexnet.models import create_model, list_models
from alexnet.runtime.provenance import VERSION as __version__

__all__ = ["AlexNetError", "__version__", "create_model", "list_models"]
