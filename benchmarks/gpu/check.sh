#!/usr/bin/env bash
# The GPU check of depthkit on one GPU machine without network, in under 8 minutes: versions,
# an offline install of DALI and the missing dependencies (tools/offline_wheels.sh), the GPU
# tests, a short train -> eval -> predict through the CLI, and the loader and training
# benchmarks on the GPU. Every stage runs under a timeout inside one overall budget.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: benchmarks/gpu/check.sh OUTDIR [WHEELS]

Runs from the repository (PYTHONPATH, no install of depthkit) with $PYTHON (default python3).
Where DALI or another dependency is not importable, installs every wheel of WHEELS (default:
wheels/ at the repository root, made by tools/offline_wheels.sh; wheels and parts may lie in
WHEELS or one folder below it, e.g. carry-01/; parts are joined and SHA256SUMS checked) with
`pip install --no-index --no-deps --target WORK/site`.
Stages: pytest -m gpu, depthkit synth/shard/train --res 224 --amp/eval/predict,
benchmarks/loader.py on the GPU (64/128/224), benchmarks/train.py --res 224 --amp for the
default model and unetexp, benchmarks/loader.py CPU columns.
Writes five files into OUTDIR: check.json (every stage and figure), check.log (what it
printed), logs.tar.gz (each stage's output), pytest-gpu.xml, eval-grid.png. Data, runs and
the installed wheels go to WORK ($CHECK_WORK, default /tmp/depthkit-check; a rerun reuses
them). Without CUDA it stops before the first stage with one line `error: ...`, exit code 1.

Environment: PYTHON, CHECK_WORK, CHECK_BUDGET_S (seconds for everything, default 450).
EOF
}

case ${1:-} in
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac
[[ $# -le 2 ]] || { echo "error: too many arguments (see --help)" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
[[ $PYTHON != */* ]] || PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
command -v "$PYTHON" > /dev/null || { echo "error: no python $PYTHON (set PYTHON=)" >&2; exit 2; }
BUDGET=${CHECK_BUDGET_S:-450}
mkdir -p "$1" "${CHECK_WORK:-/tmp/depthkit-check}/logs" || exit 2
OUT=$(cd "$1" && pwd)
WORK=$(cd "${CHECK_WORK:-/tmp/depthkit-check}" && pwd)
WHEELS=${2:-$REPO/wheels}
[[ -d $WHEELS ]] && WHEELS=$(cd "$WHEELS" && pwd)
LOG=$OUT/check.log
START=$(date +%s)
STAGES=()
ERROR=""
export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$REPO" || exit 2
: > "$LOG"
rm -f "$WORK"/logs/*.log "$WORK"/*.json "$WORK"/eval-grid.png

say() { echo "$*" | tee -a "$LOG"; }
die() { ERROR="$*"; echo "error: $*" | tee -a "$LOG" >&2; exit 1; }

# OUTDIR's files, also after `die`: check.json, logs.tar.gz and the copies.
finish() {
    "$PYTHON" - "$WORK" "$OUT/check.json" "$ERROR" "${STAGES[@]}" 2>> "$LOG" <<'EOF'
import json, pathlib, sys
work, target, error = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
stages = []
for s in sys.argv[4:]:
    name, status, code, seconds = s.split()
    stages.append({"stage": name, "status": status, "exit": code, "seconds": int(seconds)})
figures = {}
for name in ("env", "eval", "loader-gpu", "train", "loader-cpu"):
    path = work / f"{name}.json"
    figures[name] = json.loads(path.read_text()) if path.is_file() else None
target.write_text(json.dumps({"error": error or None, "stages": stages, **figures}, indent=1))
EOF
    tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs $(cd "$WORK" && ls ./*.json 2> /dev/null) \
        2>> "$LOG"
    for f in pytest-gpu.xml eval-grid.png; do [[ -f $WORK/$f ]] && cp "$WORK/$f" "$OUT/"; done
    return 0
}
trap finish EXIT

# stage NAME CAP_S CMD...: CMD under a timeout of CAP_S or what is left of the budget.
stage() {
    local name=$1 cap=$2 left limit t0 rc status=ok
    shift 2
    left=$((BUDGET - ($(date +%s) - START)))
    limit=$((cap < left ? cap : left))
    if ((limit < 10)); then
        say "stage $name: skipped (budget of ${BUDGET}s spent)"
        STAGES+=("$name skipped - 0")
        return 1
    fi
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
    rc=$?
    if ((rc == 124 || rc == 137)); then status=timeout; elif ((rc != 0)); then status=failed; fi
    say "stage $name: $status (exit $rc) in $(($(date +%s) - t0))s, limit ${limit}s"
    ((rc == 0)) || tail -n 15 "$WORK/logs/$name.log" | sed 's/^/    /' | tee -a "$LOG"
    STAGES+=("$name $status $rc $(($(date +%s) - t0))")
    return "$rc"
}

missing_modules() {
    "$PYTHON" - <<'EOF'
import importlib.util


def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


names = ["nvidia.dali", "typer", "webdataset", "py7zr", "rich", "pytest", "tensorboard", "PIL"]
print(" ".join(n for n in names if not found(n)))
EOF
}

# The wheels of WHEELS and of its folders (parts joined) in WORK/wheels, checked against
# SHA256SUMS, then installed into WORK/site.
install_wheels() {
    local dir=$WORK/wheels sums f base
    sums=$(ls "$WHEELS"/SHA256SUMS "$WHEELS"/*/SHA256SUMS 2> /dev/null | head -n 1)
    [[ -n $sums ]] || die "not importable: $1; and no wheels in $WHEELS" \
        "(make them with tools/offline_wheels.sh where there is network)"
    rm -rf "$dir" && mkdir -p "$dir"
    for f in "$WHEELS"/*.whl "$WHEELS"/*/*.whl; do [[ -e $f ]] && ln -sf "$f" "$dir/"; done
    for f in "$WHEELS"/*.whl.part-aa "$WHEELS"/*/*.whl.part-aa; do
        [[ -e $f ]] || continue
        base=$(basename "${f%.part-aa}")
        find "$WHEELS" -maxdepth 2 -name "$base.part-*" -printf '%f\t%p\n' | sort | cut -f2 |
            while IFS= read -r part; do cat "$part"; done > "$dir/$base"
    done
    (cd "$dir" && sha256sum --quiet -c "$sums") >> "$LOG" 2>&1 \
        || die "the wheels in $WHEELS do not match their SHA256SUMS (see $LOG)"
    if "$PYTHON" -m pip --version > /dev/null 2>&1; then
        stage install 150 "$PYTHON" -m pip install --no-index --no-deps --upgrade \
            --target "$WORK/site" "$dir"/*.whl || die "installing the wheels failed" \
            "(logs.tar.gz: logs/install.log)"
    else  # no pip: a wheel is a zip of the files to install
        stage install 150 "$PYTHON" -c 'import sys, zipfile
for w in sys.argv[2:]: zipfile.ZipFile(w).extractall(sys.argv[1])' "$WORK/site" "$dir"/*.whl \
            || die "unpacking the wheels failed (logs.tar.gz: logs/install.log)"
    fi
}

versions() {
    "$PYTHON" - "$WORK/env.json" <<'EOF'
import json, platform, sys
import torch
env = {"python": platform.python_version(), "torch": torch.__version__,
       "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if env["cuda_available"]:
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, gpus=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
               memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
               cudnn=torch.backends.cudnn.version())
try:
    import nvidia.dali
    env["dali"] = nvidia.dali.__version__
except ImportError as err:
    env["dali"] = f"not importable ({err})"
json.dump(env, open(sys.argv[1], "w"), indent=1)
print("  ".join(f"{k}={v}" for k, v in env.items()))
EOF
}

say "depthkit GPU check, $(date -u +%FT%TZ), repo $REPO, budget ${BUDGET}s, output $OUT"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi > "$WORK/logs/nvidia-smi.log" 2>&1
    say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        2>&1 | head -n 4 | paste -sd ';')"
else
    say "gpu: nvidia-smi not found"
fi
missing=$(missing_modules)
if [[ -n $missing ]]; then
    say "not importable: $missing; installing the wheels of $WHEELS into $WORK/site"
    install_wheels "$missing"
    missing=$(missing_modules)
    [[ -z $missing ]] || die "still not importable after installing $WHEELS: $missing"
fi
line=$(versions 2>&1) || die "torch or DALI does not load with $PYTHON: $(tail -n 1 <<< "$line")"
say "versions: $(tail -n 1 <<< "$line")"
cuda=$("$PYTHON" -c 'import json, sys; e = json.load(open(sys.argv[1]))
print(e["torch"] if not e["cuda_available"] else "")' "$WORK/env.json") || die "no env.json"
[[ -z $cuda ]] || die "no CUDA device: torch $cuda sees none, and the GPU stages need one"

CLI=$WORK/cli
DK=("$PYTHON" -m depthkit)
stage pytest-gpu 120 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider \
    --junitxml "$WORK/pytest-gpu.xml"
if stage cli-synth 40 "${DK[@]}" synth -o "$CLI/school" --bgs 4 --fgs 10 --positions 2 --quiet &&
    stage cli-shard 40 "${DK[@]}" shard "$CLI/school" -o "$CLI/shards" --res 224 --quiet &&
    stage cli-train 90 "${DK[@]}" train -s "$CLI/shards" -o "$CLI/run" --res 224 --epochs 1 \
        --amp --device cuda --batch-size 16 --overwrite --quiet; then
    stage cli-eval 45 "${DK[@]}" eval -c "$CLI/run/last.pt" -s "$CLI/shards" --device cuda \
        --json "$WORK/eval.json" --grid "$WORK/eval-grid.png" --quiet
    stage cli-predict 30 "${DK[@]}" predict -c "$CLI/run/last.pt" --device cuda \
        --bg "$CLI/school/bg_final/001.jpg" --fgbg "$CLI/school/fg_bg/001/001/001.jpg" \
        -o "$CLI/predict" --quiet
fi
# GPU columns on 4,000 samples (epochs long enough to leave start-up and resets behind), the
# CPU columns on the documented default set (800 samples) in a folder of their own.
stage loader-gpu 100 "$PYTHON" benchmarks/loader.py --devices cuda --bgs 10 --positions 20 \
    --batch 128 --data "$WORK/data-gpu" --json "$WORK/loader-gpu.json"
stage train-bench 130 "$PYTHON" benchmarks/train.py --models default,unetexp --res 224 --amp \
    --shards "$WORK/data-gpu/shards" --steps 10 --warmup 3 --repeats 2 --json "$WORK/train.json"
stage loader-cpu 150 "$PYTHON" benchmarks/loader.py --devices cpu --data "$WORK/data-cpu" \
    --json "$WORK/loader-cpu.json"

for name in loader-gpu train-bench loader-cpu; do
    [[ -f $WORK/logs/$name.log ]] && grep -E '^(\||where|note|loader|samples)' \
        "$WORK/logs/$name.log" | tee -a "$LOG"
done
failed=$(printf '%s\n' "${STAGES[@]}" | awk '$2 != "ok" {print $1}' | paste -sd ' ')
say "check took $(($(date +%s) - START))s; figures in $OUT/check.json"
[[ -z $failed ]] || { say "not ok: $failed (their output: $OUT/logs.tar.gz)"; exit 1; }
say "all stages ok"
