"""Encoders, registry and heads: parameter counts, shapes and dtypes (by jax.eval_shape), tiny real forwards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from selax.models import ENCODERS, build_encoder, small_cnn
from selax.models.heads import PrototypeHead, apply_per_resolution, normalize_prototypes
from selax.models.patch_conv import LAYOUT, kernel_grad_matmul_conv, patch_matmul_conv
from selax.models.resnet import BasicBlock, Bottleneck, ResNet
from selax.models.vit import VisionTransformer, drop_path, interpolate_pos_embed, torch_bicubic_matrix
from selax.models.wide_resnet import WideResNet


def key(seed: int) -> jax.Array:
    """An RBG key: on XLA:CPU it compiles in a fraction of threefry's time (~1 s per random-normal shape here)."""
    return jax.random.key(seed, impl="rbg")


def normal(shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def abstract_variables(module, shape, dtype=jnp.float32):
    return jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, dtype))


def param_count(module, shape) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(abstract_variables(module, shape)["params"]))


def conv_bn(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + 2 * c_out


def test_resnet_param_counts_match_torchvision_without_fc():
    # torchvision totals (ResNet-18: 11,689,512; ResNet-50: 25,557,032) minus the 1000-way fc.
    assert param_count(build_encoder("resnet50"), (1, 64, 64, 3)) + 2048 * 1000 + 1000 == 25_557_032
    assert param_count(build_encoder("resnet50"), (1, 64, 64, 3)) == 23_508_032
    resnet18 = param_count(build_encoder("resnet18"), (1, 64, 64, 3))
    assert resnet18 + 512 * 1000 + 1000 == 11_689_512
    assert round(resnet18 / 1e6, 2) == 11.18
    # The CIFAR stem swaps the 7x7x3x64 conv for a 3x3x3x64 one.
    assert param_count(build_encoder("resnet18_cifar"), (1, 32, 32, 3)) == resnet18 - 49 * 3 * 64 + 9 * 3 * 64


def test_wide_resnet_28_8_param_count():
    widths = [16, 128, 256, 512]
    expected = 9 * 3 * 16  # stem conv
    for group in range(3):
        c_in, c_out = widths[group], widths[group + 1]
        for index in range(4):
            block_in = c_in if index == 0 else c_out
            expected += (
                2 * block_in + 9 * block_in * c_out + 2 * c_out + 9 * c_out * c_out
            )  # bn1 conv1 bn2 conv2
            expected += block_in * c_out if block_in != c_out else 0  # 1x1 shortcut
    expected += 2 * 512  # final BN
    count = param_count(build_encoder("wide_resnet28_8"), (1, 32, 32, 3))
    assert count == expected
    assert (
        round((count + 512 * 100 + 100) / 1e6, 1) == 23.4
    )  # published figure, with the CIFAR-100 classifier


def test_vit_s16_param_count():
    dim, hidden, patches = 384, 1536, 196
    block = (
        2 * 2 * dim
        + (dim * 3 * dim + 3 * dim)
        + (dim * dim + dim)
        + (dim * hidden + hidden)
        + (hidden * dim + dim)
    )
    expected = (16 * 16 * 3 * dim + dim) + dim + (1 + patches) * dim + 12 * block + 2 * dim
    count = param_count(build_encoder("vit_s16"), (1, 224, 224, 3))
    assert count == expected
    assert round(count / 1e6, 1) == 21.7


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("small_cnn", [8, 32]),
        ("resnet18", [224, 96]),
        ("resnet50", [224, 96]),
        ("resnet18_cifar", [32]),
        ("resnet50_cifar", [32]),
        ("wide_resnet28_8", [32]),
        ("vit_s16", [224, 96]),
    ],
)
def test_feature_shapes_and_bf16_dtypes(name, sizes):
    for size in sizes:
        for dtype in (jnp.float32, jnp.bfloat16):
            module = build_encoder(name, dtype=dtype)
            images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
            variables = abstract_variables(module, images.shape)
            features, state = jax.eval_shape(
                lambda v, x: module.apply(v, x, mutable=["intermediates"]), variables, images
            )
            assert features.shape == (2, ENCODERS[name].feature_dim) and features.dtype == jnp.float32
            assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
            assert {leaf.dtype for leaf in jax.tree.leaves(state["intermediates"])} == {jnp.dtype(dtype)}
            assert len(state["intermediates"]) >= 3


def test_registry_rejects_unknown_names_and_forwards_fields():
    with pytest.raises(ValueError, match="known encoders: .*resnet50.*vit_s16"):
        build_encoder("resnet51")
    assert (
        build_encoder("resnet18_cifar", remat=True).cifar_stem
        and build_encoder("resnet18_cifar", remat=True).remat
    )

@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_smoke_members_of_each_family_run_on_8x8_images(name):
    module = build_encoder(name, **ENCODERS[name].smoke_kwargs)
    variables = abstract_variables(module, (2, 8, 8, 1))
    features = jax.eval_shape(lambda v, x: module.apply(v, x), variables, jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32))
    assert features.shape[0] == 2 and features.ndim == 2
    assert type(module) is type(build_encoder(name))


def test_bad_shapes_raise_value_errors():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        abstract_variables(VisionTransformer(depth=1), (1, 40, 40, 3))
    with pytest.raises(ValueError, match="6n \\+ 4"):
        abstract_variables(WideResNet(depth=27), (1, 8, 8, 3))


TINY = {
    "resnet": (lambda **kw: ResNet((1, 1), Bottleneck, cifar_stem=True, base_width=4, **kw), (4, 16, 16, 3)),
    "wide_resnet": (lambda **kw: WideResNet(depth=10, widen_factor=1, **kw), (4, 8, 8, 3)),
    "vit": (
        lambda **kw: VisionTransformer(patch_size=4, embed_dim=16, depth=2, num_heads=2, image_size=16, **kw),
        (4, 16, 16, 3),
    ),
}


@pytest.mark.parametrize("name", ["resnet", "vit"])  # WideResNet uses the same nn.remat wrapping
def test_remat_gives_identical_features_and_gradients(name):
    make, shape = TINY[name]
    images = normal(shape)
    variables = make().init(key(0), images)

    def loss(params, module):
        features, _ = module.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(features**2), features

    loss_and_grads = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, plain), plain_grads = loss_and_grads(variables["params"], make())
    (_, remat), remat_grads = loss_and_grads(variables["params"], make(remat=True))
    np.testing.assert_allclose(remat, plain, rtol=1e-5, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), remat_grads, plain_grads
    )


def test_batch_norm_is_synchronized_across_a_sharded_batch():
    make, _ = TINY["resnet"]
    module = make()
    # Each device's shard has its own scale, so per-shard BN statistics would differ from global ones.
    images = normal((16, 8, 8, 3), 1) * jnp.repeat(jnp.arange(1.0, 9.0), 2)[:, None, None, None]
    variables = module.init(key(0), images)
    forward = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharded_images = jax.device_put(images, NamedSharding(mesh, P("data")))
    assert len(sharded_images.sharding.device_set) == 8
    features, stats = forward(variables, images)
    sharded_features, sharded_stats = forward(variables, sharded_images)
    np.testing.assert_allclose(sharded_features, features, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), sharded_stats, stats)
    # The statistics did move away from their init, so the comparison is not vacuous.
    assert float(jnp.abs(stats["batch_stats"]["bn1"]["mean"]).max()) > 1e-3


def test_wide_resnet_running_mean_uses_momentum_0_001():
    module, shape = TINY["wide_resnet"][0](), TINY["wide_resnet"][1]
    images = normal(shape) + 0.5
    variables = module.init(key(0), images)
    _, state = module.apply(variables, images, train=True, mutable=["batch_stats", "intermediates"])
    final_bn_input = np.asarray(state["intermediates"]["group3"][0], np.float64)
    np.testing.assert_allclose(
        state["batch_stats"]["bn_final"]["mean"],
        0.001 * final_bn_input.mean(axis=(0, 1, 2)),
        rtol=1e-4,
        atol=1e-9,
    )


def test_zero_init_last_bn_makes_blocks_identities():
    # Identity-shortcut blocks with a zero last-BN scale map x -> relu(x) = x (their inputs are post-ReLU),
    # so a stage of such blocks leaves the stem's features unchanged.
    images = normal((2, 12, 12, 3), 1)
    with_stage = ResNet((2,), BasicBlock, base_width=4, zero_init_last_bn=True)
    variables = with_stage.init(key(0), images)
    stem_only = ResNet((), BasicBlock, base_width=4)
    stem_variables = {
        collection: {name: tree[name] for name in ("conv1", "bn1") if name in tree}
        for collection, tree in variables.items()
    }
    stem_features = stem_only.apply(stem_variables, images)
    np.testing.assert_allclose(with_stage.apply(variables, images), stem_features, rtol=1e-6, atol=1e-6)
    unit_scales = jax.tree_util.tree_map_with_path(
        lambda path, leaf: (
            jnp.ones_like(leaf) if jax.tree_util.keystr(path).endswith("['bn2']['scale']") else leaf
        ),
        variables,
    )
    assert float(jnp.abs(with_stage.apply(unit_scales, images) - stem_features).max()) > 1e-3


def test_vit_drop_path_only_in_training():
    make, shape = TINY["vit"]
    images = normal(shape)
    module = make(drop_path_rate=0.5)
    variables = module.init(key(0), images)
    eval_features = module.apply(variables, images)
    np.testing.assert_allclose(
        make().apply(variables, images, train=True), eval_features, rtol=1e-5, atol=1e-6
    )
    train_features = module.apply(variables, images, train=True, rngs={"dropout": key(2)})
    assert float(jnp.abs(train_features - eval_features).max()) > 1e-3
    dropped = drop_path(jnp.ones((4000, 3)), 0.25, key(3))
    np.testing.assert_allclose(np.unique(np.asarray(dropped)), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(float((dropped[:, 0] == 0).mean()) - 0.25) < 0.03
    assert bool(jnp.all(dropped == dropped[:, :1]))  # whole samples are dropped


def test_vit_position_embedding_interpolation():
    rows = torch_bicubic_matrix(14, 6, 6.1 / 14)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-12)  # cubic convolution weights sum to one
    pos_embed = normal((1, 197, 5), 0)
    assert interpolate_pos_embed(pos_embed, 14, 14) is pos_embed
    resized = interpolate_pos_embed(pos_embed, 6, 6)
    assert resized.shape == (1, 37, 5)
    np.testing.assert_array_equal(resized[:, 0], pos_embed[:, 0])
    constant = jnp.ones((1, 197, 2))
    np.testing.assert_allclose(interpolate_pos_embed(constant, 6, 9), 1.0, atol=1e-6)


def test_prototypes_are_unit_norm_after_normalize():
    head = PrototypeHead(num_prototypes=7)
    params = head.init(key(0), jnp.ones((2, 5)))["params"]
    assert params["prototypes"].shape == (5, 7)
    params = jax.tree.map(lambda p: p * jnp.arange(1.0, 8.0), params)  # break the norms
    normalized = normalize_prototypes(params)["prototypes"]
    np.testing.assert_allclose(np.linalg.norm(np.asarray(normalized, np.float64), axis=-2), 1.0, atol=1e-6)


def test_apply_per_resolution_batches_crops_of_equal_size():
    calls = []

    def fn(x):
        calls.append(x.shape)
        return {"mean": x.mean(axis=(1, 2, 3)), "first": x[:, 0, 0, 0] * 2.0}

    crops = [jnp.asarray(normal((3, size, size, 2), seed)) for seed, size in enumerate((8, 8, 4, 4, 4))]
    outputs = apply_per_resolution(fn, crops)
    assert calls == [(6, 8, 8, 2), (9, 4, 4, 2)]
    for crop, output in zip(crops, outputs):
        expected = fn(crop)
        np.testing.assert_allclose(output["mean"], expected["mean"], rtol=1e-6)
        np.testing.assert_allclose(output["first"], expected["first"], rtol=1e-6)


def numpy_conv(images: np.ndarray, kernel: np.ndarray, padding) -> np.ndarray:
    """Float64 cross-correlation `[B, H, W, C] x [kh, kw, C, D] -> [B, H', W', D]` with explicit padding."""
    padded = np.pad(images.astype(np.float64), ((0, 0), *padding, (0, 0)))
    kh, kw = kernel.shape[:2]
    out_h, out_w = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    out = np.zeros((images.shape[0], out_h, out_w, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i : i + out_h, j : j + out_w] @ kernel[i, j].astype(np.float64)
    return out


@pytest.mark.parametrize("patch_conv", [patch_matmul_conv, kernel_grad_matmul_conv])
@pytest.mark.parametrize(
    "image_shape,kernel_shape,padding",
    [((2, 2, 2, 3), (3, 3, 3, 4), ((1, 1), (1, 1))), ((2, 5, 4, 3), (3, 2, 3, 2), ((1, 0), (2, 1)))],
)
def test_patch_convs_match_float64_conv_and_lax_gradients(patch_conv, image_shape, kernel_shape, padding):
    images, kernel = normal(image_shape, 1), normal(kernel_shape, 2)
    out = patch_conv(jnp.asarray(images), jnp.asarray(kernel), (1, 1), padding)
    np.testing.assert_allclose(out, numpy_conv(images, kernel, padding), rtol=1e-5, atol=1e-5)
    cotangent = normal(out.shape, 3)

    def lax_conv(x, k, *args, **kwargs):
        return jax.lax.conv_general_dilated(x, k, *args, dimension_numbers=("NHWC", "HWIO", "NHWC"), **kwargs)

    grads = [
        jax.grad(lambda x, k, conv=conv: jnp.sum(conv(x, k, (1, 1), padding) * cotangent), (0, 1))(
            images, kernel
        )
        for conv in (patch_conv, lax_conv)
    ]
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("patch_conv", [patch_matmul_conv, kernel_grad_matmul_conv])
def test_patch_convs_reject_strides_string_padding_and_other_layouts(patch_conv):
    images, kernel = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2))
    with pytest.raises(ValueError, match="stride 1"):
        patch_conv(images, kernel, (2, 2), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="explicit padding"):
        patch_conv(images, kernel, (1, 1), "SAME")
    with pytest.raises(ValueError, match="layout"):  # Same shapes, read as NCHW images and OIHW kernels.
        patch_conv(
            images, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
    # The numbers nn.Conv passes, as strings or as ConvDimensionNumbers, are accepted.
    for numbers in (LAYOUT, jax.lax.conv_dimension_numbers(images.shape, kernel.shape, LAYOUT)):
        assert patch_conv(
            images, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=numbers
        ).shape == (1, 4, 4, 2)


@pytest.mark.parametrize("image_size", [8, 28])  # 8: all patch matmuls; 28: also a kernel-gradient one
def test_small_cnn_patch_convs_keep_features_and_gradients(monkeypatch, image_size):
    images = normal((4, image_size, image_size, 1))
    model = build_encoder("small_cnn")
    variables = model.init(key(0), images)

    def features_and_grads():
        def loss(params):
            features, _ = model.apply(
                {**variables, "params": params}, images, train=True, mutable=["batch_stats"]
            )
            return jnp.sum(features**2), features

        return jax.grad(loss, has_aux=True)(variables["params"])

    grads, features = features_and_grads()
    for name in ("patch_matmul_conv", "kernel_grad_matmul_conv"):
        monkeypatch.setattr(small_cnn, name, jax.lax.conv_general_dilated)
    reference_grads, reference_features = features_and_grads()
    np.testing.assert_allclose(features, reference_features, rtol=1e-5, atol=1e-5)
    for ours, reference in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads)):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
