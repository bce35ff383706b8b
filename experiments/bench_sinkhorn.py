"""Benchmark selax.sinkhorn against ott-jax, POT and a plain exp-domain SwAV loop (CPU).

Usage (from the repository root):
  python experiments/bench_sinkhorn.py                 # dense table (a few minutes)
  python experiments/bench_sinkhorn.py --whole-dataset # SeLa-size labels row, run alone (~8 GiB)

Every solver gets the same float32 scores. Reported per (case, solver):
  ms_per_iter       (t(n2 iterations) - t(n1 iterations)) / (n2 - n1), best of several runs;
  floor_fraction    bandwidth floor / ms_per_iter, where the floor is two reads of the N x K
                    float32 matrix at the bandwidth measured in this run (1.0 = at the floor);
  time_to_tol_ms    wall time of one solve to column-marginal L1 error < 1e-3 (compile excluded),
                    with the error the solver actually reached (computed here from its output);
  compile_s         jit lowering + compilation time (JAX solvers only).
A missing peer (ott-jax, POT) is skipped with a printed note. Results are merged into
experiments/results/bench_sinkhorn.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from selax.sinkhorn import sinkhorn, sinkhorn_labels  # noqa: E402

RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_sinkhorn.json")
TOL = 1e-3
MAX_ITERS = 2000
# Peers slower than this per solve are not run to tolerance (the row says why).
SOLVE_BUDGET_S = 60.0


def best_time(fn, repeats: int = 5) -> float:
    """Best wall time in seconds of fn() (which must block until its result is ready)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_bandwidth_gb_s() -> float:
    """Read bandwidth of a 512 MiB float32 reduction in XLA, best of 5."""
    data = jnp.ones((128 * 1024 * 1024,), jnp.float32)
    total = jax.jit(jnp.sum)
    seconds = best_time(lambda: total(data).block_until_ready(), repeats=5)
    return data.nbytes / seconds / 1e9


def column_error(plan: np.ndarray) -> float:
    """Column marginal L1 error of a plan, relative to its total mass (uniform target)."""
    plan = np.asarray(plan, np.float64)
    total = plan.sum()
    return float(np.abs(plan.sum(axis=0) / total - 1.0 / plan.shape[1]).sum())


def cosine_scores(num_samples: int, num_prototypes: int, dim: int = 16, seed: int = 0) -> jax.Array:
    key_z, key_c = jax.random.split(jax.random.PRNGKey(seed))
    z = jax.random.normal(key_z, (num_samples, dim))
    c = jax.random.normal(key_c, (num_prototypes, dim))
    z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    c = c / jnp.linalg.norm(c, axis=1, keepdims=True)
    return (z @ c.T).block_until_ready()


def log_softmax_scores(num_samples: int, num_prototypes: int, seed: int = 1) -> jax.Array:
    return jax.nn.log_softmax(8.0 * cosine_scores(num_samples, num_prototypes, seed=seed), axis=1)


# ---------------------------------------------------------------- solvers
# Each solver returns (run_fixed(num_iters) -> seconds, solve_to_tol() -> (seconds, plan, iters),
# compile_seconds or None).


def selax_solver(scores, epsilon):
    def fixed(num_iters):
        return best_time(lambda: sinkhorn(scores, epsilon, num_iters=num_iters).block_until_ready())

    def to_tol():
        run = lambda: sinkhorn(scores, epsilon, tol=TOL, max_iters=MAX_ITERS, return_plan=True,
                               return_info=True)
        jax.block_until_ready(run())
        start = time.perf_counter()
        plan, info = jax.block_until_ready(run())
        return time.perf_counter() - start, plan, int(info.num_iters_run)

    start = time.perf_counter()
    jax.jit(lambda s: sinkhorn(s, epsilon, tol=TOL, max_iters=MAX_ITERS)).lower(scores).compile()
    return fixed, to_tol, time.perf_counter() - start


def exp_domain_solver(scores, epsilon):
    """SwAV-style loop: normalize exp(S / eps) by columns then rows, in place."""
    num_samples, num_prototypes = scores.shape

    def iteration(q):
        q = q / (jnp.sum(q, axis=0, keepdims=True) * num_prototypes)
        return q / (jnp.sum(q, axis=1, keepdims=True) * num_samples)

    @jax.jit
    def fixed_jit(s, num_iters):
        q = jnp.exp(s / epsilon)
        return jax.lax.fori_loop(0, num_iters, lambda _, q: iteration(q), q / jnp.sum(q))

    @jax.jit
    def tol_jit(s):
        def cond(carry):
            _, error, it = carry
            return (error >= TOL) & (it < MAX_ITERS)

        def body(carry):
            q, _, it = carry
            q = iteration(q)
            return q, jnp.sum(jnp.abs(jnp.sum(q, axis=0) - 1.0 / num_prototypes)), it + 1

        q = jnp.exp(s / epsilon)
        return jax.lax.while_loop(cond, body, (q / jnp.sum(q), jnp.float32(jnp.inf), 0))

    def fixed(num_iters):
        return best_time(lambda: fixed_jit(scores, num_iters).block_until_ready())

    def to_tol():
        jax.block_until_ready(tol_jit(scores))
        start = time.perf_counter()
        plan, _, iters = jax.block_until_ready(tol_jit(scores))
        return time.perf_counter() - start, plan, int(iters)

    start = time.perf_counter()
    tol_jit.lower(scores).compile()
    return fixed, to_tol, time.perf_counter() - start


def ott_solver(scores, epsilon):
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn

    def make_solve(**solver_kwargs):
        solver = ott_sinkhorn.Sinkhorn(lse_mode=True, **solver_kwargs)

        @jax.jit
        def solve(s):
            problem = linear_problem.LinearProblem(geometry.Geometry(cost_matrix=-s, epsilon=epsilon))
            return solver(problem)

        return solve

    def fixed(num_iters):
        solve = make_solve(threshold=-1.0, min_iterations=num_iters, max_iterations=num_iters,
                           inner_iterations=1)
        return best_time(lambda: jax.block_until_ready(solve(scores).f))

    solve_tol = make_solve(threshold=TOL, max_iterations=MAX_ITERS)  # its L1 criterion, checked every 10

    def to_tol():
        jax.block_until_ready(solve_tol(scores).f)
        start = time.perf_counter()
        out = solve_tol(scores)
        jax.block_until_ready(out.f)
        seconds = time.perf_counter() - start
        return seconds, out.matrix, int(out.n_iters)

    start = time.perf_counter()
    solve_tol.lower(scores).compile()
    return fixed, to_tol, time.perf_counter() - start


def pot_solver(scores, epsilon, iters_to_tol):
    """POT's NumPy log-domain solver; run for the iteration count selax needed (its own stopping
    test is an L2 norm checked every 10 iterations)."""
    import ot

    cost = -np.asarray(scores, np.float32)
    a = np.full(cost.shape[0], 1.0 / cost.shape[0], np.float32)
    b = np.full(cost.shape[1], 1.0 / cost.shape[1], np.float32)

    def run(num_iters):
        return ot.bregman.sinkhorn_log(a, b, cost, epsilon, numItermax=num_iters, stopThr=0.0, warn=False)

    def fixed(num_iters):
        return best_time(lambda: run(num_iters), repeats=1)

    def to_tol():
        start = time.perf_counter()
        plan = run(iters_to_tol)
        return time.perf_counter() - start, plan, iters_to_tol

    return fixed, to_tol, None


def peer_versions() -> dict:
    versions = {"jax": jax.__version__, "numpy": np.__version__}
    for module in ("ott", "ot"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return versions


# (n1, n2) iteration counts whose time difference gives ms per iteration, per solver speed.
ITERS_FAST = (4, 64)
ITERS_SLOW = (4, 24)
ITERS_POT = (2, 8)


def bench_case(name, scores, epsilon, bandwidth_gb_s):
    num_samples, num_prototypes = scores.shape
    floor_ms = 2 * num_samples * num_prototypes * 4 / (bandwidth_gb_s * 1e9) * 1e3
    rows = []
    selax_iters = None
    makers = [("selax", selax_solver), ("ott-jax (lse)", ott_solver),
              ("POT sinkhorn_log", None), ("exp-domain SwAV loop", exp_domain_solver)]
    for solver_name, maker in makers:
        row = {"case": name, "solver": solver_name, "N": num_samples, "K": num_prototypes,
               "epsilon": epsilon, "floor_ms": floor_ms}
        try:
            if solver_name == "POT sinkhorn_log":
                fixed, to_tol, compile_s = pot_solver(scores, epsilon, selax_iters)
                iters = ITERS_POT
            else:
                fixed, to_tol, compile_s = maker(scores, epsilon)
                iters = ITERS_SLOW if solver_name.startswith("ott") else ITERS_FAST
            ms = (fixed(iters[1]) - fixed(iters[0])) / (iters[1] - iters[0]) * 1e3
        except ImportError as error:
            print(f"  note: {solver_name} skipped ({error}); pip install ott-jax pot")
            row["note"] = f"not installed: {error}"
            rows.append(row)
            continue
        row.update(ms_per_iter=ms, floor_fraction=floor_ms / ms, compile_s=compile_s)
        estimate_s = ms * (selax_iters or 50) / 1e3
        if solver_name == "POT sinkhorn_log" and selax_iters is None:
            row["note"] = "to-tolerance run skipped: selax did not report an iteration count"
        elif estimate_s > SOLVE_BUDGET_S:
            row["note"] = f"to-tolerance run skipped: about {estimate_s:.0f} s"
        else:
            seconds, plan, num_iters_run = to_tol()
            error = column_error(plan)
            row.update(time_to_tol_ms=seconds * 1e3, iters_to_tol=num_iters_run, final_col_l1=error,
                       finite=bool(np.all(np.isfinite(np.asarray(plan)))))
            if not row["finite"]:
                row["note"] = "result has NaN/inf"
            if solver_name == "selax":
                selax_iters = num_iters_run
        rows.append(row)
        print_row(row)
    return rows


def print_row(row):
    def fmt(key, spec):
        value = row.get(key)
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    print(f"{row['case']:<22} {row['solver']:<22} {fmt('ms_per_iter', '9.2f')} "
          f"{fmt('floor_ms', '7.2f')} {fmt('floor_fraction', '6.2f')} {fmt('time_to_tol_ms', '10.1f')} "
          f"{fmt('iters_to_tol', '6d')} {fmt('final_col_l1', '9.2e')} {fmt('compile_s', '7.2f')} "
          f"{row.get('note', '')}", flush=True)


def rss_gib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise KeyError(field)


def bench_whole_dataset(num_samples=1_281_167, num_prototypes=3000, chunk_size=1024):
    """SeLa label update at ImageNet size: bf16 log-softmax scores, epsilon = 1/25, tol 1e-3."""
    block = 4096

    @jax.jit
    def make_scores(key, prototypes):
        def fill(b, scores):
            start = jnp.minimum(b * block, num_samples - block)
            feats = jax.random.normal(jax.random.fold_in(key, b), (block, prototypes.shape[1]))
            feats = feats / jnp.linalg.norm(feats, axis=1, keepdims=True)
            rows = jax.nn.log_softmax(8.0 * feats @ prototypes.T, axis=1).astype(jnp.bfloat16)
            return jax.lax.dynamic_update_slice_in_dim(scores, rows, start, axis=0)

        scores = jnp.zeros((num_samples, num_prototypes), jnp.bfloat16)
        return jax.lax.fori_loop(0, -(-num_samples // block), fill, scores)

    prototypes = jax.random.normal(jax.random.PRNGKey(2), (num_prototypes, 32))
    prototypes = prototypes / jnp.linalg.norm(prototypes, axis=1, keepdims=True)
    scores = make_scores(jax.random.PRNGKey(3), prototypes).block_until_ready()
    input_gib = scores.nbytes / 2**30
    # Reset the peak-RSS watermark so that it measures the solve only (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    rss_before = rss_gib("VmRSS")
    start = time.perf_counter()
    labels, info = sinkhorn_labels(scores, 1 / 25, tol=TOL, max_iters=100, chunk_size=chunk_size,
                                   return_info=True)
    labels.block_until_ready()
    wall_s = time.perf_counter() - start
    peak = rss_gib("VmHWM")
    counts = np.bincount(np.asarray(labels), minlength=num_prototypes)
    row = {
        "case": "whole-dataset labels", "solver": "selax sinkhorn_labels", "N": num_samples,
        "K": num_prototypes, "dtype": "bfloat16", "epsilon": 1 / 25, "chunk_size": chunk_size,
        "wall_s_incl_compile": wall_s, "iters": int(info.num_iters_run),
        "final_col_l1": float(info.marginal_error), "converged": bool(info.converged),
        "input_gib": input_gib, "rss_before_solve_gib": rss_before, "peak_rss_gib": peak,
        "peak_minus_input_gib": peak - input_gib, "peak_minus_rss_before_gib": peak - rss_before,
        "cluster_size_min_max": [int(counts.min()), int(counts.max())],
    }
    print(json.dumps(row, indent=1))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole-dataset", action="store_true", help="only the 1.28M x 3000 row")
    parser.add_argument("--sizes", default="4096x3000,16384x3000,65536x1000")
    parser.add_argument("--sela-size", default="16384x3000")
    args = parser.parse_args()

    results = {}
    if os.path.exists(RESULTS_PATH):
        with open(RESULTS_PATH) as previous:
            results = json.load(previous)
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_at_start": os.getloadavg()}
    results["versions"] = peer_versions()

    if args.whole_dataset:
        results["whole_dataset"] = bench_whole_dataset()
    else:
        bandwidth = measure_bandwidth_gb_s()
        print(f"read bandwidth: {bandwidth:.1f} GB/s (512 MiB float32 sum)")
        print(f"{'case':<22} {'solver':<22} {'ms/iter':>9} {'floor':>7} {'frac':>6} "
              f"{'to 1e-3 ms':>10} {'iters':>6} {'col L1':>9} {'compile':>7}")
        rows = []
        for size in args.sizes.split(","):
            num_samples, num_prototypes = map(int, size.split("x"))
            scores = cosine_scores(num_samples, num_prototypes)
            rows += bench_case(f"swav {size}", scores, 0.05, bandwidth)
            del scores
        scores = log_softmax_scores(*map(int, args.sela_size.split("x")))
        rows += bench_case(f"sela {args.sela_size}", scores, 1 / 25, bandwidth)
        results["bandwidth_gb_s"] = bandwidth
        results["dense"] = rows
        results["peak_rss_gib_dense_run"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as out:
        json.dump(results, out, indent=1)
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
