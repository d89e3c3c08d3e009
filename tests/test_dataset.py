import subprocess
import sys
import textwrap

import nncf
import numpy as np
import openvino as ov
import pytest

import openvino_synthcalib as synthcalib
from openvino_synthcalib.engine import GeneratorEngine
from openvino_synthcalib.validation import top1_agreement, top1_vs_labels


def test_dataset_is_an_nncf_dataset(assets):
    ds = synthcalib.Dataset(str(assets["generator"]), num_samples=20, model=assets["classifier"], transform="cifar10")
    assert isinstance(ds, nncf.Dataset)
    assert ds.get_length() == len(ds) == 20
    items = list(ds.get_inference_data())
    assert len(items) == 20 and items[0].shape == (1, 3, 8, 8)
    picked = list(ds.get_inference_data([3, 11]))
    assert np.array_equal(picked[0], items[3]) and np.array_equal(picked[1], items[11])
    assert ds.get_batch_size() is None  # generation batching is invisible to NNCF


def test_engine_and_labelled_items(assets):
    eng = GeneratorEngine(assets["generator"], batch_size=8)
    ds = synthcalib.Dataset(eng, num_samples=12, with_labels=True, seed=3)
    x, y = ds[5]
    assert x.shape == (1, 3, 8, 8) and y == ds.stream.labels(5, 6)[0]
    assert np.array_equal(next(iter(ds.get_inference_data([5]))), x)
    plain = synthcalib.Dataset(str(assets["generator"]), num_samples=12, seed=3, precision="f32")  # the engine's
    assert np.array_equal(plain[5], x)


def test_nncf_quantize_and_accuracy_control(assets):
    model = ov.Core().read_model(str(assets["classifier"]))
    ds = synthcalib.Dataset(f"generator:{assets['generator']}", num_samples=40, model=model, transform="unit")
    q = nncf.quantize(model, ds, subset_size=len(ds))
    assert any(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
    val = synthcalib.Dataset(
        f"generator:{assets['generator']}", num_samples=24, model=model, seed=1, with_labels=True, transform="unit"
    )
    fp32 = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    acc, per_item = top1_vs_labels(fp32, val)
    assert len(per_item) == 24 and acc >= 0.5  # the tiny classifier reads the tint of 3 of the 4 classes
    agree = top1_agreement(model)
    assert agree(fp32, val)[0] == 1.0
    q2 = nncf.quantize_with_accuracy_control(model, ds, val, validation_fn=agree, max_drop=0.01, subset_size=len(ds))
    assert any(op.get_type_name() == "FakeQuantize" for op in q2.get_ops())


def test_memory_does_not_grow_with_num_samples(assets):
    code = textwrap.dedent(
        f"""
        import resource, openvino_synthcalib as synthcalib
        def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ds = synthcalib.Dataset({str(assets["generator"])!r}, num_samples=100_000, batch_size=64)
        it = iter(ds)
        for _ in range(2000): next(it)
        before = peak()
        n = 2000 + sum(1 for _ in it)
        print(n, (peak() - before) / 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == 100_000
    assert float(out[1]) < 100, f"peak RSS grew by {out[1]} MB"


def test_import_is_light():
    code = "import sys, openvino_synthcalib; print('torch' in sys.modules, 'nncf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_surface():
    for name in synthcalib.__all__:
        assert getattr(synthcalib, name) is not None
    with pytest.raises(AttributeError):
        synthcalib.nothing_here  # noqa: B018


def test_failing_quantize_releases_its_generator(assets, tmp_path, monkeypatch):
    """Every stream a failing quantize() opened is closed: no compiled generator stays behind."""
    from openvino_synthcalib.engine import GeneratorEngine
    from openvino_synthcalib.errors import SynthcalibError
    from openvino_synthcalib.quantization import quantize

    made = []
    original = GeneratorEngine.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(GeneratorEngine, "__init__", spy)
    bad_scope = {"ignored_scope": {"names": ["no such node"], "validate": True}}
    for accuracy in (None, {"max_drop": 0.01}):
        with pytest.raises(Exception) as failure:  # NNCF's own error for the ignored scope
            quantize(assets["classifier"], f"generator:{assets['generator']}", tmp_path / "q.xml",
                     num_samples=8, accuracy_control=accuracy, nncf_options=bad_scope, transform="unit")  # fmt: skip
        assert "no such node" in str(failure.value)
    assert len(made) >= 2 and all(engine.compiled is None for engine in made)
    from tiny_models import make_generator

    five = make_generator(tmp_path / "g5.xml", num_classes=5, class_names=None)
    with pytest.raises(SynthcalibError, match="has 5 classes but the model outputs 4"):
        quantize(assets["classifier"], f"generator:{five}", tmp_path / "q.xml", num_samples=8, transform="unit")
    assert all(engine.compiled is None for engine in made) and not (tmp_path / "q.xml").exists()


def test_abandoned_datasets_stop_their_prefetch_threads(assets):
    import gc
    import threading
    import time

    before = threading.active_count()
    for seed in range(3):  # created, never iterated nor closed: each started a first pass ahead
        synthcalib.Dataset(f"generator:{assets['generator']}", 5000, seed=seed)
    gc.collect()
    for _ in range(200):
        if threading.active_count() <= before:
            break
        time.sleep(0.02)
    assert threading.active_count() <= before


def test_prefetch_keeps_items_and_order(assets):
    import threading

    from openvino_synthcalib.stream import SyntheticStream

    spec = f"generator:{assets['generator']}"
    with SyntheticStream(spec, 50, seed=4, prefetch=0) as plain, SyntheticStream(spec, 50, seed=4, prefetch=3) as ahead:
        a = list(plain.batches())
        b = list(ahead.batches())
        assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]
        assert all(np.array_equal(x, xb) for (x, _), (xb, _) in zip(a, b))
        threads = threading.active_count()
        first = next(iter(ahead))  # stop early: the producer thread must end
        del first
        for _ in range(100):
            if threading.active_count() <= threads:
                break
            import time

            time.sleep(0.02)
        assert threading.active_count() <= threads


def test_later_passes_replay_the_kept_first_pass(assets):
    ds = synthcalib.Dataset(str(assets["generator"]), num_samples=12, seed=3)
    first = [np.array(x) for x in ds]
    ds.stream.batches = lambda *a, **k: iter(())  # a pass that generated again would be empty
    again = [np.array(x) for x in ds]
    assert len(again) == 12 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert np.array_equal(ds[4], first[4])
    small = synthcalib.Dataset(str(assets["generator"]), num_samples=12, seed=3, keep=1)  # 1 byte: never kept
    assert [np.array(x) for x in small] and small._items.kept is None
    with pytest.raises(synthcalib.SynthcalibError, match="keep"):
        synthcalib.Dataset(str(assets["generator"]), num_samples=12, keep=-1)
