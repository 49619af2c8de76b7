"""The live session: newest captured frame -> painter (-> stabiliser) -> window and sinks, one frame at a time.

Latency is measured from the moment the capture thread had the frame to the
moment it was on screen (or, without a window, ready for the sinks).
"""
from __future__ import annotations

import logging
import signal
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import VidstyleError, one_line
from ..io.images import write_image
from ..io.atomic import check_target
from ..options import PaintOptions, TemporalOptions
from ..signals import raise_held, signals_held
from .bank import StyleBank
from .capture import Capture, open_source, parse_source
from .keys import LiveState, handle_key
from .preview import Preview, check_display, compose, draw_hud
from .sinks import NetworkFeed, Recorder, VirtualCam

log = logging.getLogger("vidstyle")


@dataclass
class LiveOptions:
    """A live session: what it paints (``paint``: the style to start with, its strength and colours, where
    and how the network runs; precision ``auto`` is int8 on CPUs where it pays), the stabiliser (``temporal``:
    on from the start, its strength and flow), and the live-only rest. ``make()`` takes them all flat."""

    source: str = "0"
    paint: PaintOptions = field(default_factory=PaintOptions)
    styles: tuple[str, ...] = ()  # styles, pictures and folders of pictures to cycle through first (StyleBank)
    temporal: TemporalOptions = field(default_factory=TemporalOptions)
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    side_by_side: bool = False
    preview: bool = True
    virtual_cam: bool = False
    cam_device: str | None = None
    cam_backend: str | None = None
    serve: str | None = None
    record: Path | None = None
    overwrite: bool = False
    frames: int | None = None
    duration: float | None = None
    loop: bool = False
    pace: bool = True
    snapshot_dir: Path = Path(".")
    warmup: int = 0  # frames left out of the latency statistics (benchmarks)
    keys: dict[int, str] = field(default_factory=dict)  # scripted key presses by frame number (tests, demos)

    @classmethod
    def make(cls, **values) -> "LiveOptions":
        """LiveOptions from flat keywords: PaintOptions' fields (``style``, ``strength``, ``device`` ...) go into
        ``paint``, TemporalOptions' (``temporal=True``, ``flow`` ...) into ``temporal``, the rest are our own.
        A ``paint=`` PaintOptions or ``temporal=`` TemporalOptions given is the base those fields change."""
        base = values.pop("temporal") if isinstance(values.get("temporal"), TemporalOptions) else None
        temporal = TemporalOptions.split(values, base)
        paint = PaintOptions.split(values, values.pop("paint", None))
        return cls(paint=paint, temporal=temporal, **values)


@dataclass
class LiveResult:
    frames: int
    seconds: float
    fps: float
    latency_ms_median: float
    latency_ms_p95: float
    dropped: int
    style: str
    device: str
    width: int
    height: int
    recordings: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    served_frames: int = 0
    virtual_cam_frames: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class Stats:
    """Frame rate (smoothed) and latency samples."""

    def __init__(self, keep: int = 20000):
        self.latencies: deque[float] = deque(maxlen=keep)
        self.fps = 0.0  # smoothed, for the HUD
        self._last: float | None = None
        self.counted = 0
        self.t_first = self.t_last = 0.0

    def add(self, now: float, latency: float, count: bool = True) -> None:
        if self._last is not None:
            inst = 1.0 / max(1e-6, now - self._last)
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last = now
        if count:
            self.latencies.append(latency)
            self.t_first = now if self.counted == 0 else self.t_first
            self.t_last = now
            self.counted += 1

    @property
    def mean_fps(self) -> float:
        """Frames per second over the counted frames."""
        span = self.t_last - self.t_first
        return (self.counted - 1) / span if self.counted > 1 and span > 0 else 0.0

    @property
    def latency_ms(self) -> float:
        return 1000 * self.latencies[-1] if self.latencies else 0.0

    def percentile_ms(self, q: float) -> float:
        return round(1000 * float(np.percentile(self.latencies, q)), 2) if self.latencies else 0.0


def _check_record(record: Path, overwrite: bool, source: str) -> None:
    """``check_target`` for ``--record``, which must never replace the file being played (by any of its names:
    ``check_target`` compares files, links included)."""
    src = parse_source(source)
    check_target(record, overwrite, src if isinstance(src, str) else None)  # a camera index is no file


class LiveSession:
    """One run of ``vidstyle live``. ``run()`` returns a LiveResult; Ctrl-C ends it cleanly."""

    def __init__(self, opts: LiveOptions, notify: Callable[[str], None] | None = None):
        self.opts = opts
        self.notify = notify or (lambda msg: log.warning("%s", msg))
        if opts.record is not None:
            _check_record(Path(opts.record), opts.overwrite, opts.source)
        if opts.frames is not None and opts.frames < 1:
            raise VidstyleError("--frames must be at least 1")
        if opts.preview:
            check_display()  # before anything is opened: OpenCV's Qt would abort the process
        self.bank = StyleBank(opts.paint, styles=tuple(opts.styles))
        self.pending: int | None = None  # a style asked for by a key, painted once it is ready (StyleBank.ready)
        self.scanned = time.perf_counter()
        self.bank[self.bank.start]  # load (and check) the first style before opening anything
        # made even when off (t turns it on), with its flow estimator: RAFT without its weights stops here
        self.stabilizer = opts.temporal.replace(temporal=True).stabilizer()
        self.stabilizer.estimator(self.bank.device)
        self.source = open_source(opts.source, opts.width, opts.height, opts.fps, loop=opts.loop, pace=opts.pace)
        src_size = getattr(self.source, "size", None)
        if opts.width and opts.height:
            self.size = (opts.width, opts.height)
        elif src_size:
            self.size = src_size
        else:
            self.size = None
        self.rate = float(opts.fps or getattr(self.source, "rate", 30) or 30)
        self.state = LiveState(style=self.bank.start, n_styles=len(self.bank), strength=opts.paint.strength,
                               preserve_color=opts.paint.preserve_color, temporal=opts.temporal.temporal,
                               side_by_side=opts.side_by_side, recording=opts.record is not None)
        self.recorder: Recorder | None = None
        self.recordings: list[str] = []
        self.snapshots: list[str] = []
        self.sinks: list = []
        self.feed = self.vcam = self.preview = None

    # -- sinks -----------------------------------------------------------------
    def _open_sinks(self, size: tuple[int, int]) -> None:
        o = self.opts
        try:
            if o.virtual_cam:
                self.vcam = VirtualCam(size, self.rate, device=o.cam_device, backend=o.cam_backend)
                self.sinks.append(self.vcam)
                self.notify(f"virtual camera: {self.vcam.device}")
            if o.serve:
                self.feed = NetworkFeed(o.serve, size, self.rate)
                self.sinks.append(self.feed)
                self.notify(f"serving MPEG-TS on {o.serve}")
            if self.state.recording:
                self._start_recording(size, o.record)
        except BaseException:
            self._close_sinks(failing=True)
            raise

    def _record_path(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(self.opts.record).with_suffix("") if self.opts.record else Path(f"vidstyle-{stamp}")
        for i in range(1, 1000):
            p = Path(f"{base}-{i}.mp4") if self.opts.record or i > 1 else Path(f"{base}.mp4")
            if not p.exists():
                return p
        raise VidstyleError(f"too many recordings named {base}-N.mp4")

    def _start_recording(self, size: tuple[int, int], path: Path | None = None) -> None:
        path = Path(path) if path is not None else self._record_path()
        self.recorder = Recorder(path, size, self.rate, overwrite=self.opts.overwrite)
        self.notify(f"recording to {path}")

    def _stop_recording(self) -> None:
        """Finalise the recording; Ctrl-C meanwhile would throw it away, so it is held and raised afterwards
        (inside ``_close_sinks``, which holds it already, it is dropped there: the session is ending)."""
        rec, self.recorder = self.recorder, None
        if rec is not None:
            with signals_held((signal.SIGINT,), on_first=self._still_finishing) as hits:
                done = rec.close()
                if done is not None:
                    self.recordings.append(str(done))
                    self.notify(f"recording saved: {done} ({rec.frames} frames)")
            raise_held(hits)

    def _still_finishing(self, signum: int) -> None:
        self.notify("still finishing the outputs; Ctrl-C is ignored until they are written")

    def _close_sinks(self, failing: bool = False, first=()) -> None:
        """Run ``first`` (closing steps, in order), then finalise the recording and close every sink, each
        one whatever happens to the others; errors go to ``_report_closing``.

        Ctrl-C is held off meanwhile, and dropped (the session is ending anyway): a second Ctrl-C must not
        throw the recording away.
        """
        with signals_held((signal.SIGINT,), on_first=self._still_finishing):
            errors = self._close_each([*first, self._stop_recording] + [s.close for s in self.sinks])
            self.sinks.clear()
        _report_closing(errors, failing)

    @staticmethod
    def _close_each(steps) -> list[str]:
        errors = []
        for close in steps:
            try:
                close()
            except Exception as e:  # close the rest anyway
                errors.append(one_line(e))
        return errors

    # -- the loop --------------------------------------------------------------
    def _apply(self, old: LiveState, new: LiveState, out: np.ndarray) -> None:
        """Side effects of a state change made by a key."""
        if new.style != old.style:
            self.notify(f"style {new.style + 1}/{len(self.bank)}: {self.bank.label(new.style)}")
        if new.style != old.style or (new.temporal and not old.temporal):
            if self.stabilizer is not None:
                self.stabilizer.reset()
        if new.recording != old.recording:
            if new.recording:
                self._start_recording((out.shape[1], out.shape[0]))
            else:
                self._stop_recording()
        if new.snapshots != old.snapshots:
            folder = Path(self.opts.snapshot_dir)
            name = f"vidstyle-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.snapshots) + 1}.png"
            path = write_image(folder / name, out, overwrite=False)
            self.snapshots.append(str(path))
            self.notify(f"snapshot: {path}")
        if self.preview is not None and new.fullscreen != old.fullscreen:
            self.preview.set_fullscreen(new.fullscreen)

    def _on_key(self, key: int, out: np.ndarray | None) -> None:
        new = handle_key(self.state, key)
        if new == self.state:
            return
        if out is None:  # nothing painted yet: only quitting makes sense
            new = replace(self.state, quit=new.quit)
        if new.style != self.state.style:
            if not self.bank.ready(new.style):  # a picture's vector is still being computed: switch when it is
                self.pending = new.style
                self.notify(f"style {new.style + 1}/{len(self.bank)}: {self.bank.label_of(new.style)} (preparing)")
                new = replace(new, style=self.state.style)
            else:
                self.pending = None
                new = replace(new, style=self._loadable(self.state.style, new.style))
        old, self.state = self.state, new
        self._apply(old, new, out)

    def _poll_styles(self, out: np.ndarray | None) -> None:
        """Between frames: a pending style whose picture is ready now is switched to; once a second, pictures new in
        the folders given join the cycle."""
        now = time.perf_counter()
        if self.bank.folders and now - self.scanned >= 1.0:
            self.scanned = now
            for label in self.bank.rescan():
                self.notify(f"new picture: {label} (style {len(self.bank)})")
            if len(self.bank) != self.state.n_styles:
                self.state = replace(self.state, n_styles=len(self.bank))
        if self.pending is not None and self.bank.ready(self.pending) and out is not None:
            target, self.pending = self.pending, None
            new = replace(self.state, style=self._loadable(self.state.style, target))
            old, self.state = self.state, new
            self._apply(old, new, out)

    def _loadable(self, old: int, new: int) -> int:
        """``new``, or when that style cannot be loaded (with a notice) the next one that can in the
        direction of the key (n, p; a number key stays on ``old``), or ``old``."""
        n = len(self.bank)
        step = 1 if new == (old + 1) % n else -1 if new == (old - 1) % n else 0
        i = new
        while i != old:
            try:
                self.bank[i]
                return i
            except Exception as e:  # noqa: BLE001 - a broken style file must not end the session
                self.notify(f"style {i + 1}/{n} ({self.bank.specs[i][0]}) cannot be loaded, skipped: {one_line(e)}")
            if step == 0:
                break
            i = (i + step) % n
        return old

    def _paint(self, rgb: np.ndarray) -> np.ndarray:
        s = self.state
        st = self.bank[s.style]
        st.strength, st.preserve_color = s.strength, s.preserve_color
        # the history is reset when t turns smoothing back on (_apply)
        return st.download(st.paint_frames(rgb[None], self.stabilizer if s.temporal else None))[0]

    def _finish(self, capture: Capture, failing: bool) -> None:
        """Stop the capture, close the window, then ``_close_sinks``: each step whatever the others do."""
        self._close_sinks(failing, first=[capture.stop, self.bank.close]
                          + ([self.preview.close] if self.preview is not None else []))

    def run(self) -> LiveResult:
        o = self.opts
        stats = Stats()
        frames = 0
        last = None  # the last painted frame
        t_start = time.perf_counter()
        capture = Capture(self.source, self.size)
        failing = False
        try:
            if o.preview:
                self.preview = Preview(f"vidstyle - {o.source}")
            if self.size is not None:
                self._open_sinks(self.size)
                # one painting before the frames come: the engine's set-up (OpenVINO compiles per size) would
                # otherwise hold up the first frame while the source runs on, and its next frames be skipped
                w, h = self.size
                self.bank[self.state.style](np.zeros((1, h, w, 3), np.uint8))
            capture.start()
            while True:
                grab = capture.latest.get(timeout=0.1)
                if grab is None:
                    if capture.latest.error:
                        raise VidstyleError(capture.latest.error)
                    if capture.latest.closed:  # the source ended
                        if o.frames and frames < o.frames:
                            skipped = capture.latest.dropped
                            self.notify(f"the source ended after {frames} painted frames, before --frames {o.frames}"
                                        + (f" ({skipped} skipped while painting, as live mode does; vidstyle run "
                                           "paints every frame)" if skipped else ""))
                        break
                    # no new frame yet (a slow or reconnecting camera): keep the window responsive
                    if self.preview is not None:
                        self._on_key(self.preview.poll(), last)
                        if self.state.quit or self.preview.closed:
                            break
                    if o.duration is not None and time.perf_counter() - t_start >= o.duration:
                        break
                    continue
                if self.size is None:  # a source that could not say its size before the first frame
                    self.size = (grab.rgb.shape[1], grab.rgb.shape[0])
                    self._open_sinks(self.size)
                self._poll_styles(last)
                out = self._paint(grab.rgb)
                key = -1
                if self.preview is not None:
                    label = self.bank.label(self.state.style)
                    extra = ("REC " if self.recorder else "") + ("temporal" if self.state.temporal else "")
                    img = compose(out, grab.rgb if self.state.side_by_side else None)
                    key = self.preview.show(draw_hud(img, stats.fps, stats.latency_ms, label, extra,
                                                     self.state.show_help))
                if frames in o.keys:
                    key = ord(o.keys[frames][0]) if o.keys[frames] != "esc" else 27
                now = time.perf_counter()
                stats.add(now, now - grab.t, count=frames >= o.warmup)
                for sink in self.sinks:
                    sink.send(out, grab.t)
                if self.recorder is not None:
                    self.recorder.send(out, grab.t)
                frames += 1
                last = out
                self._on_key(key, out)
                if self.state.quit or (self.preview is not None and self.preview.closed):
                    break
                if o.frames and frames >= o.frames:
                    break
                if o.duration is not None and now - t_start >= o.duration:
                    break
        except KeyboardInterrupt:
            self.notify("interrupted; finishing cleanly")
        except BaseException:
            failing = True
            raise
        finally:
            self._finish(capture, failing)
        seconds = time.perf_counter() - t_start
        w, h = self.size or (0, 0)
        return LiveResult(frames=frames, seconds=round(seconds, 3), fps=round(stats.mean_fps, 2),
                          latency_ms_median=stats.percentile_ms(50), latency_ms_p95=stats.percentile_ms(95),
                          dropped=capture.latest.dropped, style=self.bank.label(self.state.style),
                          device=str(self.bank.device), width=w, height=h, recordings=self.recordings,
                          snapshots=self.snapshots, served_frames=self.feed.frames if self.feed else 0,
                          virtual_cam_frames=self.vcam.frames if self.vcam else 0)


def _report_closing(errors: list[str], failing: bool) -> None:
    """Errors met while closing: the first one is raised, unless the session is already failing
    (``failing``): an error while closing must never hide the error that ended the session, so then
    they are only logged."""
    for e in errors if failing else errors[1:]:
        log.warning("while closing: %s", e)
    if errors and not failing:
        raise VidstyleError(f"while closing: {errors[0]}")


def run_live(opts: LiveOptions, notify=None) -> LiveResult:
    return LiveSession(opts, notify).run()


def _bench_clip(path: Path, w: int, h: int, n: int, fps: int) -> Path:
    """A clip to play as the benchmark's camera: a noise field panning sideways, so that decoding it
    costs what real video costs. Written by the recorder: the live package does not depend on
    ``vidstyle.bench`` (the bench command imports this module)."""
    import cv2

    step = 4  # pixels per frame
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (h // 8 + 2, (w + n * step) // 8 + 2, 3), dtype=np.uint8)
    field = cv2.resize(coarse, (coarse.shape[1] * 8, coarse.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    rec = Recorder(path, (w, h), fps)
    try:
        for i in range(n):
            rec.send(np.ascontiguousarray(field[:h, i * step:i * step + w]), i / fps)
        rec.close()
    except BaseException:
        rec.abort()
        raise
    return path


def bench_live(size=(1280, 720), frames: int = 120, paint: PaintOptions | None = None, source_fps: int = 60) -> dict:
    """Live mode on a synthetic file source (paced at ``source_fps``, looped), no window, painting with ``paint``:
    fps and latency."""
    from ..sizing import cpu_threads

    w, h = size
    warmup = min(10, max(1, frames // 5))
    with tempfile.TemporaryDirectory() as tmp:
        clip = _bench_clip(Path(tmp) / "live.mp4", w, h, max(30, source_fps), fps=source_fps)
        opts = LiveOptions(source=str(clip), paint=paint or PaintOptions(), preview=False, loop=True, frames=frames + warmup,
                           warmup=warmup)
        session = LiveSession(opts, notify=lambda m: None)
        r = session.run()
    if r.frames < frames + warmup:  # the session ends early only when stopped (Ctrl-C): no partial figures
        raise KeyboardInterrupt
    st = session.bank[session.state.style]
    gpu = None
    if st.device.type == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0)
    return {"mode": "live", "resolution": f"{w}x{h}", "source_fps": source_fps, "frames": r.frames - warmup,
            "warmup_frames": warmup, "device": r.device, "gpu": gpu, "style": r.style,
            "arch": st.model.net.config.arch, "half": st.half, "engine": st.engine.name,
            "precision": st.precision, "work_size": "x".join(map(str, st.work_size(h, w)[::-1])), "fps": r.fps,
            "latency_ms_median": r.latency_ms_median, "latency_ms_p95": r.latency_ms_p95,
            "dropped_frames": r.dropped, "cpu_threads": cpu_threads()}
