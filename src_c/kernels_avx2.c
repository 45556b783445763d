/* AVX2 + FMA kernels (x86-64 only; chosen at run time when the CPU has them). */
#include "kernels_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

#define FR_VB 32
#define FR_MV_ACC 12
#define GEMM_MR 6
#define GEMM_NV 2

#define FR_T float
#define FR_IS_F64 0
#define FR_SFX _f32_avx2
#include "kernels_impl.h"
#undef FR_T
#undef FR_IS_F64
#undef FR_SFX

#define FR_T double
#define FR_IS_F64 1
#define FR_SFX _f64_avx2
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
