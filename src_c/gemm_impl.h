/* The GEMM behind every product hoisted out of the time loop, for one
 * (dtype, ISA) instance: the input projection X W_ih^T before the loop; dX,
 * dW_ih, dW_hh, dW_hr after it.
 *
 * BLIS-style: B is packed once into panels of GEMM_NR columns (k-major), A is
 * packed per (GEMM_MC x GEMM_KC) block into panels of GEMM_MR rows, and a
 * register-blocked micro-kernel computes GEMM_MR x GEMM_NR tiles. Any strides
 * are accepted, so transposed operands cost only their packing.
 *
 * Threads split the output into (row block, column chunk) tasks; K is never
 * split, so each element is summed in the same order for any thread count.
 */

#define GEMM_NR (GEMM_NV * VL)
#define GEMM_KC 256
#define GEMM_MC (GEMM_MR * 16)

/* bp[j][k][0:NR] = B(k, j*NR + 0:NR), zero past N; panels [j0, j1). */
static void FN(gemm_pack_b)(real *bp, const real *b, long rsb, long csb, int N, int K, int j0, int j1)
{
    for (int j = j0; j < j1; j++) {
        real *dst = bp + (size_t)j * K * GEMM_NR;
        int n0 = j * GEMM_NR, nn = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
        if (rsb == 1 && csb != 1) {
            /* columns of B are contiguous (B = W^T of a row-major W): read each once */
            for (int k0 = 0; k0 < K; k0 += 64) {          /* 64 k at a time: the panel part stays in L1 */
                int k1 = K - k0 < 64 ? K : k0 + 64;
                for (int n = 0; n < GEMM_NR; n++) {
                    const real *src = b + (size_t)(n0 + n) * csb;
                    for (int k = k0; k < k1; k++) dst[(size_t)k * GEMM_NR + n] = n < nn ? src[k] : 0;
                }
            }
            continue;
        }
        for (int k = 0; k < K; k++) {
            const real *src = b + (size_t)k * rsb + (size_t)n0 * csb;
            int n = 0;
            if (csb == 1)
                for (; n < nn; n++) dst[n] = src[n];
            else
                for (; n < nn; n++) dst[n] = src[(size_t)n * csb];
            for (; n < GEMM_NR; n++) dst[n] = 0;
            dst += GEMM_NR;
        }
    }
}

/* ap[i][k][0:MR] = A(m0 + i*MR + 0:MR, k0 + k), zero past `rows`. */
static void FN(gemm_pack_a)(real *ap, const real *a, long rsa, long csa, int m0, int rows, int k0, int kc)
{
    for (int i = 0; i < rows; i += GEMM_MR) {
        int mr = rows - i < GEMM_MR ? rows - i : GEMM_MR;
        const real *src = a + (size_t)(m0 + i) * rsa + (size_t)k0 * csa;
        for (int k = 0; k < kc; k++) {
            int r = 0;
            for (; r < mr; r++) ap[r] = src[(size_t)r * rsa + (size_t)k * csa];
            for (; r < GEMM_MR; r++) ap[r] = 0;
            ap += GEMM_MR;
        }
    }
}

/* C[0:mr, 0:nr] (+)= Ap (kc, MR) . Bp (kc, NR). */
static void FN(gemm_micro)(real *c, long ldc, const real *ap, const real *bp, int kc, int mr, int nr, int accumulate)
{
    V acc[GEMM_MR][GEMM_NV];
    for (int r = 0; r < GEMM_MR; r++)
        for (int v = 0; v < GEMM_NV; v++) acc[r][v] = FN(vsplat)(0);
    for (int k = 0; k < kc; k++) {
        V bv[GEMM_NV];
        for (int v = 0; v < GEMM_NV; v++) bv[v] = FN(vload)(bp + v * VL);
        for (int r = 0; r < GEMM_MR; r++) {
            real av = ap[r];
            for (int v = 0; v < GEMM_NV; v++) acc[r][v] += av * bv[v];
        }
        ap += GEMM_MR;
        bp += GEMM_NR;
    }
    if (mr == GEMM_MR && nr == GEMM_NR) {
        for (int r = 0; r < GEMM_MR; r++)
            for (int v = 0; v < GEMM_NV; v++) {
                real *p = c + (size_t)r * ldc + v * VL;
                FN(vstore)(p, accumulate ? FN(vload)(p) + acc[r][v] : acc[r][v]);
            }
        return;
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < GEMM_NV; v++) {
            int n = nr - v * VL;
            if (n <= 0) break;
            if (n > VL) n = VL;
            real *p = c + (size_t)r * ldc + v * VL;
            FN(vstore_n)(p, accumulate ? FN(vload_n)(p, n) + acc[r][v] : acc[r][v], n);
        }
}

static size_t FN(gemm_bp_size)(int N, int K)
{
    return (size_t)((N + GEMM_NR - 1) / GEMM_NR) * (K > 0 ? K : 0) * GEMM_NR;
}

/* C = beta*C + A B for a few rows of A (M <= 4) and B already packed: a GEMV
 * per row over each panel, with four partial sums along k so that eight FMA
 * chains are in flight. Panels [j0, j1). */
static void FN(gemm_rows_panels)(real *c, long ldc, const real *a, long rsa, long csa, const real *bp, int M, int N,
                                 int K, int beta, int j0, int j1)
{
    for (int j = j0; j < j1; j++) {
        const real *bpj = bp + (size_t)j * K * GEMM_NR;
        const int nr = N - j * GEMM_NR < GEMM_NR ? N - j * GEMM_NR : GEMM_NR;
        for (int m = 0; m < M; m++) {
            const real *x = a + (size_t)m * rsa;
            V acc[4][GEMM_NV];
            for (int s = 0; s < 4; s++)
                for (int v = 0; v < GEMM_NV; v++) acc[s][v] = FN(vsplat)(0);
            int k = 0;
            for (; k + 4 <= K; k += 4)
                for (int s = 0; s < 4; s++) {
                    real xv = x[(size_t)(k + s) * csa];
                    for (int v = 0; v < GEMM_NV; v++)
                        acc[s][v] += xv * FN(vload)(bpj + (size_t)(k + s) * GEMM_NR + v * VL);
                }
            for (; k < K; k++) {
                real xv = x[(size_t)k * csa];
                for (int v = 0; v < GEMM_NV; v++) acc[0][v] += xv * FN(vload)(bpj + (size_t)k * GEMM_NR + v * VL);
            }
            real *cm = c + (size_t)m * ldc + (size_t)j * GEMM_NR;
            for (int v = 0; v < GEMM_NV; v++) {
                int n = nr - v * VL;
                if (n <= 0) break;
                if (n > VL) n = VL;
                V sum = (acc[0][v] + acc[1][v]) + (acc[2][v] + acc[3][v]);
                FN(vstore_n)(cm + v * VL, beta ? FN(vload_n)(cm + v * VL, n) + sum : sum, n);
            }
        }
    }
}

/* gemm_rows_panels over all panels; threads split them when B is large. */
static void FN(gemm_rows_bp)(real *c, long ldc, const real *a, long rsa, long csa, const real *bp, int M, int N,
                             int K, int beta, int n_threads)
{
    const int n_panels = (N + GEMM_NR - 1) / GEMM_NR;
    int nthr = (int)(2.0 * M * N * K / 4e5), by_bytes = (int)((double)N * K * sizeof(real) / (256 << 10));
    if (nthr < by_bytes) nthr = by_bytes;            /* a GEMV is bound by reading B */
    if (nthr > n_threads) nthr = n_threads;
    if (nthr > n_panels) nthr = n_panels;
    if (nthr <= 1) {
        FN(gemm_rows_panels)(c, ldc, a, rsa, csa, bp, M, N, K, beta, 0, n_panels);
        return;
    }
#pragma omp parallel num_threads(nthr)
    {
        const int tid = fr_thread_id(), nt = fr_num_threads();
        FN(gemm_rows_panels)(c, ldc, a, rsa, csa, bp, M, N, K, beta, (int)((long)n_panels * tid / nt),
                             (int)((long)n_panels * (tid + 1) / nt));
    }
}

/* Thread `tid` of `nt`'s part of gemm_bp: its share of B's panels to pack (when
 * `pack`), then its (row block, column chunk) tasks. */
static void FN(gemm_bp_thread)(real *c, long ldc, const real *a, long rsa, long csa, const real *b, long rsb,
                               long csb, real *bp, int pack, int M, int N, int K, int beta, real *ap_all,
                               int n_chunks, int tid, int nt)
{
    const int n_panels = (N + GEMM_NR - 1) / GEMM_NR;
    const int n_tasks = (M + GEMM_MC - 1) / GEMM_MC * n_chunks;
    if (pack) {
        int j0 = (int)((long)n_panels * tid / nt), j1 = (int)((long)n_panels * (tid + 1) / nt);
        FN(gemm_pack_b)(bp, b, rsb, csb, N, K, j0, j1);
        if (nt > 1) fr_barrier();
    }
    real *ap = ap_all + (size_t)tid * GEMM_MC * GEMM_KC;
    int t0 = (int)((long)n_tasks * tid / nt), t1 = (int)((long)n_tasks * (tid + 1) / nt);
    for (int task = t0; task < t1; task++) {
        int ib = task / n_chunks, ch = task % n_chunks;
        int m0 = ib * GEMM_MC, rows = M - m0 < GEMM_MC ? M - m0 : GEMM_MC;
        int p0 = (int)((long)n_panels * ch / n_chunks), p1 = (int)((long)n_panels * (ch + 1) / n_chunks);
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            int accumulate = beta || k0 > 0;
            FN(gemm_pack_a)(ap, a, rsa, csa, m0, rows, k0, kc);
            for (int j = p0; j < p1; j++) {
                const real *bpj = bp + ((size_t)j * K + k0) * GEMM_NR;
                int nr = N - j * GEMM_NR < GEMM_NR ? N - j * GEMM_NR : GEMM_NR;
                for (int i = 0; i < rows; i += GEMM_MR) {
                    int mr = rows - i < GEMM_MR ? rows - i : GEMM_MR;
                    FN(gemm_micro)(c + (size_t)(m0 + i) * ldc + (size_t)j * GEMM_NR, ldc,
                                   ap + (size_t)i * kc, bpj, kc, mr, nr, accumulate);
                }
            }
        }
    }
}

/* C = beta*C + A B with B packed into `bp` (gemm_bp_size elements): by this
 * call when `pack`, else by an earlier call with the same B (so a product
 * repeated over row chunks packs its weights once). `ap_ws`, when given, is the
 * A-panel workspace for up to `ws_threads` threads (GEMM_APS elements each);
 * without it the call allocates its own. */
#define GEMM_APS ((size_t)GEMM_MC * GEMM_KC)
static int FN(gemm_bp)(real *c, long ldc, const real *a, long rsa, long csa, const real *b, long rsb, long csb,
                       real *bp, int pack, int M, int N, int K, int beta, int n_threads, real *ap_ws, int ws_threads)
{
    if (M <= 0 || N <= 0) return FR_OK;
    if (K <= 0) {
        if (!beta)
            for (int m = 0; m < M; m++) memset(c + (size_t)m * ldc, 0, (size_t)N * sizeof(real));
        return FR_OK;
    }
    if (M <= 4 && !pack) {
        FN(gemm_rows_bp)(c, ldc, a, rsa, csa, bp, M, N, K, beta, n_threads);
        return FR_OK;
    }
    const int n_panels = (N + GEMM_NR - 1) / GEMM_NR;
    const int n_rowblk = (M + GEMM_MC - 1) / GEMM_MC;
    /* Column chunks, so that small-M products still give every thread work. */
    int n_chunks = 1;
    if (n_threads > 1 && n_rowblk < 2 * n_threads) {
        n_chunks = (2 * n_threads + n_rowblk - 1) / n_rowblk;
        if (n_chunks > n_panels) n_chunks = n_panels;
    }
    const int n_tasks = n_rowblk * n_chunks;
    double flops = 2.0 * M * N * K;
    int nthr = n_threads < n_tasks ? n_threads : n_tasks;
    if (flops < 2e5) nthr = 1;
    if (ap_ws && nthr > ws_threads) nthr = ws_threads;

    real *ap_all = ap_ws ? ap_ws : (real *)fr_aligned_alloc((size_t)nthr * GEMM_APS * sizeof(real));
    if (!ap_all) return FR_ENOMEM;

    if (nthr <= 1)
        FN(gemm_bp_thread)(c, ldc, a, rsa, csa, b, rsb, csb, bp, pack, M, N, K, beta, ap_all, n_chunks, 0, 1);
    else {
#pragma omp parallel num_threads(nthr)
        FN(gemm_bp_thread)(c, ldc, a, rsa, csa, b, rsb, csb, bp, pack, M, N, K, beta, ap_all, n_chunks,
                           fr_thread_id(), fr_num_threads());
    }
    if (!ap_ws) fr_aligned_free(ap_all);
    return FR_OK;
}

/* C = beta*C + A B for any strides: packs B, multiplies, frees. A long K (the
 * T*B rows of a weight gradient) goes in slices of whole KC blocks, so the
 * packed copy of B stays small; the sums keep the same order. */
static int FN(gemm)(real *c, long ldc, const real *a, long rsa, long csa, const real *b, long rsb, long csb,
                    int M, int N, int K, int beta, int n_threads)
{
    if (M <= 0 || N <= 0 || K <= 0)
        return FN(gemm_bp)(c, ldc, a, rsa, csa, b, rsb, csb, NULL, 0, M, N, K, beta, n_threads, NULL, 0);
    long per_k = (long)FN(gemm_bp_size)(N, 1) * (long)sizeof(real);
    long slice = ((4L << 20) / per_k) / GEMM_KC * GEMM_KC;
    if (slice < GEMM_KC) slice = GEMM_KC;
    if (slice > K) slice = K;
    real *bp = (real *)fr_aligned_alloc(FN(gemm_bp_size)(N, (int)slice) * sizeof(real));
    if (!bp) return FR_ENOMEM;
    int rc = FR_OK;
    for (long k0 = 0; k0 < K && rc == FR_OK; k0 += slice) {
        int kc = (int)(K - k0 < slice ? K - k0 : slice);
        rc = FN(gemm_bp)(c, ldc, a + k0 * csa, rsa, csa, b + k0 * rsb, rsb, csb, bp, 1, M, N, kc,
                         beta || k0 > 0, n_threads, NULL, 0);
    }
    fr_aligned_free(bp);
    return rc;
}

/* out[n] (+)= sum_m A(m, n) * W(m, n) (W == NULL: weight 1), A(m, n) = a[m*rsa + n].
 * Column blocks are split across threads; each column sums m in order. */
static void FN(colsum)(real *out, const real *a, long rsa, const real *w, long rsw, int M, int N, int accumulate,
                       int n_threads)
{
    const int nblk = (N + VL - 1) / VL;
    int nthr = n_threads < nblk ? n_threads : nblk;
    if ((double)M * N < 1e5) nthr = 1;
    if (nthr < 1) nthr = 1;
#pragma omp parallel num_threads(nthr)
    {
        const int tid = fr_thread_id(), nt = fr_num_threads();
        int b0 = (int)((long)nblk * tid / nt), b1 = (int)((long)nblk * (tid + 1) / nt);
        for (int blk = b0; blk < b1; blk++) {
            int n0 = blk * VL, nv = N - n0 < VL ? N - n0 : VL;
            V acc = accumulate ? FN(vload_n)(out + n0, nv) : FN(vsplat)(0);
            for (int m = 0; m < M; m++) {
                V v = FN(vload_n)(a + (size_t)m * rsa + n0, nv);
                if (w) v = v * FN(vload_n)(w + (size_t)m * rsw + n0, nv);
                acc += v;
            }
            FN(vstore_n)(out + n0, acc, nv);
        }
    }
}
