"""TEMPORARY minimal log-domain Sinkhorn (replaced by the sinkhorn branch)."""

import jax
import jax.numpy as jnp


def sinkhorn(
    scores,
    epsilon=0.05,
    *,
    num_iters=3,
    tol=None,
    max_iters=None,
    sample_marginals=None,
    prototype_marginals=None,
    return_plan=False,
    return_info=False,
):
    scores = scores.astype(jnp.float32) / epsilon
    n, k = scores.shape
    log_a = jnp.full((n,), -jnp.log(n)) if sample_marginals is None else jnp.log(sample_marginals)
    log_b = jnp.full((k,), -jnp.log(k)) if prototype_marginals is None else jnp.log(prototype_marginals)
    f = jnp.zeros(n)
    g = jnp.zeros(k)
    for _ in range(num_iters):
        g = log_b - jax.nn.logsumexp(scores + f[:, None], axis=0)
        f = log_a - jax.nn.logsumexp(scores + g[None, :], axis=1)
    logq = scores + f[:, None] + g[None, :]
    return jax.nn.softmax(logq, axis=1)
