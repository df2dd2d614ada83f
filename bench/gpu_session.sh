#!/usr/bin/env bash
# Every GPU measurement of the GPU issue in one call of the device tool (under 10 minutes;
# device minutes are scarce): run from the repository root on the GPU machine, with .gpu/
# (bench/gpu_pack.sh) and .gl/ carried:
#
#   bash bench/gpu_session.sh "$OUT"
#
# 1. bench/gpu_side_by_side.sh: lcnn's train step against PyTorch CUDA (strict fp32, bf16) for
#    LCNN and All-CNN-C, first in fresh kernel caches, then warm: the WGSL build in f32 and f16
#    mixed precision, each with Burn's convolution kernels and with `--conv gemm` (forward as
#    im2col and one tiled matmul, backward Burn's gradient kernels), and the `vulkan` build
#    (when packed) in f16 and bf16 mixed precision, the only build whose half-precision
#    convolutions can take Burn's implicit GEMM on tensor cores.
# 2. bench/gpu_allconv_cifar.sh: All-CNN-C trained on CIFAR-10 against the clock with the
#    build and precision that step 1 found fastest for All-CNN-C, starting from the kernel
#    cache step 1 tuned for it (ALLCONV_CACHE=fresh: an empty cache, a fresh machine's first
#    epoch), for as many epochs as its measured speed fits in ALLCONV_LIMIT seconds (EPOCHS
#    overrides).
# Every budget is an environment variable; the defaults add up to about 9.5 minutes.
set -u
OUT=${1:?OUT}
START=$(date +%s)
log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$OUT/session.txt"; }
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
W=/tmp/lcnn-gpu
mkdir -p $W/data
bins="wgpu=$W/lcnn@f32,mixed-f16,gemm-f32,gemm-mixed-f16"
for packed in .gpu/lcnn*.xz; do
    name=$(basename "$packed" .xz)
    xz -dc "$packed" >"$W/$name" && chmod +x "$W/$name"
done
[ -x $W/lcnn-vulkan ] && bins="$bins vulkan=$W/lcnn-vulkan@mixed-f16,mixed-bf16"
tar -xzf .gpu/cifar10-jpg.tar.gz -C $W/data
CIFAR=$(dirname "$(find $W/data -maxdepth 3 -type d -name train | head -1)")
log "lcnn $(cat .gpu/commit), CIFAR-10 at $CIFAR, binaries: $bins"

log "1. side by side"
LCNN_BINS=${LCNN_BINS:-$bins} PRECISIONS=${PRECISIONS:-"fp32 bf16"} \
    COLD_S=${COLD_S:-170} WARM_S=${WARM_S:-45} STEPS=${STEPS:-20} \
    timeout -k 5 ${SIDE_LIMIT:-370} bash bench/gpu_side_by_side.sh $W/side >$W/side.log 2>&1
cp $W/side/table.md "$OUT/side_by_side.md" 2>/dev/null
tail -c 20000 $W/side/log.txt >"$OUT/side_log.txt" 2>/dev/null
cp $W/side/lcnn-*.txt $W/side/torch-*.txt "$OUT/" 2>/dev/null
log "$(cat "$OUT/side_by_side.md" 2>/dev/null)"

# The fastest All-CNN-C training configuration of step 1 (warm images/s; the all-f16 --dtype
# runs are speed bounds, not training modes), its cold wall time and its speed.
best=$(for f in $W/side/lcnn-warm-*-allconv.txt; do
    [ -f "$f" ] || continue
    ips=$(sed -n 's/^images\/s: //p' "$f" | head -1)
    [ -n "$ips" ] || continue
    tag=$(basename "$f" -allconv.txt)
    tag=${tag#lcnn-warm-}
    cold=$(sed -n 's/^wall_s: //p' "$W/side/lcnn-cold-$tag-allconv.txt" | head -1)
    echo "$ips $tag ${cold:-60}"
done | sort -gr | head -1)
ips=${best%% *}
tag=$(echo "$best" | cut -d' ' -f2)
cold=$(echo "$best" | cut -d' ' -f3)
name=${tag%%-*}
dtype=${tag#*-}
conv=burn spec=$dtype
case "$spec" in gemm-*) conv=gemm spec=${spec#gemm-} ;; esac
case "$spec" in
mixed-*) precision=${spec#mixed-} ;;
*) precision=f32 ;;
esac
bin=$W/lcnn-$name
[ "$name" = wgpu ] && bin=$W/lcnn
if [ -z "$best" ]; then # no warm All-CNN-C figure: the WGSL build in f16, last measured speed
    ips=2300 precision=f16 cold=60 bin=$W/lcnn conv=burn
fi
LIMIT=${ALLCONV_LIMIT:-175}
# The run starts from the kernel cache that step 1 tuned for this build, precision and model
# (ALLCONV_CACHE=fresh: an empty one, a fresh machine's first epoch, which step 1's cold
# column bounds from below), so its epochs go to training: 40,000 images an epoch
# (validation split 0.2) at the step's speed, plus a tenth for validation and the loader, and
# what the training graph compiles beyond the bench's (a fresh cache: all of the cold time).
cache=/tmp/lcnn-gpu-caches/$name-$dtype-allconv
overhead=30
if [ "${ALLCONV_CACHE:-warm}" = fresh ] || [ -z "$best" ] || [ ! -d "$cache" ]; then
    cache= overhead=$(awk -v c="$cold" 'BEGIN { print int(c) + 20 }')
fi
epochs=$(awk -v ips="$ips" -v o="$overhead" -v limit="$LIMIT" 'BEGIN {
    e = (limit - o) / (40000 / ips * 1.1); e = int(e); if (e < 2) e = 2; if (e > 60) e = 60; print e }')
EPOCHS=${EPOCHS:-$epochs}
log "2. All-CNN-C on CIFAR-10 against the clock: $(basename "$bin") --precision $precision --conv $conv ($ips images/s in step 1, cold ${cold} s), $EPOCHS epochs, limit $LIMIT s, kernel cache: ${cache:-fresh}"
LCNN=$bin DATA="$CIFAR" EPOCHS=$EPOCHS LIMIT=$LIMIT PRECISION=$precision CONV=$conv CACHE_FROM=$cache \
    bash bench/gpu_allconv_cifar.sh $W/allconv >/dev/null 2>&1
cp $W/allconv/summary.txt "$OUT/allconv_summary.txt" 2>/dev/null
cp $W/allconv/history.csv "$OUT/allconv_history.csv" 2>/dev/null
tail -c 8000 $W/allconv/train.log >"$OUT/allconv_train_tail.txt" 2>/dev/null
log "$(cat $W/allconv/command.txt "$OUT/allconv_summary.txt" 2>/dev/null)"
log "done"
