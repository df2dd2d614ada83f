#!/usr/bin/env bash
# How long a fresh GPU machine waits before training starts (issue: a fresh machine's first
# epoch under 20 s): the README's main MNIST command on `--device wgpu`, two epochs, under each
# CubeCL autotune level, first with an empty kernel/tuning cache (a fresh machine), then again
# with the cache that run left (a second run on the same machine). Also the All-CNN-C train-step
# bench, cold, per level. Prints one table; raw outputs under OUT.
#
#   LCNN=path/to/lcnn DATA=path/with/mnist bench/gpu_first_epoch.sh OUT
#
# Each run starts in its cache folder: CubeCL keeps its cache in `target/environment` of the
# outermost Cargo workspace above the working directory, and in $XDG_CACHE_HOME/cubecl (or
# ~/.cache/cubecl) outside any workspace, so a run from the repository would share one cache.
set -u
OUT=$(realpath -m "${1:-/tmp/gpu-first-epoch}")
LCNN=$(realpath "${LCNN:-target/release/lcnn}")
DATA=$(realpath "${DATA:-../shared/data}")
LEVELS=${LEVELS:-"minimal balanced"}
EPOCHS=${EPOCHS:-2}
LIMIT=${LIMIT:-150}
mkdir -p "$OUT"
echo "| run | autotune | cache | epoch 1 s | epoch 2 s | wall s | val_accuracy |" >"$OUT/table.md"
echo "| --- | --- | --- | --- | --- | --- | --- |" >>"$OUT/table.md"
col() { # csv column by name, row N (1-based data row)
    awk -F, -v name="$2" -v row="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
        NR == row + 1 { print $c }' "$1" 2>/dev/null
}
for level in $LEVELS; do
    cache="$OUT/cache-$level"
    mkdir -p "$cache"
    for pass in cold warm; do
        run="$OUT/mnist-$level-$pass"
        start=$(date +%s.%N)
        (cd "$cache" && XDG_CACHE_HOME="$cache" CUBECL_AUTOTUNE_LEVEL=$level timeout -k 5 "$LIMIT" "$LCNN" train \
            --device wgpu --data-dir "$DATA" --offline --quiet --epochs "$EPOCHS" --decay 3e-3 \
            --width-shift-range 0.1 --height-shift-range 0.1 --out "$run") >"$run.log" 2>&1
        rc=$?
        wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
        h="$run/history.csv"
        printf '| mnist lcnn b256 (rc %s) | %s | %s | %s | %s | %.1f | %s |\n' "$rc" "$level" "$pass" \
            "$(col "$h" seconds 1)" "$(col "$h" seconds 2)" "$wall" "$(col "$h" val_accuracy "$EPOCHS")" \
            >>"$OUT/table.md"
        cp "$h" "$OUT/history-$level-$pass.csv" 2>/dev/null
    done
    # All-CNN-C: 1 warm-up + 20 timed steps, cold cache of its own (wall = compile + tune + run).
    bcache="$OUT/bcache-$level"
    mkdir -p "$bcache"
    start=$(date +%s.%N)
    (cd "$bcache" && XDG_CACHE_HOME="$bcache" CUBECL_AUTOTUNE_LEVEL=$level timeout -k 5 "$LIMIT" \
        "$LCNN" bench train-step --device wgpu --model allconv --input 32x32x3 --batch 128 \
        --steps 20 --warmup 1) >"$OUT/allconv-$level.txt" 2>&1
    rc=$?
    wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
    ips=$(grep -m1 '^images/s' "$OUT/allconv-$level.txt" | sed 's/^images\/s: //')
    printf '| allconv bench b128 (rc %s, %s images/s) | %s | cold | | | %.1f | |\n' "$rc" "$ips" \
        "$level" "$wall" >>"$OUT/table.md"
done
cat "$OUT/table.md"
