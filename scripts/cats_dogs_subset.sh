#!/usr/bin/env bash
# Seed 003's "very little data" demo on data that is here: a cat-vs-dog folder from the CIFAR-10
# JPEGs. train/{cat,dog}: the first 1,400 files of each class (sorted by name), of which
# `--validation-split 0.28572` keeps 400 + 400 for validation (lcnn takes the first files of each
# class, as Keras' flow_from_directory subset does), leaving 1,000 + 1,000 to train on;
# test/{cat,dog}: the test split's 1,000 + 1,000.
#
#   scripts/cats_dogs_subset.sh [ARCHIVE] [OUT]
#   (default ../shared/data/cifar10-jpg/cifar10-jpg.tar.gz, /tmp/cats-dogs)
set -euo pipefail
archive=${1:-../shared/data/cifar10-jpg/cifar10-jpg.tar.gz}
out=${2:-/tmp/cats-dogs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar xzf "$archive" -C "$tmp" --wildcards '*/train/cat/*' '*/train/dog/*' '*/test/cat/*' '*/test/dog/*'
root=$(dirname "$(dirname "$(find "$tmp" -type d -path '*/train/cat' | head -1)")")
rm -rf "$out"
for class in cat dog; do
  mkdir -p "$out/train/$class" "$out/test/$class"
  find "$root/train/$class" -type f -name '*.jpg' | sort | sed -n '1,1400p' | xargs -I{} cp {} "$out/train/$class/"
  cp "$root/test/$class"/*.jpg "$out/test/$class/"
done
for d in "$out"/*/*; do echo "$d: $(ls "$d" | wc -l) images"; done
