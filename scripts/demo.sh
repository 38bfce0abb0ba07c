#!/usr/bin/env bash
# The demo: set up libtorch (once), write a small synthetic APTOS2019 dataset in the real
# on-disk layout, then fine-tune a linear head on a frozen DINOv2-S/14 for 3 epochs on the CPU
# (about a minute on 2 cores), with progress, validation twice per epoch, kNN evaluation,
# checkpoints, the test of the best model and every output under demo/run/.
#
# The trunk starts from the official weights when weights/dinov2_vits14_pretrain.pth (or
# $MEDFM_WEIGHTS/...) is present, from random weights otherwise. Extra arguments go to medfm
# (e.g. --set training_params.epochs=2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
bash scripts/setup.sh
cargo build --release --quiet

out=demo
if [ ! -f "$out/data/APTOS2019/train_1.csv" ]; then
  ./target/release/medfm synth --dataset APTOS2019 --out "$out/data" --n 240
fi

weights="${MEDFM_WEIGHTS:-weights}"
extra=()
if compgen -G "$weights/dinov2_vits14*" >/dev/null; then
  echo "[demo] using the official DINOv2-S/14 weights from $weights/"
else
  echo "[demo] no DINOv2-S/14 weights in $weights/ (dinov2_vits14_pretrain.pth from"
  echo "[demo] https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth);"
  echo "[demo] the trunk starts from random weights, so expect modest metrics"
  extra=(--set foundation_params.pretrained=false)
fi

# --overwrite: each demo replaces the previous demo's run (medfm refuses to start over an
# earlier run otherwise).
cargo run --release --quiet -- --params_path configs/demo.json \
  --data_location "$out/data" --save_dir "$out/run" --overwrite "${extra[@]}" "$@"

name=demo_dinov2_vits14_APTOS2019
echo
echo "[demo] outputs:"
for f in "results/$name/metrics_results.json" "results/$name/history.csv" \
         "results/$name/predictions.csv" "results/$name/curves.png" \
         "results/$name/confusion_matrix.png" "results/$name/roc.png" \
         "results/$name/statistics.json" "results/$name/reliability.png" \
         "results/$name-knn/metrics_results.json" "checkpoints/$name.best.safetensors" \
         "checkpoints/$name.last.safetensors" "configs/$name/params.json" "tensorboard/$name"; do
  [ -e "$out/run/$f" ] && echo "  $out/run/$f"
done
echo "[demo] evaluate the saved model again (into results/$name/eval-*/): ./target/release/medfm --params_path configs/demo.json --save_dir $out/run --data_location $out/data ${extra[*]} --test"
