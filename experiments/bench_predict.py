"""Whole-split passes (evaluation, SeLa's label step): images/s with and without reading ahead.

    python experiments/bench_predict.py [--images 3000] [--size 48] [--repeats 3]

Writes a folder of random JPEGs (`--images`, `--size` px, 10 classes), builds `configs/folder.py:sela` on
it with the images decoded batch by batch on the host (`selax.data.folders.IN_MEMORY_BYTES = 0`, as a
folder too large for memory is read), and times SeLa's label pass over the training split
(`Experiment.train_embeddings(state, "training", key)`, i.e. `selax.train.predict_split`) against the
loop it replaced, which read each batch only after the previous one's outputs had reached the host.
Prints a table and writes experiments/results/bench_predict.json.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from selax import train  # noqa: E402
from selax.config_fields import sibling  # noqa: E402
from selax.data import folders, pipeline  # noqa: E402

RESULTS = os.path.join(REPO, "experiments", "results", "bench_predict.json")


def sequential_predict_split(predict, variables, split, mesh, batch_size, keys, key):
    """The previous `predict_split`: read, run, copy to the host, one batch after the other."""
    outputs = {}
    for positions, _ in pipeline.eval_batches(split.size, batch_size):
        images, labels = split.read(positions)
        batch = pipeline.global_batch(mesh, dict(images=images, labels=labels, positions=positions.astype(np.int32)))
        result = jax.device_get({k: v for k, v in predict(variables, batch, key).items() if k in keys})
        for name, value in result.items():
            outputs.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(values)[: split.size] for name, values in outputs.items()}


def write_folder(root: str, count: int, size: int) -> str:
    rng = np.random.default_rng(0)
    for index in range(count):
        path = os.path.join(root, "train", f"class_{index % 10}", f"{index:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
    return os.path.join(root, "train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench_predict_")
    os.environ.setdefault("TFDS_DATA_DIR", os.path.join(root, "tfds"))
    config = sibling(os.path.join(REPO, "configs", "folder.py"), "folder").get_config("sela")
    config.dataset.train_dir = write_folder(root, args.images, args.size)
    folders.IN_MEMORY_BYTES = 0  # Decoded on the host as read, as a large folder is.
    experiment = train.Experiment(config, train.sharding.data_mesh())
    state = experiment.init_state()
    key = jax.random.key(0)
    predictor = experiment._predictors["training"]  # pylint: disable=protected-access
    variables = experiment.eval_variables(state)
    passes = {
        "read, run, copy, one batch after the other (before)": lambda: sequential_predict_split(
            predictor, variables, experiment.train, experiment.mesh, config.batch.eval, ("embedding",), key
        ),
        "next batch read while this one runs (selax.train.predict_split)": lambda: train.predict_split(
            predictor, variables, experiment.train, experiment.mesh, config.batch.eval, ("embedding",), key
        ),
    }
    reference = None
    rows = []
    for name, run in passes.items():
        embeddings = run()["embedding"]  # Compiles; also the check that both give the same rows.
        reference = embeddings if reference is None else reference
        np.testing.assert_allclose(embeddings, reference, rtol=0, atol=1e-6)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        rows.append(dict(loop=name, seconds=float(np.median(seconds)), images_per_second=experiment.train.size / float(np.median(seconds))))
    load = os.getloadavg()
    print(f"SeLa label pass over {experiment.train.size} {args.size}px JPEGs decoded on the host, "
          f"{jax.device_count()} device(s), {os.cpu_count()} cores, load average {load[0]:.2f}")
    print(f"{'loop':<70} {'s / pass':>9} {'images/s':>9}")
    for row in rows:
        print(f"{row['loop']:<70} {row['seconds']:>9.2f} {row['images_per_second']:>9.0f}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(dict(args=vars(args), load_average=load, images=experiment.train.size, rows=rows), f, indent=2)


if __name__ == "__main__":
    main()
