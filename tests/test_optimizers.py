"""fastrnn.optimizers and fastrnn.schedules.

- Each optimizer against a plain re-implementation of Keras 3's formula written
  here (float64, every variant, weight decay and each clipping mode).
- Against PyTorch (skipped without torch): where the formulas agree, to 1e-10
  relative over 20 steps; where they differ (epsilon placement, momentum with a
  changing learning rate), the documented relation is tested instead.
- Against Keras 3 when it is importable (not in CI): float32, to ~1e-6.
- In-place updates, state save/restore (bit for bit), config round-trips, the
  registry, schedules' values, argument checking.
"""
import io
import json
import math

import numpy as np
import pytest

import fastrnn
from fastrnn import optimizers, schedules
from fastrnn.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

SHAPES = [(4, 3), (5,), (2, 3, 2)]
# Per-parameter gradient scales: the first is large (clipnorm/global_clipnorm bite),
# the second small (left alone by clipnorm), the third in between.
SCALES = [4.0, 0.05, 0.7]


def make_problem(seed, steps, dtype=np.float64, shapes=SHAPES, away_from_zero=False):
    """Initial params and a gradient list per step."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]

    def grad(shape, scale):
        if away_from_zero:          # |g| in [0.1, 1.5] * scale: keeps epsilon negligible
            g = rng.uniform(0.1, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        else:
            g = rng.standard_normal(shape)
        return (g * scale).astype(dtype)

    grads = [[grad(s, sc) for s, sc in zip(shapes, SCALES)] for _ in range(steps)]
    return params, grads


def run(opt, params, grads_per_step):
    params = [p.copy() for p in params]
    for grads in grads_per_step:
        opt.apply(params, grads)
    return params


# ---- an independent re-implementation of Keras 3's optimizers ---------------------------

def ref_clip(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    if clipvalue is not None:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    if clipnorm is not None:
        return [g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm) for g in grads]
    if global_clipnorm is not None:
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        return [g * global_clipnorm / max(norm, global_clipnorm) for g in grads]
    return grads


def ref_run(kind, params, grads_per_step, lr=None, weight_decay=None, clip=None, **hp):
    """Keras 3's update rules, written out plainly (no in-place tricks), in float64."""
    defaults = {"sgd": dict(lr=0.01, momentum=0.0, nesterov=False),
                "adam": dict(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False),
                "adamw": dict(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False),
                "rmsprop": dict(lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False),
                "adagrad": dict(lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7)}[kind]
    h = {**defaults, **hp}
    if lr is not None:
        h["lr"] = lr
    if kind == "adamw" and weight_decay is None:
        weight_decay = 0.004
    lr_at = h["lr"] if callable(h["lr"]) else (lambda step, c=h["lr"]: c)
    params = [p.astype(np.float64) for p in params]
    n = len(params)
    zeros = [np.zeros_like(p) for p in params]
    m, v, vmax, mom, mg = ([z.copy() for z in zeros] for _ in range(5))
    acc = [np.full_like(p, h.get("initial_accumulator_value", 0.0)) for p in params]
    for step, grads in enumerate(grads_per_step):
        a = lr_at(step)
        grads = ref_clip(grads, **(clip or {}))
        if weight_decay is not None:
            params = [p - p * weight_decay * a for p in params]
        for i in range(n):
            g, p = grads[i], params[i]
            if kind == "sgd":
                if h["momentum"] == 0:
                    p = p - a * g
                else:
                    mom[i] = h["momentum"] * mom[i] - a * g
                    p = p + (h["momentum"] * mom[i] - a * g if h["nesterov"] else mom[i])
            elif kind in ("adam", "adamw"):
                t = step + 1
                m[i] = m[i] + (g - m[i]) * (1 - h["beta_1"])
                v[i] = v[i] + (g * g - v[i]) * (1 - h["beta_2"])
                vv = v[i]
                if h["amsgrad"]:
                    vmax[i] = np.maximum(vmax[i], v[i])
                    vv = vmax[i]
                alpha = a * math.sqrt(1 - h["beta_2"] ** t) / (1 - h["beta_1"] ** t)
                p = p - m[i] * alpha / (np.sqrt(vv) + h["epsilon"])
            elif kind == "rmsprop":
                rho = h["rho"]
                v[i] = rho * v[i] + (1 - rho) * g * g
                if h["centered"]:
                    mg[i] = rho * mg[i] + (1 - rho) * g
                    denom = v[i] - mg[i] ** 2 + h["epsilon"]
                else:
                    denom = v[i] + h["epsilon"]
                inc = a * g / np.sqrt(denom)
                if h["momentum"] > 0:
                    mom[i] = h["momentum"] * mom[i] + inc
                    p = p - mom[i]
                else:
                    p = p - inc
            elif kind == "adagrad":
                acc[i] = acc[i] + g * g
                p = p - a * g / np.sqrt(acc[i] + h["epsilon"])
            params[i] = p
    return params


CLASSES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}

VARIANTS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=1.0)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, beta_1=0.5, beta_2=0.9, epsilon=1e-3)),
    ("adam", dict(lr=0.01, amsgrad=True)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.01, amsgrad=True)),
    ("rmsprop", dict(lr=0.01)),
    ("rmsprop", dict(lr=0.01, momentum=0.8)),
    ("rmsprop", dict(lr=0.01, centered=True)),
    ("rmsprop", dict(lr=0.01, centered=True, momentum=0.8, rho=0.7, epsilon=1e-3)),
    ("adagrad", dict(lr=0.1)),
    ("adagrad", dict(lr=0.1, initial_accumulator_value=0.0, epsilon=1e-2)),
]
CLIPS = [None, {"clipvalue": 0.5}, {"clipnorm": 1.0}, {"global_clipnorm": 2.0}]


def build(kind, hp, **extra):
    hp = dict(hp)
    lr = hp.pop("lr", None)
    if lr is not None:
        hp["learning_rate"] = lr
    return CLASSES[kind](**hp, **extra)


def _id(v):
    kind, hp = v
    return kind + "".join(f"-{k}={val}" for k, val in hp.items())


@pytest.mark.parametrize("clip", CLIPS, ids=["noclip", "clipvalue", "clipnorm", "global_clipnorm"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_matches_keras_formula(variant, clip):
    kind, hp = variant
    params, grads = make_problem(1, steps=7)
    got = run(build(kind, hp, **(clip or {})), params, grads)
    want = ref_run(kind, params, grads, clip=clip, **hp)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_weight_decay_and_schedule_match_keras_formula(kind):
    params, grads = make_problem(2, steps=8)
    schedule = schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
    opt = CLASSES[kind](learning_rate=schedule, weight_decay=0.1, clipnorm=1.5)
    got = run(opt, params, grads)
    want = ref_run(kind, params, grads, lr=schedule, weight_decay=0.1, clip={"clipnorm": 1.5})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    # and the decay did something: without it the result differs
    no_decay = ref_run(kind, params, grads, lr=schedule, weight_decay=0.0 if kind == "adamw" else None,
                       clip={"clipnorm": 1.5})
    assert not np.allclose(got[0], no_decay[0], rtol=1e-6)


def test_clipping_modes_change_the_update():
    """Each clipping mode actually bites on this problem (so the tests above can fail)."""
    params, grads = make_problem(1, steps=1)
    plain = run(SGD(0.1), params, grads)
    for clip in CLIPS[1:]:
        clipped = run(SGD(0.1, **clip), params, grads)
        assert not np.allclose(plain[0], clipped[0])
    # clipnorm leaves a gradient under the norm alone; global_clipnorm scales all
    small = run(SGD(0.1, clipnorm=1.0), params, grads)
    np.testing.assert_array_equal(small[1], plain[1])
    glob = run(SGD(0.1, global_clipnorm=2.0), params, grads)
    assert not np.allclose(glob[1], plain[1])


def test_float32_state_and_math_stay_float32():
    params, grads = make_problem(3, steps=3, dtype=np.float32)
    opt = Adam(0.01, amsgrad=True)
    got = run(opt, params, grads)
    assert all(p.dtype == np.float32 for p in got)
    assert all(a.dtype == np.float32 for k, a in opt.get_state().items() if k != "iterations")
    want = ref_run("adam", [p.astype(np.float64) for p in params],
                   [[g.astype(np.float64) for g in gs] for gs in grads], lr=0.01, amsgrad=True)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


# ---- in place, skipping, casting, non-finite gradients ------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_params_updated_in_place_and_grads_untouched(variant):
    kind, hp = variant
    params, grads = make_problem(4, steps=2)
    ids = [id(p) for p in params]
    grads_before = [[g.copy() for g in gs] for gs in grads]
    before = [p.copy() for p in params]
    opt = build(kind, hp, clipnorm=0.5)
    for gs in grads:
        opt.apply(params, gs)
    assert [id(p) for p in params] == ids
    assert all(not np.array_equal(p, b) for p, b in zip(params, before))
    for gs, gb in zip(grads, grads_before):
        for g, b in zip(gs, gb):
            np.testing.assert_array_equal(g, b)
    assert opt.iterations == 2 and isinstance(opt.iterations, int)


def test_update_works_on_strided_views():
    base = np.ones((4, 6))
    view = base[:, ::2]                                  # not contiguous
    opt = Adam(0.1)
    opt.apply([view], [np.ones((4, 3))])
    assert np.all(base[:, ::2] < 1) and np.all(base[:, 1::2] == 1)


def test_none_gradient_skips_its_parameter():
    params, grads = make_problem(5, steps=1)
    before = [p.copy() for p in params]
    opt = AdamW(0.1, weight_decay=0.5)
    opt.apply(params, [grads[0][0], None, grads[0][2]])
    np.testing.assert_array_equal(params[1], before[1])
    assert not np.array_equal(params[0], before[0])
    np.testing.assert_array_equal(opt.get_state()["m/1"], 0)


def test_gradients_of_another_dtype_are_cast():
    p64 = [np.ones(3)]
    p32 = [np.ones(3, np.float32)]
    Adam(0.1).apply(p64, [np.array([1, -2, 3], np.float32)])
    Adam(0.1).apply(p32, [np.array([1, -2, 3], np.float64)])
    assert p32[0].dtype == np.float32
    np.testing.assert_allclose(p32[0], p64[0], rtol=1e-6)


def test_apply_gradients_keras_spelling():
    params, grads = make_problem(6, steps=1)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    SGD(0.1, 0.9).apply(a, grads[0])
    SGD(0.1, 0.9).apply_gradients(zip(grads[0], b))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_nonfinite_gradients_pass_through_clipping():
    nan_inf = np.array([np.nan, np.inf, -np.inf, 5.0, -5.0, 0.1])
    # clipvalue: finite values clipped, inf and nan untouched
    p = [np.zeros(6)]
    SGD(1.0, clipvalue=1.0).apply(p, [nan_inf])
    np.testing.assert_array_equal(p[0], [np.nan, -np.inf, np.inf, -1.0, 1.0, -0.1])
    # clipnorm: a non-finite gradient is not rescaled; the others still are
    p = [np.zeros(6), np.zeros(2)]
    SGD(1.0, clipnorm=1.0).apply(p, [nan_inf, np.array([3.0, 4.0])])
    np.testing.assert_array_equal(p[0], -nan_inf)
    np.testing.assert_allclose(p[1], [-0.6, -0.8])
    # global_clipnorm: a non-finite global norm leaves every gradient as it is
    p = [np.zeros(6), np.zeros(2)]
    SGD(1.0, global_clipnorm=1.0).apply(p, [nan_inf, np.array([3.0, 4.0])])
    np.testing.assert_array_equal(p[0], -nan_inf)
    np.testing.assert_array_equal(p[1], [-3.0, -4.0])


def test_clipnorm_float32_norm_does_not_overflow():
    p = [np.zeros(4, np.float32)]
    SGD(1.0, clipnorm=1.0).apply(p, [np.full(4, 1e30, np.float32)])   # sum of squares > float32 max
    np.testing.assert_allclose(p[0], -0.5, rtol=1e-6)
    p = [np.zeros(4, np.float32)]
    SGD(1.0, global_clipnorm=2.0).apply(p, [np.full(4, 1e30, np.float32)])
    np.testing.assert_allclose(p[0], -1.0, rtol=1e-6)


# ---- shape/count/dtype checks on apply -------------------------------------------------------

def test_apply_refuses_params_that_do_not_match_the_state():
    opt = Adam()
    params, grads = make_problem(7, steps=1)
    opt.apply(params, grads[0])
    with pytest.raises(ValueError, match=r"params: expected 3 arrays.*got 2"):
        opt.apply(params[:2], grads[0][:2])
    other = [params[0], np.zeros((5, 1)), params[2]]
    with pytest.raises(ValueError, match=r"params\[1\]: expected shape \(5,\).*got \(5, 1\)"):
        opt.apply(other, [grads[0][0], np.zeros((5, 1)), grads[0][2]])
    as32 = [params[0].astype(np.float32), params[1], params[2]]
    with pytest.raises(TypeError, match=r"params\[0\]: expected dtype float64.*got float32"):
        opt.apply(as32, grads[0])
    assert opt.iterations == 1


def test_apply_refuses_bad_arrays_before_writing_anything():
    opt = SGD(0.1, 0.9)
    p = [np.ones(3), np.ones(2)]
    with pytest.raises(ValueError, match=r"grads: expected 2 arrays.*got 1"):
        opt.apply(p, [np.ones(3)])
    with pytest.raises(ValueError, match=r"grads\[1\]: expected shape \(2,\).*got \(3,\)"):
        opt.apply(p, [np.ones(3), np.ones(3)])
    with pytest.raises(TypeError, match=r"grads\[0\]: expected a float array, got dtype int64"):
        opt.apply(p, [np.ones(3, np.int64), np.ones(2)])
    with pytest.raises(TypeError, match=r"params\[0\]: expected a float32 or float64 ndarray"):
        opt.apply([[1.0, 2.0, 3.0]], [np.ones(3)])
    with pytest.raises(TypeError, match=r"params\[0\]: expected dtype float32 or float64, got int32"):
        opt.apply([np.ones(3, np.int32)], [np.ones(3)])
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\]: expected a writeable array"):
        opt.apply([ro], [np.ones(3)])
    with pytest.raises(TypeError, match="params: expected a list of arrays"):
        opt.apply(np.ones(3), [np.ones(3)])
    np.testing.assert_array_equal(p[0], 1)
    assert opt.iterations == 0 and not opt.built


# ---- learning rate ------------------------------------------------------------------------

def test_learning_rate_property_constant_and_schedule():
    opt = SGD(0.1)
    assert opt.learning_rate == 0.1 and isinstance(opt.learning_rate, float)
    opt.learning_rate = 0.05
    assert opt.learning_rate == 0.05
    sched = schedules.PiecewiseConstantDecay([1, 2], [1.0, 0.5, 0.25])
    opt = SGD(sched)
    p = [np.zeros(1)]
    seen = []
    for _ in range(4):
        seen.append(opt.learning_rate)
        opt.apply(p, [np.ones(1)])
    assert seen == [1.0, 1.0, 0.5, 0.25]
    np.testing.assert_allclose(p[0], [-2.75])
    # setting a float replaces the schedule (documented)
    opt.learning_rate = 0.125
    assert opt.learning_rate == 0.125 and opt.get_config()["learning_rate"] == 0.125
    opt.apply(p, [np.ones(1)])
    np.testing.assert_allclose(p[0], [-2.875])
    # and a schedule can be installed again
    opt.learning_rate = sched
    assert opt.learning_rate == 0.25


def test_plain_callable_schedule_works_but_does_not_serialize():
    opt = SGD(lambda step: 0.1 / (1 + step))
    p = [np.zeros(1)]
    opt.apply(p, [np.ones(1)])
    opt.apply(p, [np.ones(1)])
    np.testing.assert_allclose(p[0], [-0.15])
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        opt.get_config()


def test_bad_schedule_value_raises_before_writing():
    opt = SGD(lambda step: -1.0 if step else 0.1)
    p = [np.zeros(1)]
    opt.apply(p, [np.ones(1)])
    with pytest.raises(ValueError, match=r"learning_rate: the schedule returned -1.0 at step 1"):
        opt.apply(p, [np.ones(1)])
    np.testing.assert_allclose(p[0], [-0.1])
    assert opt.iterations == 1


# ---- state --------------------------------------------------------------------------------

STATE_CASES = VARIANTS + [("sgd", dict(lr=schedules.CosineDecay(0.1, 5, warmup_target=0.2, warmup_steps=2),
                                       momentum=0.5))]


@pytest.mark.parametrize("variant", STATE_CASES, ids=_id)
def test_state_round_trip_resumes_bit_identically(variant):
    kind, hp = variant
    params, grads = make_problem(8, steps=6, dtype=np.float32)
    straight = run(build(kind, hp, weight_decay=0.01), params, grads)

    first = build(kind, hp, weight_decay=0.01)
    half = run(first, params, grads[:3])
    buf = io.BytesIO()
    np.savez(buf, **first.get_state())
    config = json.loads(json.dumps(optimizers.serialize(first)))
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    assert state["iterations"].shape == () and state["iterations"].dtype == np.int64

    second = optimizers.deserialize(config)
    assert type(second) is type(first) and second.get_config() == first.get_config()
    second.set_state(state)
    resumed = run(second, half, grads[3:])
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a, b)
    assert second.iterations == 6


def test_get_state_names_and_copies():
    opt = Adam(amsgrad=True)
    assert opt.get_state().keys() == {"iterations"}
    params, grads = make_problem(9, steps=1)
    opt.apply(params, grads[0])
    state = opt.get_state()
    assert set(state) == {"iterations"} | {f"{s}/{i}" for s in ("m", "v", "v_hat") for i in range(3)}
    assert int(state["iterations"]) == 1
    state["m/0"][...] = 123.0                       # a copy: the optimizer is unaffected
    assert not np.any(opt.get_state()["m/0"] == 123.0)
    assert set(RMSprop(momentum=0.5, centered=True).get_state()) == {"iterations"}
    assert set(SGD().get_state()) == {"iterations"}


def test_set_state_validates_before_changing_anything():
    opt = Adam()
    params, grads = make_problem(10, steps=2)
    opt.apply(params, grads[0])
    good = opt.get_state()

    bad = dict(good)
    del bad["v/2"]
    with pytest.raises(ValueError, match=r"missing \['v/2'\]"):
        opt.set_state(bad)
    bad = {**good, "m/3": np.zeros(2)}
    with pytest.raises(ValueError, match=r"unexpected \['m/3'\]"):
        opt.set_state(bad)
    bad = {**good, "velocity/0": np.zeros(2)}
    with pytest.raises(ValueError, match=r"unexpected key 'velocity/0'"):
        opt.set_state(bad)
    bad = {**good, "m/1": np.zeros(4)}
    with pytest.raises(ValueError, match=r"state\['m/1'\]: expected shape \(5,\), got \(4,\)"):
        opt.set_state(bad)
    bad = {**good, "v/0": good["v/0"].astype(np.float32)}
    with pytest.raises(TypeError, match=r"state\['v/0'\]: expected dtype float64, got float32"):
        opt.set_state(bad)
    bad = {**good, "iterations": np.array([1])}
    with pytest.raises(TypeError, match=r"state\['iterations'\]: expected a 0-d integer array"):
        opt.set_state(bad)
    bad = {**good, "iterations": np.array(-1)}
    with pytest.raises(ValueError, match=r"state\['iterations'\]: expected an int >= 0, got -1"):
        opt.set_state(bad)
    bad = {k: v for k, v in good.items() if k != "iterations"}
    with pytest.raises(ValueError, match="'iterations'"):
        opt.set_state(bad)
    with pytest.raises(TypeError, match="state: expected a dict"):
        opt.set_state([1, 2])
    # nothing changed
    after = opt.get_state()
    assert after.keys() == good.keys()
    for k in good:
        np.testing.assert_array_equal(after[k], good[k])


def test_set_state_on_fresh_optimizer_checks_the_next_apply():
    params, grads = make_problem(11, steps=1)
    src = RMSprop(centered=True)
    src.apply(params, grads[0])
    fresh = RMSprop(centered=True)
    fresh.set_state(src.get_state())
    assert fresh.built and fresh.iterations == 1
    with pytest.raises(ValueError, match=r"params\[1\]: expected shape \(5,\)"):
        fresh.apply([params[0], np.zeros(6), params[2]], [grads[0][0], np.zeros(6), grads[0][2]])
    # a state for another configuration is refused by name
    with pytest.raises(ValueError, match="unexpected key 'mean_grad/0'"):
        RMSprop(centered=False).set_state(src.get_state())
    # slots of one position must agree in dtype
    state = src.get_state()
    state["mean_grad/0"] = state["mean_grad/0"].astype(np.float32)
    with pytest.raises(TypeError, match=r"state\['mean_grad/0'\]: expected dtype float64"):
        RMSprop(centered=True).set_state(state)


# ---- config and registry ------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_config_round_trip(kind):
    opt = CLASSES[kind](learning_rate=schedules.ExponentialDecay(0.1, 10, 0.9, staircase=True),
                        global_clipnorm=3.0, name="mine")
    config = json.loads(json.dumps(opt.get_config()))
    again = CLASSES[kind].from_config(config)
    assert again.get_config() == opt.get_config()
    assert again.name == "mine"
    assert isinstance(again._schedule, schedules.ExponentialDecay)


def test_registry_get_serialize_deserialize():
    for name, cls in CLASSES.items():
        assert type(optimizers.get(name)) is cls
        assert type(optimizers.get(cls.__name__)) is cls
        assert type(optimizers.get(cls)) is cls
    opt = Adam(0.5)
    assert optimizers.get(opt) is opt
    ser = optimizers.serialize(SGD(0.2, momentum=0.3, nesterov=True))
    assert ser["class_name"] == "SGD"
    again = optimizers.get(ser)
    assert isinstance(again, SGD) and again.momentum == 0.3 and again.nesterov and again.learning_rate == 0.2
    assert optimizers.get("adamw").weight_decay == 0.004
    with pytest.raises(ValueError, match=r"optimizer: expected one of .*got 'adamx'"):
        optimizers.get("adamx")
    with pytest.raises(TypeError, match="optimizer: expected"):
        optimizers.get(3)
    with pytest.raises(TypeError, match="optimizer: expected"):
        optimizers.get(None)
    with pytest.raises(ValueError, match="class_name"):
        optimizers.deserialize({"class_name": "Nadam", "config": {}})


def test_defaults_match_keras():
    assert SGD().get_config() == {"name": "sgd", "learning_rate": 0.01, "weight_decay": None, "clipnorm": None,
                                  "global_clipnorm": None, "clipvalue": None, "momentum": 0.0,
                                  "nesterov": False}
    a = Adam()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon, a.amsgrad, a.weight_decay) == \
        (0.001, 0.9, 0.999, 1e-7, False, None)
    w = AdamW()
    assert (w.learning_rate, w.weight_decay, w.epsilon) == (0.001, 0.004, 1e-7)
    r = RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    g = Adagrad()
    assert (g.learning_rate, g.initial_accumulator_value, g.epsilon) == (0.001, 0.1, 1e-7)


def test_schedules_reachable_from_optimizers():
    assert optimizers.schedules is schedules
    assert fastrnn.schedules is schedules


# ---- argument checking ----------------------------------------------------------------------

BAD_ARGS = [
    (SGD, dict(learning_rate=-0.1), ValueError, "learning_rate", "-0.1"),
    (SGD, dict(learning_rate="fast"), TypeError, "learning_rate", "'fast'"),
    (SGD, dict(learning_rate=True), TypeError, "learning_rate", "True"),
    (SGD, dict(learning_rate=float("nan")), ValueError, "learning_rate", "nan"),
    (SGD, dict(momentum=1.5), ValueError, "momentum", "1.5"),
    (SGD, dict(momentum=-0.1), ValueError, "momentum", "-0.1"),
    (SGD, dict(nesterov="yes"), TypeError, "nesterov", "'yes'"),
    (Adam, dict(beta_1=1.0), ValueError, "beta_1", "1.0"),
    (Adam, dict(beta_2=-0.5), ValueError, "beta_2", "-0.5"),
    (Adam, dict(epsilon=-1e-8), ValueError, "epsilon", "-1e-08"),
    (Adam, dict(amsgrad=1), TypeError, "amsgrad", "1"),
    (AdamW, dict(weight_decay=None), ValueError, "weight_decay", "None"),
    (AdamW, dict(weight_decay=-0.1), ValueError, "weight_decay", "-0.1"),
    (RMSprop, dict(rho=1.0), ValueError, "rho", "1.0"),
    (RMSprop, dict(momentum=2.0), ValueError, "momentum", "2.0"),
    (RMSprop, dict(centered=None), TypeError, "centered", "None"),
    (Adagrad, dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value", "-1.0"),
    (Adagrad, dict(clipnorm=0.0), ValueError, "clipnorm", "0.0"),
    (Adagrad, dict(clipvalue=-1.0), ValueError, "clipvalue", "-1.0"),
    (Adam, dict(global_clipnorm="1"), TypeError, "global_clipnorm", "'1'"),
    (Adam, dict(clipnorm=1.0, global_clipnorm=1.0), ValueError, "clipnorm", "global_clipnorm=1.0"),
    (Adam, dict(clipnorm=1.0, clipvalue=1.0), ValueError, "clipvalue", "clipvalue=1.0"),
    (Adam, dict(name=3), TypeError, "name", "3"),
]


@pytest.mark.parametrize("cls, kwargs, exc, arg, shown", BAD_ARGS,
                         ids=[f"{c.__name__}-{'-'.join(k)}" for c, k, *_ in BAD_ARGS])
def test_bad_arguments_name_the_argument(cls, kwargs, exc, arg, shown):
    with pytest.raises(exc) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert msg.startswith(arg) or f"{arg}:" in msg, msg
    assert shown in msg, msg
    assert "expected" in msg, msg


def test_setting_a_bad_learning_rate_raises():
    opt = SGD(0.1)
    with pytest.raises(ValueError, match=r"learning_rate: expected a finite float in \[0, inf\), got -1"):
        opt.learning_rate = -1
    assert opt.learning_rate == 0.1
    opt.learning_rate = np.float32(0.5)
    assert opt.learning_rate == 0.5 and type(opt.learning_rate) is float


# ---- schedules ----------------------------------------------------------------------------

def test_exponential_decay_values():
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    for step in (0, 1, 5, 10, 25):
        assert s(step) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-15)
    st = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [st(k) for k in (0, 9, 10, 19, 20, 31)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])
    assert isinstance(s(np.int64(3)), float)


def test_cosine_decay_values():
    s = schedules.CosineDecay(1.0, decay_steps=100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.5)
    assert s(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert s(100) == pytest.approx(0.0, abs=1e-15) and s(1000) == s(100)
    a = schedules.CosineDecay(2.0, decay_steps=10, alpha=0.1)
    assert a(5) == pytest.approx(2.0 * (0.9 * 0.5 + 0.1))
    assert a(50) == pytest.approx(0.2)
    w = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=4)
    assert [w(k) for k in (0, 1, 2, 3)] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert w(4) == pytest.approx(1.0)
    assert w(9) == pytest.approx(0.5)                                # halfway through the decay
    assert w(14) == pytest.approx(0.0, abs=1e-15) and w(100) == w(14)


def test_piecewise_constant_values():
    s = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    got = [s(k) for k in (0, 10, 11, 20, 21, 1000)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]        # a boundary belongs to the interval ending there


@pytest.mark.parametrize("sched", [
    schedules.ExponentialDecay(0.1, 7, 0.3, staircase=True, name="e"),
    schedules.CosineDecay(0.1, 7, alpha=0.2, warmup_target=0.3, warmup_steps=3),
    schedules.PiecewiseConstantDecay([3, 9], [0.3, 0.2, 0.1]),
], ids=lambda s: type(s).__name__)
def test_schedule_serialize_round_trip(sched):
    config = json.loads(json.dumps(schedules.serialize(sched)))
    again = schedules.deserialize(config)
    assert again == sched
    assert [again(k) for k in range(15)] == [sched(k) for k in range(15)]


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match=r"decay_steps: expected .*got 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match=r"initial_learning_rate: expected .*got -0.1"):
        schedules.CosineDecay(-0.1, 10)
    with pytest.raises(ValueError, match=r"alpha: expected .*got 1.5"):
        schedules.CosineDecay(0.1, 10, alpha=1.5)
    with pytest.raises(ValueError, match=r"values: expected 3 values.*got 2"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="boundaries: expected increasing"):
        schedules.PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="staircase"):
        schedules.ExponentialDecay(0.1, 10, 0.5, staircase="no")
    with pytest.raises(ValueError, match="class_name"):
        schedules.deserialize({"class_name": "PolynomialDecay", "config": {}})
    with pytest.raises(TypeError, match="schedule: expected a LearningRateSchedule"):
        schedules.serialize(lambda step: 0.1)


def test_custom_schedule_via_custom_objects():
    class Halving(schedules.LearningRateSchedule):
        def __init__(self, start):
            self.start = start

        def __call__(self, step):
            return self.start / 2 ** step

        def get_config(self):
            return {"start": self.start}

    opt = SGD(Halving(1.0))
    config = optimizers.serialize(opt)
    with pytest.raises(ValueError, match="Halving"):
        optimizers.deserialize(config)
    again = optimizers.deserialize(config, custom_objects={"Halving": Halving})
    p = [np.zeros(1)]
    run_ = [again.apply(p, [np.ones(1)]) for _ in range(3)]
    assert run_ == [1, 2, 3]
    np.testing.assert_allclose(p[0], [-1.75])


# ---- PyTorch parity -----------------------------------------------------------------------

def torch_run(make_opt, params, grads_per_step, lr_per_step=None):
    torch = pytest.importorskip("torch")
    tparams = [torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for p in params]
    opt = make_opt(torch, tparams)
    for step, grads in enumerate(grads_per_step):
        if lr_per_step is not None:
            for group in opt.param_groups:
                group["lr"] = lr_per_step(step)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy(), dtype=torch.float64)
        opt.step()
    return [tp.detach().numpy() for tp in tparams]


def assert_close_rel(got, want, rtol):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.max(np.abs(w)))


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_torch_sgd(momentum, nesterov):
    params, grads = make_problem(20, steps=20)
    got = run(SGD(0.05, momentum=momentum, nesterov=nesterov), params, grads)
    want = torch_run(lambda torch, ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, nesterov=nesterov),
                     params, grads)
    assert_close_rel(got, want, 1e-10)


def test_torch_sgd_weight_decay_without_momentum_is_the_same():
    params, grads = make_problem(21, steps=20)
    got = run(SGD(0.05, weight_decay=0.1), params, grads)
    want = torch_run(lambda torch, ps: torch.optim.SGD(ps, lr=0.05, weight_decay=0.1), params, grads)
    assert_close_rel(got, want, 1e-10)


def test_torch_sgd_momentum_differs_when_lr_changes():
    """Documented: Keras's velocity carries -lr*g with the lr of its step, torch's buffer
    is multiplied by the current lr; equal for a constant lr, different once it changes."""
    params, grads = make_problem(22, steps=10)
    sched = schedules.PiecewiseConstantDecay([4], [0.1, 0.01])
    got = run(SGD(sched, momentum=0.9), params, grads)
    want = torch_run(lambda torch, ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), params, grads,
                     lr_per_step=sched)
    assert not np.allclose(got[0], want[0], rtol=1e-4)
    # ...and the torch result is what torch's rule says (buf * current lr)
    mom = [np.zeros_like(p) for p in params]
    ref = [p.copy() for p in params]
    for step, gs in enumerate(grads):
        for i, g in enumerate(gs):
            mom[i] = 0.9 * mom[i] + g
            ref[i] = ref[i] - sched(step) * mom[i]
    assert_close_rel(want, ref, 1e-10)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_torch_adam_adamw(kind, amsgrad):
    params, grads = make_problem(23, steps=20, away_from_zero=True)
    if kind == "adam":
        opt = Adam(0.01, epsilon=1e-12, amsgrad=amsgrad)
        make = lambda torch, ps: torch.optim.Adam(ps, lr=0.01, eps=1e-12, amsgrad=amsgrad)  # noqa: E731
    else:
        opt = AdamW(0.01, weight_decay=0.05, epsilon=1e-12, amsgrad=amsgrad)
        make = lambda torch, ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05, eps=1e-12,  # noqa: E731
                                                   amsgrad=amsgrad)
    got = run(opt, params, grads)
    want = torch_run(make, params, grads)
    assert_close_rel(got, want, 1e-10)


def test_torch_adam_epsilon_placement():
    """Documented: Keras's epsilon = torch's eps * sqrt(1 - beta_2**t). With a large eps
    the two differ; on step 1, epsilon = eps * sqrt(1 - beta_2) matches exactly."""
    params, grads = make_problem(24, steps=1, away_from_zero=True)
    eps = 1e-2
    want = torch_run(lambda torch, ps: torch.optim.Adam(ps, lr=0.01, eps=eps), params, grads)
    same_eps = run(Adam(0.01, epsilon=eps), params, grads)
    assert not np.allclose(same_eps[1], want[1], rtol=1e-4)
    matched = run(Adam(0.01, epsilon=eps * math.sqrt(1 - 0.999)), params, grads)
    assert_close_rel(matched, want, 1e-12)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_torch_rmsprop_with_zero_epsilon(momentum, centered):
    params, grads = make_problem(25, steps=20, away_from_zero=True)
    got = run(RMSprop(0.01, rho=0.9, momentum=momentum, epsilon=0.0, centered=centered), params, grads)
    want = torch_run(lambda torch, ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=0.0, momentum=momentum,
                                                           centered=centered), params, grads)
    assert_close_rel(got, want, 1e-10)


def test_torch_rmsprop_and_adagrad_epsilon_placement():
    """Documented: fastrnn (Keras) divides by sqrt(v + eps), torch by sqrt(v) + eps."""
    params, grads = make_problem(26, steps=1, away_from_zero=True)
    eps, lr = 1e-2, 0.01
    g = grads[0]
    want_t = torch_run(lambda torch, ps: torch.optim.RMSprop(ps, lr=lr, alpha=0.9, eps=eps), params, grads)
    got = run(RMSprop(lr, rho=0.9, epsilon=eps), params, grads)
    v = [0.1 * x * x for x in g]
    assert_close_rel(want_t, [p - lr * x / (np.sqrt(vv) + eps) for p, x, vv in zip(params, g, v)], 1e-12)
    assert_close_rel(got, [p - lr * x / np.sqrt(vv + eps) for p, x, vv in zip(params, g, v)], 1e-12)
    assert not np.allclose(got[1], want_t[1], rtol=1e-4)

    want_t = torch_run(lambda torch, ps: torch.optim.Adagrad(ps, lr=lr, eps=eps, initial_accumulator_value=0.1),
                       params, grads)
    got = run(Adagrad(lr, initial_accumulator_value=0.1, epsilon=eps), params, grads)
    acc = [0.1 + x * x for x in g]
    assert_close_rel(want_t, [p - lr * x / (np.sqrt(a) + eps) for p, x, a in zip(params, g, acc)], 1e-12)
    assert_close_rel(got, [p - lr * x / np.sqrt(a + eps) for p, x, a in zip(params, g, acc)], 1e-12)
    assert not np.allclose(got[1], want_t[1], rtol=1e-4)


@pytest.mark.parametrize("initial", [0.0, 0.1])
def test_torch_adagrad_with_zero_epsilon(initial):
    params, grads = make_problem(27, steps=20, away_from_zero=True)
    got = run(Adagrad(0.05, initial_accumulator_value=initial, epsilon=0.0), params, grads)
    want = torch_run(lambda torch, ps: torch.optim.Adagrad(ps, lr=0.05, eps=0.0, initial_accumulator_value=initial),
                     params, grads)
    assert_close_rel(got, want, 1e-10)


@pytest.mark.parametrize("clip", ["clipnorm", "global_clipnorm"])
def test_torch_clipping(clip):
    """clipnorm = torch.nn.utils.clip_grad_norm_ on each parameter alone; global_clipnorm =
    clip_grad_norm_ on all together (torch adds 1e-6 to the norm: compare to ~1e-6)."""
    torch = pytest.importorskip("torch")
    params, grads = make_problem(28, steps=5)
    got = run(SGD(0.05, momentum=0.9, **{clip: 1.0}), params, grads)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = torch.optim.SGD(tparams, lr=0.05, momentum=0.9)
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g.copy())
        if clip == "clipnorm":
            for tp in tparams:
                torch.nn.utils.clip_grad_norm_([tp], 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(tparams, 1.0)
        opt.step()
    assert_close_rel(got, [tp.detach().numpy() for tp in tparams], 1e-5)


# ---- Keras 3 parity (Keras is not in CI) ---------------------------------------------------

KERAS_CASES = [
    ("SGD", dict(learning_rate=0.1)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("SGD", dict(learning_rate=0.1, clipvalue=0.5)),
    ("Adam", dict(learning_rate=0.01)),
    ("Adam", dict(learning_rate=0.01, amsgrad=True, clipnorm=1.0)),
    ("Adam", dict(learning_rate=0.01, global_clipnorm=1.0)),
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
    ("AdamW", dict(learning_rate=0.01, amsgrad=True)),
    ("RMSprop", dict(learning_rate=0.01)),
    ("RMSprop", dict(learning_rate=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(learning_rate=0.1)),
    ("Adagrad", dict(learning_rate=0.1, initial_accumulator_value=0.5, weight_decay=0.01)),
]


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("name, kwargs", KERAS_CASES,
                         ids=[f"{n}-{'-'.join(k)}" for n, k in KERAS_CASES])
def test_keras_parity_float32(keras, name, kwargs):
    params, grads = make_problem(30, steps=6, dtype=np.float32)
    kopt = getattr(keras.optimizers, name)(**kwargs)
    kvars = [keras.Variable(p.copy()) for p in params]
    for gs in grads:
        kopt.apply([keras.ops.convert_to_tensor(g) for g in gs], kvars)
    got = run(getattr(optimizers, name)(**kwargs), params, grads)
    for g, kv in zip(got, kvars):
        np.testing.assert_allclose(g, np.asarray(kv.numpy()), rtol=1e-6, atol=1e-7)
    # Keras's config reads back into ours (Keras keeps the learning rate in a float32 variable)
    ours = optimizers.deserialize({"class_name": name, "config": kopt.get_config()}).get_config()
    want = {**getattr(optimizers, name)(**kwargs).get_config(), "name": kopt.name}
    assert ours.pop("learning_rate") == pytest.approx(want.pop("learning_rate"), rel=1e-7)
    assert ours == want


def test_keras_parity_schedule_in_optimizer(keras):
    params, grads = make_problem(31, steps=6, dtype=np.float32)
    ks = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    kopt = keras.optimizers.SGD(ks, momentum=0.9)
    kvars = [keras.Variable(p.copy()) for p in params]
    for gs in grads:
        kopt.apply([keras.ops.convert_to_tensor(g) for g in gs], kvars)
    got = run(SGD(schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5), momentum=0.9), params, grads)
    for g, kv in zip(got, kvars):
        np.testing.assert_allclose(g, np.asarray(kv.numpy()), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, kwargs", [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.3)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.3, staircase=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=9, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=9, warmup_target=0.1, warmup_steps=4)),
    ("PiecewiseConstantDecay", dict(boundaries=[3, 8], values=[0.3, 0.2, 0.1])),
])
def test_keras_schedule_parity(keras, name, kwargs):
    ks = getattr(keras.optimizers.schedules, name)(**kwargs)
    ours = getattr(schedules, name)(**kwargs)
    for step in range(16):
        assert ours(step) == pytest.approx(float(ks(step)), rel=1e-6, abs=1e-9), step
    again = schedules.deserialize(keras.optimizers.schedules.serialize(ks))
    assert [again(k) for k in range(16)] == [ours(k) for k in range(16)]
