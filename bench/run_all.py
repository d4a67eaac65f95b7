"""`make bench`: every benchmark under bench/, one after another, then a summary that names each
benchmark's outcome and every script it did not run (and why).

    .venv/bin/python bench/run_all.py            # full workloads
    .venv/bin/python bench/run_all.py --quick    # smoke runs, where a benchmark has --quick

A new benchmark is picked up by being a script here with a `__main__` block; a helper module
must be listed in HELPERS with the reason it is not run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HELPERS = {
    "servers.py": "helper: starts our server or Synapse for the other benchmarks",
    "report.py": "helper: renders the ratio table every benchmark prints",
    "run_all.py": "this runner",
}


def plan(bench_dir: Path | None = None) -> list[tuple[str, str | None]]:
    """(script, reason it is skipped or None) for every Python file in the bench directory."""
    out: list[tuple[str, str | None]] = []
    for path in sorted((bench_dir or BENCH_DIR).glob("*.py")):
        if path.name.startswith("_"):
            continue
        if path.name in HELPERS:
            out.append((path.name, HELPERS[path.name]))
        elif 'if __name__ == "__main__":' not in path.read_text(encoding="utf-8"):
            out.append((path.name, "no __main__ block: not a runnable benchmark"))
        else:
            out.append((path.name, None))
    return out


def accepts_quick(script: Path) -> bool:
    return '"--quick"' in script.read_text(encoding="utf-8")


def main(argv: list[str] | None = None, bench_dir: Path | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to the benchmarks that take it")
    args = parser.parse_args(argv)
    bench_dir = bench_dir or BENCH_DIR
    outcomes: list[str] = []
    failed = False
    for name, skip_reason in plan(bench_dir):
        if skip_reason is not None:
            outcomes.append(f"skipped {name}: {skip_reason}")
            continue
        script = bench_dir / name
        command = [sys.executable, str(script)]
        note = ""
        if args.quick:
            if accepts_quick(script):
                command.append("--quick")
            else:
                note = " (no --quick option: full run)"
        print(f"=== {name}{note}", flush=True)
        status = subprocess.run(command, cwd=bench_dir.parent).returncode
        failed |= status != 0
        outcomes.append(f"{'ran' if status == 0 else f'FAILED (exit {status})'} {name}{note}")
    print("\n=== bench summary")
    for line in outcomes:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
