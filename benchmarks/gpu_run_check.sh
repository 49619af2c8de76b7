#!/usr/bin/env bash
# On a lent GPU machine: what docs/PERFORMANCE.md still lists as not measured on a GPU, in one call of the
# device tool: the test suite with CUDA present, whole `vidstyle run`s of the sample clip (CUDA fp16, and
# NVENC) checked frame for frame against the input, and `vidstyle bench` at 1080p (file and live).
# That machine has torch, typer, rich, safetensors and OpenCV, not PyAV or platformdirs: their wheels travel
# in WHEELS (default .whl, ignored by git; about 36 MB, so leave .gpu behind). Here, once:
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 platformdirs
# There (the device tool's run, carry [".whl"]), about 4 minutes:
#   OUT=$OUT bash benchmarks/gpu_run_check.sh
# Everything goes to $OUT: summary.txt (the figures), pytest.txt, details.tgz (each run's and bench's output).
# Tried here: DEVICE=cpu PY=.venv/bin/python WHEELS= WORKERS=0 TESTS=tests/test_bad_input.py FRAMES=30 (no install;
# the NVENC runs then report their one-line error).
set -uo pipefail
OUT=${OUT:?set OUT to the folder for the results}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS-.whl}
FRAMES=${FRAMES:-240}
mkdir -p "$OUT"
if [ -n "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/vidstyle-site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/vidstyle-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  echo "== machine"
  "$PY" -c 'import torch, av; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "| PyAV", av.__version__)'
} >"$OUT/summary.txt" 2>&1
# 1. the tests, with a GPU present (../shared/data does not travel: the tests that need it skip, with reasons)
workers=(); [ "${WORKERS:-8}" = 0 ] || workers=(-n "${WORKERS:-8}")  # pytest-xdist, which that machine has
# shellcheck disable=SC2086
timeout 300 "$PY" -m pytest -q -p no:cacheprovider "${workers[@]}" ${TESTS:-tests} >"$OUT/pytest.txt" 2>&1
echo "== pytest (rc $?): $(tail -n 1 "$OUT/pytest.txt")" >>"$OUT/summary.txt"
# 2. whole runs of the sample clip: the output has the input's frames, timestamps and audio
check_run() {  # NAME, then vidstyle run options
  local name=$1; shift
  local t0=$SECONDS
  "$PY" -m vidstyle run samples/sample.mp4 -o "$OUT/run_$name.mp4" --overwrite --device "$DEVICE" "$@" >"$OUT/run_$name.log" 2>&1
  local rc=$?
  "$PY" benchmarks/gpu_run_check.py samples/sample.mp4 "$OUT/run_$name.mp4" "$rc" $((SECONDS - t0)) \
    >"$OUT/run_$name.json" 2>>"$OUT/run_$name.log"
  echo "== run $name (rc $rc): $(cat "$OUT/run_$name.json") $(tail -n 1 "$OUT/run_$name.log")" >>"$OUT/summary.txt"
  rm -f "$OUT/run_$name.mp4"  # the files back are few: keep the figures
}
check_run default
check_run nvenc --codec h264_nvenc
# 3. throughput at 1080p: a file at the default brush and at full size, NVENC, live at 720p
for b in "default" "full --max-side 1920" "nvenc --codec h264_nvenc" "live --live --size 1280x720"; do
  set -- $b; name=$1; shift
  size=1920x1080; case "$*" in *--size*) size=;; esac
  timeout 120 "$PY" -m vidstyle bench ${size:+--size $size} --frames "$FRAMES" --device "$DEVICE" --json "$@" \
    >"$OUT/bench_$name.json" 2>"$OUT/bench_$name.err"
  echo "== bench $name (rc $?): $(tr -d '\n' <"$OUT/bench_$name.json" | cut -c1-400) $(tail -n 1 "$OUT/bench_$name.err")" >>"$OUT/summary.txt"
done
# a device call brings back at most 8 files: the summary, the tests' output, the rest in one archive
(cd "$OUT" && tar -czf details.tgz run_* bench_* && rm -f run_* bench_*)
cat "$OUT/summary.txt"
