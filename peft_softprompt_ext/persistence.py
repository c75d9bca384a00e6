"""How plugin adapters are saved, loaded and pushed (the policy; `_peft_compat` wires it into PEFT).

Saving: PEFT writes its files into a staging folder, the plain copies and the model card are added,
and the folder replaces the target as one unit (`atomic_io`). Entries of the old folder that this
save does not write are carried over: a user's notes, a `results.json`, Trainer's `checkpoint-N/`
folders, an adapter kept in a subfolder; the old save's own top-level files (weights, config, card,
`vanilla/`) never survive a new save.

Loading: before PEFT reads anything, the files are checked (safetensors only, complete), the
config is read and validated, the base-model fingerprint must be valid and match (unless
`allow_base_model_mismatch=True`), and the tensor shapes in the safetensors header must be the
ones the config and the model imply, so nothing large is allocated for a bad config. The folder
is read under `atomic_io.read_lock`, so a concurrent save cannot mix two versions (plain PEFT
adapters loaded from a folder while the plugin is imported too: `_peft_compat` takes the lock for them).

Pushing: the saved folder is uploaded in one commit (nested `vanilla/<task>/` folders included).
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import tempfile
import warnings

from . import atomic_io, sources
from ._peft_compat import (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PICKLE_WEIGHTS_NAME, adapter_config_of, adapter_names,
                           input_embeddings_of, is_plugin_config)  # fmt: skip
from .adapter_files import (AN_ADAPTER, NO_FINGERPRINT, NOTHING, PLAIN_COPIES, check_adapter_files, check_state_shapes,
                            claimed_fingerprint, is_plugin_card, local_vanilla_view, peft_type_at, safetensors_shapes,
                            vanilla_holds)  # fmt: skip
from .export import fingerprint_as_saved, vanilla_copies
from .fingerprint import base_model_fingerprint, check_fingerprint, computed_once, fingerprint_differences, fingerprint_problem
from .hub import write_sharing_files

# Top-level names an adapter save writes (besides a subfolder per extra adapter): an old save's are dropped.
ADAPTER_SAVE_NAMES = {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PICKLE_WEIGHTS_NAME, "README.md", "vanilla"}


def _not_an_adapter_file(name: str, path: str) -> bool:
    """Carry an old entry over unless it is one of an adapter save's own top-level files. A subfolder with an
    adapter in it stays (Trainer's checkpoint-N/ are such; an extra adapter of this model is written anew)."""
    return name not in ADAPTER_SAVE_NAMES


def _everything(name: str, path: str) -> bool:
    return True


def save_adapter(peft_model, save_directory, write_peft_files, selected_adapters=None, safe_serialization=True,
                 save_embedding_layers="auto") -> None:
    """All-or-nothing save: `write_peft_files(staging)` (PEFT's own save), then the plain copies (with the embedding
    layers PEFT's save holds: `save_embedding_layers`) and the model card of every plugin adapter
    (`hub.write_sharing_files`). A README.md in the folder that
    no plugin save wrote is the user's: kept, and the card not written (PEFT keeps such a README's text)."""
    if safe_serialization is False:
        raise ValueError("safe_serialization=False would write a pickle file; plugin adapters are saved as safetensors only.")
    saved_names = list(selected_adapters or adapter_names(peft_model))
    if "vanilla" in saved_names and "default" in saved_names and is_plugin_config(adapter_config_of(peft_model, "default")) \
            and vanilla_copies(peft_model, "default"):
        _refuse_the_name_vanilla("this save holds a default plugin adapter")
    check_save_into_folder(peft_model, save_directory, saved_names)
    with computed_once():  # (one hash of the base model's embeddings for every adapter saved)
        for name in saved_names:
            fingerprint_as_saved(peft_model, name)
    users_readme = _users_readme(save_directory)
    if "default" not in saved_names:  # PEFT writes every other adapter into its subfolder: the top-level files are
        keep = _everything  # the folder's default adapter's (or a user's), kept as plain PEFT keeps them
    elif users_readme:
        keep = lambda name, path: name == "README.md" or _not_an_adapter_file(name, path)  # noqa: E731
    else:
        keep = _not_an_adapter_file
    with atomic_io.atomic_directory_write(save_directory, keep=keep) as staging:
        write_peft_files(staging)
        write_sharing_files(peft_model, staging, selected_adapters, save_embedding_layers)
        if users_readme or "default" not in saved_names:  # (PEFT's generic card there: a later save would keep it as the user's)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(staging, "README.md"))
    if users_readme:
        warnings.warn(f"{os.path.join(os.fspath(save_directory), 'README.md')} was not written by this plugin: kept as it "
                      "is, without the model card (build_model_card(model).save(path) writes one elsewhere).", stacklevel=3)  # fmt: skip


def _refuse_the_name_vanilla(where: str) -> None:
    """PEFT saves every adapter but 'default' into a subfolder of its name; vanilla/ holds a plugin save's plain copy."""
    raise ValueError(f"An adapter named 'vanilla' is saved into the subfolder vanilla/ (PEFT saves every adapter but 'default' "
                     f"under its name), where this plugin writes the default adapter's plain PEFT copy, and {where}. Give the "
                     "adapter another name (load_adapter(folder, 'other')), or save it into another folder or repo.")  # fmt: skip


def check_the_vanilla_subfolder(peft_model, saved_names, files, file_at, where: str) -> None:
    """vanilla/ is both a plugin save's plain copy of its default adapter and PEFT's subfolder for an adapter named
    'vanilla': a save (or push) into `where` never replaces one with the other, nor a user's files there (found
    2026-12-07: an adapter named 'vanilla' saved alone replaced a plugin adapter's plain copy, and a plugin save
    replaced a LoRA adapter named 'vanilla'). `files`: the target's files (relative paths); `file_at(path)`: a local copy
    of one, or None."""
    held = vanilla_holds(files, file_at)
    if "vanilla" in saved_names and "default" not in saved_names and held == PLAIN_COPIES:
        _refuse_the_name_vanilla(f"{where} holds a plugin adapter whose plain copy is there")
    if "default" in saved_names and "vanilla" not in saved_names and held not in (NOTHING, PLAIN_COPIES) \
            and is_plugin_config(adapter_config_of(peft_model, "default")):  # fmt: skip
        what = (f"an adapter named 'vanilla' (peft_type {peft_type_at(file_at(f'vanilla/{ADAPTER_CONFIG_NAME}'))!r})"
                if held == AN_ADAPTER else "files this plugin did not write")
        raise ValueError(f"vanilla/ in {where} holds {what}, where a save of this default plugin adapter writes its plain PEFT "
                         "copy and would replace it. Save into another folder or repo, or move them first.")  # fmt: skip


def check_save_into_folder(peft_model, save_directory, saved_names) -> None:
    """`check_the_vanilla_subfolder` for a save into a local folder; also a model holding no plugin adapter, which saves
    through plain PEFT: an adapter of it named 'vanilla' would still replace a plugin save's plain copy there (found
    2026-12-07 by a review)."""
    folder = os.fspath(save_directory)
    check_the_vanilla_subfolder(peft_model, saved_names, *local_vanilla_view(folder), repr(folder))


def _users_readme(save_directory) -> bool:
    """Whether the folder holds a README.md that is not a card of this plugin."""
    path = os.path.join(os.fspath(save_directory), "README.md")
    return os.path.isfile(path) and not is_plugin_card(path)


def reading(model_id, subfolder: str | None = None):
    """The lock a load holds while PEFT reads a local adapter folder (no lock for a Hub repo id)."""
    if not sources.is_local(model_id, subfolder):
        return contextlib.nullcontext()
    return atomic_io.read_lock(sources.folder_of(model_id, subfolder))


def check_weights_file(model_id, subfolder: str | None = None, hub_kwargs: dict | None = None) -> str:
    """The adapter's safetensors file, checked (never a pickle)."""
    return check_adapter_files(model_id, subfolder=subfolder, hub_kwargs=hub_kwargs)


def checked_config(model_id, base_model, config_class, encoder_class, config=None, allow_base_model_mismatch=False,
                   subfolder=None, hub_kwargs=None, config_kwargs=None):  # fmt: skip
    """The adapter's config, after every check a plugin load makes before PEFT builds anything.

    Returns the config (with the fingerprint of `base_model` adopted when a mismatch was allowed).
    """
    source = f"Adapter {os.fspath(model_id)!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    weights = check_adapter_files(model_id, subfolder=subfolder, hub_kwargs=hub_kwargs, require_config=config is None)
    if config is None:
        config = config_class.from_pretrained(model_id, **(config_kwargs or {}))  # (config_kwargs carry subfolder=)
    else:  # the caller's config: what the folder's own files claim must fit too (a removed or nulled claim is refused)
        own, where = _claimed_by_files(model_id, subfolder, hub_kwargs, weights_path=weights)
        if own is not NO_FINGERPRINT:
            check_fingerprint(own, base_model, _claim_source(source, where), allow_base_model_mismatch)
            if config.base_model_fingerprint is None:  # a config built by hand: it takes the one just checked
                config = copy.copy(config)
                config.base_model_fingerprint = own
        elif config.base_model_fingerprint is None:
            source += " (the config given to from_pretrained; the adapter's files claim none either)"
    check_fingerprint(config.base_model_fingerprint, base_model, source, allow_base_model_mismatch)
    _check_width(config, base_model, source)
    setting = f"reparameterization={config.reparameterization!r}" if getattr(config, "reparameterization", None) else ""
    check_state_shapes(safetensors_shapes(weights), encoder_class.expected_state_shapes(config), source, setting)
    if allow_base_model_mismatch:
        config.base_model_fingerprint = base_model_fingerprint(base_model)  # the prompt now lives on this model
    return config


def check_saved_config(saved, actual: dict) -> None:
    """A config read from a save (inference_mode=True, a fingerprint) that PEFT builds a model from for the save's
    weights to be loaded next (`PeftModel(base, PeftConfig.from_pretrained(folder))`, then `set_peft_model_state_dict`):
    its fingerprint must be this base model's, as on `from_pretrained`'s path (which adopts the model's when a mismatch
    was allowed)."""
    problem = fingerprint_problem(saved)
    differences = [problem] if problem is not None else fingerprint_differences(saved, actual)
    if differences:
        raise ValueError(
            "This adapter config was read from an adapter saved on another base model: " + "; ".join(differences) + " (or "
            "it was made with that model's base_model_fingerprint, e.g. as a copy by dataclasses.replace or "
            "Config(**config.to_dict()) of a config a build filled in). Build the PeftModel on the model it was trained "
            "on, or load the adapter with PeftModel.from_pretrained(base, folder, allow_base_model_mismatch=True) if you "
            "know the prompt fits (e.g. after projection); for a new prompt with these settings, set the config's "
            "base_model_fingerprint=None and inference_mode=False first."
        )


def check_plain_copy(model_id, base_model, allow_base_model_mismatch=False, subfolder: str | None = None,
                     hub_kwargs: dict | None = None) -> None:  # fmt: skip
    """A plain PEFT load while the plugin is imported, from a folder or the Hub. A plain copy this plugin wrote (a
    save's `vanilla/` copy, an export) carries the base model's fingerprint in its safetensors metadata; a plugin
    adapter loaded through plain PEFT's path (a plain config given to from_pretrained) carries it in its own config.
    Both are checked. Adapters with neither (any other plain PEFT adapter, one with pickle weights only) pass
    unchecked, as in PEFT."""
    claimed, where = _claimed_by_files(model_id, subfolder, hub_kwargs)
    if claimed is not NO_FINGERPRINT:
        source = f"Adapter {os.fspath(model_id)!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
        check_fingerprint(claimed, base_model, _claim_source(source, where), allow_base_model_mismatch)


def _claimed_by_files(model_id, subfolder: str | None, hub_kwargs: dict | None, weights_path: str | None = None) -> tuple[object, str]:
    """`claimed_fingerprint` of an adapter folder's or Hub repo's own files (its adapter_config.json, its weights'
    metadata); (NO_FINGERPRINT, "") where neither claims one. `weights_path`: the weights file when the caller has
    already found it."""
    hub_kwargs = dict(hub_kwargs or {})
    revision = hub_kwargs.pop("revision", None)
    hub_kwargs.pop("subfolder", None)
    config_path = sources.resolve_file(model_id, ADAPTER_CONFIG_NAME, subfolder, revision, hub_kwargs, required=False)
    if weights_path is None:
        weights_path = sources.resolve_file(model_id, ADAPTER_WEIGHTS_NAME, subfolder, revision, hub_kwargs, required=False)
    config = atomic_io.read_json_object(config_path, "The adapter config") if config_path is not None else {}
    return claimed_fingerprint(config, weights_path)


def _claim_source(source: str, where: str) -> str:
    return source + (f" (its own {ADAPTER_CONFIG_NAME})" if where == "config" else ", a plain PEFT copy made by peft_softprompt_ext,")


def _check_width(config, base_model, source: str) -> None:
    """Input rows must have the input embeddings' width. A deep prompt's rows never enter there (its [P, F] layout is
    checked against deep_layout with the weights' shapes): it keeps the token_dim it was built with, which PEFT fills
    with the hidden size, wider than the embeddings of ELECTRA, ALBERT or OPT-350m."""
    if getattr(config, "deep_layout", None) is not None:
        return
    width = input_embeddings_of(base_model).weight.shape[1]
    if config.token_dim is not None and config.token_dim != width:
        raise ValueError(f"{source}: token_dim={config.token_dim!r} but the base model's embeddings are {width} wide.")
    config.token_dim = width


def push_adapter_folder(peft_model, repo_id: str, commit_message=None, commit_description=None, private=None, token=None,
                        revision=None, create_pr=False, max_shard_size=None, tags=None):  # fmt: skip
    """`push_to_hub` for plugin adapters: save (native adapter, plain copies, card) and upload the whole
    folder in one commit. transformers' own push uploads one folder level only (a mixture's
    `vanilla/<task>/` would be lost) and replaces the card with a generic one."""
    from huggingface_hub import ModelCard, create_branch, create_repo, upload_folder

    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if revision is not None and not create_pr and not revision.startswith("refs/"):  # a new branch, as transformers' push does
        create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    in_repo = _repo_files(repo_id, revision, token)
    check_the_vanilla_subfolder(peft_model, adapter_names(peft_model), sorted(in_repo),
                                lambda path: _repo_file(repo_id, path, revision, token) if path in in_repo else None,
                                f"the repo {repo_id!r}")  # fmt: skip
    with tempfile.TemporaryDirectory() as parent:
        folder = os.path.join(parent, "adapter")
        peft_model.save_pretrained(folder)
        card = os.path.join(folder, "README.md")
        theirs = _repo_file(repo_id, "README.md", revision, token) if os.path.isfile(card) and "README.md" in in_repo else None
        if theirs is not None and not is_plugin_card(theirs):
            os.remove(card)  # a card of the user's own in the repo stays, as a local save keeps it (found 2026-12-07)
            warnings.warn(f"README.md in {repo_id!r} was not written by this plugin: kept as it is, without the model card "
                          "(build_model_card(model).save(path) writes one to upload yourself).", stacklevel=3)  # fmt: skip
        for root, _, names in os.walk(folder):
            if "README.md" in names:
                card_path = os.path.join(root, "README.md")
                with open(card_path, encoding="utf-8") as handle:
                    card = ModelCard(handle.read().replace("REPO_ID", repr(repo_id)))
                if tags:
                    card.data.tags = list(dict.fromkeys([*(card.data.tags or []), *tags]))
                card.save(card_path)
        # every pushed adapter's earlier plain copies go (a mixture's old per-task copies must not linger); a push without
        # the default adapter leaves the repo's top level (its default adapter) alone, as plain PEFT's push does
        pushed = [name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name, ADAPTER_CONFIG_NAME))]
        top = ["vanilla/**"] if os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_NAME)) else []
        return upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message or "Upload soft prompt",
                             commit_description=commit_description, token=token, revision=revision, create_pr=create_pr,
                             delete_patterns=[*top, *(f"{glob.escape(name)}/vanilla/**" for name in pushed)])  # fmt: skip


def _repo_files(repo_id: str, revision: str | None, token) -> set[str]:
    """The files of a Hub repo at `revision` (none where the revision does not exist yet)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        return set(HfApi().list_repo_files(repo_id, revision=revision, token=token))
    except RevisionNotFoundError:
        return set()


def _repo_file(repo_id: str, path: str, revision: str | None, token) -> str | None:
    """A local copy of one file of a Hub repo (None where it has none)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(repo_id, path, revision=revision, token=token)
    except EntryNotFoundError:
        return None
