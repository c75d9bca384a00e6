"""What a run reads besides its config, as digests: the model's files, a local task's data files and the saved
prompts it starts from or mixes (a mixture's `source_prompts`, a deep prompt's `init_prompt`, a projected run's
`source_adapter` and `projection`).

A config names folders and paths, not what they hold; the files there can change between a run and its resume,
or between a run and `compare.py` reusing its result (a model folder saved again with other weights, an edited
CSV, a source prompt retrained). A run records these digests in its checkpoint and its `results.json`; a resume
is refused and a finished run is not reused when they differ. Embedded tasks (part of this checkout) and Hub ids
have no local files to read: their digest is None. Runs and checkpoints made before a digest existed lack it and
are taken as they were.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from .data.tasks import EMBEDDED_TASKS
from .recipe_support import resolve_model_folder


def run_inputs(config) -> dict:
    """{"model": digest of the model folder's files, "data": digest of a local task's file(s), and one entry per saved
    prompt the config reads, named as its config key (e.g. "source_prompts[1]")}; None where there are no local files."""
    model = resolve_model_folder(config.model)
    data = None if config.task in EMBEDDED_TASKS else config.task
    return {"model": _local_digest(model), "data": _local_digest(data),
            **{key: _local_digest(path) for key, path in _prompt_paths(config).items()}}  # fmt: skip


def input_changes(saved: dict, current: dict, config) -> list[str]:
    """What changed since `saved` was recorded, in words naming the config value ([] if nothing did). A digest that
    `saved` lacks (recorded before it existed) is not compared."""
    what = {"model": f"the model files at model={config.model!r}", "data": f"the data at task={config.task!r}",
            **{key: f"the adapter at {key}={path!r}" for key, path in _prompt_paths(config).items()}}  # fmt: skip
    return [what[key] for key in what if key in saved and saved[key] != current.get(key)]


def _prompt_paths(config) -> dict[str, str]:
    """The saved prompts (adapter or projection folders, or Hub ids) a config reads, by config key."""
    paths = {f"source_prompts[{index}]": path for index, path in enumerate(config.source_prompts or [])}
    for key in ("init_prompt", "source_adapter", "projection"):
        if getattr(config, key, None):
            paths[key] = getattr(config, key)
    return {key: os.fspath(path) for key, path in paths.items()}


def _local_digest(path) -> str | None:
    if path is None or not os.path.exists(path):
        return None
    root = Path(path).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    stamp = tuple((str(p.relative_to(root) if root.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest_of(str(root), stamp)


@functools.lru_cache(maxsize=64)
def _digest_of(root: str, stamp: tuple) -> str:
    """sha256 over each file's relative name, size and bytes (`stamp` only keys the cache: a file rewritten
    since gets a new size or modification time)."""
    digest = hashlib.sha256()
    base = Path(root)
    for name, size, _ in stamp:
        digest.update(f"{name}\0{size}\0".encode())
        with open(base / name if base.is_dir() else base, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
