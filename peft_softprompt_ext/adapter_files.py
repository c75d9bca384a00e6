"""Checks on saved adapter files, made before anything is unpickled, allocated or trusted.

* `check_adapter_files`: a local folder (or Hub repo) must hold a readable config and a complete
  safetensors file; pickle-only (`.bin`) adapters are refused, so PEFT never reaches `torch.load`.
* `peft_type_field`: a config's `peft_type` must be there and be a string.
* `safetensors_shapes` / `check_state_shapes`: tensor names and shapes are compared with what the
  config and the model imply from the file's header, before the encoder is built (a config asking
  for 10**9 virtual tokens is refused, not allocated).
* `check_finite`: NaN or infinite values are refused at load.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError, safe_open

from . import sources
from ._peft_compat import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PICKLE_WEIGHTS_NAME, PLUGIN_PEFT_TYPES
from .fingerprint import FINGERPRINT_METADATA_KEY

PLUGIN_CARD_TAG = "peft-softprompt-ext"  # every card this plugin writes carries it (a README without it is someone else's)


def is_plugin_card(path: str) -> bool:
    """Whether the file at `path` is a model card this plugin wrote (a save's README.md may be a user's own)."""
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        return PLUGIN_CARD_TAG in handle.read()


NOTHING, PLAIN_COPIES, AN_ADAPTER, OTHER_FILES = "nothing", "plain copies", "an adapter", "other files"


def vanilla_holds(files, file_at) -> str:
    """What the vanilla/ of a folder or Hub repo holds: NOTHING; PLAIN_COPIES, the plain PEFT copies a plugin save wrote
    of the adapter at the top (each carries the base-model fingerprint in its metadata; a mixture's sit in
    vanilla/<task>/); AN_ADAPTER named 'vanilla' (PEFT saves every adapter but 'default' under its name); or
    OTHER_FILES, a user's. A copy written before the copies carried the fingerprint (2026-12-02) reads as an adapter (a
    second review found a plain adapter named 'vanilla' beside a prompt that writes no copy taken for such a copy, and
    dropped). `files`: the folder's files (relative paths); `file_at(path)`: a local copy of one, or None."""
    under = {name for name in files if name.startswith("vanilla/")}
    if not under:
        return NOTHING
    top = config_at(file_at(ADAPTER_CONFIG_NAME))
    folders = {name.rsplit("/", 1)[0] for name in under if name.endswith("/" + ADAPTER_CONFIG_NAME)}
    copy_files = {f"{folder}/{name}" for folder in folders for name in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME)}
    if folders and under <= copy_files and top.get("peft_type") in PLUGIN_PEFT_TYPES and all(
            _carries_the_fingerprint(file_at(f"{folder}/{ADAPTER_WEIGHTS_NAME}")) for folder in folders):  # fmt: skip
        return PLAIN_COPIES
    return AN_ADAPTER if f"vanilla/{ADAPTER_CONFIG_NAME}" in under else OTHER_FILES


def local_vanilla_view(folder: str) -> tuple[list[str], object]:
    """(`files`, `file_at`) of `vanilla_holds` for a local folder: the files under its vanilla/, relative to it."""
    files = [os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(os.path.join(folder, "vanilla"))
             for name in names]  # fmt: skip
    return files, lambda path: os.path.join(folder, path) if os.path.isfile(os.path.join(folder, path)) else None


def _carries_the_fingerprint(weights: str | None) -> bool:
    return weights is not None and exported_fingerprint(weights) is not None


def config_at(path: str | None) -> dict:
    """The JSON object at `path` ({} where there is none, or it is unreadable or not an object)."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def peft_type_at(path: str | None):
    return config_at(path).get("peft_type")


def peft_type_field(config: dict, source: str) -> str:
    """The `peft_type` of a config dict; missing or not a string is an error naming the field and file."""
    peft_type = config.get("peft_type")
    if not isinstance(peft_type, str) or not peft_type:
        raise ValueError(f"{source}: field 'peft_type' is {peft_type!r}; expected the name of a PEFT method, e.g. 'PROMPT_TUNING'.")
    return peft_type


def check_adapter_files(model_id, subfolder: str | None = None, hub_kwargs: dict | None = None, require_config: bool = True) -> str:
    """Raise a clear error if an adapter is incomplete, truncated or pickle-only; return its weights path.

    A local folder is checked in place; for a Hub repo id the safetensors file is fetched (or found
    in the cache) first, so PEFT never falls back to a pickle file.
    """
    folder = sources.folder_of(model_id, subfolder)
    if not os.path.isdir(folder):
        path = _download_weights(model_id, subfolder, hub_kwargs)
        check_safetensors_file(path)
        return path
    if require_config and not os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_NAME)):
        raise FileNotFoundError(f"Adapter folder {folder!r} has no {ADAPTER_CONFIG_NAME}.")
    weights_path = os.path.join(folder, ADAPTER_WEIGHTS_NAME)
    if not os.path.isfile(weights_path):
        if os.path.isfile(os.path.join(folder, PICKLE_WEIGHTS_NAME)):
            raise ValueError(
                f"Adapter folder {folder!r} holds only {PICKLE_WEIGHTS_NAME} (pickle); peft_softprompt_ext loads "
                f"safetensors only. Convert it to {ADAPTER_WEIGHTS_NAME} in a trusted environment first."
            )
        raise FileNotFoundError(f"Adapter folder {folder!r} has no {ADAPTER_WEIGHTS_NAME}.")
    check_safetensors_file(weights_path)
    return weights_path


def _download_weights(repo_id, subfolder: str | None, hub_kwargs: dict | None) -> str:
    hub_kwargs = dict(hub_kwargs or {})
    revision = hub_kwargs.pop("revision", None)
    hub_kwargs.pop("subfolder", None)
    try:
        return sources.resolve_file(repo_id, ADAPTER_WEIGHTS_NAME, subfolder, revision, hub_kwargs)
    except sources.NotCachedError:
        raise  # (offline with a partial cache: said so, not "the repo has no safetensors")
    except FileNotFoundError:
        raise ValueError(
            f"Adapter {os.fspath(repo_id)!r} has no {ADAPTER_WEIGHTS_NAME}; peft_softprompt_ext loads safetensors only "
            f"(never a pickle {PICKLE_WEIGHTS_NAME})."
        ) from None


def check_safetensors_file(path: str) -> None:
    """Raise ValueError if `path` is not a complete safetensors file (e.g. truncated by a crash)."""
    try:
        header = _header(path)
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                handle.get_slice(name)  # header only; the size check below covers the data
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path!r} is not a readable safetensors file (truncated or corrupt?): {error}") from None
    expected = 8 + header["__length__"] + max((entry["data_offsets"][1] for key, entry in header.items() if key != "__length__"), default=0)
    actual = os.path.getsize(path)
    if actual != expected:
        raise ValueError(f"{path!r} is truncated or padded: {actual} bytes on disk, header describes {expected}.")


def _header(path: str) -> dict:
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length <= 0 or length > 100_000_000:
            raise ValueError(f"header length {length} is not plausible")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    header["__length__"] = length
    return header


def safetensors_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, read from the header only (no tensor data is loaded)."""
    header = _header(path)
    return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__length__"}


def safetensors_metadata(path: str) -> dict[str, str]:
    with safe_open(path, framework="pt") as handle:
        return dict(handle.metadata() or {})


def exported_fingerprint(weights_path: str):
    """The base-model fingerprint a plain PEFT copy made by the plugin carries in its safetensors metadata: the
    parsed JSON (the raw text if it is not JSON, which the fingerprint check refuses), or None if there is none."""
    exported = safetensors_metadata(weights_path).get(FINGERPRINT_METADATA_KEY)
    if exported is None:
        return None
    try:
        return json.loads(exported)
    except json.JSONDecodeError:
        return exported


NO_FINGERPRINT = object()  # a plain PEFT adapter: no fingerprint was ever made for it


def claimed_fingerprint(config: dict, weights_path: str | None) -> tuple[object, str]:
    """(fingerprint, where it is) an adapter claims: a plugin adapter's config field ("config"; it must be valid: a
    removed or nulled one is refused), a plain copy's safetensors metadata ("metadata", written by the plugin's
    export), or (NO_FINGERPRINT, "") for an adapter made by plain PEFT."""
    if config.get("peft_type") in PLUGIN_PEFT_TYPES or "base_model_fingerprint" in config:
        return config.get("base_model_fingerprint"), "config"
    exported = exported_fingerprint(weights_path) if weights_path is not None else None
    return (NO_FINGERPRINT, "") if exported is None else (exported, "metadata")


def check_state_shapes(found: dict[str, tuple], expected: dict[str, tuple], source: str, setting: str = "") -> None:
    """Every expected tensor present with its shape; extra tensors are fine (PEFT ignores them too).

    `setting`: the config setting that asks for the tensors, named in the error (e.g. "reparameterization='residual_mlp'").
    """
    missing = [name for name in expected if name not in found]
    if missing:
        names = repr(missing[0]) if len(missing) == 1 else repr(missing)
        raise ValueError(f"{source}: {setting + ' ' if setting else ''}adapter weights lack {names}; they hold {sorted(found)}.")
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            raise ValueError(
                f"{source}: tensor {name!r} has shape {tuple(found[name])}; expected a float tensor of shape {tuple(shape)}, "
                "as its config (num_virtual_tokens, token_dim, ...) and the base model imply."
            )


def check_float_tensor(name: str, tensor: torch.Tensor, shape: tuple, meaning: str = "") -> None:
    """Refuse a loaded tensor that is not a float tensor of `shape`, naming its shape and dtype.

    `meaning`: what the shape's dimensions are, named in the error (e.g. "(num_virtual_tokens, width)").
    """
    if tuple(tensor.shape) != tuple(shape) or not tensor.is_floating_point():
        raise ValueError(f"{name!r} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; expected a float tensor of "
                         f"shape {tuple(shape)}{' ' + meaning if meaning else ''} for this base model.")  # fmt: skip


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuse NaN or infinite values, naming the tensor; a float64 tensor is checked as the float32 it loads as
    (1e300 is finite in float64 and infinite once loaded)."""
    for name, tensor in tensors.items():
        if tensor.dtype == torch.float64:
            tensor = tensor.float()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{source}: tensor {name!r} holds {bad} NaN or infinite value(s) (as float32); refusing to load it.")
