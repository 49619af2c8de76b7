#!/usr/bin/env bash
# Trains the bundled six-style network (docs/MODELS.md) on a CPU with bf16 maths, resuming where it stopped.
# The recipe is vidstyle train's default; only the data, the styles and the output are named here.
# Training never sees the 24 held-out photos that docs/MODELS.md measures colour on
# (benchmarks/styles_report.py HELD_OUT): it reads a folder of links to every other photo.
# Hours on 2 CPU cores: run it in the background (nohup) and run it again to resume. Arguments go to
# vidstyle train (e.g. --style-scale starry_night=2).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-$(cd .. && pwd)/shared/data}
RUN=${RUN:-$HOME/vidstyle-runs/six}
STEPS=${STEPS:-40000}
# the learning rate: 1e-3 (the default) for the first part, then 3e-4 with a new run warm-started from it
# (LR=3e-4 SEED=1 RUN=... INIT=<the first part's checkpoint>); docs/MODELS.md names the run in progress
LR=${LR:-1e-3}
SEED=${SEED:-0}
# the bundled file's styles, in its order (STYLES="a b": only those, e.g. with --init FILE --norm-only)
STYLES=${STYLES:-$(.venv/bin/python -c 'import sys; sys.path.insert(0, "benchmarks"); from styles_report import bundled_styles; print(*bundled_styles())')}
mkdir -p "$RUN"
if [ ! -d "$RUN/photos" ]; then  # links to the training photos: all but the held-out ones
  .venv/bin/python benchmarks/link_training_photos.py "$DATA/content" "$RUN/photos"
fi
# continue the run; when its checkpoint is lost, take the copy in $BACKUP (a folder that outlives ~ more
# often, e.g. BACKUP=/work/vidstyle-runs-backup/six), else start from the bundled model's weights
if [ ! -f "$RUN/checkpoint.safetensors" ] && [ -n "${BACKUP:-}" ] && [ -f "$BACKUP/checkpoint.safetensors" ]; then
  cp "$BACKUP/checkpoint.safetensors" "$RUN/checkpoint.safetensors"
fi
resume=()
if [ -f "$RUN/checkpoint.safetensors" ]; then resume=(--resume "$RUN/checkpoint.safetensors")
elif [ -n "${INIT:-}" ]; then resume=(--init "$INIT")
elif [ -f vidstyle/models/bundled/paintings.safetensors ]; then resume=(--init vidstyle/models/bundled/paintings.safetensors)
fi
export OMP_WAIT_POLICY=PASSIVE  # yield the cores quickly when other work shares them
exec nice -n 5 .venv/bin/vidstyle train $(for s in $STYLES; do echo "$DATA/style/$s.jpg"; done) \
  --data "$RUN/photos" --loss-net hed --steps "$STEPS" --lr "$LR" --seed "$SEED" --run-dir "$RUN" \
  --checkpoint-every 250 --preview-every 500 -o "$RUN/paintings.safetensors" --overwrite "${resume[@]}" "$@"
