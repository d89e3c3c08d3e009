"""Sample the teacher once into resumable .npz shards plus a JSON manifest.

Layout of a teacher-set folder::

    manifest.json        teacher metadata, plan (per_class, shard_size, seed) and finished shards
    shard_00000.npz      z float32 [n, z_dim], label int64 [n], image uint8 [n, 3, H, W]

Labels cycle through the classes so every shard is class-balanced. The z of shard ``i`` come from
``numpy.random.default_rng([seed, i])``, so a resumed run produces the same set as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SynthcalibError
from .teachers import Teacher

MANIFEST = "manifest.json"
FORMAT = "synthcalib-teacher-set/1"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def ensure_writable_dir(path: str | Path, flag: str) -> Path:
    """Create ``path`` (and parents) or raise a one-line error naming ``flag``."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write_test_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SynthcalibError(f"{flag} {path}: output folder is not writable ({exc.strerror or exc})") from exc
    return p


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def sample_teacher_set(
    teacher: Teacher,
    out: str | Path,
    *,
    per_class: int = 2000,
    shard_size: int = 1000,
    batch: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``per_class`` images per class of ``teacher`` to ``out``; resumes finished shards."""
    out = ensure_writable_dir(out, "--out")
    total = per_class * teacher.num_classes
    n_shards = (total + shard_size - 1) // shard_size
    plan = {"per_class": per_class, "shard_size": shard_size, "seed": seed, "total": total}
    meta = teacher.metadata()
    mpath = out / MANIFEST
    manifest: dict[str, Any]
    if mpath.is_file():
        manifest = json.loads(mpath.read_text())
        old_t = {k: manifest.get("teacher", {}).get(k) for k in ("sha256", "spec", "z_dim", "num_classes")}
        new_t = {k: meta.get(k) for k in old_t}
        if manifest.get("plan") != plan or old_t != new_t:
            raise SynthcalibError(
                f"--out {out}: holds a teacher set with another teacher or plan; use a new folder to sample again"
            )
    else:
        manifest = {"format": FORMAT, "teacher": meta, "plan": plan, "shards": {}, "complete": False}
    manifest["teacher"] = meta
    labels_all = np.arange(total, dtype=np.int64) % teacher.num_classes
    todo = [
        i
        for i in range(n_shards)
        if not (out / f"shard_{i:05d}.npz").is_file() or f"shard_{i:05d}.npz" not in manifest["shards"]
    ]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            initial=total - sum(min(shard_size, total - i * shard_size) for i in todo),
            desc="teacher",
            unit="img",
        )
    t0 = time.time()
    for i in todo:
        lo, hi = i * shard_size, min(total, (i + 1) * shard_size)
        labels = labels_all[lo:hi]
        z = np.random.default_rng([seed, i]).standard_normal((hi - lo, teacher.z_dim)).astype(np.float32)
        imgs = []
        for b in range(0, hi - lo, batch):
            imgs.append(to_uint8(teacher.generate(z[b : b + batch], labels[b : b + batch])))
            if bar is not None:
                bar.update(len(imgs[-1]))
        name = f"shard_{i:05d}.npz"
        tmp = out / f"{name}.tmp.npz"
        np.savez(tmp, z=z, label=labels, image=np.concatenate(imgs))
        os.replace(tmp, out / name)
        manifest["shards"][name] = hi - lo
        manifest["image_size"] = list(imgs[0].shape[2:])
        _write_json(mpath, manifest)
    if bar is not None:
        bar.close()
    manifest["complete"] = True
    manifest["seconds_last_session"] = round(time.time() - t0, 1)
    _write_json(mpath, manifest)
    return manifest


def load_teacher_set(path: str | Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Return (manifest, z float32, labels int64, images uint8 NCHW) of a finished teacher set."""
    p = Path(path)
    mpath = p / MANIFEST
    if not mpath.is_file():
        raise SynthcalibError(f"--data {path}: no {MANIFEST}; write a teacher set with sample-teacher first")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != FORMAT:
        raise SynthcalibError(f"--data {path}: {MANIFEST} is not a {FORMAT} manifest")
    if not manifest.get("complete"):
        raise SynthcalibError(f"--data {path}: the teacher set is incomplete; rerun sample-teacher to finish it")
    zs, ls, ims = [], [], []
    for name in sorted(manifest["shards"]):
        with np.load(p / name) as d:
            zs.append(d["z"])
            ls.append(d["label"])
            ims.append(d["image"])
    return manifest, np.concatenate(zs), np.concatenate(ls), np.concatenate(ims)
