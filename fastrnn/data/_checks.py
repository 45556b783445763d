"""Argument checks shared by the data tools. Each error names the argument,
what was expected and what was given."""
import numbers

import numpy as np


def check_int(name, value, minimum=None, allow_none=False):
    """`value` as a Python int (bools refused), at least `minimum` when given."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        expected = "an int" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_sequence_list(name, sequences):
    """A list of the items of `sequences` (an iterable of sized iterables, not a string)."""
    if isinstance(sequences, (str, bytes)):
        raise TypeError(f"{name} must be a list of sequences, got a {type(sequences).__name__}")
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 0:
            raise TypeError(f"{name} must be a list of sequences, got a 0-d array")
        return list(sequences)
    try:
        items = list(sequences)
    except TypeError:
        raise TypeError(f"{name} must be a list of sequences, got {type(sequences).__name__}") from None
    for i, s in enumerate(items):
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise ValueError(f"{name}[{i}] must be a sequence (list or array) with a length, "
                             f"got {type(s).__name__} {s!r:.60}")
    return items


def rng_from_seed(name, seed):
    """A NumPy Generator from None, an int or a Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        check_int(name, seed, minimum=0)
    return np.random.default_rng(seed)
