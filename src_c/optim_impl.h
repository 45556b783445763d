/* Optimizer updates, one pass over a parameter and its slots (fastrnn/optimizers.py
 * calls these; its NumPy code is the specification, same operations in the same order).
 * The square root is the correctly rounded IEEE one, as NumPy's.
 * Element-wise, so any thread count gives the same bits; no FMA contraction, so
 * the results match that NumPy code exactly. */

/* Adam (Keras 3), with alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) from the caller:
 *   m += (g - m) * (1 - b1);  v += (g*g - v) * (1 - b2);  [amsgrad: vh = max(vh, v)]
 *   p -= (m * alpha) / (sqrt(v or vh) + eps)
 * p, g, m, v (and vh, or NULL) have n elements. */
#if FR_IS_F64
#define FR_SQRT(x) __builtin_sqrt(x)
#else
#define FR_SQRT(x) __builtin_sqrtf(x)
#endif

__attribute__((optimize("fp-contract=off")))
static void FN(adam)(real *p, const real *g, real *m, real *v, real *vh, long n, real alpha, real c1, real c2,
                     real eps, int n_threads)
{
    int nthr = n < (1L << 16) ? 1 : n_threads;
#pragma omp parallel for num_threads(nthr) schedule(static) if (nthr > 1)
    for (long i = 0; i < n; i++) {
        real mi = m[i] + (g[i] - m[i]) * c1;
        real vi = v[i] + (g[i] * g[i] - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        if (vh) {
            vi = vh[i] > vi ? vh[i] : vi;
            vh[i] = vi;
        }
        real d = FR_SQRT(vi) + eps;
        p[i] -= (mi * alpha) / d;
    }
}

#undef FR_SQRT
