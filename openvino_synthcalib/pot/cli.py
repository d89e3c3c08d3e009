"""``synthcalib-pot``: POT with the synthetic engine, and the opt-in hook for plain ``pot``.

    synthcalib-pot -c config.json [any other pot option]   run POT, synthetic engine included
    synthcalib-pot enable  [--site-dir DIR]                 install the lazy .pth hook
    synthcalib-pot disable [--site-dir DIR]                 remove it
    synthcalib-pot status  [--site-dir DIR]                 show whether it is installed

Bad input gives one line ``synthcalib: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import SynthcalibError
from . import hook
from .engine_config import ENGINE_TYPE, build_setup, check_type
from .patch import apply

HOOK_COMMANDS = ("enable", "disable", "status")
PROG = "synthcalib-pot"


def _hook_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} {argv[0]}", description=hook.__doc__.splitlines()[0])
    parser.add_argument(
        "--site-dir", help="site directory holding the hook (default: this interpreter's site-packages)"
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv[1:])
    action = {"enable": hook.enable, "disable": hook.disable, "status": hook.status}[argv[0]]
    state = action(args.site_dir)
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        word = "enabled" if state["enabled"] else "disabled"
        extra = "" if state["up_to_date"] or not state["enabled"] else " (outdated: run 'synthcalib-pot enable')"
        print(f"POT hook {word}{extra}: {state['pth']}")
    return 0


def _precheck(argv: Sequence[str]) -> None:
    """Fail early, on one line, for a missing or unreadable config file."""
    for i, arg in enumerate(argv):
        path = None
        if arg in ("-c", "--config") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is None:
            continue
        p = Path(path)
        if not p.is_file():
            raise SynthcalibError(f"config file '{p}' does not exist")
        if p.suffix.lower() == ".json":
            try:
                try:
                    import jstyleson as js  # what POT reads JSON with (comments allowed)
                except ImportError:
                    js = json
                data = js.loads(p.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise SynthcalibError(f"config file '{p}' is not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise SynthcalibError(f"config file '{p}': expected a JSON object with model, engine, compression")
            for key in ("model", "compression"):
                if not isinstance(data.get(key), dict):
                    raise SynthcalibError(f"{key}: missing section in config file '{p}'")
            engine = data.get("engine")
            if engine is not None:
                check_type(engine)
                if engine.get("type") == ENGINE_TYPE:  # validated now, reused by POT below
                    if data["model"].get("cascade"):
                        raise SynthcalibError("model.cascade: the synthetic engine quantizes single models only")
                    algorithms = [
                        a.get("name") for a in data["compression"].get("algorithms") or [] if isinstance(a, dict)
                    ]
                    build_setup(engine, data["model"].get("model"), algorithms)


def _run_pot(argv: Sequence[str]) -> int:
    _precheck(argv)
    run = apply()
    run.app(list(argv))  # patched: SynthcalibError -> 'synthcalib: error: ...' and SystemExit(2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in HOOK_COMMANDS:
            return _hook_command(argv)
        if not argv:
            print(__doc__.strip(), file=sys.stderr)
            return 2
        if argv[0] in ("-h", "--help"):
            print(__doc__.strip() + "\n\nPOT's own options (pot --help):\n", flush=True)
        return _run_pot(argv)
    except SynthcalibError as exc:
        print(f"synthcalib: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
