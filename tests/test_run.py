"""vidstyle run: frames, timestamps, audio, rotation, sizes and strength, end to end on tiny clips."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import audio_hashes, frames_rgb, make_clip, video_pts, video_times
from vidstyle import stylize_video
from vidstyle.cli import app
from vidstyle.errors import VidstyleError

runner = CliRunner()


def test_frames_timestamps_audio_metadata_kept(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", n=12, metadata={"title": "holiday", "artist": "me"})
    dst = tmp_path / "out.mp4"
    r = stylize_video(src, dst, style=model_file, device="cpu")
    assert r.frames == 12 and dst.exists()
    assert video_pts(dst) == video_pts(src)
    assert video_times(dst) == video_times(src)
    assert audio_hashes(dst) == audio_hashes(src) and len(audio_hashes(src)) == 1
    import av
    with av.open(str(dst)) as c:
        assert c.metadata["title"] == "holiday" and c.metadata["artist"] == "me"
        assert c.streams.audio[0].codec_context.name == "aac"
    # faststart: the moov box comes before mdat
    data = dst.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    # stylized: the pixels changed
    assert np.abs(frames_rgb(dst)[0].astype(int) - frames_rgb(src)[0].astype(int)).mean() > 10


def test_two_audio_tracks_in_mkv_copied_byte_identical(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mkv", audio_tracks=2)
    dst = tmp_path / "out.mkv"
    stylize_video(src, dst, style=model_file, device="cpu")
    hs = audio_hashes(src)
    assert len(hs) == 2 and hs[0] != hs[1]
    assert audio_hashes(dst) == hs
    import av
    with av.open(str(dst)) as c:
        assert [s.metadata.get("language") for s in c.streams.audio] == ["eng", "fra"]


def test_variable_frame_rate_stays_variable(tmp_path, model_file):
    src = make_clip(tmp_path / "vfr.mp4", n=12, vfr=True)
    dst = tmp_path / "out.mp4"
    stylize_video(src, dst, style=model_file, device="cpu")
    t_in, t_out = video_times(src), video_times(dst)
    assert t_out == t_in
    gaps = set(np.round(np.diff(t_out), 3))
    assert len(gaps) >= 3, gaps  # still variable


def test_rotation_90_preserved(tmp_path, model_file):
    import av
    src = make_clip(tmp_path / "rot.mp4", rotation=90)
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).rotation == 90
    dst = tmp_path / "out.mp4"
    stylize_video(src, dst, style=model_file, device="cpu")
    with av.open(str(dst)) as c:
        f = next(c.decode(video=0))
        assert f.rotation == 90 and (f.width, f.height) == (64, 48)


def test_rotation_in_mkv_output_is_kept_as_metadata(tmp_path, model_file):
    import av
    src = make_clip(tmp_path / "rot.mp4", rotation=90, audio=None)
    dst = tmp_path / "out.mkv"
    r = stylize_video(src, dst, style=model_file, device="cpu")
    assert (r.width, r.height) == (64, 48) and not any("rotation" in n for n in r.notes)
    with av.open(str(dst)) as c:
        f = next(c.decode(video=0))
        assert f.rotation == 90 and (f.width, f.height) == (64, 48)


def test_out_size_of_a_turned_video_is_the_size_shown(tmp_path, model_file):
    """A phone's portrait clip (stored 64x48, turned 90: shown 48x64): --out-size 96x128 is what the viewer
    sees, kept as a display matrix in MP4 and turned into the pixels in MPEG-TS (it came out squashed)."""
    import av
    src = make_clip(tmp_path / "rot.mp4", rotation=90, audio=None)
    for suffix, stored, turn in ((".mp4", (128, 96), 90), (".ts", (96, 128), 0)):
        dst = tmp_path / f"out{suffix}"
        res = runner.invoke(app, ["run", str(src), "-o", str(dst), "--style", str(model_file), "--device", "cpu",
                                  "--out-size", "96x128", "-q"])
        assert res.exit_code == 0, res.output
        with av.open(str(dst)) as c:
            f = next(c.decode(video=0))
            assert (f.width, f.height) == stored and f.rotation % 360 == turn, suffix
    r = stylize_video(src, tmp_path / "api.mp4", style=model_file, device="cpu", out_size=(96, 128))
    assert (r.width, r.height) == (128, 96)


def test_odd_size_is_padded_to_even_420(tmp_path, model_file):
    src = make_clip(tmp_path / "odd.mp4", w=63, h=47, pix_fmt="yuv444p")
    dst = tmp_path / "out.mp4"
    r = stylize_video(src, dst, style=model_file, device="cpu")
    fr = frames_rgb(dst)
    assert len(fr) == 12 and fr[0].shape == (48, 64, 3) and (r.width, r.height) == (64, 48)
    assert any("padded to 64x48" in n for n in r.notes)


def test_ten_bit_input(tmp_path, model_file):
    src = make_clip(tmp_path / "10bit.mkv", pix_fmt="yuv420p10le", audio=None)
    dst = tmp_path / "out.mp4"
    r = stylize_video(src, dst, style=model_file, device="cpu")
    assert r.frames == 12 and video_times(dst) == video_times(src)


def test_strength_zero_reproduces_input(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4")
    dst = tmp_path / "out.mp4"
    stylize_video(src, dst, style=model_file, device="cpu", strength=0.0, crf=10)
    a, b = frames_rgb(src), frames_rgb(dst)
    assert len(a) == len(b)
    err = np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b)])
    assert err < 3.0, err  # codec noise only


def test_preserve_color_keeps_input_chroma(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", audio=None)
    plain, kept = tmp_path / "plain.mp4", tmp_path / "kept.mp4"
    stylize_video(src, plain, style=model_file, device="cpu")
    stylize_video(src, kept, style=model_file, device="cpu", preserve_color=True)
    import cv2
    uv = lambda f: cv2.cvtColor(f, cv2.COLOR_RGB2YUV)[..., 1:].astype(int)  # noqa: E731
    s, p, k = frames_rgb(src)[3], frames_rgb(plain)[3], frames_rgb(kept)[3]
    assert np.abs(uv(k) - uv(s)).mean() < 0.5 * np.abs(uv(p) - uv(s)).mean()


def test_max_side_and_out_size(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", w=96, h=64, audio=None)
    dst = tmp_path / "out.mp4"
    r = stylize_video(src, dst, style=model_file, device="cpu", max_side=32, out_size=(48, 32))
    assert (r.width, r.height) == (48, 32) and frames_rgb(dst)[0].shape == (32, 48, 3)


def test_webm_defaults_to_vp9_and_reencodes_aac_to_opus(tmp_path, model_file):
    import av
    src = make_clip(tmp_path / "in.mp4", n=6)
    dst = tmp_path / "out.webm"
    r = stylize_video(src, dst, style=model_file, device="cpu")
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert c.streams.audio[0].codec_context.name == "opus"
    assert any("re-encoded" in n for n in r.notes)


def test_cli_json_and_default_output_name(tmp_path, model_file):
    src = make_clip(tmp_path / "walk.mp4", audio=None)
    res = runner.invoke(app, ["run", str(src), "--style", str(model_file), "--device", "cpu", "--json",
                              "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("output", "frames", "seconds", "fps", "style", "device"):
        assert key in out
    assert out["frames"] == 12 and out["device"] == "cpu"
    assert out["output"] == str(tmp_path / "walk.random_lite.mp4")
    assert video_pts(tmp_path / "walk.random_lite.mp4") == video_pts(src)


def test_batch_size_does_not_change_the_result(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", audio=None)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    stylize_video(src, a, style=model_file, device="cpu", batch_size=1, crf=0)
    stylize_video(src, b, style=model_file, device="cpu", batch_size=5, crf=0)
    fa, fb = frames_rgb(a), frames_rgb(b)
    assert len(fa) == len(fb) == 12
    assert max(np.abs(x.astype(int) - y.astype(int)).max() for x, y in zip(fa, fb)) <= 2


def test_image_command_on_folder(tmp_path, model_file):
    import cv2
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    from conftest import pattern
    cv2.imwrite(str(folder / "a.png"), pattern(0, 40, 30))
    cv2.imwrite(str(folder / "sub" / "b.jpg"), pattern(5, 41, 29))
    out = tmp_path / "painted"
    res = runner.invoke(app, ["image", str(folder), "-o", str(out), "--style", str(model_file), "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["a.random_lite.png", "sub/b.random_lite.png"]  # the folder layout is kept
    assert cv2.imread(str(out / "sub" / "b.random_lite.png")).shape == (29, 41, 3)


def test_image_command_keeps_existing_outputs_unless_overwrite(tmp_path, model_file):
    import cv2
    from conftest import pattern
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(folder / f"{name}.png"), pattern(1, 40, 30))
    out = tmp_path / "painted"
    out.mkdir()
    (out / "b.random_lite.png").write_bytes(b"keep me")
    res = runner.invoke(app, ["image", str(folder), "-o", str(out), "--style", str(model_file), "-q"])
    assert res.exit_code == 2 and res.stderr.strip() == f"error: {out / 'b.random_lite.png'} exists; pass --overwrite to replace it"
    assert sorted(p.name for p in out.iterdir()) == ["b.random_lite.png"]  # nothing painted, nothing replaced
    assert (out / "b.random_lite.png").read_bytes() == b"keep me"
    res = runner.invoke(app, ["image", str(folder), "-o", str(out), "--style", str(model_file), "-q", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(out / "b.random_lite.png")).shape == (30, 40, 3)
    # an input is never an output, even with --overwrite (--optimize writes without the painter's check)
    src = folder / "a.png"
    before = src.read_bytes()
    for extra in ([], ["--optimize", "--style-image", str(src)]):
        res = runner.invoke(app, ["image", str(src), "-o", str(src), "--style", str(model_file), "-q", "--overwrite",
                                  *extra])
        assert res.exit_code == 2 and "overwrite the input" in res.stderr, res.output
    assert src.read_bytes() == before


def test_image_inputs_with_the_same_name_are_not_written_over_each_other(tmp_path, model_file):
    import cv2
    from conftest import pattern
    for d, i in (("x", 0), ("y", 7)):
        (tmp_path / d / "sub").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / d / "sub" / "same.png"), pattern(i, 40, 30))
    out = tmp_path / "painted"
    two_files = [str(tmp_path / "x" / "sub" / "same.png"), str(tmp_path / "y" / "sub" / "same.png")]
    res = runner.invoke(app, ["image", *two_files, "-o", str(out), "--style", str(model_file), "-q"])
    assert res.exit_code == 2 and "would both be written" in res.output
    assert not list(out.rglob("*.png"))
    # given as folders, each keeps its layout: x/ gives sub/same, y/sub/ gives same
    res = runner.invoke(app, ["image", str(tmp_path / "x"), str(tmp_path / "y" / "sub"), "-o", str(out),
                              "--style", str(model_file), "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["same.random_lite.png",
                                                                          "sub/same.random_lite.png"]


def _clip_with_subtitles(tmp_path):
    """An MKV with 12 video frames and an SRT subtitle track (demuxed from a .srt file: PyAV has no SRT encoder)."""
    import av
    from fractions import Fraction
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,200\nHello there\n\n2\n00:00:00,250 --> 00:00:00,400\nGeneral Kenobi\n")
    path = tmp_path / "subs.mkv"
    with av.open(str(srt)) as sub, av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = out.add_stream_from_template(sub.streams[0])
        s.metadata["language"] = "fra"
        from conftest import pattern
        for i in range(12):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        for p in sub.demux(sub.streams[0]):
            if p.dts is not None:
                p.stream = s
                out.mux(p)
    return path


def _subtitle_packets(path):
    import av
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return None, []
        s = c.streams.subtitles[0]
        return s.metadata.get("language"), [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s)
                                            if p.dts is not None]


def test_subtitles_copied_untouched(tmp_path, model_file):
    src = _clip_with_subtitles(tmp_path)
    lang, packets = _subtitle_packets(src)
    assert lang == "fra" and [t for t, _ in packets] == [b"Hello there", b"General Kenobi"]
    dst = tmp_path / "out.mkv"
    r = stylize_video(src, dst, style=model_file, device="cpu")
    assert r.frames == 12 and not r.notes
    assert _subtitle_packets(dst) == (lang, packets)  # same text, same times
    # MP4 holds only mov_text: an SRT track is dropped, and the user is told
    r = stylize_video(src, tmp_path / "out.mp4", style=model_file, device="cpu")
    assert any("subtitle" in n and "dropped" in n for n in r.notes)
    assert _subtitle_packets(tmp_path / "out.mp4") == (None, [])


# -- several inputs: a batch into a folder, with a manifest --------------------------------------
def test_batch_of_inputs_into_a_folder_goes_on_past_a_bad_file_and_resumes(tmp_path, model_file):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "a.mp4", n=6)
    make_clip(src / "sub" / "b.mp4", n=8)
    bad = src / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    r = runner.invoke(app, ["run", str(src), "-o", str(out), "--style", str(model_file), "--cluster", "local", "-q"])
    assert r.exit_code == 1, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    manifest = json.loads((out / "vidstyle-manifest.json").read_text())
    status = {Path(i["input"]).name: i for i in manifest["items"]}
    assert {k: v["status"] for k, v in status.items()} == {"a.mp4": "done", "b.mp4": "done", "broken.mp4": "failed"}
    assert status["b.mp4"]["frames"] == 8 and status["broken.mp4"]["error"]
    b_out = out / status["b.mp4"]["output"]
    assert b_out.parent.name == "sub" and len(video_pts(b_out)) == 8  # the folder layout is kept
    before = b_out.stat().st_mtime_ns
    bad.unlink()  # the broken file is gone: the second run has nothing left to fail
    r = runner.invoke(app, ["run", str(src), "-o", str(out), "--style", str(model_file), "--cluster", "local",
                            "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["done"] == 0 and summary["skipped"] == 2
    assert b_out.stat().st_mtime_ns == before


def test_several_inputs_need_a_folder_and_segments_need_one_input(tmp_path, model_file):
    a, b = make_clip(tmp_path / "a.mp4", n=4), make_clip(tmp_path / "b.mp4", n=4)
    r = runner.invoke(app, ["run", str(a), str(b), "--style", str(model_file)])
    assert r.exit_code == 2 and "-o DIR" in r.output
    r = runner.invoke(app, ["run", str(a), str(b), "-o", str(tmp_path / "o"), "--segments", "2",
                            "--style", str(model_file)])
    assert r.exit_code == 2 and "one input" in r.output


def test_segments_from_the_command_line(tmp_path, model_file):
    src = make_clip(tmp_path / "long.mp4", n=30, audio="aac")
    out = tmp_path / "long.out.mp4"
    r = runner.invoke(app, ["run", str(src), "-o", str(out), "--segments", "2", "--cluster", "local",
                            "--style", str(model_file), "-q"])
    assert r.exit_code == 0, r.output
    assert video_pts(out) == video_pts(src) and audio_hashes(out) == audio_hashes(src)


def test_run_temporal_uses_the_styles_own_strength(tmp_path):
    """`run --temporal` with no --temporal-strength stabilises at the strength the model file records.

    A style recording 0 comes out as without --temporal; --temporal-strength still overrides it.
    """
    import torch
    from vidstyle.models import TransformerNet, arch_config, save_model
    torch.manual_seed(0)
    model = save_model(tmp_path / "calm.safetensors", TransformerNet(arch_config("lite")), ["calm"],
                       temporal_strengths={"calm": 0.0})
    src = make_clip(tmp_path / "in.mp4", n=8, audio=None)
    outs = {}
    used = {}
    for name, extra in (("plain", []), ("own", ["--temporal"]), ("given", ["--temporal", "--temporal-strength", "0.9"])):
        dst = tmp_path / f"{name}.mp4"
        r = runner.invoke(app, ["run", str(src), "--style", str(model), "-o", str(dst), "--device", "cpu", "--json",
                                *extra])
        assert r.exit_code == 0, r.output
        used[name] = json.loads(r.stdout.strip().splitlines()[-1])["temporal_strength"]
        outs[name] = np.stack(frames_rgb(dst)).astype(int)
    assert used == {"plain": None, "own": 0.0, "given": 0.9}
    assert len(outs["own"]) == 8
    assert np.array_equal(outs["own"], outs["plain"])
    assert np.abs(outs["given"][1:] - outs["plain"][1:]).mean() > 0.1  # a random network paints nearly flat grey


def test_stylize_image_keeps_an_existing_file_unless_overwrite(tmp_path, model_file):
    import cv2

    from vidstyle.api import stylize_image
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), np.full((24, 32, 3), 120, np.uint8))
    dst = tmp_path / "out.png"
    dst.write_bytes(b"keep me")
    with pytest.raises(VidstyleError, match="exists"):
        stylize_image(src, dst, style=str(model_file), device="cpu")
    assert dst.read_bytes() == b"keep me"
    assert stylize_image(src, dst, style=str(model_file), device="cpu", overwrite=True) == dst
    assert dst.read_bytes() != b"keep me"


def test_image_transparency_is_kept_where_the_format_has_it(tmp_path, model_file):
    """A sticker stays a sticker: PNG and WebP keep the input's alpha (8- or 16-bit) exactly, JPEG drops it;
    with --optimize the alpha follows the painting's size."""
    import cv2
    from conftest import pattern
    alpha = np.zeros((30, 40), np.uint8)
    alpha[5:25, 8:30] = 255
    alpha[:, :4] = 128
    rgba = np.dstack([pattern(3, 40, 30), alpha])
    cv2.imwrite(str(tmp_path / "s8.png"), rgba)
    cv2.imwrite(str(tmp_path / "s16.png"), rgba.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "opaque.png"), pattern(3, 40, 30))
    for src, dst, channels in (("s8.png", "a.png", 4), ("s16.png", "b.png", 4), ("s8.png", "c.webp", 4),
                               ("s8.png", "d.jpg", 3), ("opaque.png", "e.png", 3)):
        res = runner.invoke(app, ["image", str(tmp_path / src), "-o", str(tmp_path / dst), "--style", str(model_file),
                                  "--device", "cpu", "-q"])
        assert res.exit_code == 0, res.output
        out = cv2.imread(str(tmp_path / dst), cv2.IMREAD_UNCHANGED)
        assert out.shape == (30, 40, channels), dst
        if channels == 4:
            assert np.array_equal(out[..., 3], alpha), dst
            assert np.abs(out[..., :3].astype(int) - rgba[..., :3]).mean() > 5  # the colour was painted
    from vidstyle.io.images import read_alpha, read_image
    small = read_alpha(tmp_path / "s8.png", read_image(tmp_path / "s8.png").shape, size=(15, 20, 3))
    assert small.shape == (15, 20) and small[6, 8] == 255 and small[0, 0] == 128 and small[1, 14] == 0


def test_a_frame_size_change_mid_stream_with_batches(tmp_path, model_file):
    """Joined MPEG-TS files of two sizes (cat a.ts b.ts): a batch that spans the change used to crash
    np.stack; it is painted in two calls and every frame comes out at the stream's size, as with batch 1."""
    import av
    from fractions import Fraction
    parts = []
    for k, (w, h) in enumerate(((80, 48), (64, 64))):
        parts.append(tmp_path / f"{k}.ts")
        with av.open(str(parts[-1]), "w", format="mpegts") as out:
            s = out.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(6):
                from conftest import pattern
                f = av.VideoFrame.from_ndarray(pattern(i + 6 * k, w, h), format="rgb24")
                f.pts, f.time_base = i + 6 * k, Fraction(1, 25)
                out.mux(s.encode(f))
            out.mux(s.encode(None))
    src = tmp_path / "joined.ts"
    src.write_bytes(b"".join(p.read_bytes() for p in parts))
    outs = {}
    for bs, temporal in ((1, False), (4, False), (4, True)):
        dst = tmp_path / f"o{bs}{temporal}.mp4"
        res = runner.invoke(app, ["run", str(src), "-o", str(dst), "--style", str(model_file), "--device", "cpu",
                                  "--batch-size", str(bs), "--crf", "0", "-q", *(["--temporal"] if temporal else [])])
        assert res.exit_code == 0, res.output
        outs[bs, temporal] = frames_rgb(dst)
        assert len(outs[bs, temporal]) == 12 and {f.shape for f in outs[bs, temporal]} == {(48, 80, 3)}
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(outs[1, False], outs[4, False])) <= 2


def test_the_python_api_checks_what_it_is_given(tmp_path, model_file):
    """Float or 16-bit frames were painted as if 0..255 (black or white pictures), a negative max_side at 4x4,
    a style given as a StyleModel crashed, stylizer= silently won over style=, and a Stylizer's own out_size
    was stretched back to the video's size."""
    import vidstyle
    from vidstyle import make_stylizer
    st = make_stylizer(str(model_file), device="cpu")
    for bad in (np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 8, 8, 3), np.uint16), np.zeros((8, 8, 3), np.uint8),
                np.zeros((1, 8, 8, 4), np.uint8)):
        with pytest.raises(VidstyleError, match="painter paints"):
            st(bad)
    assert st(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 8, 8, 3)
    for kw in ({"max_side": -5}, {"out_size": "64x48"}, {"out_size": (-64, 48)}):
        with pytest.raises(VidstyleError):
            make_stylizer(str(model_file), device="cpu", **kw)
    src = make_clip(tmp_path / "in.mp4", n=3, audio=None)
    model = vidstyle.load_model(str(model_file))
    assert vidstyle.stylize_video(src, tmp_path / "m.mp4", style=model, device="cpu").frames == 3
    small = make_stylizer(str(model_file), device="cpu", out_size=(32, 24))
    r = vidstyle.stylize_video(src, tmp_path / "s.mp4", stylizer=small)
    assert (r.width, r.height) == (32, 24) and frames_rgb(tmp_path / "s.mp4")[0].shape == (24, 32, 3)
    with pytest.raises(VidstyleError, match="not both"):
        vidstyle.stylize_video(src, tmp_path / "x.mp4", style=str(model_file), stylizer=small)
    with pytest.raises(VidstyleError, match="--device"):
        vidstyle.load_model(str(model_file), device="gpu")


def test_image_folder_painted_again_and_output_folders(tmp_path, model_file):
    """A second run on a folder painted the first run's outputs as photos (and --overwrite could not refresh
    them); -o DIR/ or an existing folder takes one picture too; -o NAME.png for a folder is refused."""
    import cv2
    from conftest import pattern
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(pics / name), pattern(2, 40, 30))

    def image(*args):
        return runner.invoke(app, ["image", *map(str, args), "--style", str(model_file), "--device", "cpu", "-q"])

    assert image(pics).exit_code == 0
    written = sorted(p.name for p in pics.iterdir())
    assert written == ["a.png", "a.random_lite.png", "b.jpg", "b.random_lite.png"]
    res = image(pics, "--overwrite")  # the outputs are not inputs: the same two, painted again
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in pics.iterdir()) == written
    nested = pics / "painted"
    assert image(pics, "-o", nested).exit_code == 0 and image(pics, "-o", nested, "--overwrite").exit_code == 0
    assert sorted(p.name for p in nested.iterdir()) == ["a.random_lite.png", "b.random_lite.png"]
    for out in (str(tmp_path / "new") + "/", tmp_path / "new"):  # a new folder, then an existing one
        res = image(pics / "a.png", "-o", out, "--overwrite")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "new" / "a.random_lite.png").is_file()
    res = image(pics, "-o", tmp_path / "single.png")
    assert res.exit_code == 2 and "must be a folder" in res.stderr and not (tmp_path / "single.png").exists()


def test_stills_library_plans_and_paints_without_the_command_line(tmp_path, model_file):
    """``vidstyle.stills``: what ``vidstyle image`` does, called as a library (no typer, no commands)."""
    import subprocess
    import sys

    import cv2
    from conftest import pattern
    from vidstyle.options import PaintOptions
    from vidstyle.stills import find_stills, optimize_images, paint_images, plan_images

    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    cv2.imwrite(str(pics / "a.png"), pattern(0, 40, 30))
    cv2.imwrite(str(pics / "sub" / "b.jpg"), pattern(3, 41, 29))
    out = tmp_path / "painted"
    found = find_stills([pics], str(out))
    assert found.many and found.output == out and out.is_dir()  # the output folder is made before any style
    assert found.files == (pics / "a.png", pics / "sub" / "b.jpg") and found.searched == set(found.files)
    assert plan_images(found, "my style") == [(pics / "a.png", out / "a.my_style.png"),
                                              (pics / "sub" / "b.jpg", out / "sub" / "b.my_style.png")]
    one = find_stills(pics / "a.png")
    assert not one.many and one.output is None
    assert plan_images(one, "gatys") == [(pics / "a.png", pics / "a.gatys.png")]
    assert find_stills(pics / "a.png", str(tmp_path / "new") + "/").many  # DIR/ names a folder
    with pytest.raises(VidstyleError, match="input not found"):
        find_stills([pics, tmp_path / "nope.png"])
    with pytest.raises(VidstyleError, match="cannot write .xyz images"):
        find_stills(pics / "a.png", tmp_path / "o.xyz")

    heard = []
    written = paint_images(found, PaintOptions(style=str(model_file), device="cpu"), on_written=heard.append)
    assert written == heard == [out / "a.random_lite.png", out / "sub" / "b.random_lite.png"]
    assert cv2.imread(str(written[1])).shape == (29, 41, 3)
    with pytest.raises(VidstyleError, match=r"a.random_lite.png exists \(and 1 more\); pass overwrite=True"):
        paint_images([pics], output=str(out), paint=PaintOptions(style=str(model_file), device="cpu"))
    # beside the photos: a second run leaves the first run's paintings out of the inputs
    beside = paint_images(pics, PaintOptions(style=str(model_file), device="cpu"))
    assert beside == [pics / "a.random_lite.png", pics / "sub" / "b.random_lite.png"]
    assert plan_images(find_stills(pics), "random_lite", overwrite=True) == list(zip(found.files, beside))
    with pytest.raises(VidstyleError, match="needs a style picture: --style-image"):
        optimize_images(pics / "a.png", None)
    with pytest.raises(VidstyleError, match="overwrite the input"):  # checked before any optimisation
        optimize_images(pics / "a.png", pics / "a.png", output=pics / "a.png", overwrite=True)
    with pytest.raises(TypeError):
        paint_images(found, output=out)

    code = ("import sys, vidstyle.stills; "
            "sys.exit(any(m.startswith(('typer', 'click', 'vidstyle.commands')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # a library: no command-line layer


def test_the_api_takes_temporal_and_options_as_values(tmp_path, model_file):
    """stylize_video(temporal=True) stabilises (it needed an undocumented stabilizer object); options as values
    and as keywords give the same run."""
    from vidstyle.options import EncodeOptions, PaintOptions

    src = make_clip(tmp_path / "in.mp4", n=6, audio=None)
    r = stylize_video(src, tmp_path / "a.mp4", style=str(model_file), device="cpu", temporal=True,
                      temporal_strength=0.4, crf=0)
    assert r.frames == 6 and r.temporal_strength == 0.4
    r2 = stylize_video(src, tmp_path / "b.mp4", paint=PaintOptions(style=str(model_file), device="cpu"),
                       encode=EncodeOptions(crf=0), temporal=True, temporal_strength=0.4)
    assert r2.temporal_strength == 0.4
    a, b = frames_rgb(tmp_path / "a.mp4"), frames_rgb(tmp_path / "b.mp4")
    assert [f.tobytes() for f in a] == [f.tobytes() for f in b]
    with pytest.raises(TypeError, match="unexpected options: colour"):
        stylize_video(src, tmp_path / "c.mp4", style=str(model_file), colour=True)
