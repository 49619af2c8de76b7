"""The style registry: names, multi-style models, precedence, the user folder, ``vidstyle styles``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidstyle.cli import app
from vidstyle.errors import VidstyleError
from vidstyle.models import registry

runner = CliRunner()

PAINTINGS = ["starry_night", "great_wave_off_kanagawa", "the_scream", "composition_vii", "udnie",
             "shipwreck_of_the_minotaur", "tahitian_women_gauguin", "vangogh_night_cafe",
             "vangogh_wheat_field_cypresses", "edtaonisl_picabia"]  # the bundled multi-style model's styles, in its order


def _save(path: Path, styles: list[str], seed: int = 0) -> Path:
    from vidstyle.models import TransformerNet, arch_config, save_model

    torch.manual_seed(seed)
    return save_model(path, TransformerNet(arch_config("lite", len(styles))), styles)


@pytest.fixture(scope="module")
def duo_file(tmp_path_factory) -> Path:
    """A small 2-style model, saved once; tests copy it where they need it."""
    return _save(tmp_path_factory.mktemp("duo") / "duo.safetensors", ["cubist", "the_scream"])


@pytest.fixture
def user_models(tmp_path, monkeypatch, duo_file) -> Path:
    """A VIDSTYLE_MODELS folder holding the 2-style model ``duo`` (styles cubist and the_scream)."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "duo.safetensors").write_bytes(duo_file.read_bytes())
    monkeypatch.setenv("VIDSTYLE_MODELS", str(folder))
    return folder


def test_bundled_styles_live_in_the_package(tmp_path, monkeypatch):
    import vidstyle
    assert registry.BUNDLED_DIR.parent == Path(vidstyle.__file__).resolve().parent / "models"
    assert [p.name for p in registry.BUNDLED_DIR.glob("*.safetensors")] == ["paintings.safetensors"]
    monkeypatch.setenv("VIDSTYLE_MODELS", str(tmp_path / "empty"))  # the bundled styles alone
    paintings = registry.BUNDLED_DIR / "paintings.safetensors"
    listed = registry.list_styles()
    assert sorted(e.name for e in listed) == sorted(PAINTINGS)  # each by its own name
    for e in listed:
        assert (e.path, e.inner, e.source, e.arch, e.styles) == (paintings, e.name, "bundled", "transformer", PAINTINGS)
        assert registry.resolve(e.name) == (paintings, e.name) == registry.resolve(f"paintings:{e.name}")
    assert registry.resolve("paintings") == (paintings, None)  # the whole model (for --mix)


def test_style_inside_a_multi_style_model_by_its_own_name(user_models):
    path, inner = registry.resolve("cubist")  # no file is called cubist: the style inside duo
    assert path == user_models / "duo.safetensors" and inner == "cubist"
    from vidstyle.api import load_model
    model = load_model("cubist")
    assert model.label == "cubist" and model.net.mix.tolist() == [1.0, 0.0]


def test_model_style_and_model_name_keep_working(user_models):
    assert registry.resolve("duo:the_scream") == (user_models / "duo.safetensors", "the_scream")
    assert registry.resolve("duo") == (user_models / "duo.safetensors", None)  # the whole model (for --mix)
    with pytest.raises(VidstyleError, match="unknown model 'nope'.*duo"):
        registry.resolve("nope:cubist")


def test_user_multi_style_model_comes_before_the_bundled_one(user_models):
    # both duo (user) and paintings (bundled) hold a the_scream: the user model's gets the bare name
    paintings = registry.BUNDLED_DIR / "paintings.safetensors"
    assert registry.resolve("the_scream") == (user_models / "duo.safetensors", "the_scream")
    listed = {e.name: e for e in registry.list_styles()}
    assert listed["the_scream"].source == "user" and "duo:the_scream" not in listed
    assert (listed["paintings:the_scream"].path, listed["paintings:the_scream"].inner) == (paintings, "the_scream")
    assert registry.resolve("paintings:the_scream") == (paintings, "the_scream")  # still reachable
    assert registry.resolve("udnie") == (paintings, "udnie")  # the bundled styles duo lacks keep their names


def test_single_style_file_wins_over_a_style_inside_a_multi_style_model(user_models):
    _save(user_models / "the_scream.safetensors", ["the_scream"], seed=5)
    assert registry.resolve("the_scream") == (user_models / "the_scream.safetensors", None)
    listed = {e.name: e for e in registry.list_styles()}
    assert listed["the_scream"].inner is None and listed["the_scream"].path.name == "the_scream.safetensors"
    # both multi-style models' the_scream stay listed, under names that reach them
    assert registry.resolve("duo:the_scream") == (user_models / "duo.safetensors", "the_scream")
    assert listed["duo:the_scream"].inner == "the_scream"
    assert listed["paintings:the_scream"].path == registry.BUNDLED_DIR / "paintings.safetensors"


def test_user_file_wins_over_a_bundled_style_and_order_among_multi_style_models(user_models):
    _save(user_models / "udnie.safetensors", ["udnie"], seed=1)  # over the bundled paintings' udnie
    assert registry.resolve("udnie") == (user_models / "udnie.safetensors", None)
    assert registry.resolve("paintings:udnie") == (registry.BUNDLED_DIR / "paintings.safetensors", "udnie")
    # a user single-style file named like a style inside a user multi-style model wins over it
    _save(user_models / "cubist.safetensors", ["cubist"], seed=2)
    assert registry.resolve("cubist") == (user_models / "cubist.safetensors", None)
    # two multi-style models with the same style: the first file in name order gets the bare name
    _save(user_models / "another.safetensors", ["mosaic", "wave"], seed=3)
    _save(user_models / "zzz.safetensors", ["mosaic", "other"], seed=4)
    assert registry.resolve("mosaic") == (user_models / "another.safetensors", "mosaic")
    names = [e.name for e in registry.list_styles()]
    assert "zzz:mosaic" in names and names.count("mosaic") == 1
    assert len(names) == len(set(names))
    for e in registry.list_styles():  # every listed name leads to its own entry
        assert registry.resolve(e.name) == (e.path, e.inner)


def test_unknown_name_lists_the_known_names(user_models):
    with pytest.raises(VidstyleError) as err:
        registry.resolve("no_such_style")
    msg = str(err.value)
    assert "unknown style 'no_such_style'" in msg
    for name in ("starry_night", "cubist", "the_scream", "paintings:the_scream"):
        assert name in msg


def test_the_default_style_is_the_night_cafe(user_models):
    """The best-looking style (the one make demo shows), not starry_night, one of the four 'nearly' ones."""
    assert registry.DEFAULT_STYLE == "vangogh_night_cafe"
    assert registry.default_style() == "vangogh_night_cafe"
    assert registry.list_styles()[0].name == "vangogh_night_cafe"
    # a style inside the bundled multi-style model
    assert registry.resolve(None) == (registry.BUNDLED_DIR / "paintings.safetensors", "vangogh_night_cafe")
    from vidstyle.api import load_model
    model = load_model(None)
    k = PAINTINGS.index("vangogh_night_cafe")
    assert model.label == "vangogh_night_cafe" and model.net.mix.tolist() == [float(i == k) for i in range(len(PAINTINGS))]


def test_a_user_model_hides_the_bundled_model_of_the_same_name(user_models):
    _save(user_models / "paintings.safetensors", ["mine"], seed=6)
    assert registry.resolve("paintings") == (user_models / "paintings.safetensors", None)
    assert [e.name for e in registry.list_styles()] == ["cubist", "paintings", "the_scream"]  # the_scream: duo's
    with pytest.raises(VidstyleError, match="unknown style 'udnie'"):
        registry.resolve("udnie")
    assert registry.default_style() == "cubist"  # no night café left: the first listed style


def test_styles_json_one_row_per_style(user_models):
    from vidstyle.models.files import read_metadata, with_temporal_strengths
    (user_models / "broken.safetensors").write_bytes(b"not a model")
    duo = user_models / "duo.safetensors"
    with_temporal_strengths(duo, duo, {"the_scream": 0.45}, overwrite=True)
    res = runner.invoke(app, ["styles", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    for r in rows.values():
        assert {"name", "source", "arch", "model", "path", "default", "styles"} <= set(r)
    assert rows["cubist"] == {"name": "cubist", "source": "user", "arch": "lite", "model": "duo", "style": "cubist",
                              "styles": ["cubist", "the_scream"], "path": str(user_models / "duo.safetensors"),
                              "default": False, "temporal_strength": 0.7, "base": None}
    assert rows["the_scream"]["model"] == "duo" and rows["the_scream"]["style"] == "the_scream"
    assert rows["the_scream"]["temporal_strength"] == 0.45
    paintings = str(registry.BUNDLED_DIR / "paintings.safetensors")
    recorded = json.loads(read_metadata(paintings).get("temporal_strength", "{}"))
    for style in PAINTINGS:
        name = "paintings:the_scream" if style == "the_scream" else style  # the bare name is duo's
        assert rows[name] == {"name": name, "source": "bundled", "arch": "transformer", "model": "paintings",
                              "style": style, "styles": PAINTINGS, "path": paintings,
                              "default": style == "vangogh_night_cafe",
                              "temporal_strength": recorded.get(style, 0.7), "base": None}
    assert rows["vangogh_night_cafe"]["default"] and sum(r["default"] for r in rows.values()) == 1
    assert "duo" not in rows and "paintings" not in rows  # a multi-style model is listed by its styles
    assert rows["broken"]["arch"] == "unreadable"
    res = runner.invoke(app, ["styles"])
    assert res.exit_code == 0
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("cubist "))
    assert line.split() == ["cubist", "user", "lite", "0.7", "duo.safetensors"]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("vangogh_night_cafe "))
    assert line.split() == ["vangogh_night_cafe", "bundled", "transformer",
                            f"{recorded.get('vangogh_night_cafe', 0.7):g}", "paintings.safetensors", "(default)"]
    assert str(user_models) in res.stdout


def test_run_and_live_take_the_inner_style_name(user_models, tmp_path):
    from conftest import frames_rgb, make_clip
    clip = make_clip(tmp_path / "c.mp4", w=32, h=24, n=3, audio=None)
    out = tmp_path / "o.mp4"
    res = runner.invoke(app, ["run", str(clip), "-o", str(out), "--style", "cubist", "--device", "cpu", "--json",
                              "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["style"] == "cubist" and len(frames_rgb(out)) == 3
    from vidstyle.live.bank import StyleBank
    from vidstyle.options import PaintOptions
    bank = StyleBank(PaintOptions(style="cubist", device="cpu"), realtime=False)
    assert bank.specs[bank.start] == ("cubist", None)
    assert {"the_scream", "paintings:the_scream", "starry_night"} <= {s for s, _ in bank.specs}
    assert bank.label(bank.start) == "cubist"


def test_user_folder(monkeypatch, tmp_path):
    import platformdirs
    monkeypatch.setenv("VIDSTYLE_MODELS", str(tmp_path / "mine"))
    assert registry.user_dir() == tmp_path / "mine"  # the variable comes first
    monkeypatch.delenv("VIDSTYLE_MODELS")
    assert registry.user_dir() == Path(platformdirs.user_data_dir("vidstyle", appauthor=False)) / "models"
    if sys.platform.startswith("linux"):  # today's Linux places
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert registry.user_dir() == tmp_path / "xdg" / "vidstyle" / "models"
        monkeypatch.delenv("XDG_DATA_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert registry.user_dir() == tmp_path / "home" / ".local" / "share" / "vidstyle" / "models"
    # elsewhere the platform's own place, as platformdirs says (e.g. ~/Library/Application Support/vidstyle)
    calls = []

    def fake(appname, appauthor=None, **kw):
        calls.append((appname, appauthor))
        return str(tmp_path / "Application Support" / appname)

    monkeypatch.setattr(platformdirs, "user_data_dir", fake)
    assert registry.user_dir() == tmp_path / "Application Support" / "vidstyle" / "models"
    assert calls == [("vidstyle", False)]  # appauthor=False: no extra author folder on Windows



@pytest.mark.parametrize("mix,message", [("udnie:nan,the_scream:0.5", "finite"), ("udnie:inf", "finite"),
                                         ("udnie:-inf,the_scream:1", "finite"), (",", "empty style name"),
                                         (":0.5", "empty style name"), ("udnie:0.5,", "empty style name")])
def test_mix_weights_must_be_finite_and_names_given(mix, message):
    with pytest.raises(VidstyleError, match=message):
        registry.parse_mix(mix)


@pytest.mark.parametrize("mix,message", [({"udnie": float("nan")}, "finite"), ({"udnie": "x"}, "number"),
                                         ({"udnie": -1.0, "the_scream": 2.0}, "non-negative"), ({}, "no style")])
def test_mix_dict_from_the_api_is_checked_like_the_option(mix, message):
    from vidstyle.api import load_model
    with pytest.raises(VidstyleError, match=message):
        load_model("paintings", mix=mix)


def test_mix_still_takes_names_and_weights():
    assert registry.parse_mix("udnie") == {"udnie": 1.0}
    assert registry.parse_mix("udnie:0.7, the_scream:0.3") == {"udnie": 0.7, "the_scream": 0.3}
    # NAME=VALUE, as the other per-style options (--style-scale, --temporal-strength) are written
    assert registry.parse_mix("udnie=0.7,the_scream=0.3") == {"udnie": 0.7, "the_scream": 0.3}
    with pytest.raises(VidstyleError, match="empty style name"):
        registry.parse_mix("=0.5")


def test_non_finite_mix_is_one_line_on_the_command_line(tmp_path):
    out = tmp_path / "e.onnx"
    r = runner.invoke(app, ["export", "paintings", "--mix", "udnie:nan,the_scream:0.5", "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == ["error: --mix weights must be finite numbers, not 'nan' (in 'udnie:nan')"]
    assert not out.exists()


def _with_meta(src: Path, dst: Path, **changes: str) -> Path:
    """A copy of the model file ``src`` whose metadata entries are replaced by ``changes`` (JSON text)."""
    from safetensors.torch import load_file, save_file
    from vidstyle.models.files import read_metadata
    save_file(load_file(str(src)), str(dst), metadata={**read_metadata(src), **changes})
    return dst


@pytest.mark.parametrize("changes,message", [({"arch": "[1, 2]"}, "broken metadata"),
                                             ({"arch": "null"}, "broken metadata"),
                                             ({"training": "[]"}, "broken metadata"),
                                             ({"temporal_strength": "[0.5]"}, "broken metadata")])
def test_metadata_of_the_wrong_json_type_is_one_line(tmp_path, duo_file, changes, message):
    bad = _with_meta(duo_file, tmp_path / "bad.safetensors", **changes)
    from vidstyle.models.files import load_model
    with pytest.raises(VidstyleError, match=message):
        load_model(bad)
    r = runner.invoke(app, ["image", str(bad), "--style", str(bad)])  # the CLI: one line, exit 2
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_odd_but_usable_metadata_loads(tmp_path, duo_file):
    """Numbers as style names are names; a scale that is not a number is no scale (the picture's own size)."""
    from vidstyle.models.files import load_model
    from vidstyle.models.files import model_scale
    m = load_model(_with_meta(duo_file, tmp_path / "odd.safetensors", styles="[1, 2]", training='{"scale": "big"}'))
    assert m.styles == ["1", "2"] and model_scale(m.training) is None
    assert model_scale({"scale": 0, "size": 128}) == 147 and model_scale({"scale": "256"}) == 256


def test_a_user_model_with_a_strength_that_is_not_a_number_is_listed_as_unreadable(user_models, duo_file):
    _with_meta(duo_file, user_models / "textual.safetensors", temporal_strength='{"cubist": "0.5"}')
    res = runner.invoke(app, ["styles"])
    assert res.exit_code == 0, res.output
    assert next(ln for ln in res.stdout.splitlines() if ln.startswith("textual ")).split()[2] == "unreadable"


@pytest.mark.parametrize("mix", ["cubist:1e-50", "cubist:1e39", "cubist:1e300,the_scream:1e300"])
def test_extreme_mix_weights_are_normalised_before_float32(duo_file, mix):
    from vidstyle.models.files import load_model
    m = load_model(duo_file)
    m.select(mix=registry.parse_mix(mix))
    w = m.net.mix
    assert torch.isfinite(w).all() and abs(float(w.sum()) - 1) < 1e-6
    assert w.tolist() == ([1.0, 0.0] if "the_scream" not in mix else [0.5, 0.5])
