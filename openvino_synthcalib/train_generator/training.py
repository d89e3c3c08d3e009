"""The distillation loop: teacher set -> student generator.

Each run lives in ``<runs_dir>/NNNNN-<name>/`` with ``options.json``, ``checkpoint-SSSSSSS.pt`` files,
TensorBoard events and ``log.txt``. ``--resume`` continues a run from its last checkpoint when the
options that define the result are identical (``--steps`` may grow). Under ``torchrun`` the loop runs
data-parallel (DDP; NCCL on CUDA, gloo on CPU); rank 0 writes everything.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import SynthcalibError
from ..files import write_text
from ..imagefolder import ImageFolder, load_image
from ..imageio import to_uint8
from .checkpoints import find_run_dir, load_checkpoint, next_run_dir, save_checkpoint
from .losses import d_hinge, feature_loss, g_hinge, pixel_loss, ramp
from .options import BY_NAME, NON_SEMANTIC, jsonable, options_hash, used_options
from .student import ProjectionDiscriminator, count_params, generator_from_options
from .teacher_set import load_teacher_set


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after a checkpoint of the last finished step was saved."""


# ----------------------------------------------------------------------------- helpers


def load_real_images(spec: str, class_names: list[str] | None, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read ``images:DIR`` (ImageFolder) as uint8 NCHW + labels; its classes must match the teacher's."""
    folder = ImageFolder(spec.split(":", 1)[1])
    classes = list(folder.classes)
    expected = list(class_names) if class_names else None
    if len(classes) != num_classes or (expected is not None and classes != sorted(expected)):
        want = ", ".join(expected) if expected else f"{num_classes} classes"
        raise SynthcalibError(
            f"--real-data {spec}: class folders {', '.join(classes) or '(none)'} do not match the teacher's ({want})"
        )
    order = expected or classes
    images, labels = [], []
    for idx, cls in enumerate(order):
        for path in folder.files[classes.index(cls)]:
            images.append(to_uint8(load_image(path)[None], channels_last=False)[0])
            labels.append(idx)
    sizes = {im.shape for im in images}
    if len(sizes) != 1:
        raise SynthcalibError(f"--real-data {spec}: images of different sizes {sorted(sizes)[:3]}: expected one size")
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
    g = generator_from_options(opts, z_dim, num_classes, opts["max_params"])
    d = ProjectionDiscriminator(num_classes, opts["d_channels"])
    return g, d


# ----------------------------------------------------------------------------- the loop


def resolve_device(spec: str, local_rank: int, distributed: bool) -> torch.device:
    """The torch device of ``--device`` (auto, cpu, cuda, cuda:N); under DDP, cuda means this rank's GPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise SynthcalibError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise SynthcalibError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise SynthcalibError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
    index = local_rank if device.index is None or distributed else device.index
    if index >= torch.cuda.device_count():
        raise SynthcalibError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step`` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not (isinstance(entry, dict) and int(entry.get("step", 0)) > step):
            kept.append(line)
    write_text(path, "".join(f"{line}\n" for line in kept), "training log")


class _StopRequests:
    """SIGINT/SIGTERM during training ask the loop to stop after the current step (and checkpoint);
    a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequests:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _open_run(opts: dict[str, Any], rank: int) -> tuple[Path, bool]:
    """The run folder (rank 0 decides; made new unless resuming) and whether it was made now."""
    if rank != 0:
        return Path(), False
    if opts["resume"]:
        run_dir = find_run_dir(opts["runs_dir"], opts["name"], opts["resume"])
        saved = json.loads((run_dir / "options.json").read_text())
        now = jsonable(opts)
        # options added since the run was made count as their defaults
        saved = {**jsonable({k: o.default for k, o in BY_NAME.items() if k in now}), **saved}
        diff = sorted(k for k in set(saved) | set(now) if k not in NON_SEMANTIC and saved.get(k) != now.get(k))
        if diff:
            parts = [f"--{k.replace('_', '-')} {saved.get(k)!r} (run) vs {now.get(k)!r} (now)" for k in diff]
            raise SynthcalibError(f"--resume {run_dir}: options differ from the run's: {'; '.join(parts)}")
        return run_dir, False
    run_dir = next_run_dir(opts["runs_dir"], opts["name"])
    try:
        run_dir.mkdir()
    except OSError as exc:
        raise SynthcalibError(f"--runs-dir {opts['runs_dir']}: cannot create {run_dir.name} ({exc.strerror})") from None
    write_text(run_dir / "options.json", json.dumps(jsonable(opts), indent=2), "run options")
    return run_dir, True


def train_from_options(opts: dict[str, Any]) -> Path | None:
    """Run (or resume) training with resolved ``train`` options; returns the run folder.

    With ``dry_run`` it only prints the resolved options as JSON and returns None. A new run
    folder that ends up without a checkpoint (the run failed before its first) is removed.
    SIGINT/SIGTERM stop after the current step with a checkpoint (:class:`TrainingInterrupted`).
    """
    if opts["dry_run"]:
        print(json.dumps(jsonable(opts), indent=2))
        return None
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    device = resolve_device(opts["device"], local_rank, distributed)
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    if opts["classifier"]:
        from .inversion import Inversion

        method: Method = Inversion(opts, device)
    else:
        method = Distillation(opts, device)
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    run_dir, new_run = _open_run(opts, rank)
    if distributed:
        box = [str(run_dir)]
        dist.broadcast_object_list(box, src=0)
        run_dir = Path(box[0])
    try:
        _train(opts, run_dir, device, method)
    except BaseException:
        if new_run and not any(run_dir.glob("checkpoint-*.pt")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


class Method:
    """What a training method gives the loop: its modules and optimizers (checkpointed by name), the
    generator and its EMA copy, one optimisation step, and image grids for TensorBoard."""

    teacher: dict[str, Any]
    image_size: Any = None

    def __init__(self) -> None:
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.g_ema: nn.Module

    @property
    def g(self) -> nn.Module:
        return self.modules["G"]

    def wrap_ddp(self, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        for name in list(self.modules):
            self.modules[name] = DDP(self.modules[name], device_ids=ids)  # broadcasts rank 0's weights

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: _unwrap(m).state_dict() for name, m in self.modules.items()}
        out["G_ema"] = self.g_ema.state_dict()
        out.update({f"opt_{name}": o.state_dict() for name, o in self.optimizers.items()})
        return out

    def load(self, ckpt: dict[str, Any]) -> None:
        for name, m in self.modules.items():
            m.load_state_dict(ckpt[name])
        self.g_ema.load_state_dict(ckpt["G_ema"])
        for name, o in self.optimizers.items():
            o.load_state_dict(ckpt[f"opt_{name}"])

    def step(self, step: int, gen: torch.Generator, distributed: bool) -> dict[str, float]:
        raise NotImplementedError

    def first_grids(self) -> dict[str, torch.Tensor]:
        """Grids logged once at step 0 (e.g. the teacher's images)."""
        return {}

    def grid(self) -> torch.Tensor:
        """The EMA generator's images for the TensorBoard grid."""
        raise NotImplementedError

    def postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {}


class Distillation(Method):
    """TinyGAN-style black-box distillation from a teacher set (pixel L1, discriminator features, hinge)."""

    def __init__(self, opts: dict[str, Any], device: torch.device) -> None:
        super().__init__()
        self.opts, self.device = opts, device
        manifest, z_all, labels_all, images_all = load_teacher_set(opts["data"])
        self.teacher = manifest["teacher"]
        self.image_size = manifest.get("image_size")
        z_dim, num_classes = int(self.teacher["z_dim"]), int(self.teacher["num_classes"])
        self.real = (
            load_real_images(opts["real_data"], self.teacher.get("class_names"), num_classes)
            if opts["real_data"]
            else None
        )
        torch.manual_seed(opts["seed"])
        g, d = build_models(opts, z_dim, num_classes)
        self.g_ema = copy.deepcopy(g).eval().requires_grad_(False).to(device)
        self.modules = {"G": g.to(device), "D": d.to(device)}
        betas = (float(opts["beta1"]), float(opts["beta2"]))
        self.optimizers = {
            "G": torch.optim.Adam(g.parameters(), lr=opts["lr_g"], betas=betas),
            "D": torch.optim.Adam(d.parameters(), lr=opts["lr_d"], betas=betas),
        }
        self.images_t = torch.from_numpy(images_all)
        self.z_t, self.labels_t = torch.from_numpy(z_all), torch.from_numpy(labels_all)
        self.grid_idx = torch.cat([torch.nonzero(self.labels_t == c)[:8, 0] for c in range(num_classes)])

    def first_grids(self) -> dict[str, torch.Tensor]:
        return {"teacher": image_grid(to_float(self.images_t[self.grid_idx]), 8)}

    def grid(self) -> torch.Tensor:
        with torch.no_grad():
            img = self.g_ema(self.z_t[self.grid_idx].to(self.device), self.labels_t[self.grid_idx].to(self.device))
        return image_grid(img, 8)

    def postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {
            "pix": f"{scalars['loss/pixel']:.4f}",
            "feat": f"{scalars['loss/feature']:.3f}",
            "d": f"{scalars['loss/d']:.3f}",
        }

    def step(self, step: int, gen: torch.Generator, distributed: bool) -> dict[str, float]:
        opts, device, real = self.opts, self.device, self.real
        g, d = self.modules["G"], self.modules["D"]
        opt_g, opt_d = self.optimizers["G"], self.optimizers["D"]
        batch = opts["batch"]
        idx = torch.randint(len(self.labels_t), (batch,), generator=gen)
        z, y = self.z_t[idx].to(device), self.labels_t[idx].to(device)
        timg = to_float(self.images_t[idx]).to(device)
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
            with d.no_sync() if distributed else contextlib.nullcontext():
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
        return {
            "loss/pixel": loss_pix.item(),
            "loss/feature": loss_feat.item(),
            "loss/g_adv": loss_adv.item(),
            "loss/d": loss_d.item(),
            "weight/adv": w_adv,
        }


def parent_record(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """What a run started with ``--init-from`` came from: the checkpoint, its step and the options its
    method used, and where that run came from in turn (a generator's provenance keeps the whole chain)."""
    record = {
        "run": path.parent.name,
        "checkpoint": path.name,
        "step": int(ckpt["step"]),
        "options_hash": ckpt.get("options_hash"),
        "options": used_options(ckpt.get("options") or {}),
    }
    if ckpt.get("started_from"):
        record["started_from"] = ckpt["started_from"]
    return record


def _train(opts: dict[str, Any], run_dir: Path, device: torch.device, method: Method) -> None:
    rank, _, world = _dist_info()
    distributed = world > 1
    start_step, elapsed0, started_from = 0, 0.0, None
    if opts["resume"] and any(run_dir.glob("checkpoint-*.pt")):
        flag, where = "--resume", run_dir
    elif opts["init_from"]:
        flag, where = "--init-from", opts["init_from"]
    else:
        flag = where = None
    if where is not None:
        ckpt, path = load_checkpoint(where, flag, map_location=device)
        try:
            method.load(ckpt)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise SynthcalibError(
                f"{flag} {path}: its networks do not fit this run's options ({str(exc).splitlines()[0][:200]})"
            ) from None
        start_step, elapsed0 = int(ckpt["step"]), float(ckpt.get("elapsed_s", 0.0))
        started_from = ckpt.get("started_from") if flag == "--resume" else parent_record(ckpt, path)
    if distributed:
        method.wrap_ddp(device)

    n_params = count_params(_unwrap(method.g))

    def checkpoint(step: int) -> Path:
        state = {
            **method.state(),
            "options": jsonable(opts),
            "options_hash": options_hash(opts),
            "teacher": method.teacher,
            "image_size": method.image_size,
            "params": n_params,
            "elapsed_s": elapsed0 + time.time() - t0,  # training time over all sessions of the run
            **({"started_from": started_from} if started_from else {}),
        }
        return save_checkpoint(run_dir, step, state, keep=opts["keep_checkpoints"])

    with contextlib.ExitStack() as stack:
        writer = log = None
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            if opts["resume"]:  # events and log lines after the checkpoint would be duplicated
                _trim_log(run_dir / "log.txt", start_step)
            writer = stack.enter_context(SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None))
            log = stack.enter_context(open(run_dir / "log.txt", "a"))
            others = " ".join(f"{k} {count_params(_unwrap(m))}" for k, m in method.modules.items() if k != "G")
            log.write(
                f"# start step {start_step} params G {n_params}{' ' + others if others else ''} "
                f"device {device} world {world} hash {options_hash(opts)}\n"
            )
            log.flush()
        stops = stack.enter_context(_StopRequests())
        if writer is not None and start_step == 0:
            for tag, grid in method.first_grids().items():
                writer.add_image(tag, grid, 0)

        bar = None
        if rank == 0 and opts["progress"]:
            from tqdm import tqdm

            bar = stack.enter_context(tqdm(total=opts["steps"], initial=start_step, desc="train", unit="step"))
        t0 = time.time()
        step = start_step
        deadline = t0 + 60.0 * opts["max_minutes"] if opts["max_minutes"] else None
        stop = interrupted = False
        while step < opts["steps"] and not stop:
            gen = torch.Generator().manual_seed(opts["seed"] * 1_000_003 + step * world + rank)
            scalars = method.step(step, gen, distributed)
            step += 1
            decay = min(opts["ema_decay"], (1.0 + step) / (10.0 + step))
            update_ema(method.g_ema, _unwrap(method.g), decay)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(**method.postfix(scalars))
            if writer is not None and log is not None:
                if step % opts["log_every"] == 0 or step == opts["steps"]:
                    last = {
                        **scalars,
                        "speed/steps_per_s": (step - start_step) / max(time.time() - t0, 1e-9),
                        "time/minutes": (elapsed0 + time.time() - t0) / 60.0,
                    }
                    for k, v in last.items():
                        writer.add_scalar(k, v, step)
                    log.write(json.dumps({"step": step, **{k: round(v, 5) for k, v in last.items()}}) + "\n")
                    log.flush()
                if step % opts["image_every"] == 0 or step == opts["steps"]:
                    writer.add_image("student_ema", method.grid(), step)
            flags = [float(deadline is not None and time.time() > deadline), float(stops.requested)]
            if distributed:
                reduced = torch.tensor(flags, device=device)
                dist.all_reduce(reduced)
                flags = reduced.tolist()
            interrupted = flags[1] > 0
            stop = flags[0] > 0 or interrupted
            if step % opts["ckpt_every"] == 0 or step == opts["steps"] or stop:
                saved = checkpoint(step) if rank == 0 else None
                if distributed:
                    dist.barrier()
        if distributed:
            dist.barrier()
    if interrupted:
        where = f"checkpoint {saved}" if rank == 0 else "a checkpoint"
        raise TrainingInterrupted(
            f"train: interrupted after step {step}; {where} saved; continue with --resume {run_dir}"
        )
