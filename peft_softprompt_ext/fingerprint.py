"""Base-model fingerprints: a soft prompt only works on the exact model it was trained on.

A fingerprint is saved in every plugin adapter config (`base_model_fingerprint`): architecture,
width, vocabulary size and a digest of the input-embedding matrix. Loading a prompt into a base
model with another fingerprint raises a ValueError saying what differs, unless the caller passes
`allow_base_model_mismatch=True` (e.g. after moving a prompt across models by projection).
"""

from __future__ import annotations

import hashlib

import torch

# Rows hashed: every k-th row so that at most this many are read (a 262k x 640 matrix hashes in
# milliseconds); values are rounded to bfloat16 first, so a bf16 copy of an fp32 model matches.
_MAX_HASHED_ROWS = 4096


@torch.no_grad()
def embedding_digest(weight: torch.Tensor) -> str:
    stride = max(1, weight.shape[0] // _MAX_HASHED_ROWS)
    sample = weight[::stride].detach().to(torch.bfloat16).to(torch.float32).cpu().contiguous()
    digest = hashlib.sha256(f"{tuple(weight.shape)}|{stride}|".encode())
    digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def base_model_fingerprint(model) -> dict:
    """The fingerprint of a transformers model (or of a PeftModel's base model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embeddings = base.get_input_embeddings().weight
    config = base.config
    return {
        "architecture": (getattr(config, "architectures", None) or [type(base).__name__])[0],
        "model_type": getattr(config, "model_type", None),
        "hidden_size": int(embeddings.shape[1]),
        "vocab_size": int(embeddings.shape[0]),
        "embedding_digest": embedding_digest(embeddings),
    }


# Where a plain PROMPT_TUNING copy exported by the plugin carries the fingerprint: its safetensors
# metadata (JSON text), which plain PEFT ignores and the plugin's readers check.
FINGERPRINT_METADATA_KEY = "peft_softprompt_ext.base_model_fingerprint"
FINGERPRINT_KEYS = ("architecture", "model_type", "hidden_size", "vocab_size", "embedding_digest")


def fingerprint_problem(saved) -> str | None:
    """Why `saved` is not a usable fingerprint (None if it is): every key, each of the right type."""
    if not isinstance(saved, dict):
        return f"it is {saved!r} ({type(saved).__name__}), not a fingerprint dict"
    missing = [key for key in FINGERPRINT_KEYS if key not in saved]
    if missing:
        return f"it lacks {missing}"
    if not all(isinstance(saved[key], int) and not isinstance(saved[key], bool) for key in ("hidden_size", "vocab_size")):
        return "hidden_size and vocab_size must be integers"
    if not (isinstance(saved["embedding_digest"], str) and saved["embedding_digest"].startswith("sha256:")):
        return f"embedding_digest {saved['embedding_digest']!r} is not a 'sha256:...' digest"
    return None


def fingerprint_differences(saved: dict, actual: dict) -> list[str]:
    """Human-readable differences between a saved fingerprint and a model's ('' if none)."""
    differences = []
    for key in FINGERPRINT_KEYS:
        if saved.get(key) != actual.get(key):
            differences.append(f"{key}: adapter {saved.get(key)!r} vs base model {actual.get(key)!r}")
    return differences


def check_fingerprint(saved, model, what: str, allow_mismatch: bool = False) -> None:
    """See `check_fingerprint_against`; `model` is the base model (or a PeftModel over it)."""
    if not allow_mismatch:
        check_fingerprint_against(saved, base_model_fingerprint(model), what)


def check_fingerprint_against(saved, actual: dict, what: str, allow_mismatch: bool = False) -> None:
    """Raise ValueError if `saved` is not a valid fingerprint equal to `actual` (naming the field and what differs).

    A missing, null, empty, partial or malformed `base_model_fingerprint` is refused like a wrong one:
    a prompt must not load into another model because a field was removed. `allow_mismatch` skips it.
    """
    if allow_mismatch:
        return
    problem = fingerprint_problem(saved)
    if problem is not None:
        raise ValueError(
            f"{what} has no valid base_model_fingerprint ({problem}), so it cannot be checked against this base model. "
            "Pass allow_base_model_mismatch=True if you know the prompt fits this model."
        )
    differences = fingerprint_differences(saved, actual)
    if differences:
        raise ValueError(
            f"{what} was trained on another base model: " + "; ".join(differences) + ". Load it into the model it "
            "was trained on, or pass allow_base_model_mismatch=True if you know the prompt fits (e.g. after projection)."
        )
