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


def test_the_runner_runs_each_benchmark_reports_failures_and_names_skips(tmp_path, capsys):
    (tmp_path / "quick.py").write_text('import sys\nif __name__ == "__main__":\n    # "--quick"\n'
                                       '    print("args", sys.argv[1:])\n')
    (tmp_path / "full.py").write_text('if __name__ == "__main__":\n    print("full")\n')
    (tmp_path / "broken.py").write_text('import sys\nif __name__ == "__main__":\n    sys.exit(3)\n')
    (tmp_path / "servers.py").write_text("X = 1\n")
    assert run_all.main(["--quick"], bench_dir=tmp_path) == 1
    summary = capsys.readouterr().out.split("=== bench summary")[1].strip().splitlines()
    assert summary == [
        "FAILED (exit 3) broken.py (no --quick option: full run)",
        "ran full.py (no --quick option: full run)",
        "ran quick.py",
        f"skipped servers.py: {run_all.HELPERS['servers.py']}",
    ]
