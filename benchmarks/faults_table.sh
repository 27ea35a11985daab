#!/usr/bin/env bash
# Writes benchmarks/results/faults.md: every test marked `fault(case, expected)` (tests/conftest.py) as one row,
# with what it observed and whether it passed. Run from anywhere: bash benchmarks/faults_table.sh
# (the 12-megapixel photo is benchmarks/huge_photos.py photo; 20 to 60 minutes on 2 cores, so it is not a row here).
set -euo pipefail
cd "$(dirname "$0")/.."
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
header="# Faults: every way a run can go wrong, and what it does

Made by \`bash benchmarks/faults_table.sh\` at commit $(git rev-parse --short HEAD), ${cpu}, $(nproc) cores: the
suite's tests marked \`fault\` (\`python -m pytest -m fault tests\`), each one row; the test named in the last column
produces the row in every CI run. The 12-megapixel photo is in [huge_photos.md](huge_photos.md).

"
ZSSR_FAULTS_TABLE=benchmarks/results/faults.md ZSSR_FAULTS_HEADER="$header" python -m pytest -q -m fault tests
