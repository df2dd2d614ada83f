#!/usr/bin/env bash
# lcnn against PyTorch CUDA on one GPU, training-step throughput, in one run: the script a GPU
# machine runs (issue: GPU at PyTorch's speed). Prints a markdown table and leaves every raw
# output under OUT.
#
#   LCNN_BINS="wgpu=path/to/lcnn vulkan=path/to/lcnn-vulkan" bench/gpu_side_by_side.sh OUT
#
# LCNN_BINS: name=binary pairs, lcnn built with `--features wgpu` (WGSL shaders) and/or
# `--features vulkan` (Vulkan's SPIR-V compiler); `name=binary@dtype,dtype` gives that binary
# its own dtypes instead of DTYPES. Each runs `lcnn bench train-step --device wgpu` in every
# entry of its dtypes: `f32`/`f16`/`bf16` are --dtype (every tensor in that type),
# `mixed-f16`/`mixed-bf16` are --precision (mixed precision over f32 weights, f16 with its
# loss scaling); a `gemm-` prefix (`gemm-f32`, `gemm-mixed-f16`) adds `--conv gemm` (the
# forward as im2col and one tiled matmul instead of Burn's forward kernel). PyTorch (PYTHON,
# default python3, with CUDA) runs bench/torch_bench.py --device cuda in strict fp32, TF32 and
# bf16 autocast.
#
# Phases:
# 1. lcnn cold: every binary / dtype / model at once (the machine's cores compile in parallel),
#    each in a fresh kernel cache of its own, 1 warm-up + 2 steps, limit COLD_S seconds. Wall
#    and CPU seconds tell compilation (CPU busy) from a hang (CPU idle). They are upper bounds:
#    the processes share the CPU while compiling.
# 2. lcnn warm: the same again, one at a time, STEPS timed steps, with the tuning results of
#    phase 1 in the cache (what a second run on the machine sees).
# 3. PyTorch, one process per case and precision.
set -u
OUT=${1:-/tmp/gpu-bench}
PY=${PYTHON:-python3}
STEPS=${STEPS:-30}
COLD_S=${COLD_S:-240}
WARM_S=${WARM_S:-90}
DTYPES=${DTYPES:-"f32 f16 mixed-f16 mixed-bf16"}
PRECISIONS=${PRECISIONS:-"fp32 tf32 bf16"} # PyTorch's
CASES=${CASES:-"lcnn:28x28x1:256 allconv:32x32x3:128"}
LCNN_BINS=${LCNN_BINS:-"wgpu=target/release/lcnn"}
DEVICE=${DEVICE:-wgpu}             # lcnn's --device (cpu: a dry run of this script)
TORCH_DEVICE=${TORCH_DEVICE:-cuda} # PyTorch's --device
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
START=$(date +%s)
log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$OUT/log.txt"; }
value() { grep -m1 "^$2: " "$1" 2>/dev/null | sed "s|^$2: ||"; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader | tee "$OUT/gpu.txt"

CACHES=${CACHES:-/tmp/lcnn-gpu-caches}
DEBUG_LOG_FOR=${DEBUG_LOG_FOR:-}  # binary names whose cold runs log CubeCL's compilation
run_lcnn() { # name bin dtype model input batch steps warmup limit tag
    local dir="$CACHES/$1-$3-$4"
    mkdir -p "$dir"
    local f="$OUT/lcnn-${10}-$1-$3-$4.txt"
    (
        cd "$dir" || exit 1
        export XDG_CACHE_HOME="$dir"
        case " $DEBUG_LOG_FOR " in
        *" $1 "*) [ "${10}" = cold ] && export CUBECL_DEBUG_LOG="$dir/cubecl.log" ;;
        esac
        local spec=$3 conv=burn
        case "$spec" in gemm-*) conv=gemm spec=${spec#gemm-} ;; esac
        local types=(--dtype "$spec")
        case "$spec" in mixed-*) types=(--dtype f32 --precision "${spec#mixed-}") ;; esac
        TIMEFORMAT="wall_s: %R"$'\n'"cpu_s: %U"
        time timeout -k 5 "$9" "$2" bench train-step --device "$DEVICE" "${types[@]}" --model "$4" \
            --input "$5" --batch "$6" --steps "$7" --warmup "$8" --conv "$conv"
        echo "rc: $?"
    ) >"$f" 2>&1
    [ -f "$dir/cubecl.log" ] && tail -c 30000 "$dir/cubecl.log" >"$OUT/cubecl-tail-$1-$3-$4.log"
}

# One LCNN_BINS entry, name=bin or name=bin@dtype,dtype: sets name, bin and dtypes.
split_bin() {
    name=${1%%=*}
    bin=${1#*=}
    dtypes=$DTYPES
    if [[ $bin == *@* ]]; then
        dtypes=${bin#*@}
        dtypes=${dtypes//,/ }
        bin=${bin%%@*}
    fi
}

# Calls "$@" NAME BIN DTYPE MODEL INPUT BATCH for every binary, dtype and case.
each_lcnn_case() {
    local pair name bin dtypes dtype case model input batch
    for pair in $LCNN_BINS; do
        split_bin "$pair"
        for dtype in $dtypes; do
            for case in $CASES; do
                IFS=: read -r model input batch <<<"$case"
                "$@" "$name" "$bin" "$dtype" "$model" "$input" "$batch"
            done
        done
    done
}
cold() { # name bin dtype model input batch: in the background
    run_lcnn "$1" "$2" "$3" "$4" "$5" "$6" 2 1 "$COLD_S" cold &
    sleep 0.2
}
warm() { # name bin dtype model input batch: one at a time
    if [ "$(value "$OUT/lcnn-cold-$1-$3-$4.txt" rc)" != 0 ]; then
        log "skip warm $1 $3 $4: its cold run did not finish"
        return
    fi
    run_lcnn "$1" "$2" "$3" "$4" "$5" "$6" "$STEPS" 3 "$WARM_S" warm
    log "warm $1 $3 $4: $(value "$OUT/lcnn-warm-$1-$3-$4.txt" images/s) images/s, wall $(value "$OUT/lcnn-warm-$1-$3-$4.txt" wall_s) s"
}

log "phase 1: lcnn cold, all at once (limit ${COLD_S}s)"
each_lcnn_case cold
# What the processes do near the limit: threads busy (compiling) or asleep (waiting).
(
    sleep $((COLD_S / 2)); nvidia-smi >"$OUT/nvidia-smi-mid-cold.txt" 2>&1
    sleep $((COLD_S / 2 - 10)); ps -eLo pid,tid,stat,pcpu,time,wchan:20,args 2>/dev/null |
        grep "[b]ench train-step" >"$OUT/threads-near-limit.txt"
) &
sampler=$!
wait_for_runs() { for p in "$@"; do wait "$p"; done; }
wait_for_runs $(jobs -p | grep -v "^$sampler$")
kill "$sampler" 2>/dev/null
for f in "$OUT"/lcnn-cold-*.txt; do
    log "$(basename "$f" .txt): wall $(value "$f" wall_s) s, cpu $(value "$f" cpu_s) s, rc $(value "$f" rc), $(value "$f" images/s) images/s"
done

log "phase 2: lcnn warm, one at a time (${STEPS} steps)"
each_lcnn_case warm

log "phase 3: PyTorch"
for case in $CASES; do
    IFS=: read -r model input batch <<<"$case"
    for prec in $PRECISIONS; do
        cl=off
        [ "$prec" = bf16 ] && cl=on
        f="$OUT/torch-$model-$prec.txt"
        timeout 180 "$PY" "$HERE/torch_bench.py" --device "$TORCH_DEVICE" --model "$model" --input "$input" \
            --batch "$batch" --steps "$STEPS" --precision "$prec" --channels-last "$cl" \
            >"$f" 2>"$f.err"
        rc=$?
        log "torch $model $prec: $(value "$f" images/s) images/s (rc $rc)"
    done
done


{
    echo
    echo "| model | batch | implementation | images/s | first run: wall s (cold cache) |"
    echo "| --- | --- | --- | --- | --- |"
    for case in $CASES; do
        IFS=: read -r model input batch <<<"$case"
        for prec in $PRECISIONS; do
            echo "| $model $input | $batch | PyTorch $prec | $(value "$OUT/torch-$model-$prec.txt" images/s) | |"
        done
        for pair in $LCNN_BINS; do
            split_bin "$pair"
            for dtype in $dtypes; do
                echo "| $model $input | $batch | lcnn $name $dtype | $(value "$OUT/lcnn-warm-$name-$dtype-$model.txt" images/s) | $(value "$OUT/lcnn-cold-$name-$dtype-$model.txt" wall_s) |"
            done
        done
    done
} | tee "$OUT/table.md"
log "done"
