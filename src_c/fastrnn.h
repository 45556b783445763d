/* fastrnn C kernels: the interface seen by the Cython layer (fastrnn/_engine.pyx).
 *
 * Sizes everywhere: T steps, B batch, I input features, H hidden units, P size of
 * the h state (P == H unless LSTM has a projection), G gates (RNN 1, GRU 3, LSTM 4).
 * All arrays are C-contiguous, of one dtype (float32 or float64), and already
 * validated by Python: kernels trust their inputs.
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stddef.h>
#include <stdint.h>

/* <complex.h> (pulled in by NumPy's headers) defines I as the imaginary unit;
 * here I is the input size, as everywhere in fastrnn. */
#ifdef I
#undef I
#endif

enum fr_dtype { FR_F32 = 0, FR_F64 = 1 };
enum fr_cell { FR_RNN_TANH = 0, FR_RNN_RELU = 1, FR_GRU = 2, FR_LSTM = 3 };
enum fr_isa { FR_ISA_GENERIC = 0, FR_ISA_AVX2 = 1, FR_ISA_AVX512 = 2 };
enum fr_status { FR_OK = 0, FR_ENOMEM = 1 };

/* Activations of ONNX's RNN/GRU/LSTM operators, for fr_act. */
enum fr_act_kind {
    FR_ACT_SIGMOID = 0, FR_ACT_TANH, FR_ACT_RELU, FR_ACT_HARD_SIGMOID, FR_ACT_LEAKY_RELU, FR_ACT_AFFINE,
    FR_ACT_SCALED_TANH, FR_ACT_ELU, FR_ACT_SOFTSIGN, FR_ACT_SOFTPLUS, FR_ACT_THRESHOLDED_RELU
};

/* A forward's own activations (ONNX's `activations`, `clip`, `input_forget`), in
 * place of the cell's sigmoid/tanh (relu). Slot 0 is f (RNN's only activation;
 * GRU r, z; LSTM i, f, o), slot 1 g (GRU n; LSTM's cell input), slot 2 h (LSTM:
 * m = o * h(c)). clip > 0 clamps every gate's pre-activation (biases and
 * peepholes included; not the cell state h reads) to [-clip, clip]; 0: none. input_forget (LSTM)
 * couples the forget gate to the input gate: f = 1 - i. Forward only. */
typedef struct {
    int kind[3];
    double alpha[3], beta[3];
    double clip;
    int input_forget;
} fr_act;

/* One layer in one direction. The forward call reads the inputs and writes the
 * outputs and, when `training`, the saved tensors; backward reads the saved
 * tensors and the incoming gradients and writes the gradients. */
typedef struct {
    int cell, lbr;              /* fr_cell; GRU linear_before_reset */
    int reverse, training;
    int T, B, I, H, P;
    int n_threads;              /* upper bound; kernels may use fewer */
    int *steps_threads;         /* out, or NULL: the threads the step loop used */
    const int64_t *lengths;     /* (B,) each 0..T, or NULL: all T */
    const uint8_t *step_mask;   /* (T, B) 1 where a sample processes a step, or NULL: all (with lengths: both) */
    const void *rmask;          /* (B, P) factor on h where it enters the recurrent products (variational
                                   recurrent dropout), or NULL */

    /* forward inputs */
    const void *x;              /* (T, B, I) */
    const void *h0;             /* (B, P) */
    const void *c0;             /* (B, H), LSTM */
    const void *w_ih;           /* (G*H, I) */
    const void *w_hh;           /* (G*H, P) */
    const void *b_ih, *b_hh;    /* (G*H,), never NULL (zeros when absent) */
    const void *w_peep;         /* (3, H) rows i, f, o, or NULL */
    const void *w_hr;           /* (P, H), or NULL */
    const void *packed;         /* w_ih, w_hh (and w_hr) as fr_pack left them, or NULL: pack them here */
    const fr_act *act;          /* the forward's own activations, or NULL: the cell's (backward: must be NULL) */

    /* forward outputs */
    void *y;                    /* (T, B, P) */
    void *h_n;                  /* (B, P) */
    void *c_n;                  /* (B, H), LSTM */

    /* saved by a training forward, read by backward; an inference forward may
     * pass states == NULL and the kernel keeps one step of each itself */
    void *states;               /* (T+1, B, P) training, (2, B, P) inference */
    void *cells;                /* (T+1, B, H) training, (2, B, H) inference, LSTM */
    void *gates;                /* (T, B, 4, H) training, (1, B, 4, H) inference; GRU, LSTM */
    void *proj_in;              /* (T, B, H) training, (1, B, H) inference: LSTM m = o*tanh(c) */

    /* backward inputs */
    const void *dy;             /* (T, B, P), or NULL: zero (only final-state gradients) */
    const void *dh_n;           /* (B, P) */
    const void *dc_n;           /* (B, H), LSTM */

    /* backward outputs */
    void *dx;                   /* (T, B, I) */
    void *dh0;                  /* (B, P) */
    void *dc0;                  /* (B, H), LSTM */
    void *dw_ih, *dw_hh;        /* like w_ih, w_hh */
    void *db_ih, *db_hh;        /* (G*H,) */
    void *dw_peep;              /* (3, H), when w_peep */
    void *dw_hr;                /* (P, H), when w_hr */
} fr_seq;

/* Runs one direction of one layer. Returns FR_OK, or FR_ENOMEM when a work
 * buffer could not be allocated (outputs then hold no meaningful values). */
int fr_forward(int dtype, const fr_seq *a);
int fr_backward(int dtype, const fr_seq *a);

/* Forward weights packed ahead of time, for a caller that runs many forwards with
 * unchanged weights (a layer caches them). fr_packed_bytes gives the size for the
 * cell, sizes and weights of `a` (other fields unused); fr_pack fills a buffer of
 * that size (64-byte aligned) from a->w_ih, a->w_hh, a->w_hr with up to
 * a->n_threads threads. The layout is private: valid for this process's
 * instruction set and dtype only. A forward given `packed` ignores the weights'
 * values (its biases and peepholes are still read from the arrays). */
size_t fr_packed_bytes(int dtype, const fr_seq *a);
int fr_pack(int dtype, const fr_seq *a, void *packed);

/* C[M, N] = beta * C + A[M, K] B[K, N]; A(m, k) = a[m*rsa + k*csa], likewise B;
 * beta is 0 or 1. Exposed for tests and benchmarks of the hoisted products. */
int fr_gemm(int dtype, void *c, long ldc, const void *a, long rsa, long csa,
            const void *b, long rsb, long csb, int M, int N, int K, int beta, int n_threads);

/* One Adam step (Keras 3's update) over n elements; vh NULL without AMSGrad.
 * alpha = lr * sqrt(1 - b2^t) / (1 - b1^t), c1 = 1 - b1, c2 = 1 - b2 (see optim_impl.h). */
void fr_adam(int dtype, void *p, const void *g, void *m, void *v, void *vh, long n, double alpha, double c1,
             double c2, double eps, int n_threads);

int fr_isa(void);               /* the instruction set the kernels dispatch to: the best this
                                   CPU supports, or FASTRNN_ISA=generic|avx2|avx512 (read once) */
const char *fr_isa_name(int isa);
int fr_isa_supported(int isa);
int fr_openmp_enabled(void);

#endif
