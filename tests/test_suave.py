"""Suave's pure pieces: Sinkhorn targets with a queue, prototype freezing, normalization, the loss."""

import jax
import jax.numpy as jnp
import numpy as np

from selax.methods import suave, swav

from conftest import loss_of
from selax.sinkhorn import sinkhorn

KEY = jax.random.PRNGKey(0)


def test_queue_rows_take_part_in_the_assignment_but_are_not_returned():
    hp = suave.HParams(num_prototypes=4, queue_length=6)
    key_scores, key_queue = jax.random.split(jax.random.PRNGKey(0))
    scores = jax.random.normal(key_scores, (5, 4))
    queue_scores = jax.random.normal(key_queue, (6, 4)) + jnp.array([3.0, 0.0, 0.0, 0.0])
    with_queue = swav.assignments(hp, scores, queue_scores, jnp.array(True), None)
    without = swav.assignments(hp, scores, queue_scores, jnp.array(False), None)
    assert with_queue.shape == (5, 4)
    expected = sinkhorn(jnp.concatenate([scores, queue_scores]), hp.sinkhorn_epsilon, num_iters=3)[:5]
    np.testing.assert_allclose(with_queue, expected, atol=1e-6)
    np.testing.assert_allclose(without, sinkhorn(scores, hp.sinkhorn_epsilon, num_iters=3), atol=1e-6)
    # The queue favours prototype 0, so equipartition pushes the batch away from it.
    assert float(with_queue[:, 0].mean()) < float(without[:, 0].mean())


def test_prototypes_are_frozen_for_the_configured_steps_only():
    hp = suave.HParams(num_prototypes=3, freeze_prototypes_steps=10)
    grads = {"head": {"prototypes": jnp.ones((2, 3))}, "encoder": {"w": jnp.ones(2)}}
    frozen = swav.mask_gradients(hp, grads, jnp.array(9))
    assert not np.any(frozen["head"]["prototypes"]) and np.all(frozen["encoder"]["w"] == 1)
    assert np.all(swav.mask_gradients(hp, grads, jnp.array(10))["head"]["prototypes"] == 1)


def test_prototypes_are_unit_norm_after_each_update():
    params = {"head": {"prototypes": jnp.arange(1.0, 7.0).reshape(2, 3)}}
    normalized, _ = swav.after_update(suave.HParams(num_prototypes=3), params, {}, jnp.array(0))
    np.testing.assert_allclose(jnp.linalg.norm(normalized["head"]["prototypes"], axis=0), 1.0, rtol=1e-6)


def test_supervised_only_loss_sees_no_unlabeled_image():
    seen = []

    def apply_fn(variables, images, train, mutable):
        seen.append(images.shape[0])
        scores = images.reshape(images.shape[0], -1)[:, :3]
        outputs = dict(head_scores=scores, linear_logits=scores, embedding=scores, features=scores)
        return outputs, {"batch_stats": variables["batch_stats"]}

    views = {"labeled": jnp.ones((2, 2, 2, 1)), "unlabeled": [jnp.zeros((5, 2, 2, 1))] * 2}
    hp = suave.HParams(num_prototypes=3, supervised_only=True)
    params = {"head": {"prototypes": jnp.eye(3)}}
    loss, _ = loss_of(suave, hp, apply_fn, params, {}, {}, views, jnp.array([0, 1]), jnp.array(0), KEY)
    assert seen == [2] and np.isfinite(float(loss))
    seen.clear()
    loss_of(suave, 
        suave.HParams(num_prototypes=3), apply_fn, params, {}, {}, views, jnp.array([0, 1]), jnp.array(0), KEY
    )
    assert seen == [12]  # labeled and both global views share one forward: one resolution
    seen.clear()
    mixup = suave.HParams(num_prototypes=3, unlabeled_mixup_alpha=1.0, labeled_mixup_alpha=1.0)
    loss, (_, _, metrics) = loss_of(suave, 
        mixup, apply_fn, params, {}, {}, views, jnp.array([0, 1]), jnp.array(0), KEY
    )
    assert seen == [22] and np.isfinite(float(loss))  # plus one mixed copy of each global view
