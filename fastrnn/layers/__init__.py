"""Keras-style layers: each has a hand-written forward and backward (see `base.Layer`).

    from fastrnn import layers
    layer = layers.Dense(10, activation="relu")
    cfg = layers.serialize(layer)            # {"class_name": "Dense", "config": {...}}
    same = layers.deserialize(cfg)

Every layer class is registered by its class name with `@register` (from
`fastrnn.layers.base`), which is what `deserialize` and `get` look names up
in. A user-defined layer either registers itself the same way or is passed
to `deserialize(..., custom_objects={"MyLayer": MyLayer})`.
"""
from .base import Layer, deserialize, get_class, register, registered_names, serialize
from .core import Activation, Dense, Dropout, Embedding, Flatten, Masking, TimeDistributed
from .merge import Add, Concatenate

# --- recurrent layers (added by the lead; they register themselves with @register) ---
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN
# --------------------------------------------------------------------------------------


def Input(shape, dtype="float32", name=None, batch_size=None):  # noqa: N802 (Keras's name)
    """`fastrnn.Input`, also reachable here as in Keras (`layers.Input`)."""
    from ..models.graph import Input as _input
    return _input(shape, dtype=dtype, name=name, batch_size=batch_size)


def get(identifier, custom_objects=None):
    """A layer from a registered class name (the class), a `{"class_name", "config"}`
    dict (a new instance), or a Layer instance (itself)."""
    if isinstance(identifier, Layer):
        return identifier
    if isinstance(identifier, str):
        return get_class(identifier, custom_objects)
    if isinstance(identifier, dict):
        return deserialize(identifier, custom_objects=custom_objects)
    if isinstance(identifier, type) and issubclass(identifier, Layer):
        return identifier
    raise TypeError(f"layers.get: expected a class name, a config dict or a Layer, "
                    f"got {type(identifier).__name__}")


__all__ = ["Input", "Layer", "register", "registered_names", "serialize", "deserialize", "get", "get_class",
           "Dense", "Embedding", "Dropout", "Activation", "Flatten", "Masking", "TimeDistributed",
           "Concatenate", "Add", "SimpleRNN", "GRU", "LSTM", "Bidirectional"]
