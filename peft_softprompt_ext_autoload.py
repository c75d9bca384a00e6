"""Register peft_softprompt_ext's methods with PEFT as soon as PEFT is imported.

Installed as `peft_softprompt_ext-autoload.pth` beside the package, this runs at interpreter
start-up (as `.pth` import lines do) and only adds an import hook: nothing is imported until some
code imports `peft`. Then, right after PEFT has loaded, it imports `peft_softprompt_ext`, so a plugin
adapter loads with plain PEFT code (`PeftModel.from_pretrained(base, folder)`) in a process that
never wrote `import peft_softprompt_ext`, instead of failing with `KeyError: 'VOCAB_SAMPLED_...'`.

`PEFT_SOFTPROMPT_EXT_AUTOLOAD=0` turns it off. If the plugin cannot be imported (e.g. an
unsupported PEFT release), PEFT still imports; a warning says why the plugin is not registered.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import warnings

ENV_SWITCH = "PEFT_SOFTPROMPT_EXT_AUTOLOAD"


class _AfterPeftImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when `peft` is imported, wraps its loader to import the plugin after it."""

    def find_spec(self, name, path=None, target=None):
        if name != "peft":
            return None
        sys.meta_path.remove(self)  # one shot, and no recursion into the search below
        spec = importlib.util.find_spec("peft")
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _register_plugin()

        spec.loader.exec_module = exec_module
        return spec


def _register_plugin() -> None:
    try:
        import peft_softprompt_ext  # noqa: F401  (registers its methods with PEFT)
    except Exception as error:  # PEFT itself must keep working whatever happens here
        warnings.warn(f"peft_softprompt_ext is installed but was not registered with PEFT: {error}", stacklevel=3)


def install() -> None:
    if os.environ.get(ENV_SWITCH, "1") == "0" or "peft" in sys.modules:
        return
    if not any(isinstance(finder, _AfterPeftImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterPeftImport())


install()
