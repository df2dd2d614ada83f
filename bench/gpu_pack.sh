#!/usr/bin/env bash
# Prepares, on a machine without a GPU, everything one call of the device tool needs for
# bench/gpu_session.sh: the lcnn binary built with `--features wgpu`, stripped and xz'd, the
# MNIST files and the CIFAR-10 JPEG archive, in the git-ignored folder .gpu/ (carry it with
# .gl/, Debian's Vulkan loader packages: /work/.library/device/README.md). The data is 31 MB;
# the script prints the folder's size.
#
#   bench/gpu_pack.sh [SHARED]     # SHARED: the data folder (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}
cargo build --release -p lcnn-cli --features wgpu
rm -rf .gpu
mkdir -p .gpu/mnist
strip -o .gpu/lcnn target/release/lcnn
xz -T0 -6 .gpu/lcnn
cp "$SHARED"/data/mnist/*.gz .gpu/mnist/
cp "$SHARED"/data/cifar10-jpg/cifar10-jpg.tar.gz .gpu/
git rev-parse --short HEAD >.gpu/commit
du -sh .gpu
