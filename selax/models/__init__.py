"""Encoders by name."""
from selax.models.small_cnn import SmallCNN
ENCODERS = {"small_cnn": SmallCNN}
def build_encoder(name, **kwargs):
    return ENCODERS[name](**kwargs)
