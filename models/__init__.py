"""Shipped models: `xpstream-stn.onnx` (the default the daemon serves) and its model card."""

from importlib import resources

DEFAULT_MODEL = "xpstream-stn.onnx"


def default_model_path():
    """Path of the shipped default model."""
    return resources.files(__name__) / DEFAULT_MODEL
