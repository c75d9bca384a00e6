"""The declared dependency ranges, the CI version sets and transformers' own PEFT integration agree."""

import tomllib
from pathlib import Path

import peft
import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

import testing_common as common

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RANGED = ["torch", "transformers", "peft", "accelerate", "datasets", "evaluate", "safetensors", "trl"]


def declared() -> dict:
    requirements = PYPROJECT["dependencies"] + [r for extra in PYPROJECT["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name: Requirement(r).specifier for r in requirements if Requirement(r).name in RANGED}


def pins(name: str) -> dict:
    lines = (REPO / ".ci" / f"{name}.txt").read_text().splitlines()
    return {Requirement(line).name: Version(str(Requirement(line).specifier).removeprefix("==")) for line in lines
            if line and not line.startswith("#")}  # fmt: skip


def lower_bound(specifier) -> Version:
    return next(Version(s.version) for s in specifier if s.operator == ">=")


def test_ci_version_sets_are_the_ends_of_the_declared_ranges():
    ranges, lowest, highest = declared(), pins("lowest"), pins("highest")
    assert set(lowest) == set(highest) == set(RANGED) == set(ranges)
    for name, specifier in ranges.items():
        assert lowest[name] == lower_bound(specifier), name
        assert highest[name] in specifier and lowest[name] <= highest[name], name


def test_transformers_range_stops_where_its_peft_integration_needs_an_unreleased_peft():
    # transformers >= 5.24's integration requires peft >= 0.22, which the plugin cannot have (PEFT internals).
    assert not declared()["transformers"].contains("5.24.0") and declared()["peft"].contains(peft.__version__)


def test_transformers_own_peft_integration_works_with_the_pinned_peft():
    """Issue #11 (6): `model.add_adapter(LoraConfig)` raised 'The version of PEFT you are using is not compatible'."""
    model, _ = common.tiny_model("llama")
    model.add_adapter(peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = common.inference_batch("llama")
    with torch.no_grad():
        adapted = model(**batch).logits
        model.disable_adapters()
        plain = model(**batch).logits
    assert not torch.allclose(adapted, plain)  # the LoRA layers are really in the forward


@pytest.mark.parametrize("name", ["torch", "transformers", "peft", "accelerate", "datasets", "trl"])
def test_installed_versions_are_in_the_declared_ranges(name):
    from importlib.metadata import version

    installed = Version(version(name)).base_version  # 2.13.0+cpu -> 2.13.0
    assert declared()[name].contains(installed), (name, installed, str(declared()[name]))
