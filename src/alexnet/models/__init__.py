"""Models, chosen by name: ``create_model("alexnet2012", num_classes=10)``."""

from alexnet.models.registry import (
    MODELS,
    ModelSpec,
    check_input_size,
    create_model,
    list_models,
    model_options,
    parameter_names,
)

__all__ = ["MODELS", "ModelSpec", "check_input_size", "create_model", "list_models", "model_options",
           "parameter_names"]
