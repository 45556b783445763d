/* Portable kernels: plain C vectors of 16 bytes (SSE2 on x86-64, NEON on ARM). */
#include "kernels_internal.h"

#define FR_VB 16
#define FR_MV_ACC 12
#define GEMM_MR 4
#define GEMM_NV 2

#define FR_T float
#define FR_IS_F64 0
#define FR_SFX _f32_generic
#include "kernels_impl.h"
#undef FR_T
#undef FR_IS_F64
#undef FR_SFX

#define FR_T double
#define FR_IS_F64 1
#define FR_SFX _f64_generic
#include "kernels_impl.h"
