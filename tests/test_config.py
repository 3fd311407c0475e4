"""The one typed config loader (vbp_live.core.config): origins in messages, one value rule, both CLIs alike."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from data_prep.config import load_config as load_prep
from vbp_live.cli.main import main
from vbp_live.core import config
from vbp_live.core.config import ConfigValueError, Override, parse_set
from vbp_live.core.errors import ConfigError
from vbp_live.train.config import load_config as load_train

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    rate: float = 0.5
    count: int = 1
    on: bool = False
    tags: tuple[str, ...] = ("a",)
    sizes: list[int] = field(default_factory=list)
    gap: float | None = 0.25
    mode: Literal["fast", "slow"] = "fast"
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    args: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.inner.count > 100:
            raise ConfigValueError("inner.count", f"inner.count must be <= 100, got {self.inner.count}")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def _error(fn, *args) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_nested_sections_and_every_kind_of_field(tmp_path):
    p = _write(tmp_path, "name: y\ninner:\n  rate: 1\n  tags: [b, c]\n  sizes: [3]\n  gap: null\n  mode: slow\n"
                         "  extra: {k: 2}\nargs: {anything: [1, x]}\n")
    cfg = config.load(Outer, p)
    assert cfg == Outer("y", Inner(rate=1.0, tags=("b", "c"), sizes=[3], gap=None, mode="slow", extra={"k": 2}),
                        {"anything": [1, "x"]})
    assert isinstance(cfg.inner.rate, float)
    assert config.load(Outer, _write(tmp_path, "inner:\n")) == Outer()  # an empty section keeps its defaults
    assert config.to_dict(cfg)["inner"]["tags"] == ["b", "c"]  # plain YAML data
    assert config.from_dict(Outer, config.to_dict(cfg)) == cfg


def test_unknown_key_in_a_file_names_file_line_and_known_keys(tmp_path):
    p = _write(tmp_path, "name: y\ninner:\n  rate: 1\n  bogus: 2\n")
    assert _error(config.load, Outer, p) == (
        f"{p}:4: unknown key 'inner.bogus'; known keys: rate, count, on, tags, sizes, gap, mode, extra")
    assert _error(config.load, Outer, _write(tmp_path, "nme: y\n")).endswith(
        ":1: unknown key 'nme'; known keys: name, inner, args")


def test_unknown_set_key_is_blamed_on_the_set_not_the_file(tmp_path):
    p = _write(tmp_path, "name: y\n")
    assert _error(config.load, Outer, p, ["inner.bogus=1"]) == (
        "--set inner.bogus=1: unknown key 'inner.bogus'; known keys: rate, count, on, tags, sizes, gap, mode, extra")
    assert _error(config.load, Outer, p, ["inner={bogus: 1}"]).startswith("--set inner={bogus: 1}: unknown key")


def test_wrong_types_name_origin_key_expected_type_and_value(tmp_path):
    p = _write(tmp_path, "inner:\n  count: 2.5\n")
    assert _error(config.load, Outer, p) == f"{p}:2: inner.count must be an integer, got 2.5"
    for item, want in [
        ("inner.count=abc", "--set inner.count=abc: inner.count must be an integer, got 'abc'"),
        ("inner.count=true", "--set inner.count=true: inner.count must be an integer, got true"),
        ("inner.on=1", "--set inner.on=1: inner.on must be true or false, got 1"),
        ("inner.rate=fast", "--set inner.rate=fast: inner.rate must be a number, got 'fast'"),
        ("inner.gap=x", "--set inner.gap=x: inner.gap must be a number or null, got 'x'"),
        ("inner.mode=medium", "--set inner.mode=medium: inner.mode must be one of fast, slow; got 'medium'"),
        ("inner.sizes=[1, x]", "--set inner.sizes=[1, x]: inner.sizes[1] must be an integer, got 'x'"),
        ("inner.tags=b", "--set inner.tags=b: inner.tags must be a list, got 'b'"),
        ("inner.extra={k: x}", "--set inner.extra={k: x}: inner.extra.k must be an integer, got 'x'"),
        ("name=3", "--set name=3: name must be a string, got 3"),
        ("inner=3", "--set inner=3: inner must be a section (a mapping of keys), got 3"),
        ("name.sub=1", "--set name.sub=1: name is a value ('x'), not a section of keys"),
    ]:
        data = "name: x\n" if item.startswith("name.sub") else ""
        assert _error(config.load, Outer, _write(tmp_path, data), [item]) == want, item


def test_validation_errors_name_where_the_key_came_from(tmp_path):
    p = _write(tmp_path, "name: y\ninner:\n  count: 200\n")
    assert _error(config.load, Outer, p) == f"{p}:3: inner.count must be <= 100, got 200"
    assert _error(config.load, Outer, p, ["inner.count=300"]) == (
        "--set inner.count=300: inner.count must be <= 100, got 300")
    assert _error(config.load, Outer, None, {"inner.count": 400}) == (
        "override inner.count=400: inner.count must be <= 100, got 400")


def test_a_top_level_value_error_without_origin_names_the_file_or_nothing(tmp_path):
    p = _write(tmp_path, "inner:\n  rate: 2\n")
    assert _error(config.load, Outer, p, {"name": 5}) == "override name=5: name must be a string, got 5"
    assert _error(config.from_dict, Outer, {"inner": {"count": 101}}) == "inner.count must be <= 100, got 101"
    assert config._parent("a.b[2]") == "a.b" and config._parent("a.b") == "a" and config._parent("a") == ""


def test_one_value_rule_for_files_and_set(tmp_path):
    assert parse_set("inner.rate=1e-3") == Override("inner.rate", "1e-3", "--set inner.rate=1e-3")  # YAML 1.1: a string
    from_set = config.load(Outer, None, ["inner.rate=1e-3"])
    from_file = config.load(Outer, _write(tmp_path, "inner:\n  rate: 1e-3\n"))
    assert from_set.inner.rate == from_file.inner.rate == 0.001
    assert config.load(Outer, None, ["name="]).name == ""  # an empty value is the empty string
    assert config.load(Outer, None, ["inner.gap=null"]).inner.gap is None
    assert config.load(Outer, None, ["args.deep.er=1"]).args == {"deep": {"er": 1}}  # into a mapping field
    assert config.load(Outer, None, ["inner.count=5", "inner.count=7"]).inner.count == 7  # the last one wins


@pytest.mark.parametrize("item, words", [
    ("inner.count", "--set inner.count: expected KEY=VALUE"),
    ("=3", "--set =3: expected KEY=VALUE"),
    ("inner..count=3", "--set inner..count=3: key 'inner..count' has an empty part"),
    ("inner.sizes=[1", "--set inner.sizes=[1: the value is not valid YAML"),
])
def test_malformed_set(item, words):
    assert _error(parse_set, item).startswith(words)


def test_files_that_are_not_a_mapping_are_refused(tmp_path):
    p = _write(tmp_path, "- name: y\n- inner: {}\n")
    assert _error(config.load, Outer, p) == f"{p}: expected a mapping of config keys at the top level, got a list"
    assert _error(config.load, Outer, _write(tmp_path, "name: [y\n")).startswith(f"{p}:2: not valid YAML")
    assert _error(config.load, Outer, tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: config file not found"
    assert config.load(Outer, _write(tmp_path, "# only a comment\n")) == Outer()


def test_the_unsafe_loader_is_never_used(tmp_path):
    p = _write(tmp_path, "name: !!python/object/apply:os.system ['echo unsafe']\n")
    assert "not valid YAML" in _error(config.load, Outer, p)


@dataclass
class Card:
    name: str
    inner: Inner = field(default_factory=Inner)


def test_a_key_without_default_is_required(tmp_path):
    assert config.load(Card, _write(tmp_path, "name: n\n")).name == "n"
    p = _write(tmp_path, "inner:\n  count: 2\n")
    assert _error(config.load, Card, p) == f"{p}: missing key 'name' (it has no default)"


def test_config_diff_names_dotted_keys():
    a, b = config.to_dict(Outer()), config.to_dict(Outer(args={"w": 1}, inner=Inner(rate=2.0)))
    assert config.config_diff(a, b) == ["args.w", "inner.rate"]


# -- prep and train: the same rule and the same messages -----------------------------------------------


def test_1e3_is_a_float_in_prep_and_train_files_and_set(tmp_path):
    prep_file = _write(tmp_path, "filter:\n  min_speed_mps: 1e-3\n")
    assert load_prep(prep_file).filter.min_speed_mps == 0.001
    assert load_prep(None, ["filter.min_speed_mps=1e-3"]).filter.min_speed_mps == 0.001
    train_file = _write(tmp_path, "data:\n  path: d\noptim:\n  lr: 1e-3\n")
    assert load_train(train_file).optim.lr == 0.001
    assert load_train(None, ["data.path=d", "optim.lr=1e-3"]).optim.lr == 0.001


def test_prep_and_train_give_the_same_unknown_key_message(tmp_path):
    prep = _error(load_prep, _write(tmp_path, "sync:\n  methd: zoh\n"))
    assert prep == f"{tmp_path / 'c.yaml'}:2: unknown key 'sync.methd'; known keys: method, max_gap_s"
    train = _error(load_train, ROOT / "configs" / "netsvf.yaml", ["optim.lrr=1"])
    assert train.startswith("--set optim.lrr=1: unknown key 'optim.lrr'; known keys: lr, momentum,")
    assert _error(load_prep, None, ["bogus=1"]).startswith("--set bogus=1: unknown key 'bogus'; known keys: camera,")


def _cli_error(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "vbp_live.cli.main", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_both_clis_report_set_mistakes_in_the_same_one_line_format(tmp_path):
    prep = _cli_error(["prep", str(tmp_path), "-o", str(tmp_path / "out"), "--set", "bogus=1"])
    train = _cli_error(["train", "--config", str(ROOT / "configs" / "netsvf.yaml"), "--set", "bogus=1"])
    assert prep.startswith("vbp-live prep: error: --set bogus=1: unknown key 'bogus'; known keys: camera, steering,")
    assert train.startswith("vbp-live train: error: --set bogus=1: unknown key 'bogus'; known keys: run_dir, model,")
    assert _cli_error(["prep", str(tmp_path), "-o", str(tmp_path / "o"), "--set", "bogus"]) == (
        "vbp-live prep: error: --set bogus: expected KEY=VALUE, e.g. --set optim.lr=0.05")
    assert main(["train", "--config", str(ROOT / "configs" / "netsvf.yaml"), "--set", "bogus"]) == 1


def test_both_clis_share_the_set_option_help():
    import argparse

    from vbp_live.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {name: next(a for a in sub.choices[name]._actions if "--set" in a.option_strings)
             for name in ("prep", "train")}
    assert helps["prep"].help == helps["train"].help == config.SET_HELP
    assert helps["prep"].dest == helps["train"].dest == "sets"


def test_train_device_is_auto_by_default_and_checked():
    assert load_train(None, ["data.path=d"]).train.device == "auto"
    assert load_train(None, ["data.path=d", "train.device=cuda:1"]).train.device == "cuda:1"
    msg = _error(load_train, None, ["data.path=d", "train.device=gpu"])
    assert msg == "--set train.device=gpu: train.device must be auto, cpu, cuda or cuda:N; got 'gpu'"
    msg = _error(load_train, None, ["data.path=d", Override("train.device", "tpu", "--device tpu")])
    assert msg.startswith("--device tpu: train.device must be")


def test_manifest_and_yaml_roundtrip_through_to_dict(tmp_path):
    cfg = load_prep(None, ["camera.topics=[/a, /b]", "split.test_count=3"])
    again = load_prep(_write(tmp_path, yaml.safe_dump(cfg.to_dict())))
    assert again == cfg and again.camera.topics == ("/a", "/b")


def test_nested_aliases_are_refused_before_they_expand(tmp_path):
    """A few hundred bytes of nested aliases would expand to billions of values: refused at once."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    p = tmp_path / "laughs.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert p.stat().st_size < 1000
    with pytest.raises(ConfigError, match=r"laughs.yaml: expands to more than 100000 values"):
        config.load(Inner, p)


def test_recursive_and_deep_yaml_are_clear_errors(tmp_path):
    p = tmp_path / "loop.yaml"
    p.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"loop.yaml: expands to more than"):
        config.load(Inner, p)
    p = tmp_path / "deep.yaml"
    p.write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.yaml: nested too deeply"):
        config.load(Inner, p)


def test_anchors_in_a_normal_config_still_work(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("base: &b 3\nrate: 0.5\ncount: *b\n")
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        config.load(Inner, p)  # the alias itself is fine; the unknown key is what fails
