"""One attribute of one object, set in the instance's own `__dict__` for a block and put back after: the plugin's way
to give a model a method of its own for one call (a generate's step method, a forward that runs a prompt in its
layers) without touching its class or other instances."""

from __future__ import annotations

import contextlib

MISSING = object()  # "no attribute of the instance's own": the class's shows through


@contextlib.contextmanager
def instance_attribute(owner, name: str, value):
    """`owner.<name>` is `value` for the block (none of its own where `value` is `MISSING`), set in the instance's own
    `__dict__` (over the class's method), and afterwards what the instance held before (an outer call's, or one the
    user set, or accelerate's), or nothing."""

    def hold(held):
        if held is MISSING:
            owner.__dict__.pop(name, None)
        else:
            owner.__dict__[name] = held

    before = owner.__dict__.get(name, MISSING)
    hold(value)
    try:
        yield
    finally:
        hold(before)
