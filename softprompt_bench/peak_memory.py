"""Peak resident memory of THIS run, even when several runs share one process (compare.py).

Linux keeps a resettable high-water mark (VmHWM): writing "5" to /proc/self/clear_refs resets
it. Elsewhere we fall back to the process-wide maximum (ru_maxrss), which only grows. On CUDA,
the allocator's peak is reported instead.
"""

from __future__ import annotations

import resource

import torch


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # not Linux (or not permitted): peak_memory_mb falls back to ru_maxrss


def peak_memory_mb() -> float:
    """Peak memory in MB since the last reset: GPU allocator peak on CUDA, else peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
