"""Spec files, hyperparameters and overrides (load_spec), and resolution to a build plan (resolve)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdpnet.spec import ModelSpec, Spec, SpecError, load_spec, parse, parse_override, resolve, spec_sources

REPO = Path(__file__).resolve().parents[1]
CARD = "P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP"
XL = {"name": "sdpnet_xl", "arch": "P14+CLS5-[3xDWC7+MLP,ENC]x4-ENC-MLP", "dim": 768, "heads": 12,
      "mlp_ratio": 4, "act": "gelu", "num_classes": 1000, "drop_path": 0.1, "dropout": 0.2}


@pytest.fixture
def xl_file(tmp_path):
    path = tmp_path / "sdpnet_xl.json"
    path.write_text(json.dumps(XL))
    return path


class TestLoadSpec:
    def test_file(self, xl_file):
        """A spec file gives the arch tree and typed hyperparameters."""
        model = load_spec(str(xl_file))
        assert model.arch == parse(XL["arch"])
        assert model.name == "sdpnet_xl"
        assert model.hparams["mlp_ratio"] == 4.0 and isinstance(model.hparams["mlp_ratio"], float)
        assert load_spec(xl_file) == model  # a Path works too

    def test_overrides_win(self, xl_file):
        """Overrides replace the file's values, including arch."""
        model = load_spec(str(xl_file), dim=384, heads=6, arch="P16-ENC-LIN")
        assert model.hparams["dim"] == 384 and model.hparams["heads"] == 6
        assert str(model.arch) == "P16-ENC-LIN"
        assert model.hparams["dropout"] == 0.2

    def test_file_round_trip(self, xl_file, tmp_path):
        """to_json writes the file form, which loads back to the same ModelSpec."""
        model = load_spec(str(xl_file))
        out = tmp_path / "again.json"
        out.write_text(json.dumps(model.to_json()))
        assert load_spec(str(out)) == model
        assert model.to_json()["arch"] == XL["arch"]

    def test_json_tree_arch(self, tmp_path):
        """arch may be a JSON tree."""
        path = tmp_path / "tree.json"
        path.write_text(json.dumps({"arch": parse(CARD).to_json(), "dim": 384}))
        assert str(load_spec(str(path)).arch) == CARD

    def test_string_and_json_text(self):
        """A spec string and JSON object text load directly; Spec and ModelSpec pass through."""
        assert load_spec(CARD).arch == parse(CARD)
        assert load_spec('{"arch": "P16-ENC", "dim": 64}').hparams["dim"] == 64
        model = load_spec(parse(CARD), dim=192)
        assert isinstance(model, ModelSpec) and load_spec(model) is model

    @pytest.mark.parametrize("obj, fragment, path", [
        ({"arch": "P16-ENC", "dmi": 384}, "unknown hyperparameter 'dmi'", "dmi"),
        ({"arch": "P16-ENC", "dim": "384"}, "expected an integer", "dim"),
        ({"arch": "P16-ENC", "dim": 0}, "from 1 to 65,536", "dim"),
        ({"arch": "P16-ENC", "layer_scale": 1e308}, "must be <= 10000", "layer_scale"),
        ({"arch": "P16-ENC", "drop_path": 1.5}, "[0, 1)", "drop_path"),
        ({"arch": "P16-ENC", "act": "swish"}, "one of", "act"),
        ({"arch": "P16-ENC", "gated": 2}, "true/false", "gated"),
        ({"dim": 384}, "no \"arch\"", None),
        ({"arch": 3}, "spec string or a JSON tree", "arch"),
        ({"arch": {"stages": [[{"block": "DWX"}]]}}, "unknown block 'DWX'", "arch.stages[0][0].block"),
        ({"arch": {"stages": [[{"block": "P", "arg": 16}], [{"block": "ENC", "kwargs": {"h": "8"}}]]}},
         "takes an integer", "arch.stages[1][0].kwargs.h"),
    ])
    def test_bad_files(self, tmp_path, obj, fragment, path):
        """Bad spec files name the file and the key."""
        file = tmp_path / "bad.json"
        file.write_text(json.dumps(obj))
        with pytest.raises(SpecError) as info:
            load_spec(str(file))
        assert fragment in info.value.message
        assert info.value.path == path
        assert str(file) in str(info.value)

    def test_unknown_hparam_suggests(self):
        """An unknown hyperparameter suggests the nearest name."""
        with pytest.raises(SpecError, match="did you mean heads"):
            load_spec(CARD, haeds=12)

    def test_arch_error_in_file_has_caret(self, tmp_path):
        """A bad arch string in a file gets the caret message and names the file."""
        file = tmp_path / "m.json"
        file.write_text(json.dumps({"arch": "P16-DWX7"}))
        with pytest.raises(SpecError) as info:
            load_spec(str(file))
        assert info.value.col == 4 and str(file) in str(info.value)

    def test_missing_file_and_bad_json(self, tmp_path):
        """A missing .json path and invalid JSON are SpecErrors."""
        with pytest.raises(SpecError, match="no such spec file"):
            load_spec(str(tmp_path / "nope.json"))
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        with pytest.raises(SpecError, match="invalid JSON"):
            load_spec(str(bad))


class TestSpecSources:
    def test_sources(self, tmp_path, xl_file):
        """A folder gives its .json files in name order (other files skipped), a .json path itself as given, a
        spec string or template itself, not a file; a folder without .json files is an error line naming it."""
        (tmp_path / "a.json").write_text(json.dumps(XL))
        (tmp_path / "notes.txt").write_text("not a spec")
        empty = tmp_path / "empty"
        empty.mkdir()
        items, errors = spec_sources([CARD, str(tmp_path), "./specs/x.json", str(empty), "P4-ENCx{1,2}"])
        assert items == [(CARD, False), (str(tmp_path / "a.json"), True), (str(xl_file), True),
                         ("./specs/x.json", True), ("P4-ENCx{1,2}", False)]
        assert errors == [f"{empty}: the folder holds no .json spec files"]


class TestParseOverride:
    @pytest.mark.parametrize("text, expected", [
        ("dim=384", ("dim", 384)), ("drop_path=0.1", ("drop_path", 0.1)), ("mlp_ratio=2", ("mlp_ratio", 2.0)),
        ("gated=true", ("gated", True)), ("qk_norm=0", ("qk_norm", False)), ("act=relu", ("act", "relu")),
        ("arch=P16-ENC", ("arch", "P16-ENC")), (" heads = 8 ", ("heads", 8)),
    ])
    def test_typed(self, text, expected):
        """key=value strings convert by the declared type."""
        assert parse_override(text) == expected

    @pytest.mark.parametrize("text", ["dim", "dim=3.5", "dim=abc", "gated=maybe", "act=swish", "dmi=3", "=3",
                                      "drop_path=2", "dim=" + "9" * 50])
    def test_bad(self, text):
        """Bad overrides are SpecErrors."""
        with pytest.raises(SpecError):
            parse_override(text)


def _layers(plan):
    return [(l.name, l.role, l.in_dim, l.out_dim) for l in plan.layers]


class TestResolve:
    def test_card(self):
        """The card example: 5 class tokens, MLP head fed by TOKS, heads = dim // 64."""
        plan = resolve(load_spec(CARD, dim=384, num_classes=10))
        assert plan.num_cls == 5 and plan.num_reg == 0 and plan.dim == 384
        assert [l.name for l in plan.layers[-2:]] == ["TOKS", "MLP"]
        assert plan.layers[-1].out_dim == 10 and plan.layers[-1].kwargs["hidden"] is None
        enc = [l for l in plan.layers if l.name == "ENC"]
        assert len(enc) == 18 and all(l.kwargs["num_heads"] == 6 for l in enc)
        assert "CLS" not in [l.name for l in plan.layers]

    def test_keyword_precedence(self):
        """Block keywords beat hyperparameters, which beat defaults."""
        plan = resolve(load_spec("P16-ENC(h=2),ENC,MLP", dim=128, heads=4, mlp_ratio=3))
        enc1, enc2, mlp = plan.layers[1:4]
        assert enc1.kwargs["num_heads"] == 2 and enc2.kwargs["num_heads"] == 4
        assert enc1.kwargs["mlp_ratio"] == 3.0 and mlp.kwargs["mlp_ratio"] == 3.0
        assert mlp.kwargs["act"] == "gelu" and mlp.kwargs["layer_scale"] == 0.0

    def test_widths(self):
        """Widths: intermediate CT layers 64, the last tokenizer dim, DOWN doubles, CONV keeps or sets d."""
        plan = resolve(load_spec("CT3x2-ENC-DOWN2-CONV3(d=96)-ENC", dim=128))
        assert _layers(plan)[:5] == [("CT", "stem", 3, 64), ("CT", "stem", 64, 128), ("ENC", "body", 128, 128),
                                     ("DOWN", "body", 128, 256), ("CONV", "body", 256, 96)]
        assert plan.layers[3].kwargs["dim"] == 256 and plan.layers[1].kwargs["dim"] == 128
        assert plan.layers[0].kwargs["kernel_size"] == 3
        assert plan.layers[-1].in_dim == 96 and plan.layers[-1].out_dim == 1000

    def test_body_conv_width_change_with_tokens(self):
        """A body CONV that changes the width after tokens exist is a SpecError (only DOWN projects tokens)."""
        text = "CONV3(d=32)-CONV3(d=64,s=2)+CLS2-ENC"
        with pytest.raises(SpecError) as info:
            resolve(load_spec(text))
        assert info.value.col == text.index("CONV3(d=64") and "DOWN(d=64)" in str(info.value)
        assert resolve(load_spec("CONV3(d=32),CONV3(d=64,s=2)+CLS2-ENC")).dim == 64

    @pytest.mark.parametrize("text", ["P16+CLS+POS(cls=true)-ENC", "P16-POS(cls=true)+ENC"])
    def test_pos_cls_needs_tokens_in_the_body(self, text):
        """POS(cls=true) in the stem or without class tokens is a SpecError at the POS, not a build error."""
        with pytest.raises(SpecError) as info:
            resolve(load_spec(text))
        assert info.value.col == text.index("POS")
        assert resolve(load_spec("P16+CLS-POS(cls=true)+ENC")).num_cls == 1

    def test_stem_width_keyword(self):
        """P16(d=...) sets the stem width."""
        assert resolve(load_spec("P16(d=192)-ENC")).dim == 192

    def test_heads_check(self):
        """dim not divisible by heads is a SpecError at the ENC's column with suggestions."""
        with pytest.raises(SpecError) as info:
            resolve(load_spec("P16-DWC7,ENC(h=8)", dim=100))
        assert info.value.col == 9 and "use h=5 or h=10" in str(info.value)
        with pytest.raises(SpecError) as info:
            resolve(load_spec(Spec.from_json(parse("P16-DWC7,ENC").to_json()), dim=100, heads=8))
        assert info.value.col == 9  # columns of the canonical string for trees without text

    def test_head_completion(self):
        """No head: GAP (or TOKS with class tokens) + LIN; a head without pooling or classifier is completed."""
        assert [l.name for l in resolve(load_spec("P16-ENC")).layers] == ["P", "ENC", "GAP", "LIN"]
        assert [l.name for l in resolve(load_spec("P16+CLS-ENC")).layers][-2:] == ["TOKS", "LIN"]
        assert [l.name for l in resolve(load_spec("P16-ENC-MLP")).layers][-2:] == ["GAP", "MLP"]
        assert [l.name for l in resolve(load_spec("P16-ENC-SEQPOOL")).layers][-2:] == ["SEQPOOL", "LIN"]

    def test_tokens_counted(self):
        """Class and register tokens are summed over all declarations, repeats included."""
        plan = resolve(load_spec("P16+CLS2+REG4-[ENC+CLS]x3-LIN"))
        assert plan.num_cls == 5 and plan.num_reg == 4

    def test_drop_path(self):
        """drop_path grows linearly over residual body layers; others get none."""
        plan = resolve(load_spec("P16-DWC7,ENC,DOWN2,MLP-GAP+LIN", drop_path=0.3, dim=64))
        rates = {l.name: l.kwargs.get("drop_path") for l in plan.layers}
        assert rates == {"P": None, "DWC": 0.0, "ENC": pytest.approx(0.15), "DOWN": None,
                         "MLP": pytest.approx(0.3), "GAP": None, "LIN": None}

    def test_defaults(self):
        """Defaults: dim 768, num_classes 1000, in_chans 3, img_size 224, recorded in hparams."""
        plan = resolve("P16-ENC")
        assert (plan.dim, plan.num_classes, plan.in_chans, plan.img_size) == (768, 1000, 3, 224)
        assert plan.hparams["dim"] == 768


def test_no_torch_import():
    """Importing sdpnet and sdpnet.spec and parsing a spec do not import torch."""
    code = ("import sys, sdpnet, sdpnet.spec; sdpnet.resolve(sdpnet.load_spec('" + CARD + "'));"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
