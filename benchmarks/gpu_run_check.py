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

import av


def streams(path: str) -> tuple[list[float], str, int]:
    """(video frame times in seconds, sha1 of the audio packets' bytes, audio packet count)."""
    times, audio, n_audio = [], hashlib.sha1(), 0
    with av.open(path) as c:
        v = c.streams.video[0]
        for packet in c.demux():
            if packet.stream.type == "audio" and packet.size:
                audio.update(bytes(packet))
                n_audio += 1
            elif packet.stream is v and packet.pts is not None:
                times.append(round(float(packet.pts * v.time_base), 6))
    return sorted(times), audio.hexdigest(), n_audio


def main() -> None:
    src, out, rc, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    row = {"rc": rc, "seconds": secs}
    try:
        t_in, a_in, n_in = streams(src)
        t_out, a_out, n_out = streams(out)
        row.update(frames_in=len(t_in), frames_out=len(t_out), timestamps_equal=t_in == t_out,
                   audio_packets_in=n_in, audio_packets_out=n_out, audio_bytes_equal=a_in == a_out)
    except (OSError, av.error.FFmpegError, IndexError) as e:
        row["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(row))


if __name__ == "__main__":
    main()
