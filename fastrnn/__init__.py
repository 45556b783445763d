"""fastrnn: fast CPU recurrent networks (RNN, GRU, LSTM), forward and backward."""
__version__ = "0.1.0"

from ._threads import get_num_threads, num_threads, set_num_threads

__all__ = ["__version__", "get_num_threads", "set_num_threads", "num_threads"]
