"""Exceptions that users of the library and the node can catch by kind."""


class InputError(ValueError):
    """An input image (or pair) cannot be fused: wrong size, dtype, channels, empty, NaN/inf.

    ``reason`` is a short key (``size_mismatch``, ``bad_encoding``, …) that the node and the
    offline tools count bad input by; the message says what is wrong and how to fix it.
    """

    reason = "invalid"  # subclasses name their kind of fault

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt or does not match the requested configuration."""


class BackendUnavailableError(RuntimeError):
    """A requested optional library (CUDA torch, onnxruntime, TensorRT, segment_anything) is absent."""


class BagError(ValueError):
    """A rosbag2 recording cannot be read (truncated, garbled, metadata.yaml broken, a storage
    file missing, a topic absent) or written (the output exists already). The message is one
    line naming the bag. A ValueError, as the missing-topic error always was.
    """


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors.

    Library messages run long: torch.load's to a dozen lines advising ``weights_only=False``
    (unsafe for a file of unknown origin), rosbags' quote multi-line YAML parser output.
    """
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


def torch_load_reason(error: BaseException) -> str:
    """Why torch.load refused a file, in a few words: its message's first sentence (the rest
    advises ``weights_only=False``, which runs code from a file of unknown origin)."""
    return f"{type(error).__name__}: {first_line(error).split('. ')[0]}"
