"""`make bench` runs every benchmark script under bench/ and names each one it skips."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run_all  # noqa: E402


def test_every_python_file_in_bench_is_either_run_or_skipped_with_a_reason():
    planned = dict(run_all.plan())
    on_disk = {p.name for p in Path(run_all.__file__).parent.glob("*.py") if not p.name.startswith("_")}
    assert set(planned) == on_disk
    assert all(reason is None or reason for reason in planned.values())


def test_the_benchmarks_are_run_and_the_helpers_skipped():
    planned = dict(run_all.plan())
    for benchmark in ("messaging.py", "state_res.py", "push.py", "media.py", "e2ee_search.py"):
        assert planned[benchmark] is None, benchmark
    for helper in ("servers.py", "report.py", "run_all.py"):
        assert planned[helper], helper


def test_a_script_without_a_main_block_is_skipped_with_that_reason(tmp_path):
    (tmp_path / "library.py").write_text("VALUE = 1\n")
    (tmp_path / "runme.py").write_text('if __name__ == "__main__":\n    pass\n')
    assert run_all.plan(tmp_path) == [("library.py", "no __main__ block: not a runnable benchmark"),
                                      ("runme.py", None)]
