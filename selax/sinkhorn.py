"""Sinkhorn-Knopp for soft and hard cluster assignments, stable for any temperature.

Importing this module pulls in jax alone, so it can be used without the rest of selax::

    from selax.sinkhorn import sinkhorn, sinkhorn_labels

Problem and conventions
-----------------------
Given scores ``S`` of shape ``[N, K]`` (N samples x K prototypes), a temperature ``epsilon``
and positive marginals ``a`` (over samples, ``[N]``) and ``b`` (over prototypes, ``[K]``),
find the entropic transport plan

    Q_ij = exp((S_ij + f_i + g_j) / epsilon),   sum_j Q_ij = a_i,   sum_i Q_ij = b_j,

with potentials ``f`` ``[N]`` and ``g`` ``[K]``. By default ``a`` and ``b`` are uniform with total
mass 1 (``a = 1/N``, ``b = 1/K``: equipartition of the samples over the prototypes). With
``prototype_relaxation=tau`` (``sinkhorn`` only) the columns are not held to ``b`` but pulled towards
it by ``tau * KL(sum_i Q_ij || b_j)`` (unbalanced transport): each column update is the exact one
scaled by ``tau / (tau + epsilon)``.

- SwAV / Suave: ``S`` = cosine similarities, ``epsilon = 0.05``, exactly 3 iterations:
  ``sinkhorn(scores, 0.05, num_iters=3)``.
- SeLa: ``S`` = log-softmax outputs and P^lambda with ``lambda = 25`` is ``epsilon = 1 / lambda``,
  iterated to a tolerance over the whole data set: ``sinkhorn_labels(log_probs, 1 / 25, tol=1e-3,
  max_iters=1000)``.

One iteration updates ``g`` so that the columns sum to ``b``, then ``f`` so that the rows sum to
``a``. The result is therefore always taken right after a row update: every row of the returned
assignment ``Q_ij / a_i`` sums to 1 (SwAV's targets), and the remaining error is in the columns:

    marginal_error = sum_j |sum_i Q_ij - b_j| / sum_j b_j

(the L1 distance between the column sums and ``b``, relative to the total mass). In tolerance mode
the iterations stop as soon as ``marginal_error < tol``, checked after every iteration (the check
reuses the column sums that the next iteration needs, so it costs nothing extra).

Numerics
--------
Everything runs in float32 (float16 and bfloat16 scores are upcast). The dense solver keeps
the kernel ``exp((S + f + g) / epsilon)`` in memory and iterates scalings ``u``, ``v`` on it with
two matrix-vector products per iteration (memory-bandwidth bound, no exponentials); whenever
``u`` or ``v`` would leave ``[e^-20, e^20]`` or stop being finite, they are absorbed into the
potentials and one iteration is done in the log domain (logsumexp), which re-forms the kernel.
The iterates are those of the plain log-domain algorithm, so the results stay finite and
accurate for ``epsilon`` down to 1e-3 and scores of magnitude 1e3, where exp-domain code returns
NaN or zeros; such hard problems simply take the log-domain path more often. The
matrix-vector products run at ``jax.lax.Precision.HIGHEST``, so results do not depend on
``jax_default_matmul_precision`` (TF32 or bfloat16 passes on GPUs).

Gradients: the scores are wrapped in ``jax.lax.stop_gradient`` (SwAV, Suave and SeLa all treat
the targets as constants), so ``jax.grad`` through these functions gives zeros.

Input checks: outside ``jax.jit``, bad input raises ``ValueError`` (wrong rank, ``epsilon`` not
finite and > 0, NaN or inf scores, marginals with a non-finite or non-positive entry, marginals
with different totals, ``tol`` without ``max_iters``). Marginals may be any array-like (list,
tuple, NumPy or JAX array). Traced values are checked inside the computation instead: if
``epsilon`` or an entry of a marginal is not finite and > 0, or the scores hold NaN or inf,
``sinkhorn`` returns NaN everywhere and ``sinkhorn_labels`` returns -1 for every sample (not a
label), both with ``info.marginal_error`` NaN and ``info.converged == False``. Under ``jit``,
marginals with different totals are not detected: each is normalized to its own total (the plan
takes the total of ``sample_marginals``).

Transformations: both functions work under ``jax.jit`` and ``jax.vmap`` (e.g. several heads
``[H, N, K]``), and ``sinkhorn`` accepts scores sharded along N (``NamedSharding(mesh,
P('data', None))``): the column sums become compiler-inserted all-reduces and the output keeps
the input's sharding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SinkhornInfo", "sinkhorn", "sinkhorn_labels"]

# Scalings u, v are absorbed into the potentials once |log u| or |log v| would exceed this bound.
_LOG_SCALING_RANGE = 20.0
# Column sums below this (total mass 1) are recomputed with a column logsumexp in the chunked
# solver: beneath it, terms flushed to zero could carry a noticeable part of the sum.
_MIN_RELIABLE_COLUMN_SUM = 1e-30
# Relative tolerance when comparing the totals of the two marginals.
_MASS_RTOL = 1e-4
# sinkhorn_labels: columns whose log(Q_ij / b_j) is within this much of the argmax's, relative to
# the magnitude of the terms (about 10 float32 ulps), tie with it (_spread_ties).
_TIE_RTOL = 2.0**-19
_HIGHEST = jax.lax.Precision.HIGHEST


class SinkhornInfo(NamedTuple):
    """Diagnostics of one solve (a pytree; under ``vmap`` every field gains the batch axes).

    Attributes:
      num_iters_run: int32 scalar, Sinkhorn iterations done (each = column update + row update).
      marginal_error: float32 scalar, ``sum_j |sum_i Q_ij - b_j| / sum_j b_j`` at the end (NaN
        for invalid traced input, see the module docstring); with ``prototype_relaxation``, the
        change in the column sums that one more column update would make.
      converged: bool scalar; with ``tol``: ``marginal_error < tol``; with a fixed ``num_iters``
        (no target to reach): whether the result is finite.
    """

    num_iters_run: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


def _is_concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def _all_finite(x) -> bool:
    """Whether a concrete array holds no NaN/inf: one on-device reduction, one bool to the host."""
    return bool(_jit_all_finite(x))


@jax.jit
def _jit_all_finite(x: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(x))


@jax.jit
def _marginal_summary(marginal: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Index of the first non-finite or non-positive entry of [length] (-1 if none), that entry,
    and the total: one on-device pass, three scalars to the host."""
    bad = ~(jnp.isfinite(marginal) & (marginal > 0))
    index = jnp.argmax(bad)
    return jnp.where(bad[index], index, -1), marginal[index], jnp.sum(marginal)


def _as_marginal(marginal) -> jax.Array | None:
    """A marginal given as any array-like (list, tuple, NumPy or JAX array) as a float32 array."""
    return None if marginal is None else jnp.asarray(marginal, jnp.float32)


def _check_positive_marginal(name: str, marginal, length: int, axis_name: str) -> float | None:
    """Validates a float32 marginal of shape [length]; returns its total (None when traced)."""
    if marginal is None:
        return None
    if marginal.ndim != 1 or marginal.shape[0] != length:
        raise ValueError(
            f"{name} must have shape [{length}] (one entry per {axis_name}), got shape "
            f"{marginal.shape}."
        )
    if not _is_concrete(marginal):
        return None
    index, value, total = jax.device_get(_marginal_summary(marginal))
    if index >= 0:
        raise ValueError(
            f"{name} must be finite and strictly positive, got {float(value)} at index {index}; "
            f"give every {axis_name} a positive mass, or drop it from the problem."
        )
    return float(total)


def _validate(
    scores,
    epsilon,
    num_iters,
    tol,
    max_iters,
    sample_marginals,
    prototype_marginals,
    all_finite=_all_finite,
) -> None:
    """Raises ValueError on bad concrete input; traced values are only checked for shape.

    ``all_finite(scores) -> bool`` is called on concrete rank-2 scores.
    """
    if jnp.ndim(scores) != 2:
        raise ValueError(
            f"scores must have rank 2, [N samples, K prototypes], got shape {tuple(jnp.shape(scores))}"
            "; use jax.vmap for several heads."
        )
    if not jnp.issubdtype(jnp.result_type(scores), jnp.floating):
        raise ValueError(f"scores must be a floating-point array, got dtype {jnp.result_type(scores)}.")
    num_samples, num_prototypes = jnp.shape(scores)
    if num_samples == 0 or num_prototypes == 0:
        raise ValueError(f"scores must be non-empty, got shape {(num_samples, num_prototypes)}.")
    if _is_concrete(epsilon) and not 0 < float(epsilon) < np.inf:
        raise ValueError(
            f"epsilon must be > 0 and finite (the entropic temperature), got {float(epsilon)}; "
            "e.g. 0.05 (SwAV) or 1 / 25 (SeLa)."
        )
    if tol is None:
        if not (isinstance(num_iters, int) and num_iters >= 1):
            raise ValueError(f"num_iters must be a Python int >= 1, got {num_iters!r}.")
    else:
        if max_iters is None:
            raise ValueError(
                "tol was given without max_iters: set an iteration cap, e.g. max_iters=1000, so that "
                "a problem that never reaches the tolerance still stops."
            )
        if not (isinstance(max_iters, int) and max_iters >= 1):
            raise ValueError(f"max_iters must be a Python int >= 1, got {max_iters!r}.")
        if _is_concrete(tol) and not float(tol) > 0:
            raise ValueError(f"tol must be > 0, got {float(tol)}.")
    if _is_concrete(scores) and not all_finite(scores):
        raise ValueError(
            "scores contain NaN or inf; check the model outputs (e.g. normalize features before "
            "the prototype layer)."
        )
    total_a = _check_positive_marginal("sample_marginals", sample_marginals, num_samples, "sample")
    total_b = _check_positive_marginal(
        "prototype_marginals", prototype_marginals, num_prototypes, "prototype"
    )
    if total_a is not None and total_b is not None:
        if abs(total_a - total_b) > _MASS_RTOL * max(total_a, total_b):
            raise ValueError(
                f"sample_marginals and prototype_marginals must have the same total (a transport "
                f"plan moves all of the mass), got {total_a} and {total_b}; rescale one of them."
            )


def _valid_parameters(epsilon, sample_marginals, prototype_marginals, relaxation=None) -> jax.Array:
    """Whether epsilon, the relaxation when given and every entry of the given marginals are finite and
    > 0 (bool scalar, computed on device so that it also covers traced values)."""
    valid = jnp.isfinite(epsilon) & (epsilon > 0)
    if relaxation is not None:
        valid &= jnp.isfinite(relaxation) & (relaxation > 0)
    for marginal in (sample_marginals, prototype_marginals):
        if marginal is not None:
            valid &= jnp.all(jnp.isfinite(marginal) & (marginal > 0))
    return valid


def _normalized(marginal, length: int) -> tuple[jax.Array, jax.Array | None]:
    """Returns the marginal [length] scaled to total 1 (uniform if None) and its original total."""
    if marginal is None:
        return jnp.full((length,), 1.0 / length, jnp.float32), None
    marginal = jnp.asarray(marginal, jnp.float32)
    total = jnp.sum(marginal)
    return marginal / total, total


def _marginals(
    num_samples: int, num_prototypes: int, sample_marginals, prototype_marginals
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns a [N] and b [K] normalized to total 1, and the plan's total mass (scalar)."""
    a, total_a = _normalized(sample_marginals, num_samples)
    b, total_b = _normalized(prototype_marginals, num_prototypes)
    if total_a is not None:
        return a, b, total_a
    if total_b is not None:
        return a, b, total_b
    return a, b, jnp.ones((), jnp.float32)


class _Scalings(NamedTuple):
    """Solver state besides the kernel exp((S + f + g) / eps): the plan is diag(u) kernel diag(v)."""

    f: jax.Array  # [N] row potential absorbed into the kernel
    g: jax.Array  # [K] column potential absorbed into the kernel
    u: jax.Array  # [N] row scaling on top of the kernel
    v: jax.Array  # [K] column scaling
    column_sums_u: jax.Array  # [K] kernel^T u, i.e. column sums of the plan divided by v
    num_iters: jax.Array  # int32 scalar, iterations done
    error: jax.Array  # float32 scalar, column marginal error of the current plan
    in_range: jax.Array  # bool scalar, False once an exp-domain step left the safe range


def _column_weight(epsilon, relaxation) -> jax.Array | None:
    """The exponent ``tau / (tau + epsilon)`` of a relaxed column update (None: exact columns)."""
    return None if relaxation is None else relaxation / (relaxation + epsilon)


def _column_scaling(b, column_sums_u, g, epsilon, weight) -> jax.Array:
    """The column scaling ``v`` [K] that a column update sets, given the kernel's column sums under
    the row scaling (``kernel^T u``) and the column potential ``g`` the kernel holds: ``b / kernel^T
    u`` (columns summing to ``b``), or relaxed (``weight`` = tau / (tau + eps), KL penalty tau):
    ``(b / kernel^T u)**weight * exp((weight - 1) g / eps)``, the scaling of the total potential
    ``weight * eps * (log b - logsumexp_i (S_ij + f_i) / eps)``."""
    if weight is None:
        return b / column_sums_u
    return jnp.exp(weight * jnp.log(b / column_sums_u) + (weight - 1.0) * g / epsilon)


def _column_error(column_sums, column_sums_u, b, g, epsilon, weight) -> jax.Array:
    """``sum_j |column sums - what a column update would make them|``: the distance to ``b`` for exact
    columns; for relaxed ones, the change the next column update makes (0 at the fixed point)."""
    target = b if weight is None else _column_scaling(b, column_sums_u, g, epsilon, weight) * column_sums_u
    return jnp.sum(jnp.abs(column_sums - target))


def _log_domain_iteration(scores, epsilon, a, b, f, num_iters, weight) -> tuple[jax.Array, _Scalings]:
    """One iteration in the log domain from row potential f; returns the kernel [N, K] formed
    with the new potentials (u = v = 1) and the scalings."""
    g = epsilon * (jnp.log(b) - jax.nn.logsumexp((scores + f[:, None]) / epsilon, axis=0))
    if weight is not None:
        g = weight * g
    exponents = (scores + g[None, :]) / epsilon
    row_max = jnp.max(exponents, axis=1)
    shifted = jnp.exp(exponents - row_max[:, None])
    row_sums = jnp.sum(shifted, axis=1)
    f = epsilon * (jnp.log(a) - row_max - jnp.log(row_sums))
    kernel = shifted * (a / row_sums)[:, None]
    column_sums = jnp.sum(kernel, axis=0)
    scalings = _Scalings(
        f=f,
        g=g,
        u=jnp.ones_like(a),
        v=jnp.ones_like(b),
        column_sums_u=column_sums,
        num_iters=num_iters + 1,
        error=_column_error(column_sums, column_sums, b, g, epsilon, weight),
        in_range=jnp.array(True),
    )
    return kernel, scalings


def _initial_state(scores, epsilon, a, b) -> tuple[jax.Array, _Scalings]:
    """Kernel and scalings before the first iteration (f = 0), stabilized by column maxima.

    kernel_ij = b_j exp((S_ij - max_i S_ij) / eps): every column holds an entry b_j, so the
    first column update cannot divide by zero, and one exponential per entry suffices.
    """
    g = epsilon * jnp.log(b) - jnp.max(scores, axis=0)
    kernel = jnp.exp((scores + g[None, :]) / epsilon)
    scalings = _Scalings(
        f=jnp.zeros_like(a),
        g=g,
        u=jnp.ones_like(a),
        v=jnp.ones_like(b),
        column_sums_u=jnp.sum(kernel, axis=0),
        num_iters=jnp.int32(0),
        error=jnp.float32(jnp.inf),
        in_range=jnp.array(True),
    )
    return kernel, scalings


def _in_safe_range(x: jax.Array) -> jax.Array:
    bound = jnp.exp(jnp.float32(_LOG_SCALING_RANGE))
    return jnp.all((x < bound) & (x > 1.0 / bound))  # False for NaN


def _done(scalings: _Scalings, tol, max_iters: int) -> jax.Array:
    reached_cap = scalings.num_iters >= max_iters
    if tol is None:
        return reached_cap
    return reached_cap | (scalings.error < tol)


def _scaling_iterations(kernel, scalings: _Scalings, a, b, tol, max_iters: int, epsilon, weight) -> _Scalings:
    """Exp-domain iterations on a fixed kernel (two matrix-vector products each) until done or
    until a step would leave the safe range; that step is not taken."""

    def cond(scalings):
        return scalings.in_range & ~_done(scalings, tol, max_iters)

    def body(scalings):
        v = _column_scaling(b, scalings.column_sums_u, scalings.g, epsilon, weight)
        u = a / jnp.dot(kernel, v, precision=_HIGHEST)
        column_sums_u = jnp.dot(u, kernel, precision=_HIGHEST)
        in_range = _in_safe_range(u) & _in_safe_range(v)
        stepped = scalings._replace(
            u=u,
            v=v,
            column_sums_u=column_sums_u,
            num_iters=scalings.num_iters + 1,
            error=_column_error(v * column_sums_u, column_sums_u, b, scalings.g, epsilon, weight),
        )
        rejected = scalings._replace(in_range=in_range)
        return jax.tree.map(lambda new, old: jnp.where(in_range, new, old), stepped, rejected)

    return jax.lax.while_loop(cond, body, scalings)


@jax.jit(static_argnames=("max_iters", "use_tol", "return_plan", "return_info"))
def _sinkhorn_dense(
    scores,
    epsilon,
    tol,
    sample_marginals,
    prototype_marginals,
    prototype_relaxation,
    *,
    max_iters,
    use_tol,
    return_plan,
    return_info,
):
    scores = jax.lax.stop_gradient(scores).astype(jnp.float32)
    epsilon = jnp.asarray(epsilon, jnp.float32)
    tol = jnp.asarray(tol, jnp.float32) if use_tol else None
    num_samples, num_prototypes = scores.shape
    a, b, total = _marginals(num_samples, num_prototypes, sample_marginals, prototype_marginals)

    weight = _column_weight(epsilon, prototype_relaxation)
    kernel, scalings = _initial_state(scores, epsilon, a, b)
    scalings = _scaling_iterations(kernel, scalings, a, b, tol, max_iters, epsilon, weight)

    def restart_in_log_domain(carry):
        """Absorbs u into f, redoes the rejected step in the log domain, then resumes scaling."""
        _, scalings = carry
        absorbed_f = scalings.f + epsilon * jnp.log(scalings.u)
        kernel, scalings = _log_domain_iteration(scores, epsilon, a, b, absorbed_f, scalings.num_iters, weight)
        return kernel, _scaling_iterations(kernel, scalings, a, b, tol, max_iters, epsilon, weight)

    kernel, scalings = jax.lax.while_loop(
        lambda carry: ~_done(carry[1], tol, max_iters), restart_in_log_domain, (kernel, scalings)
    )

    valid = _valid_parameters(epsilon, sample_marginals, prototype_marginals, prototype_relaxation)
    valid &= jnp.all(jnp.isfinite(scores))
    if return_plan:
        result = kernel * (total * scalings.u)[:, None] * scalings.v[None, :]
    else:
        result = kernel * (scalings.u / a)[:, None] * scalings.v[None, :]
    result = jnp.where(valid, result, jnp.nan)
    if not return_info:
        return result
    error = jnp.where(valid, scalings.error, jnp.nan)
    converged = error < tol if use_tol else jnp.isfinite(error)
    return result, SinkhornInfo(scalings.num_iters, error, converged)


def sinkhorn(
    scores: jax.Array,
    epsilon: float | jax.Array = 0.05,
    *,
    num_iters: int = 3,
    tol: float | jax.Array | None = None,
    max_iters: int | None = None,
    sample_marginals: jax.Array | None = None,
    prototype_marginals: jax.Array | None = None,
    prototype_relaxation: float | jax.Array | None = None,
    return_plan: bool = False,
    return_info: bool = False,
):
    """Soft assignment of samples to prototypes by entropic optimal transport.

    Args:
      scores: ``[N, K]`` similarities (samples x prototypes), any float dtype (float16/bfloat16
        are computed in float32). May be sharded along N.
      epsilon: entropic temperature, > 0 (SwAV: 0.05; SeLa's P^lambda: ``1 / lambda``).
      num_iters: exact number of iterations when ``tol`` is None (SwAV: 3).
      tol: if set, iterate until the column marginal error (module docstring) is ``< tol``;
        ``num_iters`` is then ignored and ``max_iters`` is required.
      max_iters: iteration cap for the tolerance mode.
      sample_marginals: ``[N]`` positive masses ``a`` (default uniform).
      prototype_marginals: ``[K]`` positive masses ``b`` (default uniform: equipartition).
        When both are given, their totals must agree; when one is given, the other default is
        uniform with the same total.
      prototype_relaxation: if set, ``tau > 0``: the column sums are pulled towards ``b`` by a
        penalty ``tau * KL(column sums || b)`` instead of being held to it (unbalanced transport;
        the rows still sum to ``a``). Each column update then scales the column potential by
        ``tau / (tau + epsilon)``: large ``tau`` approaches the exact constraint, small ``tau`` lets
        the scores set the cluster sizes. ``marginal_error`` is then the change in the column sums
        that one more column update would make (0 at the solution).
      return_plan: return the plan ``Q`` (rows sum to ``a``, columns to ``b``) instead of the
        per-sample assignment ``Q_ij / a_i`` (rows sum to 1).
      return_info: also return a :class:`SinkhornInfo`.

    Returns:
      ``[N, K]`` float32 assignment (or plan), plus ``SinkhornInfo`` if ``return_info``.

    Raises:
      ValueError: on bad concrete input (see the module docstring).

    Example::

      targets = sinkhorn(jnp.dot(z, prototypes.T), 0.05, num_iters=3)  # SwAV targets, [N, K]
      plan, info = sinkhorn(scores, 0.02, tol=1e-4, max_iters=500,
                            prototype_marginals=class_prior, return_plan=True, return_info=True)
    """
    scores = jnp.asarray(scores)  # one copy for NumPy input, none for a jax.Array
    sample_marginals, prototype_marginals = _as_marginal(sample_marginals), _as_marginal(prototype_marginals)
    _validate(scores, epsilon, num_iters, tol, max_iters, sample_marginals, prototype_marginals)
    if _is_concrete(prototype_relaxation) and not 0 < float(prototype_relaxation) < np.inf:
        raise ValueError(
            f"prototype_relaxation must be > 0 and finite (the weight of the column marginal's KL"
            f" penalty), got {float(prototype_relaxation)}; or None for exact columns."
        )
    use_tol = tol is not None
    return _sinkhorn_dense(
        scores,
        epsilon,
        tol if use_tol else 0.0,
        sample_marginals,
        prototype_marginals,
        prototype_relaxation,
        max_iters=max_iters if use_tol else num_iters,
        use_tol=use_tol,
        return_plan=return_plan,
        return_info=return_info,
    )


def _row_blocks(num_samples: int, chunk_size: int) -> tuple[int, int]:
    """Returns (number of blocks, rows per block); see _row_block for the block layout."""
    chunk = min(chunk_size, num_samples)
    return -(-num_samples // chunk), chunk


def _row_block(array, block, chunk: int, num_samples: int, dtype):
    """Rows of block ``block``; returns (rows, start, mask of rows that belong to this block).

    Block b covers rows [start, start + chunk) with start = min(b * chunk, N - chunk): the last
    block is shifted back to stay inside the array (no padded copy of the scores), and its rows
    that the previous block already covered are masked out.
    """
    nominal_start = block * chunk
    start = jnp.minimum(nominal_start, num_samples - chunk)
    rows = jax.lax.dynamic_slice_in_dim(array, start, chunk, axis=0)
    owned = start + jnp.arange(chunk) >= nominal_start
    if rows.dtype != dtype:
        rows = jax.lax.bitcast_convert_type(rows, dtype)
    return rows.astype(jnp.float32), start, owned


@jax.jit(static_argnames=("max_iters", "use_tol", "chunk_size", "return_info", "dtype"))
def _sinkhorn_labels_chunked(
    scores,
    epsilon,
    tol,
    sample_marginals,
    prototype_marginals,
    *,
    max_iters,
    use_tol,
    chunk_size,
    return_info,
    dtype,
):
    """Chunked solver; ``scores`` may hold the bits of ``dtype`` as uint16 (_readable_in_blocks)."""
    scores = jax.lax.stop_gradient(scores)
    num_samples, num_prototypes = scores.shape
    epsilon = jnp.asarray(epsilon, jnp.float32)
    a, b, _ = _marginals(num_samples, num_prototypes, sample_marginals, prototype_marginals)
    num_blocks, chunk = _row_blocks(num_samples, chunk_size)

    def column_logsumexp(f):
        """log sum_i exp((S_ij + f_i) / eps), streamed over row blocks with a running max."""

        def body(block, carry):
            running_max, running_sum = carry
            rows, start, owned = _row_block(scores, block, chunk, num_samples, dtype)
            f_rows = jax.lax.dynamic_slice_in_dim(f, start, chunk)
            exponents = (rows + f_rows[:, None]) / epsilon
            exponents = jnp.where(owned[:, None], exponents, -jnp.inf)
            new_max = jnp.maximum(running_max, jnp.max(exponents, axis=0))
            running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
                jnp.exp(exponents - new_max[None, :]), axis=0
            )
            return new_max, running_sum

        init = (jnp.full((num_prototypes,), -jnp.inf), jnp.zeros((num_prototypes,)))
        running_max, running_sum = jax.lax.fori_loop(0, num_blocks, body, init)
        return running_max + jnp.log(running_sum)

    def row_update(g):
        """Row update for column potential g: returns f [N] and the plan's column sums [K]."""

        def body(block, carry):
            f, column_sums = carry
            rows, start, owned = _row_block(scores, block, chunk, num_samples, dtype)
            a_rows = jax.lax.dynamic_slice_in_dim(a, start, chunk)
            exponents = (rows + g[None, :]) / epsilon
            row_max = jnp.max(exponents, axis=1)
            shifted = jnp.exp(exponents - row_max[:, None])
            row_sums = jnp.sum(shifted, axis=1)
            f_rows = epsilon * (jnp.log(a_rows) - row_max - jnp.log(row_sums))
            weights = jnp.where(owned, a_rows / row_sums, 0.0)
            column_sums = column_sums + jnp.dot(weights, shifted, precision=_HIGHEST)
            return jax.lax.dynamic_update_slice_in_dim(f, f_rows, start, axis=0), column_sums

        init = (jnp.zeros((num_samples,)), jnp.zeros((num_prototypes,)))
        return jax.lax.fori_loop(0, num_blocks, body, init)

    def iteration(carry):
        f, g, column_sums, num_iters, _ = carry
        reliable = jnp.all(column_sums > _MIN_RELIABLE_COLUMN_SUM) & jnp.all(jnp.isfinite(column_sums))
        g = jax.lax.cond(
            reliable,
            lambda: g + epsilon * (jnp.log(b) - jnp.log(column_sums)),
            lambda: epsilon * (jnp.log(b) - column_logsumexp(f)),
        )
        f, column_sums = row_update(g)
        return f, g, column_sums, num_iters + 1, jnp.sum(jnp.abs(column_sums - b))

    def not_done(carry):
        num_iters, error = carry[3], carry[4]
        keep_going = num_iters < max_iters
        return keep_going & ~(error < tol) if use_tol else keep_going

    # Zero column sums mark the first column update (from f = 0) for the logsumexp pass.
    init = (
        jnp.zeros((num_samples,)),
        jnp.zeros((num_prototypes,)),
        jnp.zeros((num_prototypes,)),
        jnp.int32(0),
        jnp.float32(jnp.inf),
    )
    _, g, _, num_iters, error = jax.lax.while_loop(not_done, iteration, init)

    def labels_of_block(block, carry):
        labels, tie_counts, finite = carry
        rows, start, owned = _row_block(scores, block, chunk, num_samples, dtype)
        block_labels, tie_counts = _spread_ties(rows, owned, g, epsilon, b, tie_counts, num_samples)
        previous = jax.lax.dynamic_slice_in_dim(labels, start, chunk)
        block_labels = jnp.where(owned, block_labels, previous)  # rows of the previous block
        labels = jax.lax.dynamic_update_slice_in_dim(labels, block_labels, start, axis=0)
        return labels, tie_counts, finite & jnp.all(jnp.isfinite(rows))

    init = (jnp.zeros((num_samples,), jnp.int32), jnp.zeros((num_prototypes,), jnp.int32), jnp.array(True))
    labels, _, finite = jax.lax.fori_loop(0, num_blocks, labels_of_block, init)
    valid = finite & _valid_parameters(epsilon, sample_marginals, prototype_marginals)
    labels = jnp.where(valid, labels, -1)
    if not return_info:
        return labels
    error = jnp.where(valid, error, jnp.nan)
    converged = error < tol if use_tol else jnp.isfinite(error)
    return labels, SinkhornInfo(num_iters, error, converged)


def _add_mod(x: jax.Array, y: jax.Array, modulus: int) -> jax.Array:
    """(x + y) mod modulus for uint32 x, y < modulus <= 2**31 (the sum fits in uint32)."""
    total = x + y
    return jnp.where(total >= modulus, total - jnp.uint32(modulus), total)


def _lattice_step(num_samples: int) -> int:
    """A multiplier P in [1, N) coprime with N whose ratio P / N has small continued-fraction
    terms (a good rank-1 lattice), searched within 256 of N / golden ratio."""
    center = int(np.rint(num_samples * (np.sqrt(5.0) - 1.0) / 2.0))

    def largest_term(step: int) -> int:
        numerator, denominator, largest = num_samples, step, 0
        while denominator:
            largest = max(largest, numerator // denominator)
            numerator, denominator = denominator, numerator % denominator
        return largest

    candidates = range(max(1, center - 256), min(num_samples - 1, center + 256) + 1)
    coprime = [step for step in candidates if np.gcd(step, num_samples) == 1]
    return min(coprime, key=lambda step: (largest_term(step), abs(step - center)), default=1)


def _stratified_points(ranks: jax.Array, num_samples: int) -> jax.Array:
    """Points ``u_r = ((r * P) mod N + 1/2) / N`` in (0, 1) for int ranks ``r`` in [0, N).

    P is coprime with N (_lattice_step), so ``r -> r * P mod N`` permutes [0, N): ranks 0..N-1
    together hit every cell of the grid ``(k + 1/2) / N`` once, and since P / N has small
    continued-fraction terms, any run of consecutive ranks is spread evenly over (0, 1) too.
    The product is formed by binary doubling in uint32 (no 64-bit integers under jax's defaults).
    """
    step = _lattice_step(num_samples)
    addend = ranks.astype(jnp.uint32)
    product = jnp.zeros_like(addend)
    for bit in range(step.bit_length()):
        if step >> bit & 1:
            product = _add_mod(product, addend, num_samples)
        addend = _add_mod(addend, addend, num_samples)
    return (product.astype(jnp.float32) + 0.5) / num_samples


def _spread_ties(
    rows, owned, g, epsilon, b, tie_counts, num_samples: int
) -> tuple[jax.Array, jax.Array]:
    """Labels ``argmax_j Q_ij`` (int32 [n]) of a block of rows [n, K], with ties spread by b.

    Column j ties with the argmax j* of ``S_ij + g_j`` when ``log(Q_ij / b_j)`` is within
    ``_TIE_RTOL`` (relative) of ``log(Q_ij* / b_j*)``: the row's scores cannot tell the columns
    apart beyond their masses (for equipartition: the plan is flat across them). The rows whose
    tie set T_i has several columns are ranked, in row order, among those with the same j*
    (``tie_counts`` [K]: such rows in earlier blocks, per j*; ``owned`` [n] masks rows that an
    earlier block covered). The row of rank r takes the column of T_i at position
    ``u_r`` (_stratified_points) of the masses ``b_j`` of T_i laid end to end. A row without ties
    keeps j* exactly (all the mass lies on j*, and the position is clamped below it). When m rows
    tie the same way, they take the first m lattice points: all N grid points ``(k + 1/2) / N``
    when m = N (e.g. equal or all-zero scores), so column j gets N times its share of T's mass
    rounded up or down (equal counts up to 1 for equipartition, counts within 1 of ``N b_j`` for
    ``prototype_marginals`` b); evenly spread points otherwise. Deterministic and independent of
    the chunk size. Returns the labels and the updated ``tie_counts``.
    """
    exponents = rows + g[None, :]
    winner = jnp.argmax(exponents, axis=1)
    log_b = epsilon * jnp.log(b)
    relative = exponents - log_b[None, :]  # epsilon * log(Q_ij / b_j) - f_i
    winning = jnp.take_along_axis(relative, winner[:, None], axis=1)
    magnitude = jnp.take_along_axis(jnp.abs(rows), winner[:, None], axis=1)
    magnitude = magnitude + jnp.abs(g[winner])[:, None] + jnp.abs(log_b[winner])[:, None]
    tied = jnp.abs(relative - winning) <= _TIE_RTOL * magnitude
    spread = owned & (jnp.sum(tied, axis=1) > 1)
    groups = (winner[:, None] == jnp.arange(b.shape[0])[None, :]) & spread[:, None]  # [n, K]
    earlier = jnp.cumsum(groups, axis=0, dtype=jnp.int32) - groups  # same-j* rows before, per block
    ranks = tie_counts[winner] + jnp.take_along_axis(earlier, winner[:, None], axis=1)[:, 0]
    cumulative = jnp.cumsum(jnp.where(tied, b[None, :], 0.0), axis=1)
    # u < 1 - 2**-24 keeps the position strictly below the total mass of the tie set.
    position = jnp.minimum(_stratified_points(ranks, num_samples), 1.0 - 2.0**-24)
    position = position[:, None] * cumulative[:, -1:]
    labels = jnp.argmax(cumulative > position, axis=1).astype(jnp.int32)
    return labels, tie_counts + jnp.sum(groups, axis=0, dtype=jnp.int32)


def _readable_in_blocks(scores: jax.Array) -> jax.Array:
    """The bits of a concrete bfloat16 array on one CPU device as uint16, without a copy;
    any other array unchanged.

    XLA's CPU compiler upcasts bfloat16 operations by converting the whole operand to float32
    (outside the loop over row blocks): a copy twice the input's size, which the chunked solver
    must avoid. Slicing uint16 is native, so the solver reads the same buffer through this view.
    """
    if not (
        scores.dtype == jnp.bfloat16
        and _is_concrete(scores)
        and len(scores.devices()) == 1
        and next(iter(scores.devices())).platform == "cpu"
    ):
        return scores
    host_view = np.asarray(scores).view(np.uint16)  # zero-copy on the CPU
    return jax.device_put(host_view, scores.sharding, may_alias=True)


@jax.jit(static_argnames=("chunk_size", "dtype"))
def _all_finite_in_blocks(scores, *, chunk_size: int, dtype) -> jax.Array:
    """Whether [N, K] scores (maybe a uint16 view of ``dtype``) are finite, one block at a time."""
    num_samples = scores.shape[0]
    num_blocks, chunk = _row_blocks(num_samples, chunk_size)

    def body(block, finite):
        rows, _, _ = _row_block(scores, block, chunk, num_samples, dtype)
        return finite & jnp.all(jnp.isfinite(rows))

    return jax.lax.fori_loop(0, num_blocks, body, jnp.array(True))


def sinkhorn_labels(
    scores: jax.Array,
    epsilon: float | jax.Array = 0.05,
    *,
    num_iters: int = 3,
    tol: float | jax.Array | None = None,
    max_iters: int | None = None,
    sample_marginals: jax.Array | None = None,
    prototype_marginals: jax.Array | None = None,
    chunk_size: int = 1024,
    return_info: bool = False,
):
    """Hard labels ``argmax_j Q_ij`` for a whole data set, without materializing ``Q``.

    Same problem, iterations and stopping rule as :func:`sinkhorn` (SeLa's label update), but
    the scores are streamed in blocks of ``chunk_size`` rows, recomputing the exponentials in the
    log domain at every iteration (one exp per entry per iteration; one more per entry in the
    rare iterations where a column sum underflows, e.g. tiny ``epsilon``). Extra memory is a few
    ``[chunk_size, K]`` float32 blocks plus O(N + K) vectors, whatever N: pass bfloat16 or
    float16 scores to halve the input's memory, and pass a ``jax.Array`` (a NumPy input is copied
    once). XLA's CPU compiler cannot slice bfloat16 natively and would convert the whole input to
    float32 first; called outside ``jit``, a bfloat16 array on one CPU device is therefore read
    through a zero-copy uint16 view. Under an outer ``jit`` on the CPU, use float16 instead
    (sliced natively) or call this function outside ``jit``.

    Ties follow the column masses: columns whose ``Q_ij / b_j`` equals the argmax's (to about 10
    float32 ulps) share its rows in proportion to ``b_j``, deterministically (the tied rows of
    each argmax column take, in row order, successive points of a lattice over the masses). Equal
    scores for all N rows thus give label counts within 1 of ``N b_j`` (equal counts for
    equipartition) instead of label 0 everywhere; rows without such a tie keep their argmax.

    Args:
      scores: ``[N, K]`` scores, e.g. SeLa's log-softmax outputs, any float dtype.
      epsilon: entropic temperature (SeLa: ``1 / lambda``, lambda = 25 on ImageNet).
      num_iters, tol, max_iters, sample_marginals, prototype_marginals: as in :func:`sinkhorn`.
      chunk_size: rows per block (static); bounds the working memory.
      return_info: also return a :class:`SinkhornInfo`.

    Returns:
      int32 ``[N]`` labels in ``[0, K)`` (all -1 for invalid traced input, see the module
      docstring), plus ``SinkhornInfo`` if ``return_info``.

    Example::

      labels, info = sinkhorn_labels(log_probs.astype(jnp.bfloat16), 1 / 25, tol=1e-3,
                                     max_iters=500, return_info=True)
    """
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a Python int >= 1, got {chunk_size!r}.")
    scores = jnp.asarray(scores)  # one copy for NumPy input, none for a jax.Array
    sample_marginals, prototype_marginals = _as_marginal(sample_marginals), _as_marginal(prototype_marginals)
    dtype = scores.dtype
    readable = _readable_in_blocks(scores)
    _validate(
        scores,
        epsilon,
        num_iters,
        tol,
        max_iters,
        sample_marginals,
        prototype_marginals,
        all_finite=lambda _: bool(_all_finite_in_blocks(readable, chunk_size=chunk_size, dtype=dtype)),
    )
    use_tol = tol is not None
    return _sinkhorn_labels_chunked(
        readable,
        epsilon,
        tol if use_tol else 0.0,
        sample_marginals,
        prototype_marginals,
        max_iters=max_iters if use_tol else num_iters,
        use_tol=use_tol,
        chunk_size=chunk_size,
        return_info=return_info,
        dtype=dtype,
    )
