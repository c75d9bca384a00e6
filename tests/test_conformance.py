"""The conformance matrix: every plugin configuration x tiny model x public path (see conformance_cases.py)."""

import pytest

import testing_common as common
from conformance_cases import all_cells, expected_refusal, is_slow
from conformance_checks import CHECKS


def _param(cell):
    marks = [pytest.mark.slow] if is_slow(cell) else []
    return pytest.param(cell, id=cell.id, marks=marks)


@pytest.mark.parametrize("cell", [_param(cell) for cell in all_cells()])
def test_cell(cell, tmp_path):
    if cell.case.deep and cell.model == "t5" and not common.T5_ROUTES_ATTENTION:
        pytest.skip(common.NO_DEEP_T5 + " (tests/test_deep_prompt.py checks the refusal)")
    refusal = expected_refusal(cell.case, cell.model, cell.path)
    if refusal is None:
        CHECKS[cell.path](cell, tmp_path)
        return
    with pytest.raises(refusal.error, match=refusal.match):
        CHECKS[cell.path](cell, tmp_path)


def test_every_path_has_a_check():
    from conformance_cases import PATHS

    assert {path.name for path in PATHS} == set(CHECKS)


def test_readme_support_table_is_generated_from_this_matrix():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "support_table.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
