import numpy as np
import pytest

from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.schedule import ClassSchedule
from openvino_synthcalib.sources.base import parse_spec
from openvino_synthcalib.stream import SyntheticStream, make_stream
from openvino_synthcalib.transforms import Transform, _resize_matrix, resize


def test_round_robin_is_exactly_balanced():
    s = ClassSchedule(10, 300)
    assert list(s.counts()) == [30] * 10
    labels = s.labels(np.arange(300))
    for n in (10, 20, 150):  # every prefix that islice() takes is balanced too
        assert np.bincount(labels[:n], minlength=10).tolist() == [n // 10] * 10
    assert sorted(ClassSchedule(10, 13).counts().tolist()) == [1] * 7 + [2] * 3


def test_subset_and_weights():
    s = ClassSchedule(10, 8, classes=[2, 5])
    first = s.labels(np.arange(2)).tolist()
    assert sorted(first) == [2, 5] and s.labels(np.arange(8)).tolist() == first * 4
    w = ClassSchedule(3, 400, weights=[1, 1, 2])
    assert w.counts().tolist() == [100, 100, 200]
    prefix = w.labels(np.arange(40))
    assert np.bincount(prefix, minlength=3).tolist() == [10, 10, 20]
    occ = w.occurrences(np.arange(400))
    for c in range(3):
        assert occ[w.labels(np.arange(400)) == c].tolist() == list(range(w.counts()[c]))


def test_seed_permutes_class_coverage_and_keeps_prefixes_balanced():
    """300 items of a 1000-class generator: seeds cover different classes, each prefix balanced."""
    covered = []
    for seed in (0, 1):
        s = ClassSchedule(1000, 300, seed=seed)
        labels = s.labels(np.arange(300))
        assert len(set(labels.tolist())) == 300
        covered.append(set(labels.tolist()))
        long = ClassSchedule(1000, 5000, seed=seed)
        for n in (1, 999, 1000, 1001, 2500, 5000):
            counts = long.counts(n)
            assert counts.max() - counts.min() <= 1 and counts.sum() == n
    assert covered[0] != covered[1] and len(covered[0] & covered[1]) < 150
    # the same seed gives the same order; item i depends on (seed, i) only
    a, b = ClassSchedule(1000, 300, seed=7), ClassSchedule(1000, 10**12, seed=7)
    assert a.labels(np.arange(300)).tolist() == b.labels(np.arange(300)).tolist()


def test_schedule_memory_is_flat_in_the_length():
    weighted = ClassSchedule(4, 10**15, weights=[1, 2, 3, 4], seed=1)
    tail = np.arange(10**15 - 40, 10**15)
    labels, occ = weighted.labels_and_occurrences(tail)
    assert len(labels) == 40 and weighted.counts().sum() == 10**15
    np.testing.assert_allclose(weighted.counts() / 10**15, [0.1, 0.2, 0.3, 0.4], rtol=1e-9)
    with pytest.raises(SynthcalibError, match="num_samples"):
        ClassSchedule(4, 10**20)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=[11]), "out of range"),
        (dict(classes=[]), "at least one"),
        (dict(classes=[1, 1]), "distinct"),
        (dict(weights=[1, 2]), "weights"),
        (dict(weights=[-1] * 10), "non-negative"),
        (dict(weights=[float("nan")] * 10), "non-negative"),
    ],
)
def test_schedule_errors(kwargs, match):
    with pytest.raises(SynthcalibError, match=match):
        ClassSchedule(10, 20, **kwargs)


def test_parse_spec():
    assert parse_spec("generator:a/b.xml?num_classes=10&output_range=-1,1") == (
        "generator",
        "a/b.xml",
        {"num_classes": 10, "output_range": [-1, 1]},
    )
    assert parse_spec("noise:gaussian") == ("noise", "gaussian", {})
    assert parse_spec("dir/gen.xml")[0] == ""
    with pytest.raises(SynthcalibError, match="key=value"):
        parse_spec("noise:gaussian?std")


def test_resize_keeps_constants_and_shapes():
    x = np.full((2, 3, 8, 8), 0.25, np.float32)
    for size in [(8, 8), (16, 12), (3, 5)]:
        y = resize(x, size)
        assert y.shape == (2, 3, *size)
        np.testing.assert_allclose(y, 0.25, atol=1e-6)
    ramp = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (1, 1, 8, 1))
    up = resize(ramp, (8, 16))[0, 0, 0]
    assert np.all(np.diff(up) >= -1e-6)  # monotone, no ringing


def _numpy_transform(t: Transform, images: np.ndarray) -> np.ndarray:
    """``Transform.__call__`` as it was while resizing and grey ran in NumPy (BLAS), kept as the
    reference the OpenVINO steps are checked against."""
    x = np.asarray(images, dtype=np.float32)
    if t.size is not None and x.shape[-2:] != t.size:
        ry, rx = _resize_matrix(x.shape[-2], t.size[0]), _resize_matrix(x.shape[-1], t.size[1])
        x = np.matmul(np.matmul(ry, x), rx.T)
    if t.channels == 1 and x.shape[1] == 3:
        x = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), x, axes=([0], [1]))[:, None]
    elif t.channel_order == "BGR":
        x = x[:, ::-1]
    lo, hi = t.input_range
    if (lo, hi) != (0.0, 1.0):
        x = x * np.float32(hi - lo) + np.float32(lo)
    if t.mean is not None:
        x = x - np.asarray(t.mean, np.float32).reshape(1, -1, 1, 1)
    if t.std is not None:
        x = x / np.asarray(t.std, np.float32).reshape(1, -1, 1, 1)
    if t.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    if t.dtype in ("uint8", "int8"):
        info = np.iinfo(t.dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    return np.ascontiguousarray(x, dtype=t.dtype)


def test_cifar10_items_at_their_own_size_are_the_numpy_items_byte_for_byte(tmp_path):
    """Items that are not resized never meet the OpenVINO steps: the shipped CIFAR-10 generator's
    items for a 32-px model are byte for byte what the NumPy transform made of them."""
    from tiny_models import make_classifier

    model = make_classifier(tmp_path / "cls32.xml", num_classes=10, size=32)
    canonical = np.concatenate([x for x, _ in SyntheticStream("generator:cifar10", 96, seed=3).batches()])
    with make_stream("generator:cifar10", 96, model=model, transform="cifar10", seed=3) as stream:
        items = np.concatenate([x for x, _ in stream.batches()])
        assert stream.transform.size == (32, 32) and stream.transform.steps((32, 32)) == ()
        assert items.tobytes() == _numpy_transform(stream.transform, canonical).tobytes()
    for options in (
        {"preset": "caffe"},
        {"preset": "imagenet", "layout": "NHWC"},
        {"preset": "pixels", "dtype": "uint8"},
    ):
        t = Transform.from_options(**options)
        assert t(canonical).tobytes() == _numpy_transform(t, canonical).tobytes(), options


@pytest.mark.parametrize(
    "shape, size", [((8, 3, 32, 32), (224, 224)), ((2, 3, 375, 500), (224, 224)), ((4, 3, 224, 224), (32, 32))]
)
def test_resize_and_grey_in_openvino_are_the_numpy_sums_within_float_rounding(shape, size):
    """The same triangle-filter sums as np.matmul, rounded in another order: within 1e-6 relative
    (a few float32 ulps; about 5% of values differ in their last bits when enlarging), and the same
    on every call."""
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    for t in (Transform(size=size), Transform(size=size, channels=1)):
        got, want = t(x), _numpy_transform(t, x)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        assert t(x).tobytes() == got.tobytes()
    assert resize(x, shape[-2:]) is x  # nothing to resize: the array itself, untouched


def test_resize_from_several_threads_at_once_and_at_several_sizes_in_one():
    """Each thread has its own infer request, which serves any shape."""
    from concurrent.futures import ThreadPoolExecutor

    x = np.random.default_rng(2).random((8, 3, 32, 32), dtype=np.float32)
    sizes = [(64, 64), (20, 30), (64, 64), (32, 48)]
    want = [resize(x[: 2 + i], size) for i, size in enumerate(sizes)]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: [resize(x[: 2 + i], size) for i, size in enumerate(sizes)], range(8)))
    assert all(g.tobytes() == w.tobytes() for got in runs for g, w in zip(got, want))


def test_transform_presets_layout_order(assets):
    import openvino as ov

    x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    t = Transform.from_options("cifar10")
    np.testing.assert_allclose(t(x)[:, 0], (x[:, 0] - 0.4914) / 0.2470, rtol=1e-5)
    caffe = Transform.from_options("caffe")(x)
    np.testing.assert_allclose(caffe[:, 0], x[:, 2] * 255 - 103.939, rtol=1e-5)
    m = ov.Core().read_model(str(assets["classifier_nhwc"]))
    t2 = Transform.for_model(m, preset="imagenet")
    assert t2.layout == "NHWC" and t2.size == (8, 8)
    assert t2(x).shape == (2, 8, 8, 3)
    assert Transform(size=(4, 4), channels=1, dtype="uint8", input_range=(0, 255))(x).shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    "opts, match",
    [
        (dict(preset="nope"), "unknown preset 'nope'"),
        (dict(mean=[0.1, 0.2]), "mean: expected 1 or 3"),
        (dict(std=[0, 1, 1]), "std: expected positive"),
        (dict(layout="CHW"), "layout"),
        (dict(input_range=[1, 0]), "input_range"),
        (dict(colour="x"), "unknown preprocessing key 'colour'"),
    ],
)
def test_transform_errors(opts, match):
    with pytest.raises(SynthcalibError, match=match):
        Transform.from_options(**opts)


def test_stream_items_and_indexing(assets):
    s = make_stream(
        f"generator:{assets['generator']}", 30, model=assets["classifier"], transform="cifar10", batch_size=4
    )
    items = list(s)
    assert len(items) == 30 and items[0][0].shape == (3, 8, 8)
    order = s.schedule.order.tolist()
    assert sorted(order) == [0, 1, 2, 3] and [y for _, y in items] == [order[i % 4] for i in range(30)]
    for i in (0, 7, 29, 13, -1):
        x, y = s[i]
        assert np.array_equal(x, items[i][0]) and y == items[i][1]
    with pytest.raises(IndexError):
        s[30]
    d = s.describe()
    names = ("red", "green", "blue", "gray")
    assert d["samples_per_class"] == {names[c]: 8 if c in order[:2] else 7 for c in range(4)}


def test_images_source_balanced_deterministic(assets):
    spec = f"images:{assets['images']}"
    a = SyntheticStream(spec, 16, seed=1)
    b = SyntheticStream(spec, 16, seed=1)
    xa = np.stack([x for x, _ in a])
    assert np.array_equal(xa, np.stack([x for x, _ in b]))
    assert a.source.class_names == ("0_red", "1_green", "2_blue", "3_gray")  # sorted folder names
    assert np.bincount([y for _, y in a]).tolist() == [4, 4, 4, 4]
    c = SyntheticStream(spec, 16, seed=2)
    assert not np.array_equal(xa, np.stack([x for x, _ in c]))
    # each class walks through its files without repeats before wrapping
    per_class = [xa[i::4] for i in range(4)]
    assert all(len({p.tobytes() for p in part}) == 4 for part in per_class)
    assert SyntheticStream(spec, 8, classes=["2_blue"]).labels().tolist() == [2] * 8


def test_noise_sources(assets):
    g = SyntheticStream("noise:gaussian?size=8", 5, seed=0)
    u = SyntheticStream("noise:uniform?size=8x6", 5, seed=0)
    xg, xu = np.stack([x for x, _ in g]), np.stack([x for x, _ in u])
    assert xg.shape == (5, 3, 8, 8) and xu.shape == (5, 3, 8, 6)
    assert 0.4 < xg.mean() < 0.6 and 0 <= xu.min() and xu.max() <= 1
    assert np.array_equal(xg, np.stack([x for x, _ in SyntheticStream("noise:gaussian?size=8", 5, seed=0)]))
    with pytest.raises(SynthcalibError, match="any size"):
        list(SyntheticStream("noise:gaussian", 2))
    with pytest.raises(SynthcalibError, match="unknown noise kind"):
        SyntheticStream("noise:pink", 2)
    with pytest.raises(SynthcalibError, match="unknown option"):
        SyntheticStream("noise:gaussian?sigma=1", 2)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("warp:x", "unknown scheme 'warp'"),
        ("nothing_here", "no scheme"),
        ("images:/nonexistent/dir", "does not exist"),
        ("generator:/nonexistent/g.xml", "does not exist"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(SynthcalibError, match=match):
        SyntheticStream(spec, 4)


@pytest.mark.parametrize("n", [0, -3, 2.5, "10"])
def test_bad_num_samples(n):
    with pytest.raises(SynthcalibError, match="num_samples"):
        SyntheticStream("noise:uniform?size=4", n)


def test_fractal_source():
    a = np.stack([x for x, _ in SyntheticStream("fractal:ifs?size=16", 6, seed=0)])
    b = np.stack([x for x, _ in SyntheticStream("fractal:ifs?size=16", 6, seed=0)])
    assert a.shape == (6, 3, 16, 16) and np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.05
    assert not np.array_equal(a[0], a[1])
    with pytest.raises(SynthcalibError, match="unknown fractal kind"):
        SyntheticStream("fractal:mandelbrot", 2)


def test_array_source(tmp_path):
    imgs = np.random.default_rng(0).random((5, 3, 4, 4), dtype=np.float32)
    np.save(tmp_path / "x.npy", imgs)
    s = SyntheticStream(f"array:{tmp_path / 'x.npy'}", 10, seed=3)
    got = np.stack([x for x, _ in s])
    # each seed walks all five images before repeating
    assert {g.tobytes() for g in got[:5]} == {i.tobytes() for i in imgs}
    np.save(tmp_path / "u8.npy", (imgs.transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    assert SyntheticStream(f"array:{tmp_path / 'u8.npy'}", 2)[0][0].shape == (3, 4, 4)
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(SynthcalibError, match="expected images"):
        SyntheticStream(f"array:{tmp_path / 'bad.npy'}", 2)
    with pytest.raises(SynthcalibError, match="does not exist"):
        SyntheticStream(f"array:{tmp_path / 'none.npy'}", 2)
