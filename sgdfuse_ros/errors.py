"""Exceptions that users of the library and the node can catch by kind."""


class InputError(ValueError):
    """An input image (or pair) cannot be fused: wrong size, dtype, channels, empty, NaN/inf."""


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt or does not match the requested configuration."""


class BackendUnavailableError(RuntimeError):
    """A requested optional library (CUDA torch, onnxruntime, TensorRT, segment_anything) is absent."""
