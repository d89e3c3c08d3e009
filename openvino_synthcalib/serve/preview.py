"""Preview images of a generator: the files ``synthcalib generate`` writes, in memory."""

from __future__ import annotations

import base64
import io
import shlex
import time
import zipfile
from typing import Any

from ..imageio import SampleFile, sample_pngs
from ..stream import SyntheticStream
from .catalog import GeneratorEntry
from .params import preview_size

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same request gives the same ZIP


def preview_stream(entry: GeneratorEntry, seed: int, classes: list[str] | None, count: int) -> SyntheticStream:
    """``count`` images per chosen class: the stream ``synthcalib generate -n count*len(classes)`` reads.

    A new stream per request (its block cache is not thread-safe); the compiled engine is shared.
    """
    source = entry.source
    chosen = source.choose(classes)
    k = source.num_classes if chosen is None else len(chosen)
    preview_size(count, k, source.image_size)
    return SyntheticStream(source, count * k, seed=seed, classes=chosen)


def sample_files(entry: GeneratorEntry, seed: int, classes: list[str] | None, count: int) -> list[SampleFile]:
    """Every file of the preview (per-class PNGs, then ``grid.png``)."""
    stream = preview_stream(entry, seed, classes, count)
    return list(sample_pngs(stream.batches(), stream.source.names, ids=getattr(stream.source, "class_ids", None)))


def generate_command(entry: GeneratorEntry, seed: int, classes: list[str] | None, total: int) -> str:
    """The ``synthcalib generate`` command that writes the same files."""
    parts = ["synthcalib", "generate", "--source", entry.source.spec, "--seed", str(seed), "-n", str(total)]
    if classes:
        parts += ["--classes", ",".join(classes)]
    return shlex.join([*parts, "--out", "samples/"])


def preview(entry: GeneratorEntry, seed: int, classes: list[str] | None, count: int) -> dict[str, Any]:
    """The grid as JSON: one row per class (class index order), each image as a base64 PNG."""
    started = time.perf_counter()
    stream = preview_stream(entry, seed, classes, count)
    names = stream.source.names
    rows: dict[int, list[dict[str, Any]]] = {}
    ids = getattr(stream.source, "class_ids", None)
    for index, sample in enumerate(f for f in sample_pngs(stream.batches(), names, ids=ids) if f.label is not None):
        item = {"index": index, "path": sample.path, "png": base64.b64encode(sample.data).decode("ascii")}
        rows.setdefault(sample.label, []).append(item)
    return {
        "generator": entry.id,
        "seed": seed,
        "count": count,
        "images": len(stream),
        "seconds": round(time.perf_counter() - started, 3),
        "rows": [{"label": c, "name": names[c], "items": rows[c]} for c in sorted(rows)],
        "command": generate_command(entry, seed, classes, len(stream)),
    }


def zip_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """A ZIP (stored, fixed dates) of ``(path, bytes)`` pairs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buffer.getvalue()
