# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The bridge from validated NumPy arrays to the C kernels in src_c/.

`fastrnn.functional` checks every argument and allocates every array; this
module only takes their addresses, fills an `fr_seq` and calls the kernels
without the GIL. Nothing here validates, and nothing here is public.
"""
from libc.stdint cimport int64_t
from libc.string cimport memset

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "fastrnn.h" nogil:
    enum: FR_F32, FR_F64
    enum: FR_OK, FR_ENOMEM
    ctypedef struct fr_act:
        int kind[3]
        double alpha[3]
        double beta[3]
        double clip
        int input_forget
    ctypedef struct fr_seq:
        int cell, lbr, reverse, training
        int T, B, I, H, P
        int n_threads
        int *steps_threads
        const int64_t *lengths
        const unsigned char *step_mask
        const void *rmask
        const void *x
        const void *h0
        const void *c0
        const void *w_ih
        const void *w_hh
        const void *b_ih
        const void *b_hh
        const void *w_peep
        const void *w_hr
        const void *packed
        const fr_act *act
        void *y
        void *h_n
        void *c_n
        void *states
        void *cells
        void *gates
        void *proj_in
        const void *dy
        const void *dh_n
        const void *dc_n
        void *dx
        void *dh0
        void *dc0
        void *dw_ih
        void *dw_hh
        void *db_ih
        void *db_hh
        void *dw_peep
        void *dw_hr
    int fr_forward(int dtype, const fr_seq *a)
    int fr_backward(int dtype, const fr_seq *a)
    size_t fr_packed_bytes(int dtype, const fr_seq *a)
    int fr_pack(int dtype, const fr_seq *a, void *packed)
    void fr_adam(int dtype, void *p, const void *g, void *m, void *v, void *vh, long n, double alpha,
                 double c1, double c2, double eps, int n_threads)
    int fr_gemm(int dtype, void *c, long ldc, const void *a, long rsa, long csa,
                const void *b, long rsb, long csb, int M, int N, int K, int beta, int n_threads)
    int fr_isa()
    const char *fr_isa_name(int isa)
    int fr_openmp_enabled()

# The SIMD level is chosen once, here at import, before any kernel runs.
fr_isa()

# Cell codes of src_c/fastrnn.h, by the names _validate uses.
CELLS = {"rnn_tanh": 0, "rnn_relu": 1, "gru": 2, "lstm": 3}


cdef inline const void *_addr(object arr):
    """Address of an array's first element, NULL for None. An empty array keeps its
    (valid, never dereferenced) address: C forbids NULL even for zero-byte copies."""
    if arr is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


cdef int _dtype_code(object arr):
    return FR_F64 if arr.dtype.itemsize == 8 else FR_F32


cdef _check(int status):
    if status == FR_ENOMEM:
        raise MemoryError("fastrnn: not enough memory for the kernel's work buffers")
    if status != FR_OK:
        raise RuntimeError(f"fastrnn: kernel failed with status {status}")


cdef void _fill(fr_seq *s, object a, int n_threads, object b_ih, object b_hh) except *:
    """The sizes, flags and inputs of a validated call (`_validate.SeqArgs`)."""
    memset(s, 0, sizeof(fr_seq))
    s.cell = CELLS[a.cell]
    s.lbr = a.linear_before_reset
    s.reverse = a.reverse
    s.training = a.training
    s.T = a.T; s.B = a.B; s.I = a.I; s.H = a.H; s.P = a.P
    s.n_threads = n_threads
    s.lengths = <const int64_t *>_addr(a.lengths)
    s.step_mask = <const unsigned char *>_addr(a.step_mask)
    s.rmask = _addr(a.recurrent_mask)
    s.x = _addr(a.x); s.h0 = _addr(a.h0); s.c0 = _addr(a.c0)
    s.w_ih = _addr(a.w_ih); s.w_hh = _addr(a.w_hh)
    s.b_ih = _addr(b_ih); s.b_hh = _addr(b_hh)
    s.w_peep = _addr(a.w_peep); s.w_hr = _addr(a.w_hr)


cdef void _fill_saved(fr_seq *s, object states, object cells, object gates, object proj_in):
    s.states = <void *>_addr(states); s.cells = <void *>_addr(cells)
    s.gates = <void *>_addr(gates); s.proj_in = <void *>_addr(proj_in)


def forward(a, int n_threads, b_ih, b_hh, y, h_n, c_n, states, cells, gates, proj_in, packed):
    """One forward pass of validated args `a`; biases never None. The saved arrays
    (states, cells, gates, proj_in) may all be None for inference; `packed` is a
    buffer from `pack` for the same weights, or None. Returns the threads its step
    loop used."""
    cdef fr_seq s
    cdef fr_act act
    _fill(&s, a, n_threads, b_ih, b_hh)
    s.packed = _addr(packed)
    if a.act is not None:       # (kinds, alphas, betas, clip, input_forget), see _validate.activations
        for k in range(3):
            act.kind[k] = a.act[0][k]; act.alpha[k] = a.act[1][k]; act.beta[k] = a.act[2][k]
        act.clip = a.act[3]
        act.input_forget = a.act[4]
        s.act = &act
    _fill_saved(&s, states, cells, gates, proj_in)
    s.y = <void *>_addr(y); s.h_n = <void *>_addr(h_n); s.c_n = <void *>_addr(c_n)
    cdef int dtype = _dtype_code(a.x), status, used = 1
    s.steps_threads = &used
    with nogil:
        status = fr_forward(dtype, &s)
    _check(status)
    return used


def backward(a, int n_threads, b_ih, b_hh, states, cells, gates, proj_in, dy, dh_n, dc_n,
             dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep, dw_hr):
    """One backward pass, from the forward's args and saved arrays and the incoming
    gradients. Returns the threads its step loop used."""
    cdef fr_seq s
    _fill(&s, a, n_threads, b_ih, b_hh)
    _fill_saved(&s, states, cells, gates, proj_in)
    s.dy = _addr(dy); s.dh_n = _addr(dh_n); s.dc_n = _addr(dc_n)
    s.dx = <void *>_addr(dx); s.dh0 = <void *>_addr(dh0); s.dc0 = <void *>_addr(dc0)
    s.dw_ih = <void *>_addr(dw_ih); s.dw_hh = <void *>_addr(dw_hh)
    s.db_ih = <void *>_addr(db_ih); s.db_hh = <void *>_addr(db_hh)
    s.dw_peep = <void *>_addr(dw_peep); s.dw_hr = <void *>_addr(dw_hr)
    cdef int dtype = _dtype_code(a.x), status, used = 1
    s.steps_threads = &used
    with nogil:
        status = fr_backward(dtype, &s)
    _check(status)
    return used


def pack(a, int n_threads):
    """The forward weights of validated args `a` (x may be empty) packed into a
    new 64-byte aligned uint8 buffer, for later `forward` calls."""
    cdef fr_seq s
    _fill(&s, a, n_threads, None, None)
    cdef int dtype = _dtype_code(a.w_ih), status
    cdef size_t n = fr_packed_bytes(dtype, &s)
    raw = np.empty(n + 64, np.uint8)
    start = -raw.__array_interface__["data"][0] % 64
    buf = raw[start:start + n]
    cdef void *p = <void *>_addr(buf)
    with nogil:
        status = fr_pack(dtype, &s, p)
    _check(status)
    return buf


def gemm(c, a, b, bint accumulate, int n_threads):
    """c (+)= a @ b for 2-d arrays of one dtype; c C-contiguous, a and b any strides."""
    cdef int M = a.shape[0], K = a.shape[1], N = b.shape[1]
    cdef int item = a.dtype.itemsize, dtype = _dtype_code(a), status
    cdef void *pc = <void *>_addr(c)
    cdef const void *pa = _addr(a)
    cdef const void *pb = _addr(b)
    cdef long ldc = c.strides[0] // item
    cdef long rsa = a.strides[0] // item, csa = a.strides[1] // item
    cdef long rsb = b.strides[0] // item, csb = b.strides[1] // item
    with nogil:
        status = fr_gemm(dtype, pc, ldc, pa, rsa, csa, pb, rsb, csb, M, N, K, accumulate, n_threads)
    _check(status)


def adam(p, g, m, v, vh, double alpha, double c1, double c2, double eps, int n_threads):
    """One Adam step in place over arrays of one dtype and one memory layout (vh may be None)."""
    cdef int dtype = _dtype_code(p)
    cdef long n = p.size
    cdef void *pp = <void *>_addr(p)
    cdef const void *pg = _addr(g)
    cdef void *pm = <void *>_addr(m)
    cdef void *pv = <void *>_addr(v)
    cdef void *pvh = <void *>_addr(vh)
    with nogil:
        fr_adam(dtype, pp, pg, pm, pv, pvh, n, alpha, c1, c2, eps, n_threads)


def isa():
    """The SIMD instruction set the kernels dispatch to: 'avx512', 'avx2' or 'generic'."""
    return fr_isa_name(fr_isa()).decode()


def openmp_enabled():
    return bool(fr_openmp_enabled())

