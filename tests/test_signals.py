"""Signals to runs that paint in several processes: one line, the documented exit code, nothing left behind.

Each test starts a real ``vidstyle run`` in its own session, waits for what it needs (a partial file on disk:
the workers are painting), sends the signal, and then checks the exit code, the one line on stderr, the files
and the processes of the run's session. No fixed sleeps: every wait has a condition and a generous bound.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_clip

ROOT = Path(__file__).resolve().parents[1]
BOUND = 120  # seconds any wait may take on a loaded 2-core machine before the test fails


# The run starts with SIGINT, SIGTERM and SIGHUP at their defaults, as from a terminal: under nohup (SIGHUP
# ignored) or a script's & (SIGINT ignored) the test runner would pass them on ignored, and an ignored signal
# is left ignored by design.
_DEFAULTS = ("import os, signal, sys\n"
             "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
             "    signal.signal(s, signal.SIG_DFL)\n"
             "os.execv(sys.executable, [sys.executable, '-m', 'vidstyle', *sys.argv[1:]])\n")


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _DEFAULTS, *args], cwd=cwd, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(what, proc: subprocess.Popen) -> None:
    t0 = time.monotonic()
    while not what():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it got there: {proc.stderr.read()[-500:]}")
        if time.monotonic() - t0 > BOUND:
            proc.kill()
            pytest.fail("the run never got there")
        time.sleep(0.05)


def _session(proc: subprocess.Popen) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()


def _gone(proc: subprocess.Popen) -> bool:
    """Every process of the run's session has ended (workers die with it: none may outlive it)."""
    t0 = time.monotonic()
    while _session(proc):
        if time.monotonic() - t0 > 20:
            return False
        time.sleep(0.1)
    return True


def _partials(folder: Path, suffix: str = "") -> list[Path]:
    return [p for p in folder.rglob(".*") if ".partial-" in p.name and p.name.endswith(suffix)]


@pytest.fixture
def long_clip(tmp_path) -> Path:
    return make_clip(tmp_path / "long.mp4", w=160, h=120, n=240, audio=None)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_segments_stops_the_workers_and_cleans_up(tmp_path, long_clip, model_file, sig):
    out = tmp_path / "out.mp4"
    proc = _start(["run", str(long_clip), "-o", str(out), "--segments", "2", "--temporal", "--style",
                   str(model_file), "--device", "cpu", "-q"], tmp_path)
    _wait_for(lambda: _partials(tmp_path), proc)  # a worker is writing its part
    workers = [p for p in _session(proc) if p != str(proc.pid)]
    assert workers, "no worker processes to stop"
    proc.send_signal(sig)
    t0 = time.monotonic()
    try:
        err = proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{sig.name} left the run hanging")
    assert time.monotonic() - t0 < 20  # a few seconds on an idle machine
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + sig), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert _gone(proc), _session(proc)
    assert not out.exists() and not list(tmp_path.glob(".out.parts-*"))


def test_kill_9_of_a_segments_run_takes_its_workers_with_it(tmp_path, long_clip, model_file):
    proc = _start(["run", str(long_clip), "-o", str(tmp_path / "out.mp4"), "--segments", "2", "--temporal",
                   "--style", str(model_file), "--device", "cpu", "-q"], tmp_path)
    _wait_for(lambda: _partials(tmp_path), proc)
    workers = [p for p in _session(proc) if p != str(proc.pid)]
    assert workers
    proc.kill()
    proc.communicate(timeout=60)
    assert _gone(proc), _session(proc)  # before: two workers of 740 MB each, still waiting minutes later


def test_sigterm_to_a_ray_batch_is_one_line_and_leaves_no_partial_file(tmp_path, model_file):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidstyle[cluster]')")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(folder / name, w=160, h=120, n=240, audio=None)
    out = tmp_path / "out"
    proc = _start(["run", str(folder), "-o", f"{out}/", "--cluster", "ray", "--style", str(model_file),
                   "--device", "cpu", "--temporal", "-q"], tmp_path)
    _wait_for(lambda: out.is_dir() and _partials(out, ".mp4"), proc)  # a Ray worker is writing a video
    proc.send_signal(signal.SIGTERM)
    try:
        err = proc.communicate(timeout=90)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("SIGTERM left the Ray batch hanging")
    assert proc.returncode == 143, err  # was 134, with Ray's C++ stack dump
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and "SIGTERM received" not in err, err
    assert not _partials(out)  # was left until the next run
    assert _gone(proc), _session(proc)


def test_kill_9_of_a_ray_batch_leaves_no_ray_process(tmp_path, model_file):
    """A local Ray instance started by the run ends with it: Ray's own agents outlived a driver killed with -9."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidstyle[cluster]')")
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", w=160, h=120, n=240, audio=None)
    out = tmp_path / "out"
    proc = _start(["run", str(folder), "-o", f"{out}/", "--cluster", "ray", "--style", str(model_file),
                   "--device", "cpu", "--temporal", "-q"], tmp_path)
    _wait_for(lambda: out.is_dir() and _partials(out, ".mp4"), proc)
    assert len(_session(proc)) > 3  # the driver, Ray's servers and agents, a worker
    proc.kill()
    proc.communicate(timeout=60)
    assert _gone(proc), subprocess.run(["pgrep", "-s", str(proc.pid), "-a"], capture_output=True, text=True).stdout

