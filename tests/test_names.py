"""One answer everywhere: what is a URL and what a local file, and what the outputs are called.

``io.protocols.is_url`` / ``local_path`` decide for the reader, the writer's same-file check, the batch and
``naming.default_output``; ``naming.safe_label`` / ``naming.input_stem`` name every output."""
from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from vidstyle import api, batch, executors, naming
from vidstyle.naming import is_many as _is_many
from vidstyle.errors import VidstyleError
from vidstyle.io.images import write_image
from vidstyle.io.protocols import input_protocol, is_url, local_path
from vidstyle.io.reader import VideoInfo, VideoReader
from vidstyle.io.atomic import check_target, same_file as _same_file
from vidstyle.io.writer import _frame_rate


# -- URL or local file -----------------------------------------------------------------------------
@pytest.mark.parametrize("src, url", [
    ("https://example.com/a.mp4?x=1", True),
    ("rtsp://cam:554/live", True),
    ("concat:a.mp4|b.mp4", True),
    ("subfile,,start,0,end,400,,:a.mp4", True),
    ("file+concat:a.mp4", True),
    ("file:a.mp4", False),
    ("file:///videos/a.mp4", False),
    ("FILE:a.mp4", False),
    ("C:/videos/a.mp4", False),
    ("C:\\videos\\a.mp4", False),
    ("a.mp4", False),
    ("/videos/a.mp4", False),
    ("clips,old/a.mp4", False),  # FFmpeg reads a name before ',' as a protocol only for subfile
    ("clips,old/*.mp4", False),
])
def test_is_url(src, url):
    assert is_url(src) is url


def test_local_path_drops_only_the_file_prefix():
    assert local_path("file:a.mp4") == "a.mp4"
    assert local_path("file:/v/a.mp4") == "/v/a.mp4"
    assert local_path("a.mp4") == "a.mp4"
    assert local_path("https://h/a.mp4") == "https://h/a.mp4"
    assert local_path("concat:a|b") == "concat:a|b"


def test_an_existing_file_is_local_whatever_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "concat:a.mp4", n=3, audio=None)
    assert input_protocol("concat:a.mp4") is None and not is_url("concat:a.mp4")
    assert local_path("concat:a.mp4") == "concat:a.mp4"
    assert batch.probe_frames("concat:a.mp4") == 3  # read as the file, through the whitelist
    assert [s.input for s in batch.find_inputs(["concat:a.mp4"])] == ["concat:a.mp4"]
    assert naming.default_output("concat:a.mp4", "x") == Path("concat:a.x.mp4")


def test_file_prefix_is_the_local_file_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    clip = make_clip(tmp_path / "sub" / "clip.mp4", n=4, audio=None)
    spec = f"file:{clip}"
    with VideoReader(spec) as r:  # the reader
        assert r.info.frames == 4
    assert batch.probe_frames(spec) == 4  # the batch's progress total
    assert _same_file(spec, clip) and _same_file("file:sub/clip.mp4", clip)  # the writer
    (src,) = batch.find_inputs([spec])  # the batch takes it as the file
    assert Path(src.input) == clip and src.key == str(clip)
    assert naming.Source(spec).key == str(clip)
    assert naming.Source("file:sub/clip.mp4").key == str(clip)
    assert naming.default_output(spec, "ink") == clip.parent / "clip.ink.mp4"  # beside it, not in the cwd
    assert naming.output_name(naming.Source(spec), "ink").as_posix() == "clip.ink.mp4"
    assert _is_many(f"file:{clip.parent}") and not _is_many(spec)


def test_missing_file_prefix_input_is_not_found(tmp_path):
    with pytest.raises(VidstyleError, match="input not found"):
        VideoReader(f"file:{tmp_path / 'missing.mp4'}")
    with pytest.raises(VidstyleError, match="input not found"):
        batch.find_inputs([f"file:{tmp_path / 'missing.mp4'}"])


def test_a_comma_in_a_missing_name_is_not_a_protocol(tmp_path):
    with pytest.raises(VidstyleError, match="input not found"):
        VideoReader(str(tmp_path / "a,b.mp4"))
    with pytest.raises(VidstyleError, match="input not found"):
        VideoReader("clips,old.mp4")


def test_glob_with_a_comma_is_a_glob(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips,old").mkdir()
    make_clip(tmp_path / "clips,old" / "a.mp4", n=2, audio=None)
    assert _is_many("clips,old/*.mp4")
    assert batch.expand_inputs(["clips,old/*.mp4"]) == ["clips,old/a.mp4"]


def test_protocol_inputs_are_urls_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in ("concat:a.mp4|b.mp4", "https://h/p/talk.m3u8?x=1"):
        assert batch.find_inputs([spec]) == [naming.Source(spec)]  # kept as it is, not "input not found"
        assert naming.Source(spec).key == spec
        assert batch.probe_frames(spec) == 0
        assert not _same_file(spec, tmp_path / "out.mp4")
        assert not _is_many(spec)
        assert naming.default_output(spec, "ink").parent == tmp_path  # a URL's output goes to the cwd
    check_target(tmp_path / "out.mp4", False, "concat:out.mp4|out.mp4")  # never "the same file"


# -- names ------------------------------------------------------------------------------------------
ODD_LABELS = ["udnie:0.5+the_scream:0.5", "my style", "a/b\\c", "mosaic.v2", "ölbild*", "x?y|z"]


@pytest.mark.parametrize("label", ODD_LABELS)
@pytest.mark.parametrize("src", ["clips/holiday.mp4", "file:clips/holiday.mp4", "https://h/v/holiday.m3u8?t=1",
                                 "rtmp://h/live/holiday"])
def test_default_output_and_batch_names_agree(label, src):
    name = naming.default_output(src, label).name
    assert name == naming.output_name(naming.Source(src), label).as_posix()
    assert name == f"holiday.{naming.safe_label(label)}.mp4"
    assert "/" not in name and "\\" not in name and ":" not in name


def test_safe_label():
    assert naming.safe_label("udnie:0.5+the_scream:0.5") == "udnie_0_5+the_scream_0_5"
    assert naming.safe_label("a b/c") == "a_b_c"
    assert naming.safe_label("ok-name_1+x") == "ok-name_1+x"


@pytest.mark.parametrize("src, stem", [("https://h/p/talk.m3u8?x=1", "talk"), ("https://h/p/talk/", "talk"),
                                       ("clips/a.b.mp4", "a.b"), ("file:/v/clip.mov", "clip"), ("file:/", "video")])
def test_input_stem(src, stem):
    assert naming.input_stem(src) == stem


def test_image_default_name_uses_the_safe_label(tmp_path):
    class Fake:  # stands for a Stylizer: the label of a mix, and an identity painting
        name = "fake"
        model = type("M", (), {"label": "udnie:0.5+the_scream:0.5"})()

        def __call__(self, x):
            return x

    src = write_image(tmp_path / "photo.png", np.zeros((8, 8, 3), np.uint8))
    written = api.stylize_image(src, stylizer=Fake())
    assert written == tmp_path / "photo.udnie_0_5+the_scream_0_5.png" and written.is_file()


# -- shared helpers -----------------------------------------------------------------------------------
def test_throttled_progress_sends_the_first_and_the_last(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    sent = []
    progress = executors.throttled_progress(lambda n, total: sent.append((n, total)))
    for n in range(1, 10):
        progress(n, 10)
        now[0] += 0.1
    progress(10, 10)
    assert sent == [(1, 10), (7, 10), (10, 10)]
    sent.clear()
    progress = executors.throttled_progress(lambda n, total: sent.append(n))
    for n in range(1, 5):
        progress(n, 0)  # total unknown: only by time
    assert sent == [1]


def test_frame_rate_fallback_is_the_readers():
    info = VideoInfo(width=4, height=4, time_base=Fraction(1, 90000), fps=Fraction(0), frames=0, duration=None)
    assert _frame_rate(info) == Fraction(30)
    info.fps = Fraction(24000, 1001)
    assert _frame_rate(info) == Fraction(24000, 1001)


def test_no_duplicate_helpers_left():
    assert not hasattr(batch, "remove_partials") and not hasattr(batch, "_stem")
    assert naming.is_url is is_url  # output names use the reader's test
