"""Flow-guided stabilisation without PyTorch: ``vidstyle.temporal.Stabilizer`` in NumPy and OpenCV.

The same method as the torch version, on uint8 frames and paintings as the light painter has them: for
each frame t, DIS flows between input frames t-1 and t (computed on a worker thread while the network
paints the batch: OpenCV releases the GIL), the previous *stabilised* output warped onto frame t
(``cv2.remap``, bicubic by default), an occlusion mask (forward-backward check plus pixels that came
from outside the frame), the new painting blended with the warped previous output where the pixel is
visible in both, and the blend given back the new painting's local stroke contrast (``restore_detail``).
A scene cut (most pixels occluded, or a large colour change) resets the history.

The history (the previous stabilised output) is kept in float32 [0, 1], so that repeated blending does
not accumulate uint8 rounding; only what is returned is rounded to uint8.

Images here are NumPy (H, W, C) arrays; flows are (H, W, 2) float32 in pixels with the convention of
``vidstyle.warp``: the pixel (x, y) of the target frame is found at (x + dx, y + dy) in the source frame.
Nothing here imports torch.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future

import cv2
import numpy as np

from ..errors import VidstyleError
from ..flow import RAFT_NEEDS_TORCH, make_flow
from ..painting import StabilizerBase

WARP_MODES = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}

_GRIDS: dict = {}
_GRIDS_LOCK = threading.Lock()


def _base_grid(h: int, w: int) -> np.ndarray:
    """(H, W, 2) float32 pixel coordinates (x, y), cached for a few frame sizes."""
    with _GRIDS_LOCK:
        g = _GRIDS.get((h, w))
        if g is None:
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            g = _GRIDS[(h, w)] = np.dstack((xs, ys))
            g.flags.writeable = False
            if len(_GRIDS) > 8:
                _GRIDS.pop(next(iter(_GRIDS)))
    return g


def sample_map(flow: np.ndarray) -> np.ndarray:
    """(H, W, 2) flow -> (H, W, 2) float32 absolute sample positions (x + dx, y + dy) for ``cv2.remap``."""
    h, w = flow.shape[:2]
    return cv2.add(_base_grid(h, w), np.asarray(flow, np.float32))


def warp(source: np.ndarray, flow: np.ndarray, mode: str = "bilinear",
         positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backward-warp ``source`` (H, W, C) float32 with ``flow`` (H, W, 2) in pixels.

    Matches ``vidstyle.warp.warp`` (``grid_sample`` with ``align_corners=True`` and border padding): a
    sample point outside the frame takes the values of the nearest edge pixels (``BORDER_REPLICATE``;
    for bicubic each tap is clamped, as torch does). ``positions``: ``sample_map(flow)`` when the
    caller has it already. Returns (warped (H, W, C) float32, inside (H, W) uint8: 255 where the sample
    point lies inside the source frame, 0 where it came from outside).
    """
    if mode not in WARP_MODES:
        raise VidstyleError(f"warp mode must be one of {', '.join(WARP_MODES)}, not {mode!r}")
    pos = sample_map(flow) if positions is None else positions
    hs, ws = source.shape[:2]
    remap = lambda a: cv2.remap(a, pos, None, WARP_MODES[mode], borderMode=cv2.BORDER_REPLICATE)  # noqa: E731
    if source.ndim == 3 and source.shape[2] == 2:  # OpenCV 5 resamples 2-channel images at 1/32 px: by planes
        warped = np.dstack([remap(np.ascontiguousarray(source[..., c])) for c in (0, 1)])
    else:
        warped = remap(source)
    inside = cv2.inRange(pos, (0.0, 0.0), (float(ws - 1), float(hs - 1)))
    return warped, inside


def occlusion(flow_fw: np.ndarray, flow_bw: np.ndarray, alpha: float = 0.01, beta: float = 0.5,
              positions: np.ndarray | None = None) -> np.ndarray:
    """Forward-backward consistency check, as ``vidstyle.warp.occlusion``.

    ``flow_fw`` (H, W, 2) maps the target grid into the source frame (the flow used to warp),
    ``flow_bw`` (H, W, 2) maps the source grid back. A target pixel is occluded where the round trip
    does not return, ``|w_f + w_b(x + w_f)|^2 > alpha (|w_f|^2 + |w_b(x + w_f)|^2) + beta``, or where
    x + w_f leaves the frame. ``positions``: ``sample_map(flow_fw)`` when the caller has it.
    Returns (H, W) uint8, an OpenCV mask: 255 = visible in both frames, 0 = occluded.
    """
    fw, bw = np.asarray(flow_fw, np.float32), np.asarray(flow_bw, np.float32)
    pos = sample_map(fw) if positions is None else positions
    h, w = bw.shape[:2]
    inside = cv2.inRange(pos, (0.0, 0.0), (float(w - 1), float(h - 1)))
    # one plane at a time: OpenCV 5 resamples 1-, 3- and 4-channel float images at the exact position,
    # but 2-channel ones at 1/32 px (and one plane at a time is faster); OpenCV 4 rounds to 1/32 px always
    bx, by = (cv2.remap(np.ascontiguousarray(bw[..., c]), pos, None, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE) for c in (0, 1))
    fx, fy = fw[..., 0], fw[..., 1]
    # float32 in torch's order, so that the threshold is the same
    diff = np.add(fx, bx)
    diff *= diff
    sy = np.add(fy, by)
    sy *= sy
    diff += sy                                                     # (H, W) |w_f + w_b(x + w_f)|^2
    mag = np.multiply(fx, fx)
    mag += np.multiply(fy, fy, out=sy)
    bx *= bx
    by *= by
    bx += by
    mag += bx                                                      # |w_f|^2 + |w_b(x + w_f)|^2
    mag *= np.float32(alpha)
    mag += np.float32(beta)
    return cv2.bitwise_and(cv2.compare(diff, mag, cv2.CMP_LE), inside)


def _adaptive_means(frame: np.ndarray, n: int = 16) -> np.ndarray:
    """(H, W, C) -> (n, n, C) float64 means over torch ``adaptive_avg_pool2d``'s bins (which may overlap):
    bin i spans [floor(i H / n), ceil((i + 1) H / n)). Values stay in the frame's scale."""
    h, w = frame.shape[:2]
    exact32 = frame.dtype == np.uint8 and h * w * 255 < 2 ** 31  # int32 sums are exact (and faster) up to ~4K
    s = cv2.integral(frame, sdepth=cv2.CV_32S if exact32 else cv2.CV_64F)
    if s.ndim == 2:
        s = s[..., None]
    r0 = np.arange(n) * h // n
    r1 = -(-(np.arange(n) + 1) * h // n)
    c0 = np.arange(n) * w // n
    c1 = -(-(np.arange(n) + 1) * w // n)
    at = lambda r, c: s[r][:, c].astype(np.float64)  # noqa: E731  (n, n, C) sums from the origin
    sums = at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0)
    return sums / ((r1 - r0)[:, None, None] * (c1 - c0)[None, :, None])


def _coarse(x: np.ndarray, k: int) -> np.ndarray:
    """Means over k x k cells: (H, W, C) -> (ceil(H/k), ceil(W/k), C) float32 (C = 1 drops the axis, as
    OpenCV does); the last cells are filled out by repeating the edge, as ``temporal._coarse``."""
    h, w = x.shape[:2]
    if not (h % k or w % k):
        return cv2.resize(x, (w // k, h // k), interpolation=cv2.INTER_AREA)
    # whole cells straight from a view; only the thin strips of partial cells are padded (no full-size copy)
    hk, wk = h - h % k, w - w % k
    out = np.empty((-(-h // k), -(-w // k)) + x.shape[2:], np.float32)
    for r0, r1 in ((0, hk), (hk, h)):
        for c0, c1 in ((0, wk), (wk, w)):
            if r1 > r0 and c1 > c0:
                rows, cols = -(-(r1 - r0) // k), -(-(c1 - c0) // k)
                part = x[r0:r1, c0:c1]
                ph, pw = rows * k - (r1 - r0), cols * k - (c1 - c0)
                if ph or pw:
                    part = cv2.copyMakeBorder(part, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
                out[r0 // k:r0 // k + rows, c0 // k:c0 // k + cols] = cv2.resize(
                    part, (cols, rows), interpolation=cv2.INTER_AREA).reshape((rows, cols) + x.shape[2:])
    return out


def _fine(x: np.ndarray, k: int, hw: tuple) -> np.ndarray:
    """Cell values back to pixels, bilinear between the cells' centres: (h, w, C) -> (H, W, C), as
    ``F.interpolate(scale_factor=k, mode="bilinear", align_corners=False)`` cropped to ``hw``."""
    h, w = x.shape[:2]
    return cv2.resize(x, (w * k, h * k), interpolation=cv2.INTER_LINEAR)[:hw[0], :hw[1]]


def restore_detail(blend: np.ndarray, frame: np.ndarray, max_gain: float = 1.6) -> np.ndarray:
    """Give ``blend`` the local detail contrast of ``frame``: both (H, W, 3) float32 in [0, 1].

    Returns a new (H, W, 3) float32 array in [0, 1]; see ``vidstyle.temporal.restore_detail`` for the
    method: the blend's detail (itself minus its local mean over k x k cells, k = max(3, min(H, W) // 60),
    interpolated between the cells' centres) is scaled per pixel by sqrt(frame's detail energy / blend's),
    clamped to [1, ``max_gain``], the energies being means over k x k cells smoothed over 5 x 5 cells.
    """
    h, w = blend.shape[:2]
    k = max(3, min(h, w) // 60)
    base = _fine(_coarse(blend, k), k, (h, w))                   # (H, W, 3) local mean
    detail = cv2.subtract(blend, base)
    frame_detail = cv2.subtract(frame, _fine(_coarse(frame, k), k, (h, w)))
    thirds = np.full((1, 3), 1 / 3, np.float32)

    def energy(d: np.ndarray) -> np.ndarray:
        """Detail energy per k x k cell (mean over the channels), smoothed over 5 x 5 cells: (h', w')."""
        e = cv2.transform(_coarse(cv2.multiply(d, d), k), thirds)
        return cv2.blur(e, (5, 5), borderType=cv2.BORDER_REPLICATE)

    e_blend, e_frame = energy(detail), energy(frame_detail)
    gain = np.sqrt((e_frame + 1e-6) / (e_blend + 1e-6))
    np.clip(gain, 1.0, max_gain, out=gain)
    gain = _fine(cv2.merge((gain, gain, gain)), k, (h, w))
    out = cv2.add(base, cv2.multiply(detail, gain, dst=detail))
    return np.clip(out, 0.0, 1.0, out=out)


def _to_float(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 [0, 1] (float32 as it is)."""
    if img.dtype == np.float32:
        return img
    out = img.astype(np.float32)
    return np.multiply(out, np.float32(1 / 255), out=out)


class Stabilizer(StabilizerBase):
    """Stateful: call it on consecutive batches of one video (NumPy and OpenCV only).

    ``strength``: weight of the warped previous output where it is visible (0 = off). None: the
    style's own, which the painter sets as ``style_strength`` on every batch (the strength recorded in
    the model file for the style painted now, else ``DEFAULT_STRENGTH``).
    ``flow``: dis | auto (auto is DIS here), or a flow estimator (a callable ``(target, source)``
    (H, W, 3) uint8 -> (H, W, 2) float32, e.g. ``flow.DISFlow``); ``raft`` raises ``VidstyleError``
    (RAFT needs PyTorch). ``flow_scale``: DIS runs at this fraction of the size.
    ``cut_occluded``, ``cut_colour``: the scene-cut thresholds (see ``is_cut``).
    ``warp_mode``: bicubic | bilinear, how the previous output is resampled (bicubic keeps the strokes
    sharp when the history is warped again every frame).
    ``max_side``: kept for the torch version's interface (it sizes RAFT there); unused with DIS.
    ``keep_detail``: give the blend back the brush strokes' contrast (see ``restore_detail``).

    Use: ``pending = stab.begin(frames)`` before painting a batch, then ``stab(frames, painted, pending)``;
    or ``stab(frames, painted)`` alone (the flows are computed then).
    """

    def __init__(self, strength: float | None = None, flow="auto", flow_scale: float = 0.5,
                 cut_occluded: float = 0.5, cut_colour: float = 0.15, warp_mode: str = "bicubic",
                 max_side: int | None = None, keep_detail: bool = True):
        if isinstance(flow, str) and flow.lower() == "raft":
            raise VidstyleError(RAFT_NEEDS_TORCH)
        if warp_mode not in WARP_MODES:
            raise VidstyleError(f"warp mode must be one of {', '.join(WARP_MODES)}, not {warp_mode!r}")
        self._settings(strength, flow, flow_scale, cut_occluded, cut_colour, warp_mode, max_side, keep_detail)
        self.reset()

    def reset(self) -> None:
        """Forget the video: the next frame is painted as it is."""
        self.prev_rgb: np.ndarray | None = None   # (H, W, 3) uint8, last input frame given to ``begin``
        self.prev_in: np.ndarray | None = None    # (H, W, 3) uint8, last input frame stabilised (exact)
        self.prev_out: np.ndarray | None = None   # (H, W, 3) float32 [0, 1] last output (uint8 while off)
        self._prev_means: np.ndarray | None = None  # (16, 16, 3) means of ``prev_in`` for ``is_cut``
        self.cuts = 0

    def estimator(self, device=None):
        """The flow estimator, made on first use (``device`` is ignored: DIS runs on the CPU)."""
        if self._flow is None:
            kind = self.flow_kind
            if isinstance(kind, str) and kind.lower() == "auto":
                kind = "dis"  # no RAFT without torch; never import it to find out
            self._flow = make_flow(kind, scale=self.flow_scale, preset="medium")
        return self._flow

    def begin(self, frames: np.ndarray) -> Future | None:
        """Start the flows of a batch ((N, H, W, 3) uint8 RGB) on the worker thread before it is painted.

        Returns what ``__call__`` takes as ``pending``: a Future of the flows, or None when
        stabilisation is off (no flow is computed then).
        """
        frames = np.asarray(frames)
        if not len(frames):
            return None
        prev, self.prev_rgb = self.prev_rgb, frames[-1].copy()
        if not self.active:
            return None
        self.estimator()
        return self._pool.submit(self._flows_host, frames, prev)

    def is_cut(self, frame: np.ndarray, prev: np.ndarray, mask: np.ndarray, prev_means: np.ndarray | None = None,
               frame_means: np.ndarray | None = None) -> bool:
        """True when ``frame`` starts a new scene after ``prev`` (both (H, W, 3) uint8 inputs): more than
        ``cut_occluded`` of ``mask`` ((H, W), nonzero = visible) occluded, or a mean absolute difference
        of their 16 x 16 cell means (on [0, 1] values) above ``cut_colour``."""
        occluded = 1.0 - cv2.countNonZero(mask) / mask.size
        a = _adaptive_means(frame) if frame_means is None else frame_means
        b = _adaptive_means(prev) if prev_means is None else prev_means
        scale = 255.0 if frame.dtype == np.uint8 else 1.0
        colour = float(np.abs(a - b).mean()) / scale
        return occluded > self.cut_occluded or colour > self.cut_colour

    def __call__(self, frames: np.ndarray, painted: np.ndarray, pending=None) -> np.ndarray:
        """frames: inputs (N, H, W, 3) uint8; painted: their paintings (N, H, W, 3) uint8 -> stabilised
        (N, H, W, 3) uint8 (``painted`` itself while stabilisation is off).

        ``pending``: what ``begin(frames)`` returned, or None to compute the flows here.
        """
        frames, painted = np.asarray(frames), np.asarray(painted)
        if (frames.shape != painted.shape or frames.ndim != 4 or frames.shape[-1] != 3
                or frames.dtype != np.uint8 or painted.dtype != np.uint8):
            raise VidstyleError(f"the stabiliser takes uint8 frames and paintings of one (N, H, W, 3) shape, "
                                f"not {frames.dtype} {frames.shape} and {painted.dtype} {painted.shape}")
        if not len(frames):
            return painted
        if not self.active:
            if isinstance(pending, Future) and not pending.cancel():
                pending.result()  # started before stabilisation was turned off: never leave it behind
            self.prev_in, self.prev_out, self._prev_means = frames[-1].copy(), painted[-1].copy(), None
            return painted
        if pending is None:
            pending = self.begin(frames)
        flows = pending.result()
        out = np.empty_like(painted)
        w = float(self.weight)
        for i in range(len(frames)):
            xi, pi = frames[i], painted[i]
            f = flows[i]
            res = None
            means = None
            if f is not None and self.prev_out is not None and self.prev_out.shape == pi.shape:
                fw, bw = f
                pos = sample_map(fw)
                mask = occlusion(fw, bw, positions=pos)
                means = _adaptive_means(xi)
                if self._prev_means is None:
                    self._prev_means = _adaptive_means(self.prev_in)
                if self.is_cut(xi, self.prev_in, mask, self._prev_means, means):
                    self.cuts += 1
                else:
                    warped = cv2.remap(_to_float(self.prev_out), pos, None, WARP_MODES[self.warp_mode],
                                       borderMode=cv2.BORDER_REPLICATE)             # as ``warp``
                    np.clip(warped, 0.0, 1.0, out=warped)
                    yi = _to_float(pi)
                    res = cv2.addWeighted(yi, 1.0 - w, warped, w, 0.0, dst=warped)  # where visible
                    cv2.copyTo(yi, cv2.bitwise_not(mask), res)                      # the painting elsewhere
                    if self.keep_detail:
                        res = restore_detail(res, yi)
            if res is None:  # first frame, new frame size or scene cut: the painting as it is
                out[i] = pi
                self.prev_out = pi.copy()
            else:
                cv2.convertScaleAbs(res, dst=out[i], alpha=255.0)
                self.prev_out = res
            self.prev_in, self._prev_means = xi.copy(), means
        return out


__all__ = ["Stabilizer", "occlusion", "restore_detail", "warp"]
