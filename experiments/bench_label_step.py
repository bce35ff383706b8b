"""SeLa's label update at ImageNet scale on one host: time and peak memory.

Runs `selax.methods.sela.pseudo_labels`, the function the training loop calls at every label update,
on synthetic float32 embeddings of the ImageNet train set (1,281,167 x 2048: ResNet-50 features, as
`configs/sela_imagenet.py` trains linear heads on them) and T heads of 3000 clusters, with the config's
`label_step_dtype` (bfloat16), lambda 25 and tolerance 1e-3. Each head's log-probabilities are computed
from the embeddings in chunks and solved before the next head's are made, so memory should not grow
with T. Beside it, the memory that holding every head's float32 scores `[N, T, K]` would take (what a
direct implementation keeps), computed, not run.

    python experiments/bench_label_step.py [--heads 2] [--num_examples 1281167]

Run it alone: the embeddings take 9.8 GiB and one head's log-probabilities 7.2 GiB. Prints a table and
writes experiments/results/bench_label_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench_sinkhorn import rss_gib  # experiments/ is on sys.path when this script runs
from selax.methods import sela

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_embeddings(num_examples: int, dim: int, num_clusters: int, seed: int = 0) -> np.ndarray:
    """float32 `[N, dim]`: non-negative (post-ReLU-like) features around `num_clusters` centres."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((num_clusters, dim), dtype=np.float32))
    embeddings = np.empty((num_examples, dim), np.float32)
    block = 65536
    for start in range(0, num_examples, block):
        rows = min(block, num_examples - start)
        noise = np.abs(rng.standard_normal((rows, dim), dtype=np.float32))
        embeddings[start : start + rows] = centres[rng.integers(0, num_clusters, rows)] + 0.5 * noise
    return embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_examples", type=int, default=1_281_167)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--clusters", type=int, default=3000)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "bench_label_step.json"))
    args = parser.parse_args()

    hp = sela.HParams(
        num_clusters=args.clusters,
        num_heads=args.heads,
        num_examples=args.num_examples,
        num_steps=1,
        num_label_updates=1,
        label_step_dtype=args.dtype,
    )
    embeddings = synthetic_embeddings(args.num_examples, args.dim, args.clusters)
    prototypes = jax.random.normal(jax.random.PRNGKey(1), (args.heads, args.dim, args.clusters)) / np.sqrt(
        args.dim
    )
    embeddings_gib = embeddings.nbytes / 2**30
    with open("/proc/self/clear_refs", "w") as clear_refs:  # Peak RSS from here on (Linux >= 4.0).
        clear_refs.write("5")
    rss_before = rss_gib("VmRSS")
    load_at_start = os.getloadavg()[0]
    start = time.perf_counter()
    labels = np.asarray(sela.pseudo_labels(hp, embeddings, prototypes))
    wall_s = time.perf_counter() - start
    peak = rss_gib("VmHWM")

    counts = [np.bincount(head, minlength=args.clusters) for head in labels]
    per_head_gib = args.num_examples * args.clusters * jnp.dtype(args.dtype).itemsize / 2**30
    dense_gib = args.num_examples * args.heads * args.clusters * 4 / 2**30
    result = dict(
        num_examples=args.num_examples,
        embedding_dim=args.dim,
        clusters=args.clusters,
        heads=args.heads,
        label_step_dtype=args.dtype,
        lam=hp.lam,
        sinkhorn_tol=hp.sinkhorn_tol,
        wall_s_incl_compile=round(wall_s, 1),
        wall_s_per_head=round(wall_s / args.heads, 1),
        embeddings_gib=round(embeddings_gib, 2),
        log_probs_per_head_gib=round(per_head_gib, 2),
        rss_before_gib=round(rss_before, 2),
        peak_rss_gib=round(peak, 2),
        peak_minus_embeddings_gib=round(peak - embeddings_gib, 2),
        dense_float32_scores_gib=round(dense_gib, 1),
        cluster_size_min_max=[[int(c.min()), int(c.max())] for c in counts],
        load_average_at_start=round(load_at_start, 2),
        devices=f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    )
    print(f"SeLa label step: N={args.num_examples:,}, E={args.dim}, {args.heads} heads x {args.clusters}")
    print(f"{'implementation':<44} {'s/head':>8} {'peak GiB':>9} {'beyond embeddings':>18}")
    print(
        f"{'selax pseudo_labels (' + args.dtype + ', head by head)':<44} {result['wall_s_per_head']:>8.1f} "
        f"{peak:>9.2f} {peak - embeddings_gib:>18.2f}"
    )
    print(f"{'every head float32 [N, T, K] (computed)':<44} {'-':>8} {'-':>9} {dense_gib:>18.1f}")
    print("cluster sizes (min, max) per head:", result["cluster_size_min_max"])
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
