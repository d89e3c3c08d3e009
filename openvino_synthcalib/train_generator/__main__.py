"""CLI: ``python -m openvino_synthcalib.train_generator {sample-teacher,train,export,evaluate} ...``."""

from __future__ import annotations

import argparse
import sys

from ..cli import Parser
from ..errors import SynthcalibError
from .options import COMMANDS, add_arguments, resolve_options

HELP = {
    "sample-teacher": "sample the teacher once into a resumable teacher set (.npz shards + manifest.json)",
    "train": "distil a student generator from a teacher set",
    "export": "export a run's EMA generator to an FP16 OpenVINO IR with synthcalib metadata",
    "evaluate": "FID/KID, class consistency, size and speed of teacher and student",
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m openvino_synthcalib.train_generator",
        description="Distil a tiny conditional generator from a big black-box teacher.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for cmd in COMMANDS:
        add_arguments(sub.add_parser(cmd, help=HELP[cmd], description=HELP[cmd]), cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SynthcalibError as exc:
        print(f"synthcalib: error: {exc}", file=sys.stderr)
        return exc.exit_code
    given = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        opts = resolve_options(args.command, given)
        if args.command == "sample-teacher":
            from .teacher_set import sample_from_options, size

            manifest = sample_from_options(opts)
            print(f"teacher set: {opts['out']} ({size(manifest)} images)")
        elif args.command == "train":
            from .training import train_from_options

            run_dir = train_from_options(opts)
            if run_dir is not None:
                print(f"run folder: {run_dir}")
        elif args.command == "export":
            from .exporter import export_from_options

            print(f"exported: {export_from_options(opts)}")
        else:
            from .evaluation import evaluate_from_options, markdown_table

            print(markdown_table(evaluate_from_options(opts)))
    except SynthcalibError as exc:
        print(f"synthcalib: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # train says which checkpoint it saved
        generic = f"{args.command}: interrupted; finished work is kept (rerun the same command to resume)"
        print(str(exc) or generic, file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
