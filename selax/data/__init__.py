"""Data: tfds datasets (`datasets`), labeled subsets (`splits`), resumable streams and sharding
(`pipeline`), on-device augmentations (`augment`). Import the submodule you need."""
