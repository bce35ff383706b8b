"""PyTorch -> selax conversion: eval-mode features of converted weights equal the PyTorch model's."""

import pickle

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from selax.models import build_encoder  # pylint: disable=wrong-import-position
from selax.models.convert import (  # pylint: disable=wrong-import-position
    convert_state_dict,
    flax_path,
    load_converted,
    load_torch_state_dict,
    main,
    save_torch_state_dict,
    to_flax_layout,
    torch_name,
    torch_state_dict,
)
from selax.models.heads import Projector  # pylint: disable=wrong-import-position

TINY_VIT = dict(patch_size=4, embed_dim=32, depth=2, num_heads=2, image_size=16)


class TorchBottleneck(nn.Module):
    """torchvision's v1.5 Bottleneck, written from torch.nn layers with its parameter names."""

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.downsample = None
        if stride != 1 or c_in != 4 * width:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in = 64
        for stage, blocks in enumerate((3, 4, 6, 3)):
            width = 64 * 2**stage
            layers = []
            for index in range(blocks):
                layers.append(TorchBottleneck(c_in, width, 2 if stage > 0 and index == 0 else 1))
                c_in = 4 * width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


class TorchAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class TorchMlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TorchBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TorchAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TorchMlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)


class TorchViT(nn.Module):
    """DINO's VisionTransformer structure and parameter names, with its position-embedding interpolation."""

    def __init__(self, patch_size, embed_dim, depth, num_heads, image_size):
        super().__init__()
        self.patch = patch_size
        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (image_size // patch_size) ** 2, embed_dim))
        self.blocks = nn.ModuleList([TorchBlock(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, 7)  # stands in for the DINO head, which conversion drops

    def forward(self, x):
        b, _, h, w = x.shape
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        side = int((self.pos_embed.shape[1] - 1) ** 0.5)
        pos = self.pos_embed
        if (h // self.patch, w // self.patch) != (side, side):
            grid = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(
                grid,
                scale_factor=((h // self.patch + 0.1) / side, (w // self.patch + 0.1) / side),
                mode="bicubic",
            )
            pos = torch.cat(
                [self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1])], dim=1
            )
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def randomize_norm_layers(model: nn.Module) -> None:
    """Non-trivial affine parameters and running statistics for every BatchNorm/LayerNorm."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)


def numpy_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def torch_resnet50():
    torch.manual_seed(0)
    model = TorchResNet50().eval()
    randomize_norm_layers(model)
    return model


def test_resnet50_features_match_pytorch(torch_resnet50):
    variables, dropped = convert_state_dict("resnet50", numpy_state_dict(torch_resnet50))
    assert dropped == ["fc.bias", "fc.weight"]
    images = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch_resnet50(torch.from_numpy(images)).numpy()
    encoder = build_encoder("resnet50")
    features = jax.jit(encoder.apply)(
        {"params": variables["params"]["encoder"], "batch_stats": variables["batch_stats"]["encoder"]},
        images.transpose(0, 2, 3, 1),
    )
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-4)


def test_swav_prefix_and_projection_head(torch_resnet50):
    torch.manual_seed(1)
    projection_head = nn.Sequential(
        nn.Linear(2048, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16)
    ).eval()
    randomize_norm_layers(projection_head)
    state_dict = {
        f"module.{key}": value for key, value in numpy_state_dict(torch_resnet50).items() if "fc." not in key
    }
    state_dict.update(
        {f"module.projection_head.{key}": value for key, value in numpy_state_dict(projection_head).items()}
    )
    state_dict["module.prototypes.weight"] = np.ones((30, 16), np.float32)
    variables, dropped = convert_state_dict("swav_resnet50", state_dict)
    assert dropped == ["prototypes.weight"]
    plain, _ = convert_state_dict("resnet50", numpy_state_dict(torch_resnet50))
    jax.tree.map(np.testing.assert_array_equal, plain["params"]["encoder"], variables["params"]["encoder"])
    features = np.random.default_rng(1).normal(size=(4, 2048)).astype(np.float32)
    with torch.no_grad():
        expected = F.normalize(projection_head(torch.from_numpy(features)), dim=1).numpy()
    embedding, _ = Projector(hidden_dims=(64,), output_dim=16).apply(
        {"params": variables["params"]["projector"], "batch_stats": variables["batch_stats"]["projector"]},
        features,
    )
    np.testing.assert_allclose(embedding, expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def torch_vit():
    torch.manual_seed(2)
    model = TorchViT(**TINY_VIT).eval()
    randomize_norm_layers(model)
    return model


@pytest.mark.parametrize("size", [16, 24])  # the learned grid, and an interpolated one
def test_dino_vit_features_match_pytorch(torch_vit, size):
    state_dict = {f"backbone.{key}": value for key, value in numpy_state_dict(torch_vit).items()}
    variables, dropped = convert_state_dict("dino_vits16", state_dict, TINY_VIT)
    assert dropped == ["head.bias", "head.weight"] and set(variables) == {"params"}
    images = np.random.default_rng(2).normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = torch_vit(torch.from_numpy(images)).numpy()
    features = build_encoder("vit_s16", **TINY_VIT).apply(
        {"params": variables["params"]["encoder"]}, images.transpose(0, 2, 3, 1)
    )
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-4)


def test_mismatched_checkpoint_lists_unmatched_and_missing_entries(torch_vit):
    state_dict = numpy_state_dict(torch_vit)
    del state_dict["blocks.1.mlp.fc2.bias"]
    state_dict["blocks.0.attn.extra.weight"] = np.ones((3, 3), np.float32)
    state_dict["norm.weight"] = np.ones(5, np.float32)
    with pytest.raises(ValueError) as error:
        convert_state_dict("dino_vits16", state_dict, TINY_VIT)
    message = str(error.value)
    assert "Unmatched checkpoint entries (2)" in message and "blocks.0.attn.extra.weight" in message
    assert "norm.weight (shape (5,)" in message
    assert "Missing selax variables (2)" in message and "params/encoder/blocks_1/mlp/fc2/bias" in message
    with pytest.raises(ValueError, match="Unknown arch"):
        convert_state_dict("resnet101", state_dict)


def test_command_line_converts_dino_vits16_and_load_converted_restores_it(tmp_path, capsys):
    torch.manual_seed(3)
    model = TorchViT(patch_size=16, embed_dim=384, depth=12, num_heads=6, image_size=224)
    torch.save(
        {"teacher": {f"backbone.{key}": value for key, value in model.state_dict().items()}},
        tmp_path / "dino.pth",
    )
    arguments = [
        "--arch",
        "dino_vits16",
        "--input",
        str(tmp_path / "dino.pth"),
        "--output",
        str(tmp_path / "out"),
        "--checkpoint-key",
        "teacher",
    ]
    main(arguments)
    assert "21,665,664 parameters" in capsys.readouterr().out
    expected, _ = convert_state_dict("dino_vits16", numpy_state_dict(model))
    jax.tree.map(np.testing.assert_array_equal, load_converted(str(tmp_path / "out")), expected)
    with pytest.raises(ValueError, match="already exists"):
        main(arguments)


class NotATensor:
    pass


def test_loading_refuses_pickled_code(tmp_path):
    torch.save({"weight": torch.ones(2), "payload": NotATensor()}, tmp_path / "bad.pth")
    with pytest.raises(pickle.UnpicklingError):
        load_torch_state_dict(str(tmp_path / "bad.pth"))
    torch.save({"state_dict": {"weight": torch.ones(2)}, "epoch": 3}, tmp_path / "nested.pth")
    assert set(load_torch_state_dict(str(tmp_path / "nested.pth"))) == {"weight"}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_selax_weights_go_back_to_pytorch_with_the_same_features(torch_resnet50, tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    variables, _ = convert_state_dict("resnet50", numpy_state_dict(torch_resnet50))
    path = str(tmp_path / f"resnet50{suffix}")
    save_torch_state_dict(torch_state_dict(variables), path)
    state_dict = load_torch_state_dict(path)
    again, _ = convert_state_dict("resnet50", state_dict)
    assert jax.tree_util.tree_all(jax.tree.map(np.array_equal, again, variables))
    model = TorchResNet50().eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    images = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(model(images).numpy(), torch_resnet50(images).numpy(), rtol=0, atol=1e-5)


def test_projector_and_vit_names_invert_the_conversion():
    for arch, key in [
        ("swav_resnet50", "projection_head.1.running_var"),
        ("resnet50", "layer3.2.downsample.1.weight"),
        ("dino_vits16", "patch_embed.proj.bias"),
        ("dino_vits16", "blocks.11.attn.qkv.weight"),
    ]:
        collection, path = flax_path(arch, key)
        leaf = to_flax_layout(path[-1], np.zeros((2, 2) if key.endswith("qkv.weight") else (2,)))[0]
        assert torch_name(collection, (*path[:-1], leaf)) == key
