"""One table of defaults, shared by the Python API and the CLI."""

from __future__ import annotations

from types import MappingProxyType

DEFAULTS = MappingProxyType(
    {
        "num_samples": 300,  # NNCF's default subset_size
        "seed": 0,
        "batch_size": 32,  # generator inference batch
        "num_requests": 0,  # 0: OpenVINO's optimal number of infer requests
        "prefetch": 64 << 20,  # bytes of items generated ahead of the quantizer, in a background thread
        # seconds a prefetching stream may go without producing an item before it fails with an
        # error naming what it was doing (environment: SYNTHCALIB_STALL_TIMEOUT)
        "stall_timeout": 300.0,
        "keep": 64 << 20,  # bytes of a Dataset's first pass kept for NNCF's later passes (0: regenerate)
        "device": "CPU",
        # Generator precision for images a user sees (generate, serve, evaluate): f32 makes item i
        # identical on every CPU (bf16 is the default on some).
        "precision": "f32",
        # ...and for calibration streams: the device's default, like the quantizer's own statistics
        # (NNCF collects them at the device's default precision, so f32 items would not make the
        # INT8 model the same on every CPU either); on a bf16 CPU it generates about twice as fast.
        "calibration_precision": "auto",
        "eval_batch_size": 64,
        "recipe_score_samples": 1000,  # synthetic items the adaptive recipe scores candidates on
        # ...drawn from a generator with latents this many times as wide as calibration's (see recipes.py)
        "recipe_score_latent_scale": 1.5,
        "check_samples": 1000,  # fresh synthetic items the INT8 model is checked on (quality.py)
        "generate_num": 100,
        "grid_per_class": 10,
    }
)

# Preprocessing presets: canonical images are RGB float in [0, 1]; ``input_range`` rescales
# them, then (x - mean) / std. Plugins may add more through ``synthcalib_add_presets``.
PRESETS = MappingProxyType(
    {
        "cifar10": {
            "input_range": (0.0, 1.0),
            "mean": (0.4914, 0.4822, 0.4465),
            "std": (0.2470, 0.2435, 0.2616),
            "channel_order": "RGB",
        },
        "imagenet": {
            "input_range": (0.0, 1.0),
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "channel_order": "RGB",
        },
        # [-1, 1]: TensorFlow-born models (Inception, EfficientNet-Lite, MobileNet from TF-slim)
        "inception": {
            "input_range": (0.0, 1.0),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "channel_order": "RGB",
        },
        "unit": {"input_range": (0.0, 1.0), "mean": None, "std": None, "channel_order": "RGB"},
        "pixels": {"input_range": (0.0, 255.0), "mean": None, "std": None, "channel_order": "RGB"},
        "caffe": {
            "input_range": (0.0, 255.0),
            "mean": (103.939, 116.779, 123.68),
            "std": None,
            "channel_order": "BGR",
        },
    }
)

# How a preset frames images read from a folder (``images:`` sources, ``evaluate``) before the
# transform: ``crop: center`` resizes each image, keeping its aspect ratio, so that its short side
# is size / crop_fraction (256 for 224) and keeps the centre, as torchvision's ImageNet evaluation
# does. Presets not listed here resize whole images. A source's ``?crop=`` option wins.
_CENTRE_CROP = MappingProxyType({"crop": "center", "crop_fraction": 0.875})
PRESET_FRAMING = MappingProxyType({"imagenet": _CENTRE_CROP, "inception": _CENTRE_CROP})


def preset_framing(transform: object) -> dict[str, object]:
    """The framing (``crop``, ``crop_fraction``) of the preset named by a transform given as a
    preset name or a dict of options; empty for anything else."""
    preset = (
        transform if isinstance(transform, str) else transform.get("preset") if isinstance(transform, dict) else None
    )
    return dict(PRESET_FRAMING.get(preset, {})) if isinstance(preset, str) else {}
