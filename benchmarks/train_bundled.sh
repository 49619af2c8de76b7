#!/usr/bin/env bash
# Trains the bundled styles on the CPU (2 cores): lite network, 128 px, 600 steps, style weight 6e4,
# temporal loss (output variant) weight 5e3 (500 for the_scream).
# On a GPU drop --arch lite/--size/--steps/--batch-size for the full recipe (see docs/MODELS.md).
set -euo pipefail
DATA=${DATA:-../shared/data}
STYLES=${*:-starry_night great_wave_off_kanagawa udnie the_scream}
for s in $STYLES; do
  tw=5e3; [ "$s" = the_scream ] && tw=500  # at 5e3 the_scream collapsed to a flat orange (see docs/MODELS.md)
  resume=(); [ -f runs/$s/checkpoint.safetensors ] && resume=(--resume runs/$s/checkpoint.safetensors)
  /usr/bin/time -f "$s %e s" .venv/bin/vidstyle train "$DATA/style/$s.jpg" --data "$DATA/content" \
    --arch lite --size 128 --batch-size 2 --steps 600 --lr 2e-3 --seed 0 --style-weight 6e4 --temporal-weight $tw \
    --output samples/models/$s.safetensors --run-dir runs/$s --preview-every 100 --checkpoint-every 100 --json "${resume[@]}"
done
# control for docs/QUALITY.md: the same recipe without the temporal loss
[ -f runs/starry_night_no_temporal.safetensors ] && exit 0
.venv/bin/vidstyle train "$DATA/style/starry_night.jpg" --data "$DATA/content" --arch lite --size 128 \
  --batch-size 2 --steps 600 --lr 2e-3 --seed 0 --style-weight 6e4 --temporal-loss none \
  --output runs/starry_night_no_temporal.safetensors --run-dir runs/starry_night_no_temporal --json
