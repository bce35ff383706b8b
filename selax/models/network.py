"""The network every method trains: encoder -> (projector) -> clustering head, plus an online linear head."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from selax.models import build_encoder
from selax.models.heads import Projector


class Network(nn.Module):
    """`images [B, H, W, C] -> dict` of the quantities the methods and the evaluation read.

    Outputs:
      features `[B, D]`: pooled encoder output (kNN and linear probes read these).
      embedding `[B, E]`: projector output, L2-normalized (the encoder features when `projector` is None).
      head_scores `[B, K]` (or `[T, B, K]` for several heads): the clustering head's scores.
      linear_logits `[B, num_classes]`: an online linear classifier on the projector's first hidden layer
        (the features when there is no projector), trained on labeled images through a stop-gradient,
        so it measures the representation without shaping it.
    """

    encoder: nn.Module
    head: nn.Module
    projector: nn.Module | None
    num_classes: int

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> dict[str, Any]:
        features = self.encoder(images, train=train)
        if self.projector is None:
            embedding, probe_input = features, features
        else:
            embedding, probe_input = self.projector(features, train=train)
        linear_logits = nn.Dense(self.num_classes, name="linear_head")(jax.lax.stop_gradient(probe_input))
        return dict(
            features=features,
            embedding=embedding,
            head_scores=self.head(embedding),
            linear_logits=linear_logits,
        )


def network_from_config(model: Any, head: nn.Module, num_classes: int) -> Network:
    """The `Network` of `config.model` (encoder by registry name with its kwargs, optional projector) around
    a method's `head`; `encoder_kwargs.dtype` ("bfloat16") is the computation dtype, params stay float32.
    `model.encoder` is set: a run fills it from the image size (`selax.train.config_for_data`)."""
    encoder_kwargs = dict(model.encoder_kwargs)
    if "dtype" in encoder_kwargs:
        encoder_kwargs["dtype"] = jnp.dtype(encoder_kwargs["dtype"])
    projector = None
    if model.projector_hidden is not None:
        projector = Projector(tuple(model.projector_hidden), model.embedding_dim)
    return Network(
        encoder=build_encoder(model.encoder, **encoder_kwargs),
        projector=projector,
        head=head,
        num_classes=num_classes,
    )
