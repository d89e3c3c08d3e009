"""Folders as people have them (issue 26, part 4): flat folders of photos, folders of some classes,
`evaluate --data` on any source, and class folders that `generate` writes and `images:` reads back
(unique whatever the file system's case, safe characters)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import SHARED
from PIL import Image
from tiny_models import make_classifier, make_generator, make_image_folder

from openvino_synthcalib.classes import ClassList, generator_class_list
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.evaluation import evaluate
from openvino_synthcalib.files import class_folder_names, safe_filename
from openvino_synthcalib.imagefolder import ImageFolder, check_folder_classes
from openvino_synthcalib.plugins import resolve_source
from openvino_synthcalib.stream import SyntheticStream

LITE0 = SHARED / "models" / "imagenet" / "efficientnet_lite0.onnx"
RESNET20 = SHARED / "models" / "cifar10" / "resnet20.onnx"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err):
    return "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def flat(tmp_path):
    """A flat folder of 10 photos (the tiny classifier's colours), as ImageNet's validation set comes."""
    classes = make_image_folder(tmp_path / "classes", classes=("red", "green"), per_class=5)
    root = tmp_path / "flat"
    root.mkdir()
    for k, path in enumerate(sorted(classes.rglob("*.png"))):
        path.rename(root / f"ILSVRC2012_val_{k:08d}.png")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n")
    return root


# ----------------------------------------------------------------------------- names that become paths


def test_safe_filename():
    assert safe_filename("great white shark") == "great_white_shark"
    assert safe_filename("tench, Tinca tinca") == "tench_Tinca_tinca"
    assert safe_filename('a/b\\c:d*e?f"g<h>i|j') == "a_b_c_d_e_f_g_h_i_j"
    assert safe_filename("  ..hidden.. ") == "hidden"
    assert safe_filename("café crème") == "cafe_creme"
    assert (
        safe_filename("CON") == "CON_" and safe_filename("nul.txt") == "nul.txt_" and safe_filename("COM1") == "COM1_"
    )
    assert safe_filename("???", "class") == "class" and safe_filename("..") == "item"
    assert len(safe_filename("x" * 300)) == 48


def test_class_folder_names_are_unique_however_case_folds():
    # ImageNet's two cardigans (the dog and the sweater), named by WordNet id
    names = ["Cardigan", "cardigan", "crane (n02012849)", "a/b: c"]
    ids = ["n02113186", "n02963159", "n02012849", "n00000001"]
    folders = class_folder_names(names, ids)
    assert folders == ["n02113186_Cardigan", "n02963159_cardigan", "n02012849_crane", "n00000001_a_b_c"]
    # no ids (or ids unsafe as names, or equal but for case): the class index, padded to sort in class order
    for bad_ids in (None, ["a", "A", "b", "c"], ["x/1", "x2", "x3", "x4"]):
        assert class_folder_names(names, bad_ids) == ["0_Cardigan", "1_cardigan", "2_crane_n02012849", "3_a_b_c"]
    many = class_folder_names([f"class{i}" for i in range(1000)])
    assert many[7] == "007" and many[999] == "999" and many == sorted(many)
    for folders in (class_folder_names(names, ids), class_folder_names(names), many):
        assert len({f.casefold() for f in folders}) == len(folders)
        assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", f) and len(f) <= 64 for f in folders)


def test_run_folder_names_are_safe(tmp_path):
    from openvino_synthcalib.train_generator.checkpoints import find_run_dir, next_run_dir

    run_dir = next_run_dir(tmp_path, "my run: v2/[a]")
    assert run_dir.name == "00000-my_run_v2_a"
    run_dir.mkdir()
    (run_dir / "options.json").write_text("{}")
    assert find_run_dir(tmp_path, "my run: v2/[a]", "latest") == run_dir
    assert next_run_dir(tmp_path, "my run: v2/[a]").name == "00001-my_run_v2_a"


# ----------------------------------------------------------------------------- class lists read ID_name folders


def test_class_list_reads_id_and_index_prefixed_folders(tmp_path):
    cl = ClassList.from_names(
        ["Cardigan", "cardigan", "great white shark"], "list", ids=["n02113186", "n02963159", "n01484850"]
    )
    assert cl.lookup("cardigan") == [0, 1]  # the display name alone is ambiguous...
    assert cl.lookup("n02113186_Cardigan") == [0] and cl.lookup("N02963159_cardigan") == [1]  # ...the id is not
    assert cl.lookup("n02963159") == [1]  # a bare id
    assert cl.lookup("2_great_white_shark") == [2] and cl.lookup("002") == [2]
    assert cl.lookup("n09999999_cardigan") == [] and cl.lookup("7_cardigan") == []
    # INDEX_name whose name is another class's: the index comes from another list
    root = tmp_path / "data"
    for name in ("0_great_white_shark", "1_cardigan"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / name / "a.png")
    with pytest.raises(SynthcalibError, match=r"'0_great_white_shark' does not match list: its index 0 is class 0"):
        ImageFolder(root, cl)
    # a TSV (index, wnid, name) has ids too
    tsv = tmp_path / "classes.tsv"
    tsv.write_text("0\tn02113186\tCardigan\n1\tn02963159\tcardigan\n")
    assert ClassList.load(tsv).lookup("n02963159_cardigan") == [1]


def test_index_named_folders_need_no_class_list(assets, tmp_path):
    root = make_image_folder(tmp_path / "idx", classes=("3_gray", "1_green"), per_class=3)
    folder = ImageFolder(root)
    assert folder.mapping == "index" and folder.labels == (1, 3) and folder.num_classes == 4
    check_folder_classes(folder, 4, "data", "the folder")
    result = evaluate(assets["classifier"], f"images:{root}", transform="unit")
    assert result["top1"] == 1.0 and result["labels"] == "folders named by class index" and result["images"] == 6
    with pytest.raises(
        SynthcalibError, match=r"class folder '3_gray' is named by class index 3 but the model outputs 3"
    ):
        check_folder_classes(ImageFolder(root), 3, "data", "the folder")
    (root / "01_green").mkdir()
    Image.new("RGB", (8, 8)).save(root / "01_green" / "a.png")
    with pytest.raises(SynthcalibError, match="'01_green' and '1_green' both name class index 1"):
        ImageFolder(root)


def test_wordnet_folders_map_to_imagenet_classes(tmp_path):
    """Folders named by WordNet id (some of ImageNet's classes) are ImageNet-1k's classes for a
    1000-class model, without a class list; a 10-class model keeps sorted positions (Imagenette)."""
    model = make_classifier(tmp_path / "cls1000.xml", num_classes=1000)
    root = make_image_folder(tmp_path / "wn", classes=("n01443537_green", "n01440764_red"), per_class=3)
    result = evaluate(model, f"images:{root}", transform="unit")
    assert result["top1"] == 1.0 and "ImageNet-1k" in result["labels"]  # red = class 0 (tench), green = 1
    folder = ImageFolder(root)
    check_folder_classes(folder, 2, "data", "the folder")
    assert folder.mapping == "position" and folder.labels == (0, 1)


# ----------------------------------------------------------------------------- flat and mixed folders


def test_flat_folder_is_an_unlabelled_source(flat):
    folder = ImageFolder(flat)
    assert folder.flat and folder.classes == () and len(folder) == 10 and folder.num_classes == 1
    src = resolve_source(f"images:{flat}")
    assert not src.conditional and src.num_classes == 1 and "no class subfolders" in src.why_unlabelled
    assert src.describe()["labels"] == "none: the folder has no class subfolders"
    src.check_classes(4)  # nothing to map
    with SyntheticStream(src, 25, seed=3) as a, SyntheticStream(f"images:{flat}", 25, seed=3) as b:
        xa, xb = (np.stack([x for x, _ in s]) for s in (a, b))
        assert np.array_equal(xa, xb) and set(a.labels().tolist()) == {0}
        # every photo once before any repeats
        assert len({x.tobytes() for x in xa[:10]}) == 10
        assert a.describe()["samples_per_class"] == {"unlabelled": 25}


def test_mixed_folder_is_refused_except_generates_grid(tmp_path):
    root = make_image_folder(tmp_path / "mixed", classes=("red", "green"), per_class=2)
    Image.new("RGB", (8, 8)).save(root / "grid.png")  # what generate writes beside its class folders
    assert ImageFolder(root).classes == ("green", "red") and len(ImageFolder(root)) == 4
    Image.new("RGB", (8, 8)).save(root / "holiday.jpg")
    with pytest.raises(SynthcalibError) as exc:
        ImageFolder(root)
    text = str(exc.value)
    assert "holds both images (1, e.g. holiday.jpg) and class folders (2, e.g. green/)" in text
    assert "\n" not in text and "root/<class>/*.jpg or a flat folder of images root/*.jpg" in text


def test_flat_folder_calibrates(flat, assets, tmp_path, capsys):
    out = tmp_path / "q.xml"
    code, stdout, err = run(
        capsys, "quantize", assets["classifier"], "--source", f"images:{flat}", "--preset", "unit",
        "--num-samples", 8, "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert out.exists() and report["source"] == f"images:{flat}" and report["samples_per_class"] == {"unlabelled": 8}
    # accuracy control against labels: a flat folder has none
    code, _, err = run(
        capsys, "quantize", assets["classifier"], "--source", f"images:{flat}", "--preset", "unit",
        "--num-samples", 8, "--out", out, "--max-drop", 0.5, "--metric", "labels",
    )  # fmt: skip
    assert code == 2 and one_line(err), err
    assert "--metric: 'labels' needs a class-conditional source" in err and "has no class subfolders" in err


def test_flat_folder_calibrates_through_the_api(flat, assets, tmp_path):
    from openvino_synthcalib.quantization import quantize

    report = quantize(assets["classifier"], f"images:{flat}", tmp_path / "q.xml", num_samples=6, transform="unit")
    assert report["samples_per_class"] == {"unlabelled": 6} and report["recipe"]["chosen"] == "nncf"


# ----------------------------------------------------------------------------- evaluate on any folder, any source


def test_evaluate_flat_folder_needs_a_reference(flat, assets, capsys):
    cls = assets["classifier"]
    code, _, err = run(capsys, "evaluate", cls, "--data", f"images:{flat}", "--preset", "unit")
    assert code == 2 and one_line(err), err
    assert err.startswith(f"synthcalib: error: --data: top-1 needs labels and image folder '{flat}' has no class")
    assert "has no class subfolders" in err and "--reference MODEL" in err
    code, out, err = run(capsys, "evaluate", cls, "--data", f"images:{flat}", "--preset", "unit", "--reference", cls)
    assert code == 0, err
    assert "top-1:     not measured (image folder" in out and "top-1 agreement: 100.00% on 10 images" in out
    other = make_classifier(flat.parent / "other.xml", num_classes=4, size=8)
    result = evaluate(cls, str(flat), transform="unit", reference=other, limit=4)
    assert result["images"] == 4 and "top1" not in result and 0 <= result["agreement"] <= 1


def test_evaluate_reference_on_a_subset_folder_needs_no_class_list(assets, tmp_path, capsys):
    root = make_image_folder(tmp_path / "some", classes=("blue", "gray"), per_class=3)
    cls = assets["classifier"]
    code, out, err = run(
        capsys, "evaluate", cls, "--data", f"images:{root}", "--preset", "unit", "--reference", cls, "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["agreement"] == 1.0 and result["images"] == 6 and "top1" not in result
    assert "sorted position" in result["no_top1"]
    # top-1 against labels still needs the classes to map
    code, _, err = run(capsys, "evaluate", cls, "--data", f"images:{root}", "--preset", "unit")
    assert code == 2 and one_line(err) and "sorted position" in err and "--class-list" in err


def test_evaluate_any_source(assets, capsys):
    cls, gen = assets["classifier"], assets["generator"]
    # a class-conditional generator: labels are its conditioning classes
    result = evaluate(cls, f"generator:{gen}", transform="unit", limit=40, reference=cls)
    assert result["images"] == 40 and result["classes"] == 4 and result["seed"] == 0
    assert result["labels"] == f"the conditioning classes of 'generator:{gen}'" and result["agreement"] == 1.0
    again = evaluate(cls, f"generator:{gen}", transform="unit", limit=40)
    assert again["top1"] == result["top1"] == result["reference_top1"]
    # unconditional sources: agreement with a reference, or a one-line error
    for spec in ("noise:gaussian", "fractal:ifs?points=2000", "noise:uniform?size=4"):
        r = evaluate(cls, spec, transform="unit", limit=8, reference=cls)
        assert r["agreement"] == 1.0 and "top1" not in r and "not class-conditional" in r["no_top1"]
    code, _, err = run(capsys, "evaluate", cls, "--data", "noise:gaussian", "--preset", "unit")
    assert code == 2 and one_line(err)
    assert "--data: top-1 needs labels and source 'noise:gaussian' is not class-conditional" in err
    # a generator of other classes: agreement only with a reference, else the class error
    gen5 = make_generator(assets["root"] / "gen5.xml", num_classes=5, class_names=None)
    r = evaluate(cls, f"generator:{gen5}", transform="unit", limit=10, reference=cls)
    assert "has 5 classes but the model outputs 4" in r["no_top1"] and r["agreement"] == 1.0
    code, _, err = run(capsys, "evaluate", cls, "--data", f"generator:{gen5}", "--preset", "unit")
    assert (
        code == 2
        and one_line(err)
        and "--data: source 'generator:" in err
        and "has 5 classes but the model outputs 4" in err
    )
    # a class list maps folders only
    code, _, err = run(
        capsys, "evaluate", cls, "--data", f"generator:{gen}", "--class-list", "cifar10", "--preset", "unit"
    )
    assert code == 2 and one_line(err) and err.startswith("synthcalib: error: --class-list: maps the class folders")
    code, _, err = run(capsys, "evaluate", cls, "--data", "warp:x", "--preset", "unit")
    assert code == 2 and one_line(err) and "unknown scheme 'warp'" in err


def test_evaluate_folder_reads_each_image_once(assets, tmp_path):
    folder = ImageFolder(assets["images"])
    result = evaluate(assets["classifier"], f"images:{assets['images']}", transform="unit")
    assert result["images"] == len(folder) == 24 and result["top1"] == 1.0
    assert evaluate(assets["classifier"], f"images:{assets['images']}", transform="unit", limit=5)["images"] == 5
    # batches of the model's batch size, the last one padded: every image counted once
    assert evaluate(assets["classifier"], f"images:{assets['images']}", transform="unit", batch_size=7)["images"] == 24


# ----------------------------------------------------------------------------- generate -> images: round trip


def test_generate_then_evaluate_round_trip(assets, tmp_path, capsys):
    """Class names that differ only in case, and characters no file system takes: the folders are
    unique and read back without a class list (by index) and with one (the generator's)."""
    names = ("Cardigan", "cardigan", "a/b: c?", "CON")
    gen = make_generator(tmp_path / "gen.xml", class_names=names)
    out = tmp_path / "out"
    code, _, err = run(capsys, "generate", "--source", f"generator:{gen}", "-n", 12, "--seed", 2, "--out", out)
    assert code == 0, err
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["0_Cardigan", "1_cardigan", "2_a_b_c", "3_CON"]
    assert len({f.casefold() for f in folders}) == 4
    # every file is in the folder of its item's class
    stream_labels = SyntheticStream(f"generator:{gen}", 12, seed=2).labels()
    for class_list in (None, ClassList.load(f"generator:{gen}")):
        folder = ImageFolder(out, class_list)
        for path, label in folder.samples():
            assert label == stream_labels[int(path[-10:-4])], path
    cls = assets["classifier"]
    direct = evaluate(cls, f"generator:{gen}", transform="unit", limit=12, seed=2)
    for extra in ([], ["--class-list", f"generator:{gen}"]):
        code, stdout, err = run(
            capsys, "evaluate", cls, "--data", f"images:{out}", "--preset", "unit", "--json", *extra
        )
        assert code == 0, err
        result = json.loads(stdout)
        assert result["images"] == 12 and result["classes"] == 4 and abs(result["top1"] - direct["top1"]) <= 1 / 12


def test_generate_cifar10_subset_reads_back(tmp_path, capsys):
    """The shipped CIFAR-10 generator and demo classifier: folders 3_cat, 5_dog map back by index."""
    from openvino_synthcalib.shipped import DEMO_CLASSIFIER

    out = tmp_path / "cifar"
    code, _, err = run(
        capsys, "generate", "--source", "generator:cifar10", "--classes", "cat,dog", "-n", 8, "--out", out
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["3_cat", "5_dog", "grid.png"]
    direct = evaluate(DEMO_CLASSIFIER, "generator:cifar10", transform="cifar10", limit=10)
    assert direct["classes"] == 10
    for class_list in (None, "cifar10"):
        result = evaluate(DEMO_CLASSIFIER, f"images:{out}", transform="cifar10", class_list=class_list)
        assert result["images"] == 8 and result["classes"] == 2 and "top1" in result
    folder = ImageFolder(out)
    assert folder.mapping == "index" and folder.labels == (3, 5)
    assert ImageFolder(out, generator_class_list("cifar10")).labels == (3, 5)


@pytest.mark.shared
def test_generate_imagenet_round_trip(tmp_path, capsys):
    """generator:imagenet writes WordNet-id folders (the two cardigans apart) that images: maps back
    to the generator's classes, with --class-list generator:imagenet and without one."""
    out = tmp_path / "imagenet"
    code, _, err = run(
        capsys, "generate", "--source", "generator:imagenet", "--classes", "Cardigan,cardigan,0,999",
        "-n", 8, "--seed", 1, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["n01440764_tench", "n02113186_Cardigan", "n02963159_cardigan", "n15075141_toilet_tissue"]
    stream_labels = SyntheticStream("generator:imagenet", 8, seed=1, classes=[264, 474, 0, 999]).labels()
    for class_list in (None, "generator:imagenet"):
        code, stdout, err = run(
            capsys, "evaluate", LITE0, "--data", f"images:{out}", "--preset", "inception", "--json",
            *(["--class-list", class_list] if class_list else []),
        )  # fmt: skip
        assert code == 0, err
        result = json.loads(stdout)
        assert result["images"] == 8 and result["classes"] == 4 and "top1" in result
        folder = ImageFolder(out, ClassList.load(class_list) if class_list else None)
        check_folder_classes(folder, 1000, "data", "the folder")
        assert sorted(folder.labels) == [0, 264, 474, 999]
        for path, label in folder.samples():
            assert label == stream_labels[int(path[-10:-4])], path


@pytest.mark.shared
def test_evaluate_imagenet_generator_and_sample_folder(tmp_path):
    """evaluate --data generator:imagenet (labels: conditioning classes), and the shared sample
    folder (500 of 1000 classes, named by WordNet id) against a reference without a class list."""
    mobilenet = SHARED / "models" / "imagenet" / "mobilenet_v1_075.onnx"
    result = evaluate(LITE0, "generator:imagenet", transform="inception", limit=16, reference=mobilenet)
    assert result["images"] == 16 and "top1" in result and 0 <= result["agreement"] <= 1
    sample = SHARED / "datasets" / "imagenet-sample" / "images"
    result = evaluate(LITE0, f"images:{sample}", transform="inception", limit=40, reference=mobilenet)
    assert result["images"] == 40 and result["top1"] > 0.6 and "ImageNet-1k" in result["labels"]
    # a flat copy of some of them (as ImageNet's validation set comes): agreement only
    flat = tmp_path / "val"
    flat.mkdir()
    for path in sorted(sample.glob("*/*.JPEG"))[:12]:
        (flat / path.name).symlink_to(path)
    result = evaluate(LITE0, f"images:{flat}", transform="inception", reference=mobilenet)
    assert result["images"] == 12 and "top1" not in result and result["agreement"] > 0.5


@pytest.mark.shared
def test_cifar10_generator_round_trip_with_resnet20(tmp_path, capsys):
    out = tmp_path / "c10"
    code, _, err = run(capsys, "generate", "--source", "generator:cifar10", "-n", 30, "--out", out)
    assert code == 0, err
    direct = evaluate(RESNET20, "generator:cifar10", transform="cifar10", limit=30)
    for class_list in (None, "cifar10"):
        result = evaluate(RESNET20, f"images:{out}", transform="cifar10", class_list=class_list)
        assert result["classes"] == 10 and abs(result["top1"] - direct["top1"]) <= 2 / 30


# ----------------------------------------------------------------------------- --classes on every source

SAMPLE_TSV = (
    "index\twnid\tname\n0\tn01440764\ttench, Tinca tinca\n1\tn01443537\tgoldfish\n2\tn01484850\tgreat white shark\n"
)


def _first_labels(spec, classes, n=3):
    with SyntheticStream(spec, n, classes=classes, prefetch=0) as stream:
        return stream.labels().tolist()


def test_classes_by_id_name_or_index_on_a_generator_and_a_folder(tmp_path, capsys):
    """--classes tench and --classes n01440764 pick the same class on generator:imagenet and on an
    image folder with a class list, as folder names match: any case, synonyms, ids, indices."""
    tsv = tmp_path / "classes.tsv"
    tsv.write_text(SAMPLE_TSV)
    root = make_image_folder(tmp_path / "data", classes=("n01440764", "goldfish", "2"), per_class=2)
    folder = f"images:{root}?class_list={tsv}"
    for spec in ("generator:imagenet", folder):
        for chosen in ("tench", "n01440764", "TENCH", "0", 0):
            assert _first_labels(spec, [chosen]) == [0, 0, 0], (spec, chosen)
        assert sorted(set(_first_labels(spec, ["Great_White_Shark", "N01443537"], 4))) == [1, 2], spec
    assert _first_labels(folder, ["Tinca tinca"]) == [0, 0, 0]  # the list's synonym
    for spec, name in (("generator:imagenet", "generator"), (folder, "folder")):
        paths = []
        for chosen in ("tench", "n01440764"):
            out = tmp_path / f"{name}_{chosen}"
            code, _, err = run(capsys, "generate", "--source", spec, "--classes", chosen, "-n", 2, "--out", out)
            assert code == 0, err
            paths.append(sorted(str(p.relative_to(out)) for p in out.rglob("*.png")))
        assert paths[0] == paths[1] and len(paths[0]) == 3 and paths[0][1].startswith("n01440764_tench"), paths
    # one error wording on every source, naming the option as the front-end does
    for spec in ("generator:imagenet", folder):
        code, _, err = run(capsys, "generate", "--source", spec, "--classes", "trout", "--out", tmp_path / "x")
        assert (
            code == 2 and one_line(err) and err.startswith("synthcalib: error: --classes: unknown class name 'trout'")
        )
    with pytest.raises(SynthcalibError, match=r"^classes: 'crane' matches classes 134 \(n02012849, crane\) and 517"):
        SyntheticStream("generator:imagenet", 2, classes=["crane"])


@pytest.mark.shared
def test_classes_on_the_imagenet_sample_folder(tmp_path):
    """The shared sample (ImageNet class folders) with ImageNet's classes.tsv and generator:imagenet:
    a class is the same class by id, name or index."""
    sample = SHARED / "datasets" / "imagenet-sample"
    spec = f"images:{sample / 'images'}?class_list={sample / 'classes.tsv'}"
    for source in ("generator:imagenet", spec):
        assert _first_labels(source, ["tench"]) == _first_labels(source, ["n01440764"]) == [0, 0, 0]
        assert _first_labels(source, ["Cardigan"]) == _first_labels(source, ["n02113186"]) == [264] * 3
    with resolve_source("generator:imagenet") as generator:
        by_generator, by_file = generator.class_list, ClassList.load(sample / "classes.tsv")
    assert (by_file.names, by_file.ids, by_file.aliases) == (by_generator.names, by_generator.ids, by_generator.aliases)
