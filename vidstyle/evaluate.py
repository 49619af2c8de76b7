"""``vidstyle eval``: measure flicker and style the way the literature does.

* short-term warping error (Lai et al. 2018): for each t, the squared RGB difference
  (values in 0..1, summed over the channels) between output t and output t-1 warped by
  the flow of the *input* frames, averaged over the non-occluded pixels; then over t.
  Flow: DIS (MEDIUM preset) on the input frames, or ground-truth ``.flo`` files (scaled to the frames'
  size with their vectors; pairs without a file use DIS, and a warning says how many).
  Occlusion: forward-backward check with 0.01 and 0.5, plus pixels from outside the frame.
* long-term warping error: the same between t and t-k (default k = 5); None (not measured) for k or fewer frames;
* style loss (relative Gram error at relu1_2 .. relu4_3) and content loss (relu3_3) of the outputs,
  so that stability bought by washing out the style shows. Measured with the loss network's zero
  padding; ``vidstyle train`` by default uses reflect padding (--loss-padding), so these figures compare
  eval rows with each other, not with training's log;
* seconds per frame of stylization (and stabilisation);
* ``seam_errors``: the short-term warping error across the seams of a ``--segments`` output against the pairs
  inside its parts (``benchmarks/scaling.py``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch

from .errors import VidstyleError, one_line
from .flow import DISFlow, read_flo, to_tensor
from .frames import frame_files
from .io.images import read_image
from .options import PaintOptions, TemporalOptions
from .stylizer import shrunk_to
from .warp import occlusion, warp

log = logging.getLogger("vidstyle")


@dataclass
class EvalResult:
    label: str
    frames: int
    warp_error: float
    warp_error_long: float | None  # None: not measured (k or fewer frames)
    style_loss: float | None
    content_loss: float
    seconds_per_frame: float
    per_frame_warp_error: list = field(default_factory=list)

    def to_dict(self, per_frame: bool = False) -> dict:
        d = asdict(self)
        if not per_frame:
            d.pop("per_frame_warp_error")
        return d


def load_frames(src: str | Path, max_frames: int | None = None, max_side: int | None = None) -> list[np.ndarray]:
    """A video file or a folder of frames -> list of (H, W, 3) uint8."""
    p = Path(src)
    if p.is_dir():
        files = frame_files(p)
        if len(files) < 2:
            raise VidstyleError(f"{p}: a folder of frames needs at least two images")
        frames = [read_image(f) for f in files[:max_frames]]
    else:
        from .io.reader import VideoReader
        frames = []
        with VideoReader(p) as r:
            for fr in r.frames():
                frames.append(fr.rgb)
                if max_frames and len(frames) >= max_frames:
                    break
        if len(frames) < 2:
            raise VidstyleError(f"{p}: {len(frames) or 'no'} frame{'' if len(frames) == 1 else 's'} decoded; "
                                "the warping error needs a video of at least two frames")
    if len({f.shape for f in frames}) != 1:  # before --max-side, which would stretch them all alike
        raise VidstyleError(f"{src}: frames differ in size")
    return [shrunk_to(f, max_side) for f in frames]


def check_flo_dir(flo_dir: str | Path) -> Path:
    """``flo_dir`` if it is a folder with .flo files; a VidstyleError otherwise (not silently DIS instead)."""
    p = Path(flo_dir)
    if not p.exists():
        raise VidstyleError(f"--flo-dir not found: {p}")
    if not p.is_dir():
        raise VidstyleError(f"--flo-dir must be a folder of backward_T_S.flo files, not the file {p}")
    if not any(p.glob("*.flo")):
        raise VidstyleError(f"--flo-dir {p} holds no .flo files (backward_T_S.flo, forward_S_T.flo)")
    return p


class FlowBank:
    """Flows and occlusion masks between input frames, computed once and shared by every row."""

    def __init__(self, frames: list[np.ndarray], flo_dir: str | Path | None = None):
        self.frames = frames
        self.dis = DISFlow("medium")
        self.flo_dir = Path(flo_dir) if flo_dir else None
        self.cache: dict = {}
        self.missing: list[str] = []  # --flo-dir files not found: DIS was used in their place
        self._reported = False

    def _read(self, path: Path) -> np.ndarray | None:
        """A ground-truth flow at the frames' size (vectors scaled too); None (DIS) when there is no file."""
        if not path.is_file():
            self.missing.append(path.name)
            return None
        flow = read_flo(path)
        h, w = self.frames[0].shape[:2]
        fh, fw_ = flow.shape[:2]
        if (fh, fw_) == (h, w):
            return flow
        sx, sy = w / fw_, h / fh
        if abs(fh * sx - h) > 1 and abs(fw_ * sy - w) > 1:  # not these frames scaled (--max-side rounds)
            raise VidstyleError(f"{path} is {fw_}x{fh}, which does not scale to the {w}x{h} frames")
        import cv2

        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR)
        return flow * np.array([sx, sy], np.float32)

    def report(self) -> None:
        """One warning, once, for the pairs whose --flo-dir files were missing."""
        if self.missing and not self._reported:
            self._reported = True
            log.warning("--flo-dir %s lacks %d flow file(s) (e.g. %s): DIS was used for those",
                        self.flo_dir, len(self.missing), self.missing[0])

    def get(self, t: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow warping frame s onto frame t (1, 2, H, W), visibility mask (1, 1, H, W))."""
        key = (t, s)
        if key not in self.cache:
            fw = bw = None
            if self.flo_dir is not None:
                # Ruder et al.'s naming: backward_{t}_{s}.flo warps frame s onto t; 1-based frame numbers
                fw = self._read(self.flo_dir / f"backward_{t + 1}_{s + 1}.flo")
                if fw is not None:  # the forward flow (occlusion check) is looked for with a backward one
                    bw = self._read(self.flo_dir / f"forward_{s + 1}_{t + 1}.flo")
            if fw is None:
                fw = self.dis(self.frames[t], self.frames[s])
            if bw is None:
                bw = self.dis(self.frames[s], self.frames[t])
            fw_t, bw_t = to_tensor(fw), to_tensor(bw)
            self.cache[key] = (fw_t, occlusion(fw_t, bw_t))
        return self.cache[key]


def warping_errors(outputs: list[np.ndarray], bank: FlowBank, k: int = 1) -> list[float]:
    """Per-frame warping error between output t and output t-k (see the module docstring)."""
    errs = []
    for t in range(k, len(outputs)):
        flow, mask = bank.get(t, t - k)
        o_t = torch.from_numpy(outputs[t]).permute(2, 0, 1)[None].float() / 255
        o_s = torch.from_numpy(outputs[t - k]).permute(2, 0, 1)[None].float() / 255
        warped, _ = warp(o_s, flow)
        d = (o_t - warped).pow(2).sum(1, keepdim=True)
        errs.append(float((d * mask).sum() / mask.sum().clamp_min(1)))
    return errs


def perceptual(outputs: list[np.ndarray], inputs: list[np.ndarray], style_rgb: np.ndarray | None,
               loss_net: str = "auto", every: int = 1, content_layer: str = "relu3_3",
               relative: bool = True) -> tuple[float | None, float]:
    """(mean style loss, mean content loss) of the outputs, with the loss network's zero padding.

    The style loss is relative (each layer's Gram error over the style's own: ``losses.gram_norms``),
    so strokes count as much as colour; ``relative=False`` gives the raw sum (figures before 2026-11-26).
    The content loss is at ``content_layer`` (relu3_3). This is not `vidstyle train`'s measure (reflect
    padding, the crop size, the weights): compare these figures with each other, not with training's log.
    """
    from .train import losses as L
    from .train.lossnet import load_loss_net

    vgg = load_loss_net(loss_net)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        grams = {k: L.gram(v) for k, v in vgg(to_t(style_rgb)).items()} if style_rgb is not None else None
        norms = L.gram_norms(grams) if grams is not None and relative else None
        s_sum, c_sum, n = 0.0, 0.0, 0
        for o, x in list(zip(outputs, inputs))[::every]:
            fo, fx = vgg(to_t(o)), vgg(to_t(x), upto=content_layer)
            c_sum += float(L.content_loss(fo, fx, content_layer))
            if grams is not None:
                s_sum += float(L.style_loss(fo, grams, norms=norms))
            n += 1
    return (s_sum / n if grams is not None else None), c_sum / n


def lab_stats(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (6,) mean and std of CIE L*, a*, b* (L in 0..100, a and b about -128..127)."""
    import cv2

    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return np.concatenate([lab.mean(0), lab.std(0)])


def colour_distance(rgb: np.ndarray, painting: np.ndarray) -> float:
    """Mean absolute difference of the Lab colour statistics (``lab_stats``) of a picture and a painting.

    0 for the same palette and contrast; the bundled CPU models of 2026-11 gave 13 to 18 on video frames.
    """
    return float(np.abs(lab_stats(rgb) - lab_stats(painting)).mean())


def stylize_frames(frames: list[np.ndarray], stylizer, stabilizer=None, batch_size: int = 4,
                   progress: Callable[[int], None] | None = None) -> tuple[list, float]:
    """Outputs and seconds per frame; ``progress(n)`` after each batch, n frames painted."""
    outs = []
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        outs += list(stylizer.download(stylizer.paint_frames(np.stack(frames[i:i + batch_size]), stabilizer)))
        if progress is not None:
            progress(len(outs))
    return outs, (time.perf_counter() - t0) / len(frames)


def evaluate(frames: list[np.ndarray], stylizer, *, label: str, stabilizer=None, bank: FlowBank,
             long_k: int = 5, loss_net: str = "auto", style_rgb: np.ndarray | None = None,
             outputs: list | None = None, progress: Callable[[int], None] | None = None) -> EvalResult:
    """One row of figures; ``progress(n)`` as its frames are painted."""
    if outputs is not None and len(outputs) != len(frames):
        raise VidstyleError(f"{label}: {len(outputs)} painted frames for {len(frames)} input frames")
    outs, spf = stylize_frames(frames, stylizer, stabilizer, progress=progress) if outputs is None else (outputs, 0.0)
    short = warping_errors(outs, bank, 1)
    long = warping_errors(outs, bank, long_k) if len(outs) > long_k else []
    bank.report()
    style_l, content_l = perceptual(outs, frames, style_rgb, loss_net)
    return EvalResult(label, len(outs), float(np.mean(short)), float(np.mean(long)) if long else None,
                      style_l, content_l, spf, short)


def evaluate_styles(frames: list[np.ndarray], styles: list[str | None], paint: PaintOptions,
                    temporal: TemporalOptions, *, compare: bool = False, bank: FlowBank, long_k: int = 5,
                    loss_net: str = "auto", style_image: Path | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[EvalResult]:
    """What ``vidstyle eval`` measures: one row per style of ``styles`` (None: the default) painted with
    ``paint``, with the stabiliser as ``temporal`` says, or both ways with ``compare``. The style loss is
    measured against ``style_image``, else the picture stored in the model for the style painted (a picture as the
    style: that picture).
    ``progress(done, total)``: frames painted over every row (each row's figures follow its frames)."""
    from .api import make_stylizer

    rows = []
    pic_given = read_image(style_image) if style_image else None
    settings = [False, True] if compare else [temporal.temporal]
    total = len(frames) * len(settings) * len(styles or [None])
    for spec in styles or [None]:
        stylizer = make_stylizer(spec, paint=paint)
        label = getattr(stylizer.model, "label", stylizer.name)
        pic = pic_given
        if pic is None and getattr(stylizer.model, "is_picture", False) and len(stylizer.model.sources) == 1:
            from .io.pictures import read_picture  # a picture as the style: measured against that picture

            pic = read_picture(next(iter(stylizer.model.sources.values())), allow_protocols=["http", "https"]).rgb
        elif pic is None and stylizer.model.style_images:
            pic = stylizer.model.style_images.get(label.split("+")[0].split(":")[0])
            pic = pic.numpy() if pic is not None else next(iter(stylizer.model.style_images.values())).numpy()
        for on in settings:
            done = len(rows) * len(frames)
            tick = None if progress is None else (lambda n, done=done: progress(done + n, total))
            rows.append(evaluate(frames, stylizer, label=label + ("+temporal" if on else ""),
                                 stabilizer=temporal.replace(temporal=on).stabilizer(), bank=bank, long_k=long_k,
                                 loss_net=loss_net, style_rgb=pic, progress=tick))
    return rows


def pyplot():
    """matplotlib.pyplot (no display needed), or a VidstyleError saying what to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VidstyleError("--plot needs matplotlib: pip install 'vidstyle[plot]'") from None
    return plt


def check_plot_path(path: Path) -> None:
    """Before an evaluation: matplotlib is there, and ``path`` can take a figure (VidstyleError otherwise)."""
    plt = pyplot()
    path = Path(path)
    kinds = plt.gcf().canvas.get_supported_filetypes()
    plt.close("all")
    if path.suffix.lower().lstrip(".") not in kinds:
        raise VidstyleError(f"--plot {path}: end the name in one of .{', .'.join(sorted(kinds))}")
    if not path.parent.is_dir():
        raise VidstyleError(f"--plot {path}: folder does not exist: {path.parent}")


def plot(results: list[EvalResult], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in results:
        ax.plot(range(1, len(r.per_frame_warp_error) + 1), r.per_frame_warp_error, label=r.label)
    ax.set_xlabel("frame")
    ax.set_ylabel("short-term warping error")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as e:
        raise VidstyleError(f"cannot write the plot {path}: {one_line(e, 120)}") from None
    finally:
        plt.close(fig)


# -- the seams of a --segments output ------------------------------------------------------------
def _frames_in(path: str | Path, wanted: set[int] | None, max_side: int | None) -> dict[int, np.ndarray]:
    """{index: (H, W, 3) uint8} of the frames in ``wanted`` (every frame when None), scaled to ``max_side``."""
    got = {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if wanted is None or i in wanted:
                got[i] = shrunk_to(f.to_ndarray(format="rgb24"), max_side)
            if wanted is not None and (not wanted or i >= max(wanted)):
                break
    return got


def seam_errors(src: str | Path, output: str | Path, cuts: list[int], *, window: int = 6,
                max_side: int | None = 360, whole: bool = False) -> dict:
    """Short-term warping error across each seam of a ``--segments`` output vs inside the parts.

    For every cut c, the pairs (t-1, t) for t in [c - window, c + window) are measured with DIS flow on
    the input frames; the pair (c-1, c) is the seam, the others are inside a part. Returns
    ``{"seams": [{"cut", "error", "inside_median"}], "inside_median", "worst_ratio"}``. With ``whole``,
    every pair of the video is measured (once; the seams' figures come from the same pairs):
    ``"parts_median"`` is the median of all the pairs that do not cross a seam, and
    ``"worst_ratio_parts"`` the worst seam over it.
    """
    wanted = None if whole else {i for c in cuts for i in range(max(0, c - window - 1), c + window)}
    inputs, outputs = _frames_in(src, wanted, max_side), _frames_in(output, wanted, max_side)
    if not whole:
        return seam_table(inputs, outputs, cuts, window=window)
    n = min(len(inputs), len(outputs))
    pairs = _pair_errors(inputs, outputs, list(range(n)))
    table = _seams_from_pairs(pairs, cuts, window)
    seam_pairs = set(cuts)
    med = float(np.median([e for t, e in pairs.items() if t not in seam_pairs]))
    worst = max((s["error"] for s in table["seams"]), default=None)
    table.update(parts_median=med, worst_ratio_parts=(worst / med) if (worst is not None and med) else None)
    return table


def seam_table(inputs: dict[int, np.ndarray], outputs: dict[int, np.ndarray], cuts: list[int], *,
               window: int = 6) -> dict:
    """``seam_errors`` on frames already decoded: {frame index: (H, W, 3) uint8} of the input and output."""
    pairs = {}
    for c in cuts:
        idx = [i for i in range(max(0, c - window - 1), c + window) if i in inputs and i in outputs]
        if c in idx and c - 1 in idx:
            pairs.update(_pair_errors(inputs, outputs, idx))
    return _seams_from_pairs(pairs, cuts, window)


def _pair_errors(inputs: dict, outputs: dict, idx: list[int]) -> dict[int, float]:
    """{t: warping error of the outputs' pair (idx before t, t)} over the consecutive frames ``idx``."""
    errs = warping_errors([outputs[i] for i in idx], FlowBank([inputs[i] for i in idx]), 1)
    return dict(zip(idx[1:], errs))


def _seams_from_pairs(pairs: dict[int, float], cuts: list[int], window: int) -> dict:
    """The seams' table from the measured pairs {t: error of (t-1, t)}."""
    seams, inside = [], []
    for c in cuts:
        if c not in pairs:
            continue
        here = [pairs[t] for t in range(max(1, c - window), c + window) if t != c and t in pairs]
        inside += here
        seams.append({"cut": c, "error": pairs[c], "inside_median": float(np.median(here)) if here else None})
    med = float(np.median(inside)) if inside else None
    worst = max((s["error"] for s in seams), default=None)
    return {"seams": seams, "inside_median": med,
            "worst_ratio": (worst / med) if (worst is not None and med) else None}
