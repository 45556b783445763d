"""Converters between fastrnn and other frameworks.

Each converter is a submodule that imports its framework only when one of its
functions needs it, so `import fastrnn.interop` costs nothing and needs none of
them. Import the one you use explicitly:

    from fastrnn.interop import torch as frt      # nn.RNN/GRU/LSTM, cells, Sequential, state dicts
    m = frt.from_torch(torch_module)
    out, h_n = m(x_numpy)

    from fastrnn.interop.onnx import InferenceSession   # ONNX RNN/GRU/LSTM graphs, as onnxruntime's
    y, y_h = InferenceSession("model.onnx").run(None, {"X": x_numpy})[:2]

None of PyTorch, Keras or ONNX becomes a runtime dependency of fastrnn.
"""
