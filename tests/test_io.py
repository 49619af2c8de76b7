"""VideoReader / VideoWriter on tiny clips: timestamps, aspect, colour, sizes, errors, protocols, partial files,
signals, interlacing and rotation. No style network: frames go from the reader straight to the writer."""
from __future__ import annotations

import errno
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import audio_hashes, make_clip, pattern, video_pts
from vidstyle.errors import Terminated, VidstyleError
from vidstyle.io.reader import VideoInfo, VideoReader
from vidstyle.io.atomic import AtomicPath, remove_stale_partials
from vidstyle.io.writer import VideoWriter

ROOT = Path(__file__).resolve().parents[1]
FAST = {"preset": "ultrafast", "crf": 10}


# -- helpers -------------------------------------------------------------------
def encode(path: Path, frames: list[np.ndarray], fps: int = 25, codec: str = "libx264", pix_fmt: str = "yuv420p",
           fmt: str | None = None, options: dict | None = None, tag=None) -> Path:
    """Write RGB ``frames`` with PyAV; ``tag(stream)`` may set aspect, colour or rotation first."""
    tb = Fraction(1, fps)
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream(codec, rate=fps)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = pix_fmt
        v.time_base = v.codec_context.time_base = tb
        v.options = {"preset": "ultrafast", "crf": "10"} if options is None and codec == "libx264" else (options or {})
        if tag:
            tag(v)
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = i, tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def clip(path: Path, w: int = 64, h: int = 48, n: int = 8, **kw) -> Path:
    return encode(path, [pattern(i, w, h) for i in range(n)], **kw)


def copy(src: Path, dst: Path, reader_kw: dict | None = None, **writer_kw) -> tuple[VideoReader, VideoWriter]:
    """Reader -> writer without painting; returns both (closed)."""
    with VideoReader(src, **(reader_kw or {})) as r:
        w = VideoWriter(dst, r.info, copy_streams=r.other_streams, overwrite=True, **{**FAST, **writer_kw})
        try:
            for f in r.frames(on_packet=w.queue_packet):
                w.write(f.rgb, f.pts)
            w.close()
        except BaseException:
            w.abort()
            raise
    return r, w


def first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as c:
        return next(c.decode(video=0))


def partials(dst: Path) -> list[Path]:
    return list(dst.parent.glob(f".{dst.stem}.partial-*"))


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# -- 1. inputs without timestamps ---------------------------------------------
def test_raw_h264_is_timed_at_its_frame_rate(tmp_path):
    src = clip(tmp_path / "in.h264", n=10, fps=10, fmt="h264")
    with av.open(str(src)) as c:  # the premise: the raw stream has no timestamps
        assert all(f.pts is None for f in c.decode(video=0))
    dst = tmp_path / "out.mp4"
    r, w = copy(src, dst)
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * s.time_base) for f in c.decode(s)]
        duration = float(s.duration * s.time_base)
    assert len(times) == 10 and all(b > a for a, b in zip(times, times[1:]))
    assert times == pytest.approx([i / 10 for i in range(10)], abs=1e-3)
    assert duration == pytest.approx(1.0, abs=0.02)
    assert not r.info.timestamps and r.info.fps == 10 and any("no timestamps" in n for n in w.notes)


def test_writer_times_frames_without_pts_at_the_frame_rate(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 90000), fps=Fraction(20), frames=0, duration=None)
    w = VideoWriter(tmp_path / "o.mkv", info, **FAST)
    for i in range(4):
        w.write(pattern(i, 64, 48), None)
    w.close()
    with av.open(str(tmp_path / "o.mkv")) as c:
        s = c.streams.video[0]
        assert [round(float(f.pts * s.time_base), 3) for f in c.decode(s)] == [0.0, 0.05, 0.1, 0.15]


# -- 2. pixel aspect ratio and colour tags -------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_pixel_aspect_ratio_is_carried(tmp_path, suffix):
    def tag(v):
        v.codec_context.sample_aspect_ratio = Fraction(16, 11)
    src = clip(tmp_path / f"in{suffix}", tag=tag)
    r, _ = copy(src, tmp_path / f"out{suffix}")
    with av.open(str(tmp_path / f"out{suffix}")) as c:
        assert c.streams.video[0].sample_aspect_ratio == Fraction(16, 11)
    assert r.info.sar == Fraction(16, 11)


@pytest.mark.parametrize("color_range", [1, 2])  # limited (MPEG) and full (JPEG) range
def test_bt709_colour_tags_and_matrix_are_carried(tmp_path, color_range):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:] = (210, 40, 30)  # red and blue: far apart in BT.601 and BT.709
    rgb[:, 32:] = (30, 60, 220)
    src = tmp_path / "hd.mkv"  # converted with the BT.709 matrix and tagged, as an HD camera file is
    tb = Fraction(1, 25)
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "0"}
        cc = v.codec_context
        cc.color_primaries = cc.color_trc = cc.colorspace = 1
        cc.color_range = color_range
        for i in range(4):
            f = av.VideoFrame.from_ndarray(rgb).reformat(format="yuv420p", dst_colorspace="ITU709",
                                                         dst_color_range=color_range)
            f.color_primaries = f.color_trc = f.colorspace = 1
            f.pts, f.time_base = i, tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    dst = tmp_path / "out.mp4"
    copy(src, dst, crf=0)
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (1, 1, 1, color_range)
        f = next(c.decode(video=0))
        assert (f.color_primaries, f.color_trc, f.colorspace, f.color_range) == (1, 1, 1, color_range)
    # the output decodes (by its own tags) to the colours of the input
    a = first_frame(src).to_ndarray(format="rgb24").astype(int)
    b = first_frame(dst).to_ndarray(format="rgb24").astype(int)
    assert np.abs(a - b)[:, 4:28].mean() < 3 and np.abs(a - b)[:, 36:60].mean() < 3


def test_untagged_input_stays_untagged(tmp_path):
    src = clip(tmp_path / "in.mp4")
    copy(src, tmp_path / "out.mp4")
    f = first_frame(tmp_path / "out.mp4")
    assert (f.color_primaries, f.color_trc, f.colorspace) == (2, 2, 2)


# -- 3. odd sizes --------------------------------------------------------------
def test_odd_size_is_padded_to_even_420(tmp_path):
    src = clip(tmp_path / "odd.mp4", w=63, h=47, pix_fmt="yuv444p")
    dst = tmp_path / "out.mp4"
    _, w = copy(src, dst)
    assert w.size == (64, 48) and any("padded to 64x48" in n for n in w.notes)
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert s.codec_context.pix_fmt == "yuv420p" and (s.width, s.height) == (64, 48)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == 8
    src0 = first_frame(src).to_ndarray(format="rgb24").astype(int)
    assert np.abs(frames[0][:47, :63].astype(int) - src0).mean() < 4  # the picture is where it was
    assert np.abs(frames[0][:47, 63].astype(int) - frames[0][:47, 62].astype(int)).mean() < 4  # edge repeated


def test_chroma_444_keeps_odd_size(tmp_path):
    src = clip(tmp_path / "odd.mp4", w=63, h=47, pix_fmt="yuv444p")
    _, w = copy(src, tmp_path / "out.mkv", chroma="444")
    f = first_frame(tmp_path / "out.mkv")
    assert (f.width, f.height, f.format.name) == (63, 47, "yuv444p") and w.size == (63, 47)


def test_bad_chroma_is_one_line(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    with pytest.raises(VidstyleError) as e:
        VideoWriter(tmp_path / "o.mp4", info, chroma="422")
    assert "chroma" in one_line(e)


# -- 4. corrupt packets and truncated files --------------------------------------
def _intra_clip(path: Path, n: int = 12) -> Path:
    frames = [np.random.RandomState(i).randint(0, 255, (48, 64, 3), np.uint8) for i in range(n)]
    return encode(path, frames, options={"preset": "ultrafast", "g": "1"})


def test_corrupt_packet_is_skipped_with_a_count(tmp_path):
    src = _intra_clip(tmp_path / "in.mp4")
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(src.read_bytes())
    pos, size = packets[5]
    data[pos:pos + size] = b"\xff" * size
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    dst = tmp_path / "out.mp4"
    r, w = copy(bad, dst)
    with av.open(str(dst)) as c:
        assert len(list(c.decode(video=0))) == 11  # all the other frames
    assert r.decode_errors == 1 and r.incomplete is None
    assert any("skipped 1 corrupt video packet" in n for n in w.notes)


def test_truncated_file_is_still_incomplete(tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=30, audio=None)  # moov first (faststart), so a cut file opens
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    with VideoReader(cut) as r:
        n = sum(1 for _ in r.frames())
    assert 0 < n < 30 and r.incomplete is not None and "ended" in r.incomplete


# -- 5. protocols ----------------------------------------------------------------
@pytest.mark.parametrize("url", ["concat:{a}|{a}", "subfile,,start,0,end,400,,:{a}", "ftp://example.com/x.mp4",
                                 "gopher://example.com/x.mp4", "file+concat:{a}"])
def test_protocol_not_on_the_whitelist_is_refused(tmp_path, url):
    a = clip(tmp_path / "a.mp4")
    with pytest.raises(VidstyleError) as e:
        VideoReader(url.format(a=a))
    assert "not allowed" in one_line(e)


def test_protocol_whitelist_can_be_widened_and_is_enforced_by_ffmpeg(tmp_path):
    a = clip(tmp_path / "a.mp4", n=5)
    with VideoReader(f"concat:{a}", allow_protocols=["concat", "file"]) as r:
        assert sum(1 for _ in r.frames()) == 5
    # concat allowed but not file: FFmpeg itself refuses to open the inner file
    with pytest.raises(VidstyleError) as e:
        VideoReader(f"concat:{a}", allow_protocols=["concat"])
    assert "cannot read" in one_line(e)


def test_local_file_with_a_protocol_like_name_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip(tmp_path / "concat:a.mp4", n=4)
    with VideoReader("concat:a.mp4") as r:
        assert sum(1 for _ in r.frames()) == 4


# -- 6. temporary file names ------------------------------------------------------
def test_temp_names_are_unpredictable_hidden_and_keep_the_suffix(tmp_path):
    dst = tmp_path / "out.mp4"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    old_style = tmp_path / f".out.partial-{os.getpid()}.mp4"  # the old, guessable name
    old_style.symlink_to(victim)
    a, b = AtomicPath(dst), AtomicPath(dst)
    assert a.tmp != b.tmp and a.tmp.parent == tmp_path
    for t in (a.tmp, b.tmp):
        assert re.fullmatch(rf"\.out\.partial-{os.getpid()}-[a-z0-9_]{{8}}\.mp4", t.name), t.name
        assert t.stat().st_mode & 0o777 == 0o600  # nobody else can read a file being written
    b.discard()
    a.tmp.write_bytes(b"data")
    a.commit()
    umask = os.umask(0o022)
    os.umask(umask)
    assert dst.read_bytes() == b"data" and dst.stat().st_mode & 0o777 == 0o666 & ~umask
    assert victim.read_text() == "keep me" and not b.tmp.exists()


def test_writer_uses_a_fresh_temp_file(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    w = VideoWriter(tmp_path / "o.mp4", info, **FAST)
    tmp = w._atomic.tmp
    assert tmp.exists() and tmp.name.startswith(".o.partial-") and tmp.suffix == ".mp4"
    w.write(pattern(0, 64, 48), 0)
    w.close()
    assert not tmp.exists() and not partials(tmp_path / "o.mp4")


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_a_video_that_starts_between_milliseconds_keeps_its_timestamps(tmp_path, suffix):
    """MP4 and MOV keep a track's start in the edit list, in the movie's timescale (1000 by default): frame 28
    of a 30 fps clip in 1/15360 (14336, 0.9333 s) came back at 14331. The writer uses the input's timescale."""
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 15360), fps=Fraction(30), frames=0, duration=None)
    w = VideoWriter(tmp_path / f"o{suffix}", info, **FAST)
    want = [i * 512 for i in range(28, 40)]
    for t in want:
        w.write(pattern(t, 64, 48), t)
    w.close()
    assert video_pts(tmp_path / f"o{suffix}") == want


# -- 7. container and codec --------------------------------------------------------
def test_gif_output(tmp_path):
    src = clip(tmp_path / "in.mp4", w=63, h=47, n=9, pix_fmt="yuv444p")
    r, w = copy(src, tmp_path / "out.gif")
    with av.open(str(tmp_path / "out.gif")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "gif"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == 9 and frames[0].shape == (47, 63, 3)
    ref = first_frame(src).to_ndarray(format="rgb24").astype(int)
    assert np.abs(frames[0].astype(int) - ref).mean() < 12  # a palette per frame keeps the colours close


def test_codec_the_container_cannot_hold_is_one_line(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    with pytest.raises(VidstyleError) as e:
        VideoWriter(tmp_path / "o.gif", info, codec="libx264")
    assert "gif" in one_line(e) and "libx264" in str(e.value)
    with pytest.raises(VidstyleError) as e:
        VideoWriter(tmp_path / "o.xyz", info)
    assert ".mp4" in one_line(e) and ".gif" in str(e.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix, kwargs, word", [
    (".mp4", {"preset": "bogus"}, "--preset bogus"),
    (".mp4", {"size": (70000, 16)}, "--out-size 70000x16"),
    (".webm", {"size": (70000, 16)}, "--out-size 70000x16"),
    (".gif", {"size": (70000, 16)}, "--out-size 70000x16"),
])
def test_settings_the_encoder_refuses_are_one_line_at_once(tmp_path, suffix, kwargs, word):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    with pytest.raises(VidstyleError) as e:
        VideoWriter(tmp_path / f"o{suffix}", info, **kwargs)  # before any frame is written
    assert word in one_line(e) and "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())


# -- 8. full disk ----------------------------------------------------------------------
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    dst = tmp_path / "o.mp4"
    w = VideoWriter(dst, info, **FAST)
    real = w.container

    class FullDisk:  # the real container, except that muxing fails as on a full disk
        def __getattr__(self, name):
            return getattr(real, name)

        def mux(self, packets):
            raise OSError(errno.ENOSPC, "No space left on device")

    w.container = FullDisk()
    with pytest.raises(VidstyleError) as e:
        for i in range(50):
            w.write(pattern(i, 64, 48), i)
        w.close()
    assert "no space left" in one_line(e)
    assert not dst.exists() and not partials(dst)


# -- 9. signals and stale partial files ----------------------------------------------
_SLOW_WRITE = textwrap.dedent("""
    import sys, time
    from fractions import Fraction
    import numpy as np
    from vidstyle.errors import Terminated
    from vidstyle.io.reader import VideoInfo
    from vidstyle.io.writer import VideoWriter

    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)

    def main(abort):
        w = VideoWriter(sys.argv[1], info, preset="ultrafast")
        try:
            for i in range(100000):
                w.write(np.full((48, 64, 3), i % 256, np.uint8), i)
                if i == 3:
                    print("writing", flush=True)
                time.sleep(0.01)
        except BaseException:
            if abort:  # as api.stylize_video does; without it, the writer cleans up at exit
                w.abort()
            raise

    try:
        main(sys.argv[2] == "abort")
    except Terminated as e:
        print(e, flush=True)
        sys.exit(e.exit_code)
""")


@pytest.mark.parametrize("signum,abort", [(signal.SIGTERM, "abort"), (signal.SIGHUP, "no-abort")])
def test_sigterm_and_sighup_remove_the_partial_file(tmp_path, signum, abort):
    dst = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, str(dst), abort], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            # the default disposition, as a shell gives it: under nohup SIGHUP is ignored,
                            # and the writer rightly leaves an ignored signal alone
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        assert partials(dst)  # the premise: a partial file exists while writing
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert signal.Signals(signum).name in out
    assert not dst.exists() and not partials(dst)


def test_signal_handlers_are_restored_and_ignored_signals_left_alone(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    old_term, old_hup = signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        w = VideoWriter(tmp_path / "o.mp4", info, **FAST)
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # nohup stays nohup
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        w.abort()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert not partials(tmp_path / "o.mp4")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partials_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    dst = tmp_path / "out.mp4"
    dead, alive = _dead_pid(), os.getppid()
    files = {
        "dead": tmp_path / f".out.partial-{dead}-abcd1234.mp4",
        "alive_old": tmp_path / f".out.partial-{alive}-abcd1234.mp4",
        "alive_young": tmp_path / f".out.partial-{alive}-young123.mp4",
        "locked": tmp_path / f".out.partial-{dead}-locked12.mp4",
        "mine": tmp_path / f".out.partial-{os.getpid()}-mine1234.mp4",
        "user": tmp_path / ".out.partial-notes.mp4",
        "other_target": tmp_path / f".other.partial-{dead}-abcd1234.mp4",
        "other_suffix": tmp_path / f".out.partial-{dead}-abcd1234.mkv",
    }
    for p in files.values():
        p.write_bytes(b"x")
    hour_ago = time.time() - 3600
    for key in ("alive_old", "user", "other_target", "other_suffix"):
        os.utime(files[key], (hour_ago, hour_ago))
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(files["locked"])], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        removed = remove_stale_partials(dst)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(removed) == sorted([files["dead"], files["alive_old"]])
    assert {k for k, p in files.items() if p.exists()} == {"alive_young", "locked", "mine", "user", "other_target",
                                                           "other_suffix"}
    AtomicPath(dst).discard()  # a new run to the target cleans up too
    assert not files["locked"].exists()


# -- 10. interlaced input ---------------------------------------------------------------
def _combed_frames(n: int = 8, w: int = 64, h: int = 48) -> list[np.ndarray]:
    """A bar moving between the two fields of each frame: the comb pattern of interlaced motion."""
    frames = []
    for i in range(n):
        rgb = np.full((h, w, 3), 20, np.uint8)
        x = 4 + 5 * i
        rgb[0::2, x:x + 10] = 230  # top field
        rgb[1::2, x + 6:x + 16] = 230  # bottom field, later in time
        frames.append(rgb)
    return frames


def _comb(rgb: np.ndarray) -> float:
    y = rgb.astype(float).mean(-1)
    return float(np.abs(y[1:-1] - (y[:-2] + y[2:]) / 2).mean())


def test_interlaced_input_is_deinterlaced_with_bwdif(tmp_path):
    src = encode(tmp_path / "i.mkv", _combed_frames(),
                 options={"preset": "ultrafast", "crf": "4", "x264-params": "interlaced=1:tff=1"})
    with VideoReader(src) as r:
        on = list(r.frames())
    with VideoReader(src, deinterlace=False) as r_off:
        off = list(r_off.frames())
    assert r.info.interlaced and r_off.info.interlaced
    assert any("bwdif" in n for n in r.info.notes)
    assert len(on) == len(off) == 8
    assert [f.pts for f in on] == [f.pts for f in off]
    assert np.mean([_comb(f.rgb) for f in on]) < 0.5 * np.mean([_comb(f.rgb) for f in off])


def test_progressive_input_is_not_filtered(tmp_path):
    src = clip(tmp_path / "p.mp4")
    with VideoReader(src) as r:
        frames = list(r.frames())
    assert not r.info.interlaced and r._graph is None and len(frames) == 8


# -- 11. rotation ------------------------------------------------------------------------
def displayed(rgb: np.ndarray, matrix: tuple[int, ...] | None) -> np.ndarray:
    """The picture as a player shows it: pixel (x, y) goes to (a*x + c*y, b*x + d*y), shifted to start at 0."""
    if matrix is None:
        return rgb
    a, b, _, c, d, _ = (round(v / 65536) for v in matrix[:6])
    ys, xs = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]]
    xd, yd = a * xs + c * ys, b * xs + d * ys
    xd, yd = xd - xd.min(), yd - yd.min()
    out = np.zeros((yd.max() + 1, xd.max() + 1, 3), rgb.dtype)
    out[yd, xd] = rgb[ys, xs]
    return out


def _matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    data = frame.side_data.get("DISPLAYMATRIX")
    return struct.unpack("9i", bytes(data)) if data is not None else None


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
@pytest.mark.parametrize("rotation", [-90, 180, 270])
def test_rotation_by_pixel_content(tmp_path, rotation, suffix):
    rgb = np.full((48, 64, 3), 40, np.uint8)
    rgb[:12, :16] = (230, 20, 20)  # red block top left
    rgb[36:, 56:] = (20, 20, 230)  # small blue block bottom right
    frames = [np.clip(rgb.astype(int) + i, 0, 255).astype(np.uint8) for i in range(8)]
    src = encode(tmp_path / "in.mp4", frames, tag=lambda v: v.set_display_rotation(rotation))
    f_in = first_frame(src)
    assert _matrix(f_in) is not None
    want = displayed(f_in.to_ndarray(format="rgb24"), _matrix(f_in))
    assert want.shape == ((64, 48, 3) if rotation % 180 else (48, 64, 3))
    dst = tmp_path / f"out{suffix}"
    _, w = copy(src, dst)
    f_out = first_frame(dst)
    got = displayed(f_out.to_ndarray(format="rgb24"), _matrix(f_out))
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 4
    if suffix == ".ts":  # no display matrix in MPEG-TS: the pixels are turned, with a note
        assert _matrix(f_out) is None and any("rotation" in n for n in w.notes)
    else:  # stored pixels untouched, rotation kept as metadata
        assert (f_out.width, f_out.height) == (64, 48) and f_out.rotation == f_in.rotation and not w.notes


# -- 12. a range of the video ----------------------------------------------------------
GOP10 = {"preset": "ultrafast", "crf": "4", "g": "10", "keyint_min": "10", "sc_threshold": "0"}


def _all_frames(src: Path, **kw) -> list:
    with VideoReader(src, **kw) as r:
        return list(r.frames())


def test_range_in_the_middle_gives_exactly_its_frames(tmp_path):
    src = clip(tmp_path / "gop.mp4", n=40, options=GOP10)  # keyframes at 0, 10, 20, 30
    whole = _all_frames(src)
    pts = [f.pts for f in whole]
    with VideoReader(src) as r:
        got = list(r.frames(start_pts=pts[13], end_pts=pts[27]))  # from within one GOP into another
        assert r.incomplete is None
    assert [f.pts for f in got] == pts[13:27] and [f.index for f in got] == list(range(14))
    assert all(np.array_equal(f.rgb, w.rgb) for f, w in zip(got, whole[13:27]))
    with VideoReader(src) as r:  # a range that starts on a keyframe, and one to the end (no truncation note)
        assert [f.pts for f in r.frames(start_pts=pts[10], end_pts=pts[20])] == pts[10:20]
        assert [f.pts for f in r.frames(start_pts=pts[35])] == pts[35:] and r.incomplete is None


def test_range_of_a_file_that_seeks_past_keyframes(tmp_path):
    """MPEG-TS seeks to any packet, not only keyframes: the reader goes back until decoding starts early enough."""
    src = clip(tmp_path / "gop.ts", n=40, fmt="mpegts", options=GOP10)
    whole = _all_frames(src)
    pts = [f.pts for f in whole]
    with VideoReader(src) as r:
        got = list(r.frames(start_pts=pts[35], end_pts=pts[39]))
    assert [f.pts for f in got] == pts[35:39]
    assert all(np.array_equal(f.rgb, w.rgb) for f, w in zip(got, whole[35:39]))


@pytest.mark.parametrize("suffix", [".mkv", ".ts"])
def test_deinterlaced_range_matches_the_whole_run(tmp_path, suffix):
    """bwdif sees the frames either side of the range, so the frames are the ones a whole run gives."""
    src = encode(tmp_path / f"i{suffix}", _combed_frames(40), fmt="mpegts" if suffix == ".ts" else None,
                 options={**GOP10, "x264-params": "interlaced=1:tff=1"})
    whole = _all_frames(src)
    pts = [f.pts for f in whole]
    for a, b in [(10, 20), (13, 27), (0, 5)]:  # on a keyframe (bwdif needs the GOP before), inside a GOP, the start
        with VideoReader(src) as r:
            got = list(r.frames(start_pts=pts[a], end_pts=pts[b]))
            assert r.info.interlaced and r._graph is not None
        assert [f.pts for f in got] == pts[a:b]
        assert all(np.array_equal(f.rgb, w.rgb) for f, w in zip(got, whole[a:b])), (a, b)
    assert np.mean([_comb(f.rgb) for f in whole]) < 0.5 * np.mean([_comb(f.rgb) for f in _all_frames(
        src, deinterlace=False)])


def test_range_needs_timestamps(tmp_path):
    src = clip(tmp_path / "in.h264", n=4, fmt="h264")
    with VideoReader(src) as r, pytest.raises(VidstyleError) as e:
        next(r.frames(start_pts=1))
    assert "timestamps" in one_line(e)


# -- 13. encoder options -----------------------------------------------------------------
def test_encoder_options_reach_the_encoder(tmp_path):
    info = VideoInfo(width=64, height=48, time_base=Fraction(1, 25), fps=Fraction(25), frames=0, duration=None)
    w = VideoWriter(tmp_path / "o.mp4", info, **FAST, encoder_options={"g": 3, "x264-params": "stitchable=1"})
    assert w.vstream.options["g"] == "3" and w.vstream.options["preset"] == "ultrafast"
    for i in range(9):
        w.write(pattern(i, 64, 48), i)
    w.close()
    with av.open(str(tmp_path / "o.mp4")) as c:
        keys = [i for i, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe]
    assert keys == [0, 3, 6]  # decode order is presentation order here: no B-frames with ultrafast


def test_copy_video_mode_remuxes_packets(tmp_path):
    """``copy_video``: the packets of another file as they are, with the source's audio and rotation."""
    src = make_clip(tmp_path / "src.mp4", n=10, rotation=90)
    encoded = make_clip(tmp_path / "enc.mp4", n=10, audio=None)
    with VideoReader(src) as r:
        info = r.info
    with av.open(str(src)) as orig, av.open(str(encoded)) as part:
        w = VideoWriter(tmp_path / "out.mp4", info, copy_video=part.streams.video[0],
                        copy_streams=list(orig.streams.audio))
        for p in part.demux(video=0):
            if p.dts is not None:
                w.write_packet(p)
        for p in orig.demux(audio=0):
            if p.dts is not None:
                w.queue_packet(p)
        w.close()
    assert video_pts(tmp_path / "out.mp4") == video_pts(encoded)
    assert audio_hashes(tmp_path / "out.mp4") == audio_hashes(src)
    assert first_frame(tmp_path / "out.mp4").rotation == 90 and w.frames_written == 10


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc (Linux)")
def test_readers_leave_no_decoding_threads_behind(tmp_path):
    """Each closed reader frees FFmpeg's decoding threads at once, not at the next garbage collection
    (live --loop reopens a short clip every few seconds: the threads piled up by the hundred)."""
    import gc
    src = make_clip(tmp_path / "rot.mp4", w=64, h=48, n=20, rotation=90)  # with a display matrix to read

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    def read_once():
        with VideoReader(src) as r:
            assert r.info.rotation == 90 and r.info.display_matrix is not None
            return sum(1 for _ in r.frames())

    read_once()  # whatever a first open starts for good (codec tables, pools)
    gc.collect()
    gc.disable()  # the point: no collection may be needed
    try:
        before = threads()
        counts = [read_once() for _ in range(6)]
        after = threads()
    finally:
        gc.enable()
    assert counts == [20] * 6
    assert after <= before + 1, (before, after)
