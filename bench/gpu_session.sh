#!/usr/bin/env bash
# Every GPU measurement of the GPU issue in one call of the device tool (under 10 minutes;
# device minutes are scarce): run from the repository root on the GPU machine, with .gpu/
# (bench/gpu_pack.sh) and .gl/ carried:
#
#   bash bench/gpu_session.sh "$OUT"
#
# 1. bench/gpu_side_by_side.sh: lcnn's train step (f32 and f16 mixed precision; a fresh kernel
#    cache, then warm) against PyTorch CUDA (strict fp32, bf16) for LCNN and All-CNN-C.
# 2. bench/gpu_allconv_cifar.sh: All-CNN-C trained on CIFAR-10 against the clock, in a fresh
#    kernel cache (its first epoch is a fresh machine's), EPOCHS epochs within ALLCONV_LIMIT s.
# Every budget is an environment variable; the defaults add up to about 9 minutes.
set -u
OUT=${1:?OUT}
ROOT=$(pwd)
START=$(date +%s)
log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$OUT/session.txt"; }
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
W=/tmp/lcnn-gpu
mkdir -p $W/data/mnist
xz -dc .gpu/lcnn.xz >$W/lcnn && chmod +x $W/lcnn
cp .gpu/mnist/*.gz $W/data/mnist/
tar -xzf .gpu/cifar10-jpg.tar.gz -C $W/data
CIFAR=$(dirname "$(find $W/data -maxdepth 3 -type d -name train | head -1)")
log "lcnn $(cat .gpu/commit), CIFAR-10 at $CIFAR"

log "1. side by side"
LCNN_BINS="wgpu=$W/lcnn" DTYPES=${DTYPES:-"f32 mixed-f16"} PRECISIONS=${PRECISIONS:-"fp32 bf16"} \
    COLD_S=${COLD_S:-150} WARM_S=${WARM_S:-50} STEPS=${STEPS:-20} \
    timeout -k 5 ${SIDE_LIMIT:-330} bash bench/gpu_side_by_side.sh $W/side >$W/side.log 2>&1
cp $W/side/table.md "$OUT/side_by_side.md" 2>/dev/null
tail -c 20000 $W/side/log.txt >"$OUT/side_log.txt" 2>/dev/null
log "$(cat "$OUT/side_by_side.md" 2>/dev/null)"

log "2. All-CNN-C on CIFAR-10 against the clock"
LCNN=$W/lcnn DATA="$CIFAR" EPOCHS=${EPOCHS:-8} LIMIT=${ALLCONV_LIMIT:-200} \
    bash bench/gpu_allconv_cifar.sh $W/allconv >/dev/null 2>&1
cp $W/allconv/summary.txt "$OUT/allconv_summary.txt" 2>/dev/null
cp $W/allconv/history.csv "$OUT/allconv_history.csv" 2>/dev/null
tail -c 8000 $W/allconv/train.log >"$OUT/allconv_train_tail.txt" 2>/dev/null
log "$(cat $W/allconv/command.txt "$OUT/allconv_summary.txt" 2>/dev/null)"
log "done"
