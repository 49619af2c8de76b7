"""Does a painted file keep its input's frames, timestamps and audio? One JSON line (benchmarks/gpu_run_check.sh).

Compares the first video stream's frame count and presentation times (in seconds, to the microsecond) and
the audio streams' packet bytes of INPUT and OUTPUT; RC and SECONDS are the run's exit code and wall time,
written along.

Usage: python3 benchmarks/gpu_run_check.py INPUT OUTPUT RC SECONDS
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.errors import VidstyleError  # noqa: E402
from vidstyle.segments import probe_video  # noqa: E402


def streams(path: str) -> tuple[list[float], str, int]:
    """(the shown video frames' times in seconds, sha1 of the audio packets' bytes, audio packet count)."""
    pts, _, tb = probe_video(path)
    audio, n_audio = hashlib.sha1(), 0
    with av.open(path) as c:
        for packet in c.demux(*c.streams.audio):
            if packet.size:
                audio.update(bytes(packet))
                n_audio += 1
    return [round(float(p * tb), 6) for p in pts], audio.hexdigest(), n_audio


def main() -> None:
    src, out, rc, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    row = {"rc": rc, "seconds": secs}
    try:
        t_in, a_in, n_in = streams(src)
        t_out, a_out, n_out = streams(out)
        row.update(frames_in=len(t_in), frames_out=len(t_out), timestamps_equal=t_in == t_out,
                   audio_packets_in=n_in, audio_packets_out=n_out, audio_bytes_equal=a_in == a_out)
    except (OSError, av.error.FFmpegError, VidstyleError) as e:
        row["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(row))


if __name__ == "__main__":
    main()
