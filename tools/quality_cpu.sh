#!/usr/bin/env bash
# The CPU quality run up to 224 px (docs/quality.md, "Quality recipe up to 224 px"): synth ->
# shard -> progressive training 64 -> 128 -> 224 px -> eval at each resolution. About 19
# minutes on 2 quiet cores (training 991 s and the evals 57 s measured quiet, synth and shard
# about 80 s).
# Usage: bash tools/quality_cpu.sh OUT [SPLIT]   SPLIT: by-bg (default: 10 % of the rooms held
# out, never seen in training) or random (10 % of the samples: their rooms are seen with
# other objects, as in the published figures). Run inside the project's .venv or after
# `make demo` created it. Real-photo check afterwards: tools/realcheck.py, depth by region:
# tools/depthcheck.py, see docs/quality.md.
set -euo pipefail
OUT=${1:?usage: bash tools/quality_cpu.sh OUT [by-bg|random]}
SPLIT=${2:-by-bg}
BIN=${BIN:-.venv/bin}
"$BIN/depthkit" synth -o "$OUT/school" --bgs 360 --fgs 60 --fgs-per-bg 5 --positions 1 \
    --res 224 --seed 0
"$BIN/depthkit" shard "$OUT/school" --out "$OUT/shards" --res 64,128,224 --split "$SPLIT" \
    --val-fraction 0.1
"$BIN/depthkit" train --shards "$OUT/shards" --out "$OUT/run" --schedule 64:6,128:2,224:2 \
    --model diffunet --model-option "widths=(16,32,48,64,96)" --model-option context=True \
    --model-option stem=16 --model-option refine=1 --model-option head_refine=1 \
    --mask-loss bce_lovasz --depth-loss l1_ssi_grad --optimizer adamw --lr 4e-3 \
    --batch-size 16 --no-augment --channels-last --device cpu --image-every 0 --overwrite
for res in 64 128 224; do
    "$BIN/depthkit" eval --checkpoint "$OUT/run/last.pt" --shards "$OUT/shards" --res "$res" \
        --json "$OUT/eval$res.json" --grid "$OUT/grid$res.png" --device cpu
done
