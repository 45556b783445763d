"""Slow, obviously-correct NumPy forward and backward of the recurrent cells: the spec.

Same API as `fastrnn.functional` (see DESIGN.md, "The functional API"); the
compiled kernels are tested against this module, and this module is tested
against finite differences and PyTorch. It is written for clarity, not speed:
one time loop serves every cell, each cell is a pair of small step functions
(forward, backward) working on plain (B, ...) arrays.

Sizes: T steps, B batch, I input features, H hidden units, P size of the h state
(P == H except LSTM with projection), G gates (RNN 1, GRU 3: r, z, n; LSTM 4:
i, f, g, o). Arrays are time-major inside: x (T, B, I), y (T, B, P).

Masking: at step t only the "active" samples (t < lengths[b], and step_mask[t, b]
when a step mask is given) are processed. The step functions see just those
rows, so skipped steps never touch the state, give y = 0, and contribute nothing
(not even 0 * NaN) to any gradient.

Recurrent mask: with `recurrent_mask` (B, P), every recurrent product reads
h * recurrent_mask instead of h (variational recurrent dropout: one mask per
sequence); the state itself, the output and GRU's z * h term keep h.
"""
import numpy as np

from . import _validate


class Cache:
    """What backward needs from one training forward call.

    `cell` is the `_validate` cell name, `used` turns True once a backward call
    consumed it. `args` is the validated `SeqArgs`; `steps[t]` is `(rows, saved)`
    for step t: the indices of the active samples and what the cell's forward
    step saved for them (None where no sample was active).
    """

    def __init__(self, args, steps):
        self.cell = args.cell
        self.used = False
        self.args = args
        self.steps = steps


# ---------------------------------------------------------------------------
# Small helpers

def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _relu(x):
    return np.where(x < 0, 0, x)                       # NaN stays NaN


def _softplus(x):
    with np.errstate(over="ignore"):
        return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


# ONNX's activations by the kernel codes of _validate.ACTIVATIONS: f(x, alpha, beta)
_ACT_FUNCS = [
    lambda x, al, be: _sigmoid(x),
    lambda x, al, be: np.tanh(x),
    lambda x, al, be: _relu(x),
    lambda x, al, be: np.clip(al * x + be, 0, 1),                   # hard_sigmoid
    lambda x, al, be: np.where(x < 0, al * x, x),                   # leaky_relu
    lambda x, al, be: al * x + be,                                  # affine
    lambda x, al, be: al * np.tanh(be * x),                         # scaled_tanh
    lambda x, al, be: np.where(x < 0, al * np.expm1(np.minimum(x, 0)), x),   # elu
    lambda x, al, be: x / (1 + np.abs(x)),                          # softsign
    lambda x, al, be: _softplus(x),
    lambda x, al, be: np.where(x <= al, 0, x),                      # thresholded_relu; NaN stays NaN
]


def _functions(a):
    """The cell's activation functions (f, g, h): the cell's own, or with `a.act`
    ONNX's, where f and g clip the gate pre-activations first when asked (h, which
    reads LSTM's cell state, never clips)."""
    if a.act is None:
        f = {"rnn_tanh": np.tanh, "rnn_relu": _relu}.get(a.cell, _sigmoid)
        return f, np.tanh, np.tanh
    kinds, alphas, betas, clip, _ = a.act

    def make(k):
        fn, al, be = _ACT_FUNCS[kinds[k]], a.dtype.type(alphas[k]), a.dtype.type(betas[k])
        if clip > 0 and k < 2:
            c = a.dtype.type(clip)
            return lambda v: fn(np.where(v > c, c, np.where(v < -c, -c, v)), al, be)
        return lambda v: fn(v, al, be)
    return make(0), make(1), make(2)


def _linear(inp, w, b=None):
    """inp (N, K) @ w.T (M, K) -> (N, M), plus b (M,) when given."""
    out = inp @ w.T
    if b is not None:
        out = out + b
    return out


def _rows_of(b, lo, hi):
    """b[lo:hi] of an optional bias (None stays None)."""
    return None if b is None else b[lo:hi]


def _split(a, n):
    """Split the last axis of `a` into n equal gate blocks."""
    return np.split(a, n, axis=-1)


def _step_order(T, reverse):
    """The time indices in processing order."""
    return range(T - 1, -1, -1) if reverse else range(T)


def _active_rows(a, t):
    """Indices of the samples that process step t (all of them without lengths or a step mask)."""
    active = np.ones(a.B, bool)
    if a.lengths is not None:
        active &= t < a.lengths
    if a.step_mask is not None:
        active &= a.step_mask[t].astype(bool)
    return np.flatnonzero(active)


def _masked(h, hm):
    """h as the recurrent products see it: times the recurrent mask rows, when there is one."""
    return h if hm is None else h * hm


def _to_caller_layout(seq, batch_first):
    """A time-major (T, B, K) array in the caller's layout, as a fresh contiguous array."""
    return np.ascontiguousarray(seq.transpose(1, 0, 2) if batch_first else seq)


def _zero_grads(a):
    """Zeroed parameter-gradient accumulators, one per parameter the cell uses."""
    grads = {
        "w_ih": np.zeros_like(a.w_ih),                 # (G*H, I)
        "w_hh": np.zeros_like(a.w_hh),                 # (G*H, P)
        "b_ih": np.zeros(a.G * a.H, a.dtype),          # (G*H,); dropped if b_ih was None
        "b_hh": np.zeros(a.G * a.H, a.dtype),          # (G*H,); dropped if b_hh was None
    }
    if a.w_peep is not None:
        grads["w_peep"] = np.zeros_like(a.w_peep)      # (3, H)
    if a.w_hr is not None:
        grads["w_hr"] = np.zeros_like(a.w_hr)          # (P, H)
    return grads


# ---------------------------------------------------------------------------
# The time loop, shared by every cell

def _forward(a, step, state):
    """Run `step` over the sequence.

    `state` is a tuple of (B, ...) arrays, h first; `step(a, x_t, state_rows, hm_rows)`
    returns (new_state_rows, saved); hm_rows are the recurrent mask's rows or None. Returns y (T, B, P), the final state and
    the per-step records for backward (None unless a.training).
    """
    state = tuple(s.copy() for s in state)             # never write the caller's h0/c0
    y = np.zeros((a.T, a.B, a.P), a.dtype)             # (T, B, P); padded steps stay 0
    steps = [None] * a.T
    for t in _step_order(a.T, a.reverse):
        rows = _active_rows(a, t)                      # (B_t,)
        if rows.size == 0:
            continue
        hm = None if a.recurrent_mask is None else a.recurrent_mask[rows]
        new_state, saved = step(a, a.x[t, rows], tuple(s[rows] for s in state), hm)
        for s, new in zip(state, new_state):
            s[rows] = new
        y[t, rows] = new_state[0]
        if a.training:
            steps[t] = (rows, saved)
    return y, state, steps


def _backward(cache, dy, dstate, step_backward):
    """Back-propagate through the sequence recorded in `cache`.

    dy (T, B, P) is time-major; `dstate` holds the gradients of the final state
    (same tuple structure as the state). `step_backward(a, saved, dstate_rows,
    grads)` adds the step's parameter gradients to `grads` and returns
    (dstate_prev_rows, dx_rows). Returns the finished grads dict.
    """
    a = cache.args
    if dy is None:                                     # no gradient reaches y
        dy = np.zeros((a.T, a.B, a.P), a.dtype)
    dstate = tuple(d.copy() for d in dstate)
    dx = np.zeros_like(a.x)                            # (T, B, I)
    grads = _zero_grads(a)
    for t in reversed(_step_order(a.T, a.reverse)):    # the forward order, backwards
        if cache.steps[t] is None:
            continue
        rows, saved = cache.steps[t]
        # The step's output is both y[t] and the next state's h: their gradients add.
        d_new = (dstate[0][rows] + dy[t, rows],) + tuple(d[rows] for d in dstate[1:])
        d_prev, dx[t, rows] = step_backward(a, saved, d_new, grads)
        for d, dp in zip(dstate, d_prev):
            d[rows] = dp

    grads["x"] = _to_caller_layout(dx, a.batch_first)
    grads["h0"] = dstate[0]
    if a.cell == "lstm":
        grads["c0"] = dstate[1]
    if a.b_ih is None:
        del grads["b_ih"]
    if a.b_hh is None:
        del grads["b_hh"]
    cache.used = True                                  # a cache serves one backward call
    return grads


# ---------------------------------------------------------------------------
# Vanilla RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh)

def _rnn_step(a, x_t, state, hm):
    (h,) = state                                       # x_t (N, I), h (N, H)
    pre = _linear(x_t, a.w_ih, a.b_ih) + _linear(_masked(h, hm), a.w_hh, a.b_hh)   # (N, H)
    h_new = _functions(a)[0](pre)
    return (h_new,), (x_t, h, h_new, hm)


def _rnn_step_backward(a, saved, d_new, grads):
    x_t, h, h_new, hm = saved
    (dh_new,) = d_new                                  # (N, H)
    if a.cell == "rnn_tanh":
        dpre = dh_new * (1 - h_new * h_new)
    else:
        dpre = dh_new * (h_new > 0)                    # relu'(0) taken as 0
    grads["w_ih"] += dpre.T @ x_t
    grads["w_hh"] += dpre.T @ _masked(h, hm)
    grads["b_ih"] += dpre.sum(0)
    grads["b_hh"] += dpre.sum(0)
    return (_masked(dpre @ a.w_hh, hm),), dpre @ a.w_ih


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", activations=None, clip=None,
                reverse=False, lengths=None, step_mask=None, recurrent_mask=None,
                batch_first=False, training=True,
                num_threads=None):
    """Elman RNN over a sequence. Returns (y, h_n, cache); cache is None unless training."""
    a = _validate.prepare("rnn_" + _validate.check_nonlinearity(nonlinearity), x, h0, None, w_ih, w_hh, b_ih, b_hh,
                          reverse=reverse, lengths=lengths, step_mask=step_mask, recurrent_mask=recurrent_mask,
                          activations=activations, clip=clip, batch_first=batch_first,
                          training=training, num_threads=num_threads)
    y, (h_n,), steps = _forward(a, _rnn_step, (a.h0,))
    cache = Cache(a, steps) if a.training else None
    return _to_caller_layout(y, a.batch_first), h_n, cache


def rnn_backward(dy, dh_n, cache):
    """Gradients of rnn_forward: dict with x, h0, w_ih, w_hh (and b_ih, b_hh if given)."""
    dy, dstate = _validate.start_backward(cache, "rnn", dy, dh_n, Cache)
    return _backward(cache, dy, dstate, _rnn_step_backward)


# ---------------------------------------------------------------------------
# GRU (gates r, z, n):
#   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise
#   linear_before_reset=True:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
#   linear_before_reset=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
#   h' = (1 - z) * n + z * h

def _gru_step(a, x_t, state, hm):
    (h,) = state                                       # x_t (N, I), h (N, H)
    hr = _masked(h, hm)                                # what the recurrent products read
    H = a.H
    b_hh_rz, b_hh_n = _rows_of(a.b_hh, 0, 2 * H), _rows_of(a.b_hh, 2 * H, 3 * H)
    gi_r, gi_z, gi_n = _split(_linear(x_t, a.w_ih, a.b_ih), 3)             # (N, H) each
    gh_r, gh_z = _split(_linear(hr, a.w_hh[:2 * H], b_hh_rz), 2)          # (N, H) each
    fn_f, fn_g, _ = _functions(a)
    r = fn_f(gi_r + gh_r)
    z = fn_f(gi_z + gh_z)
    if a.linear_before_reset:
        gh_n = _linear(hr, a.w_hh[2 * H:], b_hh_n)                        # (N, H)
        n = fn_g(gi_n + r * gh_n)
    else:
        gh_n = _linear(r * hr, a.w_hh[2 * H:], b_hh_n)                    # (N, H)
        n = fn_g(gi_n + gh_n)
    h_new = (1 - z) * n + z * h
    return (h_new,), (x_t, h, r, z, n, gh_n, hm)


def _gru_step_backward(a, saved, d_new, grads):
    x_t, h, r, z, n, gh_n, hm = saved
    hr = _masked(h, hm)
    (dh_new,) = d_new                                  # (N, H)
    H = a.H
    w_hh_rz, w_hh_n = a.w_hh[:2 * H], a.w_hh[2 * H:]   # (2H, H), (H, H)

    # h' = (1 - z) * n + z * h
    dn = dh_new * (1 - z)
    dz = dh_new * (h - n)
    dh = dh_new * z
    dan = dn * (1 - n * n)                             # d(pre-activation of n), (N, H)

    if a.linear_before_reset:                          # n = tanh(gi_n + r * gh_n)
        dr = dan * gh_n
        dgh_n = dan * r                                # d(W_hn h + b_hn)
        grads["w_hh"][2 * H:] += dgh_n.T @ hr
        dh += _masked(dgh_n @ w_hh_n, hm)
    else:                                              # n = tanh(gi_n + W_hn (r h) + b_hn)
        dgh_n = dan
        d_rh = dgh_n @ w_hh_n                          # d(r * hr), (N, H)
        dr = d_rh * hr
        dh += _masked(d_rh * r, hm)
        grads["w_hh"][2 * H:] += dgh_n.T @ (r * hr)

    dar = dr * r * (1 - r)                             # d(pre-activation of r)
    daz = dz * z * (1 - z)                             # d(pre-activation of z)
    dgh_rz = np.concatenate([dar, daz], axis=1)        # (N, 2H)
    grads["w_hh"][:2 * H] += dgh_rz.T @ hr
    dh += _masked(dgh_rz @ w_hh_rz, hm)

    dgi = np.concatenate([dar, daz, dan], axis=1)      # d(W_ih x + b_ih), (N, 3H)
    grads["w_ih"] += dgi.T @ x_t
    grads["b_ih"] += dgi.sum(0)
    grads["b_hh"] += np.concatenate([dar, daz, dgh_n], axis=1).sum(0)
    return (dh,), dgi @ a.w_ih


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, linear_before_reset=True, activations=None,
                clip=None, reverse=False, lengths=None, step_mask=None, recurrent_mask=None,
                batch_first=False, training=True,
                num_threads=None):
    """GRU over a sequence. Returns (y, h_n, cache); cache is None unless training."""
    a = _validate.prepare("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh,
                          reverse=reverse, lengths=lengths, step_mask=step_mask, recurrent_mask=recurrent_mask,
                          activations=activations, clip=clip, batch_first=batch_first,
                          training=training, linear_before_reset=linear_before_reset,
                          num_threads=num_threads)
    y, (h_n,), steps = _forward(a, _gru_step, (a.h0,))
    cache = Cache(a, steps) if a.training else None
    return _to_caller_layout(y, a.batch_first), h_n, cache


def gru_backward(dy, dh_n, cache):
    """Gradients of gru_forward: dict with x, h0, w_ih, w_hh (and b_ih, b_hh if given)."""
    dy, dstate = _validate.start_backward(cache, "gru", dy, dh_n, Cache)
    return _backward(cache, dy, dstate, _gru_step_backward)


# ---------------------------------------------------------------------------
# LSTM (gates i, f, g, o), peepholes p_i, p_f, p_o = w_peep rows (zero when None):
#   i = sigmoid(W_ii x + b_ii + W_hi h + b_hi + p_i * c), f likewise with p_f
#   g = tanh(W_ig x + b_ig + W_hg h + b_hg)
#   c' = f * c + i * g
#   o = sigmoid(W_io x + b_io + W_ho h + b_ho + p_o * c')
#   m = o * tanh(c');  h' = m, or h' = w_hr @ m with projection (h is then (N, P))

def _lstm_step(a, x_t, state, hm):
    h, c = state                                       # x_t (N, I), h (N, P), c (N, H)
    pre = _linear(x_t, a.w_ih, a.b_ih) + _linear(_masked(h, hm), a.w_hh, a.b_hh)   # (N, 4H)
    a_i, a_f, a_g, a_o = _split(pre, 4)                # (N, H) each
    if a.w_peep is not None:
        p_i, p_f, p_o = a.w_peep                       # (H,) each
        a_i = a_i + p_i * c
        a_f = a_f + p_f * c
    fn_f, fn_g, fn_h = _functions(a)
    i, g = fn_f(a_i), fn_g(a_g)
    f = 1 - i if a.act is not None and a.act[4] else fn_f(a_f)     # input_forget couples f to i
    c_new = f * c + i * g
    if a.w_peep is not None:
        a_o = a_o + p_o * c_new
    o = fn_f(a_o)
    tanh_c = fn_h(c_new)                               # tanh(c') unless the forward has its own h
    m = o * tanh_c                                     # (N, H)
    h_new = m if a.w_hr is None else _linear(m, a.w_hr)   # (N, P)
    return (h_new, c_new), (x_t, h, c, i, f, g, o, c_new, tanh_c, m, hm)


def _lstm_step_backward(a, saved, d_new, grads):
    x_t, h, c, i, f, g, o, c_new, tanh_c, m, hm = saved
    dh_new, dc_new = d_new                             # (N, P), (N, H)

    if a.w_hr is None:
        dm = dh_new
    else:                                              # h' = m @ w_hr.T
        grads["w_hr"] += dh_new.T @ m                  # (P, H)
        dm = dh_new @ a.w_hr                           # (N, H)

    # m = o * tanh(c'); o sees c' through its peephole
    dao = dm * tanh_c * o * (1 - o)                    # d(pre-activation of o)
    dc = dc_new + dm * o * (1 - tanh_c * tanh_c)       # total gradient of c'
    if a.w_peep is not None:
        dc = dc + dao * a.w_peep[2]

    # c' = f * c + i * g
    dai = dc * g * i * (1 - i)
    daf = dc * c * f * (1 - f)
    dag = dc * i * (1 - g * g)
    dc_prev = dc * f
    if a.w_peep is not None:
        dc_prev = dc_prev + dai * a.w_peep[0] + daf * a.w_peep[1]
        grads["w_peep"] += np.stack([(dai * c).sum(0), (daf * c).sum(0), (dao * c_new).sum(0)])

    da = np.concatenate([dai, daf, dag, dao], axis=1)  # d(gate pre-activations), (N, 4H)
    grads["w_ih"] += da.T @ x_t
    grads["w_hh"] += da.T @ _masked(h, hm)
    grads["b_ih"] += da.sum(0)
    grads["b_hh"] += da.sum(0)
    return (_masked(da @ a.w_hh, hm), dc_prev), da @ a.w_ih


def lstm_forward(x, hc0, w_ih, w_hh, b_ih=None, b_hh=None, *, w_peep=None, w_hr=None, activations=None,
                 clip=None, input_forget=False, reverse=False, lengths=None, step_mask=None, recurrent_mask=None,
                batch_first=False, training=True,
                 num_threads=None):
    """LSTM over a sequence. Returns (y, (h_n, c_n), cache); cache is None unless training."""
    h0, c0 = _validate.lstm_states(hc0, "(h0, c0)")
    a = _validate.prepare("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep=w_peep, w_hr=w_hr,
                          reverse=reverse, lengths=lengths, step_mask=step_mask, recurrent_mask=recurrent_mask,
                          activations=activations, clip=clip, input_forget=input_forget, batch_first=batch_first,
                          training=training, num_threads=num_threads)
    y, (h_n, c_n), steps = _forward(a, _lstm_step, (a.h0, a.c0))
    cache = Cache(a, steps) if a.training else None
    return _to_caller_layout(y, a.batch_first), (h_n, c_n), cache


def lstm_backward(dy, dhc_n, cache):
    """Gradients of lstm_forward: dict with x, h0, c0, w_ih, w_hh (and b_ih, b_hh,
    w_peep, w_hr when they were given)."""
    dy, dstate = _validate.start_backward(cache, "lstm", dy, dhc_n, Cache)
    return _backward(cache, dy, dstate, _lstm_step_backward)
