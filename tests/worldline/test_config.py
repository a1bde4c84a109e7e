from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from worldline.config import ConfigError, from_dict, load_config, save_config


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Train:
    name: str
    steps: int = 100
    device: Literal["cpu", "cuda"] = "cpu"
    views: list[str] = field(default_factory=lambda: ["front"])
    out: Path | None = None
    optim: Optim = field(default_factory=Optim)


def test_load_valid_preset(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("name: demo\nsteps: 5\noptim:\n  lr: 1\n  betas: [0.5, 0.6]\nout: runs/x\n")
    cfg = load_config(Train, p)
    assert cfg == Train(name="demo", steps=5, optim=Optim(lr=1.0, betas=(0.5, 0.6)), out=Path("runs/x"))
    assert isinstance(cfg.optim.lr, float)
    save_config(cfg, tmp_path / "back.yaml")
    assert load_config(Train, tmp_path / "back.yaml") == cfg


def test_typo_in_key_names_key_and_file(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("name: demo\nstpes: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'stpes' in .*exp.yaml \(did you mean 'steps'\?\)"):
        load_config(Train, p)
    p.write_text("name: demo\noptim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr' in .*exp.yaml"):
        load_config(Train, p)


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"name": "a", "steps": "5"}, r"'steps'.*expected an integer"),
        ({"name": "a", "steps": True}, r"'steps'.*expected an integer"),
        ({"name": "a", "device": "tpu"}, r"'device'.*one of \['cpu', 'cuda'\]"),
        ({"name": "a", "views": "front"}, r"'views'.*expected a list"),
        ({"name": "a", "optim": {"betas": [1.0]}}, r"'optim.betas'.*expected 2 items"),
        ({"steps": 3}, r"missing required key 'name'"),
        ({"name": "a", "out": 5}, r"'out' in x.yaml: value 5 matches none of"),
    ],
)
def test_mistyped_values_are_errors(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        from_dict(Train, data, source="x.yaml")


@dataclass
class Mixed:
    seed: int | str | None = None


@pytest.mark.parametrize("value", [None, 3, "auto"])
def test_union_takes_the_first_member_that_accepts(value):
    got = from_dict(Mixed, {"seed": value}).seed
    assert got == value and type(got) is type(value)
    with pytest.raises(ConfigError, match=r"'seed': value 1.5 matches none of"):
        from_dict(Mixed, {"seed": 1.5})


def test_invalid_yaml_is_one_line_naming_file_and_position(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("a: [1, 2\nb: x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(Train, p)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{p}: invalid YAML at line 2 column 2")


def test_load_preset_by_name_and_path(tmp_path):
    from dataclasses import dataclass

    from worldline.config import load_preset

    @dataclass
    class P:
        steps: int = 1

    (tmp_path / "small.yaml").write_text("steps: 7\n")
    assert load_preset(P, "small", tmp_path).steps == 7
    assert load_preset(P, tmp_path / "small.yaml", "/nonexistent").steps == 7
    with pytest.raises(FileNotFoundError, match=r"presets: \['small'\]"):
        load_preset(P, "large", tmp_path)
