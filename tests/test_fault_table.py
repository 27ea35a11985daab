"""benchmarks/results/faults.md is the table of the tests marked `fault`: complete, at least 30 rows, all passing."""

import os
import subprocess
import sys

from tests.conftest import EXAMPLES

ROOT = os.path.dirname(EXAMPLES)
TABLE = os.path.join(ROOT, "benchmarks", "results", "faults.md")


def test_the_committed_fault_table_has_every_fault_test_and_all_passed():
    with open(TABLE) as f:
        rows = [line.split(" | ") for line in f if line.startswith("| ") and not line.startswith("| # ")]
    assert len(rows) >= 30
    assert all(row[4] == "passed" for row in rows), [row for row in rows if row[4] != "passed"]
    in_table = {row[5].strip(" `|\n") for row in rows}
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "fault", "tests"],
                               capture_output=True, text=True, cwd=ROOT, timeout=300)
    marked = {line.split("::", 1)[1] for line in collected.stdout.splitlines() if "::" in line}
    assert len(marked) >= 30, collected.stdout[-2000:]
    assert marked == in_table, ("remake the table: bash benchmarks/faults_table.sh", sorted(marked ^ in_table))
