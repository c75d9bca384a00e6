"""Saving that never leaves a half-written file, loading that never unpickles.

* `atomic_directory_write(dir)`: write into a staging folder, then move each file into `dir`
  with `os.replace` (atomic on one filesystem). Files already in `dir` that the save does not
  write are kept (a README, a results.json), so nothing is lost.
* `check_adapter_files(dir)`: refuse a local adapter folder whose config or safetensors file is
  missing or truncated before PEFT reads it, and refuse pickle-only (`.bin`) adapters.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from safetensors import SafetensorError, safe_open

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"


@contextlib.contextmanager
def atomic_directory_write(save_directory: str | os.PathLike):
    """Yield a staging folder; on success move its files into `save_directory` atomically, one by one.

    Weights are moved before configs, so a reader never sees a new config beside old weights.
    On error the staging folder is removed and `save_directory` is left as it was.
    """
    save_directory = os.fspath(save_directory)
    parent = os.path.dirname(os.path.abspath(save_directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    try:
        yield staging
        _move_tree(staging, save_directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_tree(source: str, target: str) -> None:
    files = []
    for root, _, names in os.walk(source):
        files += [os.path.relpath(os.path.join(root, name), source) for name in names]
    # .json last: configs describe weights, so they land after them
    for relative in sorted(files, key=lambda name: (name.endswith(".json"), name)):
        destination = os.path.join(target, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        os.replace(os.path.join(source, relative), destination)


def check_adapter_files(model_id: str | os.PathLike, subfolder: str | None = None, hub_kwargs: dict | None = None) -> None:
    """Raise a clear error if an adapter is incomplete, truncated or pickle-only (`.bin`).

    A local folder is checked in place; for a Hub repo id the safetensors file is fetched (or
    found in the cache) first, so PEFT never falls back to a pickle file.
    """
    folder = os.path.join(os.fspath(model_id), subfolder) if subfolder else os.fspath(model_id)
    if not os.path.isdir(folder):
        check_safetensors_file(_download_weights(os.fspath(model_id), dict(hub_kwargs or {}, subfolder=subfolder)))
        return
    if read_local_adapter_config(model_id, subfolder) is None:
        return
    weights_path = os.path.join(folder, ADAPTER_WEIGHTS_NAME)
    if not os.path.isfile(weights_path):
        if os.path.isfile(os.path.join(folder, PICKLE_WEIGHTS_NAME)):
            raise ValueError(
                f"Adapter folder {folder!r} holds only {PICKLE_WEIGHTS_NAME} (pickle); peft_softprompt_ext loads "
                f"safetensors only. Convert it to {ADAPTER_WEIGHTS_NAME} in a trusted environment first."
            )
        raise FileNotFoundError(f"Adapter folder {folder!r} has no {ADAPTER_WEIGHTS_NAME}.")
    check_safetensors_file(weights_path)


def _download_weights(repo_id: str, hub_kwargs: dict) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    hub_kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
    try:
        return hf_hub_download(repo_id, ADAPTER_WEIGHTS_NAME, **hub_kwargs)
    except EntryNotFoundError:
        raise ValueError(
            f"Adapter {repo_id!r} has no {ADAPTER_WEIGHTS_NAME}; peft_softprompt_ext loads safetensors only "
            f"(never a pickle {PICKLE_WEIGHTS_NAME})."
        ) from None


def read_local_adapter_config(model_id, subfolder: str | None = None) -> dict | None:
    """The parsed adapter_config.json of a LOCAL adapter folder; None if there is none to read."""
    folder = os.path.join(os.fspath(model_id), subfolder) if subfolder else os.fspath(model_id)
    if not os.path.isdir(folder):
        return None
    config_path = os.path.join(folder, ADAPTER_CONFIG_NAME)
    try:
        with open(config_path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None  # PEFT then says "Can't find 'adapter_config.json'", as it always has
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path!r} is not valid JSON (truncated?): {error}") from None


def check_safetensors_file(path: str) -> None:
    """Raise ValueError if `path` is not a complete safetensors file (e.g. truncated by a crash)."""
    try:
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                handle.get_slice(name)  # header only; the size check below covers the data
        expected = _expected_safetensors_size(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path!r} is not a readable safetensors file (truncated or corrupt?): {error}") from None
    actual = os.path.getsize(path)
    if actual != expected:
        raise ValueError(f"{path!r} is truncated or padded: {actual} bytes on disk, header describes {expected}.")


def _expected_safetensors_size(path: str) -> int:
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
    data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    return 8 + header_length + data_end
