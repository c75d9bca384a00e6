"""One resolver for "a local folder or a Hub repo id (at a revision, in a subfolder)".

Adapters, mixture banks, projections and `AutoPeftModel` subfolders are all given this way; every
reader resolves them here, so a revision or subfolder is never dropped on one path.
"""

from __future__ import annotations

import os


def folder_of(source, subfolder: str | None = None) -> str:
    """The local path `source`/`subfolder` (whether or not it exists)."""
    return os.path.join(os.fspath(source), subfolder) if subfolder else os.fspath(source)


def is_local(source, subfolder: str | None = None) -> bool:
    return os.path.isdir(folder_of(source, subfolder))


def could_be_hub_id(text: str) -> bool:
    """Whether `text` can name a Hub repo (`name` or `namespace/name`, the Hub's characters), not a path such as
    '/data/prompt' or './prompt'."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if text.startswith(("/", "./", "../", "~", ".\\")) or text.count("/") > 1 or os.sep in text.replace("/", ""):
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def check_hub_id(source, subfolder: str | None = None) -> None:
    """Refuse, as a missing folder, a source that is no local folder and cannot be a Hub repo id either."""
    text = os.fspath(source)
    if subfolder and os.path.isdir(text):
        raise FileNotFoundError(f"{text!r} has no subfolder {subfolder!r}.")
    if os.path.isfile(text):
        raise FileNotFoundError(f"{text!r} is a file, not a folder (nor a Hub repo id): give the folder that holds it, "
                                f"{os.path.dirname(os.path.abspath(text))!r}.")
    if not could_be_hub_id(text):
        raise FileNotFoundError(f"There is no folder {text!r}, and it is not a Hub repo id (name or namespace/name).")


class NotCachedError(FileNotFoundError):
    """A Hub file that is not in the local cache and cannot be downloaded now (offline, or the Hub unreachable)."""


def resolve_file(source, filename: str, subfolder: str | None = None, revision: str | None = None, hub_kwargs: dict | None = None,
                 required: bool = True) -> str | None:  # fmt: skip
    """The local path of `filename` in a folder or Hub repo; None where it is absent and not `required`."""
    if is_local(source, subfolder):
        path = os.path.join(folder_of(source, subfolder), filename)
        if os.path.isfile(path) or not required:
            return path if os.path.isfile(path) else None
        raise FileNotFoundError(f"{folder_of(source, subfolder)!r} has no {filename}.")
    check_hub_id(source, subfolder)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    options = {k: v for k, v in dict(hub_kwargs or {}, revision=revision, subfolder=subfolder).items() if v is not None}
    try:
        return hf_hub_download(os.fspath(source), filename, **options)
    except LocalEntryNotFoundError as error:  # not cached, and not downloadable now: not "the repo has none" (found by
        # reviews: offline, or a partial cache, or an unreachable Hub, was reported as a file missing from the repo); an
        # optional file may be one the repo never had (a plain adapter's safetensors beside its .bin): None, as before
        if not required:
            return None
        import huggingface_hub

        if huggingface_hub.constants.HF_HUB_OFFLINE or options.get("local_files_only"):
            why = "downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True). Load it once online, or pass a local folder"
        else:
            why = f"the Hub could not be reached ({error})"
        raise NotCachedError(f"Hub repo {os.fspath(source)!r} (revision {revision}, subfolder {subfolder}): {filename} is not in "
                             f"the local Hugging Face cache, and {why}.") from None  # fmt: skip
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"Hub repo {os.fspath(source)!r} (revision {revision}, subfolder {subfolder}) has no {filename}.") from None
        return None


def local_folder(source, filenames: list[str], subfolder: str | None = None, revision: str | None = None,
                 hub_kwargs: dict | None = None) -> str:  # fmt: skip
    """A local folder holding `filenames` of `source`/`subfolder` (downloaded for a Hub repo id)."""
    if is_local(source, subfolder):
        return folder_of(source, subfolder)
    paths = [resolve_file(source, name, subfolder, revision, hub_kwargs) for name in filenames]
    return os.path.dirname(paths[0])
