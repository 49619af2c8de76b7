"""A built wheel carries the bundled styles: ``vidstyle styles`` works from an install without the checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "vidstyle" / "models" / "bundled"


def _pip(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_wheel_has_the_bundled_styles(tmp_path):
    pytest.importorskip("setuptools")
    bundled = sorted(p.name for p in BUNDLED.glob("*.safetensors"))
    assert bundled, f"no bundled models in {BUNDLED}"
    # build from a copy: an in-tree build would leave build/ and egg-info behind in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vidstyle", src / "vidstyle", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    r = _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", str(src), "-w", str(dist), cwd=tmp_path)
    if r.returncode != 0 and "invalid command 'bdist_wheel'" in r.stderr + r.stdout:
        pytest.skip("setuptools here cannot build wheels (no bdist_wheel)")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = dist.glob("vidstyle-*.whl")
    with zipfile.ZipFile(wheel) as z:
        inside = sorted(Path(n).name for n in z.namelist() if n.startswith("vidstyle/models/bundled/"))
    assert inside == bundled

    site = tmp_path / "site"
    r = _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    # run from outside the checkout, with the installed copy first on the path; the project's
    # environment still provides torch and the rest (its editable vidstyle is shadowed)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "VIDSTYLE_MODELS": str(tmp_path / "no-user-models")}
    where = subprocess.run([sys.executable, "-c", "import vidstyle; print(vidstyle.__file__)"], cwd=outside, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(site.resolve()), where.stdout
    r = subprocess.run([sys.executable, "-m", "vidstyle.cli", "styles", "--json"], cwd=outside, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert sorted({f"{row['model']}.safetensors" for row in rows}) == bundled
    # one row per style of each bundled model (a multi-style model has several), each once
    every_style = {(row["model"], s) for row in rows for s in row["styles"]}
    assert sorted((row["model"], row["style"] or row["styles"][0]) for row in rows) == sorted(every_style)
    for row in rows:
        assert row["source"] == "bundled" and row["arch"] != "unreadable", row
        assert Path(row["path"]).resolve().is_relative_to(site.resolve()), row
    assert [row["name"] for row in rows if row["default"]] == ["vangogh_night_cafe"]
    # every listed style loads, by its name, from the installed copy, and is the style the row says
    names = [row["name"] for row in rows]
    wanted = [f"{row['name']}={row['style'] or row['styles'][0]}" for row in rows]
    code = ("import sys, vidstyle\n"
            "for arg in sys.argv[1:]:\n"
            "    n, want = arg.split('=')\n"
            "    m = vidstyle.load_model(n)\n"
            "    assert m.label == want, (n, m.label, want)\n"
            "    print(n, m.path)\n")
    r = subprocess.run([sys.executable, "-c", code, *wanted], cwd=outside, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert sorted(loaded) == sorted(names)
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in loaded.values())
