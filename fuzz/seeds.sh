#!/usr/bin/env bash
# Seed corpora for the fuzz targets, made from the project's own files: the committed CIFAR
# sample, the gallery pictures (also as JPEG, GIF, BMP and WebP when ImageMagick is here), the
# shipped manifest, the presets and the search example, and small checkpoints and a PyTorch
# state dict written by the trainer itself. Run from fuzz/ after a release build of the trainer
# (`cargo build --release -p trainer`); writes corpus/<target>/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
root=..
trainer="$root/target/release/trainer"
sample="$root/data/sample"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p corpus/{cifar_batch,image_decode,image_folder,checkpoint,manifest,train_config,search_spec,state_dict}

# Three records, one record, and a record with its last byte cut off.
head -c $((3073 * 3)) "$sample/test_batch.bin" > corpus/cifar_batch/three
head -c 3073 "$sample/test_batch.bin" > corpus/cifar_batch/one
head -c 3072 "$sample/test_batch.bin" > corpus/cifar_batch/truncated

for picture in "$root"/web-demo/gallery/0050[0-2]-*.png; do
  stem=$(basename "$picture" .png)
  cp "$picture" "corpus/image_decode/$stem.png"
  if convert -version 2>/dev/null | grep -q '^Version: ImageMagick'; then
    for ext in jpg gif bmp webp; do convert "$picture" "corpus/image_decode/$stem.$ext"; done
  fi
done

cp "$root/weights/manifest.json" corpus/manifest/
cp "$root"/trainer/presets/*.toml corpus/train_config/
cp "$root"/trainer/searches/*.toml corpus/search_spec/

# Small networks, one epoch on the sample: the checkpoint target's seeds (f32 and f16).
"$trainer" train --model configurable-cnn --filters 4 --fc none --epochs 1 --limit 256 \
  --val-ratio 0 --data-dir "$sample" --backend flex --runs-dir "$work" --name cnn4 >/dev/null 2>&1
cp "$work/cnn4/best.safetensors" corpus/checkpoint/cnn4-f32.safetensors
"$trainer" train --model mlp --hidden 2 --epochs 1 --limit 256 \
  --val-ratio 0 --data-dir "$sample" --backend flex --runs-dir "$work" --name mlp2 >/dev/null 2>&1
cp "$work/mlp2/best.safetensors" corpus/checkpoint/mlp2-f32.safetensors

# The state-dict target imports into tiny-cnn: the shipped tiny-cnn in PyTorch's names.
"$trainer" export -c "$root/weights/tiny-cnn.safetensors" --format pytorch \
  -o corpus/state_dict/tiny-cnn.safetensors >/dev/null 2>&1

# Image folders: a few files of the sample as PNG in train/ and test/ (the target's input is
# `arbitrary`'s encoding of a folder, so these seeds are only starting bytes).
head -c 4096 "$sample/test_batch.bin" > corpus/image_folder/bytes
echo "seed corpora in $(pwd)/corpus:"
for d in corpus/*/; do echo "  $(basename "$d"): $(ls "$d" | wc -l) files"; done
