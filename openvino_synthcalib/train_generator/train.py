"""The distillation loop: teacher set -> student generator.

Each run lives in ``<runs_dir>/NNNNN-<name>/`` with ``options.json``, ``checkpoint-SSSSSSS.pt`` files,
TensorBoard events and ``log.txt``. ``--resume`` continues a run from its last checkpoint when the
options that define the result are identical (``--steps`` may grow). Under ``torchrun`` the loop runs
data-parallel (DDP; NCCL on CUDA, gloo on CPU); rank 0 writes everything.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import SynthcalibError
from .losses import d_hinge, feature_loss, g_hinge, pixel_loss, ramp
from .options import NON_SEMANTIC, jsonable, options_hash
from .student import ProjectionDiscriminator, build_generator, count_params
from .teacher_set import ensure_writable_dir, load_teacher_set

CKPT_RE = re.compile(r"checkpoint-(\d+)\.pt$")
KEEP_CHECKPOINTS = 3


# ----------------------------------------------------------------------------- run folders


def next_run_dir(runs_dir: str | Path, name: str) -> Path:
    """``runs_dir/NNNNN-name`` with NNNNN one above the highest existing run number."""
    root = ensure_writable_dir(runs_dir, "--runs-dir")
    nums = [int(p.name.split("-", 1)[0]) for p in root.iterdir() if re.match(r"^\d{5}-", p.name)]
    return root / f"{max(nums, default=-1) + 1:05d}-{name}"


def find_run_dir(runs_dir: str | Path, name: str, resume: str) -> Path:
    """Resolve ``--resume`` (a run folder, or ``latest`` for the newest run named ``name``)."""
    if resume != "latest":
        p = Path(resume)
        if not (p / "options.json").is_file():
            raise SynthcalibError(f"--resume {resume}: not a run folder (no options.json)")
        return p
    root = Path(runs_dir)
    runs = sorted(p for p in root.glob(f"[0-9][0-9][0-9][0-9][0-9]-{name}") if (p / "options.json").is_file())
    if not runs:
        raise SynthcalibError(f"--resume latest: no run named {name!r} in {runs_dir}")
    return runs[-1]


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``run_dir`` (None if there is none)."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint-*.pt") if (m := CKPT_RE.search(p.name))]
    return max(found)[1] if found else None


# ----------------------------------------------------------------------------- helpers


def load_real_images(spec: str, class_names: list[str] | None, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read ``images:DIR`` (ImageFolder) as uint8 NCHW + labels; its classes must match the teacher's."""
    from PIL import Image

    folder = Path(spec.split(":", 1)[1])
    if not folder.is_dir():
        raise SynthcalibError(f"--real-data {spec}: folder does not exist")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    expected = list(class_names) if class_names else None
    if len(classes) != num_classes or (expected is not None and classes != sorted(expected)):
        want = ", ".join(expected) if expected else f"{num_classes} classes"
        raise SynthcalibError(
            f"--real-data {spec}: class folders {', '.join(classes) or '(none)'} do not match the teacher's ({want})"
        )
    order = expected or classes
    images, labels = [], []
    for idx, cls in enumerate(order):
        for f in sorted((folder / cls).iterdir()):
            if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                with Image.open(f) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
                labels.append(idx)
    if not images:
        raise SynthcalibError(f"--real-data {spec}: no images found")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float().div_(127.5).sub_(1.0)


def image_grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> one [3, rows*H, nrow*W] grid in [0, 1] (no torchvision)."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    pad = torch.zeros(rows * nrow - n, c, h, w, dtype=images.dtype)
    x = torch.cat([images.detach().cpu(), pad]).view(rows, nrow, c, h, w)
    return ((x.permute(2, 0, 3, 1, 4).reshape(c, rows * h, nrow * w) + 1) / 2).clamp(0, 1)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def build_models(opts: dict[str, Any], z_dim: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    g = build_generator(z_dim, num_classes, opts["g_channels"], opts["g_blocks"], opts["max_params"])
    d = ProjectionDiscriminator(num_classes, opts["d_channels"])
    return g, d


# ----------------------------------------------------------------------------- the loop


def train_from_options(opts: dict[str, Any]) -> Path | None:
    """Run (or resume) training with resolved ``train`` options; returns the run folder.

    With ``dry_run`` it only prints the resolved options as JSON and returns None.
    """
    if opts["dry_run"]:
        print(json.dumps(jsonable(opts), indent=2))
        return None
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    if opts["device"] == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(opts["device"])
        if device.type == "cuda" and distributed:
            device = torch.device(f"cuda:{local_rank}")
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    manifest, z_all, labels_all, images_all = load_teacher_set(opts["data"])
    teacher = manifest["teacher"]
    z_dim, num_classes = int(teacher["z_dim"]), int(teacher["num_classes"])
    class_names = teacher.get("class_names")
    real = load_real_images(opts["real_data"], class_names, num_classes) if opts["real_data"] else None

    # --- run folder (rank 0 decides; others get it by broadcast)
    start_step, ckpt = 0, None
    if rank == 0:
        if opts["resume"]:
            run_dir = find_run_dir(opts["runs_dir"], opts["name"], opts["resume"])
            saved = json.loads((run_dir / "options.json").read_text())
            now = jsonable(opts)
            diff = sorted(k for k in set(saved) | set(now) if k not in NON_SEMANTIC and saved.get(k) != now.get(k))
            if diff:
                parts = [f"--{k.replace('_', '-')} {saved.get(k)!r} (run) vs {now.get(k)!r} (now)" for k in diff]
                raise SynthcalibError(f"--resume {run_dir}: options differ from the run's: {'; '.join(parts)}")
        else:
            run_dir = next_run_dir(opts["runs_dir"], opts["name"])
            ensure_writable_dir(run_dir, "--runs-dir")
            (run_dir / "options.json").write_text(json.dumps(jsonable(opts), indent=2))
    else:
        run_dir = Path()
    if distributed:
        box = [str(run_dir)]
        dist.broadcast_object_list(box, src=0)
        run_dir = Path(box[0])

    torch.manual_seed(opts["seed"])
    g, d = build_models(opts, z_dim, num_classes)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    g, d, g_ema = g.to(device), d.to(device), g_ema.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=opts["lr_g"], betas=(float(opts["beta1"]), float(opts["beta2"])))
    opt_d = torch.optim.Adam(d.parameters(), lr=opts["lr_d"], betas=(float(opts["beta1"]), float(opts["beta2"])))
    ckpt_path = last_checkpoint(run_dir) if opts["resume"] else None
    if ckpt_path is not None:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        g.load_state_dict(ckpt["G"])
        d.load_state_dict(ckpt["D"])
        g_ema.load_state_dict(ckpt["G_ema"])
        opt_g.load_state_dict(ckpt["opt_G"])
        opt_d.load_state_dict(ckpt["opt_D"])
        start_step = int(ckpt["step"])
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g = DDP(g, device_ids=ids)  # broadcasts rank 0's weights
        d = DDP(d, device_ids=ids)

    n_params = count_params(_unwrap(g))
    writer = log = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir))
        log = open(run_dir / "log.txt", "a")
        log.write(
            f"# start step {start_step} params G {n_params} D {count_params(_unwrap(d))} "
            f"device {device} world {world} hash {options_hash(opts)}\n"
        )
        log.flush()

    images_t = torch.from_numpy(images_all)
    z_t, labels_t = torch.from_numpy(z_all), torch.from_numpy(labels_all)
    n_data, batch = len(labels_t), opts["batch"]
    grid_idx = torch.cat([torch.nonzero(labels_t == c)[:8, 0] for c in range(num_classes)])
    if rank == 0 and start_step == 0 and writer is not None:
        writer.add_image("teacher", image_grid(to_float(images_t[grid_idx]), 8), 0)

    bar = None
    if rank == 0 and opts["progress"]:
        from tqdm import tqdm

        bar = tqdm(total=opts["steps"], initial=start_step, desc="train", unit="step")
    t0, last = time.time(), {}
    step = start_step
    deadline = t0 + 60.0 * opts["max_minutes"] if opts["max_minutes"] else None
    stop = False
    while step < opts["steps"] and not stop:
        gen = torch.Generator().manual_seed(opts["seed"] * 1_000_003 + step * world + rank)
        idx = torch.randint(n_data, (batch,), generator=gen)
        z, y = z_t[idx].to(device), labels_t[idx].to(device)
        timg = to_float(images_t[idx]).to(device)
        w_adv = opts["w_adv"] * ramp(step, opts["adv_ramp"])
        w_real = opts["w_real"] * ramp(step, opts["adv_ramp"]) if real is not None else 0.0
        need_d = opts["w_feat"] > 0 or w_adv > 0 or w_real > 0

        # --- generator step: one D forward on [teacher; student] (D grads are not synced nor used)
        g.train()
        fake = g(z, y)
        loss_pix = pixel_loss(fake, timg)
        loss_g = opts["w_pixel"] * loss_pix
        loss_feat = loss_adv = torch.zeros((), device=device)
        if need_d:
            ctx = d.no_sync() if distributed else _nullcontext()
            with ctx:
                logits, feats = d(torch.cat([timg, fake]), torch.cat([y, y]))
            t_feats = [f[:batch] for f in feats]
            s_feats = [f[batch:] for f in feats]
            loss_feat = feature_loss(s_feats, t_feats)
            loss_adv = g_hinge(logits[batch:])
            loss_g = loss_g + opts["w_feat"] * loss_feat + (w_adv + w_real) * loss_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        # --- discriminator step: teacher = real, student = fake (+ real images)
        loss_d = torch.zeros((), device=device)
        if w_adv > 0 or w_real > 0 or opts["w_feat"] > 0:
            xs, ys = [timg, fake.detach()], [y, y]
            if real is not None:
                ridx = torch.randint(len(real[1]), (batch,), generator=gen)
                xs.append(to_float(torch.from_numpy(real[0][ridx.numpy()])).to(device))
                ys.append(torch.from_numpy(real[1][ridx.numpy()]).to(device))
            logits, _ = d(torch.cat(xs), torch.cat(ys))
            loss_d = d_hinge(logits[:batch], logits[batch : 2 * batch])
            if real is not None:
                loss_d = loss_d + opts["w_real"] * d_hinge(logits[2 * batch :], logits[batch : 2 * batch])
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

        step += 1
        decay = min(opts["ema_decay"], (1.0 + step) / (10.0 + step))
        update_ema(g_ema, _unwrap(g), decay)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(pix=f"{loss_pix.item():.4f}", feat=f"{loss_feat.item():.3f}", d=f"{loss_d.item():.3f}")
        if rank == 0 and writer is not None and log is not None:
            if step % opts["log_every"] == 0 or step == opts["steps"]:
                last = {
                    "loss/pixel": loss_pix.item(),
                    "loss/feature": loss_feat.item(),
                    "loss/g_adv": loss_adv.item(),
                    "loss/d": loss_d.item(),
                    "weight/adv": w_adv,
                    "speed/steps_per_s": (step - start_step) / max(time.time() - t0, 1e-9),
                }
                for k, v in last.items():
                    writer.add_scalar(k, v, step)
                log.write(json.dumps({"step": step, **{k: round(v, 5) for k, v in last.items()}}) + "\n")
                log.flush()
            if step % opts["image_every"] == 0 or step == opts["steps"]:
                with torch.no_grad():
                    img = g_ema(z_t[grid_idx].to(device), labels_t[grid_idx].to(device))
                writer.add_image("student_ema", image_grid(img, 8), step)
        if deadline is not None:
            flag = torch.tensor([float(time.time() > deadline)], device=device)
            if distributed:
                dist.all_reduce(flag)
            stop = bool(flag.item() > 0)
        if step % opts["ckpt_every"] == 0 or step == opts["steps"] or stop:
            if rank == 0:
                save_checkpoint(run_dir, step, g, d, g_ema, opt_g, opt_d, opts, manifest, n_params)
            if distributed:
                dist.barrier()
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    if log is not None:
        log.close()
    if distributed:
        dist.barrier()
    return run_dir


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def save_checkpoint(
    run_dir: Path,
    step: int,
    g: nn.Module,
    d: nn.Module,
    g_ema: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    opts: dict[str, Any],
    manifest: dict[str, Any],
    n_params: int,
) -> Path:
    """Write ``checkpoint-SSSSSSS.pt`` atomically and keep the last few."""
    data = {
        "step": step,
        "G": _unwrap(g).state_dict(),
        "D": _unwrap(d).state_dict(),
        "G_ema": g_ema.state_dict(),
        "opt_G": opt_g.state_dict(),
        "opt_D": opt_d.state_dict(),
        "options": jsonable(opts),
        "options_hash": options_hash(opts),
        "teacher": manifest["teacher"],
        "image_size": manifest.get("image_size"),
        "params": n_params,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = run_dir / f"checkpoint-{step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    found = sorted((int(m.group(1)), p) for p in run_dir.glob("checkpoint-*.pt") if (m := CKPT_RE.search(p.name)))
    for _, old in found[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path
