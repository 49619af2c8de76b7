"""Issue 33's A/B (2026-12-08): your own style with the refine phase's anchor to the picture network's paintings
at weight W (0: the perceptual losses alone), everything else as `vidstyle train PICTURE`. Run with nothing else on
the CPU; measure with benchmarks/own_style_report.py.

    python benchmarks/own_style_ab.py vangogh_olive_trees 4     # ~/vidstyle-runs/own33/<name>-anchor4
"""
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.train.own_style import OwnStyleOptions, OwnStyleRun  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
logging.getLogger("vidstyle").setLevel(logging.INFO)
name, w = sys.argv[1], float(sys.argv[2])
run = Path.home() / "vidstyle-runs/own33" / f"{name}-anchor{w:g}"
t0 = time.time()
opts = OwnStyleOptions(picture=f"/work/shared/data/style/{name}.jpg", data=(str(Path.home() / "vidstyle-runs/own/train_photos"),),
                       output=str(Path.home() / f"vidstyle-runs/own33/models-anchor/{name}.safetensors"), run_dir=str(run),
                       overwrite=True, anchor=w)
print(OwnStyleRun(opts).run(), "wall", round(time.time() - t0), flush=True)
