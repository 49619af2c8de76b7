"""One video painted in segments (cut at keyframes, painted in parallel, joined by stream copy) gives the
same file as one process: frame count, timestamps, audio packets, metadata, and pixels within tolerance."""
from __future__ import annotations

import io
import os
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import audio_hashes, frames_rgb, pattern, psnr, video_pts
from vidstyle.batch import StylizeJob
from vidstyle.errors import IncompleteInput
from vidstyle.evaluate import seam_errors
from vidstyle.segments import plan_segments, stylize_segments


def make_gop_clip(path: Path, n: int = 90, fps: int = 30, gop: int = 10, w: int = 64, h: int = 48,
                  rotation: int = 90, title: str = "long take", interlaced: bool = False, picture=pattern) -> Path:
    """An H.264 clip with a keyframe every ``gop`` frames, an AAC track, a title and a rotation; frame i is
    ``picture(i, w, h)``."""
    tb = Fraction(1, fps)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        out.metadata["title"] = title
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = tb
        v.codec_context.time_base = tb
        v.options = {"preset": "ultrafast", "crf": "10", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                     **({"x264-params": "interlaced=1:tff=1"} if interlaced else {})}
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
        a.metadata["language"] = "eng"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(picture(i, w, h), format="rgb24")
            f.pts, f.time_base = i, tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        fs = a.codec_context.frame_size or 1024
        for j in range(int(n / fps * 44100 / fs) + 1):
            s = (np.sin((np.arange(fs) + j * fs) * 0.02) * 0.3).astype(np.float32)
            af = av.AudioFrame.from_ndarray(s[None], format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, j * fs
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path


@pytest.fixture(scope="module")
def contrast_model(tmp_path_factory) -> Path:
    """A random lite network whose output follows its input (a plain random one paints flat grey)."""
    import torch
    from vidstyle.models import TransformerNet, arch_config, save_model

    torch.manual_seed(0)
    net = TransformerNet(arch_config("lite"))
    with torch.no_grad():
        net.decoder[-1].conv.weight.mul_(80)
    return save_model(tmp_path_factory.mktemp("seg-model") / "rnd.safetensors", net, ["rnd"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_gop_clip(tmp_path_factory.mktemp("seg-clip") / "long.mp4")


@pytest.fixture(scope="module")
def job(contrast_model) -> StylizeJob:
    # crf 0 (lossless): the comparison sees the painting, not two encoders' rounding
    return StylizeJob(str(contrast_model), device="cpu", crf=0, preset="ultrafast", temporal=True, flow="dis")


@pytest.fixture(scope="module")
def reference(clip, job, tmp_path_factory) -> Path:
    """The single-process run."""
    dst = tmp_path_factory.mktemp("seg-ref") / "ref.mp4"
    job(str(clip), str(dst))
    return dst


def _keyframe_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(c.streams.video[0]) if p.dts is not None and p.is_keyframe)


def _rotation(path: Path) -> int:
    with av.open(str(path)) as c:
        return int(round(next(c.decode(video=0)).rotation or 0))


def _mean_diffs(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    return [float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()) for x, y in zip(a, b)]


def test_plan_cuts_at_keyframes(clip):
    plan = plan_segments(clip, 3, overlap=30)
    assert plan.frames == 90 and plan.keyframes == list(range(0, 90, 10))
    assert plan.cuts == [30, 60] and set(plan.cuts) <= set(plan.keyframes)
    assert [(p.start, p.end, p.warm) for p in plan.parts] == [(0, 30, 0), (30, 60, 0), (60, 90, 30)]
    assert plan.parts[-1].end_pts is None and plan.parts[0].end_pts == plan.parts[1].start_pts
    # the nearest keyframe within half a part of the ideal cut; a plain frame when there is none
    seven = plan_segments(clip, 7, overlap=5)
    assert seven.cuts == [10, 30, 40, 50, 60, 80] and seven.parts[3].warm == 35
    assert plan_segments(clip, 18, overlap=0).cuts == list(range(5, 90, 5))


def paused(i: int, w: int, h: int):
    """The moving pattern, paused for frames 24..27 and 63..66 (a calm moment near each third)."""
    for first, last in ((24, 27), (63, 66)):
        if first <= i <= last:
            return pattern(first, w, h)
    return pattern(i, w, h)


def test_calm_cuts_land_where_the_picture_pauses(tmp_path):
    """With calm cuts (--temporal's default) each cut is the pair that changes least near the even split,
    measured on the input: one of the pauses' pairs (24, 25) .. (26, 27) and (63, 64) .. (65, 66). Without,
    the keyframes at the thirds."""
    src = make_gop_clip(tmp_path / "pause.mp4", picture=paused)
    assert plan_segments(src, 3, overlap=30).cuts == [30, 60]
    plan = plan_segments(src, 3, overlap=30, calm=True)
    a, b = plan.cuts
    assert a in (25, 26, 27) and b in (64, 65, 66), plan.cuts
    assert [(p.start, p.end, p.warm) for p in plan.parts] == [(0, a, 0), (a, b, 0), (b, 90, b - 30)]


def test_segments_same_as_one_process(tmp_path, clip, job, reference):
    done = []
    dst = tmp_path / "seg.mp4"
    r = stylize_segments(clip, dst, job, segments=3, overlap=30, workers=1, keep_parts=False,
                         progress=lambda n, total: done.append((n, total)))
    # with --temporal the cuts are calm moments near the even split (the clip moves evenly: near 30 and 60)
    assert r.output == str(dst) and r.frames == 90 and len(r.cuts) == 2
    a, b = r.cuts
    assert abs(a - 30) <= 7 and abs(b - 60) <= 7
    assert [p["warm"] for p in r.parts] == [0, min(30, a), 30] and [p["frames"] for p in r.parts] == [a, b - a, 90 - b]
    assert r.temporal_strength == 0.7  # as a one-piece run reports it (it was None)
    assert done[-1] == (90, 90)
    # frames, timestamps, audio packets, metadata, rotation: identical to the single-process run
    assert video_pts(dst) == video_pts(reference) == video_pts(clip)
    assert audio_hashes(dst) == audio_hashes(reference) == audio_hashes(clip)
    with av.open(str(dst)) as c:
        assert c.metadata.get("title") == "long take"
        assert c.streams.audio[0].metadata.get("language") == "eng"
    assert _rotation(dst) == _rotation(reference) != 0
    # every part started with a keyframe: there is one at each seam of the joined file
    pts = video_pts(dst)
    assert {pts[a], pts[b]} <= set(_keyframe_pts(dst))
    # pixels: within a small tolerance everywhere, and exact before the first seam
    diffs = _mean_diffs(frames_rgb(dst), frames_rgb(reference))
    assert len(diffs) == 90 and max(diffs) <= 0.5, diffs
    assert max(diffs[:a]) <= 0.05
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # parts and partial files are gone

    # the seams: warping error across each seam vs inside the parts, as vidstyle.evaluate measures it
    seams = seam_errors(clip, dst, r.cuts, whole=True)
    ref_seams = seam_errors(clip, reference, r.cuts)
    print("\nseam warping error (segments):", seams, "\nsame pairs, one process:", ref_seams)
    assert [s["cut"] for s in seams["seams"]] == [a, b] and seams["inside_median"] > 0
    # whole: the median of the 87 pairs inside the parts, every frame of the clip decoded
    worst = max(s["error"] for s in seams["seams"])
    assert seams["parts_median"] > 0 and seams["worst_ratio_parts"] == pytest.approx(worst / seams["parts_median"])
    assert "parts_median" not in ref_seams
    for s, t in zip(seams["seams"], ref_seams["seams"]):
        assert s["error"] == pytest.approx(t["error"], rel=0.1, abs=1e-4)


@pytest.mark.parametrize("suffix,codec", [(".mkv", None), (".mkv", "hevc"), (".ts", None), (".webm", None)])
def test_segments_into_other_containers(tmp_path, clip, contrast_model, suffix, codec):
    """B-frames (the default preset) in Matroska parts lost their keyframes' dts and joined to a file with no
    decodable frame, and TS parts each shifted their own timestamps: the parts are MP4 now, whatever the
    output, and the output's codec is the output container's default (VP9 for .webm), as in one piece."""
    job = StylizeJob(str(contrast_model), device="cpu", codec=codec, engine="torch")
    one, seg = tmp_path / f"one{suffix}", tmp_path / f"seg{suffix}"
    job(str(clip), str(one))
    r = stylize_segments(clip, seg, job, segments=3, workers=1)
    assert r.cuts == [30, 60]
    assert video_pts(seg) == video_pts(one) and len(video_pts(seg)) == 90
    with av.open(str(seg)) as c, av.open(str(one)) as d:
        assert c.streams.video[0].codec_context.name == d.streams.video[0].codec_context.name
    assert audio_hashes(seg) == audio_hashes(one)


def test_segments_into_a_folder_says_what_is_wrong(tmp_path, clip):
    from typer.testing import CliRunner
    from vidstyle.cli import app
    res = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path), "--segments", "2"])
    assert res.exit_code == 2 and "-o must name a file" in res.stderr, res.output


def test_overlap_is_what_keeps_the_seams(tmp_path, clip, job, reference):
    """Without warm-up frames the stabiliser starts cold at the seams and the frames after them differ."""
    ref = frames_rgb(reference)
    cold = _mean_diffs(frames_rgb(stylize_segments(clip, tmp_path / "cold.mp4", job, segments=3, overlap=0,
                                                   workers=1, calm_cuts=False).output), ref)
    warm = _mean_diffs(frames_rgb(stylize_segments(clip, tmp_path / "warm.mp4", job, segments=3, overlap=30,
                                                   workers=1, calm_cuts=False).output), ref)
    assert max(cold[30:]) > 1.0 and max(warm) < max(cold[30:]) / 4
    assert max(cold[:30]) <= 0.05  # the first part has no seam before it


def test_segments_in_parallel_processes(tmp_path, clip, job, reference):
    dst = tmp_path / "par.mp4"
    r = stylize_segments(clip, dst, job, segments=3, overlap=30, workers=2)
    assert r.frames == 90
    assert video_pts(dst) == video_pts(reference) and audio_hashes(dst) == audio_hashes(reference)
    assert max(_mean_diffs(frames_rgb(dst), frames_rgb(reference))) <= 0.5
    more_parts_than_cores = 3 > (os.cpu_count() or 1)
    assert any("parts on" in n and "CPU cores take turns" in n for n in r.notes) == more_parts_than_cores


def test_segment_workers_start_with_sigint_ignored():
    """Ctrl-C goes to the parent only (it stops the workers), not as a traceback from each worker."""
    import multiprocessing as mp
    import signal
    from concurrent.futures import ProcessPoolExecutor

    from vidstyle.executors import stop_workers as _stop_workers
    from vidstyle.signals import sigint_ignored as _sigint_ignored
    before = signal.getsignal(signal.SIGINT)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        with _sigint_ignored():
            fut = pool.submit(signal.getsignal, signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is before
        assert fut.result(timeout=120) == signal.SIG_IGN
        _stop_workers(pool)


def test_one_piece_when_segments_cannot_help(tmp_path, clip, job, reference):
    r = stylize_segments(clip, tmp_path / "one.mp4", job, segments=1)
    assert r.frames == 90 and not r.parts and video_pts(tmp_path / "one.mp4") == video_pts(reference)
    # a truncated file is painted in one piece, and reported as vidstyle run reports it
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(IncompleteInput) as e:
        stylize_segments(cut, tmp_path / "cut.out.mp4", job, segments=3)
    assert 0 < e.value.result.frames < 90 and (tmp_path / "cut.out.mp4").exists()


def test_joined_ts_files_are_painted_in_one_piece(tmp_path, job):
    # parts seek by the file's own timestamps, which jump back at the join: one piece, with a note
    from conftest import make_clip
    part = make_clip(tmp_path / "a.ts", n=20)
    src = tmp_path / "ab.ts"
    src.write_bytes(part.read_bytes() * 2)
    r = stylize_segments(src, tmp_path / "ab.mp4", job, segments=2)
    assert r.frames == 40 and not r.parts
    assert any("one piece" in n and "jump" in n for n in r.notes), r.notes
    times = video_pts(tmp_path / "ab.mp4")
    assert len(times) == 40 and all(b > a for a, b in zip(times, times[1:]))


def test_interlaced_input_in_segments(tmp_path, job):
    """Each part's reader deinterlaces its range with the frames around it, as a single run does."""
    src = make_gop_clip(tmp_path / "tv.mp4", n=60, interlaced=True)
    one = tmp_path / "one.mp4"
    job(str(src), str(one))
    dst = tmp_path / "seg.mp4"
    r = stylize_segments(src, dst, job, segments=2, overlap=20, workers=1, calm_cuts=False)
    assert r.cuts == [30] and [p["warm"] for p in r.parts] == [0, 20] and r.frames == 60
    assert not any("one piece" in n for n in r.notes) and any("bwdif" in n for n in r.notes)
    assert video_pts(dst) == video_pts(one) == video_pts(src)
    assert audio_hashes(dst) == audio_hashes(one) and _rotation(dst) == _rotation(one) != 0
    diffs = _mean_diffs(frames_rgb(dst), frames_rgb(one))
    assert len(diffs) == 60 and max(diffs[:30]) <= 0.05 and max(diffs) <= 0.5, diffs


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidstyle[cluster]')")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def test_segments_as_ray_tasks(tmp_path, clip, job, reference, ray_local):
    dst = tmp_path / "ray.mp4"
    r = stylize_segments(clip, dst, job, segments=3, overlap=30, executor="ray", cpus_per_task=1)
    assert r.frames == 90 and len(r.cuts) == 2
    assert video_pts(dst) == video_pts(reference) and audio_hashes(dst) == audio_hashes(reference)
    assert max(_mean_diffs(frames_rgb(dst), frames_rgb(reference))) <= 0.5


def test_frames_at_a_seam_are_encoded_near_lossless():
    """A part's keyframe brings fresh compression noise against the P-frames before it; the part's encoder
    gives the frame on each side of a seam a low quantiser, so that both are close to the painted pixels."""
    from vidstyle.segments import Part, x264_part_params

    n = 12
    middle = Part(index=1, start=30, end=30 + n, warm=0, warm_pts=0, start_pts=30, end_pts=30 + n)
    assert x264_part_params(middle, 28) == "stitchable=1:zones=0,0,q=18/11,11,q=18"
    assert x264_part_params(Part(0, 0, n, 0, 0, 0, n), None) == "stitchable=1:zones=11,11,q=8"  # no seam before
    assert x264_part_params(Part(2, 0, n, 0, 0, 0, None), 4) == "stitchable=1:zones=0,0,q=0"  # none after
    assert x264_part_params(Part(1, 5, 6, 5, 5, 5, 6), 18) == "stitchable=1:zones=0,0,q=8"  # one frame
    assert x264_part_params(Part(0, 0, n, 0, 0, 0, None), 18) == "stitchable=1"  # one piece

    rng = np.random.default_rng(0)
    # detail that x264 at CRF 28 blurs but a 4:2:0 picture keeps: grey, a few pixels across
    texture = np.repeat(cv2.resize(rng.integers(0, 256, (24, 32), dtype=np.uint8), (96, 72),
                                   interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)
    frames = [np.roll(texture, 2 * i, axis=1) for i in range(n)]

    def psnr_per_frame(params: str) -> list[float]:
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as c:
            s = c.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = 96, 72, "yuv420p"
            s.options = {"crf": "28", "preset": "veryfast", "x264-params": params}
            for i, a in enumerate(frames):
                f = av.VideoFrame.from_ndarray(a, format="rgb24")
                f.pts = i
                c.mux(s.encode(f))
            c.mux(s.encode(None))
        buf.seek(0)
        with av.open(buf) as c:
            out = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(out) == n
        return [psnr(b, a) for a, b in zip(frames, out)]

    plain, seam = psnr_per_frame("stitchable=1"), psnr_per_frame(x264_part_params(middle, 28))
    inside = float(np.median(seam[1:-1]))
    print("\nPSNR per frame, plain:", np.round(plain, 1), "\nwith the seam zones:", np.round(seam, 1))
    assert seam[0] > plain[0] + 3 and seam[-1] > plain[-1] + 3, (plain, seam)
    assert seam[0] > inside + 3 and seam[-1] > inside + 3, seam


def _ignore_sigterm() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *a: None)  # as a worker whose writer holds SIGTERM does


def test_stopping_the_workers_ends_one_that_takes_sigterm():
    """A worker that survives SIGTERM (its writer took it as a stop) must not keep the pool's shutdown waiting."""
    import multiprocessing as mp
    import time
    from concurrent.futures import ProcessPoolExecutor

    from vidstyle.executors import stop_workers

    t0 = time.monotonic()
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        pool.submit(_ignore_sigterm).result(timeout=120)
        stop_workers(pool, grace=0.5)
        assert not any(p.is_alive() for p in pool._processes.values())  # gone now, not at the next task
    assert time.monotonic() - t0 < 110
