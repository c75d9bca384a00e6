"""All-or-nothing writes of folders and files, and reads that never see half of one.

Mechanism: **a complete new folder swapped in by one rename.** A save writes everything into a
staging folder beside the target (same filesystem), fsyncs it, then swaps it with the target in
one `renameat2(RENAME_EXCHANGE)` call (Linux; elsewhere, or on filesystems without it, two
renames whose gap a later save repairs). Why this and not per-file renames or a pointer:
* a folder (adapter + `vanilla/` + card, a checkpoint's tensors + state) is one unit: per-file
  renames leave mixes of two saves after a kill, which is what this replaces;
* plain PEFT, the Hub client and `AutoPeftModel` read `target/adapter_config.json` directly: the
  target has to stay a real folder, not a symlink to a version.
Stale files of the old save go with the old folder. Entries a save does not own (a user's notes, a
recipe's `checkpoint/`) are carried into the new folder by hard link (`keep=` decides which).

Concurrency: writers take an exclusive `flock` on the target's parent folder for the whole save;
readers (`read_lock`) take a shared one on the folder's parent and on the one above it (a second
adapter's subfolder goes with its save folder) while they read, so no plugin load ever mixes two saves
and no save removes files a plugin load is reading. While the plugin is imported, PEFT's
`PeftModel.from_pretrained` / `load_adapter` of plain adapters from a folder (a save's `vanilla/` copy among
them) hold the same lock; other reads (PEFT's `load_peft_weights`, a process without the plugin) take none and
could read across a swap. A reader that may not open a folder above the adapter (mode 711) reads
unlocked. Threads of one process exclude each other the same way. Leftovers of a killed save
(`.staging-<name>-<8 hex>`, `.old-<name>-<8 hex>`, exactly: not a sibling's) are removed,
and a target lost by a kill between the two fallback renames restored, by the next save (an error
there puts the old folder back at once). Targets that are
symlinks (e.g. to another filesystem) are written where they point. Every commit point emits the
audit event `peft_softprompt_ext.commit`, so tests can stop a save at each one
(tests/test_atomic_saves.py kills a process at every point).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import threading
import uuid

AUDIT_EVENT = "peft_softprompt_ext.commit"
_SUFFIX_LENGTH = 8  # hex digits after a staging / old folder's name
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# --------------------------------------------------------------------------- locks
# Per thread: folder -> [mode, depth]. A lock already held by this thread nests; another thread opens its own
# file, and flock excludes open files of one process from each other as it does across processes.
_held = threading.local()


@contextlib.contextmanager
def _folder_lock(folder: str, exclusive: bool):
    """flock on `folder` (a directory): shared for readers, exclusive for writers; re-entrant per thread."""
    held = _held.__dict__.setdefault("folders", {})
    entry = held.get(folder)
    if entry is not None and (entry[0] or not exclusive):  # already held strongly enough by this thread
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:
        if exclusive:  # a writer needs its lock (and could not write there anyway)
            raise
        yield  # a reader that may enter a folder but not list it (e.g. mode 711 above an adapter): read unlocked
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:  # e.g. a network filesystem without flock: saves stay atomic, only unlocked
            pass
        held[folder] = [exclusive, 1]
        yield
    finally:
        if held.get(folder) is not None and held[folder][0] == exclusive:
            del held[folder]
        os.close(fd)  # releases the flock


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


@contextlib.contextmanager
def read_lock(path: str | os.PathLike):
    """Hold while reading a folder (or a file) this module writes: no save swaps it meanwhile, nor the folder
    holding it (a second adapter's subfolder goes with its save folder)."""
    target = _real(path)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        yield
        return
    grandparent = os.path.dirname(parent)
    with contextlib.ExitStack() as stack:
        if grandparent != parent and os.path.isdir(grandparent):  # outermost first, as every reader does
            stack.enter_context(_folder_lock(grandparent, exclusive=False))
        stack.enter_context(_folder_lock(parent, exclusive=False))
        yield


# --------------------------------------------------------------------------- commit points
def _commit(step: str, path: str) -> None:
    sys.audit(AUDIT_EVENT, step, path)


def _fsync_tree(folder: str) -> None:
    for root, _, names in os.walk(folder):
        for name in names:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_folder(root)


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(first: str, second: str) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system or filesystem cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    _commit("exchange", second)
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), second)


# --------------------------------------------------------------------------- folders
def _leftovers(parent: str, name: str) -> list[str]:
    """This target's own leftovers, named exactly as a save names them (not a sibling's that shares the prefix)."""
    pattern = re.compile(rf"\.(staging|old)-{re.escape(name)}-[0-9a-f]{{{_SUFFIX_LENGTH}}}")
    return [os.path.join(parent, entry) for entry in os.listdir(parent) if pattern.fullmatch(entry)]


def _suffix() -> str:
    return uuid.uuid4().hex[:_SUFFIX_LENGTH]


def _repair(parent: str, name: str) -> None:
    """Under the writer lock: restore a target lost between the fallback's two renames, drop leftovers."""
    target = os.path.join(parent, name)
    if not os.path.lexists(target):
        olds = sorted((p for p in _leftovers(parent, name) if os.path.basename(p).startswith(f".old-{name}-")), key=os.path.getmtime)
        if olds:
            _commit("restore", target)
            os.rename(olds[-1], target)
    for leftover in _leftovers(parent, name):
        _commit("remove-leftover", leftover)
        _remove(leftover)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _carry_over(old: str, staging: str, keep) -> None:
    """Hard-link (or copy) the old folder's top-level entries that `keep` names and the save did not write."""
    if keep is None or not os.path.isdir(old):
        return
    for entry in os.listdir(old):
        source, destination = os.path.join(old, entry), os.path.join(staging, entry)
        if os.path.lexists(destination) or not keep(entry, source):
            continue
        _commit("carry-over", destination)
        if os.path.isdir(source) and not os.path.islink(source):
            shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, destination)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _swap_in(staging: str, target: str) -> str | None:
    """Make `staging` the target; returns the path now holding the old folder (to delete), if any."""
    if not os.path.lexists(target):
        _commit("rename", target)
        os.rename(staging, target)
        return None
    if not os.path.isdir(target):
        raise ValueError(f"Cannot save a folder to {target!r}: a file of that name exists there.")
    if _exchange(staging, target):
        return staging
    old = os.path.join(os.path.dirname(target), f".old-{os.path.basename(target)}-{_suffix()}")
    _commit("rename-old", old)
    os.rename(target, old)
    try:
        _commit("rename", target)
        os.rename(staging, target)
    except BaseException:
        with contextlib.suppress(OSError):  # should this fail too, the next save's _repair restores it
            os.rename(old, target)
        raise
    return old


@contextlib.contextmanager
def atomic_directory_write(save_directory: str | os.PathLike, keep=None):
    """Yield a staging folder; on success it replaces `save_directory` as one unit.

    Args:
        save_directory: the folder to (re)write; a symlink is followed.
        keep: `keep(name, path) -> bool` for each top-level entry of the old folder that the new
            save did not write: True carries it over (hard link), False drops it. None drops all.
    On error the staging folder is removed and `save_directory` is left as it was.
    """
    target = _real(save_directory)
    working = _real(os.getcwd())
    if working == target or working.startswith(target.rstrip(os.sep) + os.sep):
        raise ValueError(f"Cannot save to {os.fspath(save_directory)!r}: it is {'' if working == target else 'a folder holding '}the "
                         "current working directory, and a save replaces its folder as a whole (the process would be "
                         "left in a deleted folder). Save into a subfolder of it instead.")  # fmt: skip
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    with _folder_lock(parent, exclusive=True):
        _repair(parent, name)
        staging = os.path.join(parent, f".staging-{name}-{_suffix()}")
        _commit("mkdir-staging", staging)
        os.mkdir(staging)
        try:
            yield staging
            _carry_over(target, staging, keep)
            _fsync_tree(staging)
            old = _swap_in(staging, target)
            _fsync_folder(parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old is not None:
            _commit("remove-old", old)
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Yield an open handle to a temporary file beside `path`; on success it replaces `path` atomically."""
    target = _real(path)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    temporary = os.path.join(parent, f".staging-{name}-{_suffix()}")
    with _folder_lock(parent, exclusive=True):
        for leftover in _leftovers(parent, name):  # a killed earlier write's temporary file
            _commit("remove-leftover", leftover)
            _remove(leftover)
        try:
            _commit("write-staging", temporary)
            with open(temporary, mode, encoding=encoding if "b" not in mode else None) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            _commit("replace", target)
            os.replace(temporary, target)
            _fsync_folder(parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
            raise


def read_json_object(path: str, what: str) -> dict:
    """A JSON file that must hold an object; errors name the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path!r} is not valid JSON (truncated?): {error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path!r} is not UTF-8 text: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path!r} must hold a JSON object of fields, got a JSON {type(value).__name__}.")
    return value
