"""``vidstyle live``: the command-line face of :mod:`vidstyle.live.loop`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import PAINT_OPTIONS, TEMPORAL_OPTIONS, user_errors, with_options
from ..errors import VidstyleError
from ..options import PaintOptions, TemporalOptions


@with_options(PAINT_OPTIONS, TEMPORAL_OPTIONS, after="style", skip=("style",))
def live(
    source: str = typer.Option("0", "--source", help="Camera index (0, 1, ...), or a video file or URL, "
                               "played at its own frame rate."),
    style: Optional[List[str]] = typer.Option(None, "--style", "-s", help="Style name, MODEL:STYLE, .safetensors "
                                              "path, picture (my_painting.jpg) or folder of pictures. Repeat it "
                                              "to cycle through several (n/p keys), the first painted at the start; "
                                              "a picture added to a folder while live joins the cycle. The bundled "
                                              "styles follow."),
    width: Optional[int] = typer.Option(None, "--width", min=16, help="Frame width to ask the camera for "
                                        "(other sources are scaled to it)."),
    height: Optional[int] = typer.Option(None, "--height", min=16, help="Frame height, as --width."),
    fps: Optional[float] = typer.Option(None, "--fps", min=1, help="Frame rate to ask the camera for; also the "
                                        "virtual camera's and the feed's rate."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Show the input beside the output."),
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Show the preview window."),
    virtual_cam: bool = typer.Option(False, "--virtual-cam", help="Send the output to a virtual camera "
                                     "(OBS Virtual Camera, v4l2loopback) through pyvirtualcam."),
    cam_device: Optional[str] = typer.Option(None, "--cam-device", help="Which virtual camera, e.g. "
                                             "/dev/video10 or 'OBS Virtual Camera'."),
    serve: Optional[str] = typer.Option(None, "--serve", help="Low-latency MPEG-TS feed (H.264) to "
                                        "udp://HOST:PORT or srt://HOST:PORT, for OBS or ffplay."),
    record: Optional[Path] = typer.Option(None, "--record", help="Record the output to this MP4 from the "
                                          "start (the r key starts and stops recordings)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --record file."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Stop after N painted frames. Frames that "
                                         "come while one is being painted are skipped, as with a camera, so a file "
                                         "source without --loop can end sooner (vidstyle run paints every frame)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.001, help="Stop after S seconds."),
    loop: bool = typer.Option(False, "--loop", help="Restart a file source at its end."),
    snapshot_dir: Path = typer.Option(Path("."), "--snapshot-dir", help="Where the s key saves PNGs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No messages."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the results at the end."),
    **options,
):
    """Paint a camera (or a file) live: preview window, virtual camera, network feed, recording.

    Keys in the window: n/p next/previous style, 1-9 pick a style, [ ] strength,
    c colours, t temporal smoothing, b side by side, s snapshot, r record,
    f full screen, h help, q or Esc quit.

    Examples:

      vidstyle live --style udnie --width 1280 --height 720

      vidstyle live --style my_painting.jpg --style ~/Pictures/styles/

      vidstyle live --virtual-cam --no-preview

      vidstyle live --source clip.mp4 --loop --serve udp://127.0.0.1:5000
    """
    from ..live.loop import LiveOptions, run_live

    def notify(msg: str) -> None:
        if not quiet:
            typer.echo(msg, err=True)

    with user_errors():
        if snapshot_dir and not snapshot_dir.is_dir():
            raise VidstyleError(f"--snapshot-dir does not exist: {snapshot_dir}")
        if (width is None) != (height is None):
            raise VidstyleError("give both --width and --height, or neither")
        opts = LiveOptions(source=source, paint=PaintOptions.pick(options), styles=tuple(style or ()),
                           temporal=TemporalOptions.pick(options), width=width, height=height, fps=fps,
                           side_by_side=side_by_side, preview=preview, virtual_cam=virtual_cam,
                           cam_device=cam_device, serve=serve, record=record, overwrite=overwrite, frames=frames,
                           duration=duration, loop=loop, snapshot_dir=snapshot_dir)
        try:
            r = run_live(opts, notify)
        except KeyboardInterrupt:
            # only before the session started or after it finalised its outputs (a saved recording
            # was reported above), so not user_errors' "nothing was written"
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(130) from None
        if json_out:
            typer.echo(json.dumps(r.to_dict()))
        elif not quiet:
            typer.echo(f"{r.frames} frames in {r.seconds:.1f} s ({r.fps:.1f} fps), latency median "
                       f"{r.latency_ms_median:.0f} ms, p95 {r.latency_ms_p95:.0f} ms, {r.dropped} camera frames "
                       f"skipped, style {r.style} on {r.device}", err=True)
