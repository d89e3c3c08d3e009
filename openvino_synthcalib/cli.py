"""The ``synthcalib`` command line: quantize, evaluate, generate, info, plugins, serve."""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from . import __version__, accuracy_control, checks, contract, models, options, quality
from .classifier import classifier_classes, describe_input
from .defaults import DEFAULTS
from .engine import GeneratorEngine
from .errors import SynthcalibError
from .evaluation import evaluate
from .files import replaced_dir
from .imageio import sample_pngs
from .plugins import plugin_distribution, source_types
from .preprocessing import report_line
from .quantization import load_config, quantize_settings
from .serve.runner import serve
from .shipped import generator_path
from .sources.base import SourceContext, parse_size
from .stream import SyntheticStream


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every flag's default (its text may say it already: ``(default ...)``), and
    shows the flags marked ``shown_required`` (required unless a config gives them) as required
    in the usage line, although argparse does not require them."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        default = action.default
        return bool(action.option_strings) and not (
            default is None or default is argparse.SUPPRESS or isinstance(default, bool) or default == []
        )

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "(default" in text or not self._shows_default(action):
            return text
        return f"{text} (default %(default)s)"

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._shows_default(action):
            action = copy.copy(action)
            action.help = "(default %(default)s)"
        return super()._format_action(action)

    def _format_usage(self, usage: Any, actions: Any, groups: Any, prefix: Any) -> str:
        marked = [a for a in actions if getattr(a, "shown_required", False) and not a.required]
        for action in marked:
            action.required = True
        try:
            return super()._format_usage(usage, actions, groups, prefix)
        finally:
            for action in marked:
                action.required = False


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) and help that shows defaults and required flags:
    the parser of every ``synthcalib`` command line (the training one too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise SynthcalibError(f"{self.prog}: {message}")


def _arg(check: Any) -> Any:
    """An argparse type from a check of :mod:`.checks` (command-line text parsed first)."""

    def parse(value: str) -> Any:
        try:
            return checks.from_text(check)(value)
        except checks.Invalid as exc:
            raise argparse.ArgumentTypeError(f"expected {exc.expected}, got {value!r}") from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


_positive = _arg(lambda v: checks.integer(v, 1))
_non_negative = _arg(lambda v: checks.integer(v, 0))
_floats = _arg(checks.numbers)


def _add_preprocessing(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (default: read size/layout from the model, no normalisation)")
    g.add_argument(
        "--preset",
        help="input normalisation preset: cifar10, imagenet (torchvision mean/std), inception ([-1, 1]), unit ([0, 1]), "
        "pixels ([0, 255]), caffe (BGR pixels minus mean), or a plugin's; required unless the model declares its "
        "normalisation or --mean/--std/--input-range state it",
    )
    g.add_argument("--mean", type=_floats, help="per-channel mean after scaling, e.g. 0.485,0.456,0.406")
    g.add_argument("--std", type=_floats, help="per-channel std after scaling")
    g.add_argument("--input-range", type=_floats, help="value range the model expects before mean/std, e.g. 0,255")
    g.add_argument("--channel-order", choices=("RGB", "BGR"))
    g.add_argument("--layout", choices=("NCHW", "NHWC"))


def _preprocessing(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "preset": args.preset,
        "mean": args.mean,
        "std": args.std,
        "input_range": args.input_range,
        "channel_order": args.channel_order,
        "layout": args.layout,
    }


STREAM_OPTIONS = ("source", "seed", "classes", "class_weights", "batch_size", "device", "precision")


#: Earlier spellings of the table's flags: still accepted, not shown in help.
OLD_FLAGS = {"nncf_preset": ("--nncf-preset",)}
#: The table's flags that ``quantize`` needs unless its --config gives them (its own one-line
#: errors say so; argparse does not require them): marked required in help.
QUANTIZE_REQUIRED = ("source", "output")


def _add_options(
    p: argparse.ArgumentParser, keys: Sequence[str], precision: str = "precision", required: Sequence[str] = ()
) -> None:
    """Flags of the option table (:mod:`.options`), with its help; values are parsed and checked
    by :func:`_values`, so that an error names the flag in the table's words. The flags of
    ``required`` are marked required unless the config gives them."""
    for key in keys:
        opt = options.BY_KEY[key]
        default = DEFAULTS[precision] if key == "precision" else opt.default
        shown = default is not None and not isinstance(default, bool)  # 0 is a default too
        text = opt.help + (f" (default {default})" if shown else "")
        if key in required:
            text += f" (required, unless --config gives {opt.name('config')!r})"
        if opt.switch:
            action = argparse.BooleanOptionalAction if opt.default is None else "store_true"
            p.add_argument(opt.cli, dest=key, action=action, default=None, help=text)
        else:
            flag = p.add_argument(opt.cli, dest=key, choices=opt.cli_choices, help=text.replace("%", "%%"))
            flag.shown_required = key in required
            for old in OLD_FLAGS.get(key, ()):
                p.add_argument(old, dest=key, choices=opt.cli_choices, help=argparse.SUPPRESS)


def _values(args: argparse.Namespace, keys: Sequence[str]) -> dict[str, Any]:
    """The options given on the command line, parsed from their text (errors name the flag)."""
    out: dict[str, Any] = {}
    for key in keys:
        value = getattr(args, key, None)
        if value is None:
            continue
        opt = options.BY_KEY[key]
        if isinstance(value, str) and opt.cli_parse is not None:
            value = checks.checked(opt.cli_parse, value, opt.cli)
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="synthcalib", description="Synthetic calibration data for OpenVINO INT8 quantization.")
    parser.add_argument("--version", action="version", version=f"openvino_synthcalib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    q = sub.add_parser("quantize", help="quantize a model to INT8 with NNCF on a calibration source")
    q.add_argument("model", nargs="?", help="FP32 model (.xml or .onnx) (required, unless --config gives 'model')")
    q.add_argument("--config", help="YAML/JSON quantization config (dataset, preprocessing, nncf options)")
    _add_options(
        q, [o.key for o in options.offered("cli") if o.key != "model"], "calibration_precision", QUANTIZE_REQUIRED
    )
    _add_preprocessing(q)
    q.add_argument("--json", action="store_true", help="print the report as JSON")

    e = sub.add_parser(
        "evaluate", help="top-1 of a classifier on labelled data, and its agreement with a reference model"
    )
    e.add_argument("model")
    e.add_argument(
        "--data",
        required=True,
        help="any source spec: images:DIR (class folders DIR/<class>/*.jpg, or a flat folder DIR/*.jpg: agreement "
        "only; options ?class_list=FILE, ?crop=center|none), generator:imagenet or generator:PATH.xml (labels: the "
        "conditioning classes), noise:gaussian, fractal:ifs (agreement only)",
    )
    e.add_argument("--class-list", metavar="FILE", help=options.BY_KEY["class_list"].help)
    e.add_argument(
        "--reference",
        help="FP32 model: also report top-1 agreement with it (needs no labels: any folder, any source)",
    )
    e.add_argument("--batch-size", type=_positive, default=DEFAULTS["eval_batch_size"])
    e.add_argument(
        "--limit",
        type=_positive,
        help="images of a folder: an evenly spaced subset of this many; items of a generated source "
        "(generator, noise): this many (default 1000)",
    )
    e.add_argument(
        "--seed", type=_non_negative, default=DEFAULTS["seed"], help="seed of a generated source (default %(default)s)"
    )
    e.add_argument("--device", default=DEFAULTS["device"])
    e.add_argument("--json", action="store_true")
    _add_preprocessing(e)

    g = sub.add_parser("generate", help="write synthetic images as PNG files per class, plus grid.png")
    _add_options(g, STREAM_OPTIONS)
    g.add_argument("-n", "--num", type=_positive, default=DEFAULTS["generate_num"], help="images (default %(default)s)")
    g.add_argument("--out", required=True, help="output folder (new or empty, unless --overwrite)")
    g.add_argument("--overwrite", action="store_true", help="replace the content of a non-empty --out folder")
    g.add_argument("--num-classes", type=_positive, help="classes of a generator without metadata")
    g.add_argument("--size", help="image size HxW for sources without a native size (noise)")

    i = sub.add_parser("info", help="describe a model or generator")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")

    sub.add_parser("plugins", help="list source schemes with their package and version")

    w = sub.add_parser("serve", help="a local web page: preview generators, calibrate a model from one")
    w.add_argument("--generator", action="append", default=[], help="generator IR/ONNX to offer (repeatable)")
    w.add_argument("--model", action="append", default=[], help="FP32 classifier to offer for calibration (repeatable)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    w.add_argument("--port", type=_non_negative, default=8000, help="port (default %(default)s; 0: a free one)")
    return parser


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    report = {k: v for k, v in report.items() if k != "quantized_model"}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    per_class = report["samples_per_class"]
    counts = sorted(set(per_class.values()))
    balance = f"{counts[0]} per class" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} per class"
    if list(per_class) == ["unlabelled"]:  # a flat folder: one pool of images, no classes
        balance = "unlabelled"
    print(f"source:     {report['source']}")
    print(f"input:      {report_line(report['preprocessing'])}")
    classes = "" if balance == "unlabelled" else f", {len(per_class)} classes"
    print(f"samples:    {report['num_samples']} ({balance}{classes}), seed {report['seed']}")
    print(f"recipe:     {report['recipe_summary']}")
    print(f"quantized:  {report['quantize_seconds']:.1f} s")
    if report.get("fp32_bytes"):
        print(f"FP32 model: {report['model']} ({report['fp32_bytes'] / 1e6:.2f} MB)")
    if report.get("output"):
        print(f"INT8 model: {report['output']} ({report['int8_bytes'] / 1e6:.2f} MB)")
    if report.get("accuracy_control"):
        first, *rest = accuracy_control.summary(report["accuracy_control"])
        print(f"accuracy:   {first}")
        for line in rest:
            print(f"kept FP32:  {line}")
    for line in quality.summary(report["check"]):
        print(line)
    poor = quality.warning(report["check"])
    if poor is not None:
        print(f"synthcalib: warning: {poor}", file=sys.stderr)


def cmd_quantize(args: argparse.Namespace) -> None:
    values = load_config(args.config) if args.config else {}
    keys = [o.key for o in options.offered("cli") if o.key != "model"]
    values.update(_values(args, keys))
    if args.model is not None:
        values["model"] = args.model
    pre = {k: v for k, v in _preprocessing(args).items() if v is not None}
    nncf_presets = options.BY_KEY["nncf_preset"].cli_choices or ()
    if str(pre.get("preset", "")).lower() in nncf_presets:
        raise SynthcalibError(
            f"--preset: {pre['preset']!r} is a quantization preset of NNCF: give "
            f"{options.BY_KEY['nncf_preset'].cli} {pre['preset']} (--preset is the input normalisation)"
        )
    if pre:
        given = values.get("transform")
        values["transform"] = {**({"preset": given} if isinstance(given, str) else given or {}), **pre}
    if values.get("model") is None:
        raise SynthcalibError("quantize: give MODEL or a --config with 'model'")
    if values.get("source") is None:
        raise SynthcalibError("quantize: give --source SPEC (e.g. generator:gen.xml) or a --config with 'dataset'")
    if values.get("output") is None:
        raise SynthcalibError("quantize: give --out OUT.xml (or 'output' in --config)")
    settings = options.read(values, "cli")
    with _stdout_to_stderr():
        report = quantize_settings(settings)
    _print_report(report, args.json)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """NNCF's log and progress bars go to stdout; keep stdout for the report (--json stays parseable).

    The log goes to stderr; the progress bars too on a terminal, and nowhere otherwise (a log file
    or a pipe would only get their final frames, around the one line an error prints).
    """
    import logging

    import nncf  # noqa: F401  (its logger and handlers exist once imported)

    moved = []
    for handler in logging.getLogger("nncf").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            moved.append((handler, handler.setStream(sys.stderr)))
    try:
        with contextlib.ExitStack() as stack:
            sink = sys.stderr if sys.stderr.isatty() else stack.enter_context(open(os.devnull, "w"))
            stack.enter_context(contextlib.redirect_stdout(sink))
            yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


def cmd_evaluate(args: argparse.Namespace) -> None:
    pre = {k: v for k, v in _preprocessing(args).items() if v is not None}
    result = _evaluate(evaluate, args, pre)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    items = f"{result['images']} images" + (f" ({result['classes']} classes)" if result["classes"] else "")
    print(f"input:     {report_line(result['preprocessing'])}")
    if "top1" in result:
        print(f"top-1:     {100 * result['top1']:.2f}% on {items}")
        print(f"labels:    {result['labels']}")
    else:
        print(f"top-1:     not measured ({result['no_top1']})")
    if "agreement" in result:
        ref = f"{100 * result['reference_top1']:.2f}%   " if "reference_top1" in result else ""
        print(f"reference: {ref}top-1 agreement: {100 * result['agreement']:.2f}% on {items}")


#: Keys of errors about ``evaluate``'s own arguments (beyond the option table's) and their flags.
OWN_FLAGS = {"data": "--data", "reference": "--reference"}


def flag(key: str) -> str:
    """The flag of an error's key: the option table's (``transform.mean``: ``--mean``) or a command's own."""
    return OWN_FLAGS.get(key) or options.name_in("cli", key)


def _evaluate(evaluate: Any, args: argparse.Namespace, pre: dict[str, Any]) -> dict[str, Any]:
    return evaluate(
        args.model,
        args.data,
        transform=pre or None,
        reference=args.reference,
        class_list=args.class_list,
        batch_size=args.batch_size,
        device=args.device,
        limit=args.limit,
        seed=args.seed,
        progress=sys.stderr.isatty(),
        class_list_name="--class-list",
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    size = parse_size(args.size, "--size") if args.size else None
    given = _values(args, STREAM_OPTIONS)
    s = {
        k: given.get(k, DEFAULTS["precision"] if k == "precision" else options.BY_KEY[k].default)
        for k in STREAM_OPTIONS
    }
    context = SourceContext(
        num_classes=args.num_classes, device=s["device"], batch_size=s["batch_size"], precision=s["precision"]
    )
    started = time.perf_counter()
    stream = SyntheticStream(
        args.source,
        args.num,
        seed=s["seed"],
        classes=s["classes"],
        class_weights=s["class_weights"],
        context=context,
        transform={"size": size} if size is not None else None,
    )
    with stream, replaced_dir(args.out, args.overwrite) as tmp:
        classes: set[int] = set()
        with tqdm(total=len(stream), desc="generate", unit="img", disable=not sys.stderr.isatty()) as bar:
            ids = getattr(stream.source, "class_ids", None)
            for sample in sample_pngs(stream.batches(), stream.source.names, ids=ids):
                path = tmp / sample.path
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(sample.data)  # the whole folder is renamed into place at the end
                if sample.label is not None:
                    classes.add(sample.label)
                    bar.update(1)
    elapsed = time.perf_counter() - started
    print(f"wrote {len(stream)} images ({len(classes)} classes) and grid.png to {args.out} in {elapsed:.1f} s")


def cmd_info(args: argparse.Namespace) -> None:
    path = str(generator_path(args.model))
    model = models.read_model(path, "model")
    info: dict[str, Any] = {
        "path": path,
        "inputs": [
            f"{p.get_any_name()} {p.get_element_type().to_string()} {p.get_partial_shape()}" for p in model.inputs
        ],
        "outputs": [
            f"{p.get_any_name()} {p.get_element_type().to_string()} {p.get_partial_shape()}" for p in model.outputs
        ],
        "parameters": models.parameter_count(model),
        "bytes": models.file_size(path),
    }
    if contract.is_generator(model):
        info["kind"] = "generator"
        try:
            with GeneratorEngine(model, batch_size=1, num_requests=1) as engine:
                info["generator"] = engine.info.to_dict()  # the synthcalib/* metadata, checked
        except SynthcalibError as exc:
            info["generator"] = f"incomplete metadata: {exc}"
            info["synthcalib"] = contract.read_info(model)  # what there is of it, as stored
    else:
        info["kind"] = "model"
        info["classes"] = classifier_classes(model)
        try:
            info["input"] = describe_input(model)
        except SynthcalibError as exc:
            info["input"] = str(exc)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                if k == "provenance" and isinstance(v, dict):
                    _print_provenance(v)
                else:
                    print(f"  {k}: {_shortened(v)}")
        elif isinstance(value, list):
            print(f"{key}:")
            for v in value:
                print(f"  {v}")
        else:
            print(f"{key}: {value}")


def _print_provenance(provenance: dict[str, Any]) -> None:
    """A generator's provenance, one field a line; of its training options only those its method
    used (``--json`` prints them all)."""
    from .train_generator.options import used_options  # lazy: the optional, torch-based [train] subpackage

    print("  provenance:")
    for k, v in provenance.items():
        if k == "options" and isinstance(v, dict):
            used = used_options(v)
            print(f"    options ({len(used)} the method used, of {len(v)}; --json shows all):")
            for name, value in used.items():
                print(f"      {name}: {_shortened(value)}")
        else:
            print(f"    {k}: {_shortened(v)}")


def _shortened(value: Any, most: int = 10) -> Any:
    """A long list (1000 class names) as its first items and its length; ``--json`` prints all."""
    if isinstance(value, (list, tuple)) and len(value) > most + 2:
        return f"[{', '.join(repr(v) for v in value[:most])}, ...] ({len(value)} in all; --json shows every one)"
    return value


def cmd_plugins(args: argparse.Namespace) -> None:
    rows = []
    for scheme, st in sorted(source_types().items()):
        package, version = plugin_distribution(st.meta["plugin"])
        rows.append((scheme, package, version, st.help))
    width = max(len(r[0]) for r in rows)
    pw = max(len(f"{r[1]} {r[2]}") for r in rows)
    for scheme, package, version, text in rows:
        print(f"{scheme:<{width}}  {f'{package} {version}':<{pw}}  {text}")


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise SynthcalibError(f"serve: needs the web extra, pip install 'openvino_synthcalib[web]' ({exc})") from None
    serve(args.generator, args.model, host=args.host, port=args.port)


COMMANDS = {
    "quantize": cmd_quantize,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "info": cmd_info,
    "plugins": cmd_plugins,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except SynthcalibError as exc:
        print(f"synthcalib: error: {exc.render(flag)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("synthcalib: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (synthcalib info ... | head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
