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


def preview_fit(num_classes: int, image_size: tuple[int, int]) -> int:
    """The most images per class that a preview of ``num_classes`` classes may hold (0: not even one)."""
    pixels = num_classes * image_size[0] * image_size[1]
    return min(MAX_PREVIEW_IMAGES // num_classes, MAX_PREVIEW_PIXELS // pixels)


def preview_defaults(num_classes: int, image_size: tuple[int, int], preferred: int) -> dict[str, Any]:
    """The preview a generator opens with: ``preferred`` images per class (fewer when that is over
    the caps) of every class, or, when not even one image of every class fits (ImageNet's 1000
    classes), of classes spread evenly over the list (``classes``: their indices, comma-separated)."""
    count = min(preferred, preview_fit(num_classes, image_size))
    if count >= 1:
        return {"count": count, "classes": ""}
    k = min(num_classes, preferred)
    while k > 1 and preview_fit(k, image_size) < 1:
        k -= 1
    chosen = [i * num_classes // k for i in range(k)]
    return {"count": max(1, min(preferred, preview_fit(k, image_size))), "classes": ",".join(map(str, chosen))}


def preview_size(count: int, num_classes: int, image_size: tuple[int, int]) -> None:
    """Reject previews over the image or pixel cap."""
    total = count * num_classes
    most = preview_fit(num_classes, image_size)
    if most < 1:  # even one image per class is too much: fewer classes, not fewer images per class
        fewer = max(1, min(MAX_PREVIEW_IMAGES, MAX_PREVIEW_PIXELS // (image_size[0] * image_size[1])))
        raise SynthcalibError(
            f"classes: {num_classes} classes of {image_size[0]}x{image_size[1]} images are over the preview limit "
            f"even at 1 per class; choose at most {fewer} classes"
        )
    if total > MAX_PREVIEW_IMAGES:
        raise SynthcalibError(
            f"count: {count} per class x {num_classes} classes = {total} images, over the limit of "
            f"{MAX_PREVIEW_IMAGES} per preview; ask for at most {most} per class"
        )
    pixels = total * image_size[0] * image_size[1]
    if pixels > MAX_PREVIEW_PIXELS:
        raise SynthcalibError(
            f"count: {total} images of {image_size[0]}x{image_size[1]} are over the preview limit of "
            f"{MAX_PREVIEW_PIXELS} pixels; ask for at most {most} per class"
        )
