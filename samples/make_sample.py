"""Rebuild samples/sample.mp4: 3 s of sam2_01_dog.mp4 (Apache-2.0, facebookresearch/sam2) plus a generated tone.

    python samples/make_sample.py ../shared/data/video/clips/sam2_01_dog.mp4 samples/sample.mp4
"""
import sys
from fractions import Fraction

import av
import numpy as np

src, dst = sys.argv[1], sys.argv[2]
seconds = 3.0
with av.open(src) as inp, av.open(dst, "w", options={"movflags": "+faststart"}) as out:
    vin = inp.streams.video[0]
    fps = vin.average_rate
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
    v.options = {"crf": "24", "preset": "slow"}
    a = out.add_stream("aac", rate=44100)
    a.layout = "stereo"
    out.metadata["title"] = "vidstyle sample: dog (SAM 2 demo clip) with a generated tone"
    out.metadata["comment"] = "video: facebookresearch/sam2 demo gallery, Apache-2.0; audio: generated"
    n = 0
    for f in inp.decode(vin):
        if f.time is not None and f.time >= seconds:
            break
        g = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
        g.pts, g.time_base = n, Fraction(1) / fps
        out.mux(v.encode(g))
        n += 1
    out.mux(v.encode(None))
    sr, fs = 44100, 1024
    total = int(n / fps * sr)
    for j in range(0, total, fs):
        t = (np.arange(j, j + fs) / sr).astype(np.float64)
        env = np.minimum(1, np.minimum(t * 4, (total / sr - t) * 4)).clip(0)
        tone = 0.2 * env * (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 660 * t))
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = sr, j
        out.mux(a.encode(frame))
    out.mux(a.encode(None))
print(dst, n, "frames")
