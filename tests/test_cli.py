"""The command line: every command registered once, and the library never imports the CLI layer."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vidstyle

COMMANDS = ["run", "image", "styles", "train", "export-loss-net", "eval", "live", "bench", "export"]
PKG = Path(vidstyle.__file__).parent


def test_python_m_vidstyle_cli_lists_every_command():
    for entry in (["-m", "vidstyle.cli"], ["-m", "vidstyle"]):
        out = subprocess.run([sys.executable, *entry, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        listed = [c for c in COMMANDS if f" {c} " in out.stdout]
        assert listed == COMMANDS, out.stdout


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a vidstyle source file imports (relative imports resolved)."""
    pkg = list(path.relative_to(PKG.parent).parts[:-1])  # the package a relative import starts from
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return names


def test_library_never_imports_the_command_line():
    offenders = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] in ("commands",) or rel.name in ("cli.py", "__main__.py"):
            continue
        bad = {n for n in _imports(path) if n.startswith(("vidstyle.commands", "vidstyle.cli")) or n == "typer"}
        if bad:
            offenders[str(rel)] = sorted(bad)
    assert not offenders, offenders


def test_export_command_writes_an_onnx_file_that_runs(tmp_path):
    import numpy as np
    import pytest

    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a dev dependency (make install adds it)")
    pytest.importorskip("onnx", reason="onnx comes with the openvino extra (make install adds it)")
    from typer.testing import CliRunner

    from vidstyle.api import load_model
    from vidstyle.cli import app

    out = tmp_path / "style.onnx"
    r = CliRunner().invoke(app, ["export", "starry_night", "-o", str(out)])
    assert r.exit_code == 0, r.output
    sess = ort.InferenceSession(str(out))
    names = [i.name for i in sess.get_inputs()]
    assert names == ["image", "mix"]
    x = np.random.default_rng(0).random((1, 3, 36, 52), dtype=np.float32)
    n = load_model("starry_night").net.config.n_styles
    (y,) = sess.run(None, {"image": x, "mix": np.eye(n, dtype=np.float32)[0]})
    assert y.shape == x.shape and float(np.abs(y - x).mean()) > 0.02  # it paints
    bad = CliRunner().invoke(app, ["export", "starry_night", "-o", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and bad.output.startswith("error:")


def test_progress_bar_appears_with_the_first_frame_and_times_from_it():
    from vidstyle.commands.common import Progress

    bar = Progress(False, "painting")
    with bar:
        pass                                   # an input that failed before its first frame
    assert not bar.shown and not bar.bar.live.is_started
    with bar:
        bar(1, 10)
        assert bar.shown and bar.bar.live.is_started and bar.first == 1
        bar(4, 10)
        task = bar.bar.tasks[0]
        assert task.started and task.completed == 4 and task.total == 10
    assert not bar.bar.live.is_started
    quiet = Progress(True, "painting")
    with quiet:
        quiet(1, 10)
    assert quiet.bar is None and not quiet.shown


def test_help_does_not_import_torch():
    code = "import sys, vidstyle.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_listing_styles_does_not_import_torch():
    code = ("import sys, json; from vidstyle.commands.styles import styles; from vidstyle.models import registry; "
            "rows = registry.list_styles(); sys.exit(1 if 'torch' in sys.modules or not rows else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_help_reads_at_80_columns_with_every_option_explained():
    """Plain wrapped help: no option name or example cut with '…', no '<bool>' for flags, a text for every option."""
    import os

    from typer.main import get_command

    from vidstyle.cli import app

    env = {**os.environ, "COLUMNS": "80"}
    for cmd in COMMANDS:
        out = subprocess.run([sys.executable, "-m", "vidstyle", cmd, "--help"], capture_output=True, text=True,
                             timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        assert "…" not in out.stdout and "<bool>" not in out.stdout, (cmd, out.stdout)
        assert max(len(line) for line in out.stdout.splitlines()) <= 80, cmd
    group = get_command(app)
    for name, sub in group.commands.items():
        silent = [p.opts[0] for p in sub.params if p.opts[0].startswith("-") and not getattr(p, "help", None)]
        assert not silent, (name, silent)
