"""`python -m protoship.bench` (behind `nox -s bench`) on a tiny corpus: every run it reports
happened, succeeded, and has a time and a memory figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = {"full", "noop", "incremental", "baseline", "stock", "fast"}
TARGETS = 5


def test_bench_reports_every_run_with_positive_numbers(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "protoship.bench",
            "--root",
            str(REPO),
            "--packages",
            "2",
            "--files",
            "2",
            "--messages",
            "1",
            "--skip-googleapis",
            "--skip-scaling",
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())

    [corpus] = report["corpora"]
    assert corpus["files"] == 4
    assert set(corpus["runs"]) == RUNS
    for name, run in corpus["runs"].items():
        assert run["returncode"] == 0, (name, run["error"])
        assert run["seconds"] > 0, name
        assert run["peak_rss_mib"] >= run["max_process_rss_mib"] > 0, name
        assert run["peak_pss_mib"] > 0, name
    full, noop, incremental = (corpus["runs"][n] for n in ("full", "noop", "incremental"))
    assert "generated" in full["summary"]
    assert "nothing changed" in noop["summary"]
    assert "generated" in incremental["summary"]
    assert full["stages"]["running generators"] > 0
    assert corpus["identical"] is True
    assert all(v > 0 for v in corpus["ratios"].values())
    assert len(report["targets"]) == TARGETS
    assert all(t["result"] in {"PASS", "MISS", "n/a"} for t in report["targets"])
    # The scaling figure needs the second corpus, which this run left out.
    assert [t["result"] for t in report["targets"]].count("n/a") == 1
    for target in report["targets"]:
        assert target["target"] in proc.stdout
