#!/usr/bin/env bash
# The CPU quality run up to 224 px (docs/quality.md, "Quality recipe up to 224 px"): synth ->
# shard -> progressive training 64 -> 128 -> 224 px -> eval at each resolution. About 35-40
# minutes on 2 cores. Usage: bash tools/quality_cpu.sh OUT  (run inside the project's .venv or
# after `make demo` created it). Real-photo check afterwards: tools/realcheck.py, see
# docs/quality.md.
set -euo pipefail
OUT=${1:?usage: bash tools/quality_cpu.sh OUT}
BIN=${BIN:-.venv/bin}
"$BIN/depthkit" synth -o "$OUT/school" --bgs 40 --fgs 60 --positions 1 --res 224 --seed 0
"$BIN/depthkit" shard "$OUT/school" --out "$OUT/shards" --res 64,128,224 --split by-bg \
    --val-fraction 0.1
"$BIN/depthkit" train --shards "$OUT/shards" --out "$OUT/run" --schedule 64:8,128:2,224:1 \
    --model diffunet --model-option "widths=(16,32,48,64)" --model-option stem=16 \
    --model-option refine=1 --model-option head_refine=1 --mask-loss bce_lovasz \
    --optimizer adamw --lr 4e-3 --batch-size 16 --no-augment --channels-last \
    --device cpu --image-every 0 --overwrite
for res in 64 128 224; do
    "$BIN/depthkit" eval --checkpoint "$OUT/run/last.pt" --shards "$OUT/shards" --res "$res" \
        --json "$OUT/eval$res.json" --grid "$OUT/grid$res.png" --device cpu
done
