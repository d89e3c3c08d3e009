"""Start-up cost of the opt-in POT hook for Python processes that never import POT.

Times ``PYTHON -c pass`` (wall clock of the whole process, spawn to exit) with the hook enabled
and disabled in PYTHON's own site-packages, alternating the two states run by run so that
drift in machine load hits both alike, and reports the median of N runs each. The hook state
found at the start is restored at the end.

    .venv-pot/bin/python benchmarks/pot_hook_startup.py [--python .venv-pot/bin/python] [--runs 20]

Writes benchmarks/results/pot_hook_startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from commands import command

ROOT = Path(__file__).resolve().parents[1]


def hook(python: str, action: str) -> dict:
    out = subprocess.run(
        [python, "-m", "openvino_synthcalib.pot.cli", action, "--json"], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def once(python: str) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one ``python -c pass`` process."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(python, [python, "-c", "pass"], os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{python} -c pass failed")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter whose site-packages get the hook")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="repeat the whole measurement, report each")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pot_hook_startup.md"))
    args = parser.parse_args()

    initially = hook(args.python, "status")["enabled"]
    results = []
    try:
        for _ in range(args.rounds):
            times: dict[str, list[float]] = {"enabled": [], "disabled": []}
            cpu: dict[str, list[float]] = {"enabled": [], "disabled": []}
            for state in ("enabled", "disabled"):  # warm the page cache and the hook's .pyc
                hook(args.python, "enable" if state == "enabled" else "disable")
                for _ in range(args.warmup):
                    once(args.python)
            for i in range(2 * args.runs):
                state = ("enabled", "disabled")[i % 2]
                hook(args.python, "enable" if state == "enabled" else "disable")
                once(args.python)  # one untimed run after each switch
                wall, used = once(args.python)
                times[state].append(wall)
                cpu[state].append(used)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            med.update({f"cpu_{k}": statistics.median(v) * 1e3 for k, v in cpu.items()})
            results.append(med)
            print(
                f"median of {args.runs}: enabled {med['enabled']:.2f} ms, disabled {med['disabled']:.2f} ms, "
                f"difference {med['enabled'] - med['disabled']:+.2f} ms (CPU time "
                f"{med['cpu_enabled'] - med['cpu_disabled']:+.2f} ms)",
                flush=True,
            )
        # The hook's own share: its module's line in -X importtime, with the hook enabled.
        hook(args.python, "enable")
        once(args.python)
        probe = subprocess.run([args.python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True)
        lines = [ln for ln in probe.stderr.splitlines() if "_synthcalib_pot_hook" in ln]
    finally:
        hook(args.python, "enable" if initially else "disable")

    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True
    ).stdout.strip()
    diffs = [r["enabled"] - r["disabled"] for r in results]
    cpu_diffs = [r["cpu_enabled"] - r["cpu_disabled"] for r in results]
    load = os.getloadavg()
    text = [
        "# POT hook start-up cost",
        "",
        f"`{command('pot_hook_startup')}` (interpreter `{os.path.relpath(args.python, ROOT)}`, Python {version}, "
        f"{platform.machine()}, {os.cpu_count()} CPU cores).",
        "",
        f"`python -c pass`: wall clock per process (spawn to exit) and the child's CPU time (user + system, "
        f"from `wait4`), median of {args.runs} runs per state, enabled/disabled alternating run by run; each "
        f"round repeats the whole measurement. Load average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(wall clock is only meaningful on an otherwise idle machine; CPU time is robust to other load).",
        "",
        "| round | wall, hook enabled (ms) | wall, disabled (ms) | wall difference (ms) | CPU, enabled (ms) | CPU, disabled (ms) | CPU difference (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        text.append(
            f"| {i} | {r['enabled']:.2f} | {r['disabled']:.2f} | {r['enabled'] - r['disabled']:+.2f} | "
            f"{r['cpu_enabled']:.2f} | {r['cpu_disabled']:.2f} | {r['cpu_enabled'] - r['cpu_disabled']:+.2f} |"
        )
    text += [
        "",
        f"Median difference over rounds: wall **{statistics.median(diffs):+.2f} ms**, "
        f"CPU **{statistics.median(cpu_diffs):+.2f} ms** (target: under 2 ms).",
        "",
        f"Hook state restored to: {'enabled' if initially else 'disabled'}.",
    ]
    if lines:
        text += [
            "",
            "`-X importtime` line of the hook module (self/cumulative, microseconds) when enabled:",
            "",
            *[f"    {ln.strip()}" for ln in lines],
        ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(text) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
