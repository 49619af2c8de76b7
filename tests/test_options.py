"""Options as values: checked once where they are made, passed on whole, fingerprinted from their fields."""
from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from vidstyle.batch.manifest import what_changed
from vidstyle.errors import VidstyleError
from vidstyle.options import EncodeOptions, PaintOptions, ReadOptions, TemporalOptions, check_size, parse_size


def test_paint_options_are_checked_once_with_the_command_lines_words():
    for bad, words in [(dict(strength=1.5), "--strength must be between 0 and 1"),
                       (dict(strength="x"), "--strength must be between 0 and 1"),
                       (dict(brush=0), "--brush must be above 0"),
                       (dict(max_side=0), "max_side must be a whole number"),
                       (dict(max_side=True), "max_side must be a whole number"),
                       (dict(out_size="64x48"), "out_size must be"),
                       (dict(out_size=(64, -1)), "out_size must be"),
                       (dict(engine="tensorflow"), "--engine must be one of"),
                       (dict(precision="fp8"), "--precision must be one of"),
                       (dict(device="tpu"), "--device must be auto, cpu or cuda"),
                       (dict(mix="a:0,b:0"), "mix")]:
        with pytest.raises(VidstyleError, match=words):
            PaintOptions(**bad)


def test_paint_options_normalise_what_comes_in():
    class Choice:  # what typer hands over for an enum option
        value = "OpenVINO"

    p = PaintOptions(engine=Choice(), precision="BF16", brush=2, strength=1, mix="a:1,b:3", out_size=(64, 48))
    assert (p.engine, p.precision, p.brush, p.strength) == ("openvino", "bf16", 2.0, 1.0)
    assert p.device == "cpu"  # OpenVINO asked for: the CPU even where a GPU is present
    assert p.mix == {"a": 1.0, "b": 3.0} and p.out_size == (64, 48)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.strength = 0.5
    assert pickle.loads(pickle.dumps(p)) == p  # travels to pool processes and Ray workers as it is


def test_the_fingerprint_is_every_field_that_changes_the_output():
    p = PaintOptions(style="udnie", max_side=720, device="cpu", engine="torch")
    fp = p.fingerprint()
    assert "device" not in fp and "engine" not in fp  # where it runs, not what it paints
    assert set(fp) == {f.name for f in dataclasses.fields(PaintOptions)} - {"device", "engine"}
    assert fp["max_side"] == 720 and p.replace(max_side=360).fingerprint() != fp
    assert TemporalOptions().fingerprint() == {"temporal": False, "temporal_strength": None, "flow": None}
    assert TemporalOptions(temporal=True, flow="DIS").fingerprint() == {"temporal": True, "temporal_strength": None,
                                                                        "flow": "dis"}
    assert ReadOptions(allow_protocol="concat").fingerprint() == {"deinterlace": True}
    assert EncodeOptions(crf=20).fingerprint() == {"codec": None, "crf": 20, "preset": None, "chroma": "420"}


def test_other_options_are_checked_too():
    for make, words in [(lambda: EncodeOptions(chroma="422"), "chroma must be 420 or 444"),
                        (lambda: EncodeOptions(crf=99), "--crf must be"),
                        (lambda: TemporalOptions(flow="farneback"), "--flow must be dis, raft or auto"),
                        (lambda: TemporalOptions(temporal_strength=2), "--temporal-strength must be")]:
        with pytest.raises(VidstyleError, match=words):
            make()
    assert ReadOptions(allow_protocol=["concat", "file"]).allow_protocol == ("concat", "file")
    assert TemporalOptions().stabilizer() is None
    stab = TemporalOptions(temporal=True, temporal_strength=0.4, flow="dis").stabilizer()
    assert stab.strength == 0.4 and stab.flow_kind == "dis"


def test_pick_and_split_take_their_own_fields_by_name():
    params = {"style": "udnie", "strength": 0.5, "crf": 20, "temporal": True, "quiet": True}
    assert PaintOptions.pick(params) == PaintOptions(style="udnie", strength=0.5)
    assert EncodeOptions.pick(params) == EncodeOptions(crf=20)
    kwargs = dict(params)
    assert TemporalOptions.split(kwargs) == TemporalOptions(temporal=True)
    assert "temporal" not in kwargs and kwargs["crf"] == 20  # taken out; the rest left for the others
    base = PaintOptions(style="udnie", brush=2)
    assert PaintOptions.split({"strength": 0.3}, base) == PaintOptions(style="udnie", brush=2, strength=0.3)


def test_sizes_from_the_command_line_and_from_code():
    assert parse_size("1280X720") == (1280, 720) and parse_size(None) is None
    for bad in ("1280", "0x720", "axb"):
        with pytest.raises(VidstyleError, match="--out-size wants WIDTHxHEIGHT"):
            parse_size(bad)
    import numpy as np
    assert check_size((np.int64(64), 48)) == (64, 48)
    with pytest.raises(VidstyleError):
        check_size((64.0, 48))


def test_every_painting_option_reaches_every_painting_command():
    """One declaration per option (``PAINT_OPTIONS``), and every field of ``PaintOptions`` has one."""
    from vidstyle.commands import evaluate, image, live, paint
    from vidstyle.commands.common import PAINT_OPTIONS, TEMPORAL_OPTIONS

    assert set(PAINT_OPTIONS) == {f.name for f in dataclasses.fields(PaintOptions)} - {"out_size"}
    assert set(TEMPORAL_OPTIONS) == {f.name for f in dataclasses.fields(TemporalOptions)}
    for cmd, own in [(paint.run, set()), (image.image, set()), (live.live, {"style"}),  # live: several styles
                     (evaluate.eval_cmd, {"style", "max_side"})]:
        params = inspect.signature(cmd).parameters
        for name, (_, decl) in PAINT_OPTIONS.items():
            assert name in params, (cmd.__name__, name)
            assert (params[name].default is decl) == (name not in own), (cmd.__name__, name)


def test_a_manifest_from_before_options_were_values_is_read_alike():
    """Older manifests kept chroma and deinterlace under "video"; the same settings are not a change."""
    now = {"model": "m", "crf": None, "chroma": "420", "deinterlace": True}
    old = {"options": {"model": "m", "crf": None, "video": {"chroma": "420", "deinterlace": True}}}
    assert what_changed(old, now, {}) is None
    old["options"]["video"]["chroma"] = "444"
    assert what_changed(old, now, {}) == "chroma"
