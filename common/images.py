"""Image decoding for the model: pure functions on bytes and NumPy, no Spark.

:func:`decode_for_model` turns a file's bytes into the 224x224 RGB ``uint8`` image the
model gets, exactly as the original notebook did for an RGB photo
(``Image.open(io.BytesIO(content)).resize([224, 224])``, Pillow's default filter), after
two steps the notebook lacked: the EXIF orientation is applied (so a phone photo stands
as the camera saw it) and every mode is converted to RGB. A file that cannot be used
raises :class:`ImageRejected` with a short reason code.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.tables import IMAGE_SIZE

# Reason codes of silver.rejects (bronze statuses too_large and unreadable pass through).
EMPTY = "empty"
NOT_AN_IMAGE = "not_an_image"
UNKNOWN_FORMAT = "unknown_format"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
DECOMPRESSION_BOMB = "decompression_bomb"
TOO_SMALL = "too_small"

# Transparent pixels are laid on white: Fruits-360 photos show fruit on white.
BACKGROUND = (255, 255, 255)


class ImageRejected(ValueError):
    """The bytes cannot be made into a model input; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    min_side: int


@dataclass(frozen=True)
class ModelImage:
    """A decoded image: its original size and mode, and the 224x224x3 uint8 pixels."""

    width: int
    height: int
    mode: str
    pixels: bytes


def decode_for_model(content: bytes | None, limits: DecodeLimits) -> ModelImage:
    """Bytes of an image file -> :class:`ModelImage`, or raise :class:`ImageRejected`."""
    if not content:
        raise ImageRejected(EMPTY, "the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(content))
        except Image.DecompressionBombError as exc:
            raise ImageRejected(DECOMPRESSION_BOMB, str(exc)) from exc
        except UnidentifiedImageError as exc:
            reason = NOT_AN_IMAGE if _looks_like_text(content) else UNKNOWN_FORMAT
            raise ImageRejected(reason, f"not a recognised image format: {exc}") from exc
        width, height = image.size
        mode = image.mode
        if width * height > limits.max_pixels:
            raise ImageRejected(
                DECOMPRESSION_BOMB,
                f"{width}x{height} = {width * height} pixels is over the limit of "
                f"{limits.max_pixels} (silver.max_pixels)",
            )
        if min(width, height) < limits.min_side:
            raise ImageRejected(
                TOO_SMALL,
                f"{width}x{height} is smaller than {limits.min_side} pixels on a side "
                "(silver.min_side)",
            )
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = to_rgb(image)
        except Image.DecompressionBombError as exc:
            raise ImageRejected(DECOMPRESSION_BOMB, str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            reason = TRUNCATED if _is_truncation(message) else CORRUPT
            raise ImageRejected(reason, message) from exc
    resized = rgb.resize([IMAGE_SIZE, IMAGE_SIZE])
    return ModelImage(width=width, height=height, mode=mode, pixels=resized.tobytes())


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: alpha laid on white, 16/32-bit scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples (I;16*, or I holding 16-bit PNG data): keep the top 8 bits.
        values = np.asarray(image, dtype=np.uint32)
        eight = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    if mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
        return Image.fromarray(values.round().astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def pixels_to_array(pixels: bytes) -> np.ndarray:
    """Stored silver pixels -> a (224, 224, 3) uint8 array."""
    return np.frombuffer(pixels, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 3)


def _looks_like_text(content: bytes) -> bool:
    head = content[:512]
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def _is_truncation(message: str) -> bool:
    lowered = message.lower()
    return "truncated" in lowered or "broken data stream" in lowered or "eof" in lowered
