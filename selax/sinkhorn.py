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
mass 1 (``a = 1/N``, ``b = 1/K``: equipartition of the samples over the prototypes).

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
NaN or zeros; such hard problems simply take the log-domain path more often.

Gradients: the scores are wrapped in ``jax.lax.stop_gradient`` (SwAV, Suave and SeLa all treat
the targets as constants), so ``jax.grad`` through these functions gives zeros.

Input checks: outside ``jax.jit``, bad input raises ``ValueError`` (wrong rank, non-positive
``epsilon``, NaN or inf scores, non-positive marginals, marginals with different totals, ``tol``
without ``max_iters``). Traced values cannot be checked: under ``jit`` NaN or inf scores give a
NaN result with ``info.converged == False`` after the full iteration budget, and marginals are
each normalized to their own total (the plan takes the total of ``sample_marginals``).

Transformations: both functions work under ``jax.jit`` and ``jax.vmap`` (e.g. several heads
``[H, N, K]``), and ``sinkhorn`` accepts scores sharded along N (``NamedSharding(mesh,
P('data', None))``): the column sums become compiler-inserted all-reduces and the output keeps
the input's sharding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SinkhornInfo", "sinkhorn", "sinkhorn_labels"]

# Scalings u, v are absorbed into the potentials once |log u| or |log v| would exceed this bound.
_LOG_SCALING_RANGE = 20.0
# Column sums below this (total mass 1) are recomputed with a column logsumexp in the chunked
# solver: beneath it, terms flushed to zero could carry a noticeable part of the sum.
_MIN_RELIABLE_COLUMN_SUM = 1e-30
# Relative tolerance when comparing the totals of the two marginals.
_MASS_RTOL = 1e-4


class SinkhornInfo(NamedTuple):
    """Diagnostics of one solve (a pytree; under ``vmap`` every field gains the batch axes).

    Attributes:
      num_iters_run: int32 scalar, Sinkhorn iterations done (each = column update + row update).
      marginal_error: float32 scalar, ``sum_j |sum_i Q_ij - b_j| / sum_j b_j`` at the end.
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


def _check_positive_marginal(name: str, marginal, length: int, axis_name: str) -> float | None:
    """Validates a concrete marginal of shape [length]; returns its total (None when traced)."""
    if marginal is None:
        return None
    if jnp.ndim(marginal) != 1 or jnp.shape(marginal)[0] != length:
        raise ValueError(
            f"{name} must have shape [{length}] (one entry per {axis_name}), got shape "
            f"{tuple(jnp.shape(marginal))}."
        )
    if not _is_concrete(marginal):
        return None
    minimum = float(jnp.min(marginal))
    if not minimum > 0 or not _all_finite(marginal):
        raise ValueError(
            f"{name} must be finite and strictly positive (got a minimum of {minimum}); give every "
            f"{axis_name} a positive mass, or drop it from the problem."
        )
    return float(jnp.sum(jnp.asarray(marginal, jnp.float32)))


def _validate(
    scores,
    epsilon,
    num_iters,
    tol,
    max_iters,
    sample_marginals,
    prototype_marginals,
) -> None:
    """Raises ValueError on bad concrete input; traced values are only checked for shape."""
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
    if _is_concrete(epsilon) and not float(epsilon) > 0:
        raise ValueError(f"epsilon must be > 0 (the entropic temperature), got {float(epsilon)}.")
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
    if _is_concrete(scores) and not _all_finite(scores):
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


def _marginals(
    num_samples: int, num_prototypes: int, sample_marginals, prototype_marginals
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (a [N], b [K]) normalized to total 1, and the plan's total mass (scalar)."""
    if sample_marginals is None:
        a = jnp.full((num_samples,), 1.0 / num_samples, jnp.float32)
    else:
        a = jnp.asarray(sample_marginals, jnp.float32)
        a = a / jnp.sum(a)
    if prototype_marginals is None:
        b = jnp.full((num_prototypes,), 1.0 / num_prototypes, jnp.float32)
    else:
        b = jnp.asarray(prototype_marginals, jnp.float32)
        b = b / jnp.sum(b)
    if sample_marginals is not None:
        total = jnp.sum(jnp.asarray(sample_marginals, jnp.float32))
    elif prototype_marginals is not None:
        total = jnp.sum(jnp.asarray(prototype_marginals, jnp.float32))
    else:
        total = jnp.ones((), jnp.float32)
    return a, b, total


class _Scalings(NamedTuple):
    """Solver state besides the kernel exp((S + f + g) / eps): the plan is diag(u) kernel diag(v)."""

    f: jax.Array  # [N] row potential absorbed into the kernel
    u: jax.Array  # [N] row scaling on top of the kernel
    v: jax.Array  # [K] column scaling
    column_sums_u: jax.Array  # [K] kernel^T u, i.e. column sums of the plan divided by v
    num_iters: jax.Array  # int32 scalar, iterations done
    error: jax.Array  # float32 scalar, column marginal error of the current plan
    in_range: jax.Array  # bool scalar, False once an exp-domain step left the safe range


def _log_domain_iteration(scores, epsilon, a, b, f, num_iters) -> tuple[jax.Array, _Scalings]:
    """One iteration in the log domain from row potential f; returns the kernel [N, K] formed
    with the new potentials (u = v = 1) and the scalings."""
    g = epsilon * (jnp.log(b) - jax.nn.logsumexp((scores + f[:, None]) / epsilon, axis=0))
    exponents = (scores + g[None, :]) / epsilon
    row_max = jnp.max(exponents, axis=1)
    shifted = jnp.exp(exponents - row_max[:, None])
    row_sums = jnp.sum(shifted, axis=1)
    f = epsilon * (jnp.log(a) - row_max - jnp.log(row_sums))
    kernel = shifted * (a / row_sums)[:, None]
    column_sums = jnp.sum(kernel, axis=0)
    scalings = _Scalings(
        f=f,
        u=jnp.ones_like(a),
        v=jnp.ones_like(b),
        column_sums_u=column_sums,
        num_iters=num_iters + 1,
        error=jnp.sum(jnp.abs(column_sums - b)),
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


def _scaling_iterations(kernel, scalings: _Scalings, a, b, tol, max_iters: int) -> _Scalings:
    """Exp-domain iterations on a fixed kernel (two matrix-vector products each) until done or
    until a step would leave the safe range; that step is not taken."""

    def cond(scalings):
        return scalings.in_range & ~_done(scalings, tol, max_iters)

    def body(scalings):
        v = b / scalings.column_sums_u
        u = a / (kernel @ v)
        column_sums_u = u @ kernel
        in_range = _in_safe_range(u) & _in_safe_range(v)
        stepped = scalings._replace(
            u=u,
            v=v,
            column_sums_u=column_sums_u,
            num_iters=scalings.num_iters + 1,
            error=jnp.sum(jnp.abs(v * column_sums_u - b)),
        )
        rejected = scalings._replace(in_range=in_range)
        return jax.tree.map(lambda new, old: jnp.where(in_range, new, old), stepped, rejected)

    return jax.lax.while_loop(cond, body, scalings)


@jax.jit(static_argnames=("max_iters", "use_tol", "return_plan", "return_info"))
def _sinkhorn_dense(
    scores, epsilon, tol, sample_marginals, prototype_marginals, *, max_iters, use_tol,
    return_plan, return_info,
):
    scores = jax.lax.stop_gradient(jnp.asarray(scores)).astype(jnp.float32)
    epsilon = jnp.asarray(epsilon, jnp.float32)
    tol = jnp.asarray(tol, jnp.float32) if use_tol else None
    num_samples, num_prototypes = scores.shape
    a, b, total = _marginals(num_samples, num_prototypes, sample_marginals, prototype_marginals)

    kernel, scalings = _initial_state(scores, epsilon, a, b)
    scalings = _scaling_iterations(kernel, scalings, a, b, tol, max_iters)

    def restart_in_log_domain(carry):
        """Absorbs u into f, redoes the rejected step in the log domain, then resumes scaling."""
        _, scalings = carry
        absorbed_f = scalings.f + epsilon * jnp.log(scalings.u)
        kernel, scalings = _log_domain_iteration(scores, epsilon, a, b, absorbed_f, scalings.num_iters)
        return kernel, _scaling_iterations(kernel, scalings, a, b, tol, max_iters)

    kernel, scalings = jax.lax.while_loop(
        lambda carry: ~_done(carry[1], tol, max_iters), restart_in_log_domain, (kernel, scalings)
    )

    if return_plan:
        result = kernel * (total * scalings.u)[:, None] * scalings.v[None, :]
    else:
        result = kernel * (scalings.u / a)[:, None] * scalings.v[None, :]
    if not return_info:
        return result
    converged = scalings.error < tol if use_tol else jnp.isfinite(scalings.error)
    return result, SinkhornInfo(scalings.num_iters, scalings.error, converged)


def sinkhorn(
    scores: jax.Array,
    epsilon: float | jax.Array = 0.05,
    *,
    num_iters: int = 3,
    tol: float | jax.Array | None = None,
    max_iters: int | None = None,
    sample_marginals: jax.Array | None = None,
    prototype_marginals: jax.Array | None = None,
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
    _validate(scores, epsilon, num_iters, tol, max_iters, sample_marginals, prototype_marginals)
    use_tol = tol is not None
    return _sinkhorn_dense(
        scores,
        epsilon,
        tol if use_tol else 0.0,
        sample_marginals,
        prototype_marginals,
        max_iters=max_iters if use_tol else num_iters,
        use_tol=use_tol,
        return_plan=return_plan,
        return_info=return_info,
    )


def _row_block_starts(num_samples: int, chunk_size: int) -> tuple[int, int]:
    """Block b covers rows [start_b, start_b + chunk_size) with start_b = min(b*chunk, N - chunk).

    The last block is shifted back to stay inside the array (no padded copy of the scores); its
    rows that an earlier block already covered are masked out. Returns (num_blocks, chunk).
    """
    chunk = min(chunk_size, num_samples)
    return -(-num_samples // chunk), chunk


def _row_block(array, block, chunk: int, num_samples: int):
    """Rows of block ``block``; returns (rows, start, mask of rows that belong to this block)."""
    nominal_start = block * chunk
    start = jnp.minimum(nominal_start, num_samples - chunk)
    rows = jax.lax.dynamic_slice_in_dim(array, start, chunk, axis=0)
    owned = start + jnp.arange(chunk) >= nominal_start
    return rows, start, owned


@jax.jit(static_argnames=("max_iters", "use_tol", "chunk_size", "return_info"))
def _sinkhorn_labels_chunked(
    scores, epsilon, tol, sample_marginals, prototype_marginals, *, max_iters, use_tol, chunk_size,
    return_info,
):
    scores = jax.lax.stop_gradient(scores)
    epsilon = jnp.asarray(epsilon, jnp.float32)
    num_samples, num_prototypes = scores.shape
    a, b, _ = _marginals(num_samples, num_prototypes, sample_marginals, prototype_marginals)
    num_blocks, chunk = _row_block_starts(num_samples, chunk_size)

    def column_logsumexp(f):
        """log sum_i exp((S_ij + f_i) / eps), streamed over row blocks with a running max."""

        def body(block, carry):
            running_max, running_sum = carry
            rows, start, owned = _row_block(scores, block, chunk, num_samples)
            f_rows = jax.lax.dynamic_slice_in_dim(f, start, chunk)
            exponents = (rows.astype(jnp.float32) + f_rows[:, None]) / epsilon
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
            rows, start, owned = _row_block(scores, block, chunk, num_samples)
            a_rows = jax.lax.dynamic_slice_in_dim(a, start, chunk)
            exponents = (rows.astype(jnp.float32) + g[None, :]) / epsilon
            row_max = jnp.max(exponents, axis=1)
            shifted = jnp.exp(exponents - row_max[:, None])
            row_sums = jnp.sum(shifted, axis=1)
            f_rows = epsilon * (jnp.log(a_rows) - row_max - jnp.log(row_sums))
            weights = jnp.where(owned, a_rows / row_sums, 0.0)
            column_sums = column_sums + weights @ shifted
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

    zeros_f = jnp.zeros((num_samples,))
    # column_sums = 0 marks the first column update as unreliable: it is done by logsumexp.
    init = (zeros_f, jnp.zeros((num_prototypes,)), jnp.zeros((num_prototypes,)), jnp.int32(0),
            jnp.float32(jnp.inf))
    _, g, _, num_iters, error = jax.lax.while_loop(not_done, iteration, init)

    def labels_of_block(block, labels):
        rows, start, _ = _row_block(scores, block, chunk, num_samples)
        block_labels = jnp.argmax(rows.astype(jnp.float32) + g[None, :], axis=1).astype(jnp.int32)
        return jax.lax.dynamic_update_slice_in_dim(labels, block_labels, start, axis=0)

    labels = jax.lax.fori_loop(0, num_blocks, labels_of_block, jnp.zeros((num_samples,), jnp.int32))
    if not return_info:
        return labels
    converged = error < tol if use_tol else jnp.isfinite(error)
    return labels, SinkhornInfo(num_iters, error, converged)


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
    ``[chunk_size, K]`` float32 blocks plus O(N + K) vectors, whatever N: pass bfloat16 scores
    to halve the input's memory, and pass a ``jax.Array`` (a NumPy input is copied once).

    Args:
      scores: ``[N, K]`` scores, e.g. SeLa's log-softmax outputs, any float dtype.
      epsilon: entropic temperature (SeLa: ``1 / lambda``, lambda = 25 on ImageNet).
      num_iters, tol, max_iters, sample_marginals, prototype_marginals: as in :func:`sinkhorn`.
      chunk_size: rows per block (static); bounds the working memory.
      return_info: also return a :class:`SinkhornInfo`.

    Returns:
      int32 ``[N]`` labels in ``[0, K)``, plus ``SinkhornInfo`` if ``return_info``.

    Example::

      labels, info = sinkhorn_labels(log_probs.astype(jnp.bfloat16), 1 / 25, tol=1e-3,
                                     max_iters=500, return_info=True)
    """
    _validate(scores, epsilon, num_iters, tol, max_iters, sample_marginals, prototype_marginals)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a Python int >= 1, got {chunk_size!r}.")
    use_tol = tol is not None
    return _sinkhorn_labels_chunked(
        jnp.asarray(scores),
        epsilon,
        tol if use_tol else 0.0,
        sample_marginals,
        prototype_marginals,
        max_iters=max_iters if use_tol else num_iters,
        use_tol=use_tol,
        chunk_size=chunk_size,
        return_info=return_info,
    )
