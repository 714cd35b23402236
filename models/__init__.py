"""Shipped models: `xpstream-stn.onnx` (the default the daemon serves) with its model card, and
`preprocess.onnx` (the daemon's batched preprocessing graph)."""

from importlib import resources

DEFAULT_MODEL = "xpstream-stn.onnx"
PREPROCESS_MODEL = "preprocess.onnx"


def default_model_path():
    """Path of the shipped default model."""
    return resources.files(__name__) / DEFAULT_MODEL


def preprocess_model_path():
    """Path of the shipped batched-preprocessing graph (regions -> grid spectra)."""
    return resources.files(__name__) / PREPROCESS_MODEL
