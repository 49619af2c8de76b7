"""Edge cases of the reader, the writer and the segment runner, each on a tiny clip made with PyAV:
timestamps that go back, PCM layouts, audio start delays, edit lists, pixel aspect with --out-size,
chapters and attachments, the input named with ``file:``, SIGTERM and leftovers of segment runs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import make_clip, pattern
from test_io import FAST, copy
from vidstyle.errors import VidstyleError
from vidstyle.io.reader import VideoInfo, VideoReader
from vidstyle.io.atomic import check_target
from vidstyle.io.writer import VideoWriter

ROOT = Path(__file__).resolve().parents[1]


# -- helpers -------------------------------------------------------------------
def video_clip(path: Path, n: int = 10, fmt: str | None = None, options: dict | None = None,
               setup=None, fps: int = 25) -> Path:
    """n frames of 64x48 H.264 at ``fps``; ``setup(container)`` may add chapters, attachments or streams."""
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = options or {"preset": "ultrafast"}
        if setup:
            setup(out)
        encode_frames(out, v, n)
    return path


def encode_frames(out, v, n: int) -> None:
    """Encode n 64x48 pattern frames (pts 0, 1, ..) into the stream ``v`` of ``out`` and flush it."""
    for i in range(n):
        f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
        f.pts = i
        out.mux(v.encode(f))
    out.mux(v.encode(None))


def with_audio(path: Path, fmt: str, codec: str, start: float = 0.0, n: int = 50) -> Path:
    """n video frames at 25 fps and stereo audio (``codec``) that starts ``start`` seconds in."""
    rate = 44100
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast"}
        a = out.add_stream(codec, rate=rate)
        a.layout = "stereo"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        fs = a.codec_context.frame_size or 1024
        tone = (np.sin(np.arange(fs) * 0.02) * 8000).astype(np.int16)
        for j in range(int((n / 25 - start) * rate / fs)):
            af = av.AudioFrame.from_ndarray(np.tile(tone, 2)[None], format="s16", layout="stereo")
            af.sample_rate, af.pts = rate, round(start * rate) + j * fs
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path


def remux(src: Path, dst: Path, **writer_kw) -> VideoWriter:
    """``src`` through VideoReader and VideoWriter (its audio and subtitles copied) into ``dst``; the writer."""
    with VideoReader(src) as r:
        w = VideoWriter(dst, r.info, copy_streams=r.other_streams, **writer_kw)
        for f in r.frames(on_packet=w.queue_packet):
            w.write(f.rgb, f.pts)
        w.close()
    return w


def shifted(src: Path, dst: Path, seconds, fmt: str | None = None) -> Path:
    """``src``'s packets remuxed into ``dst`` with ``seconds`` added to every timestamp (negative: an MP4
    edit list hides what falls before 0, as ``ffmpeg -ss -c copy`` writes)."""
    with av.open(str(src)) as c, av.open(str(dst), "w", format=fmt) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in c.streams}
        for p in c.demux():
            if p.dts is not None:
                shift = round(Fraction(seconds) / p.time_base)
                p.pts, p.dts, p.stream = p.pts + shift, p.dts + shift, streams[p.stream.index]
                out.mux(p)
    return dst


def stream_times(path: Path, kind: str = "video") -> list[float]:
    """Packet times (s) of the first stream of ``kind``, in presentation order."""
    with av.open(str(path)) as c:
        s = c.streams.get(**{kind: 0})[0]
        return sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.pts is not None)


# -- 1. timestamps that repeat or go back ---------------------------------------
def test_avi_with_b_frames_comes_out_strictly_increasing(tmp_path):
    src = video_clip(tmp_path / "b.avi", n=20, fmt="avi", options={"preset": "ultrafast", "bf": "3"})
    with av.open(str(src)) as c:  # the premise: AVI has no pts, the decoder hands B-frames out of order
        pts = [f.pts for f in c.decode(video=0)]
    assert any(b <= a for a, b in zip(pts, pts[1:]))
    dst = tmp_path / "out.mkv"
    r, w = copy(src, dst)
    times = stream_times(dst)
    assert len(times) == 20 and all(b > a for a, b in zip(times, times[1:]))
    assert sum("timestamps repeat or go back" in n for n in w.notes) == 1


def test_concatenated_ts_files_continue_at_the_frame_rate(tmp_path):
    part = video_clip(tmp_path / "a.ts", n=10, fmt="mpegts")
    src = tmp_path / "ab.ts"
    src.write_bytes(part.read_bytes() * 2)  # the second file's pts start again at 0
    dst = tmp_path / "out.mkv"
    copy(src, dst)
    times = stream_times(dst)
    assert times == pytest.approx([times[0] + i * 0.04 for i in range(20)], abs=2e-3)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_joined_ts_files_with_audio_follow_on(tmp_path, suffix):
    # `cat a.ts a.ts`: both streams restart at the second file; its audio runs past its video. The second
    # piece must follow the first in both streams, every audio packet kept, nothing refused by the muxer.
    part = make_clip(tmp_path / "a.ts", n=25)
    one = tmp_path / f"one{suffix}"
    copy(part, one)
    src = tmp_path / "ab.ts"
    src.write_bytes(part.read_bytes() * 2)
    dst = tmp_path / f"two{suffix}"
    r, _ = copy(src, dst)
    assert any("jump 1 time" in n for n in r.info.notes)
    video = stream_times(dst)
    assert len(video) == 50 and all(b > a for a, b in zip(video, video[1:]))
    audio, audio_one = stream_times(dst, "audio"), stream_times(one, "audio")
    assert len(audio) == 2 * len(audio_one) and all(b > a for a, b in zip(audio, audio[1:]))
    second = audio[len(audio_one):]
    assert second[0] >= audio_one[-1] and second[0] - video[25] < 0.1  # the second piece follows on, in sync


def test_timestamp_jumps_give_each_stream_one_offset_per_piece():
    # Demux order: piece 1's video, its audio (ending last, at 1.2 s), then piece 2's video (raw 0.2 s) before
    # its audio (raw 0.0 s), and a subtitle of each piece. Each stream enters piece 2 once, with one offset.
    from types import SimpleNamespace as NS

    from vidstyle.io.reader import TimestampJumps
    tb = Fraction(1, 1000)
    streams = [NS(index=0, type="video"), NS(index=1, type="audio"), NS(index=2, type="subtitle")]

    def pkt(i, ms, dur):
        return NS(stream=streams[i], dts=ms, pts=ms, duration=dur, time_base=tb)

    order = ([pkt(0, 40 * k, 40) for k in range(25)] + [pkt(1, 20 * k, 20) for k in range(60)] + [pkt(2, 500, 100)]
             + [pkt(0, 200 + 40 * k, 40) for k in range(25)] + [pkt(1, 20 * k, 20) for k in range(60)]
             + [pkt(2, 300, 100)])
    jumps = TimestampJumps(streams)
    for p in order:
        jumps(p)
    assert jumps.jumps == 1 and jumps.offsets[1] == Fraction(1)  # piece 2 starts at 1.2 s (raw 0.2 + 1.0)
    assert [p.dts for p in order[86:88]] == [1200, 1240] and [p.dts for p in order[111:113]] == [1000, 1020]
    assert order[-1].dts == 1300 and order[85].dts == 500  # subtitles follow their own piece


def test_a_muxing_error_is_one_line_and_leaves_no_file(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    dst = tmp_path / "back.mkv"
    w = VideoWriter(dst, info, **FAST)
    with pytest.raises(VidstyleError) as e:
        for pts in (0, 1, 2, 3, 1, 2, 3):  # x264 passes the repeated timestamps on; Matroska refuses them
            w.write(pattern(pts, 64, 48), pts)
        w.close()
    assert "\n" not in str(e.value) and "cannot write" in str(e.value)
    assert list(tmp_path.iterdir()) == []


# -- 2, 3. audio re-encoded: layout and timing --------------------------------------
@pytest.mark.parametrize("fmt,suffix", [("avi", ".avi"), ("matroska", ".mkv")])
def test_pcm_with_an_unnamed_layout_is_encoded_to_aac(tmp_path, fmt, suffix):
    src = with_audio(tmp_path / f"pcm{suffix}", fmt, "pcm_s16le", n=25)
    with av.open(str(src)) as c:  # the premise: the demuxer gives only a channel count
        assert c.streams.audio[0].layout.name == "2 channels"
    dst = tmp_path / "out.mp4"
    copy(src, dst)
    with av.open(str(dst)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.layout.name == "stereo"


def test_reencoded_audio_keeps_its_start_delay(tmp_path):
    src = with_audio(tmp_path / "late.mkv", "matroska", "aac", start=1.0)
    dst = tmp_path / "out.webm"
    r, w = copy(src, dst)
    assert any("re-encoded to libopus" in n for n in w.notes)
    assert stream_times(dst, "audio")[0] == pytest.approx(1.0, abs=0.03)


# -- 4. MP4 trimmed with an edit list --------------------------------------------
def trimmed(src: Path, dst: Path, start: int) -> Path:
    """What ``ffmpeg -ss`` with ``-c copy`` writes: the packets from the keyframe before frame ``start``,
    shifted so that frame ``start`` is at 0; the MP4 muxer writes an edit list that hides the ones before."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        s = c.streams.video[0]
        o = out.add_stream_from_template(s)
        shift = round(start / 25 / s.time_base)
        packets = [p for p in c.demux(s) if p.dts is not None]
        key = max(p.pts for p in packets if p.is_keyframe and p.pts <= shift)
        for p in packets:
            if p.pts >= key:
                p.pts, p.dts, p.stream = p.pts - shift, p.dts - shift, o
                out.mux(p)
    return dst


def test_mp4_trimmed_with_an_edit_list_is_not_truncated(tmp_path):
    from vidstyle.segments import plan_segments

    src = video_clip(tmp_path / "gop.mp4", n=75, options={"preset": "ultrafast", "g": "25", "sc_threshold": "0"})
    cut = trimmed(src, tmp_path / "cut.mp4", 45)
    with av.open(str(cut)) as c:  # the premise: the header counts the 20 frames the edit list hides
        assert c.streams.video[0].frames == 50
    with VideoReader(cut) as r:
        n = sum(1 for _ in r.frames())
    assert n == 30 and r.incomplete is None
    plan = plan_segments(cut, 2, overlap=0)
    assert plan.frames == 30 and len(plan.parts) == 2


@pytest.mark.parametrize("suffix", [".mkv", ".ts", ".mp4"])
def test_audio_an_edit_list_hides_stays_hidden(tmp_path, suffix):
    """An MP4 cut with ffmpeg -ss -c copy keeps the audio before the cut, hidden by its edit list: Matroska
    and MPEG-TS cannot hide it, so it is left out there (it played as a second of sound before the picture)."""
    src = with_audio(tmp_path / "a.mp4", "mp4", "aac", n=75)  # 3 s, one keyframe
    cut = shifted(src, tmp_path / "cut.mp4", Fraction(-18, 10))  # frame 45 at 0
    dst = tmp_path / f"out{suffix}"
    remux(cut, dst, **FAST)
    with av.open(str(dst)) as c:
        audio = list(c.decode(audio=0))
    with av.open(str(dst)) as c:
        video = [float(f.time) for f in c.decode(video=0)]
    seconds = sum(a.samples for a in audio) / audio[0].sample_rate
    assert len(video) == 30 and seconds == pytest.approx(1.2, abs=0.03), (len(video), seconds)
    assert abs(float(audio[0].time) - video[0]) < 0.03


@pytest.mark.parametrize("fps", [120, 240])
def test_gif_of_a_slow_motion_clip(tmp_path, fps):
    """GIF times frames in centiseconds: 120 fps frames fell on the same one and the muxer refused them.
    Frames closer than 2 centiseconds are left out (browsers stretch shorter delays to 10), with a note."""
    src = video_clip(tmp_path / "fast.mp4", n=40, fps=fps, options={"preset": "ultrafast"})
    dst = tmp_path / "fast.gif"
    w = remux(src, dst)
    with av.open(str(dst)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert len(pts) >= 40 * 50 // fps and min(b - a for a, b in zip(pts, pts[1:])) >= 2, pts
    assert pts[-1] >= round(39 / fps * 100) - 2  # the clip's length is kept
    assert any("at most 50 frames a second" in n for n in w.notes)


@pytest.mark.parametrize("suffix,tag", [(".mp4", "hvc1"), (".mov", "hvc1"), (".mkv", None)])
def test_hevc_in_mp4_is_tagged_for_apple_players(tmp_path, suffix, tag):
    """FFmpeg tags HEVC in MP4 hev1, which QuickTime, iOS and Safari refuse to play; hvc1 is what they take."""
    src = video_clip(tmp_path / "in.mp4", n=3)
    dst = tmp_path / f"out{suffix}"
    remux(src, dst, codec="hevc")
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "hevc" and len(list(c.decode(s))) == 3
        if tag:
            assert s.codec_tag == tag


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_a_recording_whose_clock_starts_late_starts_at_zero(tmp_path, suffix):
    """MPEG-TS timestamps are a broadcast clock: a recording starting at 100 s gave an output with 100 s of
    nothing before the picture. As FFmpeg does, it is moved to start at 0, the audio's offset to the video
    kept."""
    src = with_audio(tmp_path / "a.mp4", "mp4", "aac", start=0.2, n=25)
    late = shifted(src, tmp_path / "late.ts", 100, fmt="mpegts")
    dst = tmp_path / f"out{suffix}"
    remux(late, dst, **FAST)
    video, audio = stream_times(dst), stream_times(dst, "audio")
    with av.open(str(dst)) as c:
        assert c.duration / 1e6 < 1.5  # not 101 s
    assert len(video) == 25 and video[0] < 0.1
    assert audio[0] - video[0] == pytest.approx(0.2, abs=0.03)


def _cover_jpeg() -> list:
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width = cc.height = 32
    cc.pix_fmt, cc.time_base = "yuvj420p", Fraction(1, 25)
    f = av.VideoFrame.from_ndarray(pattern(3, 32, 32), format="rgb24").reformat(format="yuvj420p")
    return list(cc.encode(f)) + list(cc.encode(None))


@pytest.mark.parametrize("with_video", [True, False])
def test_cover_art_is_not_the_video(tmp_path, with_video):
    """A song or a film with cover art: the cover is a one-picture 'video' stream. It is never painted as the
    video; a file with only a cover is one line, and a film's dropped cover is named as such."""
    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:
        cover = out.add_stream("mjpeg")
        cover.width = cover.height = 32
        cover.pix_fmt = "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        cover.time_base = Fraction(1, 90000)
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
        if with_video:
            v = out.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
            encode_frames(out, v, 10)
        for j in range(20):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, j * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
        for p in _cover_jpeg():
            p.stream, p.time_base, p.pts, p.dts = cover, Fraction(1, 90000), 0, 0
            out.mux(p)
    if not with_video:
        with pytest.raises(VidstyleError, match="no video stream .only a cover picture"):
            VideoReader(src)
        return
    with VideoReader(src) as r:
        assert r.stream.codec_context.name == "h264" and sum(1 for _ in r.frames()) == 10
    assert any("cover picture mjpeg" in n for n in r.info.notes)


@pytest.mark.parametrize("layout,kept", [("5.1", "5.1"), ("7.1", "7.1"), ("2.1", "stereo")])
def test_surround_sound_into_webm(tmp_path, layout, kept):
    """WebM's Opus keeps 5.1 and 7.1 (it was downmixed to stereo without a word); layouts Opus has no
    mapping for are downmixed, and the note says so."""
    src = tmp_path / "in.mkv"
    n = av.AudioLayout(layout).nb_channels
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("flac", rate=48000)
        a.layout = layout
        encode_frames(out, v, 5)
        for j in range(10):
            x = ((np.random.default_rng(j).random((1, 1024 * n)) - 0.5) * 2000).astype(np.int16)
            af = av.AudioFrame.from_ndarray(x, format="s16", layout=layout)
            af.sample_rate, af.pts = 48000, j * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    dst = tmp_path / "out.webm"
    w = remux(src, dst, **FAST)
    with av.open(str(dst)) as c:
        s = c.streams.audio[0]
        assert s.codec_context.name == "opus" and s.layout.name == kept
    assert any(("downmixed" in note) == (kept != layout) for note in w.notes if "libopus" in note)


def test_a_truncated_mp4_is_still_incomplete(tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=30, audio=None)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    with VideoReader(cut) as r:
        n = sum(1 for _ in r.frames())
    assert 0 < n < 30 and r.incomplete is not None and "ended" in r.incomplete


# -- 5. pixel aspect ratio with --out-size ---------------------------------------
@pytest.mark.parametrize("size,sar", [((1024, 576), None), ((360, 288), Fraction(64, 45)),
                                      ((640, 480), None)])
def test_out_size_sets_the_pixel_aspect_ratio(tmp_path, size, sar):
    """720x576 16:9 PAL: at its own shape the pixels stay 64:45; at another shape they are square."""
    info = VideoInfo(width=720, height=576, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None,
                     sar=Fraction(64, 45))
    dst = tmp_path / "o.mp4"
    w = VideoWriter(dst, info, size=size, **FAST)
    w.write(np.zeros((size[1], size[0], 3), np.uint8), 0)
    w.close()
    with av.open(str(dst)) as c:
        got = c.streams.video[0].sample_aspect_ratio
    assert (got if got and got != 1 else None) == sar
    assert any("square pixels" in n for n in w.notes) == (sar is None)


# -- 6. chapters, attachments, other streams --------------------------------------
CHAPTERS = [{"id": 1, "start": 0, "end": 200, "time_base": Fraction(1, 1000), "metadata": {"title": "One"}},
            {"id": 2, "start": 200, "end": 400, "time_base": Fraction(1, 1000), "metadata": {"title": "Two"}}]


def _chapters_and_font(out) -> None:
    out.set_chapters(CHAPTERS)
    out.add_attachment("font.ttf", "font/ttf", b"\x00font" * 10)


def test_chapters_and_attachments_are_copied(tmp_path):
    src = video_clip(tmp_path / "in.mkv", setup=_chapters_and_font)
    copy(src, tmp_path / "out.mkv")
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["One", "Two"]
        (att,) = [s for s in c.streams if s.type == "attachment"]
        assert att.metadata["filename"] == "font.ttf" and att.data == b"\x00font" * 10
    r, w = copy(src, tmp_path / "out.mp4")  # MP4 keeps the chapters, not the font
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["One", "Two"]
    assert any("attachments dropped (font.ttf)" in n for n in w.notes)


def test_dropped_streams_are_named_in_one_note(tmp_path):
    def klv(out):
        out.add_data_stream("klv")

    src = video_clip(tmp_path / "in.ts", fmt="mpegts", setup=klv)
    r, w = copy(src, tmp_path / "out.mp4")
    assert [n for n in w.notes if "dropped" in n] == [
        "dropped stream 1 (data klv): only the first video stream, audio, subtitles, attachments and chapters "
        "are kept"]
    r, w = copy(tmp_path / "out.mp4", tmp_path / "again.mp4")  # an MP4 chapter track is not a dropped stream
    assert not any("dropped" in n for n in w.notes)


# -- 7. the input named with file: ------------------------------------------------
def test_file_prefix_or_a_link_cannot_overwrite_the_input(tmp_path):
    src = make_clip(tmp_path / "in.mp4", audio=None)
    link = tmp_path / "link.mp4"
    os.link(src, link)
    for name in (f"file:{src}", str(link)):
        with pytest.raises(VidstyleError, match="overwrite the input"):
            check_target(src, True, name)
    check_target(tmp_path / "other.mp4", True, f"file:{src}")


# -- 8. segments: SIGTERM, leftovers, parts that fail to open ----------------------------
def test_sigterm_while_workers_paint_removes_the_parts_folder(tmp_path):
    """With several workers this process writes nothing while they paint: SIGTERM must still clean up."""
    src = make_clip(tmp_path / "in.mp4", n=12, audio=None)
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        import vidstyle.segments as seg
        import vidstyle.segments.run as seg_run
        from vidstyle.errors import Terminated
        from vidstyle.options import EncodeOptions, TemporalOptions

        class Job:
            label, temporal, encode = "x", TemporalOptions(), EncodeOptions(codec="libx264")

        def tasks(executor, fn, shared, tasks, **kw):
            assert kw["workers"] == 2
            Path(tasks[0][1][2]).write_bytes(b"half a part")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        seg_run.run_tasks = tasks
        try:
            seg.stylize_segments({str(src)!r}, {str(tmp_path / "out.mp4")!r}, Job(), segments=2, workers=2)
        except Terminated as e:
            sys.exit(e.exit_code)
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 128 + 15, p.stderr
    assert list(tmp_path.glob(".out.parts-*")) == []


def test_parts_folders_of_runs_that_are_gone_are_removed(tmp_path):
    from vidstyle.segments import remove_stale_parts

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".out.parts-{int(gone.stdout)}"
    alive = tmp_path / ".out.parts-1"  # init: always running
    other = tmp_path / f".other.parts-{int(gone.stdout)}"
    for d in (dead, alive, other):
        d.mkdir()
        (d / "part0000.mp4").write_bytes(b"x")
    assert remove_stale_parts(tmp_path / "out.mp4") == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


def test_join_parts_closes_the_parts_it_opened_when_one_fails(tmp_path, monkeypatch):
    import vidstyle.io.protocols as protocols
    from vidstyle.segments import join_parts

    src = make_clip(tmp_path / "in.mp4", audio=None)
    real_open = protocols.open_container
    closed = []

    class Part:
        def close(self):
            closed.append(self)

    def open_container(path, *args, **kw):
        if "part0" in str(path):
            return Part()
        if "part1" in str(path):
            raise VidstyleError(f"cannot read {path}")
        return real_open(path, *args, **kw)

    monkeypatch.setattr(protocols, "open_container", open_container)
    with pytest.raises(VidstyleError, match="part1"):
        join_parts(str(src), [tmp_path / "part0.mp4", tmp_path / "part1.mp4"], tmp_path / "out.mp4")
    assert len(closed) == 1
