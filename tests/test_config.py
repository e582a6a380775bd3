"""The strict config layer: sources, bool parsing, unknown keys, bad types, bounds, NaN, null, exit status 2."""
from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest
from fastargs import Config, Param, Section
from fastargs.decorators import param, section
from fastargs.validation import And, InRange, OneOf

from conftest import run_script
from sdpnet.train.config import (Bool, ConfigError, altering_keys, config_to_dict, load_config, load_options, option,
                           option_defaults, options_dict, parse_config, parse_options)


def make_config() -> Config:
    cfg = Config()
    Section("data", "data", config_descriptor=cfg).params(
        path=Param(str, "a path", required=True),
        res=Param(int, "resolution", default=160),
        lr=Param(float, "learning rate", default=0.1),
        flip=Param(bool, "plain fastargs bool", default=True),
        strict=Param(Bool(), "our bool", default=False),
        mode=Param(OneOf(["raw", "jpg"]), "mode", default="raw"),
        workers=Param(And(int, InRange(1)), "workers", default=2),
    )
    Section("train.opt", "optimiser", config_descriptor=cfg).params(
        wd=Param(float, "weight decay", default=0.05),
    )
    return cfg


class TestSources:
    def test_defaults_and_cli(self):
        """Defaults fill unset keys; --k=v and --k v both set values, converted to their types."""
        cfg = load_config(["--data.path=/x", "--data.res", "224", "--train.opt.wd=0"], make_config())
        assert (cfg["data.path"], cfg["data.res"], cfg["data.lr"], cfg["train.opt.wd"]) == ("/x", 224, 0.1, 0.0)

    def test_yaml_then_cli_wins(self, tmp_path: Path):
        """-C files apply in order (nested or dotted keys), the command line wins over them."""
        a = tmp_path / "a.yaml"
        a.write_text("data:\n  path: /from_a\n  res: 128\n")
        b = tmp_path / "b.yaml"
        b.write_text("data.res: 96\ntrain:\n  opt:\n    wd: 0.1\n")
        cfg = load_config(["-C", str(a), f"-C={b}", "--data.path=/cli"], make_config())
        assert (cfg["data.path"], cfg["data.res"], cfg["train.opt.wd"]) == ("/cli", 96, 0.1)

    def test_decorators_read_the_config(self):
        """fastargs' @param decorators see the parsed values."""
        from fastargs import set_current_config
        cfg = make_config()
        set_current_config(cfg)

        @section("data")
        @param("res")
        @param("flip")
        def f(res: int, flip: bool) -> tuple:
            return res, flip
        load_config(["--data.path=p", "--data.res=64", "--data.flip=False"], cfg)
        assert f() == (64, False)

    def test_dump(self, tmp_path: Path):
        """config_to_dict gives a nested, JSON-serialisable dict of every resolved value."""
        cfg = load_config(["--data.path=/x", "--data.strict=yes"], make_config())
        d = config_to_dict(cfg)
        assert d["data"] == {"path": "/x", "res": 160, "lr": 0.1, "flip": True, "strict": True,
                             "mode": "raw", "workers": 2}
        assert d["train"]["opt"] == {"wd": 0.05}
        assert json.loads(json.dumps(d)) == d


class TestBool:
    @pytest.mark.parametrize("text,value", [("0", False), ("1", True), ("true", True), ("False", False),
                                            ("YES", True), ("no", False), ("off", False), ("On", True)])
    def test_strings(self, text: str, value: bool):
        """Both our Bool and plain Param(bool) parse 0/1/true/false/yes/no in any case."""
        cfg = load_config(["--data.path=p", f"--data.flip={text}", f"--data.strict={text}"], make_config())
        assert cfg["data.flip"] is value and cfg["data.strict"] is value

    def test_bare_flag_is_true(self):
        """A bool key given without a value means true."""
        assert load_config(["--data.strict", "--data.path=p"], make_config())["data.strict"] is True

    def test_rejects_other_text(self):
        """'maybe' is not a boolean."""
        with pytest.raises(ConfigError, match=r"--data.strict='maybe'.*a bool \(0/1, true/false, yes/no or on/off\)"):
            load_config(["--data.path=p", "--data.strict=maybe"], make_config())


class TestErrors:
    def test_unknown_key_suggests_nearest_and_lists_section(self):
        """A misspelt key names the nearest valid key and the section's keys."""
        with pytest.raises(ConfigError) as e:
            load_config(["--data.pth=p"], make_config())
        msg = str(e.value)
        assert "'data.pth'" in msg and "did you mean 'data.path'" in msg
        assert "flip, lr, mode, path, res, strict, workers" in msg

    def test_unknown_section(self):
        """A misspelt section names the nearest valid one."""
        with pytest.raises(ConfigError, match="did you mean 'train.opt'.*Valid sections: data, train.opt"):
            load_config(["--data.path=p", "--train.otp.wd=1"], make_config())

    def test_unknown_key_in_yaml(self, tmp_path: Path):
        """Unknown keys in a config file are rejected and the file is named."""
        f = tmp_path / "c.yaml"
        f.write_text("data:\n  path: x\n  resolution: 3\n")
        with pytest.raises(ConfigError, match="c.yaml.*did you mean 'data.res'"):
            load_config(["-C", str(f)], make_config())

    @pytest.mark.parametrize("arg", ["--data.res=3.5", "--data.res=abc", "--data.lr=fast", "--data.lr=nan",
                                     "--data.lr=-inf", "--data.mode=png", "--data.workers=0"])
    def test_bad_values(self, arg: str):
        """Values of the wrong type or out of range are reported with what was expected."""
        with pytest.raises(ConfigError, match=arg.split("=")[0]):
            load_config(["--data.path=p", arg], make_config())

    def test_missing_required_and_several_errors(self):
        """All problems are reported together, the missing required value included."""
        with pytest.raises(ConfigError) as e:
            load_config(["--data.res=x"], make_config())
        assert "missing required --data.path" in str(e.value) and "--data.res='x'" in str(e.value)

    @pytest.mark.parametrize("argv,match", [(["positional"], "unexpected argument"),
                                            (["--data.res"], "needs a value"),
                                            (["-C", "/nonexistent.yaml"], "cannot read config file")])
    def test_malformed_command_lines(self, argv: list[str], match: str):
        """Stray words, missing values and unreadable files are errors."""
        with pytest.raises(ConfigError, match=match):
            load_config(argv, make_config())

    def test_parse_config_exits_2_with_one_line(self, capsys: pytest.CaptureFixture):
        """parse_config prints one error line and exits with status 2."""
        with pytest.raises(SystemExit) as e:
            parse_config(["--data.nope=1"], config=make_config(), prog="t")
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("t: error: unknown key 'data.nope'") and err.count("\n") == 1


def test_cli_help_and_errors_before_work(tmp_path: Path):
    """A real script: --help exits 0 listing the keys; a bad value exits 2 without touching the disk."""
    res = run_script("write_fashion_mnist.py", "--help")
    assert res.returncode == 0 and "--cfg.write_dir" in res.stdout
    res = run_script("write_fashion_mnist.py", f"--cfg.write_dir={tmp_path}/o", "--cfg.overwrite=perhaps")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--cfg.overwrite='perhaps'" in res.stderr
    assert not (tmp_path / "o").exists()
    res = run_script("write_imagenet.py", "--cfg.data_dir=x", f"--cfg.write_path={tmp_path}/o.beton",
                     "--cfg.compress_probability=nan", "--cfg.subset=0")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "--cfg.compress_probability='nan'" in res.stderr and "in [0, 1]" in res.stderr


# ---- options declared as dataclasses ------------------------------------------------------------

@dataclass(frozen=True)
class Net:
    """the network"""
    spec: str = option(help="spec string")
    drop: float | None = option(None, "dropout (default: the spec's)", ge=0, lt=1)


@dataclass(frozen=True)
class Sched:
    """schedule"""
    lo: int = option(1, "low end", ge=1)
    hi: int = option(4, "high end", ge=1, alters=False)
    mode: str = option("auto", "a switch", choices=("auto", "on", "off"))
    fast: bool = option(False, "a flag")

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ConfigError(f"--sched.lo={self.lo} is above --sched.hi={self.hi}")


@dataclass(frozen=True)
class Opts:
    net: Net
    sched: Sched


class TestOptions:
    def test_plain_values(self):
        """Sections come back as frozen dataclasses of converted values, defaults filled in."""
        o = load_options(Opts, ["--net.spec=P4", "--sched.hi", "9", "--sched.fast"])
        assert o == Opts(Net("P4", None), Sched(1, 9, "auto", True))
        with pytest.raises(FrozenInstanceError):
            o.sched.lo = 3
        assert options_dict(o) == {"net": {"spec": "P4", "drop": None},
                                   "sched": {"lo": 1, "hi": 9, "mode": "auto", "fast": True}}

    @pytest.mark.parametrize("arg,expected", [
        ("--net.drop=1", "--net.drop='1' (command line) is invalid: expected a finite float in [0, 1)"),
        ("--net.drop=nan", "--net.drop='nan' (command line) is invalid: expected a finite float in [0, 1)"),
        ("--net.drop=inf", "expected a finite float in [0, 1)"),
        ("--sched.lo=0", "--sched.lo='0' (command line) is invalid: expected an int >= 1"),
        ("--sched.lo=2.0", "expected an int >= 1"),
        ("--sched.mode=maybe", "--sched.mode='maybe' (command line) is invalid: expected one of auto, on, off"),
        ("--sched.fast=2", "expected a bool (0/1, true/false, yes/no or on/off)"),
    ])
    def test_bad_values_say_what_is_valid(self, arg: str, expected: str):
        """Out of range, non-finite, wrong type or choice: the key, the value and the valid range."""
        with pytest.raises(ConfigError) as e:
            load_options(Opts, ["--net.spec=P4", arg])
        assert expected in str(e.value)

    def test_relations_checked_after_types(self):
        """A section's __post_init__ checks relations between its (already converted) values."""
        with pytest.raises(ConfigError, match=r"--sched.lo=5 is above --sched.hi=4"):
            load_options(Opts, ["--net.spec=P4", "--sched.lo=5"])

    def test_yaml_null_is_refused(self, tmp_path: Path):
        """A YAML null is an error naming the key, not a silent default."""
        f = tmp_path / "c.yaml"
        f.write_text("net:\n  spec: P4\n  drop: null\nsched:\n  lo: ~\n")
        with pytest.raises(ConfigError) as e:
            load_options(Opts, ["-C", str(f)])
        assert "--net.drop is null (config file" in str(e.value) and "--sched.lo is null" in str(e.value)
        assert "leave the key out for the default (1)" in str(e.value)

    def test_yaml_nan_and_unquoted_off(self, tmp_path: Path):
        """YAML .nan and .inf are refused; an unquoted off/on (a YAML bool) is the choice 'off'/'on'."""
        f = tmp_path / "c.yaml"
        f.write_text("net:\n  spec: P4\nsched:\n  mode: off\n")
        assert load_options(Opts, ["-C", str(f)]).sched.mode == "off"
        f.write_text("net:\n  spec: P4\n  drop: .nan\n")
        with pytest.raises(ConfigError, match="--net.drop=nan"):
            load_options(Opts, ["-C", str(f)])

    def test_altering_keys(self):
        """Options marked alters=False are the ones a resumed run may change."""
        assert altering_keys(Opts) == {"net.spec", "net.drop", "sched.lo", "sched.mode", "sched.fast"}
        assert option_defaults(Opts)["sched.lo"] == 1 and option_defaults(Opts)["net.drop"] is None

    def test_parse_options_exits_2(self, capsys: pytest.CaptureFixture):
        """parse_options prints one line and exits 2; --help lists each option with its valid values."""
        with pytest.raises(SystemExit) as e:
            parse_options(Opts, ["--net.spec=P4", "--sched.lo=9"], prog="t")
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("t: error: --sched.lo=9 is above")
        with pytest.raises(SystemExit) as e:
            parse_options(Opts, ["--help"], prog="t")
        out = capsys.readouterr().out
        assert e.value.code == 0 and "--net.drop" in out and "a finite float in [0, 1)" in out
