"""Image folders as users have them: hidden files, class lists (subsets of classes mapped by
name), and torchvision's resize + centre crop framing."""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import openvino as ov
import pytest
from conftest import CIFAR, ZOO
from PIL import Image
from tiny_models import CLASS_NAMES, make_image_folder

from openvino_synthcalib.classes import ClassList
from openvino_synthcalib.cli import main
from openvino_synthcalib.defaults import preset_framing
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.evaluation import evaluate
from openvino_synthcalib.imagefolder import CenterCrop, ImageFolder, load_image
from openvino_synthcalib.plugins import resolve_source
from openvino_synthcalib.stream import SyntheticStream

TSV = "index\twnid\tname\n0\tn01440764\ttench\n1\tn01443537\tgoldfish\n2\tn01484850\tgreat white shark\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def subset(tmp_path):
    """Two of the tiny classifier's four classes (blue = 2, gray = 3), plus its class list."""
    root = make_image_folder(tmp_path / "subset", classes=("blue", "gray"), per_class=4)
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(CLASS_NAMES) + "\n")
    return root, names


# ----------------------------------------------------------------------------- hidden entries


def test_hidden_files_and_folders_are_not_images(tmp_path, assets):
    root = make_image_folder(tmp_path / "imgs", classes=("red", "green"), per_class=3)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "red" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "red" / "._0000.png").write_bytes(b"\0\5\26\7 AppleDouble resource fork")  # not a PNG
    (root / "green" / ".hidden.png").write_bytes(b"garbage")
    for hidden in (root / ".ipynb_checkpoints", root / "green" / ".ipynb_checkpoints"):
        hidden.mkdir()
        Image.new("RGB", (8, 8)).save(hidden / "0000-checkpoint.png")
    folder = ImageFolder(root)
    assert folder.classes == ("green", "red") and len(folder) == 6
    assert all("/." not in path for path, _ in folder.samples())
    # the whole stream reads, and evaluate too (an AppleDouble file would not decode)
    x = np.stack([x for x, _ in SyntheticStream(f"images:{root}", 6)])
    assert x.shape == (6, 3, 8, 8)
    with pytest.raises(SynthcalibError, match="no class folders"):
        only_hidden = tmp_path / "hidden_only"
        (only_hidden / ".cache").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(only_hidden / ".cache" / "a.png")
        ImageFolder(only_hidden)


# ----------------------------------------------------------------------------- class lists


def test_tsv_class_list_matches_wnid_name_and_index(tmp_path):
    path = tmp_path / "classes.tsv"
    path.write_text(TSV)
    cl = ClassList.load(path, "--class-list")
    assert cl.names == ("tench", "goldfish", "great white shark") and "--class-list" in cl.origin
    assert cl.ids == ("n01440764", "n01443537", "n01484850")
    for folder, label in [
        ("n01440764", 0),
        ("tench", 0),
        ("Goldfish", 1),
        ("great_white_shark", 2),
        ("Great White  Shark", 2),
        ("1", 1),
    ]:
        assert cl.lookup(folder) == [label], folder
    assert cl.lookup("shark") == [] and cl.lookup("7") == []


def test_class_list_formats(tmp_path, assets):
    text = tmp_path / "names.txt"
    text.write_text("# CIFAR-like\nairplane\nautomobile\n\nbird\n")
    assert ClassList.load(text).names == ("airplane", "automobile", "bird")
    synsets = tmp_path / "LOC_synset_mapping.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    cl = ClassList.load(synsets)
    assert cl.lookup("tinca tinca") == [0] and cl.lookup("goldfish") == [1] and cl.lookup("n01443537") == [1]
    keras = tmp_path / "imagenet_class_index.json"
    keras.write_text(json.dumps({"1": ["n01443537", "goldfish"], "0": ["n01440764", "tench"]}))
    assert ClassList.load(keras).ids == ("n01440764", "n01443537") and ClassList.load(keras).lookup("tench") == [0]
    assert ClassList.load(["a", "b"]).lookup("B") == [1]
    # a generator's metadata (by path, or generator:PATH)
    for spec in (assets["generator"], f"generator:{assets['generator']}"):
        assert ClassList.load(str(spec)).names == CLASS_NAMES
    with pytest.raises(SynthcalibError, match="names no classes"):
        ClassList.load(str(assets["generator_bare"]))
    with pytest.raises(SynthcalibError, match="does not exist"):
        ClassList.load(tmp_path / "nope.txt", "--class-list")
    gaps = tmp_path / "gaps.tsv"
    gaps.write_text("0\ta\n2\tc\n")
    with pytest.raises(SynthcalibError, match="indices must be 0..1"):
        ClassList.load(gaps)


def test_folder_errors_name_the_folder_and_the_list(tmp_path):
    path = tmp_path / "classes.tsv"
    path.write_text(TSV + "3\tn02012849\tcrane\n4\tn03126707\tcrane\n")
    cl = ClassList.load(path, "--class-list")
    root = tmp_path / "data"
    for name in ("tench", "trout"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / name / "a.png")
    with pytest.raises(SynthcalibError, match=r"class folder 'trout' matches no class of --class-list '.*classes.tsv'"):
        ImageFolder(root, cl)
    os.rename(root / "trout", root / "crane")
    with pytest.raises(SynthcalibError, match=r"'crane' matches classes 3 \(n02012849, crane\) and 4"):
        ImageFolder(root, cl)
    os.rename(root / "crane", root / "n01440764")
    with pytest.raises(SynthcalibError, match="'n01440764' and 'tench' both map to class 0"):
        ImageFolder(root, cl)
    os.rename(root / "n01440764", root / "n02012849")
    folder = ImageFolder(root, cl)
    assert folder.classes == ("n02012849", "tench") and folder.labels == (3, 0)
    assert [label for _, label in folder.samples()] == [3, 0]


def test_evaluate_subset_needs_a_class_list(subset, assets, capsys):
    root, names = subset
    cls = assets["classifier"]
    # today's mapping would put blue at 0 and gray at 1: refused, naming the folder and the fix
    code, _, err = run(capsys, "evaluate", cls, "--data", f"images:{root}", "--preset", "unit")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"'images:{root}' holds 2 class folders (blue, gray)" in err and "sorted position" in err
    assert "--class-list" in err and "--reference" in err
    code, out, err = run(
        capsys, "evaluate", cls, "--data", f"images:{root}", "--class-list", names, "--json", "--preset", "unit"
    )
    result = json.loads(out)
    assert code == 0 and result["top1"] == 1.0 and result["images"] == 8 and "classes.txt" in result["class_list"]
    # the same through the source option, and from the generator's metadata
    assert evaluate(cls, f"images:{root}?class_list={names}", transform="unit")["top1"] == 1.0
    assert evaluate(cls, f"images:{root}", class_list=str(assets["generator"]), transform="unit")["top1"] == 1.0
    bad = names.parent / "other.txt"
    bad.write_text("cyan\nmagenta\n")
    code, _, err = run(capsys, "evaluate", cls, "--data", f"images:{root}", "--class-list", bad, "--preset", "unit")
    assert code == 2 and "class folder 'blue' matches no class of --class-list" in err


def test_evaluate_full_folder_keeps_sorted_positions(assets):
    # one folder per class and no class list: sorted position, as before
    assert evaluate(assets["classifier"], f"images:{assets['images']}", transform="unit")["top1"] == 1.0


def test_model_labels_are_a_class_list(subset, assets, tmp_path):
    root, _ = subset
    model = ov.Core().read_model(assets["classifier"])
    model.set_rt_info(" ".join(CLASS_NAMES), ["model_info", "labels"])
    labelled = tmp_path / "labelled.xml"
    ov.save_model(model, str(labelled), compress_to_fp16=False)
    result = evaluate(str(labelled), f"images:{root}", transform="unit")
    assert result["top1"] == 1.0 and "model_info/labels" in result["class_list"]
    # an inferred list that no folder matches is not used: the full folder maps by sorted position
    other = make_image_folder(tmp_path / "other", classes=("a_red", "b_green", "c_blue", "d_gray"), per_class=2)
    result = evaluate(str(labelled), f"images:{other}", transform="unit")
    assert "class_list" not in result and result["labels"] == "folders in sorted order (one per class)"
    # folders INDEX_name (as generate writes them) match the labels by index
    assert "model_info/labels" in evaluate(str(labelled), f"images:{assets['images']}", transform="unit")["class_list"]


def test_stream_over_a_subset_has_model_labels(subset, assets):
    root, names = subset
    src = resolve_source(f"images:{root}?class_list={names}")
    assert src.num_classes == 4 and src.class_names == CLASS_NAMES and src.available_classes == (2, 3)
    stream = SyntheticStream(src, 8, classes=list(src.available_classes))
    assert sorted(set(stream.labels().tolist())) == [2, 3]
    assert stream.describe()["samples_per_class"] == {"blue": 4, "gray": 4}
    src.check_classes(4)  # the class list is the model's
    with pytest.raises(SynthcalibError, match="has 4 classes but the model outputs 10"):
        src.check_classes(10)
    with pytest.raises(SynthcalibError, match=r"^classes: .* no items of class 0 \(red\).*with classes: blue,gray"):
        SyntheticStream(src, 8, classes=["red"])
    with pytest.raises(SynthcalibError, match=r"no images of class 0 \(red\)"):
        next(src.iter_images(np.array([0]), np.array([0]), seed=0))
    plain = resolve_source(f"images:{root}")
    with pytest.raises(SynthcalibError, match="sorted position.*class_list=FILE.*use allow_class_mismatch"):
        plain.check_classes(4, override="allow_class_mismatch")


def test_quantize_subset_folder_with_class_list(subset, assets, tmp_path):
    from openvino_synthcalib.quantization import quantize

    root, names = subset
    with pytest.raises(SynthcalibError, match="sorted position"):
        quantize(assets["classifier"], f"images:{root}", tmp_path / "q.xml", num_samples=8, transform="unit")
    report = quantize(
        assets["classifier"], f"images:{root}", tmp_path / "q.xml", num_samples=8, class_list=names, transform="unit"
    )
    assert report["samples_per_class"] == {"blue": 4, "gray": 4} and report["source"] == f"images:{root}"


def test_paired_generator_names_a_validation_folder(subset, assets):
    from openvino_synthcalib.sources.images import FolderOptions, open_source

    root, _ = subset
    with contextlib.ExitStack() as stack:
        opened = open_source(f"images:{root}", FolderOptions(partner=str(assets["generator"])))
        stack.callback(opened.close)
        assert opened.folder.labels == (2, 3) and "generator" in opened.describe()["class_list"]
        gen = resolve_source(f"generator:{assets['generator']}")
        stack.callback(gen.close)
        opened = open_source(f"images:{root}", FolderOptions(partner=gen))
        stack.callback(opened.close)
        assert opened.folder.labels == (2, 3)


def test_pot_engine_class_list(subset, assets):
    from openvino_synthcalib.pot.engine_config import make_setup

    root, names = subset
    engine = {
        "source": f"images:{root}",
        "preprocessing": {"preset": "unit"},
        "subset_size": 6,
        "class_list": str(names),
    }
    setup = make_setup(engine, assets["classifier"])
    assert set(setup.stream.labels().tolist()) == {2, 3}
    setup.stream.close()
    with pytest.raises(SynthcalibError, match="engine.source: source '.*sorted position.*engine.class_list"):
        make_setup({**engine, "class_list": None}, assets["classifier"])


# ----------------------------------------------------------------------------- framing


def _banded(h, w):
    """Red image with blue bands on the left and right tenths (cut off by a centre crop)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 220
    band = w // 10
    img[:, :band] = img[:, w - band :] = (0, 0, 220)
    return img


def test_center_crop_keeps_the_centre(tmp_path):
    assert CenterCrop((224, 224)).resized(375, 500) == (256, 341)  # torchvision: Resize(256) on 500x375
    assert CenterCrop((224, 224)).resized(500, 375) == (341, 256)
    assert CenterCrop((224, 224)).box(256, 341) == (16, 58)  # int(round(58.5)) == 58, as torchvision
    Image.fromarray(_banded(60, 90)).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", CenterCrop((16, 16)))
    assert x.shape == (3, 16, 16)
    assert x[0].min() > 0.8 and x[2].max() < 0.05  # only the red centre, no blue band
    whole = load_image(tmp_path / "wide.png")
    assert whole.shape == (3, 60, 90) and whole[2].max() > 0.8


def test_center_crop_of_a_large_jpeg(tmp_path):
    """A large JPEG is decoded at reduced scale (draft) and gives what a full decode gives, nearly."""
    Image.fromarray(_banded(900, 1200)).save(tmp_path / "big.jpg", quality=95)
    crop = CenterCrop((32, 32))
    x = load_image(tmp_path / "big.jpg", crop)
    assert x.shape == (3, 32, 32) and x[0].min() > 0.75 and x[2].max() < 0.1
    with Image.open(tmp_path / "big.jpg") as im:
        rh, rw = crop.resized(im.height, im.width)
        full = np.asarray(im.convert("RGB").resize((rw, rh), Image.Resampling.BILINEAR), np.float32) / 255
    top, left = crop.box(rh, rw)
    ref = full[top : top + 32, left : left + 32].transpose(2, 0, 1)
    assert np.abs(x - ref).mean() < 0.01


def test_crop_option_on_the_source_and_the_preset(tmp_path, assets):
    root = tmp_path / "photos"
    for name in CLASS_NAMES:
        (root / name).mkdir(parents=True)
    Image.fromarray(_banded(60, 90)).save(root / "red" / "a.png")
    Image.fromarray(_banded(90, 60)[:, :, [2, 1, 0]]).save(root / "blue" / "a.png")
    for name in ("green", "gray"):
        Image.fromarray(_banded(48, 48)).save(root / name / "a.png")
    src = resolve_source(f"images:{root}?crop=center")
    assert src.image_size is None and src.describe()["crop"] == {"mode": "center", "fraction": 0.875}
    with pytest.raises(SynthcalibError, match=r"crops images to the model's input size.*\?size=HxW"):
        next(src.iter_images(np.arange(4), np.arange(4), seed=0))
    x = next(src.iter_images(np.arange(4), np.arange(4), seed=0, size=(16, 16)))
    assert src.class_names[3] == "red" and x.shape == (4, 3, 16, 16) and x[3, 2].max() < 0.05  # no blue bands
    sized = resolve_source(f"images:{root}?crop=center&size=12&crop_fraction=0.5")
    assert next(sized.iter_images(np.arange(4), np.arange(4), seed=0)).shape == (4, 3, 12, 12)
    # without a crop the default is unchanged: every image resized to the first one's size
    assert resolve_source(f"images:{root}").image_size == (90, 60)
    for bad, match in [
        ("crop=middle", "crop: expected one of center, none"),
        ("crop=center&crop_fraction=1.5", r"crop_fraction: expected a number in \(0, 1\]"),
        ("crop=none&crop_fraction=0.9", "only used with crop=center"),
    ]:
        with pytest.raises(SynthcalibError, match=match):
            resolve_source(f"images:{root}?{bad}")
    assert preset_framing("imagenet") == {"crop": "center", "crop_fraction": 0.875}
    assert preset_framing({"preset": "imagenet", "mean": 0.5}) == preset_framing("imagenet")
    assert preset_framing("cifar10") == {} and preset_framing(None) == {}
    # evaluate frames images with the imagenet preset (the tiny classifier takes 8x8)
    result = evaluate(assets["classifier"], f"images:{root}", transform="imagenet")
    assert result["crop"] == {"mode": "center", "fraction": 0.875}
    assert "crop" not in evaluate(assets["classifier"], f"images:{root}?crop=none", transform="imagenet")


def test_default_mode_is_unchanged(assets):
    """No crop asked: items are the decoded files themselves (8x8 images, nothing resized)."""
    folder = ImageFolder(assets["images"])
    files = {load_image(p).tobytes() for p, _ in folder.samples()}
    items = [x for x, _ in SyntheticStream(f"images:{assets['images']}", 8, seed=3)]
    assert all(x.tobytes() in files for x in items)


# ----------------------------------------------------------------------------- shared assets


@pytest.mark.shared
def test_cifar_two_of_ten_classes(tmp_path, capsys):
    """The issue's case: cat and dog of CIFAR-10 test were mapped to classes 0 and 1 (top-1 0.95%)."""
    root = tmp_path / "two"
    root.mkdir()
    for name in ("cat", "dog"):
        (root / name).symlink_to(CIFAR / "test" / name)
    model = ZOO / "resnet20.onnx"
    code, _, err = run(capsys, "evaluate", model, "--data", f"images:{root}", "--preset", "cifar10")
    assert code == 2 and "sorted position" in err
    code, out, _ = run(capsys, "evaluate", model, "--data", f"images:{root}", "--preset", "cifar10",
                       "--class-list", "cifar10", "--json")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["images"] == 2000 and result["top1"] > 0.7  # cat 71.4%, dog 78.7%
