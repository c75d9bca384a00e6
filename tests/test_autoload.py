"""An installed plugin registers itself when PEFT is imported (peft_softprompt_ext_autoload.py).

Issue #11 (7): loading a plugin adapter in a process that never imported the plugin failed with a
bare `KeyError: 'VOCAB_SAMPLED_PROMPT_TUNING'`. The wheel ships a `.pth` file that installs an
import hook; these tests build the wheel and run its `.pth` the way site-packages does.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import testing_common as common

# One xdist worker runs the tests that read the package tree while another test may write into it
# (tests/test_layout.py adds and removes a probe module in the package).
pytestmark = pytest.mark.xdist_group("checkout_tree")

REPO = Path(__file__).resolve().parents[1]
# What a wheel is built from: the source, never the checkout's venvs, runs or earlier build output.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "runs", "__pycache__", "_layout_probe.py")
PTH = "peft_softprompt_ext-autoload.pth"

LOADER = """
import site, sys, torch
site.addsitedir(sys.argv[1])  # processes the .pth exactly as site-packages does at start-up
from peft import PeftModel   # plain PEFT code: no `import peft_softprompt_ext` anywhere
from transformers import AutoModelForCausalLM
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sys.argv[2]), sys.argv[3]).eval()
with torch.no_grad():
    logits = model(**torch.load(sys.argv[4])).logits
print("DIFF", (logits - torch.load(sys.argv[5])).abs().max().item(), type(model.peft_config["default"]).__name__)
"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    """A folder holding the .pth and hook module exactly as the built wheel has them."""
    # Built from a private copy of the source: `pip wheel` writes build/ and *.egg-info into the tree
    # it builds, so building the checkout itself let a stale or concurrent build/ decide the wheel's
    # contents (CI once got a wheel without the hook from the checkout).
    source = tmp_path_factory.mktemp("source") / "tree"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    wheels = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)],
                           capture_output=True, text=True, cwd=wheels)  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    (wheel,) = wheels.glob("peft_softprompt_ext-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        missing = {PTH, "peft_softprompt_ext_autoload.py"} - set(names)
        assert not missing, f"the wheel lacks {sorted(missing)}; it holds {names}; pip said:\n{built.stdout[-3000:]}{built.stderr[-3000:]}"
        archive.extract(PTH, site)
        archive.extract("peft_softprompt_ext_autoload.py", site)
    return site


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    peft_model, _ = common.make_peft_model("gpt2", "vocab_top_frequent")
    common.tiny_model("gpt2")[0].save_pretrained(root / "base")
    peft_model.save_pretrained(root / "adapter")
    batch = common.inference_batch("gpt2")
    torch.save(batch, root / "batch.pt")
    torch.save(common.forward_logits(peft_model, batch), root / "expected.pt")
    return root


def run_loader(site_dir, saved, **env):
    arguments = [str(site_dir), str(saved / "base"), str(saved / "adapter"), str(saved / "batch.pt"), str(saved / "expected.pt")]
    environment = dict(os.environ, HF_HUB_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-c", LOADER, *arguments], capture_output=True, text=True, timeout=300, env=environment)


def test_an_installed_plugin_loads_its_adapters_in_plain_peft_code(site_dir, saved):
    result = run_loader(site_dir, saved)
    assert result.returncode == 0, result.stderr[-3000:]
    difference, config_class = result.stdout.split("DIFF")[-1].split()
    assert float(difference) <= 1e-5 and config_class == "VocabSampledPromptTuningConfig"


def test_the_switch_turns_the_hook_off(site_dir, saved):
    result = run_loader(site_dir, saved, PEFT_SOFTPROMPT_EXT_AUTOLOAD="0")
    assert result.returncode != 0 and "VOCAB_SAMPLED_PROMPT_TUNING" in result.stderr  # PEFT's own KeyError again


def test_a_plugin_that_cannot_load_leaves_peft_importable(site_dir):
    code = "import site, sys; site.addsitedir(sys.argv[1]); import peft.mapping; print('PEFT', peft.__version__)"
    blocked = f"import sys; sys.modules['peft_softprompt_ext'] = None\n{code}"  # the plugin's import fails
    result = subprocess.run([sys.executable, "-c", blocked, str(site_dir)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "PEFT" in result.stdout, result.stderr[-2000:]
    assert "peft_softprompt_ext is installed but was not registered with PEFT" in result.stderr
