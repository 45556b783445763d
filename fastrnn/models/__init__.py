"""Models: the functional `Model`, `Sequential`, symbolic `Input`s, and saving/loading.

    import fastrnn as fr
    from fastrnn import layers
    model = fr.Sequential([layers.LSTM(32), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=10, seed=0)
    model.save("model.fastrnn"); same = fr.load_model("model.fastrnn")

See `graph` (symbolic tensors and nodes), `model` (running the graph, seeds),
`training` (compile/fit/evaluate/predict), `saving` (the file format).
"""
from .graph import Input, InputLayer, KerasTensor, SymbolicTensor
from .model import Model, Sequential
from .saving import load_model

__all__ = ["Model", "Sequential", "Input", "InputLayer", "SymbolicTensor", "KerasTensor", "load_model"]
