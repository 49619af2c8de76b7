"""Batch edge cases: -o at or above the input folder, output names that are inputs, a manifest that notices
changed options and inputs, notes of a new attempt, Ctrl-C in a batch, and Ctrl-C with a stalled reader."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import make_clip
from vidstyle import pipeline
from vidstyle.batch import Manifest, StylizeJob, run_batch
from vidstyle.errors import BatchInterrupted, VidstyleError


class Painter:
    """paint_one that writes ``painted <input name> <options>``; refuses to replace a file without overwrite,
    as the real writer does. ``options``: what the manifest compares (like ``StylizeJob.options``)."""

    def __init__(self, label: str = "ink", notes: dict | None = None, **options):
        self.label, self.options, self.notes, self.calls = label, options, notes or {}, []

    def __call__(self, input, output, *, overwrite=False):
        if os.path.exists(output) and not overwrite:
            raise VidstyleError(f"{output} exists; --overwrite replaces it")
        self.calls.append(Path(input).name)
        Path(output).write_text(f"painted {Path(input).name} {self.options}", errors="surrogateescape")
        return {"frames": 1, "seconds": 0.0, "notes": self.notes.get(Path(input).name, [])}


def _clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_clip(path, n=2, audio=None)


def test_output_folder_is_the_input_folder_or_above_it(tmp_path):
    for case in ["same", "above", "inside"]:
        clips = tmp_path / case / "media/clips"
        for rel in ["a.mp4", "sub/b.mp4", "sub/deeper/c.mp4"]:
            _clip(clips / rel)
        out = {"same": clips, "above": clips.parent, "inside": clips / "sub"}[case]
        p = Painter()
        run_batch([clips], out, p, probe=False)
        if case == "inside":  # the output folder's sub-tree is not searched
            assert p.calls == ["a.mp4"]
        else:
            assert sorted(p.calls) == ["a.mp4", "b.mp4", "c.mp4"], case
            assert (out / "sub/deeper/c.ink.mp4").is_file()
            p = Painter()
            assert run_batch([clips], out, p, probe=False).skipped == 3 and p.calls == []  # outputs are not inputs


def test_an_output_name_is_never_an_input(tmp_path):
    clips = tmp_path / "clips"
    _clip(clips / "a.mp4")
    _clip(clips / "a.ink.mp4")  # the default output of an earlier single run: an input here
    before = (clips / "a.ink.mp4").read_bytes()
    for overwrite in (False, True):
        p = Painter()
        r = run_batch([clips], clips, p, probe=False, overwrite=overwrite)
        assert r.ok and sorted(p.calls) == ["a.ink.mp4", "a.mp4"], r.failed
        assert (clips / "a.ink.mp4").read_bytes() == before
        outputs = {Path(i["input"]).name: i["output"] for i in Manifest(clips).items}
        assert outputs == {"a.mp4": "a-2.ink.mp4", "a.ink.mp4": "a.ink.ink.mp4"}
        assert (clips / "a-2.ink.mp4").read_text().startswith("painted a.mp4")
        (clips / "vidstyle-manifest.json").unlink()
        for name in outputs.values():
            (clips / name).unlink()


def test_changed_options_or_input_are_not_already_done(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _clip(src / "a.mp4")
    _clip(src / "b.mp4")
    assert run_batch([src], out, Painter(max_side=None, crf=18), probe=False).done == 2
    same = Painter(max_side=None, crf=18)
    r = run_batch([src], out, same, probe=False)
    assert same.calls == [] and r.skipped == 2
    # other options: pending again, but the outputs are replaced only with --overwrite
    other = Painter(max_side=360, crf=18)
    r = run_batch([src], out, other, probe=False)
    assert other.calls == [] and len(r.failed) == 2 and r.skipped == 0
    assert all("\n" not in e and "max_side" in e and "--overwrite" in e for _, e in r.failed)
    assert (out / "a.ink.mp4").read_text() == "painted a.mp4 {'max_side': None, 'crf': 18}"
    r = run_batch([src], out, other, probe=False)  # a failed item does not lose what its output was painted with
    assert other.calls == [] and len(r.failed) == 2
    assert {i["status"] for i in Manifest(out).items} == {"done"}  # refused, the outputs are still done ...
    r = run_batch([src], out, same, probe=False)  # ... so going back to their settings paints nothing again
    assert same.calls == [] and r.skipped == 2
    r = run_batch([src], out, other, probe=False, overwrite=True)
    assert r.ok and sorted(other.calls) == ["a.mp4", "b.mp4"]
    assert (out / "a.ink.mp4").read_text() == "painted a.mp4 {'max_side': 360, 'crf': 18}"
    item = Manifest(out).items[0]
    assert item["status"] == "done" and item["options"] == {"max_side": 360, "crf": 18}
    # a changed input: the same
    other.calls.clear()
    _clip(src / "b.mp4")
    os.utime(src / "b.mp4", ns=(1, 1))
    r = run_batch([src], out, other, probe=False)
    assert other.calls == [] and r.skipped == 1 and len(r.failed) == 1 and "input" in r.failed[0][1]
    r = run_batch([src], out, other, probe=False, overwrite=True)
    assert r.ok and other.calls == ["b.mp4"] and r.skipped == 1


def test_stylize_job_options_follow_what_changes_the_output(model_file):
    base = StylizeJob(str(model_file), device="cpu")
    assert json.loads(json.dumps(base.options)) == base.options
    assert StylizeJob(str(model_file), device="cpu", batch_size=4).options == base.options
    for change in [dict(max_side=32), dict(strength=0.5), dict(crf=30), dict(chroma="444")]:
        assert StylizeJob(str(model_file), device="cpu", **change).options != base.options, change


def test_a_new_attempt_without_notes_clears_the_old_ones(tmp_path):
    _clip(tmp_path / "in/a.mp4")
    run_batch([tmp_path / "in"], tmp_path / "out", Painter(notes={"a.mp4": ["skipped 3 corrupt packets"]}),
              probe=False)
    assert Manifest(tmp_path / "out").items[0]["notes"] == ["skipped 3 corrupt packets"]
    run_batch([tmp_path / "in"], tmp_path / "out", Painter(crf=1), probe=False, overwrite=True)
    assert not Manifest(tmp_path / "out").items[0].get("notes")


def test_ctrl_c_in_a_batch_says_what_finished(tmp_path):
    for name in "abc":
        _clip(tmp_path / f"in/{name}.mp4")
    painter = Painter()

    def paint(input, output):
        if input.endswith("b.mp4"):
            raise KeyboardInterrupt
        return painter(input, output)

    with pytest.raises(KeyboardInterrupt) as e:
        run_batch([tmp_path / "in"], tmp_path / "out", paint, label="ink", probe=False)
    assert isinstance(e.value, BatchInterrupted) and e.value.exit_code == 130
    msg = str(e.value)
    assert "\n" not in msg and "1 of 3" in msg and "again" in msg and "nothing was written" not in msg
    assert [i["status"] for i in Manifest(tmp_path / "out").items] == ["done", "pending", "pending"]


def test_ctrl_c_while_the_reader_is_stalled_leaves_it_alone(tmp_path):
    """A second Ctrl-C while the pipeline waits for a stalled reader: the reader is not left running for the
    caller to close under it (``ValueError: generator already executing``); the exit is a KeyboardInterrupt."""
    release = threading.Event()

    def source():
        yield 1
        release.wait(5)  # a network read that stalls, then times out
        yield 2

    gen = source()
    main = threading.main_thread().ident
    threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()  # the second Ctrl-C
    threading.Timer(1.0, release.set).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in pipeline.run_stages(gen, lambda batch: batch):
            time.sleep(0.1)  # the reader is now stalled on item 2
            raise KeyboardInterrupt  # the first Ctrl-C
    gen.close()  # what VideoReader.close does: fine once the reader thread is done with it
    assert 0.9 < time.monotonic() - t0 < 5  # it waited for the stalled read, not for its whole timeout


def test_the_command_line_prints_what_a_batch_interruption_kept(capsys):
    import typer

    from vidstyle.commands.common import user_errors

    with pytest.raises(typer.Exit) as ex, user_errors():
        raise BatchInterrupted(KeyboardInterrupt(), 2, 5, "out", "vidstyle-manifest.json")
    assert ex.value.exit_code == 130
    err = capsys.readouterr().err.strip()
    assert err == ("error: interrupted: 2 of 5 videos done in out (recorded in vidstyle-manifest.json); "
                   "the same command again paints the rest")


def test_links_manifests_and_names_a_user_may_have(tmp_path):
    """One file reached through a link is one input; a linked sub-folder is searched; a file name that is
    not UTF-8 survives the manifest; a hand-edited item without a status is one line."""
    src, out = tmp_path / "in", tmp_path / "out"
    _clip(src / "a.mp4")
    (tmp_path / "nas").mkdir()
    _clip(tmp_path / "nas" / "n.mp4")
    os.symlink(tmp_path / "nas", src / "linked")
    os.symlink(src, tmp_path / "link")
    odd = os.fsencode(str(src)) + b"/caf\xe9.mp4"
    try:
        os.rename(_clip(tmp_path / "tmp.mp4"), odd)
    except OSError:  # a file system that wants UTF-8 names
        odd = None
    p = Painter()
    r = run_batch([src, tmp_path / "link" / "a.mp4"], out, p, probe=False)
    assert r.ok and sorted(p.calls) == sorted(["a.mp4", "n.mp4"] + (["caf\udce9.mp4"] if odd else [])), p.calls
    p = Painter()
    r = run_batch([tmp_path / "link"], out, p, probe=False)  # the same files by another name: done already
    assert p.calls == [] and r.skipped == len(Manifest(out).items)
    data = json.loads((out / "vidstyle-manifest.json").read_text())
    linked = next(i for i in data["items"] if Path(i["input"]).name == "n.mp4")
    linked["input"] = str(src / "linked" / "n.mp4")  # as a manifest written before links were followed has it
    (out / "vidstyle-manifest.json").write_text(json.dumps(data))
    p = Painter()
    assert run_batch([src], out, p, probe=False).skipped == len(data["items"]) and p.calls == []
    data = json.loads((out / "vidstyle-manifest.json").read_text())
    del data["items"][0]["status"]
    data["items"][0]["output"] = "../elsewhere.mp4"
    (out / "vidstyle-manifest.json").write_text(json.dumps(data))
    with pytest.raises(VidstyleError, match="not a readable vidstyle manifest"):
        run_batch([src], out, Painter(), probe=False)


def test_a_retried_video_may_replace_what_its_own_first_try_wrote(tmp_path):
    """A Ray task retried after its worker died between renaming its output into place and reporting it
    finds that file: an output that was not there when the run began is this run's and is replaced; a file
    that was there, and that the manifest does not know as written, is never replaced."""
    src, out = tmp_path / "in", tmp_path / "out"
    _clip(src / "a.mp4")
    _clip(src / "b.mp4")
    out.mkdir()
    (out / "b.ink.mp4").write_text("the user's own file")
    asked = {}

    class FirstTryDies(Painter):
        def __call__(self, input, output, *, overwrite=False):
            asked[Path(input).name] = overwrite
            if Path(input).name == "a.mp4" and not os.path.exists(output):
                Path(output).write_text("complete, but never reported")  # the first try, then the retry:
            return super().__call__(input, output, overwrite=overwrite)

    r = run_batch([src], out, FirstTryDies(), probe=False)
    assert asked == {"a.mp4": True, "b.mp4": False}
    assert (out / "a.ink.mp4").read_text().startswith("painted a.mp4") and r.done == 1
    assert (out / "b.ink.mp4").read_text() == "the user's own file" and len(r.failed) == 1
