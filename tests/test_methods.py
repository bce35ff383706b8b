"""Daino and SeLa: schedules, EMA and center math, targets, losses and label updates against float64 NumPy
references; Suave's and SeLa's class priors (the configs' :smoke runs are in tests/test_configs.py)."""

import dataclasses
import importlib
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selax import sharding, train
from selax.methods import daino, dino, sela, suave, swav
from selax.methods.base import RunInfo, SplitEmbeddings

from conftest import loss_of
from test_sinkhorn import reference_assignment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

KEY = jax.random.PRNGKey(0)


def log_softmax64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax64(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax64(x))


def split_embeddings(train_embeddings: np.ndarray, labeled_embeddings: np.ndarray, labels: np.ndarray):
    """A `SplitEmbeddings` over fixed arrays (the train split's the same through any view)."""
    return SplitEmbeddings(lambda view, key: train_embeddings, lambda: (labeled_embeddings, labels))


def fake_apply(variables, images, train=False, mutable=()):
    """A linear 'network' whose outputs depend on the params: head_scores = flat(images) @ W (per head if
    W is [T, D, K]), and SeLa's overclustering scores flat(images) @ aux_w sown when `aux_w` is given;
    batch_stats count the forwards so their threading is visible."""
    params, stats = variables["params"], variables["batch_stats"]
    flat = images.reshape(images.shape[0], -1).astype(jnp.float32)
    scores = jnp.einsum("bd,...dk->...bk", flat, params["w"])
    outputs = dict(features=flat, embedding=flat, head_scores=scores, linear_logits=flat @ params["linear"])
    if not mutable:
        return outputs
    updates = {"batch_stats": {"count": stats["count"] + 1}}
    if "aux_w" in params:
        updates["intermediates"] = {
            "head": {"aux_scores": (jnp.einsum("bd,tdk->tbk", flat, params["aux_w"]),)}
        }
    return outputs, updates


# ------------------------------------------------------------------------------------------------------
# Daino


def daino_hp(**overrides):
    fields = dict(num_outputs=5, num_steps=100, teacher_temperature_warmup_steps=40, labeled_weight=0.3)
    return daino.HParams(**{**fields, **overrides})


def test_teacher_temperature_warms_up_linearly_then_stays():
    hp = daino_hp()
    for step in (0, 10, 20, 39, 40, 41, 99):
        expected = 0.04 + min(step / 40, 1.0) * (0.07 - 0.04)
        assert float(dino.teacher_temperature(hp, jnp.asarray(step))) == pytest.approx(expected, rel=1e-6)


def test_teacher_ema_follows_the_cosine_momentum_schedule():
    hp = daino_hp()
    rng = np.random.default_rng(0)
    student = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": {"c": rng.normal(size=(2,)).astype(np.float32)},
    }
    teacher = jax.tree_util.tree_map(lambda x: x + 1.0, student)
    extras = dict(teacher_params=teacher, teacher_batch_stats={}, center=jnp.zeros(5))
    for step in (0, 25, 50, 100):
        momentum = 1.0 - (1.0 - 0.990) * 0.5 * (1.0 + np.cos(np.pi * step / 100))
        params, new_extras = dino.after_update(hp, student, extras, jnp.asarray(step))
        assert params == student  # No DINO head in these params: nothing to normalize.
        for t, s, new in zip(
            jax.tree_util.tree_leaves(teacher),
            jax.tree_util.tree_leaves(student),
            jax.tree_util.tree_leaves(new_extras["teacher_params"]),
        ):
            np.testing.assert_allclose(new, momentum * t.astype(np.float64) + (1 - momentum) * s, rtol=1e-6)
    assert dino.after_update(hp, student, None, jnp.asarray(0)) == (student, None)


def test_last_layer_directions_become_unit_columns_and_the_head_output_is_unchanged():
    head = dino.build_head(daino_hp(head_hidden_dim=8, head_bottleneck_dim=4))
    features = jax.random.normal(jax.random.PRNGKey(0), (3, 6))
    params = head.init(jax.random.PRNGKey(1), features)["params"]
    normalized = dino.normalize_last_layer(params)
    np.testing.assert_allclose(np.linalg.norm(normalized["last_layer_direction"], axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        head.apply({"params": normalized}, features),
        head.apply({"params": params}, features),
        rtol=1e-5,
        atol=1e-6,
    )


def test_center_is_an_ema_of_the_mean_teacher_output():
    rng = np.random.default_rng(1)
    center = rng.normal(size=(6,))
    logits = rng.normal(size=(2, 8, 6))
    expected = 0.9 * center + 0.1 * logits.reshape(-1, 6).mean(axis=0)
    np.testing.assert_allclose(
        dino.updated_center(jnp.asarray(center), jnp.asarray(logits), 0.9), expected, rtol=1e-5, atol=1e-6
    )


def test_daino_loss_matches_a_numpy_reference():
    """Teacher targets from centered, sharpened teacher logits; each supervises every student view but
    its own; labeled smoothed CE; weighted mean; plus the linear head's CE. New center and teacher stats."""
    hp = daino_hp(teacher_temperature_warmup_steps=10)
    rng = np.random.default_rng(2)
    d, k, num_classes, bu, bl = 12, 5, 3, 6, 4
    student = dict(
        w=rng.normal(size=(d, k)).astype(np.float32),
        linear=rng.normal(size=(d, num_classes)).astype(np.float32),
    )
    teacher = dict(w=rng.normal(size=(d, k)).astype(np.float32), linear=student["linear"])
    center = rng.normal(size=(k,)).astype(np.float32)
    extras = dict(
        teacher_params=teacher, teacher_batch_stats={"count": jnp.asarray(10)}, center=jnp.asarray(center)
    )
    globals_ = [rng.normal(size=(bu, 2, 2, 3)).astype(np.float32) for _ in range(2)]
    local = rng.normal(size=(bu, 4, 1, 3)).astype(np.float32)  # A third view, of another shape.
    labeled = rng.normal(size=(bl, 2, 2, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=bl).astype(np.int32)
    views = dict(labeled=labeled, unlabeled=[*globals_, local])
    step = 5
    loss, (stats, new_extras, metrics) = loss_of(daino, 
        hp, fake_apply, student, {"count": jnp.asarray(0)}, extras, views, labels, jnp.asarray(step), KEY
    )

    flat = lambda x: x.reshape(x.shape[0], -1).astype(np.float64)
    temperature = 0.04 + 0.5 * 0.03
    teacher_logits = [flat(g) @ teacher["w"] for g in globals_]
    targets = [softmax64((t - center) / temperature) for t in teacher_logits]
    student_logits = [flat(v) @ student["w"] / 0.1 for v in [*globals_, local]]
    unlabeled_rows = [
        -(targets[i] * log_softmax64(student_logits[j])).sum(-1) for i in range(2) for j in range(3) if j != i
    ]
    smoothed = 0.99 * np.eye(k)[labels] + 0.01 / k
    labeled_rows = -(smoothed * log_softmax64(flat(labeled) @ student["w"] / 0.1)).sum(-1)
    linear = -log_softmax64(flat(labeled) @ student["linear"])[np.arange(bl), labels].mean()
    expected = 0.3 * labeled_rows.mean() + 0.7 * np.concatenate(unlabeled_rows).mean() + linear
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert float(metrics["teacher_temperature"]) == pytest.approx(temperature)
    np.testing.assert_allclose(
        new_extras["center"],
        0.9 * center + 0.1 * np.concatenate(teacher_logits).mean(0),
        rtol=1e-4,
        atol=1e-5,
    )
    assert int(stats["count"]) == 2  # Labeled and global views share a resolution; the local one differs.
    assert int(new_extras["teacher_batch_stats"]["count"]) == 11  # One teacher forward on the global views.


def test_daino_evaluates_the_teacher():
    extras = dict(teacher_params={"w": 1}, teacher_batch_stats={"s": 2}, center=None)
    assert dino.eval_variables({"w": 0}, {"s": 0}, extras) == {"params": {"w": 1}, "batch_stats": {"s": 2}}


# ------------------------------------------------------------------------------------------------------
# SeLa


def sela_hp(**overrides):
    fields = dict(num_clusters=4, num_heads=3, num_examples=103, num_steps=1000, num_label_updates=20)
    return sela.HParams(**{**fields, **overrides})


def test_initial_labels_are_random_balanced_and_differ_between_heads():
    labels = np.asarray(sela.init_extras(sela_hp(), None, None)["labels"])
    assert labels.shape == (3, 103) and labels.dtype == np.int32
    for head in labels:
        counts = np.bincount(head, minlength=4)
        assert counts.max() - counts.min() <= 1 and counts.sum() == 103
    assert not np.array_equal(labels[0], labels[1])
    assert not np.array_equal(labels[0], np.sort(labels[0]))


def test_label_update_schedule_is_denser_early():
    steps = np.asarray(sela.label_update_steps(40_000, 90))
    assert len(steps) == 90
    assert steps[0] > 0 and steps[-1] < 40_000
    gaps = np.diff(steps)
    assert np.all(gaps > 0) and np.all(np.diff(gaps) >= -1)  # Growing gaps, up to rounding.
    assert gaps[-1] > 10 * gaps[0]
    # Short runs merge duplicate steps instead of repeating an update.
    short = sela.label_update_steps(30, 40)
    assert len(short) == len(set(short)) < 40


def test_label_updates_are_capped_at_one_per_epoch():
    def updates(num_label_updates: int, num_epochs: float) -> int:
        info = RunInfo(10, 1000, num_steps=1000, seed=0, num_epochs=num_epochs, pretrained=False)
        fields = dict(num_heads=1, num_label_updates=num_label_updates)
        return sela.METHOD.hparams_from_config("sela", fields, info).num_label_updates

    assert updates(80, 400.0) == 80  # The papers' and the digits' recipes: below the cap.
    assert updates(80, 60.7) == 60  # A 60-epoch run on a large folder.
    assert updates(80, 0.3) == 1  # Shorter than an epoch: one update still.
    assert len(sela.update_steps(sela_hp(num_steps=10_000, num_label_updates=60))) == 60
    with pytest.raises(ValueError, match="num_label_updates=0"):
        updates(0, 400.0)


def numpy_sinkhorn_labels(
    log_probs: np.ndarray, lam: float, iters: int = 20_000, cluster_marginals=None
) -> np.ndarray:
    """float64 reference: P = P0^lam scaled to uniform row marginals and column marginals `cluster_marginals`
    (normalized; uniform when None), labels = argmax."""
    n, k = log_probs.shape
    b = np.ones(k) if cluster_marginals is None else np.asarray(cluster_marginals, np.float64)
    b = b / b.sum()
    log_kernel = lam * np.asarray(log_probs, np.float64)
    log_kernel -= log_kernel.max()
    kernel = np.exp(log_kernel)
    u, v = np.ones(n), np.ones(k)
    for _ in range(iters):
        u = (1.0 / n) / (kernel @ v)
        v = b / (kernel.T @ u)
    return np.argmax(u[:, None] * kernel * v[None, :], axis=1)


def test_label_update_is_the_argmax_of_a_numpy_sinkhorn():
    # 60 rows in chunks of 16: the last chunk is partial.
    hp = sela_hp(
        num_examples=60, lam=5.0, sinkhorn_tol=1e-7, sinkhorn_max_iters=20_000, sinkhorn_chunk_size=16
    )
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(60, 5)).astype(np.float32)  # [N, E], in train order.
    prototypes = rng.normal(size=(3, 5, 4)).astype(np.float32)  # [T, E, K]
    prototypes[:, :, 0] += 0.8 * embeddings.mean(0)  # Uneven: the plain argmax would crowd cluster 0.
    params = {"head": {"prototypes": prototypes}}
    embed = split_embeddings(embeddings, None, None)
    labels = np.asarray(sela.update_extras(hp, None, params, 1, embed)["labels"])
    assert labels.shape == (3, 60) and labels.dtype == np.int32
    for t in range(3):
        scores = embeddings.astype(np.float64) @ prototypes[t].astype(np.float64)
        log_probs = np.asarray(sela.head_log_probs(hp, jnp.asarray(embeddings), jnp.asarray(prototypes[t])))
        np.testing.assert_allclose(log_probs, log_softmax64(scores), atol=1e-5)
        np.testing.assert_array_equal(labels[t], numpy_sinkhorn_labels(log_softmax64(scores), hp.lam))
        assert np.bincount(labels[t], minlength=4).max() < np.bincount(scores.argmax(-1), minlength=4).max()


def test_bfloat16_label_step_agrees_with_float32():
    """The ImageNet config's memory saving: log-probabilities held in bfloat16 barely move the labels."""
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(2000, 16)).astype(np.float32)
    prototypes = rng.normal(size=(2, 16, 10)).astype(np.float32)
    labels = {
        dtype: np.asarray(
            sela.pseudo_labels(
                sela_hp(num_examples=2000, num_clusters=10, label_step_dtype=dtype), embeddings, prototypes
            )
        )
        for dtype in ("float32", "bfloat16")
    }
    assert (
        jnp.dtype(sela.head_log_probs(sela_hp(label_step_dtype="bfloat16"), embeddings, prototypes[0]).dtype)
        == jnp.bfloat16
    )
    agreement = np.mean(labels["float32"] == labels["bfloat16"])
    assert agreement > 0.95, agreement
    for head in labels["bfloat16"]:
        assert np.bincount(head, minlength=10).max() < 1.2 * 200


def test_label_update_with_a_class_prior_is_the_argmax_of_a_numpy_sinkhorn_with_that_prior():
    prior = (5.0, 3.0, 1.5, 0.5)  # Unnormalized masses: the Sinkhorn normalizes them.
    fields = dict(num_examples=200, num_heads=2, lam=5.0, sinkhorn_tol=1e-7, sinkhorn_max_iters=20_000)
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(200, 6)).astype(np.float32)  # [N, E]
    params = {"head": {"prototypes": rng.normal(size=(2, 6, 4)).astype(np.float32)}}  # [T, E, K]
    embed = split_embeddings(embeddings, None, None)
    with_prior = sela_hp(**fields, cluster_marginals=prior)
    labels = np.asarray(sela.update_extras(with_prior, None, params, 1, embed)["labels"])
    balanced = np.asarray(sela.update_extras(sela_hp(**fields), None, params, 1, embed)["labels"])
    for t in range(2):
        scores = embeddings.astype(np.float64) @ params["head"]["prototypes"][t].astype(np.float64)
        expected = numpy_sinkhorn_labels(log_softmax64(scores), fields["lam"], cluster_marginals=prior)
        np.testing.assert_array_equal(labels[t], expected)
        counts = np.bincount(labels[t], minlength=4)
        # The pseudo-label counts follow the prior's order and sit closer to it than the balanced ones.
        assert np.all(np.diff(counts) < 0)
        target = 200 * np.asarray(prior) / sum(prior)
        assert np.abs(counts - target).sum() < np.abs(np.bincount(balanced[t], minlength=4) - target).sum()


def test_overclustering_heads_get_balanced_then_equipartitioned_labels_of_their_own():
    prior = (4.0, 3.0, 2.0, 1.0)  # For the evaluated heads only.
    hp = sela_hp(
        num_examples=60,
        lam=5.0,
        sinkhorn_tol=1e-7,
        sinkhorn_max_iters=20_000,
        cluster_marginals=prior,
        aux_num_heads=2,
        aux_num_clusters=6,
    )
    extras = sela.init_extras(hp, None, None)
    initial_aux = np.asarray(extras["aux_labels"])
    assert extras["labels"].shape == (3, 60) and initial_aux.shape == (2, 60)
    for head in initial_aux:
        np.testing.assert_array_equal(np.bincount(head, minlength=6), 10)
    rng = np.random.default_rng(8)
    embeddings = rng.normal(size=(60, 5)).astype(np.float32)
    prototypes = rng.normal(size=(3, 5, 4)).astype(np.float32)
    aux_prototypes = rng.normal(size=(2, 5, 6)).astype(np.float32)
    aux_prototypes[:, :, 0] += 0.8 * embeddings.mean(0)  # Uneven: the plain argmax would crowd cluster 0.
    params = {"head": {"prototypes": prototypes, "aux_prototypes": aux_prototypes}}
    updated = sela.update_extras(hp, extras, params, 1, split_embeddings(embeddings, None, None))
    for t in range(3):
        scores = embeddings.astype(np.float64) @ prototypes[t]
        expected = numpy_sinkhorn_labels(log_softmax64(scores), hp.lam, cluster_marginals=prior)
        np.testing.assert_array_equal(np.asarray(updated["labels"][t]), expected)
    for t in range(2):
        scores = embeddings.astype(np.float64) @ aux_prototypes[t]
        expected = numpy_sinkhorn_labels(log_softmax64(scores), hp.lam)  # Equipartition, not the prior.
        np.testing.assert_array_equal(np.asarray(updated["aux_labels"][t]), expected)


def test_clustering_heads_sow_the_overclustering_scores_and_normalize_both_prototype_sets():
    from selax.models.heads import normalize_prototypes

    heads = sela.build_head(sela_hp(num_clusters=4, num_heads=3, aux_num_heads=2, aux_num_clusters=9))
    embedding = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7)), jnp.float32)
    variables = heads.init(KEY, embedding)
    params = variables["params"]
    assert params["prototypes"].shape == (3, 7, 4) and params["aux_prototypes"].shape == (2, 7, 9)
    scores, state = heads.apply({"params": params}, embedding, mutable=["intermediates"])
    embedding64 = np.asarray(embedding, np.float64)
    for ours, prototypes in (
        (scores, "prototypes"),
        (state["intermediates"]["aux_scores"][0], "aux_prototypes"),
    ):
        # Scores of order 1 in float32: a relative bound alone fails on entries near zero.
        reference = np.einsum("bd,tdk->tbk", embedding64, np.asarray(params[prototypes], np.float64))
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    stretched = jax.tree.map(lambda p: p * 3.0, params)
    for leaf in jax.tree.leaves(normalize_prototypes(stretched)):
        np.testing.assert_allclose(np.linalg.norm(np.asarray(leaf, np.float64), axis=-2), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="aux_num_clusters"):
        hparams_of(sela, "sela", num_heads=1, num_label_updates=2, aux_num_heads=2)


def hparams_of(method, section: str, num_classes: int = 10, num_examples: int = 50, **fields):
    """`method`'s resolved hyper-parameters from a config section holding `fields`, in a 100-step run of
    32-image batches from a pre-trained encoder."""
    info = RunInfo(
        num_classes, num_examples, num_steps=100, seed=0, num_epochs=100 * 32 / num_examples, pretrained=True
    )
    return method.METHOD.hparams_from_config(section, fields, info)


def sela_hparams_of(config):
    """SeLa's hyper-parameters as a run of `config` on the digits' 1,257 train images resolves them."""
    num_epochs = config.num_steps * config.batch.unlabeled / 1257
    return sela.METHOD.hparams_from_config(
        "sela", config.sela, RunInfo(10, 1257, config.num_steps, config.seed, num_epochs, pretrained=False)
    )


def label_step_embeddings(experiment, state, step):
    """The train embeddings that SeLa's label update before `step` reads (captured from its `embed` call)."""
    seen = []

    def embed(view, key):
        seen.append(experiment.train_embeddings(state, view, key))
        return seen[-1]

    params = experiment.eval_variables(state)["params"]
    experiment.method.update_extras(experiment.hp, state.extras, params, step, SplitEmbeddings(embed, None))
    return seen[0]


@pytest.mark.parametrize(
    "method, section, field, extra",
    [
        (sela, "sela", "cluster_marginals", dict(num_clusters=3, num_heads=1, num_label_updates=2)),
        (suave, "suave", "prototype_marginals", dict(num_prototypes=3)),
    ],
)
def test_bad_class_priors_name_the_config_field(method, section, field, extra):
    good = hparams_of(method, section, **extra, **{field: (2, 1, 1)})
    assert getattr(good, field) == (2.0, 1.0, 1.0)
    assert getattr(hparams_of(method, section, **extra, **{field: None}), field) is None
    for bad, message in (
        ((0.5, 0.5), "has 2 entries but there are 3"),
        ((1.0, 0.0, 1.0), "strictly positive"),
    ):
        with pytest.raises(ValueError, match=rf"config\.{section}\.{field}.*{message}|{message}"):
            hparams_of(method, section, **extra, **{field: bad})
    if method is sela:
        with pytest.raises(ValueError, match=r"cluster_marginals='estimate' is Suave's"):
            hparams_of(method, section, **extra, **{field: "estimate"})
    if method is suave:  # The prior learned in training: the word, exactly.
        assert getattr(hparams_of(method, section, **extra, **{field: "estimate"}), field) == "estimate"
        with pytest.raises(ValueError, match=r"config\.suave\.prototype_marginals='estimat'.*'estimate'"):
            hparams_of(method, section, **extra, **{field: "estimat"})
        with pytest.raises(ValueError, match=r"config\.suave\.prior_updates=0 must be at least 1"):
            hparams_of(method, section, **extra, **{field: "estimate", "prior_updates": 0})
        with pytest.raises(ValueError, match=r"config\.suave\.prior_neighbors=0 at least 1"):
            hparams_of(method, section, **extra, **{field: "estimate", "prior_neighbors": 0})
        with pytest.raises(ValueError, match=r"config\.suave\.prior_alpha=1\.0 in \(0, 1\)"):
            hparams_of(method, section, **extra, **{field: "estimate", "prior_alpha": 1.0})


def test_estimated_prior_converges_to_the_true_class_proportions():
    """Training images from a long-tailed mixture of elongated clusters (each class a noisy segment), 2
    labeled images per class near one end of their segment: one estimate (`update_extras`) recovers the
    mixing proportions, where the labeled images' nearest class mean (what the estimate read before
    2026-12-06, assuming balanced classes) is more than 0.1 off."""
    rng = np.random.default_rng(0)
    true_prior = np.array([0.45, 0.25, 0.15, 0.1, 0.05])
    starts = rng.normal(size=(5, 8)) + 3.0
    ends = starts + 2.5 * rng.normal(size=(5, 8))

    def draw(classes: np.ndarray, where: np.ndarray) -> np.ndarray:
        noise = 0.15 * rng.normal(size=(len(classes), 8))
        return starts[classes] + where[:, None] * (ends - starts)[classes] + noise

    classes = rng.choice(5, size=3000, p=true_prior)
    points = draw(classes, rng.uniform(size=3000))
    labels = np.repeat(np.arange(5), 2)
    labeled = draw(labels, rng.uniform(0.0, 0.2, size=10))
    hp = hparams_of(suave, "suave", num_prototypes=5, prototype_marginals="estimate")
    extras = suave.init_extras(hp, None, None)
    embed = split_embeddings(points, labeled, labels)
    estimate = np.asarray(suave.update_extras(hp, extras, None, 0, embed)["prototype_prior"])
    np.testing.assert_allclose(estimate, np.bincount(classes) / len(classes), atol=0.01)
    np.testing.assert_allclose(estimate, true_prior, atol=0.02)
    assert estimate.sum() == pytest.approx(1.0, abs=1e-6)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    means = unit(np.stack([unit(labeled[labels == c]).mean(0) for c in range(5)]))
    nearest_mean = np.bincount(np.argmax(unit(points) @ means.T, -1), minlength=5) / len(points)
    assert np.abs(nearest_mean - true_prior).max() > 0.1  # The graph, not the class means, did it.


def test_estimated_prior_never_reaches_zero():
    """Counts that name class 0 alone: the others keep the floor, the total stays 1."""
    floor = 0.1
    prior = suave.estimated_prior(jnp.full(4, 0.25), jnp.asarray([64.0, 0, 0, 0]), floor, jnp.ones(4, bool))
    assert float(jnp.min(prior)) >= floor / (4 * (1 + floor)) - 1e-7 and np.all(np.isfinite(np.asarray(prior)))
    assert float(jnp.sum(prior)) == pytest.approx(1.0, abs=1e-6) and int(jnp.argmax(prior)) == 0
    # No image reached by a label: the prior stays as it was.
    same = suave.estimated_prior(jnp.asarray([0.4, 0.3, 0.2, 0.1]), jnp.zeros(4), floor, jnp.ones(4, bool))
    np.testing.assert_allclose(np.asarray(same), [0.4, 0.3, 0.2, 0.1], atol=1e-6)


def test_classes_with_no_labeled_image_keep_their_estimated_mass():
    prior = jnp.asarray([0.4, 0.3, 0.2, 0.1])
    counts = jnp.asarray([10.0, 0.0, 30.0, 0.0])  # Classes 1 and 3 have no labeled image.
    observed = jnp.asarray([True, False, True, False])
    new = np.asarray(suave.estimated_prior(prior, counts, 0.01, observed))
    np.testing.assert_allclose(new, [0.15, 0.3, 0.45, 0.1], atol=1e-6)  # 0 and 2 share their 0.6 as 1:3.


def test_an_estimate_from_a_random_encoder_is_warned_about(caplog):
    def resolve(pretrained: bool, **fields) -> None:
        info = RunInfo(10, 50, num_steps=100, seed=0, num_epochs=64.0, pretrained=pretrained)
        suave.METHOD.hparams_from_config("suave", fields, info)

    with caplog.at_level("WARNING"):
        resolve(False, prototype_marginals="estimate")
    assert "from a randomly initialized encoder" in caplog.text and "config.model.init_checkpoint" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        resolve(True, prototype_marginals="estimate")
        resolve(False)  # Equipartition: nothing to estimate.
    assert "randomly initialized" not in caplog.text


def test_prior_estimates_are_evenly_spaced_from_step_0_and_sample_large_splits():
    hp = hparams_of(suave, "suave", num_prototypes=5, prototype_marginals="estimate", prior_updates=4)
    assert suave.update_steps(hp) == (0, 25, 50, 75)  # A 100-step run.
    assert suave.update_steps(hparams_of(suave, "suave", num_prototypes=5)) == ()
    small = dataclasses.replace(hp, prior_sample_size=100)
    labeled, train_positions = suave.prior_sample(small, 25, 80, 1000)
    assert len(labeled) == 50 and len(train_positions) == 50  # Labeled images at most half.
    assert len(set(labeled)) == 50 and max(labeled) < 80 and max(train_positions) < 1000
    again = suave.prior_sample(small, 25, 80, 1000)
    assert all(np.array_equal(a, b) for a, b in zip(again, (labeled, train_positions)))
    assert not np.array_equal(suave.prior_sample(small, 50, 80, 1000)[1], train_positions)
    everything = suave.prior_sample(hp, 25, 20, 500)
    assert np.array_equal(everything[0], np.arange(20)) and np.array_equal(everything[1], np.arange(500))


def test_a_suave_run_estimates_the_prior_before_step_0_from_the_labeled_and_train_images():
    """`Experiment.update_extras` hands Suave the labeled split's embeddings and labels and the train
    split's: the prior it holds is the spread labels' shares of the train images."""
    from selax.label_spreading import label_spreading, spread_label_counts

    config = importlib.import_module("configs.default").get_config("smoke")
    config.suave.prototype_marginals = "estimate"
    config.suave.prior_neighbors, config.suave.prior_alpha = 3, 0.9  # The graph follows the config.
    experiment = train.Experiment(config, sharding.data_mesh(jax.devices()[:1]))
    state = experiment.init_state()
    assert experiment.update_steps == {0}
    estimated = np.asarray(experiment.update_extras(state, 0).extras["prototype_prior"])
    labeled = experiment.predict(state, experiment.labeled, keys=("embedding", "labels"))
    train_embeddings = experiment.predict(state, experiment.train, keys=("embedding",))["embedding"]
    counts = np.asarray(
        spread_label_counts(
            label_spreading(
                labeled["embedding"],
                labeled["labels"],
                train_embeddings,
                10,
                num_neighbors=3,
                alpha=0.9,
            )
        )
    )
    expected = np.maximum(counts / counts.sum(), config.suave.prior_floor / 10)
    np.testing.assert_allclose(estimated, expected / expected.sum(), atol=1e-6)
    assert experiment.update_extras(state, 1) is state  # No estimate after step 0.


def test_suave_estimated_prior_steers_the_targets():
    """`prototype_marginals="estimate"`: the targets are Sinkhorn's under the prior held in the extras
    (float64 NumPy reference); the loss leaves the prior as it is (only `update_extras` moves it)."""
    params, globals_, local, labeled, labels = multi_crop_problem(seed=13)
    hp = hparams_of(suave, "suave", num_prototypes=5, prototype_marginals="estimate")
    np.testing.assert_allclose(np.asarray(suave.init_extras(hp, params, None)["prototype_prior"]), np.full(5, 0.2))
    held = np.array([0.4, 0.3, 0.15, 0.1, 0.05], np.float32)
    views = dict(unlabeled=[*globals_, local], labeled=labeled)
    _, (_, new_extras, metrics) = loss_of(
        suave, hp, fake_apply, params, {"count": jnp.asarray(0)}, dict(prototype_prior=jnp.asarray(held)), views,
        labels, jnp.asarray(0), KEY,
    )
    scores = [flat64(v) @ params["w"] for v in [*globals_, local]]
    targets = [numpy_swav_assignments(scores[i], 0.05, 3, held) for i in range(2)]
    rows = [-(targets[i] * log_softmax64(scores[j] / 0.1)).sum(-1) for i in range(2) for j in range(3) if j != i]
    assert float(metrics["unlabeled_loss"]) == pytest.approx(np.concatenate(rows).mean(), rel=1e-4)
    np.testing.assert_array_equal(np.asarray(new_extras["prototype_prior"]), held)


def test_swav_refuses_an_estimated_prior_it_has_no_label_for():
    with pytest.raises(ValueError, match=r"config\.swav\.prototype_marginals='estimate' is Suave's"):
        hparams_of(swav, "swav", num_prototypes=5, prototype_marginals="estimate")


def numpy_swav_assignments(
    scores: np.ndarray, epsilon: float, num_iters: int, prototype_marginals
) -> np.ndarray:
    """float64 reference of Suave's targets: `num_iters` column-then-row scalings of exp(S / eps) to rows of
    1/N and columns of the normalized prior, returned per sample (rows sum to 1)."""
    n = scores.shape[0]
    b = np.asarray(prototype_marginals, np.float64) / np.sum(prototype_marginals)
    plan = np.exp((scores - scores.max()) / epsilon)
    for _ in range(num_iters):
        plan *= (b / plan.sum(axis=0))[None, :]
        plan *= ((1.0 / n) / plan.sum(axis=1))[:, None]
    return plan / plan.sum(axis=1, keepdims=True)


def test_suave_targets_follow_the_prototype_prior():
    prior = (0.55, 0.25, 0.12, 0.08)
    hp = suave.HParams(num_prototypes=4, prototype_marginals=prior, sinkhorn_iters=3)
    rng = np.random.default_rng(6)
    embeddings = rng.normal(size=(64, 5))
    prototypes = rng.normal(size=(5, 4))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    prototypes /= np.linalg.norm(prototypes, axis=0, keepdims=True)
    scores = (embeddings @ prototypes).astype(np.float32)
    targets = np.asarray(swav.assignments(hp, jnp.asarray(scores), None, jnp.array(False), swav.prototype_masses(hp, {})))
    expected = numpy_swav_assignments(scores.astype(np.float64), hp.sinkhorn_epsilon, 3, prior)
    np.testing.assert_allclose(targets, expected, atol=2e-5)
    # Iterated to convergence, the mass each prototype receives is the prior's.
    converged = swav.assignments(
        suave.HParams(num_prototypes=4, sinkhorn_iters=300), jnp.asarray(scores), None, jnp.array(False), jnp.asarray(prior)
    )
    np.testing.assert_allclose(np.asarray(converged).mean(axis=0), prior, atol=1e-3)


def test_relaxed_suave_targets_let_the_scores_move_the_class_masses():
    """`prototype_relaxation=tau`: Suave's targets are the unbalanced Sinkhorn's (columns pulled to the
    masses by a KL penalty tau): against a float64 log-domain reference, and a batch that leans to one
    prototype gives it more than its mass, the more so the smaller tau."""
    rng = np.random.default_rng(7)
    centres = np.eye(4, 6)
    classes = rng.choice(4, size=64, p=(0.55, 0.25, 0.12, 0.08))
    embeddings = centres[classes] + 0.3 * rng.normal(size=(64, 6))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = (embeddings @ centres.T).astype(np.float32)
    shares = {}
    for tau in (0.02, 0.2, None):
        hp = hparams_of(suave, "suave", num_prototypes=4, prototype_relaxation=tau, sinkhorn_iters=3)
        targets = np.asarray(swav.assignments(hp, jnp.asarray(scores), None, jnp.array(False), None))
        expected = reference_assignment(scores, hp.sinkhorn_epsilon, 3, relaxation=tau)
        np.testing.assert_allclose(targets, expected, atol=2e-5)
        shares[tau] = targets.mean(axis=0)[0]
    assert shares[0.02] > shares[0.2] > shares[None]
    assert abs(shares[0.02] - np.mean(classes == 0)) < 0.02  # Near the batch's own share of class 0.
    with pytest.raises(ValueError, match=r"config\.suave\.prototype_relaxation=0\.0 must be a number > 0"):
        hparams_of(suave, "suave", num_prototypes=4, prototype_relaxation=0.0)


def test_sela_loss_is_the_mean_cross_entropy_of_the_pseudo_labels():
    hp = sela_hp(num_examples=20, num_heads=2)
    rng = np.random.default_rng(4)
    d = 8
    params = dict(
        w=rng.normal(size=(2, d, 4)).astype(np.float32), linear=rng.normal(size=(d, 3)).astype(np.float32)
    )
    pseudo = rng.integers(0, 4, size=(2, 20)).astype(np.int32)
    positions = np.array([3, 17, 0, 9, 9], np.int32)
    crops = [rng.normal(size=(5, 2, 2, 2)).astype(np.float32) for _ in range(2)]
    views = dict(unlabeled=crops, unlabeled_positions=positions)
    loss, (stats, extras, _) = loss_of(sela, 
        hp,
        fake_apply,
        params,
        {"count": jnp.asarray(0)},
        dict(labels=pseudo),
        views,
        None,
        jnp.asarray(0),
        KEY,
    )
    rows = [
        -log_softmax64(crop.reshape(5, -1).astype(np.float64) @ params["w"][t])[
            np.arange(5), pseudo[t, positions]
        ]
        for crop in crops
        for t in range(2)
    ]
    assert float(loss) == pytest.approx(np.concatenate(rows).mean(), rel=1e-5)
    assert int(stats["count"]) == 1 and extras["labels"] is not None


def test_sela_loss_weights_overclustering_heads_like_the_evaluated_ones():
    hp = sela_hp(num_examples=20, num_heads=2, aux_num_heads=3, aux_num_clusters=7)
    rng = np.random.default_rng(6)
    d = 8
    params = dict(
        w=rng.normal(size=(2, d, 4)).astype(np.float32),
        aux_w=rng.normal(size=(3, d, 7)).astype(np.float32),
        linear=rng.normal(size=(d, 3)).astype(np.float32),
    )
    extras = dict(
        labels=rng.integers(0, 4, size=(2, 20)).astype(np.int32),
        aux_labels=rng.integers(0, 7, size=(3, 20)).astype(np.int32),
    )
    positions = np.array([1, 4, 4, 19], np.int32)
    crops = [rng.normal(size=(4, 2, 2, 2)).astype(np.float32) for _ in range(2)]
    views = dict(unlabeled=crops, unlabeled_positions=positions)
    loss, (_, _, metrics) = loss_of(sela, 
        hp, fake_apply, params, {"count": jnp.asarray(0)}, extras, views, None, jnp.asarray(0), KEY
    )
    rows = [
        -log_softmax64(crop.reshape(4, -1).astype(np.float64) @ params[weights][t])[
            np.arange(4), extras[labels][t, positions]
        ]
        for weights, labels, heads in (("w", "labels", 2), ("aux_w", "aux_labels", 3))
        for crop in crops
        for t in range(heads)
    ]
    assert float(loss) == pytest.approx(np.concatenate(rows).mean(), rel=1e-5)
    assert float(metrics["aux_pseudo_label_loss"]) == pytest.approx(np.concatenate(rows[4:]).mean(), rel=1e-5)


def test_sela_refuses_views_of_several_resolutions():
    views = dict(
        unlabeled=[jnp.zeros((2, 4, 4, 1)), jnp.zeros((2, 2, 2, 1))], unlabeled_positions=jnp.zeros(2, int)
    )
    with pytest.raises(ValueError, match="num_local=0"):
        loss_of(sela, sela_hp(), fake_apply, {}, {}, {}, views, None, jnp.asarray(0), KEY)


def test_semi_supervised_methods_refuse_an_empty_labeled_stream(tmp_path):
    config = importlib.import_module("configs.daino_default").get_config("smoke")
    config.batch.labeled = 0
    with pytest.raises(ValueError, match="config.batch.labeled=0 must be a positive multiple"):
        train.run(config, str(tmp_path))


def test_daino_teacher_starts_from_the_init_checkpoint(tmp_path):
    from selax import sharding
    from selax.models.convert import save_converted

    config = importlib.import_module("configs.daino_default").get_config("smoke")
    fresh = train.Experiment(config, sharding.data_mesh(jax.devices()[:1])).init_state()
    encoder = jax.tree_util.tree_map(lambda x: np.asarray(x) + 1.0, fresh.params["encoder"])
    save_converted({"params": {"encoder": encoder}}, str(tmp_path / "converted"))
    config.model.init_checkpoint = str(tmp_path / "converted")
    state = train.Experiment(config, sharding.data_mesh(jax.devices()[:1])).init_state()
    same = jax.tree_util.tree_map(np.array_equal, state.extras["teacher_params"]["encoder"], encoder)
    assert all(jax.tree_util.tree_leaves(same))


def test_sela_run_resumed_at_a_label_update_ends_as_an_uninterrupted_one(tmp_path):
    """Killed right after the checkpoint that precedes a label update, a SeLa run resumes, performs that
    update and ends with the labels and params of an uninterrupted run."""
    import shutil

    import orbax.checkpoint as ocp

    config = importlib.import_module("configs.sela_default").get_config("smoke")
    config.checkpoint.update(every_steps=2, keep=5)
    config.eval_every_steps = 0
    update_steps = sela.update_steps(sela_hparams_of(config))
    resume_step = 2
    assert resume_step in update_steps and max(update_steps) < config.num_steps

    finals = {}
    for name in ("uninterrupted", "resumed"):
        workdir = tmp_path / name
        finals[name] = train.run(config, str(workdir))
    # "Kill" the second run after its checkpoint at `resume_step`: later checkpoints and the report go.
    workdir = tmp_path / "resumed"
    for step_dir in (workdir / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > resume_step:
            shutil.rmtree(step_dir)
    (workdir / "metrics.json").unlink()
    finals["resumed"] = train.run(config, str(workdir))

    saved = {
        name: ocp.StandardCheckpointer().restore(str(tmp_path / name / "checkpoints" / "6" / "state"))
        for name in finals
    }
    initial = np.asarray(sela.init_extras(sela_hparams_of(config), None, None)["labels"])
    labels = saved["resumed"]["extras"]["labels"]
    assert not np.array_equal(labels, initial)  # The labels were updated after the resume.
    np.testing.assert_array_equal(labels, saved["uninterrupted"]["extras"]["labels"])
    close = jax.tree_util.tree_map(
        lambda a, b: np.allclose(a, b, atol=1e-5),
        saved["resumed"]["params"],
        saved["uninterrupted"]["params"],
    )
    assert all(jax.tree_util.tree_leaves(close))
    assert finals["resumed"]["test/nmi"] == pytest.approx(finals["uninterrupted"]["test/nmi"], abs=1e-6)


def test_sela_label_step_sees_one_training_view_per_image_the_same_on_1_and_8_devices():
    """The label update's embeddings are the network's on `training_view_at_positions` of every train
    image, from a key of the seed and the step: equal on 1 and 8 devices, new at each update, and not
    the clean images' (`label_views="clean"`)."""
    from selax.data import augment

    config = importlib.import_module("configs.sela_default").get_config("smoke")
    step = 2
    experiments, embeddings = {}, {}
    for name, num_devices, views in (("1", 1, "augmented"), ("8", 8, "augmented"), ("clean", 8, "clean")):
        config.sela.label_views = views
        experiments[name] = train.Experiment(config, sharding.data_mesh(jax.devices()[:num_devices]))
        embeddings[name] = label_step_embeddings(experiments[name], experiments[name].init_state(), step)
    experiment = experiments["8"]
    state = experiment.init_state()
    np.testing.assert_allclose(embeddings["1"], embeddings["8"], rtol=1e-5, atol=1e-5)
    assert embeddings["8"].shape == (experiment.train.size, config.model.encoder_kwargs.stage_widths[-1])
    assert not np.allclose(embeddings["8"], embeddings["clean"], atol=1e-3)

    # By hand: the first global training view of the last 50 images, drawn from fold_in(key, position).
    crop_spec, _, _ = augment.specs_from_config(augment.DIGITS, config.augment)
    run_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), sela.LABEL_VIEWS_STREAM)
    positions = np.arange(experiment.train.size - 50, experiment.train.size)
    images, _ = experiment.train.read(positions)
    views = augment.training_view_at_positions(
        jax.random.fold_in(run_key, step), positions, images, crop_spec
    )
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    expected = experiment.model.apply(variables, views, train=False)["embedding"]
    np.testing.assert_allclose(embeddings["8"][positions], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(label_step_embeddings(experiment, state, step + 1), embeddings["8"], atol=1e-3)


def test_unknown_label_views_are_refused_naming_the_field():
    config = importlib.import_module("configs.sela_default").get_config("smoke")
    config.sela.label_views = "weak"
    with pytest.raises(ValueError, match="config.sela.label_views='weak' must be one of"):
        sela_hparams_of(config)


# ------------------------------------------------------------------------------------------------------
# SwAV and DINO, and Suave and Daino as them plus the labeled term


def multi_crop_problem(seed: int, d: int = 12, k: int = 5, num_classes: int = 3, bu: int = 6, bl: int = 4):
    """Params of `fake_apply`, two global views, a local view of another shape, labeled images, labels."""
    rng = np.random.default_rng(seed)
    params = dict(
        w=rng.normal(size=(d, k)).astype(np.float32), linear=rng.normal(size=(d, num_classes)).astype(np.float32)
    )
    globals_ = [rng.normal(size=(bu, 2, 2, 3)).astype(np.float32) for _ in range(2)]
    local = rng.normal(size=(bu, 4, 1, 3)).astype(np.float32)
    labeled = rng.normal(size=(bl, 2, 2, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=bl).astype(np.int32)
    return params, globals_, local, labeled, labels


def flat64(x):
    return x.reshape(x.shape[0], -1).astype(np.float64)


def test_swav_loss_matches_a_numpy_reference():
    """Sinkhorn targets of each global view's scores supervise every other view at temperature 0.1."""
    params, globals_, local, _, _ = multi_crop_problem(seed=11)
    hp = swav.HParams(num_prototypes=5)
    views = dict(unlabeled=[*globals_, local])
    loss, (stats, extras, metrics) = loss_of(
        swav, hp, fake_apply, params, {"count": jnp.asarray(0)}, {}, views, None, jnp.asarray(0), KEY
    )
    scores = [flat64(v) @ params["w"] for v in [*globals_, local]]
    targets = [numpy_swav_assignments(scores[i], 0.05, 3, np.ones(5)) for i in range(2)]
    rows = [
        -(targets[i] * log_softmax64(scores[j] / 0.1)).sum(-1) for i in range(2) for j in range(3) if j != i
    ]
    assert float(loss) == pytest.approx(np.concatenate(rows).mean(), rel=1e-4)
    assert float(metrics["unlabeled_loss"]) == pytest.approx(float(loss))
    assert int(stats["count"]) == 2 and extras == {}  # One forward per resolution; no queue.


@pytest.mark.parametrize("rampup_steps, unlabeled_factor", [(0, 1.0), (40, 0.75)])
def test_suave_is_swav_plus_the_labeled_term(rampup_steps, unlabeled_factor):
    params, globals_, local, labeled, labels = multi_crop_problem(seed=12)
    views = dict(unlabeled=[*globals_, local], labeled=labeled)
    step = jnp.asarray(30)  # Of a 40-step ramp-up: the unlabeled term at 0.75.
    unlabeled, _ = loss_of(
        swav, swav.HParams(num_prototypes=5), fake_apply, params, {"count": jnp.asarray(0)}, {}, views, None,
        step, KEY,
    )
    hp = suave.HParams(num_prototypes=5, labeled_weight=0.3, unlabeled_rampup_steps=rampup_steps)
    loss, (stats, _, metrics) = loss_of(
        suave, hp, fake_apply, params, {"count": jnp.asarray(0)}, {}, views, labels, step, KEY
    )
    smoothed = 0.99 * np.eye(5)[labels] + 0.01 / 5
    labeled_rows = -(smoothed * log_softmax64(flat64(labeled) @ params["w"] / 0.1)).sum(-1)
    linear = -log_softmax64(flat64(labeled) @ params["linear"])[np.arange(len(labels)), labels].mean()
    expected = 0.3 * labeled_rows.mean() + 0.7 * unlabeled_factor * float(unlabeled)
    assert float(metrics["clustering_loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(loss) == pytest.approx(expected + linear, rel=1e-4)
    assert int(stats["count"]) == 2  # Labeled and global views share one forward.


def dino_problem(seed: int):
    params, globals_, local, labeled, labels = multi_crop_problem(seed)
    rng = np.random.default_rng(seed + 100)
    teacher = dict(w=rng.normal(size=params["w"].shape).astype(np.float32), linear=params["linear"])
    center = rng.normal(size=(params["w"].shape[1],)).astype(np.float32)
    extras = dict(teacher_params=teacher, teacher_batch_stats={"count": jnp.asarray(10)}, center=jnp.asarray(center))
    return params, globals_, local, labeled, labels, teacher, center, extras


def test_dino_loss_matches_a_numpy_reference():
    """Centred, sharpened teacher targets on the global views supervise every other student view."""
    params, globals_, local, _, _, teacher, center, extras = dino_problem(seed=13)
    hp = dino.HParams(num_outputs=5, num_steps=100, teacher_temperature_warmup_steps=10)
    views = dict(unlabeled=[*globals_, local])
    loss, (stats, new_extras, _) = loss_of(
        dino, hp, fake_apply, params, {"count": jnp.asarray(0)}, extras, views, None, jnp.asarray(5), KEY
    )
    temperature = 0.04 + 0.5 * 0.03
    teacher_logits = [flat64(g) @ teacher["w"] for g in globals_]
    targets = [softmax64((t - center) / temperature) for t in teacher_logits]
    student = [flat64(v) @ params["w"] / 0.1 for v in [*globals_, local]]
    rows = [-(targets[i] * log_softmax64(student[j])).sum(-1) for i in range(2) for j in range(3) if j != i]
    assert float(loss) == pytest.approx(np.concatenate(rows).mean(), rel=1e-4)
    np.testing.assert_allclose(
        new_extras["center"], 0.9 * center + 0.1 * np.concatenate(teacher_logits).mean(0), rtol=1e-4, atol=1e-5
    )
    assert int(stats["count"]) == 2 and int(new_extras["teacher_batch_stats"]["count"]) == 11


@pytest.mark.parametrize("rampup_steps, unlabeled_factor", [(0, 1.0), (20, 0.25)])
def test_daino_is_dino_plus_the_labeled_term(rampup_steps, unlabeled_factor):
    params, globals_, local, labeled, labels, _, _, extras = dino_problem(seed=14)
    views = dict(unlabeled=[*globals_, local], labeled=labeled)
    fields = dict(num_outputs=5, num_steps=100, teacher_temperature_warmup_steps=10)
    unlabeled, _ = loss_of(
        dino, dino.HParams(**fields), fake_apply, params, {"count": jnp.asarray(0)}, extras, views, None,
        jnp.asarray(5), KEY,
    )
    _, (_, _, metrics) = loss_of(
        daino, daino.HParams(**fields, labeled_weight=0.4, unlabeled_rampup_steps=rampup_steps), fake_apply,
        params, {"count": jnp.asarray(0)}, extras, views, labels, jnp.asarray(5), KEY,
    )
    smoothed = 0.99 * np.eye(5)[labels] + 0.01 / 5
    labeled_rows = -(smoothed * log_softmax64(flat64(labeled) @ params["w"] / 0.1)).sum(-1)
    expected = 0.4 * labeled_rows.mean() + 0.6 * unlabeled_factor * float(unlabeled)  # Step 5 of 20: 0.25.
    assert float(metrics["clustering_loss"]) == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------------------------------------------
# The contract and the registry


def test_every_method_module_is_registered_and_names_known_evaluations():
    from selax import evaluate
    from selax.methods import get_method, method_names

    assert method_names() == ("daino", "dino", "sela", "suave", "swav")
    for name in method_names():
        method = get_method(name)
        assert method.evaluations and set(method.evaluations) <= set(evaluate.EVALUATIONS)
        assert method.uses_labels == (name in ("suave", "daino"))
    with pytest.raises(ValueError, match=r"config.method='swa' is not one of \['daino', 'dino', 'sela', 'suave', 'swav'\]"):
        get_method("swa")


def test_method_config_sections_hold_the_hparams_defaults_and_refuse_unknown_fields():
    from selax.config_fields import method_fields
    from selax.methods import get_method, method_names

    for name in method_names():
        hparams = get_method(name).hparams
        section = method_fields(name)
        defaults = hparams()
        for field, value in section.items():
            assert getattr(defaults, field) == (tuple(value) if isinstance(value, list) else value), (name, field)
        assert "num_steps" not in section and "num_examples" not in section  # Derived from the run.
    assert hparams_of(suave, "suave").num_prototypes == 10  # One per class unless configured.
    assert hparams_of(swav, "swav").num_prototypes == 3000  # Free of classes.
    with pytest.raises(ValueError, match=r"config.swav has no field\(s\) \['num_protoypes'\]"):
        hparams_of(swav, "swav", num_protoypes=30)
