"""Request parameters: parsing with one-line errors, and the per-request caps."""

from __future__ import annotations

import re
from typing import Any

from ..errors import SynthcalibError

MAX_SEED = 2**53 - 1  # the largest integer a browser's JavaScript numbers hold exactly
MAX_PER_CLASS = 100  # preview images per class
MAX_PREVIEW_IMAGES = 1000  # preview images per request
MAX_PREVIEW_PIXELS = 1000 * 64 * 64  # preview pixels per request (large generators get fewer images)
MAX_SAMPLES = 5000  # calibration items per job
LIMITS = {
    "max_seed": MAX_SEED,
    "max_per_class": MAX_PER_CLASS,
    "max_preview_images": MAX_PREVIEW_IMAGES,
    "max_samples": MAX_SAMPLES,
}
_INTEGER = re.compile(r"-?[0-9]{1,20}")


def shown(value: Any, limit: int = 40) -> str:
    """A user value quoted for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def integer(name: str, value: Any, low: int, high: int) -> int:
    """An integer in ``low..high`` from a query string or JSON value."""
    if isinstance(value, bool) or value is None:
        raise SynthcalibError(f"{name}: expected an integer in {low}..{high}, got {shown(value)}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        n = int(value.strip())
    else:
        raise SynthcalibError(f"{name}: expected an integer in {low}..{high}, got {shown(value)}")
    if not low <= n <= high:
        raise SynthcalibError(f"{name}: expected an integer in {low}..{high}, got {n}")
    return n


def class_list(value: str | None) -> list[str] | None:
    """``"cat,dog"`` or ``"3,5"`` -> a list of names/indices; empty -> ``None`` (all classes)."""
    if value is None:
        return None
    if len(value) > 4000:
        raise SynthcalibError("classes: expected comma-separated class names or indices, got a very long text")
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names or None


def preview_size(count: int, num_classes: int, image_size: tuple[int, int]) -> None:
    """Reject previews over the image or pixel cap."""
    total = count * num_classes
    if total > MAX_PREVIEW_IMAGES:
        raise SynthcalibError(
            f"count: {count} per class x {num_classes} classes = {total} images, over the limit of "
            f"{MAX_PREVIEW_IMAGES} per preview; ask for fewer"
        )
    pixels = total * image_size[0] * image_size[1]
    if pixels > MAX_PREVIEW_PIXELS:
        most = max(1, MAX_PREVIEW_PIXELS // (num_classes * image_size[0] * image_size[1]))
        raise SynthcalibError(
            f"count: {total} images of {image_size[0]}x{image_size[1]} are over the preview limit of "
            f"{MAX_PREVIEW_PIXELS} pixels; ask for at most {most} per class"
        )
