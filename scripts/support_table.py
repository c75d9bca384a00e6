"""Render the README's support table from the conformance matrix the tests run.

    python scripts/support_table.py           # print the table
    python scripts/support_table.py --write   # replace it in README.md (between the markers)
    python scripts/support_table.py --check   # exit 1 if README.md is out of date (a test runs this)

The table is a view of tests/conformance_cases.py: every cell it shows is a test in
tests/test_conformance.py that asserts numbers, or an expected refusal whose error the test checks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conformance_cases import CONFIGS, MODELS, PATHS, expected_refusal, notes_for  # noqa: E402

START, END = "<!-- support-table:start (scripts/support_table.py --write) -->", "<!-- support-table:end -->"
TASK_TYPE_NAMES = {"CAUSAL_LM": "causal", "SEQ_2_SEQ_LM": "seq2seq", "SEQ_CLS": "seq-cls"}


def _cell(case, path, footnotes: dict) -> str:
    models = [model for model, task_type in MODELS.items() if task_type in path.task_types]
    by_model = {model: expected_refusal(case, model, path.name) for model in models}
    refusals = set(by_model.values()) - {None}
    notes = {note.text for model in models for note in notes_for(case, model, path.name)}
    marks = []
    for text in sorted({r.why for r in refusals}) + sorted(notes):
        marks.append(footnotes.setdefault(text, len(footnotes) + 1))
    refused = [model for model, refusal in by_model.items() if refusal is not None]
    symbol = "works" if not refused else "refused" if len(refused) == len(models) else "partly"  # partly: some models refuse
    return symbol + "".join(f" [{m}]" for m in sorted(marks))


def render() -> str:
    footnotes: dict[str, int] = {}
    header = "| path (models) | " + " | ".join(f"`{case.name}`" for case in CONFIGS) + " |"
    lines = [header, "|---|" + "---|" * len(CONFIGS)]
    for path in PATHS:
        kinds = "all" if len(path.task_types) == 3 else ", ".join(TASK_TYPE_NAMES[t] for t in path.task_types)
        cells = " | ".join(_cell(case, path, footnotes) for case in CONFIGS)
        lines.append(f"| {path.label} ({kinds}) | {cells} |")
    lines.append("")
    lines += [f"[{number}] {text}" for text, number in footnotes.items()]
    lines += ["", "Configurations: " + "; ".join(f"`{case.name}` = {case.label}" for case in CONFIGS) + ". "
              f"Models: tiny {', '.join(MODELS)} (causal: gpt2, llama, gemma3; seq2seq: t5; seq-cls: bert)."]  # fmt: skip
    return "\n".join(lines)


def readme_with_table(readme: str, table: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} ... {END} markers.")
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{table}\n{END}{after}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    table = render()
    readme_path = REPO / "README.md"
    if args.write:
        readme_path.write_text(readme_with_table(readme_path.read_text(), table))
    elif args.check:
        current = readme_path.read_text()
        if readme_with_table(current, table) != current:
            print("README.md's support table is out of date: run python scripts/support_table.py --write", file=sys.stderr)
            return 1
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
