#!/usr/bin/env bash
# A new user's first minutes, measured: install the package from a clean clone into a fresh venv outside the
# repository, run the quick preset on the bundled example, and write the pictures of two runs with ground truth
# (the quick preset, and the quick preset in two gradual stages, whose plot shows stages and learning-rate drops).
#
#   bash benchmarks/first_minutes.sh [OUT=benchmarks/results/first_minutes]
#
# Needs PyPI (pip installs TensorFlow into the venv: a few minutes, about 2 GB). Writes OUT/README.md's raw
# material: OUT/log.txt (commands, exit statuses, wall times, peak memory, the first stderr lines) and the PNGs.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$REPO/benchmarks/results/first_minutes}" && cd "${1:-$REPO/benchmarks/results/first_minutes}" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/log.txt"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

say "date: $(date -u +%Y-%m-%dT%H:%MZ); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(nproc) cores, flags: $(grep -o -w -E 'avx2|avx512f|amx_bf16' /proc/cpuinfo | sort -u | xargs)"
if [ -n "$(git -C "$REPO" status --porcelain -- zssr_tf flags pyproject.toml setup.py)" ]; then
    echo "commit the package's changes first: this measures a clone of HEAD" >&2
    exit 1
fi
say "commit: $(git -C "$REPO" rev-parse --short HEAD)"

git clone -q "$REPO" "$WORK/clone"
python -m venv "$WORK/venv"
start=$(date +%s)
"$WORK/venv/bin/pip" install -q "$WORK/clone" > "$WORK/install.log" 2>&1
say "pip install /path/to/clone (fresh venv, outside the repository): exit $?, $(( $(date +%s) - start )) s"

mkdir -p "$WORK/elsewhere" && cd "$WORK/elsewhere" && cp "$REPO/examples/astronaut.png" IMG.png
for run in 1 2 3; do
    rm -rf out
    /usr/bin/time -f "%e %M" -o time.txt "$WORK/venv/bin/zssr" --preset=quick --input=IMG.png --output_dir=out \
        > run.out 2> run.err
    status=$?
    read -r wall peak < time.txt
    say "zssr --preset=quick --input=IMG --output_dir=out, run $run: exit $status, wall $wall s, peak RSS" \
        "$(( peak / 1024 )) MB; stdout: $(cat run.out)"
done
say "first stderr line: $(head -1 run.err)"
say "TensorFlow start-up lines on stderr: $(grep -c -E 'InitializeLog|cudart_stub|cpu_feature_guard|cuInit' run.err)"
"$WORK/venv/bin/zssr" --help > help.txt; say "zssr --help: exit $?, $(wc -l < help.txt) lines"
"$WORK/venv/bin/zssr" --list_presets > presets.txt; say "zssr --list_presets: exit $?, $(grep -c '^  [a-z]' presets.txt) presets"

# The pictures, from the clone's example with its ground truth.
cd "$REPO"
"$WORK/venv/bin/zssr" --preset=quick --input=examples/astronaut.png --ground_truth=examples/astronaut_gt.png \
    --output_dir="$WORK/quick" > "$WORK/quick.out" 2>&1
say "quick with ground truth: $(tail -1 "$WORK/quick.out")"
cp "$WORK/quick/astronaut_training.png" "$OUT/quick_training.png"
cp "$WORK/quick/astronaut_comparison.png" "$OUT/quick_comparison.png"
"$WORK/venv/bin/zssr" --preset=quick --scale_factors=1.5,2 --back_projection_iters=4,4 --max_iters=600 \
    --input=examples/astronaut.png --ground_truth=examples/astronaut_gt.png --output_dir="$WORK/gradual" \
    > "$WORK/gradual.out" 2>&1
say "quick in two stages (1.5, 2) of up to 600 iterations, with ground truth: $(tail -1 "$WORK/gradual.out")"
cp "$WORK/gradual/astronaut_training.png" "$OUT/gradual_training.png"
cp "$WORK/gradual/astronaut_comparison.png" "$OUT/gradual_comparison.png"
