"""Converts PyTorch checkpoints (`.pth` or `.safetensors`) into selax variables and saves them as an orbax
checkpoint; `torch_state_dict` is the way back (`python -m selax.export --weights=...`).

Architectures (`--arch`):
  resnet50       torchvision-layout ResNet-50 (`conv1`, `bn1`, `layer1.0.downsample.0`, ...); `fc.*` is dropped.
  swav_resnet50  the SwAV release: the same ResNet-50 under `module.`, plus `projection_head.{0,1,3}` converted
                 to selax's `heads.Projector` (dense0, bn0, dense1); `prototypes.*` is dropped.
  dino_vits16    DINO's ViT-S/16 (`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.*`, `norm`); a
                 `backbone.` prefix is stripped and `head.*` (the DINO head) is dropped.

The result is `{'params': {'encoder': ..., ['projector': ...]}, 'batch_stats': {...}}` (batch_stats only for
ResNets), matching `build_encoder('resnet50' | 'vit_s16')` and `heads.Projector`.

Checkpoints are read with `torch.load(path, map_location='cpu', weights_only=True)`: only tensors and plain
containers are unpickled, so a malicious file cannot run code. torch is needed only here and is imported lazily.

Usage: python -m selax.models.convert --arch resnet50 --input resnet50.pth --output /abs/dir
"""

import argparse
import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from selax.models import build_encoder
from selax.models.heads import Projector

ARCHS = ("resnet50", "swav_resnet50", "dino_vits16")
# Entries that belong to heads selax does not convert; reported, then left out.
DROPPED_PREFIXES = {"resnet50": ("fc.",), "swav_resnet50": ("prototypes.", "fc."), "dino_vits16": ("head.",)}
STRIPPED_PREFIXES = ("module.", "backbone.")
# SwAV's projection head (Linear, BatchNorm1d, ReLU, Linear) by index, as selax's `heads.Projector` names it.
SWAV_PROJECTOR = {"dense0": "0", "bn0": "1", "dense1": "3"}


def load_torch_state_dict(path: str, checkpoint_key: str | None = None) -> dict[str, np.ndarray]:
    """Reads a PyTorch checkpoint safely (`weights_only=True`), or a `.safetensors` file (no torch needed),
    into `{name: float32 array}`.

    The tensors may sit at the top level, under `checkpoint_key` (e.g. 'teacher' in DINO's full
    checkpoints), or under 'state_dict'.
    """
    if path.endswith(".safetensors"):  # Read without torch.
        from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel

        return {key: value.astype(np.float32) for key, value in load_file(path).items()}
    import torch  # pylint: disable=import-outside-toplevel

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint_key is not None:
        if checkpoint_key not in checkpoint:
            raise ValueError(
                f"{path} has no entry {checkpoint_key!r}; its top-level keys are {sorted(checkpoint)}."
            )
        checkpoint = checkpoint[checkpoint_key]
    elif not all(torch.is_tensor(value) for value in checkpoint.values()) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    non_tensors = sorted(key for key, value in checkpoint.items() if not torch.is_tensor(value))
    if non_tensors:
        raise ValueError(
            f"{path}: entries {non_tensors} are not tensors; pass --checkpoint-key naming the state dict."
        )
    return {key: value.detach().float().numpy() for key, value in checkpoint.items()}


def flax_path(arch: str, key: str) -> tuple[str, tuple[str, ...]] | None:
    """Maps one PyTorch name to `(collection, path)` in the selax variables, or None for a counter to skip.

    Leaf names: conv/linear `weight` -> `kernel`, 1-d `weight` (norm layers) -> `scale`, `bias` -> `bias`,
    `running_mean`/`running_var` -> `batch_stats` `mean`/`var`; parameters without a module (`cls_token`,
    `pos_embed`) keep their name.
    """
    if arch == "swav_resnet50" and key.startswith("projection_head."):
        layer = {index: name for name, index in SWAV_PROJECTOR.items()}.get(key.split(".")[1], key.split(".")[1])
        module, leaf = ("projector", layer), key.split(".")[2]
    else:
        name = re.sub(r"^(layer\d|blocks)\.(\d+)\.", r"\1_\2.", key)
        name = name.replace("downsample.0.", "downsample_conv.").replace("downsample.1.", "downsample_bn.")
        name = name.replace("patch_embed.proj.", "patch_embed.")
        *modules, leaf = name.split(".")
        module = ("encoder", *modules)
    if leaf == "num_batches_tracked":
        return None
    if leaf in ("running_mean", "running_var"):
        return "batch_stats", module + ({"running_mean": "mean", "running_var": "var"}[leaf],)
    return "params", module + (leaf,)


def to_flax_layout(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """PyTorch leaf -> (flax leaf name, array): OIHW conv -> HWIO kernel, [out, in] linear -> [in, out]."""
    if name == "weight":
        if value.ndim == 4:
            return "kernel", value.transpose(2, 3, 1, 0)
        if value.ndim == 2:
            return "kernel", value.T
        return "scale", value
    return name, value


def target_variables(
    arch: str, state_dict: Mapping[str, np.ndarray], encoder_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Abstract selax variables (shapes only) the converted checkpoint must fill."""
    encoder = build_encoder("vit_s16" if arch == "dino_vits16" else "resnet50", **encoder_kwargs)
    size = getattr(encoder, "image_size", 224)
    images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    encoder_variables = jax.eval_shape(encoder.init, jax.random.key(0), images)
    targets = {collection: {"encoder": tree} for collection, tree in encoder_variables.items()}
    if arch == "swav_resnet50":
        hidden, features = state_dict["projection_head.0.weight"].shape
        projector = Projector(
            hidden_dims=(hidden,), output_dim=state_dict["projection_head.3.weight"].shape[0]
        )
        projector_variables = jax.eval_shape(
            projector.init, jax.random.key(0), jax.ShapeDtypeStruct((2, features), jnp.float32)
        )
        for collection, tree in projector_variables.items():
            targets[collection]["projector"] = tree
    return targets


def convert_state_dict(
    arch: str, state_dict: Mapping[str, np.ndarray], encoder_kwargs: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Converts a PyTorch state dict of `arch` into selax variables.

    `encoder_kwargs` override the target encoder's fields (e.g. `depth`, `embed_dim`, `num_heads` for other
    ViT sizes); the default is the published architecture.

    Returns `(variables, dropped)`: `{'params': ..., ['batch_stats': ...]}` of float32 numpy arrays and the
    names of the entries deliberately left out (classifier, prototypes, DINO head). Raises ValueError listing
    the PyTorch entries that match no selax variable (or have the wrong shape) and the selax variables
    that no entry filled.
    """
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}; choose one of {ARCHS}.")
    stripped = {}
    for key, value in state_dict.items():
        for prefix in STRIPPED_PREFIXES:
            key = key.removeprefix(prefix)
        stripped[key] = value
    dropped = sorted(key for key in stripped if key.startswith(DROPPED_PREFIXES[arch]))
    if arch == "swav_resnet50" and not {"projection_head.0.weight", "projection_head.3.weight"} <= set(
        stripped
    ):
        raise ValueError(
            "swav_resnet50 expects projection_head.0.weight and projection_head.3.weight "
            "(Linear, BatchNorm1d, ReLU, Linear); use --arch resnet50 for a bare ResNet-50."
        )
    targets = {
        (collection,) + tuple(k.key for k in path): leaf
        for collection, tree in target_variables(arch, stripped, encoder_kwargs or {}).items()
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    converted, unmatched = {}, []
    for key, value in stripped.items():
        if key in dropped:
            continue
        location = flax_path(arch, key)
        if location is None:
            continue
        collection, path = location
        leaf, array = to_flax_layout(path[-1], value)
        full_path = (collection, *path[:-1], leaf)
        target = targets.get(full_path)
        if target is None:
            unmatched.append(f"{key} (no selax variable {'/'.join(full_path)})")
        elif target.shape != array.shape:
            unmatched.append(
                f"{key} (shape {array.shape} after transposing, selax {'/'.join(full_path)} has {target.shape})"
            )
        else:
            converted[full_path] = np.asarray(array, np.float32)
    missing = sorted("/".join(path) for path in targets if path not in converted)
    if unmatched or missing:
        raise ValueError(
            f"Checkpoint does not fit --arch {arch}.\n  Unmatched checkpoint entries ({len(unmatched)}): "
            f"{unmatched}\n  Missing selax variables ({len(missing)}): {missing}"
        )
    variables: dict[str, Any] = {}
    for path, array in converted.items():
        node = variables
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = array
    return variables, dropped


def torch_name(collection: str, path: tuple[str, ...]) -> str:
    """The PyTorch name of the selax variable `collection/path`: the inverse of `flax_path` (torchvision's
    ResNet layout, DINO's ViT layout, SwAV's `projection_head.{0,1,3}` for a one-hidden-layer projector)."""
    *modules, leaf = path
    if collection == "batch_stats":
        leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
    elif leaf in ("kernel", "scale"):
        leaf = "weight"
    if modules[0] == "projector" and len(modules) == 2 and modules[1] in SWAV_PROJECTOR:
        return f"projection_head.{SWAV_PROJECTOR[modules[1]]}.{leaf}"
    name = ".".join((modules[1:] if modules[0] == "encoder" else modules) + [leaf])
    name = re.sub(r"^(layer\d|blocks)_(\d+)\.", r"\1.\2.", name)
    name = name.replace("downsample_conv.", "downsample.0.").replace("downsample_bn.", "downsample.1.")
    return re.sub(r"^patch_embed\.(weight|bias)$", r"patch_embed.proj.\1", name)


def torch_state_dict(variables: Mapping[str, Any], modules: tuple[str, ...] = ("encoder", "projector")) -> dict[str, np.ndarray]:
    """selax variables -> a PyTorch state dict of `modules` (the reverse of `convert_state_dict`): HWIO
    conv kernels -> OIHW, [in, out] dense kernels -> [out, in]; the encoder's names unprefixed."""
    state_dict = {}
    for collection, tree in variables.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            keys = tuple(k.key for k in path)
            if keys[0] not in modules:
                continue
            array = np.asarray(leaf, np.float32)
            if keys[-1] == "kernel":
                array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
            state_dict[torch_name(collection, keys)] = np.ascontiguousarray(array)
    return state_dict


def save_torch_state_dict(state_dict: Mapping[str, np.ndarray], path: str) -> None:
    """Writes `state_dict` as `.safetensors` (needs `safetensors`, not torch) or as a torch `.pth`."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel

        save_file(dict(state_dict), path)
        return
    import torch  # pylint: disable=import-outside-toplevel

    torch.save({key: torch.from_numpy(np.array(value)) for key, value in state_dict.items()}, path)  # Own, writable copies.


def save_converted(variables: dict[str, Any], path: str) -> None:
    """Writes converted variables as an orbax checkpoint at the absolute directory `path` (must not exist)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    if os.path.exists(path):
        raise ValueError(f"Output {path} already exists; choose a new directory.")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.abspath(path), variables)
    checkpointer.wait_until_finished()


def load_converted(path: str) -> dict[str, Any]:
    """Reads variables written by `save_converted`: `{'params': {'encoder', ['projector']}, ['batch_stats']}`."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    return ocp.StandardCheckpointer().restore(os.path.abspath(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", required=True, choices=ARCHS)
    parser.add_argument("--input", required=True, help="PyTorch checkpoint (.pth / .pth.tar)")
    parser.add_argument("--output", required=True, help="new directory for the orbax checkpoint")
    parser.add_argument("--checkpoint-key", default=None, help="entry holding the state dict, e.g. 'teacher'")
    args = parser.parse_args(argv)
    variables, dropped = convert_state_dict(args.arch, load_torch_state_dict(args.input, args.checkpoint_key))
    save_converted(variables, args.output)
    count = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    print(f"Converted {args.arch}: {count:,} parameters -> {os.path.abspath(args.output)}")
    if dropped:
        print(f"Dropped {len(dropped)} entries not converted by design: {dropped}")


if __name__ == "__main__":
    main()
