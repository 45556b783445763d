/* Picks the kernels for this CPU once, and the small runtime helpers they share. */
#include <stdlib.h>
#if defined(_WIN32)
#include <malloc.h>
#endif

#include "kernels_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

extern const fr_kernels fr_kernels_f32_generic, fr_kernels_f64_generic;
#if defined(__x86_64__) || defined(_M_X64)
#define FR_X86 1
extern const fr_kernels fr_kernels_f32_avx2, fr_kernels_f64_avx2;
extern const fr_kernels fr_kernels_f32_avx512, fr_kernels_f64_avx512;
#else
#define FR_X86 0
#endif

int fr_isa_supported(int isa)
{
    switch (isa) {
    case FR_ISA_GENERIC: return 1;
#if FR_X86 && (defined(__GNUC__) || defined(__clang__))
    case FR_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FR_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

const char *fr_isa_name(int isa)
{
    switch (isa) {
    case FR_ISA_AVX512: return "avx512";
    case FR_ISA_AVX2: return "avx2";
    default: return "generic";
    }
}

/* The best supported ISA, or FASTRNN_ISA when set to a supported one. */
static int choose_isa(void)
{
    const char *env = getenv("FASTRNN_ISA");
    if (env && *env) {
        for (int isa = FR_ISA_AVX512; isa >= FR_ISA_GENERIC; isa--)
            if (strcmp(env, fr_isa_name(isa)) == 0 && fr_isa_supported(isa)) return isa;
    }
    for (int isa = FR_ISA_AVX512; isa > FR_ISA_GENERIC; isa--)
        if (fr_isa_supported(isa)) return isa;
    return FR_ISA_GENERIC;
}

static int chosen_isa = -1;

int fr_isa(void)
{
    /* Set once: fastrnn._engine calls this at import, before any kernel runs. */
    if (chosen_isa < 0) chosen_isa = choose_isa();
    return chosen_isa;
}

static const fr_kernels *kernels(int dtype)
{
    int f64 = dtype == FR_F64;
    switch (fr_isa()) {
#if FR_X86
    case FR_ISA_AVX512: return f64 ? &fr_kernels_f64_avx512 : &fr_kernels_f32_avx512;
    case FR_ISA_AVX2: return f64 ? &fr_kernels_f64_avx2 : &fr_kernels_f32_avx2;
#endif
    default: return f64 ? &fr_kernels_f64_generic : &fr_kernels_f32_generic;
    }
}

int fr_forward(int dtype, const fr_seq *a) { return kernels(dtype)->forward(a); }
int fr_backward(int dtype, const fr_seq *a) { return kernels(dtype)->backward(a); }
void fr_adam(int dtype, void *p, const void *g, void *m, void *v, void *vh, long n, double alpha, double c1,
             double c2, double eps, int n_threads)
{
    kernels(dtype)->adam(p, g, m, v, vh, n, alpha, c1, c2, eps, n_threads);
}
size_t fr_packed_bytes(int dtype, const fr_seq *a) { return kernels(dtype)->packed_bytes(a); }
int fr_pack(int dtype, const fr_seq *a, void *packed) { return kernels(dtype)->pack(a, packed); }

int fr_gemm(int dtype, void *c, long ldc, const void *a, long rsa, long csa, const void *b, long rsb, long csb,
            int M, int N, int K, int beta, int n_threads)
{
    return kernels(dtype)->gemm(c, ldc, a, rsa, csa, b, rsb, csb, M, N, K, beta, n_threads);
}

void *fr_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = 64;
#if defined(_WIN32)
    p = _aligned_malloc(bytes, 64);
#else
    if (posix_memalign(&p, 64, bytes) != 0) p = NULL;
#endif
    return p;
}

void fr_aligned_free(void *p)
{
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

int fr_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#ifdef _OPENMP
int fr_thread_id(void) { return omp_get_thread_num(); }
int fr_num_threads(void) { return omp_get_num_threads(); }
void fr_barrier(void)
{
#pragma omp barrier
}
#else
int fr_thread_id(void) { return 0; }
int fr_num_threads(void) { return 1; }
void fr_barrier(void) {}
#endif
