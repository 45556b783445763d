/* One instance of every kernel, for the dtype and instruction set chosen by the
 * including file:
 *   FR_T       float or double
 *   FR_IS_F64  0 or 1
 *   FR_VB      SIMD vector bytes (64 AVX-512, 32 AVX2, 16 portable)
 *   FR_SFX     name suffix, e.g. _f32_avx512
 *   FR_MV_ACC  vector accumulators the recurrent micro-kernel may keep in registers
 *   GEMM_MR, GEMM_NV  GEMM micro-tile: MR rows x NV vectors
 * It defines `const fr_kernels fr_kernels<FR_SFX>`. No include guard: it is
 * meant to be included once per instance.
 */
#define FR_CAT_(a, b) a##b
#define FR_CAT(a, b) FR_CAT_(a, b)
#define FN(name) FR_CAT(name, FR_SFX)
#define real FR_T
#define V FN(vec_)
#define VI FN(ivec_)
#define VL ((int)(FR_VB / sizeof(FR_T)))

#include "simd_impl.h"
#include "gemm_impl.h"
#include "recurrence_impl.h"
#include "optim_impl.h"

static int FN(gemm_entry)(void *c, long ldc, const void *a, long rsa, long csa, const void *b, long rsb,
                          long csb, int M, int N, int K, int beta, int n_threads)
{
    return FN(gemm)((real *)c, ldc, (const real *)a, rsa, csa, (const real *)b, rsb, csb, M, N, K, beta, n_threads);
}

static void FN(adam_entry)(void *p, const void *g, void *m, void *v, void *vh, long n, double alpha, double c1,
                           double c2, double eps, int n_threads)
{
    FN(adam)((real *)p, (const real *)g, (real *)m, (real *)v, (real *)vh, n, (real)alpha, (real)c1, (real)c2,
             (real)eps, n_threads);
}

const fr_kernels FR_CAT(fr_kernels, FR_SFX) = {FN(forward), FN(backward), FN(packed_bytes), FN(pack), FN(gemm_entry),
                                               FN(adam_entry)};

#undef GEMM_NR
#undef GEMM_KC
#undef GEMM_MC
#undef FR_CAT_
#undef FR_CAT
#undef FN
#undef real
#undef V
#undef VI
#undef VL
