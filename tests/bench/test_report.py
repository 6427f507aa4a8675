"""Medians, ratios and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import Measurement, MemoryReading, Report


def _report() -> Report:
    report = Report(options={"size": 1})
    report.add(
        Measurement("server", "blob pull", "pyreg", [3.0, 1.0, 2.0], bytes=4_000_000, cpu=[0.6])
    )
    report.add(
        Measurement("server", "blob pull", "reference", [1.0, 9.0, 1.0], bytes=4_000_000, cpu=[0.2])
    )
    report.add(Measurement("server", "tags list", "pyreg", [0.5], ops=100))
    report.memory.append(MemoryReading("pyreg", 50.0, 60.0, "blob"))
    return report


def test_median_and_rate() -> None:
    m = Measurement("server", "x", "pyreg", [3.0, 1.0, 2.0], bytes=4_000_000)
    assert m.median == 2.0
    assert m.rate().strip() == "2.0 MB/s"
    assert Measurement("server", "x", "p", [0.5], ops=100).rate().strip() == "200.0 op/s"


def test_table_has_the_ratio_of_pyreg_to_the_peer() -> None:
    table = _report().table()
    (reference_line,) = [
        line for line in table.splitlines() if line.startswith("blob pull") and "reference" in line
    ]
    fields = reference_line.split()
    assert fields[-3] == "2.00"  # time: median 2.0 / median 1.0
    assert fields[-1] == "3.00"  # server CPU: 0.6 / 0.2
    assert "peak MiB" in table


def test_json_is_written_with_medians(tmp_path: Path) -> None:
    path = _report().write_json(tmp_path / "results")
    written = json.loads(path.read_text())
    assert written["machine"]["cpus"] >= 1
    assert written["versions"]["pyreg_commit"]  # a commit, or why it is unknown
    medians = {(m["scenario"], m["peer"]): m["median"] for m in written["measurements"]}
    assert medians[("blob pull", "reference")] == 1.0
    assert written["memory"][0]["peak_mib"] == 60.0
