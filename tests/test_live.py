"""vidstyle live: recording, the UDP feed, the virtual camera, keys, newest-frame capture, the window under Xvfb."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import frames_rgb, make_clip, pattern, video_times
from vidstyle.cli import app
from vidstyle.live.capture import Capture, Latest
from vidstyle.live.keys import LiveState, handle_key
from vidstyle.live.loop import LiveOptions, run_live
from vidstyle.options import PaintOptions
from vidstyle.live.sinks import missing_backend_message

runner = CliRunner()


@pytest.fixture
def live_clip(tmp_path) -> Path:
    return make_clip(tmp_path / "cam.mp4", w=64, h=48, n=12, fps=12, audio=None)


def test_record_twenty_frames_at_the_asked_size(tmp_path, live_clip, model_file):
    out = tmp_path / "rec.mp4"
    r = runner.invoke(app, ["live", "--source", str(live_clip), "--loop", "--no-preview", "--frames", "20",
                            "--record", str(out), "--width", "80", "--height", "60", "--style", str(model_file),
                            "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["frames"] == 20 and res["recordings"] == [str(out)]
    frames = frames_rgb(out)
    assert len(frames) == 20
    assert {f.shape for f in frames} == {(60, 80, 3)}
    times = video_times(out)
    assert all(b > a for a, b in zip(times, times[1:]))  # capture times, strictly increasing
    assert 0.5 < times[-1] < 10  # 20 frames from a 12 fps source take more than a second and a half
    assert not list(tmp_path.glob(".*partial*"))


def test_recording_is_finalised_when_the_source_fails(tmp_path, live_clip, model_file, monkeypatch):
    """An error in the middle still leaves a complete, playable recording of what was painted."""
    import vidstyle.live.loop as loop

    calls = {"n": 0}
    real = loop.LiveSession._paint

    def flaky(self, rgb):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a frame
        return real(self, rgb)

    monkeypatch.setattr(loop.LiveSession, "_paint", flaky)
    out = tmp_path / "rec.mp4"
    r = run_live(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False, loop=True,
                                  record=out, frames=50))
    assert r.frames == 5 and r.recordings == [str(out)]
    assert len(frames_rgb(out)) == 5


def test_existing_record_target_refused(tmp_path, live_clip, model_file):
    out = tmp_path / "rec.mp4"
    out.write_bytes(b"precious")
    r = runner.invoke(app, ["live", "--source", str(live_clip), "--no-preview", "--frames", "2", "--record", str(out),
                            "--style", str(model_file)])
    assert r.exit_code == 2
    assert "exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("source,message", [("/nonexistent/clip.mp4", "source not found"),
                                            ("9", "cannot open camera 9")])
def test_bad_source_is_one_line(source, message, model_file):
    r = runner.invoke(app, ["live", "--source", source, "--no-preview", "--frames", "1", "--style", str(model_file)])
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert r.stderr.strip().startswith("error:") and "Traceback" not in r.output


def test_serve_udp_read_back_on_loopback(live_clip, model_file):
    """The feed as a receiver gets it: the test binds the port first (no sleep, no race with the sender's start,
    however long the session takes to start), keeps every datagram until the session is over, then decodes."""
    import io

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    port = sock.getsockname()[1]
    chunks, over = [], threading.Event()

    def receive():
        while True:
            try:
                chunks.append(sock.recv(65536))
            except socket.timeout:
                if over.is_set():
                    return

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    try:
        r = run_live(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False,
                                      loop=True, frames=36, strength=0.5, serve=f"udp://127.0.0.1:{port}"))
    finally:
        over.set()
        t.join(timeout=60)
        sock.close()
    assert r.served_frames == 36
    with av.open(io.BytesIO(b"".join(chunks)), format="mpegts") as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) >= 12, len(got)  # a keyframe each second: decoding starts within the first 12
    assert {g.shape for g in got} == {(48, 64, 3)}
    assert np.std(got[-1]) > 5  # a real picture (half input, half style), not a blank


def test_virtual_camera_through_a_fake_backend(live_clip, model_file):
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    received = []

    class FakeBackend:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            self.info = {"width": width, "height": height, "fps": fps, "fourcc": fourcc, "device": device}
            received.append(self.info)

        def send(self, frame):
            received.append(frame.copy())

        def close(self):
            received.append("closed")

        def device(self):
            return self.info["device"] or "fake0"

        def native_fourcc(self):
            return None

    pyvirtualcam.register_backend("vidstyle-test", FakeBackend)
    r = run_live(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False, loop=True,
                                  frames=8, virtual_cam=True, cam_backend="vidstyle-test", cam_device="fake7"))
    info, frames, last = received[0], received[1:-1], received[-1]
    assert info["width"] == 64 and info["height"] == 48 and info["device"] == "fake7"
    assert info["fps"] == pytest.approx(12)
    from pyvirtualcam.util import encode_fourcc
    assert info["fourcc"] == encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
    assert len(frames) == 8 == r.virtual_cam_frames
    assert all(f.dtype == np.uint8 and f.size == 64 * 48 * 3 for f in frames)
    assert last == "closed"
    # what the camera got is the stylized picture, not the input
    first = frames[0].reshape(48, 64, 3).astype(int)
    assert np.abs(first - pattern(0, 64, 48).astype(int)).mean() > 10


def test_a_failing_virtual_camera_is_one_line_and_frames_of_another_size_fit_it():
    """The camera's size is fixed when it opens: a frame of another size is scaled to it; a camera that
    fails while sending (unplugged, OBS closed) ends the session with one line, not a traceback."""
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    from vidstyle.errors import VidstyleError
    from vidstyle.live.sinks import VirtualCam
    got = []

    class Flaky:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            pass

        def send(self, frame):
            if len(got) == 2:
                raise OSError(19, "No such device")
            got.append(frame.shape)

        def close(self):
            pass

        def device(self):
            return "flaky0"

        def native_fourcc(self):
            return None

    pyvirtualcam.register_backend("vidstyle-flaky", Flaky)
    cam = VirtualCam((64, 48), 30, backend="vidstyle-flaky")
    cam.send(np.zeros((48, 64, 3), np.uint8), 0.0)
    cam.send(np.zeros((96, 160, 3), np.uint8), 0.1)
    assert [int(np.prod(s)) for s in got] == [64 * 48 * 3] * 2
    with pytest.raises(VidstyleError, match="virtual camera flaky0 failed: .*No such device"):
        cam.send(np.zeros((48, 64, 3), np.uint8), 0.2)
    cam.close()


def test_duration_zero_is_refused_not_endless(live_clip):
    res = runner.invoke(app, ["live", "--source", str(live_clip), "--no-preview", "--duration", "0"])
    assert res.exit_code == 2 and "--duration" in res.output


def test_missing_virtual_camera_backend_stops_at_once(live_clip, model_file, monkeypatch, tmp_path):
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {})
    out = tmp_path / "rec.mp4"
    t0 = time.perf_counter()
    r = runner.invoke(app, ["live", "--source", str(live_clip), "--no-preview", "--virtual-cam", "--loop",
                            "--record", str(out), "--style", str(model_file), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no virtual camera" in lines[0]
    if sys.platform.startswith("linux"):
        assert "v4l2loopback" in lines[0]
    assert time.perf_counter() - t0 < 30 and not out.exists()


def test_missing_backend_message_per_os(monkeypatch):
    assert "v4l2loopback" in missing_backend_message(system="Linux")
    assert "OBS" in missing_backend_message(system="Darwin")
    assert "OBS" in missing_backend_message(system="Windows")
    assert "\n" not in missing_backend_message("line one\nline two", system="Linux")
    from vidstyle.errors import VidstyleError
    from vidstyle.live.sinks import VirtualCam
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # not installed
    with pytest.raises(VidstyleError, match="pip install pyvirtualcam"):
        VirtualCam((64, 48), 30)


def test_keys_pure_function():
    s = LiveState(n_styles=3)
    assert handle_key(s, -1) is s
    assert handle_key(s, ord("n")).style == 1
    assert handle_key(handle_key(s, ord("n")), ord("n")).style == 2
    assert handle_key(s, ord("p")).style == 2  # wraps
    assert handle_key(s, ord("3")).style == 2
    assert handle_key(s, ord("9")) == s  # no ninth style
    assert handle_key(s, ord("[")).strength == 0.9
    assert handle_key(s, ord("]")).strength == 1.0  # clamped
    low = s
    for _ in range(15):
        low = handle_key(low, ord("["))
    assert low.strength == 0.0
    assert handle_key(s, ord("c")).preserve_color is True
    assert handle_key(handle_key(s, ord("c")), ord("c")).preserve_color is False
    assert handle_key(s, ord("t")).temporal and handle_key(s, ord("r")).recording
    assert handle_key(s, ord("f")).fullscreen and handle_key(s, ord("h")).show_help
    assert handle_key(s, ord("b")).side_by_side
    assert handle_key(handle_key(s, ord("s")), ord("s")).snapshots == 2
    assert handle_key(s, ord("q")).quit and handle_key(s, 27).quit and handle_key(s, ord("Q")).quit
    assert handle_key(s, ord("x")) == s
    assert s == LiveState(n_styles=3)  # the input state is never changed


def test_scripted_keys_drive_the_session(tmp_path, live_clip, model_file):
    """Snapshot, a recording started and stopped by r, and q, through the same key path as the window."""
    r = run_live(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False, loop=True,
                                  frames=40, snapshot_dir=tmp_path, keys={1: "s", 3: "r", 8: "r", 10: "q"}))
    assert r.frames == 11  # q after frame 11
    assert len(r.snapshots) == 1 and Path(r.snapshots[0]).parent == tmp_path
    from vidstyle.io.images import read_image
    assert read_image(r.snapshots[0]).shape == (48, 64, 3)
    assert len(r.recordings) == 1 and Path(r.recordings[0]).exists()
    assert len(frames_rgb(Path(r.recordings[0]))) == 5  # frames 4..8 (r pressed after frames 4 and 9)
    for p in r.recordings:
        os.unlink(p)


def test_capture_keeps_only_the_newest_frame():
    n = 60
    produced = []

    def fast_source(stop):
        for i in range(n):
            time.sleep(0.002)
            produced.append(i)
            yield np.full((4, 4, 3), i, np.uint8)

    taken = []
    with Capture(fast_source) as cap:
        while True:
            g = cap.latest.get(timeout=5)
            if g is None:
                break
            assert g.seq == len(produced) - 1 or g.seq >= produced[-1] - 1  # the newest when taken
            assert int(g.rgb[0, 0, 0]) == g.seq
            taken.append(g.seq)
            time.sleep(0.03)  # a slow painter
    assert taken == sorted(set(taken))  # never the same frame twice, never older
    assert taken[-1] == n - 1  # the last frame still arrives
    assert len(taken) < n / 3  # most frames were skipped, not queued
    assert cap.latest.dropped == n - len(taken)  # every frame was either taken or dropped: nothing piles up


def test_latest_slot_waits_and_ends():
    from vidstyle.live.capture import Grab
    slot = Latest()
    assert slot.get(timeout=0.05) is None
    slot.put(Grab(np.zeros(1), 0.0, 0))
    slot.put(Grab(np.zeros(1), 0.0, 1))
    assert slot.get().seq == 1 and slot.dropped == 1
    slot.close()
    assert slot.get(timeout=1) is None


# -- the real window, under Xvfb ------------------------------------------------------------------

def _xwd_rgb(path: Path) -> np.ndarray:
    """Read Xvfb's framebuffer file (XWD, 32 bits per pixel, LSB first) as (H, W, 3) RGB."""
    b = path.read_bytes()
    hdr = np.frombuffer(b[:100], ">u4")
    header_size, width, height, bpp, bpl, ncolors = hdr[0], hdr[4], hdr[5], hdr[11], hdr[12], hdr[19]
    assert bpp == 32, bpp
    off = int(header_size + ncolors * 12)
    img = np.frombuffer(b[off:off + int(bpl * height)], np.uint8).reshape(int(height), int(bpl) // 4, 4)
    return np.ascontiguousarray(img[:, :int(width), [2, 1, 0]])


@pytest.fixture
def xvfb(tmp_path):
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (.ci/run installs it with apt-get when it can)")
    fb = tmp_path / "fb"
    fb.mkdir()
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "640x480x24", "-fbdir", str(fb),
                             "-nolisten", "tcp"], pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        display = f.readline().strip()
    if not display:
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{display}", fb / "Xvfb_screen0"
    proc.terminate()
    proc.wait(10)


def test_preview_window_shows_the_stylized_frame(tmp_path, xvfb):
    """A real OpenCV window on a virtual screen: its pixels are the painted frame, and Ctrl-C finalises the recording."""
    import cv2

    from vidstyle.api import load_model
    from vidstyle.stylizer import Stylizer

    display, screen = xvfb
    w, h = 160, 120
    still = pattern(3, w, h)
    src = tmp_path / "still.mp4"
    with av.open(str(src), "w") as out:  # a still scene: every frame the same picture
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv444p", {"qp": "0", "preset": "ultrafast"}
        for i in range(10):
            f = av.VideoFrame.from_ndarray(still, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 10)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    decoded = frames_rgb(src)[0]
    expected = Stylizer(load_model("starry_night"), "cpu", realtime=True)(decoded[None])[0]  # as live paints
    assert np.abs(expected.astype(int) - decoded.astype(int)).mean() > 20  # the style changes the picture

    rec = tmp_path / "rec.mp4"
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
    proc = subprocess.Popen([sys.executable, "-m", "vidstyle", "live", "--source", str(src), "--loop",
                             "--style", "starry_night", "--device", "cpu", "--duration", "600", "--record", str(rec),
                             "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as a terminal delivers it, even when the tests run in the background
                            # (where a shell starts its children with SIGINT ignored)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    tmpl = expected[h // 2:]  # the lower half: the HUD sits at the top
    # generous: under load a cold start (imports, the engine's first compile) can take minutes
    best_err, deadline, shot = None, time.time() + 300, None
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1.0)
            shot = _xwd_rgb(screen)
            res = cv2.matchTemplate(shot, tmpl, cv2.TM_SQDIFF)
            _, _, (x, y), _ = cv2.minMaxLoc(res)
            err = np.abs(shot[y:y + tmpl.shape[0], x:x + w].astype(int) - tmpl.astype(int)).mean()
            best_err = err if best_err is None else min(best_err, err)
            if err < 3:
                break
        # Which windows the X server had. Known flake (open): under heavy load (three copies of this test at
        # once beside a training) the window is mapped and viewable (xwininfo) yet never painted, while live
        # paints and records ~3,000 frames; an Expose sent by hand does not help. That live process had ~190
        # threads: each --loop restart of the clip left two FFmpeg decoding threads behind until a garbage
        # collection (fixed since: io/reader.py frame_display_matrix). After the fix, 6 of 6 runs passed in the
        # setting that failed (three copies at once beside a training); live also paints in int8 since.
        windows = ""
        if best_err is not None and best_err >= 3 and shutil.which("xwininfo"):
            tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, timeout=30)
            windows = tree.stdout + tree.stderr
        proc.send_signal(signal.SIGINT)
        out, err_text = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if shot is not None and best_err >= 3:  # keep what the screen showed, for the one who reads the failure
        keep = Path(tempfile.gettempdir()) / "vidstyle-preview-test-failure"
        keep.mkdir(exist_ok=True)
        cv2.imwrite(str(keep / "screen.png"), cv2.cvtColor(shot, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(keep / "expected.png"), cv2.cvtColor(expected, cv2.COLOR_RGB2BGR))
        (keep / "windows.txt").write_text(windows)
        (keep / "live-stderr.txt").write_text(err_text)
    assert best_err is not None and best_err < 3, (best_err, err_text[-2000:])
    # the unpainted picture is not what the window shows
    inp = decoded[h // 2:].astype(int)
    assert np.abs(shot[y:y + tmpl.shape[0], x:x + w].astype(int) - inp).mean() > 20
    assert proc.returncode in (0, 130), err_text
    assert len(frames_rgb(rec)) > 0 and not list(tmp_path.glob(".*partial*"))


def test_camera_that_disappears_is_reopened(monkeypatch, caplog):
    """A camera that stops delivering is released, waited for, reopened, and frames flow again."""
    import cv2

    import vidstyle.live.capture as capture
    opened = []

    class FakeCamera:  # the second camera object is the camera plugged back in
        def __init__(self, index):
            self.index, self.n, self.props = index, 0, {}
            self.works = len(opened) != 1  # the first reopening attempt finds nothing
            opened.append(self)

        def isOpened(self):
            return self.works

        def set(self, prop, value):
            self.props[prop] = value
            return True

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_WIDTH: 8, cv2.CAP_PROP_FRAME_HEIGHT: 6}.get(prop, 0)

        def read(self):
            self.n += 1
            if len(opened) == 1 and self.n > 3:  # unplugged after 3 frames
                return False, None
            bgr = np.empty((6, 8, 3), np.uint8)
            bgr[...] = (len(opened) * 10, 1, 2)  # blue, green, red as OpenCV gives them: not grey
            return True, bgr

        def release(self):
            pass

    monkeypatch.setattr(capture.cv2, "VideoCapture", FakeCamera)
    cam = capture.CameraFrames(0, 8, 6, 30)
    first = opened[0].props
    assert first[cv2.CAP_PROP_BUFFERSIZE] == 1 and first[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert first[cv2.CAP_PROP_FRAME_WIDTH] == 8 and first[cv2.CAP_PROP_FPS] == 30
    stop = threading.Event()
    got = []
    with caplog.at_level("WARNING", logger="vidstyle"):
        for rgb in cam(stop):
            got.append(tuple(int(v) for v in rgb[0, 0]))
            if len(got) == 6:
                stop.set()
    # RGB out of OpenCV's BGR, and back on the third camera object
    assert got[:3] == [(2, 1, 10)] * 3 and got[3:] == [(2, 1, 30)] * 3
    assert cam.retries == 2 and len(opened) == 3
    assert "retrying in 1 s" in caplog.text and "retrying in 2 s" in caplog.text and "is back" in caplog.text


def test_keys_switch_style_strength_and_smoothing(live_clip, model_file):
    """n moves to the next model in the list, ] [ change the strength, t turns the stabiliser on."""
    from vidstyle.live.loop import LiveSession
    session = LiveSession(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False,
                                           loop=True, frames=12, keys={1: "n", 3: "[", 4: "[", 5: "t"}))
    first = session.bank.label(session.state.style)
    assert len(session.bank) >= 2  # the given model and the bundled ones
    r = session.run()
    assert r.style != first and r.style == session.bank.label((session.bank.start + 1) % len(session.bank))
    assert session.state.strength == 0.8 and session.state.temporal
    assert session.stabilizer is not None and session.stabilizer.prev_out is not None  # it ran on frames 7-12


def test_no_display_is_a_clear_error_not_an_abort(live_clip, model_file, tmp_path):
    """Without a display OpenCV's Qt would abort the process; we stop first with one line, and record nothing."""
    from vidstyle.live.preview import display_problem
    assert display_problem({}, "linux") and display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({}, "darwin") is None and display_problem({}, "win32") is None
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    out = tmp_path / "rec.mp4"
    p = subprocess.run([sys.executable, "-m", "vidstyle", "live", "--source", str(live_clip), "--frames", "3",
                        "--style", str(model_file), "--record", str(out)], env=env, capture_output=True, text=True,
                       timeout=120)
    if sys.platform.startswith("linux"):
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "--no-preview" in lines[0]
        assert not out.exists() and not list(tmp_path.glob(".*partial*"))


# -- failures, closing and Ctrl-C ----------------------------------------------------------------

class _FailingSource:
    """A real file source that raises ``error`` in the capture thread once it has given ``after`` frames."""

    def __init__(self, source, after: int, error: BaseException):
        self.source, self.after, self.error = source, after, error
        self.size, self.rate = source.size, source.rate

    def __call__(self, stop):
        for i, rgb in enumerate(self.source(stop)):
            if i == self.after:
                raise self.error
            yield rgb

    def close(self):
        self.source.close()


def test_unexpected_capture_error_is_reported_not_an_ordinary_end(tmp_path, live_clip, model_file, monkeypatch):
    """An exception in the capture thread (here a cv2.error) is an error with exit 2, not the source ending."""
    import cv2

    import vidstyle.live.loop as loop

    boom = cv2.error("OpenCV(4.x) resize.cpp:4152: error: (-215:Assertion failed) !ssize.empty() in function "
                     "'resize'\n")
    cap = Capture(_FailingSource(loop.open_source(str(live_clip), pace=False), 2, boom)).start()
    while cap.latest.get(timeout=5) is not None:
        pass
    cap.stop()
    assert cap.latest.error and "cv2.error" in cap.latest.error and "\n" not in cap.latest.error

    real = loop.open_source
    monkeypatch.setattr(loop, "open_source", lambda *a, **kw: _FailingSource(real(*a, **kw), 3, boom))
    out = tmp_path / "rec.mp4"
    r = runner.invoke(app, ["live", "--source", str(live_clip), "--loop", "--no-preview", "--frames", "50",
                            "--record", str(out), "--style", str(model_file), "--device", "cpu", "--json"])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "source failed" in errors[0] and "Assertion failed" in errors[0], r.stderr
    assert "Traceback" not in r.output and not r.stdout.strip()  # no JSON result: the session failed
    assert len(frames_rgb(out)) >= 1  # what was painted is still a complete recording


def test_an_error_while_closing_does_not_hide_the_error_that_ended_the_session(tmp_path, live_clip, model_file,
                                                                              monkeypatch, caplog):
    import vidstyle.live.loop as loop
    from vidstyle.errors import VidstyleError

    def full_disk(self):
        self.abort()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop.Recorder, "close", full_disk)
    opts = dict(source=str(live_clip), style=str(model_file), device="cpu", preview=False, loop=True, frames=20)
    # nothing else went wrong: the closing error is the error
    with pytest.raises(VidstyleError, match="while closing: .*No space left"):
        run_live(LiveOptions.make(**opts, record=tmp_path / "a.mp4"))

    calls = {"n": 0}
    real = loop.LiveSession._paint

    def paint(self, rgb):
        calls["n"] += 1
        if calls["n"] == 3:
            raise VidstyleError("painting failed: CUDA out of memory")
        return real(self, rgb)

    monkeypatch.setattr(loop.LiveSession, "_paint", paint)
    with caplog.at_level("WARNING", logger="vidstyle"), pytest.raises(VidstyleError, match="out of memory"):
        run_live(LiveOptions.make(**opts, record=tmp_path / "b.mp4"))
    assert "while closing" in caplog.text and "No space left" in caplog.text  # logged, not lost


def test_second_ctrl_c_while_finalising_keeps_the_recording(tmp_path, live_clip, model_file, monkeypatch):
    """Ctrl-C ends the session; a second Ctrl-C while the MP4 is being finalised must not throw it away."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here (a background job: Ctrl-C is ignored)")
    import vidstyle.live.loop as loop

    calls = {"n": 0}
    real_paint, real_close = loop.LiveSession._paint, loop.Recorder.close

    def paint(self, rgb):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # the first Ctrl-C
        return real_paint(self, rgb)

    def close(self):
        os.kill(os.getpid(), signal.SIGINT)  # the second one, delivered while the recording is finalised
        return real_close(self)

    monkeypatch.setattr(loop.LiveSession, "_paint", paint)
    monkeypatch.setattr(loop.Recorder, "close", close)
    before = signal.getsignal(signal.SIGINT)
    messages = []
    out = tmp_path / "rec.mp4"
    try:
        r = run_live(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False,
                                      loop=True, record=out, frames=50), notify=messages.append)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped while the recording was being finalised")
    assert r.frames == 5 and r.recordings == [str(out)]
    assert len(frames_rgb(out)) == 5 and not list(tmp_path.glob(".*partial*"))
    assert any("Ctrl-C is ignored" in m for m in messages), messages
    assert signal.getsignal(signal.SIGINT) is before  # the usual Ctrl-C is back


def test_ctrl_c_while_r_stops_a_recording_saves_it_then_ends(tmp_path, live_clip, model_file, monkeypatch):
    """In the middle of a session (r pressed), Ctrl-C waits for the recording, then ends the session cleanly."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here (a background job: Ctrl-C is ignored)")
    import vidstyle.live.loop as loop

    real_close = loop.Recorder.close

    def close(self):
        os.kill(os.getpid(), signal.SIGINT)
        return real_close(self)

    monkeypatch.setattr(loop.Recorder, "close", close)
    monkeypatch.chdir(tmp_path)  # r records to ./vidstyle-DATE.mp4
    try:
        r = run_live(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False,
                                      loop=True, frames=40, snapshot_dir=tmp_path, keys={2: "r", 5: "r"}),
                     notify=lambda m: None)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped while a recording was being finalised")
    assert r.frames == 6  # Ctrl-C, taken after the recording was saved, ended the session
    assert len(r.recordings) == 1 and len(frames_rgb(tmp_path / r.recordings[0])) == 3


def test_live_does_not_import_the_benchmarks(model_file):
    """``vidstyle bench --live`` imports live.loop; live must not import vidstyle.bench back."""
    import ast

    import vidstyle
    from vidstyle.live.loop import bench_live

    live_dir = Path(vidstyle.__file__).parent / "live"
    offenders = {}
    for path in live_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")] + [a.name for a in node.names if not node.module]
            bad = [n for n in names if n in ("vidstyle.bench", "..bench") or n.startswith("vidstyle.bench.")]
            if bad:
                offenders[path.name] = bad
    assert not offenders, offenders
    res = bench_live((64, 48), frames=4, paint=PaintOptions(style=str(model_file), device="cpu"), source_fps=30)
    assert res["frames"] == 4 and res["resolution"] == "64x48" and res["mode"] == "live"


def test_live_options_make_files_each_flat_option_in_its_place():
    from vidstyle.errors import VidstyleError
    from vidstyle.options import PaintOptions, TemporalOptions
    o = LiveOptions.make(source="clip.mp4", style="udnie", strength=0.5, engine="openvino", temporal=True,
                         flow="dis", preview=False, frames=3)
    assert o.paint == PaintOptions(style="udnie", strength=0.5, engine="openvino") and o.paint.device == "cpu"
    assert o.temporal == TemporalOptions(temporal=True, flow="dis")
    assert (o.source, o.preview, o.frames) == ("clip.mp4", False, 3)
    base = LiveOptions.make(paint=PaintOptions(max_side=320), temporal=TemporalOptions(flow="dis"), brush=2)
    assert base.paint == PaintOptions(max_side=320, brush=2) and base.temporal.flow == "dis"
    assert LiveOptions() == LiveOptions.make()
    with pytest.raises(VidstyleError, match="--strength must be between 0 and 1"):
        LiveOptions.make(strength=2)
    with pytest.raises(TypeError):
        LiveOptions.make(colour=True)


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_recording_over_the_source_is_refused_even_with_overwrite(tmp_path, live_clip, model_file, how):
    original = live_clip.read_bytes()
    if how == "same path":
        target = live_clip
    elif how == "symlink":
        target = tmp_path / "link.mp4"
        target.symlink_to(live_clip)
    else:
        target = tmp_path / "hard.mp4"
        os.link(live_clip, target)
    r = runner.invoke(app, ["live", "--source", str(live_clip), "--record", str(target), "--overwrite",
                            "--no-preview", "--frames", "3", "--style", str(model_file)])
    assert r.exit_code == 2, r.output
    assert "overwrite the" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert live_clip.read_bytes() == original and target.read_bytes() == original
    assert not list(tmp_path.glob(".*partial*"))


def test_source_without_frames_is_one_error_line(tmp_path, model_file):
    src = tmp_path / "noframes.mp4"
    src.write_bytes((Path(__file__).parents[1] / "samples" / "sample.mp4").read_bytes()[:5000])  # header, no frame
    out = tmp_path / "rec.mp4"
    r = runner.invoke(app, ["live", "--source", str(src), "--no-preview", "--frames", "3", "--record", str(out),
                            "--style", str(model_file)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1] == f"error: {src}: no video frame could be decoded"
    assert r.stderr.count("corrupt video packet") <= 1  # the warning is not repeated
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_missing_camera_is_our_line_only(model_file):
    """OpenCV's own "[ERROR:0@1.4] ... Camera index out of range" is not printed before ours."""
    p = subprocess.run([sys.executable, "-m", "vidstyle", "live", "--source", "99", "--no-preview", "--frames", "1",
                        "--style", str(model_file)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: cannot open camera 99: no such camera, or it is in use by "
                                             "another program"]


def test_frames_counts_painted_frames_and_the_engine_is_ready_before_the_source_starts(tmp_path, model_file,
                                                                                        monkeypatch):
    """--frames N records N frames; the engine's set-up (the first painting) is done before the first frame is
    captured, so that a short clip is not skipped through while it runs."""
    import vidstyle.live.loop as loop
    from vidstyle.stylizer import Stylizer

    painted = []
    real_paint, real_start = Stylizer.paint, loop.Capture.start
    monkeypatch.setattr(Stylizer, "paint", lambda self, x: painted.append(tuple(x.shape[-2:])) or real_paint(self, x))
    at_start = []
    monkeypatch.setattr(loop.Capture, "start", lambda self: at_start.append(list(painted)) or real_start(self))
    clip = make_clip(tmp_path / "six.mp4", w=64, h=48, n=6, fps=25, audio=None)
    out = tmp_path / "rec.mp4"
    r = run_live(LiveOptions.make(source=str(clip), style=str(model_file), device="cpu", preview=False, loop=True,
                                  frames=3, record=out), notify=lambda m: None)
    assert at_start == [[(48, 64)]]  # painted once, at the frame size, before the capture started
    assert r.frames == 3 and len(frames_rgb(out)) == 3


def test_a_source_that_ends_before_frames_says_so(tmp_path, model_file):
    clip = make_clip(tmp_path / "two.mp4", w=64, h=48, n=2, fps=12, audio=None)
    out = tmp_path / "rec.mp4"
    messages = []
    r = run_live(LiveOptions.make(source=str(clip), style=str(model_file), device="cpu", preview=False, frames=5,
                                  record=out), notify=messages.append)
    assert 1 <= r.frames <= 2 and len(frames_rgb(out)) == r.frames
    assert any(f"source ended after {r.frames} painted frames, before --frames 5" in m for m in messages), messages


def test_the_network_feed_sends_a_keyframe_every_second_of_output_whatever_the_painting_rate():
    """A receiver joining mid-stream waits for a keyframe: they come by the output's clock, not every fps frames
    (a 30 fps camera painted at 8 fps spread them 3.75 s apart)."""
    from vidstyle.live.sinks import NetworkFeed

    feed = NetworkFeed("udp://127.0.0.1:9?pkt_size=1316", (64, 48), 30.0)
    real, sent = feed.container, []
    feed.container = type("Tap", (), {"mux": lambda self, packets: sent.extend(
        (p.pts, p.is_keyframe) for p in packets), "close": lambda self: None})()
    rng = np.random.default_rng(0)
    for i in range(40):  # 5 s at 8 fps
        feed.send((rng.random((48, 64, 3)) * 255).astype(np.uint8), 100.0 + i / 8)
    feed.close()
    real.close()
    keys = [pts for pts, key in sent if key]
    assert keys == [0, 1000, 2000, 3000, 4000], sent


def test_a_feed_url_that_cannot_work_is_one_line_before_serving_starts():
    from vidstyle.errors import VidstyleError
    from vidstyle.live.sinks import NetworkFeed

    for url, words in [("udp://127.0.0.1", "give the receiver's host and port"),
                       ("udp://127.0.0.1:99999", "give the receiver's host and port"),
                       ("http://127.0.0.1:5000", "--serve wants udp://HOST:PORT")]:
        with pytest.raises(VidstyleError, match=words):
            NetworkFeed(url, (64, 48), 30.0)
    try:
        NetworkFeed("srt://127.0.0.1:9", (64, 48), 30.0).close()  # an FFmpeg with SRT: it opens (a caller)
    except VidstyleError as e:  # PyAV's wheels: the build has no SRT, said before "serving ..."
        assert "has no srt protocol" in str(e) or "cannot open --serve" in str(e), e
