"""Exports a trained run's predictions, features and embeddings (`selax.results`).

    python -m selax.export --workdir=W [--split=test,train] [--out=W/export]

writes `OUT/<split>.csv` (one row per image) and `OUT/<split>.npz` for each split: `test`, `train` (every
training image, with SeLa's current pseudo-labels) or `labeled`; with `--weights=PATH.pth` (or
`.safetensors`), the trained network as a PyTorch state dict (`selax.results.export_weights`).
"""

import os
from collections.abc import Sequence

from absl import app, flags

from selax import results

_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir of a selax run.")
_SPLIT = flags.DEFINE_list("split", ["test"], f"Splits to export, of {list(results.SPLITS)} (train: every training image).")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/export).")
_WEIGHTS = flags.DEFINE_string(
    "weights", None, "Also write the trained network as a PyTorch state dict here (.pth, or .safetensors)."
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    splits = results.checked_splits(_SPLIT.value)
    experiment, state = results.load_run(_WORKDIR.value)  # Once, for the splits and the weights.
    out_dir = _OUT.value or os.path.join(_WORKDIR.value, "export")
    for split, path in results.export_splits(experiment, state, splits, out_dir).items():
        print(f"{split}: {path}")
    if _WEIGHTS.value:
        count = results.export_weights(experiment, state, _WEIGHTS.value)
        print(f"weights: {_WEIGHTS.value} ({count} tensors)")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
