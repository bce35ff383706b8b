"""The methods: each a module of a few pure functions that the shared loop calls.

A method module provides:
  `SEMI_SUPERVISED`: True when it trains on a labeled stream too (Suave, Daino), False when it uses
    no label (SeLa: `config.batch.labeled` may be 0, and evaluation reports clustering metrics);
  `hparams_from_config(config, num_classes, num_examples)`, `build_head(hp)`,
  `init_extras(hp, params, batch_stats)`,
  `loss_fn(hp, apply_fn, params, batch_stats, extras, views, labels, step, rng)` ->
    `(loss, (batch_stats, extras, metrics))`,
  `mask_gradients(hp, grads, step)`, `after_update(hp, params, extras, step)` -> `(params, extras)`,
  `extras_update_steps(hp)`: the steps before which the loop calls
  `update_extras(hp, extras, train_embeddings, params)` with the embeddings `[N, E]` of the whole
    training split and the evaluated params (SeLa's label updates); a method with such steps has
    `hp.label_views`: "augmented" (each image through one training view) or "clean" (eval transform),
  `eval_variables(params, batch_stats, extras)`: the variables evaluation reads (Daino: the teacher's).
"""

import importlib
from types import ModuleType

METHODS = ("suave", "daino", "sela")


def get_method(name: str) -> ModuleType:
    """The module implementing method `name`."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}: config.method must be one of {METHODS}.")
    return importlib.import_module(f"selax.methods.{name}")
