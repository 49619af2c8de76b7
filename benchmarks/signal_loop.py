"""Signals at random moments, then a rerun: every rerun completes, every output is whole, no process outlives a run.

    python benchmarks/signal_loop.py --iterations 30              # segments, a local batch and a Ray batch
    python benchmarks/signal_loop.py --iterations 5 --modes segments --json out.json

Each iteration takes one mode in turn:
- ``segments``: ``vidstyle run clip.mp4 -o out.mp4 --segments 3 --temporal``;
- ``batch``: ``vidstyle run in/ -o out/`` (three clips, in this process);
- ``ray``: ``vidstyle run in/ -o out/ --cluster ray`` (a local Ray instance).
It starts the command in its own session, sends SIGTERM, SIGINT or SIGKILL (chosen at random) at a random
moment of a clean run's duration, and records the exit code, the seconds from the signal to the end, the
error lines, and whether any process of the session is left 10 s later. Then it runs the same command again
without a signal and checks that it exits 0, that no partial file or parts folder is left, and that every
output has the frames and timestamps of a clean run's. The figures go to docs/SCALING.md (*Faults*).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidstyle.bench import synthetic_clip  # noqa: E402

SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]


def exit_ok(sig_name: str, rc: int) -> bool:
    """The documented code: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM), or the signal itself as Popen
    gives it for a process it killed (SIGKILL; SIGTERM or SIGINT before Python's handlers are in place), which
    a shell reports as the same 128 + N."""
    sig = signal.Signals[sig_name]
    return rc in (128 + sig, -sig)


def judge(t: dict) -> bool:
    """Whether a trial went as it must: the documented exit code (or a run that had ended before the signal),
    no hang, no process left, no traceback, at most one error line and an exit within 10 s of SIGTERM or
    SIGINT; then a rerun that exits 0 with nothing left and the frames and timestamps of a clean run."""
    hit_ok = not t["hit_signalled"] or t["hit_rc"] == 0 or exit_ok(t["signal"], t["hit_rc"])
    quick = t["signal"] == "SIGKILL" or not t["hit_signalled"] or (len(t["hit_errors"]) <= 1
                                                                   and t["hit_seconds"] < 10)
    return bool(hit_ok and quick and not t["hit_hung"] and not t["hit_left"] and not t["hit_traceback"]
                and t["rerun_rc"] == 0 and not t["rerun_left"] and t["same_frames_and_times"] and not t["leftovers"])


def summarise(trials: list[dict], modes: list[str]) -> dict:
    return {m: {"tries": sum(t["mode"] == m for t in trials), "ok": sum(t["ok"] for t in trials if t["mode"] == m),
                "max_seconds_to_exit": max((t["hit_seconds"] for t in trials if t["mode"] == m
                                            and t["hit_signalled"] and t["signal"] != "SIGKILL"), default=None)}
            for m in modes}


def frames_and_times(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def outputs(out: Path) -> dict[str, list[int]]:
    files = [out] if out.suffix == ".mp4" else sorted(p for p in out.glob("*.mp4") if not p.name.startswith("."))
    return {p.name: frames_and_times(p) for p in files if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".partial-" in p.name or ".parts-" in p.name)


def session(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()


def run(cmd: list[str], cwd: Path, sig: int | None = None, at: float = 0.0) -> dict:
    """Run ``cmd``; with ``sig``, send it ``at`` seconds in. Returns rc, seconds, errors, processes left."""
    p = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    sent = None
    if sig is not None:
        while time.monotonic() - t0 < at and p.poll() is None:
            time.sleep(0.02)
        if p.poll() is None:
            p.send_signal(sig)
            sent = time.monotonic()
    try:
        err = p.communicate(timeout=600)[1]
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        err, hung = p.communicate()[1], True
    end = time.monotonic()
    t_left = time.monotonic()
    while session(p.pid) and time.monotonic() - t_left < 10:
        time.sleep(0.2)
    left = session(p.pid)
    for pid in left:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    return {"rc": p.returncode, "seconds": round(end - (sent or t0), 2), "signalled": sent is not None,
            "errors": [ln for ln in err.splitlines() if ln.startswith("error:")],
            "traceback": "Traceback" in err or "SIGTERM received" in err, "hung": hung, "left": left}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--modes", default="segments,batch,ray")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=45)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rejudge", type=Path, help="Judge the trials of a saved --json again and print the summary.")
    a = ap.parse_args()
    if a.rejudge:
        trials = json.loads(a.rejudge.read_text())["trials"]
        for t in trials:
            t["ok"] = judge(t)
        print(json.dumps(summarise(trials, sorted({t["mode"] for t in trials}))))
        return
    # a script started with & from a shell has SIGINT ignored, and its children would inherit that: a handler
    # here is reset to the default in them, so that SIGINT reaches them as Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(a.seed)
    modes = a.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="vidstyle-signals-"))
    vid = [sys.executable, "-m", "vidstyle", "run"]
    clip = synthetic_clip(work / "clip.mp4", 320, 180, a.frames)
    folder = work / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(clip, folder / f"{name}.mp4")
    commands = {
        "segments": lambda out: [*vid, str(clip), "-o", str(out / "out.mp4"), "--segments", "3", "--temporal", "-q"],
        "batch": lambda out: [*vid, str(folder), "-o", f"{out}/", "-q"],
        "ray": lambda out: [*vid, str(folder), "-o", f"{out}/", "--cluster", "ray", "-q"],
    }
    target = {"segments": lambda out: out / "out.mp4", "batch": lambda out: out, "ray": lambda out: out}
    clean: dict[str, tuple[float, dict]] = {}
    for mode in modes:
        out = work / f"clean-{mode}"
        out.mkdir()
        t0 = time.monotonic()
        r = run(commands[mode](out), work)
        assert r["rc"] == 0, (mode, r)
        clean[mode] = (time.monotonic() - t0, outputs(target[mode](out)))
        print(f"clean {mode}: {clean[mode][0]:.1f} s, {[len(v) for v in clean[mode][1].values()]} frames", flush=True)
    trials = []
    for i in range(a.iterations):
        mode = modes[i % len(modes)]
        sig = rng.choice(SIGNALS)
        at = rng.uniform(0.0, clean[mode][0])
        out = work / f"try-{i}"
        out.mkdir()
        hit = run(commands[mode](out), work, sig, at)
        finished = hit["rc"] == 0  # the signal came after the end: the output is there, and a second run of
        again = run(commands[mode](out), work) if not finished or mode != "segments" else {"rc": 0, "left": []}
        got = outputs(target[mode](out)) if again["rc"] == 0 else {}  # one video would refuse to replace it
        t = {"mode": mode, "signal": signal.Signals(sig).name, "at": round(at, 2), **{f"hit_{k}": v for k, v in hit.items()},
             "rerun_rc": again["rc"], "rerun_left": again["left"], "same_frames_and_times": got == clean[mode][1],
             "leftovers": leftovers(out)}
        t["ok"] = judge(t)
        trials.append(t)
        print(f"{i:2d} {mode:8s} {t['signal']:7s} at {at:5.1f}s: rc {hit['rc']} in {hit['seconds']} s, "
              f"{'left ' + str(hit['left']) if hit['left'] else 'nothing left'}; rerun rc {again['rc']}, "
              f"same frames {t['same_frames_and_times']}{'' if t['ok'] else '  <-- FAIL'}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    summary = summarise(trials, modes)
    print(json.dumps(summary))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "trials": trials}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
