"""Only what pyproject.toml cannot say: install `peft_softprompt_ext-autoload.pth` beside the package.

A `.pth` file in site-packages runs its `import` line at interpreter start-up; ours imports
`peft_softprompt_ext_autoload`, which registers the plugin with PEFT once PEFT is imported (see that
module). Editable installs (`pip install -e .`) do not carry it: import the plugin explicitly there.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "peft_softprompt_ext-autoload.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
