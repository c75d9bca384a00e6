"""The plugin's fingerprint rules, loaded from `peft_softprompt_ext/fingerprint.py` without importing the plugin.

Importing any plugin submodule runs `peft_softprompt_ext/__init__.py`, which imports PEFT; the
serving venv has no PEFT. `fingerprint.py` needs only hashlib and torch, so it is loaded here as a
standalone module from its file: one definition of a fingerprint for the plugin and for serving
(tests/test_serving_requests.py checks that the file stays importable this way).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType


def _plugin_folder() -> Path:
    try:
        spec = importlib.util.find_spec("peft_softprompt_ext")  # locates the package; does not run its __init__
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[1] / "peft_softprompt_ext"  # a checkout without the plugin installed


@functools.lru_cache(maxsize=1)
def fingerprint_module() -> ModuleType:
    """`peft_softprompt_ext/fingerprint.py` as a module of its own (base_model_fingerprint's rules, the checks)."""
    path = _plugin_folder() / "fingerprint.py"
    if not path.is_file():
        raise FileNotFoundError(f"softprompt_serve needs the plugin's fingerprint rules at {path}; run it from a checkout "
                                "of the repository (or with peft_softprompt_ext installed).")  # fmt: skip
    spec = importlib.util.spec_from_file_location("softprompt_serve._fingerprint_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
