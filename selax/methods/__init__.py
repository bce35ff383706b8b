"""The methods: each a module of a few pure functions that the shared loop calls.

A method module provides `hparams_from_config(config, num_classes)`, `build_head(hp)`,
`init_extras(hp, params)`, `loss_fn(hp, apply_fn, params, batch_stats, extras, views, labels, step, rng)`,
`mask_gradients(hp, grads, step)`, `after_update(hp, params, extras, step)` and
`eval_variables(params, batch_stats, extras)`.
"""

import importlib
from types import ModuleType

METHODS = ("suave",)


def get_method(name: str) -> ModuleType:
    """The module implementing method `name`."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}: config.method must be one of {METHODS}.")
    return importlib.import_module(f"selax.methods.{name}")
