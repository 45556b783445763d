/* fp32 FMA peak of this machine, for benchmarks/compare.py.
 *
 *     cc -O2 -fopenmp fma_peak.c -o fma_peak && ./fma_peak [threads] [isa]
 *
 * Each thread runs NCHAIN independent chains of fused multiply-adds on SIMD
 * registers (acc = acc * a + b): enough chains to cover the FMA latency times the
 * number of FMA pipes, so the pipes never wait. The widest instruction set the CPU
 * has is chosen at run time (AVX-512, else AVX2+FMA, else scalar C); a second
 * argument `avx512|avx2|scalar` forces a lower one. Prints one line:
 *
 *     isa avx512 threads 2 gflops 523.4
 *
 * GFLOP/s counts 2 flops per lane per FMA; the best of several repetitions, each
 * timed from a barrier to the slowest thread's end. Built without OpenMP it runs
 * one thread (compare.py then starts one process per thread and adds them up).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FMA_X86 1
#endif

#define NCHAIN 16        /* independent accumulators per thread */
#define REPS 7           /* repetitions; the fastest counts */

static volatile float sink;   /* keeps the results alive */

static double now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
}

/* Each kernel runs `iters` rounds of NCHAIN FMAs and returns the flops it did. */

#ifdef FMA_X86
__attribute__((target("avx512f")))
static double chains_avx512(long iters)
{
    __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    __m512 acc[NCHAIN];
    for (int c = 0; c < NCHAIN; c++) acc[c] = _mm512_set1_ps(1.0f + 0.01f * c);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int c = 0; c < NCHAIN; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < NCHAIN; c++) s = _mm512_add_ps(s, acc[c]);
    sink = _mm512_reduce_add_ps(s);
    return 2.0 * 16 * NCHAIN * (double)iters;
}

__attribute__((target("avx2,fma")))
static double chains_avx2(long iters)
{
    /* 16 ymm registers: 12 accumulators + a + b leave room for the compiler */
    enum { N = 12 };
    __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    __m256 acc[N];
    for (int c = 0; c < N; c++) acc[c] = _mm256_set1_ps(1.0f + 0.01f * c);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < N; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < N; c++) s = _mm256_add_ps(s, acc[c]);
    float out[8];
    _mm256_storeu_ps(out, s);
    sink = out[0] + out[7];
    return 2.0 * 8 * N * (double)iters;
}
#endif

static double chains_scalar(long iters)
{
    float a = 0.9999999f, b = 1e-7f, acc[NCHAIN];
    for (int c = 0; c < NCHAIN; c++) acc[c] = 1.0f + 0.01f * c;
    for (long i = 0; i < iters; i++) {
        for (int c = 0; c < NCHAIN; c++) acc[c] = acc[c] * a + b;
    }
    float s = 0;
    for (int c = 0; c < NCHAIN; c++) s += acc[c];
    sink = s;
    return 2.0 * NCHAIN * (double)iters;
}

typedef double (*kernel_fn)(long);

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    const char *want = argc > 2 ? argv[2] : "auto";
    if (threads < 1) threads = 1;
    kernel_fn kernel = chains_scalar;
    const char *isa = "scalar";
#ifdef FMA_X86
    __builtin_cpu_init();
    int any = strcmp(want, "auto") == 0;
    if ((any || strcmp(want, "avx512") == 0) && __builtin_cpu_supports("avx512f")) {
        kernel = chains_avx512;
        isa = "avx512";
    } else if ((any || strcmp(want, "avx512") == 0 || strcmp(want, "avx2") == 0)
               && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        kernel = chains_avx2;
        isa = "avx2";
    }
#endif
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    threads = 1;
#endif
    /* calibrate: about 0.1 s per repetition on one thread */
    long iters = 1 << 16;
    for (;;) {
        double t = now();
        kernel(iters);
        t = now() - t;
        if (t > 0.02 || iters > (1L << 40)) {
            iters = (long)(iters * (0.1 / (t > 1e-9 ? t : 1e-9)));
            if (iters < 1) iters = 1;
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int r = 0; r < REPS; r++) {
        double flops = 0.0, t0 = 0.0, t1 = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        {
#pragma omp barrier
#pragma omp single
            t0 = now();
            flops += kernel(iters);
#pragma omp barrier
#pragma omp single
            t1 = now();
        }
#else
        t0 = now();
        flops = kernel(iters);
        t1 = now();
#endif
        double gflops = flops / (t1 - t0) / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("isa %s threads %d gflops %.1f\n", isa, threads, best);
    return 0;
}
