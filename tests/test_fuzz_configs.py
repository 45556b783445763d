"""Malformed configurations of layers, models and converters: each is refused with a
clear exception that names the offending thing, never a crash or a silent wrong result.

The cases are a table: (id, a zero-argument callable that builds or runs the bad
thing, the accepted exception types, words the message must contain). Families:

- layer constructors (wrong types, zero/negative units, unknown activations,
  rates outside [0, 1), non-bool flags), layer configs through `deserialize`;
- models: wrong input shapes for the first layer, set_weights with the wrong
  count/shapes/dtypes/NaN, compile with unknown optimizer/loss/metric names,
  fit/predict/evaluate with empty data, batch_size 0 or negative, mismatched
  x/y lengths, wrong feature sizes, non-numeric data, object arrays;
- NaN in fit data: training runs, and the loss it reports is NaN (never a
  finite number that hides it); fit with NaN must not crash;
- `fastrnn.interop.torch.from_state_dict` with missing/unexpected keys, wrong
  shapes, wrong kinds, contradicting config, non-float dtypes;
- `fastrnn.interop.torch.from_torch` / `fastrnn.interop.keras.from_keras` with
  things that are not modules/models.

A subprocess is not needed here: nothing below reaches the kernels with bad
input (the functional layer's own fuzz, tests/test_fuzz_functional.py, runs in a child).
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import layers

ERR = (ValueError, TypeError, KeyError)


def _model(rnn="LSTM", units=4, features=3, steps=5, out=2, **kw):
    m = fastrnn.Sequential([layers.Input((steps, features)), getattr(layers, rnn)(units, **kw),
                            layers.Dense(out)])
    return m


def _compiled(**kw):
    m = _model(**kw)
    m.compile(optimizer="adam", loss="mse")
    return m


def _data(n=8, steps=5, features=3, out=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, steps, features)).astype(np.float32),
            rng.standard_normal((n, out)).astype(np.float32))


# ---------------------------------------------------------------------------
# Layer constructors: one row per (layer, argument, bad value)

RNNS = ("SimpleRNN", "GRU", "LSTM")
BAD_LAYER_ARGS = [
    # (layer, kwargs, words in the message)
    *[(r, dict(units=u), ["units"]) for r in RNNS for u in (0, -3, 2.5, "8", None, True, np.nan, [4])],
    *[(r, dict(units=4, activation=a), ["activation"]) for r in RNNS for a in ("sigmoidz", 3, None)],
    *[(r, dict(units=4, dropout=d), ["dropout"]) for r in RNNS for d in (-0.1, 1.0, 1.5, np.nan, "0.1")],
    *[(r, dict(units=4, recurrent_dropout=d), ["recurrent_dropout"]) for r in RNNS for d in (-1, 1, np.inf)],
    *[(r, dict(units=4, return_sequences=v), ["return_sequences"]) for r in RNNS for v in (1, "yes", None)],
    *[(r, dict(units=4, go_backwards=v), ["go_backwards"]) for r in RNNS for v in (0, "no")],
    *[(r, dict(units=4, kernel_initializer=v), ["kernel_initializer"]) for r in RNNS for v in ("nope", 3)],
    ("GRU", dict(units=4, recurrent_activation="relu6x"), ["recurrent_activation"]),
    ("LSTM", dict(units=4, recurrent_activation="tanhh"), ["recurrent_activation"]),
    ("LSTM", dict(units=4, unit_forget_bias="yes"), ["unit_forget_bias"]),
    ("GRU", dict(units=4, reset_after=1), ["reset_after"]),
    *[("Dense", dict(units=u), ["units"]) for u in (0, -1, 1.5, "3", None)],
    ("Dense", dict(units=3, activation="nope"), ["nope"]),
    ("Dense", dict(units=3, use_bias="no"), ["use_bias"]),
    *[("Dropout", dict(rate=r), ["rate"]) for r in (-0.5, 1.0000001, 2, "0.5", np.nan)],
    *[("Embedding", dict(input_dim=d, output_dim=4), ["input_dim"]) for d in (0, -1, 2.0)],
    *[("Embedding", dict(input_dim=10, output_dim=d), ["output_dim"]) for d in (0, "4")],
    ("Activation", dict(activation="not-an-activation"), ["not-an-activation"]),
    *[(r, dict(units=4, dtype=d), ["dtype"]) for r in RNNS for d in ("int32", "float16", "complex64", 7)],
]


@pytest.mark.parametrize("layer,kwargs,words", BAD_LAYER_ARGS,
                         ids=[f"{c}-{'-'.join(f'{k}={v!r}' for k, v in kw.items())}" for c, kw, _ in BAD_LAYER_ARGS])
def test_bad_layer_arguments(layer, kwargs, words):
    with pytest.raises(ERR) as info:
        getattr(layers, layer)(**kwargs)
    _names(info.value, words)


def _names(exc, words):
    msg = str(exc)
    for w in words:
        assert w in msg, f"{type(exc).__name__} does not name {w!r}: {msg!r}"


# ---------------------------------------------------------------------------
# Layer configs through deserialize

def _cfg(class_name, **config):
    return {"class_name": class_name, "config": config}


BAD_CONFIGS = [
    ("unknown class", _cfg("LSTMM", units=3), ["LSTMM"]),
    ("no class_name", {"config": {"units": 3}}, ["class_name"]),
    ("config not a dict", {"class_name": "LSTM", "config": [3]}, ["config"]),
    ("units missing", _cfg("LSTM"), ["units"]),
    ("units negative", _cfg("GRU", units=-2), ["units"]),
    ("unknown option", _cfg("GRU", units=2, bogus_option=1), ["bogus_option"]),
    ("activation unknown", _cfg("SimpleRNN", units=2, activation="swishy"), ["activation"]),
    ("not a dict", "LSTM(3)", ["LSTM(3)"]),
    ("a list", [1, 2], ["deserialize", "[1, 2]"]),
    ("Bidirectional of a non-layer", _cfg("Bidirectional", layer=3), ["layer"]),
    ("Bidirectional of an unknown layer", _cfg("Bidirectional", layer=_cfg("LSTMX", units=2)), ["LSTMX"]),
    ("Bidirectional bad merge_mode", _cfg("Bidirectional", layer=_cfg("LSTM", units=2), merge_mode="avg"),
     ["merge_mode"]),
    ("TimeDistributed of a non-layer", _cfg("TimeDistributed", layer="Dense"), ["layer"]),
]


@pytest.mark.parametrize("what,config,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_layer_configs(what, config, words):
    with pytest.raises(ERR) as info:
        layers.deserialize(config)
    _names(info.value, words)


MODEL_CONFIGS = [
    ("no layers key", lambda c: {k: v for k, v in c.items() if k != "layers"}, ["layers"]),
    ("layers not a list", lambda c: {**c, "layers": "LSTM"}, ["layers"]),
    ("a layer not a dict", lambda c: {**c, "layers": c["layers"][:1] + [3]}, ["3"]),
    ("not a dict", lambda c: [c], ["config"]),
]


@pytest.mark.parametrize("what,change,words", MODEL_CONFIGS, ids=[c[0] for c in MODEL_CONFIGS])
def test_bad_model_configs(what, change, words):
    with pytest.raises(ERR) as info:
        fastrnn.Sequential.from_config(change(_model().get_config()))
    _names(info.value, words)


def test_model_from_config_with_a_broken_layer_is_refused():
    cfg = _model().get_config()
    bad = {**cfg}
    bad["layers"] = [dict(layer) for layer in cfg["layers"]]
    for layer in bad["layers"]:
        if layer["class_name"] == "LSTM":
            layer["config"] = {**layer["config"], "units": 0}
    with pytest.raises(ERR) as info:
        fastrnn.Sequential.from_config(bad)
    _names(info.value, ["units"])


# ---------------------------------------------------------------------------
# set_weights

def _weights_cases():
    def spoil(i, f):
        def run():
            m = _model()
            w = m.get_weights()
            w[i] = f(w[i])
            m.set_weights(w)
        return run

    def count(delta):
        def run():
            m = _model()
            w = m.get_weights()
            m.set_weights(w[:delta] if delta < 0 else w + [np.zeros(1)])
        return run

    return [
        ("too few", count(-1), ["expected"]),
        ("too many", count(1), ["expected"]),
        ("wrong shape", spoil(0, lambda a: np.zeros((a.shape[0] + 1,) + a.shape[1:], a.dtype)), ["weights[0]"]),
        ("transposed", spoil(1, lambda a: a.T.copy() if a.shape[0] != a.shape[1] else a[:, :-1]), ["weights[1]"]),
        ("0-d", spoil(2, lambda a: np.float32(1.0)), ["weights[2]"]),
        ("object", spoil(0, lambda a: a.astype(object)), ["weights[0]"]),
        ("strings", spoil(0, lambda a: np.full(a.shape, "x")), ["weights[0]"]),
        ("complex", spoil(0, lambda a: a.astype(np.complex64) + 1j), ["weights[0]"]),
        ("ragged list", spoil(0, lambda a: [[1.0], [1.0, 2.0]]), ["weights[0]"]),
        ("not a list", lambda: _model().set_weights(3), ["set_weights"]),
        ("layer: wrong shape", lambda: _layer_set(lambda w: [np.zeros((1, 1))] + w[1:]), ["kernel"]),
        ("layer: too few", lambda: _layer_set(lambda w: w[:1]), ["expected"]),
        ("layer: object", lambda: _layer_set(lambda w: [w[0].astype(object)] + w[1:]), ["kernel"]),
    ]


def _layer_set(change):
    m = _model()
    lstm = m.layers[0]
    lstm.set_weights(change(lstm.get_weights()))


@pytest.mark.parametrize("what,run,words", _weights_cases(), ids=[c[0] for c in _weights_cases()])
def test_bad_set_weights(what, run, words):
    with pytest.raises(ERR) as info:
        run()
    _names(info.value, words)


def test_failed_set_weights_changes_nothing():
    m = _model()
    before = m.get_weights()
    bad = [w + 1 for w in before]
    bad[-1] = np.zeros(7, np.float32)          # the last one is wrong: nothing may change
    with pytest.raises(ValueError):
        m.set_weights(bad)
    for a, b in zip(m.get_weights(), before):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------
# compile / fit / predict / evaluate

def _fit(**kw):
    m = _compiled()
    x, y = _data()
    args = dict(x=x, y=y, epochs=1, verbose=0)
    args.update(kw)
    return m.fit(**args)


RUN_CASES = [
    ("compile: unknown optimizer", lambda: _model().compile(optimizer="adamz", loss="mse"), ["adamz"]),
    ("compile: unknown loss", lambda: _model().compile(optimizer="adam", loss="msee"), ["msee"]),
    ("compile: unknown metric", lambda: _model().compile(optimizer="adam", loss="mse", metrics=["acc_x"]),
     ["acc_x"]),
    ("compile: optimizer of wrong type", lambda: _model().compile(optimizer=3, loss="mse"), ["optimizer"]),
    ("fit before compile", lambda: _model().fit(*_data(), verbose=0), ["compile"]),
    ("fit: batch_size 0", lambda: _fit(batch_size=0), ["batch_size"]),
    ("fit: batch_size negative", lambda: _fit(batch_size=-4), ["batch_size"]),
    ("fit: batch_size float", lambda: _fit(batch_size=2.5), ["batch_size"]),
    ("fit: epochs negative", lambda: _fit(epochs=-1), ["epochs"]),
    ("fit: epochs str", lambda: _fit(epochs="2"), ["epochs"]),
    ("fit: empty dataset", lambda: _fit(x=np.zeros((0, 5, 3), np.float32), y=np.zeros((0, 2), np.float32)),
     ["no samples"]),
    ("fit: x/y length mismatch", lambda: _fit(y=np.zeros((7, 2), np.float32)), ["same number of samples"]),
    ("fit: wrong feature size", lambda: _fit(x=np.zeros((8, 5, 4), np.float32)), ["3"]),
    ("fit: wrong rank", lambda: _fit(x=np.zeros((8, 15), np.float32)), ["shape"]),
    ("fit: wrong target size", lambda: _fit(y=np.zeros((8, 3), np.float32)), ["3"]),
    ("fit: string data", lambda: _fit(x=np.full((8, 5, 3), "a")), ["x"]),
    ("fit: object data", lambda: _fit(x=np.empty((8, 5, 3), object)), ["x"]),
    ("fit: validation_split 1", lambda: _fit(validation_split=1.0), ["validation_split"]),
    ("fit: validation_split negative", lambda: _fit(validation_split=-0.2), ["validation_split"]),
    ("fit: x None", lambda: _fit(x=None), ["x"]),
    ("fit: sample_weight wrong length", lambda: _fit(sample_weight=np.ones(3)), ["sample"]),
    ("predict: batch_size 0", lambda: _compiled().predict(_data()[0], batch_size=0), ["batch_size"]),
    ("predict: empty", lambda: _compiled().predict(np.zeros((0, 5, 3), np.float32)), ["no samples"]),
    ("predict: wrong features", lambda: _compiled().predict(np.zeros((2, 5, 7), np.float32)), ["7"]),
    ("predict: 0-d", lambda: _compiled().predict(np.float32(1.0)), ["batch axis"]),
    ("evaluate: batch_size -1", lambda: _compiled().evaluate(*_data(), batch_size=-1, verbose=0), ["batch_size"]),
    ("evaluate: mismatch", lambda: _compiled().evaluate(_data()[0], np.zeros((3, 2)), verbose=0),
     ["same number of samples"]),
    ("evaluate: empty", lambda: _compiled().evaluate(np.zeros((0, 5, 3), np.float32), np.zeros((0, 2), np.float32),
                                                     verbose=0), ["no samples"]),
]


@pytest.mark.parametrize("what,run,words", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_training_calls(what, run, words):
    with pytest.raises(ERR + (RuntimeError,)) as info:
        run()
    _names(info.value, words)


@pytest.mark.parametrize("where", ["x", "y"])
def test_nan_in_fit_data_shows_in_the_loss(where):
    """NaN data never crashes and is never hidden: the reported loss is NaN."""
    m = _compiled()
    x, y = _data()
    (x if where == "x" else y)[3, 0] = np.nan
    hist = m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isnan(hist.history["loss"][0]), hist.history
    result = m.evaluate(x, y, verbose=0)
    assert np.isnan(result[0] if isinstance(result, (list, tuple)) else result), result
    # the NaN gradient reached every weight (as in Keras): nothing silently skipped it
    assert all(np.isnan(w).any() for w in m.get_weights()), "a weight escaped the NaN update"


# ---------------------------------------------------------------------------
# The PyTorch converter

def _state_dict(kind="lstm", **kw):
    from fastrnn.interop import torch as ti
    cls = {"rnn": ti.RNN, "gru": ti.GRU, "lstm": ti.LSTM}[kind]
    return cls(3, 4, seed=0, **kw).state_dict()


def _sd_change(kind="lstm", drop=(), add=None, reshape=None, astype=None, **kw):
    sd = dict(_state_dict(kind, **kw))
    for k in drop:
        del sd[k]
    if add:
        sd.update(add)
    if reshape:
        k, shape = reshape
        sd[k] = np.zeros(shape, np.float32)
    if astype:
        k, dt = astype
        sd[k] = sd[k].astype(dt)
    return sd


def _from_sd(sd, kind="lstm", **config):
    from fastrnn.interop.torch import from_state_dict
    return lambda: from_state_dict(sd, kind, **config)


TORCH_CASES = [
    ("unknown kind", _from_sd(_sd_change(), kind="lstmx"), ["lstmx"]),
    ("missing weight_ih_l0", _from_sd(_sd_change(drop=["weight_ih_l0"])), ["weight_ih_l0"]),
    ("missing weight_hh_l0", _from_sd(_sd_change(drop=["weight_hh_l0"])), ["weight_hh_l0"]),
    ("missing bias_hh_l0", _from_sd(_sd_change(drop=["bias_hh_l0"])), ["bias_hh_l0"]),
    ("unexpected key", _from_sd(_sd_change(add={"weight_xx_l0": np.zeros(3)})), ["weight_xx_l0"]),
    ("weight_hh wrong shape", _from_sd(_sd_change(reshape=("weight_hh_l0", (16, 5)))), ["weight_hh_l0"]),
    ("bias wrong shape", _from_sd(_sd_change(reshape=("bias_ih_l0", (15,)))), ["bias_ih_l0"]),
    ("weight_ih 1-d", _from_sd(_sd_change(reshape=("weight_ih_l0", (12,)))), ["weight_ih_l0"]),
    ("weight_ih rows not 4*H", _from_sd(_sd_change(reshape=("weight_ih_l0", (15, 3)))), ["weight_ih"]),
    ("gru keys as lstm", _from_sd(_sd_change("gru"), kind="lstm"), ["weight_hh_l0", "expected shape"]),
    ("config contradicts", _from_sd(_sd_change(), hidden_size=5), ["hidden_size"]),
    ("config unknown option", _from_sd(_sd_change(), bogus=1), ["bogus"]),
    ("int weights", _from_sd(_sd_change(astype=("weight_hh_l0", np.int64))), ["weight_hh_l0"]),
    ("object weights", _from_sd(_sd_change(astype=("weight_hh_l0", object))), ["weight_hh_l0"]),
    ("string weights", _from_sd(_sd_change(add={"weight_hh_l0": np.full((16, 4), "a")})), ["weight_hh_l0"]),
    ("dtype int", _from_sd(_sd_change(), dtype="int32"), ["dtype"]),
    ("not a mapping", _from_sd([1, 2, 3]), ["state_dict"]),
    ("layer gap", _from_sd(_sd_change(add={"weight_ih_l2": np.zeros((16, 4), np.float32)})), ["l1"]),
    ("reverse only partly", _from_sd(_sd_change(add={"weight_ih_l0_reverse": np.zeros((16, 3), np.float32)})),
     ["reverse"]),
    ("proj weight wrong shape", _from_sd(_sd_change(add={"weight_hr_l0": np.zeros((2, 5), np.float32)})),
     ["weight_h", "expected shape"]),     # weight_hr_l0 gives P=2, so weight_hh_l0 (16, 4) is refused
    ("nonlinearity unknown", _from_sd(_sd_change("rnn"), kind="rnn", nonlinearity="gelu"), ["nonlinearity"]),
    ("dropout out of range", _from_sd(_sd_change(), dropout=2.0), ["dropout"]),
]


@pytest.mark.parametrize("what,run,words", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_bad_torch_state_dicts(what, run, words):
    with pytest.raises(ERR) as info:
        run()
    _names(info.value, words)


def test_load_state_dict_failure_changes_nothing():
    from fastrnn.interop import torch as ti
    m = ti.LSTM(3, 4, seed=0)
    before = m.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    sd["bias_hh_l0"] = np.zeros(3, np.float32)            # wrong, and last
    with pytest.raises(ValueError):
        m.load_state_dict(sd)
    for k, v in m.state_dict().items():
        assert np.array_equal(v, before[k]), f"{k} changed by a refused load_state_dict"


@pytest.mark.parametrize("thing", [None, 3, "LSTM", np.zeros(3), {"weight_ih_l0": 1}])
def test_from_torch_refuses_non_modules(thing):
    from fastrnn.interop.torch import from_torch
    with pytest.raises(ERR) as info:
        from_torch(thing)
    assert "from_torch" in str(info.value) or type(thing).__name__ in str(info.value), str(info.value)


KERAS_LAYERS = [
    ("LSTM relu activation", lambda k: k.layers.LSTM(3, activation="relu"), ["activation"]),
    ("GRU recurrent_activation", lambda k: k.layers.GRU(3, recurrent_activation="tanh"), ["recurrent_activation"]),
    ("SimpleRNN unroll", lambda k: k.layers.SimpleRNN(3, unroll=True), ["unroll"]),
]


@pytest.mark.parametrize("what,make,words", KERAS_LAYERS, ids=[c[0] for c in KERAS_LAYERS])
def test_from_keras_unsupported_options_are_named(what, make, words):
    keras = pytest.importorskip("keras")
    from fastrnn.interop.keras import from_keras
    km = keras.Sequential([keras.Input((5, 2)), make(keras)])
    try:
        fm = from_keras(km)
    except ERR + (NotImplementedError,) as e:
        _names(e, words)
        return
    # accepted: then it must compute what Keras computes
    x = np.random.default_rng(0).standard_normal((2, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(fm.predict(x, verbose=0), keras.ops.convert_to_numpy(km(x)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("thing", [None, 3, "model", np.zeros(3), fastrnn.Sequential])
def test_from_keras_refuses_non_models(thing):
    pytest.importorskip("keras")
    from fastrnn.interop.keras import from_keras
    with pytest.raises(ERR) as info:
        from_keras(thing)
    assert "from_keras" in str(info.value), str(info.value)
