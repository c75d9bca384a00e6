"""Base-model fingerprints: a soft prompt only works on the exact model it was trained on.

A fingerprint is saved in every plugin adapter config (`base_model_fingerprint`): architecture,
width, vocabulary size and digests of the input-embedding matrix: of every row
(`embedding_digest_all_rows`, since 2026-12-07: before, only the sampled rows of `embedding_digest` were
hashed, so a model with 4,096 of 8,192 rows changed passed) and of at most 4,096 rows spread over it
(`embedding_digest`, which fingerprints saved before compare). It covers the input embeddings only:
a model with the same embeddings and other transformer blocks (a merged LoRA, a fine-tune that froze them)
passes, and so does a file whose fingerprint was edited to the model's (it guards against mistakes). Loading a prompt into a base
model with another fingerprint raises a ValueError saying what differs, unless the caller passes
`allow_base_model_mismatch=True` (e.g. after moving a prompt across models by projection).

The same model held in another dtype is the same model: the digest rounds values to bfloat16, so
float32 and bfloat16 copies match, but a float16 copy rounds differently (fp32 -> fp16 -> bf16 is
not fp32 -> bf16 for about 6% of values). So a fingerprint also carries digests of the values rounded
to float16 (`embedding_digest_float16`, `embedding_digest_all_rows_float16`): a float16 copy matches its float32 original exactly there.
Every row's digests round float64 values through float32, so a float64 model and its float32 copy
match there too. Between a bfloat16 and a float16 copy (neither holds what the other was rounded from), and
between float64 and a 16-bit copy (or float64 in sampled-row digests), no digest can match: there the fingerprint's embedding dtype and `_SAMPLE_SIZE`
sampled values, kept exactly, decide (every sampled value within what casting between the two dtypes
moves a value), a weaker check. Fingerprints saved before the float16 digest take that sampled
check for every pair of dtypes, and those saved before the dtype and sample check the digest alone.
"""

from __future__ import annotations

# No import from the package: softprompt_serve loads this file on its own (serving runs without the plugin).
import contextlib
import contextvars
import copy
import hashlib
import math

import torch

# Rows hashed: every k-th row so that at most this many are read (a 262k x 640 matrix hashes in
# milliseconds); values are rounded to bfloat16 first, so a bf16 copy of an fp32 model matches.
_MAX_HASHED_ROWS = 4096
_CHUNK_ROWS = 8192  # rows cast and hashed at a time by `all_rows_digest` (no full-size copy of a large matrix)
_SAMPLE_SIZE = 32  # values kept exactly, spread over the hashed rows and their columns
# Unit roundoff of each dtype the embeddings may be held in: a cast into it moves a value by at most
# this fraction of itself (plus half the smallest subnormal step, `_SUBNORMAL_STEP / 2`, for float16).
_UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
_SUBNORMAL_STEP = {"float16": 2.0**-24}


def _hashed_rows(weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    stride = max(1, weight.shape[0] // _MAX_HASHED_ROWS)
    return weight[::stride].detach(), stride


@torch.no_grad()
def embedding_digest(weight: torch.Tensor, rounding: torch.dtype = torch.bfloat16) -> str:
    """sha256 of the hashed rows rounded to `rounding` (bfloat16: the `embedding_digest`; float16: `embedding_digest_float16`)."""
    rows, stride = _hashed_rows(weight)
    sample = rows.to(rounding).to(torch.float32).cpu().contiguous()
    digest = hashlib.sha256(f"{tuple(weight.shape)}|{stride}|".encode())
    digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


@torch.no_grad()
def all_rows_digest(weight: torch.Tensor, rounding: torch.dtype = torch.bfloat16) -> str:
    """sha256 of every row rounded to `rounding` (16-bit patterns): `embedding_digest_all_rows` (bfloat16) and
    `embedding_digest_all_rows_float16`. float64 values are rounded through float32, so a float32 copy matches."""
    digest = hashlib.sha256(f"{tuple(weight.shape)}|all rows|{str(rounding).removeprefix('torch.')}|".encode())
    for start in range(0, weight.shape[0], _CHUNK_ROWS):
        chunk = weight[start : start + _CHUNK_ROWS].detach()
        chunk = chunk.to(torch.float32 if chunk.dtype == torch.float64 else chunk.dtype).to(rounding).cpu().contiguous()
        digest.update(memoryview(chunk.view(torch.int16).numpy()))
    return "sha256:" + digest.hexdigest()


@torch.no_grad()
def embedding_sample(weight: torch.Tensor) -> list[float]:
    """`_SAMPLE_SIZE` values of the hashed rows, as they are held (fixed positions for a shape)."""
    flat = _hashed_rows(weight)[0].reshape(-1)
    positions = torch.linspace(0, flat.numel() - 1, _SAMPLE_SIZE, dtype=torch.float64).round().long()
    return [float(value) for value in flat[positions.to(flat.device)].to(torch.float64).cpu()]


# Fingerprints computed in a `computed_once()` block: {key: (the embedding matrix, its fingerprint)}; None outside one.
_COMPUTED: contextvars.ContextVar = contextvars.ContextVar("peft_softprompt_ext_fingerprints_computed", default=None)


@contextlib.contextmanager
def computed_once():
    """Within the block, a model's fingerprint is computed once: a load checks the same base model several times (its
    saved config, then PEFT's build of it), and each fingerprint hashes every embedding row (~1.5 s for a 262k x 2,304
    float32 table). An embedding matrix replaced (another tensor or storage) or changed in place through autograd's
    view of it (its version counter) is hashed again; an edit through `.data` or a fused optimizer step bumps no
    counter and is not seen, so the block is for one load or build, in which nothing changes the embeddings. A block
    inside another shares the outer one's."""
    if _COMPUTED.get() is not None:
        yield
        return
    token = _COMPUTED.set({})
    try:
        yield
    finally:
        _COMPUTED.reset(token)


def embedding_fingerprint(architecture, model_type, weight: torch.Tensor) -> dict:
    """The fingerprint of a model with this architecture name, model type and input-embedding matrix."""
    computed = _COMPUTED.get()
    if computed is None:
        return _embedding_fingerprint(architecture, model_type, weight)
    key = (architecture, model_type, id(weight), weight._version, weight.data_ptr(), weight.dtype, weight.device, tuple(weight.shape))
    if key not in computed or computed[key][0] is not weight:
        computed[key] = (weight, _embedding_fingerprint(architecture, model_type, weight))
    return copy.deepcopy(computed[key][1])  # (a caller may edit its copy)


def _embedding_fingerprint(architecture, model_type, weight: torch.Tensor) -> dict:
    return {
        "architecture": architecture,
        "model_type": model_type,
        "hidden_size": int(weight.shape[1]),
        "vocab_size": int(weight.shape[0]),
        "embedding_digest": embedding_digest(weight),
        "embedding_digest_float16": embedding_digest(weight, torch.float16),
        ALL_ROWS_KEYS[0]: all_rows_digest(weight),
        ALL_ROWS_KEYS[1]: all_rows_digest(weight, torch.float16),
        "embedding_dtype": str(weight.dtype).removeprefix("torch."),
        "embedding_sample": embedding_sample(weight),
    }


def _as_is(module, model):
    return module


# `module` of `model` under the wrappers in which the prompt trains a copy of it (PEFT's `modules_to_save`): the plugin
# sets `_peft_compat.own_module` here (`use_own_module`); serving, which loads this file on its own, wraps nothing.
_own_module = [_as_is]


def use_own_module(function) -> None:
    _own_module[0] = function


def base_model_fingerprint(model) -> dict:
    """The fingerprint of a transformers model (or of a PeftModel's base model): its input embedding, not a copy the
    prompt trains beside it (found 2026-12-07 by a review: a save after training the embedding in the prompt's
    `modules_to_save` hashed the trained copy, and the base model refused the save); a LoRA model's copy under the
    prompt is part of the model the prompt sits on (a second review)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    architecture = (getattr(config, "architectures", None) or [type(base).__name__])[0]
    embeddings = _own_module[0](base.get_input_embeddings(), model)
    weight = _values_of(embeddings)
    if weight is None:
        refuse_embeddings_without_values(base, embeddings)
    return embedding_fingerprint(architecture, getattr(config, "model_type", None), weight)


def _values_of(embeddings) -> torch.Tensor | None:
    """The embeddings' weight with its values: where accelerate offloads them (`cpu_offload`, a disk offload: on the
    meta device between calls) the copy its hook keeps, so that a prompt built first and offloaded after still saves
    (found 2026-12-07: a bare "Cannot copy out of meta tensor" at the save); None where there is none."""
    weight = getattr(embeddings, "weight", None)
    if not isinstance(weight, torch.Tensor) or not weight.is_meta:
        return weight
    hook = getattr(embeddings, "_hf_hook", None)
    kept = getattr(hook, "weights_map", None) if getattr(hook, "offload", False) else None
    try:
        return None if kept is None else kept["weight"]
    except KeyError:
        return None


def refuse_embeddings_without_values(model, embeddings) -> None:
    """Building or loading a prompt reads the input embeddings (this fingerprint, a prompt's start, the build's checks):
    on the meta device they have no values (found 2026-12-07 by a probe and a review: a bare "Cannot copy out of meta
    tensor" under accelerate's `init_empty_weights`, or after `cpu_offload`, from get_peft_model, from_pretrained and
    load_adapter alike; plain PEFT builds, then fails at its first forward). A prompt built first and offloaded after
    saves (`_values_of`)."""
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_meta:
        raise ValueError(f"{type(model).__name__}'s input embeddings are on the meta device (no values: built under init_empty_weights, "
                         "or offloaded by accelerate), and building or loading a prompt reads them. Load the weights first; to "
                         "offload, build or load the prompt first, then offload (get_peft_model or PeftModel.from_pretrained, then "
                         "cpu_offload(peft_model.get_base_model())).")  # fmt: skip


# Where a plain PROMPT_TUNING copy exported by the plugin carries the fingerprint: its safetensors
# metadata (JSON text), which plain PEFT ignores and the plugin's readers check.
FINGERPRINT_METADATA_KEY = "peft_softprompt_ext.base_model_fingerprint"
FINGERPRINT_KEYS = ("architecture", "model_type", "hidden_size", "vocab_size", "embedding_digest")
DTYPE_KEYS = ("embedding_dtype", "embedding_sample")  # both or neither (fingerprints saved before them have neither)
FLOAT16_DIGEST_KEY = "embedding_digest_float16"  # with the dtype keys only (fingerprints saved before it have none)
ALL_ROWS_KEYS = ("embedding_digest_all_rows", "embedding_digest_all_rows_float16")  # both or neither (saved before: neither)
_SAMPLED_ROWS_KEYS = ("embedding_digest", FLOAT16_DIGEST_KEY)
# dtype pairs where neither copy can hold what the other was rounded from: only the sampled values can compare them
_SAMPLED_ONLY = ({"bfloat16", "float16"},)


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
    return _dtype_fields_problem(saved)


def _dtype_fields_problem(saved: dict) -> str | None:
    present = [key for key in DTYPE_KEYS if key in saved]
    if not present:
        return None
    if len(present) != len(DTYPE_KEYS):
        return f"it has {present} without {[key for key in DTYPE_KEYS if key not in saved]}"
    if saved["embedding_dtype"] not in _UNIT_ROUNDOFF:
        return f"embedding_dtype {saved['embedding_dtype']!r} is not one of {sorted(_UNIT_ROUNDOFF)}"
    sample = saved["embedding_sample"]
    if not (isinstance(sample, list) and len(sample) == _SAMPLE_SIZE
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in sample)):  # fmt: skip
        return f"embedding_sample must be a list of {_SAMPLE_SIZE} finite numbers, got {sample!r}"
    for key in (FLOAT16_DIGEST_KEY, *ALL_ROWS_KEYS):
        digest = saved.get(key)
        if key in saved and not (isinstance(digest, str) and digest.startswith("sha256:")):
            return f"{key} {digest!r} is not a 'sha256:...' digest"
    if (ALL_ROWS_KEYS[0] in saved) != (ALL_ROWS_KEYS[1] in saved):
        return f"it has one of {list(ALL_ROWS_KEYS)} without the other"
    return None


def _embeddings_differ(saved: dict, actual: dict) -> str | None:
    """What differs between two fingerprints' embeddings (None if nothing): every row's digests where both have them,
    else those of the sampled rows; one model held in two dtypes is the same (see the module docstring)."""
    keys = ALL_ROWS_KEYS if all(key in saved and key in actual for key in ALL_ROWS_KEYS) else _SAMPLED_ROWS_KEYS
    if saved.get(keys[0]) == actual.get(keys[0]) or _same_values_in_another_dtype(saved, actual, keys[1], keys == ALL_ROWS_KEYS):
        return None
    return f"{keys[0]}: adapter {saved.get(keys[0])!r} vs base model {actual.get(keys[0])!r}"


def _same_values_in_another_dtype(saved: dict, actual: dict, float16_key: str = FLOAT16_DIGEST_KEY, through_float32: bool = False) -> bool:
    """Whether two fingerprints with different digests are one model held in two dtypes (`float16_key`: the digest of
    the values rounded to float16 that compares them; `through_float32`: digests that round float64 through float32,
    so that a float64 model and its float32 copy had to match)."""
    if any(key not in saved or key not in actual for key in DTYPE_KEYS) or _dtype_fields_problem(saved) is not None:
        return False  # a fingerprint saved before the dtype fields: the digest alone decides
    dtypes = (saved["embedding_dtype"], actual["embedding_dtype"])
    if dtypes[0] == dtypes[1] or dtypes[1] not in _UNIT_ROUNDOFF:
        return False  # the same dtype and another digest: other values
    if float16_key in saved and float16_key in actual:
        if saved[float16_key] == actual[float16_key]:
            return True  # a float16 copy of the other side's values (or the values it was rounded from)
        if set(dtypes) not in _SAMPLED_ONLY and ("float64" not in dtypes or (through_float32 and "float32" in dtypes)):
            return False  # one side holds the values the other was rounded from: a digest had to match
    relative = sum(_UNIT_ROUNDOFF[dtype] for dtype in dtypes) * (1 + 2.0**-7)  # slack: measured against the larger value
    absolute = sum(_SUBNORMAL_STEP.get(dtype, 0.0) for dtype in dtypes) / 2
    pairs = zip(saved["embedding_sample"], actual["embedding_sample"])
    return all(abs(a - b) <= relative * max(abs(a), abs(b)) + absolute for a, b in pairs)


def fingerprint_differences(saved: dict, actual: dict) -> list[str]:
    """Human-readable differences between a saved fingerprint and a model's ('' if none).

    An embedding digest that differs only because the model is held in another dtype (see the module
    docstring) is not a difference.
    """
    differences = []
    for key in FINGERPRINT_KEYS:
        if key == "embedding_digest":
            embeddings = _embeddings_differ(saved, actual)
            differences += [embeddings] if embeddings else []
        elif saved.get(key) != actual.get(key):
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
