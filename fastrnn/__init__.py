"""fastrnn: fast CPU recurrent networks (RNN, GRU, LSTM), forward and backward.

    import fastrnn.functional as F
    y, h_n, cache = F.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    grads = F.gru_backward(dy, dh_n, cache)

Keras-style models on top of it:

    import fastrnn as fr
    from fastrnn import layers
    model = fr.Sequential([layers.LSTM(32), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=10, seed=0)
    model.save("model.fastrnn"); model = fr.load_model("model.fastrnn")

Thread count: `fastrnn.set_num_threads(n)`, `fastrnn.get_num_threads()`, or
`with fastrnn.num_threads(n): ...`; the default is OMP_NUM_THREADS, else the
cores available to the process.
"""
__version__ = "0.1.0"

from . import functional, reference
from ._engine import isa as _isa, openmp_enabled as _openmp_enabled
from ._threads import get_num_threads, num_threads, set_num_threads
from . import (activations, callbacks, initializers, layers, losses, metrics, models, optimizers,
               regularizers)
from .models import Input, Model, Sequential, load_model


def openmp_enabled():
    """True when the kernels were built with OpenMP (else they run on one thread)."""
    return _openmp_enabled()


def simd_isa():
    """The SIMD instruction set the kernels use on this CPU: 'avx512', 'avx2' or 'generic'.

    Chosen at import from the CPU's features; FASTRNN_ISA=generic|avx2|avx512
    selects a lower one (for testing).
    """
    return _isa()


__all__ = ["__version__", "functional", "reference", "get_num_threads", "set_num_threads",
           "num_threads", "openmp_enabled", "simd_isa",
           "Sequential", "Model", "Input", "load_model",
           "layers", "models", "losses", "optimizers", "callbacks", "metrics", "initializers", "regularizers",
           "activations"]
