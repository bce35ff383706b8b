"""Tests for selax.sinkhorn against an independent float64 NumPy log-domain Sinkhorn."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from selax.sinkhorn import SinkhornInfo, sinkhorn, sinkhorn_labels


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(peak, axis) + np.log(np.sum(np.exp(x - peak), axis=axis))


def reference_sinkhorn(
    scores, epsilon, num_iters, sample_marginals=None, prototype_marginals=None, tol=None, relaxation=None
):
    """Float64 log-domain Sinkhorn: column update then row update, starting from f = g = 0. With
    `relaxation` tau, the column update of unbalanced transport (KL penalty tau on the column sums):
    g = tau / (tau + eps) * (the exact update).

    Returns (plan normalized to total mass 1, iterations run, column L1 errors after each: to b, or
    relaxed, to the column sums the next column update would give).
    """
    scores = np.asarray(scores, np.float64)
    num_samples, num_prototypes = scores.shape
    a = np.ones(num_samples) if sample_marginals is None else np.asarray(sample_marginals, float)
    b = np.ones(num_prototypes) if prototype_marginals is None else np.asarray(prototype_marginals, float)
    a, b = a / a.sum(), b / b.sum()
    f, g = np.zeros(num_samples), np.zeros(num_prototypes)
    weight = 1.0 if relaxation is None else relaxation / (relaxation + epsilon)

    def column_update(f):
        return weight * epsilon * (np.log(b) - _logsumexp((scores + f[:, None]) / epsilon, axis=0))

    errors = []
    for _ in range(num_iters):
        g = column_update(f)
        f = epsilon * (np.log(a) - _logsumexp((scores + g[None, :]) / epsilon, axis=1))
        plan = np.exp((scores + f[:, None] + g[None, :]) / epsilon)
        target = b if relaxation is None else np.exp((scores + f[:, None] + column_update(f)[None, :]) / epsilon).sum(0)
        errors.append(np.abs(plan.sum(axis=0) - target).sum())
        if tol is not None and errors[-1] < tol:
            break
    return plan, len(errors), errors


def reference_assignment(scores, epsilon, num_iters, sample_marginals=None, prototype_marginals=None, relaxation=None):
    plan, _, _ = reference_sinkhorn(
        scores, epsilon, num_iters, sample_marginals, prototype_marginals, relaxation=relaxation
    )
    return plan / plan.sum(axis=1, keepdims=True)


def exp_domain_swav(scores, epsilon, num_iters):
    """The usual exp-domain loop in float32, to show where it breaks."""
    with np.errstate(all="ignore"):
        q = np.exp(np.asarray(scores, np.float32) / np.float32(epsilon))
        q /= q.sum()
        for _ in range(num_iters):
            q /= q.sum(axis=0, keepdims=True) * q.shape[1]
            q /= q.sum(axis=1, keepdims=True) * q.shape[0]
        return q * q.shape[0]


def cosine_scores(seed, num_samples=96, num_prototypes=16, dim=8):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(num_samples, dim))
    c = rng.normal(size=(num_prototypes, dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return (z @ c.T).astype(np.float32)


def log_softmax_scores(seed, num_samples=96, num_prototypes=16, scale=4.0):
    logits = scale * np.random.default_rng(seed).normal(size=(num_samples, num_prototypes))
    return (logits - _logsumexp(logits, axis=1)[:, None]).astype(np.float32)


def random_marginals(seed, length, total):
    m = np.random.default_rng(seed).uniform(0.2, 1.0, size=length)
    return (m * total / m.sum()).astype(np.float32)


def test_swav_call_matches_reference_and_rows_sum_to_one():
    scores = cosine_scores(0)
    q = sinkhorn(jnp.asarray(scores), 0.05, num_iters=3)
    assert q.shape == scores.shape and q.dtype == jnp.float32
    np.testing.assert_allclose(np.sum(q, axis=1), 1.0, atol=1e-5)
    assert np.max(np.abs(q - reference_assignment(scores, 0.05, 3))) <= 1e-5
    # The defaults are the SwAV call.
    np.testing.assert_array_equal(sinkhorn(jnp.asarray(scores)), q)


@pytest.mark.parametrize("num_iters", [1, 2, 40])
def test_fixed_iterations_match_reference(num_iters):
    scores = cosine_scores(1, 80, 12)
    q, info = sinkhorn(jnp.asarray(scores), 0.05, num_iters=num_iters, return_info=True)
    _, _, errors = reference_sinkhorn(scores, 0.05, num_iters)
    assert np.max(np.abs(q - reference_assignment(scores, 0.05, num_iters))) <= 1e-5
    assert int(info.num_iters_run) == num_iters
    np.testing.assert_allclose(float(info.marginal_error), errors[-1], rtol=1e-3, atol=1e-6)
    assert bool(info.converged)  # fixed mode: finite


@pytest.mark.parametrize("epsilon, tol", [(0.05, 1e-4), (1 / 25, 1e-3)])
def test_tolerance_mode_stops_at_first_iteration_below_tol(epsilon, tol):
    scores = log_softmax_scores(2) if epsilon == 1 / 25 else cosine_scores(2)
    q, info = sinkhorn(jnp.asarray(scores), epsilon, tol=tol, max_iters=3000, return_info=True)
    iters = int(info.num_iters_run)
    _, _, errors = reference_sinkhorn(scores, epsilon, iters)
    assert bool(info.converged) and float(info.marginal_error) < tol
    assert errors[-2] > 0.99 * tol  # it did not stop late
    assert np.max(np.abs(q - reference_assignment(scores, epsilon, iters))) <= 1e-5


def test_tolerance_not_reached_reports_not_converged():
    scores = cosine_scores(3)
    _, info = sinkhorn(jnp.asarray(scores), 0.05, tol=1e-9, max_iters=15, return_info=True)
    assert isinstance(info, SinkhornInfo)
    assert int(info.num_iters_run) == 15 and not bool(info.converged)


def test_non_uniform_marginals_plan_and_assignment():
    scores = cosine_scores(4, 64, 10)
    a, b = random_marginals(5, 64, 3.0), random_marginals(6, 10, 3.0)
    plan, info = sinkhorn(
        jnp.asarray(scores),
        0.05,
        tol=1e-5,
        max_iters=2000,
        sample_marginals=a,
        prototype_marginals=b,
        return_plan=True,
        return_info=True,
    )
    iters = int(info.num_iters_run)
    ref_plan, _, _ = reference_sinkhorn(scores, 0.05, iters, a, b)
    assert np.max(np.abs(plan - 3.0 * ref_plan)) <= 1e-5 * 3.0 / 64  # entries are ~3 / (64 * 10)
    np.testing.assert_allclose(np.sum(plan, axis=1), a, rtol=1e-4)
    np.testing.assert_allclose(np.sum(plan, axis=0), b, rtol=1e-4, atol=1e-5)
    q = sinkhorn(jnp.asarray(scores), 0.05, num_iters=20, sample_marginals=a, prototype_marginals=b)
    assert np.max(np.abs(q - reference_assignment(scores, 0.05, 20, a, b))) <= 1e-5


def test_one_marginal_given_other_is_uniform_with_same_total():
    scores = cosine_scores(7, 48, 8)
    b = random_marginals(8, 8, 5.0)
    plan = sinkhorn(jnp.asarray(scores), 0.05, num_iters=30, prototype_marginals=b, return_plan=True)
    np.testing.assert_allclose(np.sum(plan, axis=1), 5.0 / 48, rtol=1e-5)
    ref_plan, _, _ = reference_sinkhorn(scores, 0.05, 30, None, b)
    assert np.max(np.abs(plan - 5.0 * ref_plan)) <= 1e-6


@pytest.mark.parametrize(
    "name, scores, epsilon, num_iters, atol",
    [
        # epsilon 1e-3 on cosine scores: exp(S / eps) overflows float32.
        ("small_epsilon", cosine_scores(9, 64, 12), 1e-3, 60, 3e-5),
        # SeLa's P^lambda, lambda = 25, on confident log-softmax outputs.
        ("sela_lambda_25", log_softmax_scores(10, scale=30.0), 1 / 25, 60, 1e-5),
        # Unnormalized scores |s| <= 1e3 at epsilon 1e-3: S / eps reaches 1e6, where float32
        # rounding of S + g alone moves exponents by ~0.06, so agreement is checked to 0.1.
        ("huge_scores", 1e3 * cosine_scores(11, 64, 12), 1e-3, 30, 0.1),
    ],
)
def test_extreme_inputs_stay_finite_and_match_reference(name, scores, epsilon, num_iters, atol):
    q = np.asarray(sinkhorn(jnp.asarray(scores), epsilon, num_iters=num_iters))
    ref = reference_assignment(scores, epsilon, num_iters)
    assert np.all(np.isfinite(q)), name
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
    assert np.max(np.abs(q - ref)) <= atol, name
    np.testing.assert_array_equal(np.argmax(q, axis=1), np.argmax(ref, axis=1))
    if name != "sela_lambda_25":  # where the exp-domain loop breaks
        naive = exp_domain_swav(scores, epsilon, num_iters)
        assert not np.all(np.isfinite(naive)) or np.max(np.abs(naive - ref)) > 0.5


def long_tailed_scores(seed, num_samples=200, num_prototypes=8):
    """Cosine scores of samples drawn around prototypes with class frequencies falling 10x from the first
    to the last (the sizes a relaxed column marginal can follow)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(num_prototypes, 16))
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    frequencies = 10.0 ** -np.linspace(0, 1, num_prototypes)
    classes = rng.choice(num_prototypes, num_samples, p=frequencies / frequencies.sum())
    z = prototypes[classes] + 0.5 * rng.normal(size=(num_samples, 16)) / 4
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return (z @ prototypes.T).astype(np.float32), np.bincount(classes, minlength=num_prototypes) / num_samples


@pytest.mark.parametrize("num_iters", [3, 40])
@pytest.mark.parametrize("relaxation", [0.02, 0.5])
@pytest.mark.parametrize("marginals", [None, random_marginals(70, 8, 1.0)])
def test_relaxed_columns_match_reference(num_iters, relaxation, marginals):
    scores, _ = long_tailed_scores(71)
    q = np.asarray(sinkhorn(scores, 0.05, num_iters=num_iters, prototype_marginals=marginals, prototype_relaxation=relaxation))
    ref = reference_assignment(scores, 0.05, num_iters, prototype_marginals=marginals, relaxation=relaxation)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)  # Every sample's assignment sums to 1.
    np.testing.assert_allclose(q, ref, atol=2e-5)


def test_relaxed_columns_converge_between_the_exact_marginal_and_the_scores_own_sizes():
    scores, frequencies = long_tailed_scores(72)
    exact = np.asarray(sinkhorn(scores, 0.05, tol=1e-5, max_iters=2000, return_plan=True))
    np.testing.assert_allclose(exact.sum(0), 1 / 8, atol=1e-5)
    plans = []
    for relaxation in (0.005, 0.05, 0.5, 1e6):
        plan, info = sinkhorn(
            scores, 0.05, tol=1e-5, max_iters=2000, prototype_relaxation=relaxation, return_plan=True, return_info=True
        )
        _, iters, _ = reference_sinkhorn(scores, 0.05, 2000, tol=1e-5, relaxation=relaxation)
        assert bool(info.converged) and float(info.marginal_error) < 1e-5
        assert abs(int(info.num_iters_run) - iters) <= 2
        np.testing.assert_allclose(np.sum(plan), 1.0, atol=1e-5)
        plans.append(np.asarray(plan))
    # A weaker penalty leaves the column sums further from b, nearer the data's class frequencies.
    distances = [np.abs(plan.sum(0) - 1 / 8).sum() for plan in plans]
    assert distances[0] > distances[1] > distances[2] > distances[3] and distances[3] < 1e-4
    loose = plans[0]  # tau = 0.005.
    assert np.abs(loose.sum(0) - frequencies).sum() < np.abs(exact.sum(0) - frequencies).sum() / 2


@pytest.mark.parametrize("relaxation", [0.0, -1.0, np.inf, np.nan])
def test_bad_relaxation_raises_and_traced_one_gives_nan(relaxation):
    scores = cosine_scores(73, 16, 4)
    with pytest.raises(ValueError, match="prototype_relaxation must be > 0 and finite"):
        sinkhorn(scores, 0.05, prototype_relaxation=relaxation)
    q, info = jax.jit(lambda s, r: sinkhorn(s, 0.05, prototype_relaxation=r, return_info=True))(scores, relaxation)
    assert np.all(np.isnan(q)) and not bool(info.converged)


def test_jit_with_traced_epsilon_and_tolerance_equals_eager():
    scores = jnp.asarray(cosine_scores(12))
    fn = jax.jit(lambda s, eps, tol: sinkhorn(s, eps, tol=tol, max_iters=500, return_info=True))
    q_jit, info_jit = fn(scores, 0.05, 1e-3)
    q, info = sinkhorn(scores, 0.05, tol=1e-3, max_iters=500, return_info=True)
    np.testing.assert_allclose(q_jit, q, atol=1e-7)
    assert int(info_jit.num_iters_run) == int(info.num_iters_run)


def test_vmap_over_heads_equals_per_head():
    heads = jnp.stack([jnp.asarray(cosine_scores(20 + h, 64, 10)) for h in range(3)])
    fn = jax.vmap(lambda s: sinkhorn(s, 0.05, tol=1e-4, max_iters=400, return_info=True))
    q, info = fn(heads)
    assert q.shape == heads.shape and info.num_iters_run.shape == (3,)
    for h in range(3):
        q_h, info_h = sinkhorn(heads[h], 0.05, tol=1e-4, max_iters=400, return_info=True)
        np.testing.assert_allclose(q[h], q_h, atol=1e-6)
        assert int(info.num_iters_run[h]) == int(info_h.num_iters_run)


@pytest.mark.parametrize("mode", [dict(num_iters=3), dict(num_iters=25), dict(num_iters=3, prototype_relaxation=0.1)])
def test_sharded_along_samples_equals_unsharded(mode):
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, PartitionSpec("data", None))
    scores = jnp.asarray(cosine_scores(30, 128, 16))
    fn = jax.jit(lambda s: sinkhorn(s, 0.05, **mode), in_shardings=sharding, out_shardings=sharding)
    sharded_scores = jax.device_put(scores, sharding)
    q = fn(sharded_scores)
    assert isinstance(q, jax.Array) and q.sharding.is_equivalent_to(sharding, 2)
    assert len(q.addressable_shards) == 8
    np.testing.assert_allclose(q, sinkhorn(scores, 0.05, **mode), atol=1e-6)
    compiled = fn.lower(sharded_scores).compile().as_text()
    assert "all-reduce" in compiled  # column sums reduced by the compiler
    assert "callback" not in compiled.lower()  # no host round trip


def test_gradient_is_stopped():
    scores = jnp.asarray(cosine_scores(31, 32, 8))
    weights = jnp.asarray(np.random.default_rng(0).normal(size=scores.shape), jnp.float32)
    for kwargs in (dict(num_iters=3), dict(tol=1e-3, max_iters=100)):

        def loss(s, kwargs=kwargs):
            return jnp.sum(sinkhorn(s, 0.05, **kwargs) * weights)

        np.testing.assert_array_equal(jax.grad(loss)(scores), jnp.zeros_like(scores))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_input_is_computed_in_float32(dtype):
    scores = jnp.asarray(cosine_scores(32)).astype(dtype)
    q = sinkhorn(scores, 0.05, num_iters=10)
    assert q.dtype == jnp.float32
    upcast = np.asarray(scores.astype(jnp.float32))
    assert np.max(np.abs(q - reference_assignment(upcast, 0.05, 10))) <= 1e-5


@pytest.mark.parametrize(
    "scores, epsilon, kwargs",
    [
        (cosine_scores(40, 100, 12), 0.05, dict(tol=1e-4, max_iters=1000)),
        (
            cosine_scores(41, 100, 12),
            0.05,
            dict(num_iters=3, prototype_marginals=random_marginals(1, 12, 1.0)),
        ),
        (log_softmax_scores(42, 100, 12), 1 / 25, dict(tol=1e-3, max_iters=1000)),
        # epsilon 1e-3: column sums underflow, exercising the column-logsumexp fallback.
        (cosine_scores(43, 100, 12), 1e-3, dict(num_iters=20)),
    ],
)
def test_chunked_labels_equal_dense_argmax(scores, epsilon, kwargs):
    dense, dense_info = sinkhorn(jnp.asarray(scores), epsilon, return_info=True, **kwargs)
    for chunk_size in (32, 1000):  # 32 does not divide 100 (the last block overlaps); 1000 > N
        labels, info = sinkhorn_labels(
            jnp.asarray(scores), epsilon, chunk_size=chunk_size, return_info=True, **kwargs
        )
        assert labels.dtype == jnp.int32 and labels.shape == (100,)
        np.testing.assert_array_equal(labels, np.argmax(dense, axis=1))
        assert int(info.num_iters_run) == int(dense_info.num_iters_run)
        np.testing.assert_allclose(
            float(info.marginal_error), float(dense_info.marginal_error), rtol=1e-3, atol=1e-6
        )


def test_chunked_labels_accept_bfloat16_and_match_reference():
    scores = jnp.asarray(log_softmax_scores(44, 200, 16)).astype(jnp.bfloat16)
    labels, info = sinkhorn_labels(scores, 1 / 25, tol=1e-4, max_iters=2000, chunk_size=64, return_info=True)
    plan, _, _ = reference_sinkhorn(np.asarray(scores.astype(jnp.float32)), 1 / 25, int(info.num_iters_run))
    np.testing.assert_array_equal(labels, np.argmax(plan, axis=1))
    assert bool(info.converged)
    # Under jit the zero-copy uint16 view is not taken; the result is the same.
    solve = jax.jit(lambda s: sinkhorn_labels(s, 1 / 25, tol=1e-4, max_iters=2000, chunk_size=64))
    labels_jit = solve(scores)
    np.testing.assert_array_equal(labels_jit, labels)


@pytest.mark.parametrize("solver", [sinkhorn, sinkhorn_labels])
@pytest.mark.parametrize(
    "scores, epsilon, kwargs, message",
    [
        (np.zeros((2, 3, 4), np.float32), 0.05, {}, "rank 2"),
        (np.zeros((4, 3), np.float32), 0.0, {}, "epsilon must be > 0"),
        (np.zeros((4, 3), np.float32), -1.0, {}, "epsilon must be > 0"),
        (np.array([[0.0, np.nan], [1.0, 0.0]], np.float32), 0.05, {}, "NaN or inf"),
        (np.array([[0.0, np.inf], [1.0, 0.0]], np.float32), 0.05, {}, "NaN or inf"),
        (
            np.zeros((4, 3), np.float32),
            0.05,
            dict(sample_marginals=np.array([1.0, 1.0, -1.0, 1.0])),
            "sample_marginals must be finite and strictly positive",
        ),
        (
            np.zeros((4, 3), np.float32),
            0.05,
            dict(prototype_marginals=np.array([1.0, 0.0, 1.0])),
            "prototype_marginals must be finite and strictly positive",
        ),
        (np.zeros((4, 3), np.float32), 0.05, dict(prototype_marginals=np.ones(4)), r"shape \[3\]"),
        (
            np.zeros((4, 3), np.float32),
            0.05,
            dict(sample_marginals=np.ones(4), prototype_marginals=np.ones(3)),
            "same total",
        ),
        (np.zeros((4, 3), np.float32), 0.05, dict(tol=1e-3), "tol was given without max_iters"),
        (np.zeros((4, 3), np.float32), 0.05, dict(num_iters=0), "num_iters must be"),
        (np.zeros((4, 3), np.float32), np.inf, {}, "epsilon must be > 0 and finite .*got inf"),
        (np.zeros((4, 3), np.float32), np.nan, {}, "epsilon must be > 0 and finite .*got nan"),
        (
            np.zeros((4, 3), np.float32),
            0.05,
            dict(prototype_marginals=np.array([0.1, np.inf, 0.5])),
            "prototype_marginals must be finite and strictly positive, got inf at index 1",
        ),
        (
            np.zeros((4, 3), np.float32),
            0.05,
            dict(sample_marginals=[1.0, 1.0, np.nan, -1.0]),
            "sample_marginals must be finite and strictly positive, got nan at index 2",
        ),
        (
            np.zeros((4, 3), np.float32),
            0.05,
            dict(prototype_marginals=(0.5, 0.0, 0.5)),
            "prototype_marginals must be finite and strictly positive, got 0.0 at index 1",
        ),
        (np.zeros((4, 3), np.float32), 0.05, dict(prototype_marginals=[1.0, 1.0]), r"shape \[3\]"),
    ],
)
def test_bad_input_raises_clear_value_error(solver, scores, epsilon, kwargs, message):
    with pytest.raises(ValueError, match=message):
        solver(scores, epsilon, **kwargs)


def test_nan_scores_inside_jit_propagate_and_report_not_converged():
    scores = jnp.asarray(cosine_scores(50, 16, 4)).at[3, 1].set(jnp.nan)
    q, info = jax.jit(lambda s: sinkhorn(s, 0.05, tol=1e-3, max_iters=7, return_info=True))(scores)
    assert np.all(np.isnan(q))
    assert not bool(info.converged) and int(info.num_iters_run) == 7
    _, info = jax.jit(lambda s: sinkhorn(s, 0.05, num_iters=3, return_info=True))(scores)
    assert not bool(info.converged)
    _, info = jax.jit(lambda s: sinkhorn_labels(s, 0.05, tol=1e-3, max_iters=5, return_info=True))(scores)
    assert not bool(info.converged) and int(info.num_iters_run) == 5


def test_import_pulls_in_jax_only():
    code = (
        "import sys, selax.sinkhorn\n"
        "heavy = {'tensorflow', 'tensorflow_datasets', 'flax', 'orbax', 'optax'} & "
        "{name.split('.')[0] for name in sys.modules}\n"
        "assert not heavy, heavy\n"
        "assert 'jax' in sys.modules\n"
    )
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_marginals_accept_lists_tuples_and_numpy_arrays():
    scores = cosine_scores(51, 40, 4)
    b = [0.1, 0.2, 0.3, 0.4]
    ref_plan, _, _ = reference_sinkhorn(scores, 0.05, 30, None, b)
    plans = [
        sinkhorn(scores, 0.05, num_iters=30, prototype_marginals=marginals, return_plan=True)
        for marginals in (b, tuple(b), np.asarray(b), jnp.asarray(b))
    ]
    for plan in plans:
        np.testing.assert_array_equal(plan, plans[-1])
        assert np.max(np.abs(plan - ref_plan)) <= 1e-6
    a = tuple(np.full(40, 0.025))
    np.testing.assert_allclose(
        sinkhorn(scores, 0.05, num_iters=30, sample_marginals=a, prototype_marginals=b), plans[0] / 0.025, rtol=1e-5
    )
    labels = sinkhorn_labels(scores, 0.05, num_iters=30, prototype_marginals=b, chunk_size=16)
    np.testing.assert_array_equal(labels, np.argmax(ref_plan, axis=1))


def _traced(solver, **kwargs):
    """``solver`` under ``jax.jit`` with the scores, epsilon and both marginals traced."""

    def solve(scores, epsilon, a, b):
        return solver(scores, epsilon, sample_marginals=a, prototype_marginals=b, return_info=True, **kwargs)

    return jax.jit(solve)


_TRACED_SOLVERS = {
    "sinkhorn": _traced(sinkhorn, tol=1e-3, max_iters=50),
    "sinkhorn_fixed": _traced(sinkhorn, num_iters=3),
    "sinkhorn_labels": _traced(sinkhorn_labels, tol=1e-3, max_iters=50, chunk_size=16),
}


@pytest.mark.parametrize("solver", sorted(_TRACED_SOLVERS))
@pytest.mark.parametrize(
    "case",
    [
        "negative_epsilon",
        "inf_epsilon",
        "nan_epsilon",
        "zero_prototype_marginal",
        "negative_sample_marginal",
        "inf_prototype_marginal",
        "minus_inf_score",
    ],
)
def test_invalid_traced_input_gives_nan_and_not_converged(solver, case):
    scores = cosine_scores(52, 40, 4)
    epsilon, a, b = 0.05, np.full(40, 0.25, np.float32), np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    fn = _TRACED_SOLVERS[solver]
    result, info = fn(scores, np.float32(epsilon), a, b)  # valid traced input: a normal, converged solve
    assert bool(info.converged) and np.all(np.isfinite(result))
    if solver == "sinkhorn_labels":
        ref_plan, _, _ = reference_sinkhorn(scores, epsilon, int(info.num_iters_run), a, b)
        np.testing.assert_array_equal(result, np.argmax(ref_plan, axis=1))
    epsilon = {"negative_epsilon": -0.05, "inf_epsilon": np.inf, "nan_epsilon": np.nan}.get(case, epsilon)
    a = a * np.where(np.arange(40) == 7, -1.0, 1.0) if case == "negative_sample_marginal" else a
    b = {
        "zero_prototype_marginal": np.array([1.0, 0.0, 4.0, 5.0]),
        "inf_prototype_marginal": np.array([1.0, np.inf, 3.0, 4.0]),
    }.get(case, b)
    scores = np.where(np.arange(4) == 2, -np.inf, scores) if case == "minus_inf_score" else scores
    result, info = fn(*(np.asarray(x, np.float32) for x in (scores, epsilon, a, b)))  # one compilation
    if solver == "sinkhorn_labels":
        np.testing.assert_array_equal(result, np.full(40, -1, np.int32))  # -1: no label
    else:
        assert np.all(np.isnan(result))
    assert np.isnan(float(info.marginal_error)) and not bool(info.converged)


@pytest.mark.parametrize("chunk_size", [96, 2000])  # 96 does not divide N = 1000
@pytest.mark.parametrize("mode", [dict(num_iters=3), dict(tol=1e-4, max_iters=500)])
def test_tied_scores_labels_follow_column_masses(chunk_size, mode):
    labels = sinkhorn_labels(jnp.zeros((1000, 7)), 0.05, chunk_size=chunk_size, **mode)
    counts = np.bincount(np.asarray(labels), minlength=7)
    assert counts.sum() == 1000 and counts.max() - counts.min() <= 1, counts
    b = np.array([1.0, 2.0, 3.0, 4.0]) / 10
    labels = sinkhorn_labels(
        jnp.full((1000, 4), -1.3), 1 / 25, prototype_marginals=b, chunk_size=chunk_size, **mode
    )
    counts = np.bincount(np.asarray(labels), minlength=4)
    assert np.max(np.abs(counts - 1000 * b)) <= 1, counts


def test_partly_tied_rows_are_spread_and_others_keep_their_argmax():
    # 500 uninformative rows (equal scores) before 500 informative ones that favour no column
    # (every row with its 4 cyclic shifts), so the column potentials are equal: the first 500
    # rows tie across all 4 columns.
    base = log_softmax_scores(60, 125, 4)
    informative = np.concatenate([np.roll(base, shift, axis=1) for shift in range(4)])
    scores = np.concatenate([np.full((500, 4), np.log(0.25), np.float32), informative])
    labels, info = sinkhorn_labels(
        jnp.asarray(scores), 1 / 25, tol=1e-4, max_iters=1000, chunk_size=96, return_info=True
    )
    labels = np.asarray(labels)
    plan, _, _ = reference_sinkhorn(scores, 1 / 25, int(info.num_iters_run))
    np.testing.assert_array_equal(labels[500:], np.argmax(plan[500:], axis=1))
    assert np.max(np.abs(np.bincount(labels[:500], minlength=4) - 125)) <= 2
    # Duplicated prototypes: each row ties between the two copies of its best prototype, which
    # share its rows in proportion to their masses.
    dup = log_softmax_scores(61, 1000, 3)[:, [0, 0, 1, 1, 2, 2]] - np.float32(np.log(2.0))
    for b in (None, np.array([1.0, 3.0, 1.0, 3.0, 1.0, 3.0])):
        labels, info = sinkhorn_labels(
            jnp.asarray(dup), 1 / 25, tol=1e-4, max_iters=1000, prototype_marginals=b, chunk_size=96,
            return_info=True,
        )
        labels = np.asarray(labels)
        plan, _, _ = reference_sinkhorn(dup, 1 / 25, int(info.num_iters_run), None, b)
        np.testing.assert_array_equal(labels // 2, np.argmax(plan, axis=1) // 2)
        pairs = np.bincount(labels, minlength=6).reshape(3, 2)
        share = np.array([0.5, 0.5]) if b is None else b[:2] / b[:2].sum()
        assert np.max(np.abs(pairs - pairs.sum(axis=1, keepdims=True) * share)) <= 2, pairs


@pytest.mark.parametrize("marginals", [None, random_marginals(62, 10, 1.0)])
def test_labels_on_untied_scores_equal_reference_argmax(marginals):
    scores = log_softmax_scores(63, 1000, 10)
    labels, info = sinkhorn_labels(
        jnp.asarray(scores), 1 / 25, tol=1e-4, max_iters=2000, prototype_marginals=marginals,
        chunk_size=96, return_info=True,
    )
    plan, _, _ = reference_sinkhorn(scores, 1 / 25, int(info.num_iters_run), None, marginals)
    np.testing.assert_array_equal(labels, np.argmax(plan, axis=1))


def test_tie_spreading_is_the_same_under_jit_and_sharding():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, PartitionSpec("data", None))
    scores = jnp.zeros((1000, 7))
    eager = sinkhorn_labels(scores, 0.05, tol=1e-4, max_iters=100, chunk_size=96)
    solve = jax.jit(lambda s: sinkhorn_labels(s, 0.05, tol=1e-4, max_iters=100, chunk_size=96))
    np.testing.assert_array_equal(solve(jax.device_put(scores, sharding)), eager)
    counts = np.bincount(np.asarray(eager), minlength=7)
    assert counts.max() - counts.min() <= 1, counts


def test_results_do_not_depend_on_default_matmul_precision():
    scores = cosine_scores(64, 100, 12)
    b = random_marginals(65, 12, 1.0)

    def solve():
        plan, info = sinkhorn(
            scores, 0.05, tol=1e-5, max_iters=2000, prototype_marginals=b, return_plan=True, return_info=True
        )
        labels = sinkhorn_labels(scores, 0.05, tol=1e-5, max_iters=2000, prototype_marginals=b, chunk_size=32)
        return plan, int(info.num_iters_run), labels

    plan, iters, labels = solve()
    previous = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", "bfloat16")  # the lowest setting
    try:
        plan_low, iters_low, labels_low = solve()
        programs = [
            jax.jit(lambda s: sinkhorn(s, 0.05, tol=1e-5, max_iters=20)).lower(scores).as_text(),
            jax.jit(lambda s: sinkhorn_labels(s, 0.05, num_iters=3, chunk_size=32)).lower(scores).as_text(),
        ]
    finally:
        jax.config.update("jax_default_matmul_precision", previous)
    dots = [line for program in programs for line in program.splitlines() if "dot_general" in line]
    assert len(dots) >= 3 and all("precision = [HIGHEST, HIGHEST]" in line for line in dots), dots
    assert iters_low == iters
    assert np.max(np.abs(plan_low - plan)) <= 1e-6
    np.testing.assert_array_equal(labels_low, labels)
    ref_plan, _, _ = reference_sinkhorn(scores, 0.05, iters, None, b)
    assert np.max(np.abs(plan_low - ref_plan)) <= 1e-5 / 100  # entries are ~1 / (100 * 12)
    np.testing.assert_array_equal(labels_low, np.argmax(ref_plan, axis=1))
