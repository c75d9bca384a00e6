"""Tests run offline: no Hub calls, whatever the environment says (set before huggingface_hub loads)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402

import pytest  # noqa: E402

_commit_listeners = []  # one audit hook for the whole session (hooks cannot be removed); tests subscribe to it


def _on_audit_event(event, args):
    if event == "peft_softprompt_ext.commit":
        for listener in list(_commit_listeners):
            listener(args)


sys.addaudithook(_on_audit_event)


@pytest.fixture
def commit_events():
    """The `peft_softprompt_ext.commit` audit events (tuples: step, path, ...) raised while the test runs."""
    events = []
    _commit_listeners.append(events.append)
    yield events
    _commit_listeners.remove(events.append)
