"""Report files (comparison.md / .json / .png, projection_results.*, prompt_length.*): each written all or nothing.

A recipe killed while it writes its report leaves the previous report, never half of one (the plugin's
`atomic_file_write`: a temporary file beside the target, then one rename)."""

from __future__ import annotations

import json
from pathlib import Path

from peft_softprompt_ext import atomic_file_write


def write_text(path: Path, text: str) -> None:
    with atomic_file_write(path) as handle:
        handle.write(text)


def write_json(path: Path, value) -> None:
    write_text(path, json.dumps(value, indent=2))


def save_figure(figure, path: Path) -> None:
    with atomic_file_write(path, "wb", encoding=None) as handle:
        figure.savefig(handle, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
