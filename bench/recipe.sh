#!/usr/bin/env bash
# Runs one `lcnn train` command over several seeds, fresh run folders, and prints one row per
# seed plus mean / min / max of test accuracy: how the README's recipe figures are made.
#
#   LCNN=target/release/lcnn SEEDS="42 1 2 3 4" PARALLEL=1 bench/recipe.sh OUT -- train ARGS...
#
# PARALLEL runs that many seeds at once (a GPU shared by several runs; on the CPU, one thread
# each with RAYON_NUM_THREADS=1, which gives the weights of any other thread count).
# LAST_THREADS sets RAYON_NUM_THREADS for the last seed, which may run alone (five seeds, two
# at a time). Each row: seed, exit code, wall seconds, epochs run, test_accuracy / test_loss,
# the best val_accuracy and that of the weights the run ends with (the last epoch's, or with
# --restore-best-weights the restored epoch's, which `lcnn train` prints as restored_epoch):
# their gap is what the recipe loses against its best epoch.
set -u
OUT=$1
shift
[ "${1:-}" = "--" ] && shift
LCNN=${LCNN:-target/release/lcnn}
SEEDS=${SEEDS:-"42 1 2 3 4"}
PARALLEL=${PARALLEL:-1}
mkdir -p "$OUT"
one() {
    local seed=$1
    shift
    local run="$OUT/s$seed"
    rm -rf "$run"
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$LCNN" "$@" --seed "$seed" --out "$run" --quiet >"$run.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local h="$run/history.csv"
    awk -F, -v seed="$seed" -v rc="$rc" -v t0="$t0" -v t1="$t1" \
        -v acc="$(sed -n 's/^test_accuracy: //p' "$run.log")" \
        -v loss="$(sed -n 's/^test_loss: //p' "$run.log")" \
        -v restored="$(sed -n 's/^restored_epoch: //p' "$run.log")" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { v = $col["val_accuracy"]; if (v > best) best = v; n++
          if (restored == "" || n == restored) last = v }
        END { printf "| %s | %s | %.0f | %d | %s / %s | %.4f | %.4f |\n",
              seed, rc, t1 - t0, n, acc, loss, best, last }' "$h" >"$run.row" 2>/dev/null ||
        echo "| $seed | $rc | | | (no history) | | |" >"$run.row"
}
running=0
last=${SEEDS##* }
for seed in $SEEDS; do
    if [ "$seed" = "$last" ] && [ -n "${LAST_THREADS:-}" ]; then
        RAYON_NUM_THREADS=$LAST_THREADS one "$seed" "$@" &
    else
        one "$seed" "$@" &
    fi
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
{
    echo "command: lcnn $* (PARALLEL=$PARALLEL)"
    echo
    echo "| seed | rc | wall s | epochs | test_accuracy / test_loss | best val_accuracy | final val_accuracy |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for seed in $SEEDS; do cat "$OUT/s$seed.row"; done
    echo
    for seed in $SEEDS; do sed -n 's/^test_accuracy: //p' "$OUT/s$seed.log"; done | awk '
        NF { s += $1; n++; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
        END { if (n) printf "test_accuracy over %d seeds: mean %.4f, min %.4f, max %.4f\n", n, s / n, min, max }'
} | tee "$OUT/table.md"
