"""Tiny generator and classifier IRs built with OpenVINO's opset API (no torch, no downloads).

Works with openvino 2023.3 (legacy POT environment) and 2026.x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

try:
    import openvino.opset11 as ops
except ImportError:  # openvino 2023.x keeps the opsets under runtime
    import openvino.runtime.opset11 as ops

from openvino_synthcalib.contract import GeneratorInfo, write_info

CLASS_NAMES = ("red", "green", "blue", "gray")


def _const(a: np.ndarray) -> ov.Node:
    return ops.constant(np.asarray(a, dtype=np.float32))


def make_generator(
    path: Path,
    *,
    z_dim: int = 8,
    num_classes: int = 4,
    size: int = 8,
    metadata: bool = True,
    onehot: bool = False,
    output_range: tuple[float, float] = (-1.0, 1.0),
    static_batch: int | None = None,
    class_names: tuple[str, ...] | None = CLASS_NAMES,
    nan: bool = False,
) -> Path:
    """A generator whose images depend on z and are tinted by class (class c brightens channel c % 3).

    ``nan=True``: a broken generator whose pixels are all NaN (its metadata still declares a range).
    """
    rng = np.random.default_rng(123)
    batch = static_batch if static_batch is not None else -1
    z = ops.parameter([batch, z_dim], ov.Type.f32, name="z")
    z.output(0).get_tensor().set_names({"z"})
    if onehot:
        label = ops.parameter([batch, num_classes], ov.Type.f32, name="label")
        emb = ops.matmul(label, _const(_tint(num_classes, size)), False, False)
    else:
        label = ops.parameter([batch], ov.Type.i64, name="label")
        emb = ops.gather(_const(_tint(num_classes, size)), label, ops.constant(np.int64(0)))
    label.output(0).get_tensor().set_names({"label"})
    hidden = ops.relu(ops.matmul(z, _const(rng.normal(0, 0.5, (z_dim, 32))), False, False))
    pix = ops.matmul(hidden, _const(rng.normal(0, 0.3, (32, 3 * size * size))), False, False)
    act = ops.tanh(ops.add(pix, emb))
    lo, hi = output_range
    act = ops.add(ops.multiply(act, _const(np.float32((hi - lo) / 2))), _const(np.float32((hi + lo) / 2)))
    if nan:
        act = ops.multiply(act, _const(np.float32("nan")))
    image = ops.reshape(act, ops.constant(np.array([-1, 3, size, size], np.int64)), False)
    image.output(0).get_tensor().set_names({"image"})
    model = ov.Model([image], [z, label], "tiny_generator")
    if metadata:
        write_info(
            model,
            GeneratorInfo(
                z_dim=z_dim,
                num_classes=num_classes,
                image_size=(size, size),
                output_range=output_range,
                label_input="onehot" if onehot else "index",
                class_names=class_names[:num_classes] if class_names and len(class_names) >= num_classes else None,
                provenance={"made_by": "tests/tiny_models.py"},
            ),
        )
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _tint(num_classes: int, size: int) -> np.ndarray:
    t = np.full((num_classes, 3, size, size), -0.6, np.float32)
    for c in range(num_classes):
        t[c, c % 3] = 1.2 if c < 3 else 0.3
    return t.reshape(num_classes, -1)


def make_classifier(
    path: Path, *, num_classes: int = 4, size: int = 8, nhwc: bool = False, input_type: str = "f32"
) -> Path:
    """A conv net whose decision reads the mean colour: class k < 3 = channel k strongest, class 3 = gray.

    ``input_type="u8"``: the input takes pixels 0..255 (uint8) and the net scales them to [0, 1].
    """
    rng = np.random.default_rng(7)
    shape = [-1, size, size, 3] if nhwc else [-1, 3, size, size]
    x = ops.parameter(shape, {"f32": ov.Type.f32, "u8": ov.Type.u8, "i8": ov.Type.i8}[input_type], name="input")
    x.output(0).get_tensor().set_names({"input"})
    h = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64))) if nhwc else x
    if input_type != "f32":
        h = ops.multiply(ops.convert(h, ov.Type.f32), _const(np.float32(1 / 255)))
    rgb = h
    w1 = rng.normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32)
    for k in range(3):
        w1[k, k] += 0.3
    h = ops.relu(ops.convolution(h, _const(w1), [1, 1], [1, 1], [1, 1], [1, 1]))
    w2 = rng.normal(0, 0.1, (16, 16, 3, 3)).astype(np.float32)
    for k in range(3):
        w2[k, k, 1, 1] += 1.0
    h = ops.relu(ops.convolution(h, _const(w2), [1, 1], [1, 1], [1, 1], [1, 1]))
    h = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), False)
    wf = rng.normal(0, 0.05, (16, num_classes)).astype(np.float32)
    conv_logits = ops.multiply(ops.matmul(h, _const(wf), False, False), _const(np.float32(0.1)))
    # the decision reads the mean colour: class k < 3 = channel k strongest, class 3 = gray (all alike)
    colour = ops.reduce_mean(rgb, ops.constant(np.array([2, 3], np.int64)), False)
    direct = np.zeros((3, num_classes), np.float32)
    bias = np.full(num_classes, -1.0, np.float32)
    for k in range(min(3, num_classes)):
        direct[k, k], bias[k] = 4.0, 0.0
    if num_classes > 3:
        direct[:, 3], bias[3] = 4.0 / 3, 0.6
    logits = ops.add(ops.add(ops.matmul(colour, _const(direct), False, False), _const(bias)), conv_logits)
    logits.output(0).get_tensor().set_names({"logits"})
    ov.save_model(ov.Model([logits], [x], "tiny_classifier"), str(path), compress_to_fp16=False)
    return path


def make_image_folder(root: Path, *, per_class: int = 6, size: int = 8, classes: tuple[str, ...] = CLASS_NAMES) -> Path:
    """root/<class>/NNNN.png: noisy images tinted like the generator's classes (by the colour in the name)."""
    from PIL import Image

    rng = np.random.default_rng(5)
    for name in classes:
        channel = next((k for k, colour in enumerate(("red", "green", "blue")) if colour in name), None)
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            img = rng.uniform(0, 80, (size, size, 3))
            if channel is not None:
                img[..., channel] += 160
            else:
                img += 80
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{k:04d}.png")
    return root


def make_outlier_classifier(path: Path, *, num_classes: int = 4, size: int = 8, outlier: float = 400.0) -> Path:
    """A classifier that INT8 ruins: like ``make_classifier`` it reads the mean colour, but through 1x1
    convolutions whose activations carry an extra channel ``outlier`` times the pixel sum. A per-tensor
    INT8 step of those activations (about outlier x 3 / 255) wipes out the colour channels, so the INT8
    model agrees with FP32 on few items until accuracy control keeps the convolutions after the
    outlier (``Convolution`` x 3 in all) in floating point."""
    x = ops.parameter([-1, 3, size, size], ov.Type.f32, name="input")
    x.output(0).get_tensor().set_names({"input"})

    def conv(h: ov.Node, w: np.ndarray) -> ov.Node:
        return ops.convolution(h, _const(w), [1, 1], [0, 0], [0, 0], [1, 1])

    w1 = np.zeros((4, 3, 1, 1), np.float32)
    for k in range(3):
        w1[k, k] = 1.0
    w1[3] = outlier
    h = ops.relu(conv(x, w1))
    h = ops.relu(conv(h, np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1)))
    h = conv(h, np.eye(4, dtype=np.float32)[:3].reshape(3, 4, 1, 1))
    colour = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), False)
    direct = np.zeros((3, num_classes), np.float32)
    bias = np.full(num_classes, -1.0, np.float32)
    for k in range(min(3, num_classes)):
        direct[k, k], bias[k] = 4.0, 0.0
    if num_classes > 3:
        direct[:, 3], bias[3] = 4.0 / 3, 0.6
    logits = ops.add(ops.matmul(colour, _const(direct), False, False), _const(bias))
    logits.output(0).get_tensor().set_names({"logits"})
    ov.save_model(ov.Model([logits], [x], "outlier_classifier"), str(path), compress_to_fp16=False)
    return path
