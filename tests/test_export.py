"""vidstyle export: existing files are kept without --overwrite; OpenVINO conversion sends no telemetry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidstyle.cli import app

runner = CliRunner()


@pytest.mark.parametrize("name,existing", [("e.onnx", "e.onnx"), ("e.xml", "e.xml"), ("e.xml", "e.bin")])
def test_existing_output_is_kept_without_overwrite(tmp_path, model_file, name, existing):
    (tmp_path / existing).write_bytes(b"precious")
    r = runner.invoke(app, ["export", str(model_file), "-o", str(tmp_path / name)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / existing} exists; pass --overwrite to replace it"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_bytes() == b"precious"


def test_overwrite_replaces_an_existing_export(tmp_path, model_file):
    out = tmp_path / "e.onnx"
    out.write_bytes(b"old")
    r = runner.invoke(app, ["export", str(model_file), "-o", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["e.onnx"]


_SPY = """
import json, multiprocessing, sys
started = []
real = multiprocessing.Process.start
multiprocessing.Process.start = lambda self: started.append(repr(getattr(self, "_target", None))) or real(self)
from vidstyle.export import require_openvino
from vidstyle.torch_export import to_openvino
from vidstyle.models import load_model
require_openvino()
to_openvino(load_model(sys.argv[1]).net)
import openvino.tools.ovc.telemetry_utils as t
print(json.dumps({"started": started, "telemetry": t.tm.__name__}))
"""


def test_openvino_conversion_sends_no_telemetry(model_file):
    """OpenVINO's converter would send usage events, each from a child process running urlopen."""
    pytest.importorskip("openvino")
    p = subprocess.run([sys.executable, "-c", _SPY, str(model_file)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res == {"started": [], "telemetry": "openvino.tools.ovc.telemetry_stub"}


def test_openvino_reexport_never_leaves_a_mismatched_pair(tmp_path, monkeypatch):
    import vidstyle.export as export

    class FakeOV:
        @staticmethod
        def save_model(om, path, compress_to_fp16=False):
            Path(path).write_text("new xml")
            Path(path).with_suffix(".bin").write_text("new bin")

    xml, bin_ = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_text("old xml")
    bin_.write_text("old bin")
    real, calls = os.replace, []

    def crash_second(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError("killed")
        return real(a, b)

    monkeypatch.setattr(export.os, "replace", crash_second)
    with pytest.raises(OSError):
        export.save_ir_atomic(FakeOV, None, xml)
    pair = (xml.read_text() if xml.exists() else None, bin_.read_text())
    assert pair in {("old xml", "old bin"), (None, "new bin")}, pair
    monkeypatch.setattr(export.os, "replace", real)
    export.save_ir_atomic(FakeOV, None, xml)
    assert (xml.read_text(), bin_.read_text()) == ("new xml", "new bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
