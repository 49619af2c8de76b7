"""Live mode under failure: a bad flow stops before the camera opens, a style that fails to load is skipped,
the capture source is never closed under its reading thread."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from vidstyle.errors import VidstyleError
from vidstyle.live.loop import LiveOptions, LiveSession


@pytest.fixture
def live_clip(tmp_path) -> Path:
    return make_clip(tmp_path / "cam.mp4", w=64, h=48, n=12, fps=12, audio=None)


def _no_source(*a, **kw):
    raise AssertionError("the source was opened before the options were checked")


# ---------------------------------------------------------------- flow and styles
def test_bad_flow_stops_before_the_source_opens(live_clip, model_file, monkeypatch, tmp_path):
    import vidstyle.flow as flow
    import vidstyle.live.loop as loop
    monkeypatch.setattr(loop, "open_source", _no_source)
    opts = dict(source=str(live_clip), style=str(model_file), device="cpu", preview=False)
    with pytest.raises(VidstyleError, match="--flow"):
        LiveSession(LiveOptions.make(**opts, flow="rafts"))
    monkeypatch.setattr(flow, "raft_weights_path", lambda variant="large": tmp_path / "none.pth")
    with pytest.raises(VidstyleError, match="RAFT weights"):
        LiveSession(LiveOptions.make(**opts, flow="raft"))


def test_a_style_that_fails_to_load_is_skipped_with_a_notice(live_clip, model_file, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    messages = []
    session = LiveSession(LiveOptions.make(source=str(live_clip), style=str(model_file), device="cpu", preview=False,
                                           loop=True, frames=6, keys={1: "n", 3: "p"}), notify=messages.append)
    session.bank.specs = [(str(model_file), None), (str(broken), None), ("random_lite2", None)]
    session.bank._cache = {0: session.bank[session.bank.start], 2: session.bank[session.bank.start]}
    session.bank.start = 0
    session.state = session.state.__class__(style=0, n_styles=3)
    r = session.run()
    assert r.frames == 6
    skipped = [m for m in messages if "cannot be loaded" in m]
    assert len(skipped) == 2 and "broken.safetensors" in skipped[0]  # n and p both passed it by
    assert session.state.style == 0


# ---------------------------------------------------------------- capture close
def test_stop_does_not_close_a_source_its_thread_is_still_reading(caplog):
    from vidstyle.live.capture import Capture
    inside, release, closed = threading.Event(), threading.Event(), []

    class Blocking:
        def __call__(self, stop):
            inside.set()
            release.wait(10)  # a camera read that does not come back
            return iter(())

        def close(self):
            closed.append(threading.current_thread().name)

    cap = Capture(Blocking())
    cap.join_timeout = 0.05
    cap.start()
    assert inside.wait(5)
    with caplog.at_level(logging.WARNING, logger="vidstyle"):
        cap.stop()
    assert closed == [] and "did not stop" in caplog.text
    release.set()
    cap.thread.join(5)
    assert closed == ["vidstyle-capture"]  # closed by the thread when it got out


def test_stop_closes_the_source_when_the_thread_ended():
    from vidstyle.live.capture import Capture
    closed = []

    class Quick:
        def __call__(self, stop):
            yield np.zeros((4, 4, 3), np.uint8)

        def close(self):
            closed.append(1)

    cap = Capture(Quick()).start()
    cap.thread.join(5)
    cap.stop()
    assert closed == [1]
