/* AVX-512 kernels (x86-64 only; chosen at run time when the CPU has them). */
#include "kernels_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,fma")
#endif

#include <immintrin.h>
#define FR_AVX512 1      /* AVX-512 intrinsics may be used (simd_impl.h, recurrence_impl.h) */
#define FR_VB 64
#define FR_MV_ACC 24
#define GEMM_MR 8
#define GEMM_NV 2

#define FR_T float
#define FR_IS_F64 0
#define FR_SFX _f32_avx512
#include "kernels_impl.h"
#undef FR_T
#undef FR_IS_F64
#undef FR_SFX

#define FR_T double
#define FR_IS_F64 1
#define FR_SFX _f64_avx512
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
