"""Sample the teacher once into resumable .npz shards plus a JSON manifest.

Layout of a teacher-set folder::

    manifest.json        teacher metadata, plan (per_class, shard_size, seed) and finished shards
    shard_00000.npz      z float32 [n, z_dim], label int64 [n], image uint8 [n, 3, H, W]

Labels cycle through the classes so every shard is class-balanced. The z of shard ``i`` come from
``numpy.random.default_rng([seed, i])``, so a resumed run produces the same set as an uninterrupted one.
The manifest records each finished shard's item count, size and sha256: a rerun resamples any shard
that is missing, truncated or altered, and loading refuses one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SynthcalibError
from ..files import atomic_path, created_dirs, deferred_signals, ensure_dir, write_text
from ..imageio import to_uint8
from .teachers import Teacher, sha256_file

MANIFEST = "manifest.json"
FORMAT = "synthcalib-teacher-set/1"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True), "teacher-set manifest")


def _shard_ok(path: Path, record: Any) -> bool:
    """Whether a shard file is the one the manifest recorded (size and sha256)."""
    if not path.is_file():
        return False
    if not isinstance(record, dict):  # a manifest from before sizes and hashes were recorded
        return True
    return path.stat().st_size == record.get("bytes") and sha256_file(path) == record.get("sha256")


def _count(record: Any) -> int:
    return int(record["count"] if isinstance(record, dict) else record)


def sample_from_options(opts: dict[str, Any]) -> dict[str, Any]:
    """``sample-teacher`` with resolved options: open the teacher, sample it into ``--out``."""
    from .teachers import load_teacher

    with created_dirs(opts["out"], "--out"):
        teacher = load_teacher(
            opts["teacher"],
            z_dim=opts["z_dim"],
            num_classes=opts["num_classes"],
            class_names=opts["class_names"],
            truncation_psi=opts["truncation_psi"],
            teacher_code=opts["teacher_code"],
        )
        return sample_teacher_set(
            teacher,
            opts["out"],
            per_class=opts["per_class"],
            shard_size=opts["shard_size"],
            batch=opts["batch"],
            seed=opts["seed"],
            progress=opts["progress"],
        )


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
    out = ensure_dir(out, "--out")
    total = per_class * teacher.num_classes
    n_shards = (total + shard_size - 1) // shard_size
    plan = {"per_class": per_class, "shard_size": shard_size, "seed": seed, "total": total}
    meta = teacher.metadata()
    mpath = out / MANIFEST
    manifest: dict[str, Any]
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise SynthcalibError(f"--out {out}: {MANIFEST} is unreadable ({exc}); use a new folder") from None
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
    shards = manifest["shards"]
    todo = [i for i in range(n_shards) if not _shard_ok(out / f"shard_{i:05d}.npz", shards.get(f"shard_{i:05d}.npz"))]
    for i in todo:
        shards.pop(f"shard_{i:05d}.npz", None)
    if todo and manifest.get("complete"):
        manifest["complete"] = False
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
            raw = teacher.generate(z[b : b + batch], labels[b : b + batch])
            imgs.append(to_uint8(raw, (-1.0, 1.0), channels_last=False))
            if bar is not None:
                bar.update(len(imgs[-1]))
        name = f"shard_{i:05d}.npz"
        path = out / name
        # A shard counts once the manifest lists it: Ctrl+C waits for both, then stops the loop.
        with deferred_signals(resume_interrupt=True):
            with atomic_path(path, "teacher-set shard") as tmp:
                np.savez(tmp, z=z, label=labels, image=np.concatenate(imgs))
            shards[name] = {"count": hi - lo, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
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
    for name, record in sorted(manifest["shards"].items()):
        if not _shard_ok(p / name, record):
            raise SynthcalibError(
                f"--data {path}: shard {name} is missing or corrupt (size/hash differ from {MANIFEST}); "
                "rerun sample-teacher with the same options to resample it"
            )
        try:
            with np.load(p / name) as d:
                z, label, image = d["z"], d["label"], d["image"]
        except Exception as exc:
            raise SynthcalibError(
                f"--data {path}: shard {name} cannot be read ({type(exc).__name__}); rerun sample-teacher to resample it"
            ) from None
        if not len(z) == len(label) == len(image) == _count(record):
            raise SynthcalibError(
                f"--data {path}: shard {name} holds {len(image)} items, the manifest says {_count(record)}"
            )
        zs.append(z)
        ls.append(label)
        ims.append(image)
    return manifest, np.concatenate(zs), np.concatenate(ls), np.concatenate(ims)


def size(manifest: dict[str, Any]) -> int:
    """Number of images of a teacher set."""
    return sum(_count(r) for r in manifest["shards"].values())
