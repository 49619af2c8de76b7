#!/usr/bin/env bash
# The bundled set's last leg (docs/MODELS.md, "What ships"): the seven-style network learns a teacher
# network's paintings of the training photos (vidstyle train --targets), with no loss network, on a CPU.
#   1. benchmarks/teacher_targets.py paints the training photos (the held-out 24 excluded) in each style:
#      Magenta's arbitrary-style network (pip install vidstyle[teacher]); udnie by the bundled file itself,
#      to keep its look. Resumes; PHOTOS=N photos (default 800).
#   2. vidstyle train --targets ... from INIT (default the bundled file), resuming RUN's checkpoint.
# Hours on 2 CPU cores: run it in the background (nohup), and again to resume. Arguments go to vidstyle train.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-$(cd .. && pwd)/shared/data}
T=${TEACHER:-$HOME/vidstyle-runs/teacher}
RUN=${RUN:-$HOME/vidstyle-runs/distill}
INIT=${INIT:-vidstyle/models/bundled/paintings.safetensors}
KEEP=${KEEP:-udnie=paintings:udnie}
STYLES=${STYLES:-$(.venv/bin/python -c 'import sys; sys.path.insert(0, "benchmarks"); from styles_report import bundled_styles; print(*bundled_styles())')}
mkdir -p "$T" "$RUN"
if [ ! -d "$T/links" ]; then  # the training photos: all but the held-out ones
  .venv/bin/python benchmarks/link_training_photos.py "$DATA/content" "$T/links"
fi
.venv/bin/python benchmarks/teacher_targets.py "$T/links" $(for s in $STYLES; do echo "$DATA/style/$s.jpg"; done) \
  --out "$T" --limit "${PHOTOS:-800}" --from-model $KEEP
start=(--init "$INIT")
if [ -f "$RUN/checkpoint.safetensors" ]; then start=(--resume "$RUN/checkpoint.safetensors"); fi
export OMP_WAIT_POLICY=PASSIVE  # yield the cores quickly when other work shares them
exec nice -n 5 .venv/bin/vidstyle train $(for s in $STYLES; do echo "$DATA/style/$s.jpg"; done) \
  --data "$T/photos" --targets "$T/targets" --target-weight 10 --temporal-loss none \
  --content-weight 0 --style-weight 0 --layout-weight 0 --colour-weight 0 --tv-weight 0 \
  --loss-net hed --size 256 --photo-size 256 --batch-size 4 --lr 1e-3 --ema 0.995 --seed 7 \
  --steps "${STEPS:-40000}" --checkpoint-every 50 --preview-every 100 \
  --run-dir "$RUN" -o "$RUN/paintings.safetensors" --overwrite "${start[@]}" "$@"
