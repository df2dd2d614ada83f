#!/usr/bin/env bash
# Prepares, on a machine without a GPU, everything one call of the device tool needs for
# bench/gpu_session.sh, in the git-ignored folder .gpu/ (carry it with .gl/, Debian's Vulkan
# loader packages: /work/.library/device/README.md):
# - lcnn built with `--features wgpu` (WGSL shaders) as .gpu/lcnn.xz, and with
#   `--features vulkan` (Vulkan's SPIR-V compiler: the only build whose f16/bf16 convolutions
#   can take Burn's implicit GEMM on tensor cores) as .gpu/lcnn-vulkan.xz, stripped and xz'd;
# - the CIFAR-10 JPEG archive (19 MB).
# It prints the folder's size.
#
#   bench/gpu_pack.sh [SHARED]     # SHARED: the data folder (default ../shared)
#   VARIANTS=wgpu bench/gpu_pack.sh   # one build only (the session then skips the other)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}
VARIANTS=${VARIANTS:-"wgpu vulkan"}
rm -rf .gpu
mkdir -p .gpu
for variant in $VARIANTS; do
    cargo build --release -p lcnn-cli --features "$variant"
    name=lcnn
    [ "$variant" = wgpu ] || name=lcnn-$variant
    strip -o ".gpu/$name" target/release/lcnn
    xz -T0 -6 ".gpu/$name"
done
cp "$SHARED"/data/cifar10-jpg/cifar10-jpg.tar.gz .gpu/
git rev-parse --short HEAD >.gpu/commit
du -sh .gpu
