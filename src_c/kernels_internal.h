/* What the per-ISA kernel files share with dispatch.c. */
#ifndef FASTRNN_KERNELS_INTERNAL_H
#define FASTRNN_KERNELS_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastrnn.h"

typedef struct {
    int (*forward)(const fr_seq *a);
    int (*backward)(const fr_seq *a);
    size_t (*packed_bytes)(const fr_seq *a);
    int (*pack)(const fr_seq *a, void *packed);
    int (*gemm)(void *c, long ldc, const void *a, long rsa, long csa, const void *b, long rsb, long csb,
                int M, int N, int K, int beta, int n_threads);
    void (*adam)(void *p, const void *g, void *m, void *v, void *vh, long n, double alpha, double c1, double c2,
                 double eps, int n_threads);
} fr_kernels;

/* The phases a recurrence step is made of (see recurrence_impl.h). */
enum {
    /* forward */
    PH_RNN,          /* h = act(xp + h W_hh^T + b_hh) */
    PH_GRU_LBR,      /* all three gates from h W_hh^T; n = tanh(xp_n + r*(h W_hn^T + b_hn)) */
    PH_GRU_RZ,       /* r, z from h W_hrz^T; saves r*h for the next phase */
    PH_GRU_N,        /* n = tanh(xp_n + (r*h) W_hn^T + b_hn); h update */
    PH_LSTM,         /* i, f, g, o from h W_hh^T; c and m = o*tanh(c) */
    PH_PROJ,         /* h = m W_hr^T */
    /* backward */
    PH_B_RNN,        /* dG = (dh + dy) * act' */
    PH_B_GRU,        /* dG for all gates (LBR form) */
    PH_B_GRU_ZN,     /* dG for z and n (original form) */
    PH_B_GRU_R,      /* d(r*h) = dG_n W_hn; dG for r */
    PH_B_LSTM,       /* dG for i, f, g, o and dc_prev; with projection dm = dh W_hr first */
    PH_B_DY,         /* dh += dy for projected LSTM (over P) */
    PH_B_DH,         /* dh_prev = dG W_hh (+ direct terms) */
};

/* 64-byte aligned buffers, outside any time loop; NULL on failure. */
void *fr_aligned_alloc(size_t bytes);
void fr_aligned_free(void *p);

/* OpenMP wrappers that also build without OpenMP (one thread). */
int fr_thread_id(void);
int fr_num_threads(void);
void fr_barrier(void);

#endif
