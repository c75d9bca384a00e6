"""One training process per run folder at a time.

A run folder's checkpoint, adapter and results are each written all or nothing, but two runs into one folder
(a resume started while a worker of the killed launcher still trains there, or two plans sharing an output_dir)
would each finish and the last one's files would win. The main process of a run holds an exclusive
`flock` on `<parent>/.<folder name>.lock` (beside the folder, which a save swaps whole) for as long as it runs; a
second run into that folder is refused, naming the holder's pid. The lock file stays (empty of meaning once
released); the lock itself goes with the process, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def lock_path(output_dir) -> Path:
    folder = Path(os.path.realpath(output_dir))  # a link and its target share one lock
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def run_lock(output_dir, main_process: bool = True):
    """Hold `output_dir`'s run lock for the block (taken by a run's main process: its others share it); raises
    SystemExit when another process holds it."""
    if not main_process:
        yield
        return
    path = lock_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise SystemExit(f"output_dir={str(output_dir)!r} is in use: another training process (pid {holder}) runs into it, "
                             "e.g. a worker left running by a killed launcher. Wait for it to end or stop it (kill "
                             f"{holder}), then run again.") from None  # fmt: skip
        except OSError:  # a filesystem without flock: runs go unguarded, as before
            pass
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
