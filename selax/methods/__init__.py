"""The method registry: every module of this package that defines `METHOD` (a `selax.methods.base.Method`)
is a method, named by its module (`suave`, `daino`, `sela`, `swav`, `dino`); its config section is
`config.<name>`. Adding a method is adding its module: nothing else lists it.
"""

import functools
import importlib
import pkgutil

from selax.methods.base import Method


@functools.cache
def method_names() -> tuple[str, ...]:
    """The registered methods, sorted."""
    names = []
    for module in pkgutil.iter_modules(__path__):
        if hasattr(importlib.import_module(f"{__name__}.{module.name}"), "METHOD"):
            names.append(module.name)
    return tuple(sorted(names))


def get_method(name: str) -> Method:
    """The method registered as `name`; ValueError naming `config.method` and the known methods otherwise."""
    if name not in method_names():
        raise ValueError(f"config.method={name!r} is not one of {list(method_names())}.")
    return importlib.import_module(f"{__name__}.{name}").METHOD
