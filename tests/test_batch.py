"""Many inputs: expansion, output names, the manifest and resume, errors that do not stop the batch,
and the Ray executor (a local Ray instance; a worker killed in the middle of a video)."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import make_clip, video_pts
from vidstyle import executors, naming
from vidstyle.batch import job as batch_job, manifest as batch_manifest
from vidstyle.batch import (BatchProgress, Manifest, StylizeJob, expand_inputs, find_inputs,
                            run_batch)
from vidstyle.executors import choose_executor
from vidstyle.errors import VidstyleError


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A StylizeJob around a random lite model (CPU)."""
    import torch
    from vidstyle.models import TransformerNet, arch_config, save_model

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("batch-model") / "rnd.safetensors"
    save_model(p, TransformerNet(arch_config("lite")), ["rnd"])
    return StylizeJob(str(p), device="cpu", preset="ultrafast")


class Counting:
    """paint_one that counts its calls per input (in-process executor only)."""

    def __init__(self, job):
        self.job, self.calls, self.label = job, [], job.label

    def __call__(self, input, output, *, overwrite=False, progress=None):
        self.calls.append(Path(input).name)
        return self.job(input, output, overwrite=overwrite, progress=progress)


def _touch(p: Path, text: str = "x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# -- inputs and names ----------------------------------------------------------------------------
def test_expand_inputs_files_folders_globs_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "v/b.mp4")
    _touch(tmp_path / "v/a.MOV")
    _touch(tmp_path / "v/sub/c.mkv")
    _touch(tmp_path / "v/notes.txt")
    _touch(tmp_path / "v/.hidden.mp4")
    _touch(tmp_path / "v/.c.rnd.partial-123.mp4")
    _touch(tmp_path / "v/out/old.rnd.mp4")  # the output folder inside the input folder: never an input
    _touch(tmp_path / "g/one.webm")
    _touch(tmp_path / "g/two.webm")
    _touch(tmp_path / "single.bin")  # an explicit file is taken whatever its extension
    url = "https://example.com/live/stream.m3u8?token=1"
    got = expand_inputs(["v", "g/*.webm", "single.bin", url, "v/b.mp4", str(tmp_path / "g/one.webm"), url],
                        exclude=[tmp_path / "v/out"])
    assert got == ["v/a.MOV", "v/b.mp4", "v/sub/c.mkv", "g/one.webm", "g/two.webm", "single.bin", url]
    srcs = find_inputs(["v"], exclude=["v/out"])
    assert [str(s.folder) for s in srcs] == [".", ".", "sub"]
    # stable: the same answer every time
    assert expand_inputs(["v", "g/*.webm"], exclude=["v/out"]) == expand_inputs(["v", "g/*.webm"], exclude=["v/out"])
    for bad, msg in [("missing.mp4", "input not found"), ("g/*.avi", "no videos match"), ("empty", "no videos in folder")]:
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(VidstyleError, match=msg):
            expand_inputs([bad])


def test_output_names_keep_folders_and_avoid_collisions(tmp_path):
    for rel in ["in/a/x.mp4", "in/b/x.mp4", "in/x.mp4", "other/x.mp4"]:
        _touch(tmp_path / rel)
    sources = find_inputs([tmp_path / "in", tmp_path / "other/x.mp4"])
    names = []
    taken: set[str] = set()
    for s in sources:
        n = naming.dedupe(naming.output_name(s, "my style"), taken)
        taken.add(n.as_posix())
        names.append(n.as_posix())
    assert names == ["a/x.my_style.mp4", "b/x.my_style.mp4", "x.my_style.mp4", "x-2.my_style.mp4"]
    assert naming.output_name(naming.Source("https://h/p/talk.m3u8?x=1"), "udnie").as_posix() == "talk.udnie.mp4"


# -- the manifest, errors, resume ----------------------------------------------------------------
def test_batch_local_manifest_errors_and_resume(tmp_path, job):
    src = tmp_path / "in"
    src.mkdir()
    for name in ["a", "b", "c"]:
        make_clip(src / f"{name}.mp4", n=6)
    _touch(src / "broken.mp4", "not a video")
    out = tmp_path / "out"
    painter = Counting(job)
    events: list[BatchProgress] = []
    r = run_batch([src], out, painter, progress=events.append)

    assert r.done == 3 and r.skipped == 0 and not r.ok and r.exit_code == 1
    assert len(r.failed) == 1 and r.failed[0][0].endswith("broken.mp4")
    assert "\n" not in r.failed[0][1] and "not a video file" in r.failed[0][1]
    data = json.loads((out / "vidstyle-manifest.json").read_text())
    assert data["version"] == 1
    by_name = {Path(i["input"]).name: i for i in data["items"]}
    for item in data["items"]:
        assert {"input", "output", "status", "error", "frames", "seconds"} <= set(item)
    for name in ["a", "b", "c"]:
        item = by_name[f"{name}.mp4"]
        assert item["status"] == "done" and item["error"] is None and item["frames"] == 6 and item["seconds"] > 0
        assert item["output"] == f"{name}.rnd.mp4" and len(video_pts(out / item["output"])) == 6
    assert by_name["broken.mp4"]["status"] == "failed" and by_name["broken.mp4"]["error"] == r.failed[0][1]
    assert not (out / "broken.rnd.mp4").exists()
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    # progress: files and frames, ending at the totals
    assert events[0].event == "start" and events[-1].event == "finish"
    assert events[-1].files_done == 4 and events[-1].files_failed == 1 and events[-1].frames_done == 18
    assert any(e.event == "frames" for e in events) and [e.event for e in events].count("failed") == 1

    # second run: only the failed one is tried again
    painter.calls.clear()
    r2 = run_batch([src], out, painter)
    assert painter.calls == ["broken.mp4"] and r2.skipped == 3 and r2.done == 0 and len(r2.failed) == 1

    # a deleted output and an item marked pending by hand are painted again, nothing else
    (out / "a.rnd.mp4").unlink()
    data = json.loads((out / "vidstyle-manifest.json").read_text())
    for item in data["items"]:
        if item["input"].endswith("b.mp4"):
            item["status"] = "pending"
    (out / "vidstyle-manifest.json").write_text(json.dumps(data))
    mtime_c = (out / "c.rnd.mp4").stat().st_mtime_ns
    (src / "broken.mp4").unlink()
    make_clip(src / "broken.mp4", n=4)  # fixed
    painter.calls.clear()
    r3 = run_batch([src], out, painter)
    assert sorted(painter.calls) == ["a.mp4", "b.mp4", "broken.mp4"]
    assert r3.ok and r3.exit_code == 0 and r3.done == 3 and r3.skipped == 1
    assert (out / "c.rnd.mp4").stat().st_mtime_ns == mtime_c
    final = Manifest(out)
    assert [i["status"] for i in final.items] == ["done"] * 4
    assert len(video_pts(out / "broken.rnd.mp4")) == 4


def test_existing_foreign_output_needs_overwrite(tmp_path, job):
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in/a.mp4", n=4)
    _touch(tmp_path / "out/a.rnd.mp4", "somebody else's file")
    r = run_batch([tmp_path / "in"], tmp_path / "out", job)
    assert len(r.failed) == 1 and "overwrite=True" in r.failed[0][1]  # the library speaks Python; the CLI, --overwrite
    assert (tmp_path / "out/a.rnd.mp4").read_text() == "somebody else's file"
    r = run_batch([tmp_path / "in"], tmp_path / "out", job, overwrite=True)
    assert r.ok and len(video_pts(tmp_path / "out/a.rnd.mp4")) == 4


def test_plain_function_and_one_run_per_folder(tmp_path):
    """paint_one may be any function (input, output) -> dict; a second run on the same folder is refused."""
    for name in ["a", "b", "c"]:
        _touch(tmp_path / f"in/{name}.mp4")
    seen = []

    def paint(input, output):
        if input.endswith("b.mp4"):
            raise RuntimeError("GPU fell off\nsecond line")
        Path(output).write_text("painted")
        seen.append(Path(input).name)
        return {"frames": 7, "seconds": 0.5}

    lines = []
    r = run_batch([tmp_path / "in"], tmp_path / "out", paint, label="oil", probe=False,
                  progress=lambda p: lines.append(p.error) if p.event == "failed" else None)
    assert seen == ["a.mp4", "c.mp4"] and r.done == 2 and r.frames == 14
    assert r.failed == [(str(tmp_path / "in/b.mp4"), "RuntimeError: GPU fell off")] == [(r.failed[0][0], lines[0])]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["a.oil.mp4", "c.oil.mp4"]
    # another run holding the folder: refused with one line
    held = batch_manifest.lock_folder(tmp_path / "out")
    try:
        if held is not None:
            with pytest.raises(VidstyleError, match="another vidstyle run"):
                run_batch([tmp_path / "in"], tmp_path / "out", paint, label="oil")
    finally:
        if held is not None:
            held.close()
    # another style or container: separate items, separate outputs, same manifest
    r2 = run_batch([tmp_path / "in/a.mp4"], tmp_path / "out", paint, label="ink", suffix=".mkv", probe=False)
    assert r2.done == 1 and (tmp_path / "out/a.ink.mkv").exists() and len(Manifest(tmp_path / "out").items) == 4


def test_nothing_to_paint_creates_no_output_folder(tmp_path, job):
    (tmp_path / "empty").mkdir()
    for spec in (tmp_path / "empty", str(tmp_path / "none*.mp4")):
        with pytest.raises(VidstyleError, match="no videos"):
            run_batch([spec], tmp_path / "out", job)
        assert not (tmp_path / "out").exists()


def test_earlier_outputs_in_the_folder_are_not_inputs(tmp_path):
    calls = []

    def paint(input, output):
        calls.append(Path(input).name)
        Path(output).write_bytes(b"painted")
        return {"frames": 1, "seconds": 0.0}

    folder = tmp_path / "v"
    folder.mkdir()
    make_clip(folder / "a.mp4", n=2, audio=None)
    _touch(folder / "b.old.mp4")  # named like an output, but no run wrote it: an input
    run_batch([folder], folder, paint, label="ink", probe=False)
    assert sorted(calls) == ["a.mp4", "b.old.mp4"]
    calls.clear()
    r = run_batch([folder], folder, paint, label="oil", probe=False)
    assert sorted(calls) == ["a.mp4", "b.old.mp4"]
    assert sorted(Path(i).name for i in r.ignored) == ["a.ink.mp4", "b.old.ink.mp4"]
    with pytest.raises(VidstyleError, match="nothing to paint"):
        run_batch([str(folder / "*.ink.mp4")], folder, paint, label="oil", probe=False)


def test_broken_manifest_is_one_line_error(tmp_path, job):
    _touch(tmp_path / "out/vidstyle-manifest.json", "{not json")
    make_clip(tmp_path / "a.mp4", n=3)
    with pytest.raises(VidstyleError, match="not a readable vidstyle manifest"):
        run_batch([tmp_path / "a.mp4"], tmp_path / "out", job)


def test_stylize_job_pickles_without_a_model_path(tmp_path, job):
    import pickle

    clone = pickle.loads(pickle.dumps(job))
    assert clone.key == job.key and clone.label == "rnd"
    make_clip(tmp_path / "a.mp4", n=3)
    r = clone(str(tmp_path / "a.mp4"), str(tmp_path / "a.out.mp4"))
    assert r["frames"] == 3 and r["style"] == "rnd"
    assert clone.stylizer() is clone.stylizer()  # built once per process
    with pytest.raises(VidstyleError, match="unknown style"):
        StylizeJob("no-such-style-anywhere")


# -- choosing the executor -----------------------------------------------------------------------
def test_choose_executor(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_executor("local", gpus=8) == "local"
    assert choose_executor("auto", gpus=0) == "local"
    assert choose_executor("auto", gpus=1) == "local"
    with pytest.raises(VidstyleError, match="--cluster must be"):
        choose_executor("bogus", gpus=0)
    # without Ray: explicit requests fail with the install hint, auto stays local
    monkeypatch.setattr(executors, "ray_available", lambda: False)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(VidstyleError, match=r"pip install 'vidstyle\[cluster\]'"):
        choose_executor("ray://head:10001", gpus=0)
    with pytest.raises(VidstyleError, match=r"pip install 'vidstyle\[cluster\]'"):
        choose_executor("ray", gpus=0)
    assert choose_executor("auto", gpus=4) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert choose_executor("auto", gpus=0) == "local"


def test_choose_executor_with_ray(monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidstyle[cluster]')")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_executor("auto", gpus=2) == "ray"
    assert choose_executor("ray://head:10001", gpus=0) == "ray://head:10001"
    assert choose_executor("head:6379", gpus=0) == "head:6379"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert choose_executor("auto", gpus=0) == "ray://head:10001"


def test_task_resources_one_gpu_or_some_cpus():
    class FakeRay:
        def __init__(self, cpus, gpus):
            self.cpus, self.gpus = cpus, gpus

        def nodes(self):
            return [{"Alive": True, "Resources": {"CPU": c}} for c in self.cpus]

        def cluster_resources(self):
            return {"CPU": sum(self.cpus), "GPU": self.gpus}

    assert executors.task_resources(FakeRay([16, 16], 8)) == {"num_gpus": 1, "num_cpus": 1}
    assert executors.task_resources(FakeRay([16], 2), cpus_per_task=4) == {"num_gpus": 1, "num_cpus": 4}
    assert executors.task_resources(FakeRay([32, 8], 0)) == {"num_cpus": 4}
    assert executors.task_resources(FakeRay([2], 0)) == {"num_cpus": 2}  # never more than the biggest node
    assert executors.task_resources(FakeRay([2], 0), cpus_per_task=8) == {"num_cpus": 2}


# -- Ray -----------------------------------------------------------------------------------------
class Recording:
    """paint_one for Ray tests: logs (pid, model built or reused) per call, and one completion line per video.

    ``kill``: the input name whose first attempt kills its own worker process in the middle of the video
    (SIGKILL after a few frames, so a partial file is left), detected by a marker file.
    """

    def __init__(self, job, log_dir: Path, kill: str | None = None):
        self.job, self.log_dir, self.kill, self.label = job, str(log_dir), kill, job.label

    def __call__(self, input, output, *, overwrite=False, progress=None):
        name = Path(input).name
        built = self.job.key not in batch_job._STYLIZERS
        with open(os.path.join(self.log_dir, "calls.log"), "a") as f:
            f.write(f"{os.getpid()} {'built' if built else 'cached'} {name}\n")
        marker = os.path.join(self.log_dir, f"killed-{name}")
        if name == self.kill and not os.path.exists(marker):
            open(marker, "w").close()

            def progress_then_die(n, total):
                if n >= 3:
                    os.kill(os.getpid(), signal.SIGKILL)

            progress = progress_then_die
        r = self.job(input, output, overwrite=overwrite, progress=progress)
        with open(os.path.join(self.log_dir, "done.log"), "a") as f:
            f.write(name + "\n")
        return r


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidstyle[cluster]')")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def _clips(folder: Path, n: int = 4, frames: int = 8) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_clip(folder / f"clip{i}.mp4", n=frames) for i in range(1, n + 1)]


def _check_all_done(out: Path, names: list[str], frames: int) -> None:
    m = Manifest(out)
    assert sorted(Path(i["input"]).name for i in m.items) == sorted(names)
    for item in m.items:
        assert item["status"] == "done" and item["error"] is None and item["frames"] == frames
        assert len(video_pts(out / item["output"])) == frames
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]


def test_ray_paints_four_clips_one_model_per_worker(tmp_path, job, ray_local):
    clips = _clips(tmp_path / "in")
    logs = tmp_path / "logs"
    logs.mkdir()
    events = []
    r = run_batch([tmp_path / "in"], tmp_path / "out", Recording(job, logs), executor="ray", cpus_per_task=1,
                  progress=events.append)
    assert r.ok and r.done == 4 and r.executor == "ray"
    _check_all_done(tmp_path / "out", [c.name for c in clips], 8)
    calls = [line.split() for line in (logs / "calls.log").read_text().splitlines()]
    assert sorted(c[2] for c in calls) == sorted(c.name for c in clips)
    # the model is built once per worker process, never once per video when a worker paints several
    pids = {c[0] for c in calls}
    assert sum(c[1] == "built" for c in calls) == len(pids)
    assert events[-1].files_done == 4 and events[-1].frames_done == 32


def test_ray_worker_killed_mid_video_is_retried_once(tmp_path, job, ray_local):
    clips = _clips(tmp_path / "in", frames=10)
    logs = tmp_path / "logs"
    logs.mkdir()
    r = run_batch([tmp_path / "in"], tmp_path / "out", Recording(job, logs, kill="clip2.mp4"), executor="ray",
                  cpus_per_task=1, max_retries=2)
    assert (logs / "killed-clip2.mp4").exists()  # the worker did die
    assert r.ok and r.done == 4, r.failed
    done = (logs / "done.log").read_text().split()
    assert sorted(done) == sorted(c.name for c in clips)  # each video finished exactly once
    calls = (logs / "calls.log").read_text().split("\n")
    assert sum("clip2.mp4" in line for line in calls) == 2  # the killed attempt and its retry
    _check_all_done(tmp_path / "out", [c.name for c in clips], 10)
    assert all(i["attempts"] == 1 for i in Manifest(tmp_path / "out").items)  # the driver saw one result each


def test_ray_resume_repaints_only_what_is_missing(tmp_path, job, ray_local):
    _clips(tmp_path / "in", n=3, frames=5)
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out"
    assert run_batch([tmp_path / "in"], out, Recording(job, logs), executor="ray", cpus_per_task=1).ok
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    (out / "clip2.rnd.mp4").unlink()
    (logs / "done.log").unlink()
    r = run_batch([tmp_path / "in"], out, Recording(job, logs), executor="ray", cpus_per_task=1)
    assert r.ok and r.done == 1 and r.skipped == 2
    assert (logs / "done.log").read_text().split() == ["clip2.mp4"]
    for name, t in mtimes.items():
        if name != "clip2.rnd.mp4":
            assert (out / name).stat().st_mtime_ns == t
    _check_all_done(out, ["clip1.mp4", "clip2.mp4", "clip3.mp4"], 5)


def test_one_input_into_a_folder_not_there_yet(tmp_path, model_file):
    """`-o painted/`: a name without a suffix that does not exist is a folder to make, not a file name."""
    from typer.testing import CliRunner
    from vidstyle.cli import app
    src = make_clip(tmp_path / "a.mp4", n=3, audio=None)
    res = CliRunner().invoke(app, ["run", str(src), "-o", str(tmp_path / "painted") + "/", "--style", str(model_file),
                                   "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "painted").iterdir() if not p.name.startswith(".")) == [
        "a.random_lite.mp4", "vidstyle-manifest.json"]


def test_cluster_is_checked_for_one_video_too(tmp_path, model_file):
    """A misspelt --cluster was accepted without a word when one video was painted."""
    from typer.testing import CliRunner
    from vidstyle.cli import app
    src = make_clip(tmp_path / "a.mp4", n=2, audio=None)
    res = CliRunner().invoke(app, ["run", str(src), "-o", str(tmp_path / "o.mp4"), "--style", str(model_file),
                                   "--cluster", "bogus"])
    assert res.exit_code == 2 and "--cluster must be" in res.stderr and not (tmp_path / "o.mp4").exists()
