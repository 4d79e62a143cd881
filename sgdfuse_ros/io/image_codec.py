"""sensor_msgs/Image <-> numpy without cv_bridge (it breaks under NumPy 2, which torch pulls in).

The functions are duck-typed on the message fields (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``; ``format`` and ``data`` for CompressedImage), so the same
code decodes rclpy messages in the node and rosbags messages in the offline bag tool. Nothing
here imports rclpy.
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.imaging import AgcMode, thermal_gain

# encoding -> (numpy dtype of one channel, channels, channel order of a colour image)
_LAYOUTS: dict[str, tuple[np.dtype, int, str]] = {
    "mono8": (np.dtype(np.uint8), 1, "gray"),
    "8uc1": (np.dtype(np.uint8), 1, "gray"),
    "mono16": (np.dtype(np.uint16), 1, "gray"),
    "16uc1": (np.dtype(np.uint16), 1, "gray"),
    "32fc1": (np.dtype(np.float32), 1, "gray"),
    "rgb8": (np.dtype(np.uint8), 3, "rgb"),
    "bgr8": (np.dtype(np.uint8), 3, "bgr"),
    "rgba8": (np.dtype(np.uint8), 4, "rgb"),
    "bgra8": (np.dtype(np.uint8), 4, "bgr"),
}

SUPPORTED_INPUT_ENCODINGS: tuple[str, ...] = (
    "mono8",
    "8UC1",
    "mono16",
    "16UC1",
    "32FC1",
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
)
SUPPORTED_OUTPUT_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "mono8")


class ImageDecodeError(InputError):
    """A message cannot be turned into an image; ``reason`` is a short key for diagnostics counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)


@dataclass(frozen=True)
class AgcSettings:
    """Thermal automatic gain control: how raw 16-bit / float thermal values map to [0, 1]."""

    mode: AgcMode = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.0)
    fixed_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("percentile", "minmax", "fixed"):
            raise ValueError(f"unknown AGC mode {self.mode!r}; use percentile, minmax or fixed")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"AGC percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}"
            )
        if self.mode == "fixed":
            if self.fixed_range is None or float(self.fixed_range[1]) <= float(self.fixed_range[0]):
                raise ValueError(
                    "AGC mode 'fixed' needs a range (low, high) with high > low in raw units"
                )


@dataclass
class DecodedThermal:
    """A thermal frame ready for the pipeline plus any warning the caller should log."""

    unit: np.ndarray  # H×W float32 in [0, 1]
    warnings: list[str] = field(default_factory=list)


def _layout(encoding: str) -> tuple[np.dtype, int, str]:
    layout = _LAYOUTS.get(str(encoding).lower())
    if layout is None:
        raise ImageDecodeError(
            "unknown_encoding",
            f"unsupported image encoding {encoding!r}; supported: "
            + ", ".join(SUPPORTED_INPUT_ENCODINGS),
        )
    return layout


def _as_byte_array(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat uint8 array without copying where possible."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8)


def check_image_header(msg: Any) -> None:
    """Cheap validation of an Image message (no pixel copy), so bad frames are rejected on arrival.

    Raises ImageDecodeError with reason ``unknown_encoding``, ``empty``, ``bad_step`` or
    ``truncated``.
    """
    dtype, channels, _ = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError("empty", f"zero-size image ({width}x{height}, {msg.encoding})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step",
            f"step {step} is smaller than one row ({width} px x {channels} ch x "
            f"{dtype.itemsize} B = {row_bytes} B) for {msg.encoding}",
        )
    needed = step * (height - 1) + row_bytes
    available = len(msg.data)
    if available < needed:
        raise ImageDecodeError(
            "truncated",
            f"truncated image data: {available} bytes, {width}x{height} {msg.encoding} with "
            f"step {step} needs {step * height}",
        )


def check_pixel_limit(width: int, height: int, limit: int, what: str) -> None:
    """Refuse a frame above ``limit`` pixels (0: no limit) before anything is decoded.

    The live node bounds its memory and per-frame time this way: fusion memory grows with the
    pixel count, and one 12 MP frame held the node for ~100 s at 8 GB.
    """
    if limit and int(width) * int(height) > limit:
        raise ImageDecodeError(
            "too_large",
            f"{what} {width}x{height} has {int(width) * int(height)} pixels, above "
            f"max_input_pixels={limit}",
        )


def compressed_dimensions(data: Any) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None for other formats."""
    raw = _as_byte_array(data).tobytes()  # compressed: small next to the decoded frame
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR" and len(raw) >= 24:
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if not raw.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(raw):  # walk the JPEG segments up to the frame header (SOFn)
        if raw[position] != 0xFF:
            return None
        marker = raw[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            position += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(raw[position + 2 : position + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(raw[position + 5 : position + 7], "big")
            width = int.from_bytes(raw[position + 7 : position + 9], "big")
            return width, height
        position += 2 + length
    return None


def image_to_array(msg: Any) -> np.ndarray:
    """Decode an Image message into H×W or H×W×C in its own dtype and channel order.

    Row padding (``step`` larger than a row) is removed and big-endian data is byte-swapped to
    the native order, so callers always get a contiguous native array.
    """
    check_image_header(msg)
    dtype, channels, _ = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    raw = _as_byte_array(msg.data)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(height, row_bytes), strides=(step, 1))
    pixels = np.ascontiguousarray(rows)
    byte_order = ">" if bool(msg.is_bigendian) else "<"
    typed = pixels.view(dtype.newbyteorder(byte_order)) if dtype.itemsize > 1 else pixels
    typed = typed.astype(dtype, copy=False)  # to native order
    shape = (height, width) if channels == 1 else (height, width, channels)
    return typed.reshape(shape)


def _luma_u8(colour: np.ndarray, order: str) -> np.ndarray:
    """8-bit luminance of an RGB(A)/BGR(A) image (ITU-R BT.601 weights, like OpenCV)."""
    rgb = colour[..., :3].astype(np.float32)
    if order == "bgr":
        rgb = rgb[..., ::-1]
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(luma + 0.5, 0, 255).astype(np.uint8)


def _require_finite(array: np.ndarray, what: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ImageDecodeError("non_finite", f"{what} contains {bad} NaN/inf values")


def thermal_array_to_unit(
    array: np.ndarray, order: str, agc: AgcSettings, source: str = "thermal image"
) -> DecodedThermal:
    """Map a decoded thermal array (any supported dtype / channels) to float32 [0, 1].

    8-bit frames are already gain-controlled by the camera and scale by 1/255; 16-bit counts
    and float (e.g. temperature) images go through the configured AGC. A 3/4-channel image is
    most likely a false-colour palette, whose luminance is not monotonic in temperature: it is
    used as grey, with a warning.
    """
    warnings: list[str] = []
    if array.ndim == 3:
        warnings.append(
            f"{source} has {array.shape[2]} channels: a colour-palette thermal image is fused "
            "as its luminance, which does not follow temperature; publish mono8/mono16 instead"
        )
        array = _luma_u8(array, order) if array.dtype == np.uint8 else array[..., 0]
    if array.size == 0:
        raise ImageDecodeError("empty", f"{source} is empty")
    _require_finite(array, source)
    if array.dtype == np.uint8:
        unit = array.astype(np.float32) * np.float32(1.0 / 255.0)
    else:
        unit = thermal_gain(array, agc.mode, agc.percentiles, agc.fixed_range)
    return DecodedThermal(unit=unit, warnings=warnings)


def rgb_array_to_rgb8(array: np.ndarray, order: str, source: str = "RGB image") -> np.ndarray:
    """Any decoded visible image (colour or grey, 8/16-bit or float in [0, 1]) as H×W×3 uint8 RGB."""
    if array.size == 0:
        raise ImageDecodeError("empty", f"{source} is empty")
    _require_finite(array, source)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    colour = array[..., :3]
    if order == "bgr":
        colour = colour[..., ::-1]
    return np.ascontiguousarray(colour)


def decode_thermal(msg: Any, agc: AgcSettings) -> DecodedThermal:
    """Thermal sensor_msgs/Image -> float32 H×W in [0, 1] (with AGC) and warnings."""
    array = image_to_array(msg)
    return thermal_array_to_unit(array, _layout(msg.encoding)[2], agc, f"thermal {msg.encoding}")


def decode_rgb(msg: Any) -> np.ndarray:
    """Visible sensor_msgs/Image -> H×W×3 uint8 RGB."""
    array = image_to_array(msg)
    return rgb_array_to_rgb8(array, _layout(msg.encoding)[2], f"RGB {msg.encoding}")


def compressed_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, ...) with OpenCV.

    Returns the array (grey images keep their bit depth, so 16-bit PNG thermal stays 16-bit)
    and its channel order, ``bgr`` for colour as OpenCV delivers it.
    """
    import cv2

    raw = _as_byte_array(msg.data)
    if raw.size == 0:
        raise ImageDecodeError("empty", f"empty CompressedImage (format {msg.format!r})")
    if "compresseddepth" in str(msg.format).lower():
        raise ImageDecodeError(
            "unknown_encoding", "compressedDepth images are not supported; use plain png/jpeg"
        )
    decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError(
            "corrupt_compressed", f"OpenCV cannot decode CompressedImage (format {msg.format!r})"
        )
    return decoded, "bgr" if decoded.ndim == 3 else "gray"


def decode_thermal_compressed(msg: Any, agc: AgcSettings) -> DecodedThermal:
    """Thermal CompressedImage -> float32 H×W in [0, 1]."""
    array, order = compressed_to_array(msg)
    return thermal_array_to_unit(array, order, agc, f"thermal CompressedImage ({msg.format})")


def decode_rgb_compressed(msg: Any) -> np.ndarray:
    """Visible CompressedImage -> H×W×3 uint8 RGB."""
    array, order = compressed_to_array(msg)
    return rgb_array_to_rgb8(array, order, f"RGB CompressedImage ({msg.format})")


@dataclass(frozen=True)
class ImageFields:
    """The payload fields of a sensor_msgs/Image, to copy into an rclpy or rosbags message."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def encode_rgb(rgb: np.ndarray, encoding: str = "rgb8") -> ImageFields:
    """H×W×3 uint8 RGB -> Image fields in ``rgb8``, ``bgr8`` or ``mono8`` (luminance)."""
    if encoding not in SUPPORTED_OUTPUT_ENCODINGS:
        raise ValueError(
            f"unsupported output encoding {encoding!r}; use "
            + ", ".join(SUPPORTED_OUTPUT_ENCODINGS)
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_rgb needs H×W×3 uint8, got {rgb.shape} {rgb.dtype}")
    if encoding == "bgr8":
        out = rgb[..., ::-1]
    elif encoding == "mono8":
        out = _luma_u8(rgb, "rgb")
    else:
        out = rgb
    out = np.ascontiguousarray(out)
    height, width = out.shape[:2]
    return ImageFields(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=out.strides[0],
        data=out.tobytes(),
    )


def encode_array(
    array: np.ndarray, encoding: str, is_bigendian: bool = False, row_padding: int = 0
) -> ImageFields:
    """Any supported array -> Image fields, optionally big-endian and with padded rows.

    Used to produce test and demo messages in every encoding the decoder accepts.
    """
    dtype, channels, _ = _layout(encoding)
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(
            f"{encoding} needs {channels} channel(s), got array of shape {array.shape}"
        )
    height, width = array.shape[:2]
    typed = array.astype(dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    rows = np.ascontiguousarray(typed).view(np.uint8).reshape(height, -1)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    return ImageFields(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bool(is_bigendian) and dtype.itemsize > 1),
        step=rows.shape[1],
        data=rows.tobytes(),
    )


def image_message(message_type: Any, fields: ImageFields, header: Any = None) -> Any:
    """The one place a ``sensor_msgs/Image`` is built from encoded fields.

    Works for rclpy's generated class and for a rosbags typestore class: rosbags stores
    ``uint8[]`` as a numpy array, rclpy as ``array.array('B')`` (which it takes without a
    per-byte check). ``header`` is the message's header (rclpy: None leaves an empty one).
    """
    if hasattr(message_type, "__msgtype__"):  # rosbags typestore dataclass
        data: Any = np.frombuffer(fields.data, np.uint8)
    else:
        data = array.array("B", fields.data)
    kwargs: dict[str, Any] = {} if header is None else {"header": header}
    return message_type(
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=data,
        **kwargs,
    )
