"""Two rooms (the plugin apart from its bench) and a plugin import graph without cycles or PEFT outside the seam."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("checkout_tree")  # writes a probe module into the package (see tests/test_autoload.py)


def test_importing_the_plugin_loads_nothing_of_the_bench():
    code = "import sys, peft_softprompt_ext; print(sorted(m for m in sys.modules if m.split('.')[0] == 'softprompt_bench'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_import_rules_hold():
    """scripts/import_graph.py: no bench import in the plugin, the bench on the public API only, recipes and
    benchmarks not importing each other, no import cycle, PEFT only in _peft_compat.py."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "import_graph.py")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_catch_a_violation(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "scripts"))
    import import_graph

    assert import_graph.cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    offender = REPO / "peft_softprompt_ext" / "_layout_probe.py"
    serving_offender = REPO / "softprompt_serve" / "_layout_probe.py"
    offender.write_text("import softprompt_bench\n\ndef f(model):\n    return model.peft_config\n")
    serving_offender.write_text("def f():\n    from peft_softprompt_ext import fingerprint\n")
    try:
        problems = import_graph.violations()
    finally:
        offender.unlink()
        serving_offender.unlink()
    assert any("rule 1" in p and "_layout_probe" in p for p in problems)
    assert any("rule 5" in p and ".peft_config" in p for p in problems)
    assert any("rule 6" in p and "softprompt_serve._layout_probe" in p for p in problems)
