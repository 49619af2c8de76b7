"""docs/SCALING.md figures on one machine: a batch of clips in one process and on a local Ray instance,
and one video in one piece and in segments.

    python benchmarks/scaling.py [--clips DIR] [--workers 2] [--segments 2] [--seams-only]

The batch: every clip of --clips (default ../shared/data/video/clips), painted with the default style
into a fresh folder, (1) in this process, (2) as Ray tasks on a Ray started here with --workers one-CPU
workers. The segments run: the longest clip in one piece, then in --segments parts (local processes).
Then the seams: the longest clip with --temporal in one piece and in 3 parts: overlap 30 with the cuts at
calm moments (the default with --temporal) and at the keyframes nearest the even split, and overlap 0; the
warping error across each seam against the median inside the parts (`vidstyle.evaluate.seam_errors`),
and of the same pairs in the one-piece painting.
Wall-clock seconds; the same painting settings everywhere.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.batch import StylizeJob, find_inputs, run_batch  # noqa: E402
from vidstyle.evaluate import seam_errors  # noqa: E402
from vidstyle.segments import stylize_segments  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "clips"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--segments", type=int, default=2)
    ap.add_argument("--style", default=None)
    ap.add_argument("--seams-only", action="store_true", help="skip the timings; measure the seams only")
    a = ap.parse_args()
    job = StylizeJob(a.style, device="cpu")
    clips = [s.input for s in find_inputs([a.clips])]
    out = {"clips": len(clips), "style": job.label}
    longest = max(clips, key=lambda p: Path(p).stat().st_size)
    out["segments_clip"] = Path(longest).name
    with tempfile.TemporaryDirectory() as tmp:
        if not a.seams_only:
            timings(out, clips, longest, job, tmp, a)
        # seams with the temporal stabiliser: the same pairs in one piece, then 3 parts with and without the
        # warm-up overlap
        job_t = StylizeJob(a.style, device="cpu", temporal=True)
        one = Path(tmp) / "one_t.mp4"
        job_t(longest, str(one))
        for overlap, calm in ((30, True), (30, False), (0, True)):
            name = f"3_overlap_{overlap}" + ("" if calm else "_even_cuts")
            dst = Path(tmp) / f"seg_{name}.mp4"
            r = stylize_segments(longest, dst, job_t, segments=3, overlap=overlap, executor="local", calm_cuts=calm)
            if overlap == 30:  # the same pairs in the one-piece painting
                out["seams_one_piece" + ("" if calm else "_even_cuts")] = seams(longest, one, r.cuts)
            out[f"seams_{name}"] = seams(longest, dst, r.cuts)
    print(json.dumps(out))


def seams(src: str, painted: Path, cuts: list[int]) -> dict:
    """The seams' errors; the median of the pairs near them, and of all the pairs inside the parts."""
    e = seam_errors(src, painted, cuts, whole=True)
    return {"cuts": cuts, "seam_errors": [round(x["error"], 5) for x in e["seams"]],
            "inside_median": round(e["inside_median"], 5), "worst_ratio": round(e["worst_ratio"], 2),
            "parts_median": round(e["parts_median"], 5), "worst_ratio_parts": round(e["worst_ratio_parts"], 2)}


def timings(out: dict, clips: list, longest: str, job: StylizeJob, tmp: str, a) -> None:
    """The batch of clips in one process and on a local Ray instance; the longest clip in one piece and in
    ``a.segments`` parts."""
    t0 = time.perf_counter()
    r = run_batch(clips, Path(tmp) / "local", job, executor="local")
    out["batch_local_s"] = round(time.perf_counter() - t0, 1)
    out["frames"] = r.frames
    t0 = time.perf_counter()
    r = run_batch(clips, Path(tmp) / "ray", job, executor="ray", cpus_per_task=1,
                  ray_init={"num_cpus": a.workers, "include_dashboard": False})
    out[f"batch_ray_{a.workers}_workers_s"] = round(time.perf_counter() - t0, 1)
    assert r.ok and r.frames == out["frames"], r.to_dict()
    t0 = time.perf_counter()
    job(longest, str(Path(tmp) / "one.mp4"))
    out["one_piece_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    stylize_segments(longest, Path(tmp) / "seg.mp4", job, segments=a.segments, executor="local")
    out[f"segments_{a.segments}_s"] = round(time.perf_counter() - t0, 1)


if __name__ == "__main__":
    main()
