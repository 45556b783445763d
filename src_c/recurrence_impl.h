/* The recurrence driver, for one (dtype, ISA) instance: every cell, forward and
 * backward, runs through `run_steps`.
 *
 * A step is a short list of phases. A phase computes, for each block of BW
 * output units that this thread owns, an optional recurrent product
 *     tile[b][g][0:BW] = sum_k in[b][k] * Wp[blk][k][g][0:BW]
 * from weights packed gate-interleaved (all G gates of a block contiguous), and
 * then the cell's pointwise math on that tile while it is in L1 (the
 * "epilogue"). Threads own fixed ranges of blocks for the whole sequence, so
 * their slice of the packed weights stays in their cache; one OpenMP parallel
 * region spans the steps (all of them backward, a chunk of them forward), with
 * a barrier after each phase and no allocation inside.
 *
 * Each output element is computed by exactly one thread in a fixed order, so
 * results are bit-identical for any thread count.
 *
 * Forward, the input projection x W_ih^T + b_ih is a GEMM over the rows of a
 * chunk of steps, computed just before them so it is still in cache (so the
 * steps run as one parallel region per chunk, each after its GEMM); a call of
 * at most 4 rows in all (one streamed step) skips packing and multiplies the
 * weights as given. Backward runs the steps in reverse, keeping every gate
 * gradient, then forms dX, dW_ih, dW_hh (and dW_hr) as GEMMs over all T*B rows.
 */

/* Accumulator registers the recurrent micro-kernel may use; rows per tile. */
static inline int FN(mv_rows_max)(int G)
{
    int r = FR_MV_ACC / G;
    return r > 8 ? 8 : r;
}

/* tile[r][g][:] = sum_k in[r*ld + k] * wp[k][g][:], r < MR: register-blocked
 * over MR batch rows and G gates (MR, G are constants after inlining). */
static inline __attribute__((always_inline)) void FN(mv_tile)(real *tile, const real *in, long ld, const real *wp,
                                                             int K, const int G, const int MR)
{
    V acc[8][4];
    for (int r = 0; r < MR; r++)
        for (int g = 0; g < G; g++) acc[r][g] = FN(vsplat)(0);
    for (int k = 0; k < K; k++) {
        V w[4];
        for (int g = 0; g < G; g++) w[g] = FN(vload)(wp + ((size_t)k * G + g) * VL);
        for (int r = 0; r < MR; r++) {
            real a = in[(size_t)r * ld + k];
            for (int g = 0; g < G; g++) acc[r][g] += a * w[g];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int g = 0; g < G; g++) FN(vstore)(tile + ((size_t)r * G + g) * VL, acc[r][g]);
}

/* How far ahead (elements) the B=1 GEMV prefetches the weights it streams. */
#define FR_PREFETCH 512

/* The B=1 path: a GEMV streaming the packed weights once, with two
 * independent accumulator chains to hide the FMA latency. */
static inline __attribute__((always_inline)) void FN(mv_row1)(real *tile, const real *in, const real *wp, int K,
                                                             const int G)
{
    V acc0[4], acc1[4];
    for (int g = 0; g < G; g++) acc0[g] = acc1[g] = FN(vsplat)(0);
    int k = 0;
    for (; k + 1 < K; k += 2) {
        real a0 = in[k], a1 = in[k + 1];
        const real *w0 = wp + (size_t)k * G * VL;
        /* B=1 streams the weights once per step: keep the next lines on their way. */
        for (int g = 0; g < 2 * G; g++) __builtin_prefetch(w0 + FR_PREFETCH + g * VL);
        for (int g = 0; g < G; g++) {
            acc0[g] += a0 * FN(vload)(w0 + g * VL);
            acc1[g] += a1 * FN(vload)(w0 + (G + g) * VL);
        }
    }
    if (k < K)
        for (int g = 0; g < G; g++) acc0[g] += in[k] * FN(vload)(wp + ((size_t)k * G + g) * VL);
    for (int g = 0; g < G; g++) FN(vstore)(tile + (size_t)g * VL, acc0[g] + acc1[g]);
}

#define FR_MV_CASE(g, r) case (g) * 16 + (r): FN(mv_tile)(tile, in, ld, wp, K, g, r); return;
#define FR_MV_CASES(g) FR_MV_CASE(g, 1) FR_MV_CASE(g, 2) FR_MV_CASE(g, 3) FR_MV_CASE(g, 4) \
                       FR_MV_CASE(g, 5) FR_MV_CASE(g, 6) FR_MV_CASE(g, 7) FR_MV_CASE(g, 8)

/* `rows` (1..mv_rows_max(G)) batch rows of one block; B == 1 takes the GEMV. */
static void FN(mv)(real *tile, const real *in, long ld, const real *wp, int K, int G, int rows, int B)
{
    if (B == 1) {
        switch (G) {
        case 1: FN(mv_row1)(tile, in, wp, K, 1); return;
        case 2: FN(mv_row1)(tile, in, wp, K, 2); return;
        case 3: FN(mv_row1)(tile, in, wp, K, 3); return;
        default: FN(mv_row1)(tile, in, wp, K, 4); return;
        }
    }
    switch (G * 16 + rows) {
        FR_MV_CASES(1) FR_MV_CASES(2) FR_MV_CASES(3) FR_MV_CASES(4)
    default: return;
    }
}
#undef FR_MV_CASES
#undef FR_MV_CASE

/* The sum of a vector's lanes, pairwise in a fixed order. */
static inline real FN(hsum)(V v)
{
#if FR_AVX512 && FR_IS_F64
    return _mm512_reduce_add_pd((__m512d)v);
#elif FR_AVX512
    return _mm512_reduce_add_ps((__m512)v);
#else
    real l[VL];
    FN(vstore)(l, v);
    for (int w = VL / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) l[i] += l[i + w];
    return l[0];
#endif
}

/* out[j] = sum_k x[k] * w[j*rs + k] for j < n (n <= 4): up to four dot
 * products sharing the loads of x, each summed in a fixed order. */
static inline void FN(dot4)(real *out, const real *x, const real *w, long rs, int K, int n)
{
    V acc[4] = {FN(vsplat)(0), FN(vsplat)(0), FN(vsplat)(0), FN(vsplat)(0)};
    const real *wj[4];
    for (int j = 0; j < 4; j++) wj[j] = w + (size_t)(j < n ? j : 0) * rs;
    int k = 0;
    for (; k + VL <= K; k += VL) {
        V xv = FN(vload)(x + k);
        for (int j = 0; j < 4; j++) acc[j] += xv * FN(vload)(wj[j] + k);
    }
    if (k < K) {
        V xv = FN(vload_n)(x + k, K - k);
        for (int j = 0; j < 4; j++) acc[j] += xv * FN(vload_n)(wj[j] + k, K - k);
    }
    for (int j = 0; j < n; j++) out[j] = FN(hsum)(acc[j]);
}

/* out[n] += sum_k x[k] * w[n*rs + k] for n < N: a GEMV on row-major weights. */
static void FN(gemv_rows)(real *out, const real *x, const real *w, long rs, int N, int K)
{
    real d[4];
    for (int n = 0; n < N; n += 4) {
        int m = N - n < 4 ? N - n : 4;
        FN(dot4)(d, x, w + (size_t)n * rs, rs, K, m);
        for (int j = 0; j < m; j++) out[n + j] += d[j];
    }
}

/* The product of a phase for a few rows, straight from the unpacked weights:
 * when a call has only a handful of rows (a single streamed step), packing
 * the weights would cost more than using them. */
static void FN(mv_direct)(real *tile, const real *in, long ld, const real *w, long rs, int N, int K, int G, int BW,
                          int n0, int rows)
{
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < G; g++) {
            real *t = tile + ((size_t)r * G + g) * BW;
            int nv = N - n0 < BW ? N - n0 : BW;
            memset(t, 0, (size_t)BW * sizeof(real));
            FN(gemv_rows)(t, in + (size_t)r * ld, w + (size_t)(g * N + n0) * rs, rs, nv, K);
        }
}

/* wp[blk][k][g][0:BW] = W(g*N + blk*BW + 0:BW, k), zero past N, for blocks
 * [b0, b1); W(row, k) = w[row*rs + k*cs]. */
static void FN(pack_gates)(real *wp, const real *w, long rs, long cs, int G, int N, int K, int BW, int b0, int b1)
{
    for (int blk = b0; blk < b1; blk++) {
        real *dst = wp + (size_t)blk * K * G * BW;
        int n0 = blk * BW, nv = N - n0 < BW ? N - n0 : BW;
        if (cs == 1) {
            /* rows of W are contiguous: read them along k, 64 k at a time so that
             * the part of the block being written stays in L1 */
            for (int k0 = 0; k0 < K; k0 += 64) {
                int k1 = K - k0 < 64 ? K : k0 + 64;
                for (int g = 0; g < G; g++)
                    for (int j = 0; j < BW; j++) {
                        real *d = dst + (size_t)g * BW + j;
                        const real *src = w + (size_t)(g * N + n0 + j) * rs;
                        for (int k = k0; k < k1; k++) d[(size_t)k * G * BW] = j < nv ? src[k] : 0;
                    }
            }
            continue;
        }
        for (int k = 0; k < K; k++)
            for (int g = 0; g < G; g++) {
                const real *src = w + (size_t)(g * N + n0) * rs + (size_t)k * cs;
                int j = 0;
                for (; j < nv; j++) dst[j] = src[(size_t)j * rs];
                for (; j < BW; j++) dst[j] = 0;
                dst += BW;
            }
    }
}

/* ---- phases --------------------------------------------------------------- */


typedef struct {
    int id;
    int N;              /* output units (H or P) */
    int G, K;           /* gates and reduction size of the product; G == 0: no product */
    int nbv;               /* SIMD vectors per gate in a block: BW = nbv*VL units */
    const real *wp;        /* packed weights (ceil(N/BW), K, G, BW) */
    const real *w;         /* or, for a few rows, the weights as given: W(row, k) = w[row*rs + k] */
    long rs;
} FN(phase);

typedef struct {
    const fr_seq *a;
    int cell, B, H, P, G, GH, T;
    const real *b_hh;      /* (G*H,) */
    const real *peep;      /* (3, H) or NULL */
    const real *rmask;     /* (B, P) or NULL: h times rmask feeds the recurrent products */
    const fr_act *act;     /* the forward's own activations, or NULL: the cell's */
    real *hm_buf;          /* (2, B, P) forward ping-pong of h * rmask */
    int proj;
    FN(phase) ph[3];
    int n_phases;
    real *tiles;           /* per-thread (8, 4, VL) */
    /* forward */
    const real *xp;        /* (Tc, B, G*H): the input projection of times xp_t0 .. xp_t0+Tc-1 */
    int xp_t0;
    int direct_x;          /* a streamed step: phase 0 computes xp from x itself */
    /* backward */
    real *dgx, *dgh;       /* (T, B, G*H): gradients of the gate pre-activations (x side, h side) */
    real *dhs;             /* (T, B, P) dh per step, projected LSTM (for dW_hr) */
    real *dh_buf, *dc_buf; /* (2, B, P), (2, B, H) ping-pong carries */
} FN(ctx);

/* Pointers of one step, at time t (processing index s). */
typedef struct {
    int t;
    const real *h_prev; real *h_new;      /* (B, P) */
    const real *hm_prev; real *hm_new;    /* (B, P): h * rmask, forward with rmask only */
    const real *c_prev; real *c_new;      /* (B, H) */
    real *gates;                       /* (B, 4, H) */
    real *m;                           /* (B, H) */
    const real *xp;                    /* (B, G*H) */
    real *y;                           /* (B, P) */
    const real *dy;                    /* (B, P) */
    real *dh; real *dh_prev;              /* (B, P) carries: into this step, out of it */
    real *dc; real *dc_prev;              /* (B, H) */
    real *dgx, *dgh;                   /* (B, G*H) */
    real *dhs;                         /* (B, P) */
} FN(step);

static inline int FN(active)(const fr_seq *a, int t, int b)
{
    return (!a->lengths || t < a->lengths[b]) && (!a->step_mask || a->step_mask[(size_t)t * a->B + b]);
}

/* Stores a new h (row b, units n0..n0+nv) and, with a recurrent mask, h * rmask
 * for the next step's products. */
static inline __attribute__((always_inline)) void FN(put_h)(const FN(ctx) *c, const FN(step) *st, int b, int n0,
                                                            int nv, V h)
{
    size_t o = (size_t)b * c->P + n0;
    FN(vstore_n)(st->h_new + o, h, nv);
    if (c->rmask) FN(vstore_n)(st->hm_new + o, h * FN(vload_n)(c->rmask + o, nv), nv);
}

static inline V FN(vone_minus_sq)(V v) { return 1 - v * v; }
static inline V FN(vsig_grad)(V s) { return s * (1 - s); }

/* The pointwise part of a phase for one batch row b and one block (n0, nv). */
/* X (a constant at each call) selects the forward's own activations (c->act):
 * with X == 0 the cell's sigmoid/tanh are inlined as if the option did not exist. */
static inline __attribute__((always_inline)) void FN(epilogue)(const FN(ctx) *c, const int id, const FN(step) *st,
                                                               int b, int n0, int nv, const real *tile, int gs,
                                                               const int X)
{
    const fr_seq *a = c->a;
    const int H = c->H, P = c->P, GH = c->GH;
    const int act = FN(active)(a, st->t, b);
    const V zero = FN(vsplat)(0);
#define LD(p) FN(vload_n)((p), nv)
#define ST(p, v) FN(vstore_n)((p), (v), nv)
#define TILE(g) FN(vload)(tile + (g) * gs)
#define PUT_H(v) FN(put_h)(c, st, b, n0, nv, (v))
#define DY() (st->dy ? LD(st->dy + (size_t)b * P + n0) : zero)      /* no dy: only final-state gradients */
#define ACT_F(v) (X ? FN(vact)(c->act, 0, (v)) : FN(vsigmoid)(v))          /* gates */
#define ACT_G(v) (X ? FN(vact)(c->act, 1, (v)) : FN(vtanh)(v))             /* GRU n, LSTM g */
    switch (id) {
    case PH_RNN: {
        const real *xp = st->xp + (size_t)b * GH + n0;
        real *y = st->y + (size_t)b * P + n0;
        if (!act) { PUT_H(LD(st->h_prev + (size_t)b * P + n0)); ST(y, zero); return; }
        V pre = LD(xp) + TILE(0) + LD(c->b_hh + n0);
        V h = X ? FN(vact)(c->act, 0, pre) : c->cell == FR_RNN_TANH ? FN(vtanh)(pre) : FN(vrelu)(pre);
        PUT_H(h); ST(y, h);
        return;
    }
    case PH_GRU_LBR: case PH_GRU_RZ: case PH_GRU_N: {
        const real *xp = st->xp + (size_t)b * GH + n0;
        const real *hp = st->h_prev + (size_t)b * P + n0;
        real *g = st->gates + (size_t)b * 4 * H + n0;      /* r, z, n, hn (LBR) or r*h */
        real *y = st->y + (size_t)b * P + n0;
        if (id == PH_GRU_RZ) {
            if (!act) { ST(g + 3 * H, zero); return; }
            V r = ACT_F(LD(xp) + TILE(0) + LD(c->b_hh + n0));
            V z = ACT_F(LD(xp + H) + TILE(1) + LD(c->b_hh + H + n0));
            V hm = c->rmask ? LD(st->hm_prev + (size_t)b * P + n0) : LD(hp);
            ST(g, r); ST(g + H, z); ST(g + 3 * H, r * hm);
            return;
        }
        if (!act) { PUT_H(LD(hp)); ST(y, zero); return; }
        V z, n;
        if (id == PH_GRU_LBR) {
            V r = ACT_F(LD(xp) + TILE(0) + LD(c->b_hh + n0));
            z = ACT_F(LD(xp + H) + TILE(1) + LD(c->b_hh + H + n0));
            V hn = TILE(2) + LD(c->b_hh + 2 * H + n0);
            n = ACT_G(LD(xp + 2 * H) + r * hn);
            ST(g, r); ST(g + H, z); ST(g + 3 * H, hn);
        } else {
            z = LD(g + H);
            n = ACT_G(LD(xp + 2 * H) + TILE(0) + LD(c->b_hh + 2 * H + n0));
        }
        ST(g + 2 * H, n);
        V h = n + z * (LD(hp) - n);
        PUT_H(h); ST(y, h);
        return;
    }
    case PH_LSTM: {
        const real *xp = st->xp + (size_t)b * GH + n0;
        const real *cp = st->c_prev + (size_t)b * H + n0;
        real *cn = st->c_new + (size_t)b * H + n0;
        real *g = st->gates + (size_t)b * 4 * H + n0;
        real *m_out = c->proj ? st->m + (size_t)b * H + n0 : NULL;   /* projected: m feeds PH_PROJ */
        if (!act) {
            ST(cn, LD(cp));
            if (c->proj) ST(m_out, zero);
            else { PUT_H(LD(st->h_prev + (size_t)b * P + n0)); ST(st->y + (size_t)b * P + n0, zero); }
            return;
        }
        const real *bh = c->b_hh + n0;
        V cprev = LD(cp);
        V pi = LD(xp) + TILE(0) + LD(bh), pf = LD(xp + H) + TILE(1) + LD(bh + H);
        V pg = LD(xp + 2 * H) + TILE(2) + LD(bh + 2 * H), po = LD(xp + 3 * H) + TILE(3) + LD(bh + 3 * H);
        if (c->peep) { pi += LD(c->peep + n0) * cprev; pf += LD(c->peep + H + n0) * cprev; }
        V i = ACT_F(pi), f = X && c->act->input_forget ? 1 - i : ACT_F(pf), gg = ACT_G(pg);
        V cc = f * cprev + i * gg;
        if (c->peep) po += LD(c->peep + 2 * H + n0) * cc;
        V o = ACT_F(po);
        V m = o * (X ? FN(vact)(c->act, 2, cc) : FN(vtanh)(cc));
        ST(cn, cc);
        if (a->training) { ST(g, i); ST(g + H, f); ST(g + 2 * H, gg); ST(g + 3 * H, o); }  /* for backward */
        if (c->proj) ST(m_out, m);
        else { PUT_H(m); ST(st->y + (size_t)b * P + n0, m); }
        return;
    }
    case PH_PROJ: {
        real *y = st->y + (size_t)b * P + n0;
        if (!act) { PUT_H(LD(st->h_prev + (size_t)b * P + n0)); ST(y, zero); return; }
        PUT_H(TILE(0)); ST(y, TILE(0));
        return;
    }
    case PH_B_RNN: {
        real *dg = st->dgx + (size_t)b * GH + n0;
        if (!act) { ST(dg, zero); return; }
        V d = LD(st->dh + (size_t)b * P + n0) + DY();
        V h = LD(st->h_new + (size_t)b * P + n0);
        V dpre = d * (c->cell == FR_RNN_TANH ? FN(vone_minus_sq)(h) : FN(vsel)(h > 0, FN(vsplat)(1), zero));
        ST(dg, dpre);
        return;
    }
    case PH_B_GRU: case PH_B_GRU_ZN: {
        real *dgx = st->dgx + (size_t)b * GH + n0, *dgh = st->dgh + (size_t)b * GH + n0;
        real *dh = st->dh + (size_t)b * P + n0;
        if (!act) {
            ST(dgx, zero); ST(dgx + H, zero); ST(dgx + 2 * H, zero);
            if (id == PH_B_GRU) { ST(dgh, zero); ST(dgh + H, zero); ST(dgh + 2 * H, zero); }
            return;
        }
        const real *g = st->gates + (size_t)b * 4 * H + n0;
        V d = LD(dh) + DY();
        V z = LD(g + H), n = LD(g + 2 * H), hp = LD(st->h_prev + (size_t)b * P + n0);
        V dn = d * (1 - z) * FN(vone_minus_sq)(n);
        V dz = d * (hp - n) * FN(vsig_grad)(z);
        ST(dgx + H, dz); ST(dgx + 2 * H, dn);
        if (id == PH_B_GRU) {
            V r = LD(g);
            V dr = dn * LD(g + 3 * H) * FN(vsig_grad)(r);
            ST(dgx, dr); ST(dgh, dr); ST(dgh + H, dz); ST(dgh + 2 * H, dn * r);
        }
        ST(dh, d * z);                                   /* the direct path h_prev -> h */
        return;
    }
    case PH_B_GRU_R: {
        real *dgx = st->dgx + (size_t)b * GH + n0;
        real *dh = st->dh + (size_t)b * P + n0;
        if (!act) return;
        const real *g = st->gates + (size_t)b * 4 * H + n0;
        V r = LD(g), drh = TILE(0);                     /* d(r * h * rmask) */
        V hp = LD(st->h_prev + (size_t)b * P + n0);
        if (c->rmask) {
            V m = LD(c->rmask + (size_t)b * P + n0);
            ST(dgx, drh * hp * m * FN(vsig_grad)(r));
            ST(dh, LD(dh) + drh * r * m);
        } else {
            ST(dgx, drh * hp * FN(vsig_grad)(r));
            ST(dh, LD(dh) + drh * r);
        }
        return;
    }
    case PH_B_DY: {
        real *dh = st->dh + (size_t)b * P + n0, *dhs = st->dhs + (size_t)b * P + n0;
        if (!act) { ST(dhs, zero); return; }
        V d = LD(dh) + DY();
        ST(dh, d); ST(dhs, d);
        return;
    }
    case PH_B_LSTM: {
        real *dg = st->dgx + (size_t)b * GH + n0;
        const real *dc = st->dc + (size_t)b * H + n0;
        real *dcp = st->dc_prev + (size_t)b * H + n0;
        if (!act) {
            ST(dg, zero); ST(dg + H, zero); ST(dg + 2 * H, zero); ST(dg + 3 * H, zero);
            ST(dcp, LD(dc));
            return;
        }
        const real *g = st->gates + (size_t)b * 4 * H + n0;
        V dm = c->proj ? TILE(0) : LD(st->dh + (size_t)b * P + n0) + DY();
        V i = LD(g), f = LD(g + H), gg = LD(g + 2 * H), o = LD(g + 3 * H);
        V cc = LD(st->c_new + (size_t)b * H + n0), cprev = LD(st->c_prev + (size_t)b * H + n0);
        V tc = FN(vtanh)(cc);
        V d_o = dm * tc * FN(vsig_grad)(o);
        V dcc = LD(dc) + dm * o * FN(vone_minus_sq)(tc);
        if (c->peep) dcc += d_o * LD(c->peep + 2 * H + n0);
        V d_i = dcc * gg * FN(vsig_grad)(i);
        V d_f = dcc * cprev * FN(vsig_grad)(f);
        V d_g = dcc * i * FN(vone_minus_sq)(gg);
        V dcprev = dcc * f;
        if (c->peep) dcprev += d_i * LD(c->peep + n0) + d_f * LD(c->peep + H + n0);
        ST(dg, d_i); ST(dg + H, d_f); ST(dg + 2 * H, d_g); ST(dg + 3 * H, d_o);
        ST(dcp, dcprev);
        return;
    }
    case PH_B_DH: {
        real *dhp = st->dh_prev + (size_t)b * P + n0;
        const real *dh = st->dh + (size_t)b * P + n0;
        if (!act) { ST(dhp, LD(dh)); return; }
        V v = TILE(0);
        if (c->rmask) v *= LD(c->rmask + (size_t)b * P + n0);
        if (c->cell == FR_GRU) v += LD(dh);              /* direct path, stored by PH_B_GRU* */
        ST(dhp, v);
        return;
    }
    }
#undef LD
#undef ST
#undef TILE
#undef PUT_H
#undef DY
#undef ACT_F
#undef ACT_G
}

/* The epilogue of `rows` batch rows from r0, one loop per phase so that the
 * compiler inlines the cell math and the CPU overlaps consecutive rows. */
#define FR_EPI_CASE(ID, X) \
    case ID: \
        for (int r = 0; r < rows; r++) FN(epilogue)(c, ID, st, r0 + r, n0, nv, tile + (size_t)r * G * BW, BW, X); \
        return;
static void FN(epilogue_rows)(const FN(ctx) *c, const FN(phase) *ph, const FN(step) *st, int r0, int rows,
                              int n0, int nv, const real *tile)
{
    const int G = ph->G, BW = ph->nbv * VL;
    if (c->act) {               /* a forward with its own activations: its cell phases */
        switch (ph->id) {
            FR_EPI_CASE(PH_RNN, 1) FR_EPI_CASE(PH_GRU_LBR, 1) FR_EPI_CASE(PH_GRU_RZ, 1) FR_EPI_CASE(PH_GRU_N, 1)
            FR_EPI_CASE(PH_LSTM, 1)
        }
    }
    switch (ph->id) {
        FR_EPI_CASE(PH_RNN, 0) FR_EPI_CASE(PH_GRU_LBR, 0) FR_EPI_CASE(PH_GRU_RZ, 0) FR_EPI_CASE(PH_GRU_N, 0)
        FR_EPI_CASE(PH_LSTM, 0) FR_EPI_CASE(PH_PROJ, 0) FR_EPI_CASE(PH_B_RNN, 0) FR_EPI_CASE(PH_B_GRU, 0)
        FR_EPI_CASE(PH_B_GRU_ZN, 0) FR_EPI_CASE(PH_B_GRU_R, 0) FR_EPI_CASE(PH_B_LSTM, 0) FR_EPI_CASE(PH_B_DY, 0)
        FR_EPI_CASE(PH_B_DH, 0)
    }
}
#undef FR_EPI_CASE

/* A streamed step computes its input projection in its first phase, each
 * thread for the units [n0, n0 + n) it owns: xp = x W_ih^T + b_ih, every gate. */
static void FN(project_units)(const FN(ctx) *c, const FN(step) *st, int n0, int n)
{
    const fr_seq *a = c->a;
    const int B = c->B, H = c->H, I = a->I, nv = H - n0 < n ? H - n0 : n;
    const real *x = (const real *)a->x + (size_t)st->t * B * I, *w_ih = (const real *)a->w_ih;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < c->G; g++) {
            real *xp = (real *)st->xp + (size_t)b * c->GH + g * H + n0;
            memcpy(xp, (const real *)a->b_ih + g * H + n0, (size_t)nv * sizeof(real));
            FN(gemv_rows)(xp, x + (size_t)b * I, w_ih + (size_t)(g * H + n0) * I, I, nv, I);
        }
}

/* This thread's blocks of one phase: product, then epilogue, row tile by row tile. */
static void FN(run_phase)(const FN(ctx) *c, const FN(phase) *ph, const FN(step) *st, int tid, int nt)
{
    const int B = c->B, N = ph->N, G = ph->G, K = ph->K;
    const int BW = ph->nbv * VL, nblk = (N + BW - 1) / BW;
    const int b0 = (int)((long)nblk * tid / nt), b1 = (int)((long)nblk * (tid + 1) / nt);
    real *tile = c->tiles + (size_t)tid * 8 * 4 * VL;
    const int gv = G * ph->nbv;                                  /* vectors per k in a packed block */
    const int mr = G ? FN(mv_rows_max)(gv) : 8;
    /* The product's input: (B, K) rows with stride ld. */
    const real *in = NULL;
    long ld = 0;
    switch (ph->id) {
    case PH_RNN: case PH_GRU_LBR: case PH_GRU_RZ: case PH_LSTM:
        in = c->rmask ? st->hm_prev : st->h_prev; ld = c->P; break;
    case PH_GRU_N: in = st->gates + 3 * c->H; ld = 4 * c->H; break;
    case PH_PROJ: in = st->m; ld = c->H; break;
    case PH_B_GRU_R: in = st->dgx + 2 * c->H; ld = c->GH; break;
    case PH_B_LSTM: in = st->dh; ld = c->P; break;                       /* projected LSTM only */
    case PH_B_DH: in = c->cell == FR_GRU ? st->dgh : st->dgx; ld = c->GH; break;
    default: break;
    }
    /* Every other step walks the blocks backwards: when the weights stream from
     * memory each step (few rows) and outgrow the cache, the blocks used last
     * are still cached when the next step starts on them. Blocks are
     * independent, so the order changes no result. */
    const int back = st->t & 1;
    for (int i = b0; i < b1; i++) {
        const int blk = back ? b0 + b1 - 1 - i : i;
        const real *wpb = G ? ph->wp + (size_t)blk * K * G * BW : NULL;
        if (c->direct_x && ph == c->ph) FN(project_units)(c, st, blk * BW, BW);
        for (int r0 = 0; r0 < B; r0 += mr) {
            const int rows = B - r0 < mr ? B - r0 : mr;
            if (G && ph->w) FN(mv_direct)(tile, in + (size_t)r0 * ld, ld, ph->w, ph->rs, N, K, G, BW, blk * BW, rows);
            else if (G) FN(mv)(tile, in + (size_t)r0 * ld, ld, wpb, K, gv, rows, B);
            for (int v = 0; v < ph->nbv; v++) {                 /* each SIMD vector of units */
                const int n0 = blk * BW + v * VL, nv = N - n0 < VL ? N - n0 : VL;
                if (nv <= 0) break;
                FN(epilogue_rows)(c, ph, st, r0, rows, n0, nv, tile + (size_t)v * VL);
            }
        }
    }
}

/* Pointers for processing index s (time t). */
static void FN(step_at)(const FN(ctx) *c, int s, int backward, FN(step) *st)
{
    const fr_seq *a = c->a;
    const int T_ = c->T, B = c->B, H = c->H, P = c->P, GH = c->GH;
    const int t = a->reverse ? T_ - 1 - s : s;
    st->t = t;
    /* Training keeps every state: slot t is before time t going forward, after it going back. */
    size_t prev = a->training ? (size_t)(a->reverse ? t + 1 : t) : (size_t)(s & 1);
    size_t next = a->training ? (size_t)(a->reverse ? t : t + 1) : (size_t)((s + 1) & 1);
    size_t tt = a->training ? (size_t)t : 0;
    real *states = (real *)a->states, *cells = (real *)a->cells;
    st->h_prev = states + prev * B * P;
    st->h_new = states + next * B * P;
    if (c->hm_buf) {
        st->hm_prev = c->hm_buf + (size_t)(s & 1) * B * P;
        st->hm_new = c->hm_buf + (size_t)((s + 1) & 1) * B * P;
    }
    st->c_prev = cells ? cells + prev * B * H : NULL;
    st->c_new = cells ? cells + next * B * H : NULL;
    st->gates = a->gates ? (real *)a->gates + tt * B * 4 * H : NULL;
    st->m = a->proj_in ? (real *)a->proj_in + tt * B * H : NULL;
    st->xp = c->xp ? c->xp + (size_t)(t - c->xp_t0) * B * GH : NULL;
    st->y = a->y ? (real *)a->y + (size_t)t * B * P : NULL;
    if (backward) {
        /* The carries ping-pong; step s of T-1..0 reads slot (T-1-s)&1. */
        int k = (T_ - 1 - s) & 1;
        st->dy = a->dy ? (const real *)a->dy + (size_t)t * B * P : NULL;
        st->dh = c->dh_buf + (size_t)k * B * P;
        st->dh_prev = c->dh_buf + (size_t)(k ^ 1) * B * P;
        st->dc = c->dc_buf ? c->dc_buf + (size_t)k * B * H : NULL;
        st->dc_prev = c->dc_buf ? c->dc_buf + (size_t)(k ^ 1) * B * H : NULL;
        st->dgx = c->dgx + (size_t)t * B * GH;
        st->dgh = c->dgh + (size_t)t * B * GH;
        st->dhs = c->dhs ? c->dhs + (size_t)t * B * P : NULL;
    }
}

/* Threads worth using for the steps: each must get about 128K multiply-adds
 * per step (a few microseconds), or the per-step barrier costs more than the
 * split saves; and at most one per block of units. */
static int FN(threads_for)(const FN(ctx) *c, int n_threads, int direct)
{
    double fmas = (double)c->B * c->GH * c->P + (c->proj ? (double)c->B * c->P * c->H : 0);
    double n_w = (double)c->GH * (c->a->I + c->P) + (c->proj ? (double)c->P * c->H : 0);
    /* a streamed step (direct) reads every weight once: worth a thread per 128 KiB of them */
    int by_work = direct ? (int)(n_w * sizeof(real) / (128 << 10)) : (int)(fmas / 131072.0);
    /* a few rows per step are bound by reading the recurrent weights: a thread per 256 KiB of them */
    double n_whh = (double)c->GH * c->P + (c->proj ? (double)c->P * c->H : 0);
    if (!direct && c->B <= 4 && n_whh * sizeof(real) / (256 << 10) > by_work)
        by_work = (int)(n_whh * sizeof(real) / (256 << 10));
    int nblk = ((c->P < c->H ? c->P : c->H) + VL - 1) / VL;
    int n = n_threads;
    if (n > by_work) n = by_work;
    if (n > nblk) n = nblk;
    return n < 1 ? 1 : n;
}

/* Where a phase's weights come from: W(row, k) = w[row*rs + k*cs]. */
typedef struct { const real *w; long rs, cs; } FN(wsrc);

/* Thread `tid` of `nt`'s part of run_steps. */
static void FN(run_steps_thread)(FN(ctx) *c, const FN(wsrc) *src, int s0, int s1, int backward, int tid, int nt)
{
    {
        for (int i = 0; src && i < c->n_phases; i++) {
            FN(phase) *ph = &c->ph[i];
            if (!ph->G) continue;
            int BW = ph->nbv * VL, nblk = (ph->N + BW - 1) / BW;
            FN(pack_gates)((real *)ph->wp, src[i].w, src[i].rs, src[i].cs, ph->G, ph->N, ph->K, BW,
                           (int)((long)nblk * tid / nt), (int)((long)nblk * (tid + 1) / nt));
        }
        if (nt > 1) fr_barrier();
        FN(step) st;
        memset(&st, 0, sizeof st);
        for (int s = s0; s < s1; s++) {
            FN(step_at)(c, backward ? c->T - 1 - s : s, backward, &st);
            for (int i = 0; i < c->n_phases; i++) {
                FN(run_phase)(c, &c->ph[i], &st, tid, nt);
                if (nt > 1) fr_barrier();
            }
        }
    }
}

/* Runs processing steps [s0, s1) (backward: T-1-s0 down to T-s1). With
 * `src`, first packs the phases' weights, each thread the blocks it owns.
 * One thread runs without a parallel region: opening one costs more than a
 * small step. */
static void FN(run_steps)(FN(ctx) *c, const FN(wsrc) *src, int s0, int s1, int backward, int nthr)
{
    if (nthr <= 1) {
        FN(run_steps_thread)(c, src, s0, s1, backward, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nthr)
    FN(run_steps_thread)(c, src, s0, s1, backward, fr_thread_id(), fr_num_threads());
}

/* A phase of N output units whose product has G gates and reduction size K
 * (G == 0: pointwise only). Products with few gates take several SIMD vectors
 * of units per block, so the micro-kernel has 4 vectors per k to reuse each
 * broadcast input on. */
static FN(phase) FN(make_phase)(int id, int N, int G, int K)
{
    FN(phase) ph = {id, N, G, K, G == 1 ? 4 : G == 2 ? 2 : 1, NULL, NULL, 0};
    return ph;
}

static size_t FN(packed_size)(const FN(phase) *ph)
{
    int BW = ph->nbv * VL;
    return ph->G ? (size_t)((ph->N + BW - 1) / BW) * ph->K * ph->G * BW : 0;
}

/* Fills c's fields shared by forward and backward. */
static void FN(ctx_init)(FN(ctx) *c, const fr_seq *a)
{
    memset(c, 0, sizeof *c);
    c->a = a;
    c->cell = a->cell;
    c->T = a->T; c->B = a->B; c->H = a->H; c->P = a->P;
    c->G = a->cell == FR_LSTM ? 4 : a->cell == FR_GRU ? 3 : 1;
    c->GH = c->G * a->H;
    c->b_hh = (const real *)a->b_hh;
    c->peep = (const real *)a->w_peep;
    c->rmask = (const real *)a->rmask;
    c->act = a->act;
    c->proj = a->w_hr != NULL;
}

/* The phases of a forward step, and where their weights come from. */
static void FN(forward_phases)(FN(ctx) *c, FN(wsrc) *src)
{
    const fr_seq *a = c->a;
    const int H = a->H, P = a->P;
    const real *w_hh = (const real *)a->w_hh;
    FN(phase) *ph = c->ph;
    switch (a->cell) {
    case FR_RNN_TANH: case FR_RNN_RELU:
        ph[0] = FN(make_phase)(PH_RNN, H, 1, P); src[0] = (FN(wsrc)){w_hh, P, 1}; c->n_phases = 1; break;
    case FR_GRU:
        if (a->lbr) { ph[0] = FN(make_phase)(PH_GRU_LBR, H, 3, P); src[0] = (FN(wsrc)){w_hh, P, 1}; c->n_phases = 1; }
        else {
            ph[0] = FN(make_phase)(PH_GRU_RZ, H, 2, P); src[0] = (FN(wsrc)){w_hh, P, 1};
            ph[1] = FN(make_phase)(PH_GRU_N, H, 1, P); src[1] = (FN(wsrc)){w_hh + (size_t)2 * H * P, P, 1};
            c->n_phases = 2;
        }
        break;
    default:
        ph[0] = FN(make_phase)(PH_LSTM, H, 4, P); src[0] = (FN(wsrc)){w_hh, P, 1}; c->n_phases = 1;
        if (c->proj) {
            ph[1] = FN(make_phase)(PH_PROJ, P, 1, H); src[1] = (FN(wsrc)){(const real *)a->w_hr, H, 1};
            c->n_phases = 2;
        }
    }
}

/* Elements of a forward's packed weights: W_ih^T as the input-projection GEMM's
 * B operand, then each phase's recurrent weights. The layout depends only on the
 * cell, the sizes, the dtype and the instruction set, never on B, T or threads. */
static size_t FN(forward_packed_size)(const FN(ctx) *c)
{
    size_t n = FN(gemm_bp_size)(c->GH, c->a->I);
    for (int i = 0; i < c->n_phases; i++) n += FN(packed_size)(&c->ph[i]);
    return n;
}

/* Points the phases' packed weights into `packed` (forward_packed_size elements);
 * returns the GEMM's B panels (the start of `packed`). */
static real *FN(forward_packed_at)(FN(ctx) *c, real *packed)
{
    real *p = packed + FN(gemm_bp_size)(c->GH, c->a->I);
    for (int i = 0; i < c->n_phases; i++) { c->ph[i].wp = p; p += FN(packed_size)(&c->ph[i]); }
    return packed;
}

static size_t FN(packed_bytes)(const fr_seq *a)
{
    FN(ctx) c;
    FN(wsrc) src[3];
    FN(ctx_init)(&c, a);
    FN(forward_phases)(&c, src);
    return FN(forward_packed_size)(&c) * sizeof(real);
}

/* Packs a forward's weights once, for calls that pass them as `packed`. */
static int FN(pack)(const fr_seq *a, void *packed)
{
    FN(ctx) c;
    FN(wsrc) src[3] = {{0}};
    FN(ctx_init)(&c, a);
    FN(forward_phases)(&c, src);
    real *bp = FN(forward_packed_at)(&c, (real *)packed);
    const int GH = c.GH, I = a->I, n_panels = (GH + GEMM_NR - 1) / GEMM_NR;
    double n_w = (double)GH * (I + a->P) + (c.proj ? (double)a->P * a->H : 0);
    int nthr = a->n_threads;
    if (nthr > (int)(n_w / 65536) + 1) nthr = (int)(n_w / 65536) + 1;     /* 64K weights a thread */
#pragma omp parallel num_threads(nthr)
    {
        const int tid = fr_thread_id(), nt = fr_num_threads();
        FN(gemm_pack_b)(bp, (const real *)a->w_ih, 1, I, GH, I, (int)((long)n_panels * tid / nt),
                        (int)((long)n_panels * (tid + 1) / nt));
        for (int i = 0; i < c.n_phases; i++) {
            FN(phase) *ph = &c.ph[i];
            int BW = ph->nbv * VL, nblk = (ph->N + BW - 1) / BW;
            FN(pack_gates)((real *)ph->wp, src[i].w, src[i].rs, src[i].cs, ph->G, ph->N, ph->K, BW,
                           (int)((long)nblk * tid / nt), (int)((long)nblk * (tid + 1) / nt));
        }
    }
    return FR_OK;
}

static int FN(forward)(const fr_seq *args)
{
    fr_seq s = *args;          /* inference may leave the per-step buffers to us */
    const fr_seq *a = &s;
    FN(ctx) c;
    FN(wsrc) src[3] = {{0}};
    FN(ctx_init)(&c, a);
    const int T_ = a->T, B = a->B, I = a->I, H = a->H, P = a->P, GH = c.GH;
    FN(phase) *ph = c.ph;
    FN(forward_phases)(&c, src);
    /* A handful of rows in all (a single streamed step): use the weights as given,
     * unless they were packed ahead of time. */
    const int direct = (long)T_ * B <= 4 && !a->packed;
    if (direct)
        for (int i = 0; i < c.n_phases; i++) { ph[i].w = src[i].w; ph[i].rs = src[i].rs; }
    int nthr = FN(threads_for)(&c, a->n_threads, direct);
    if (a->steps_threads) *a->steps_threads = nthr;
    /* The input projection xp = x W_ih^T + b_ih is one GEMM over the T*B rows of
     * Tc steps at a time, computed just before those steps need it: Tc is chosen
     * so that xp stays in cache (about 1 MiB) instead of a T-long buffer. */
    long per_step = (long)B * GH * (long)sizeof(real);
    int Tc = per_step > 0 ? (int)((1L << 20) / per_step) : T_;
    if (Tc > T_) Tc = T_;
    if (Tc < 1) Tc = 1;
    if (direct && T_ > 0) Tc = T_;
    /* Weights packed by an earlier fr_pack (a layer's cache) are used as they are. */
    const int prepacked = a->packed != NULL;
    size_t n_xp = (size_t)Tc * B * GH, n_tiles = (size_t)nthr * 8 * 4 * VL;
    size_t n_packed = direct || prepacked ? 0 : FN(forward_packed_size)(&c);
    /* The chunks' GEMM works in this call's buffer too: nothing is allocated per chunk. */
    const int ap_threads = a->n_threads < 64 ? a->n_threads : 64;
    size_t n_ap = direct ? 0 : (size_t)ap_threads * GEMM_APS;
    /* Inference without caller buffers: one step of states, cells, gates, m. */
    const int own_steps = !s.states;
    size_t n_steps = own_steps ? (size_t)2 * B * P + (size_t)2 * B * H + (size_t)B * 4 * H + (size_t)B * H : 0;
    size_t n_hm = c.rmask ? (size_t)2 * B * P : 0;
    real *work = (real *)fr_aligned_alloc((n_xp + n_tiles + n_packed + n_ap + n_steps + n_hm) * sizeof(real) + 64);
    if (!work) return FR_ENOMEM;
    real *p = work;
    if (own_steps) {
        s.states = p; p += (size_t)2 * B * P;
        s.cells = a->cell == FR_LSTM ? p : NULL; p += (size_t)2 * B * H;
        s.gates = a->cell == FR_GRU || a->cell == FR_LSTM ? p : NULL; p += (size_t)B * 4 * H;
        s.proj_in = c.proj ? p : NULL; p += (size_t)B * H;
    }
    if (n_hm) {                 /* step 0's products read h0 * rmask */
        c.hm_buf = p; p += n_hm;
        for (size_t i = 0; i < (size_t)B * P; i++)
            c.hm_buf[i] = ((const real *)a->h0)[i] * c.rmask[i];
    }
    real *xp = p; p += n_xp;
    c.xp = xp;
    c.tiles = p; p += n_tiles;
    real *ap = p; p += n_ap;
    real *bp = direct ? NULL : FN(forward_packed_at)(&c, prepacked ? (real *)a->packed : p);

    /* Initial states go where step 0 reads them. */
    size_t first = a->training && a->reverse ? (size_t)T_ : 0;
    memcpy((real *)a->states + first * B * P, a->h0, (size_t)B * P * sizeof(real));
    if (a->cell == FR_LSTM) memcpy((real *)a->cells + first * B * H, a->c0, (size_t)B * H * sizeof(real));

    for (int s0 = 0; s0 < T_; s0 += Tc) {
        int s1 = s0 + Tc < T_ ? s0 + Tc : T_;
        int t_lo = a->reverse ? T_ - s1 : s0;           /* the chunk's times: t_lo .. t_lo + s1 - s0 - 1 */
        int rows = (s1 - s0) * B;
        if (direct) {
            c.xp_t0 = t_lo;
            c.direct_x = 1;
            FN(run_steps)(&c, NULL, s0, s1, 0, nthr);
            continue;
        }
        for (int m = 0; m < rows; m++) memcpy(xp + (size_t)m * GH, a->b_ih, (size_t)GH * sizeof(real));
        int rc = FN(gemm_bp)(xp, GH, (const real *)a->x + (size_t)t_lo * B * I, I, 1, (const real *)a->w_ih, 1, I,
                             bp, s0 == 0 && !prepacked, rows, GH, I, 1, a->n_threads, ap, ap_threads);
        if (rc) { fr_aligned_free(work); return rc; }
        c.xp_t0 = t_lo;
        FN(run_steps)(&c, s0 == 0 && !prepacked ? src : NULL, s0, s1, 0, nthr);
    }

    size_t last = a->training ? (a->reverse ? 0 : (size_t)T_) : (size_t)(T_ & 1);
    memcpy(a->h_n, (real *)a->states + last * B * P, (size_t)B * P * sizeof(real));
    if (a->cell == FR_LSTM) memcpy(a->c_n, (real *)a->cells + last * B * H, (size_t)B * H * sizeof(real));
    fr_aligned_free(work);
    return FR_OK;
}

/* Does a skipped (t, b) row of `rows` ((T*B) rows of w elements, row stride ld, by
 * time) hold a NaN or Inf? */
static int FN(skipped_nonfinite)(const fr_seq *a, const real *rows, long ld, int w)
{
    for (int t = 0; t < a->T; t++)
        for (int b = 0; b < a->B; b++) {
            if (FN(active)(a, t, b)) continue;
            const real *r = rows + ((size_t)t * a->B + b) * ld;
            for (int k = 0; k < w; k++)
                if (!isfinite(r[k])) return 1;
        }
    return 0;
}

/* The hoisted products run over every (t, b) row; a skipped row's gradient is 0,
 * but 0 times a NaN or Inf in its operand row is not. An operand with such a row
 * is replaced by a dense copy (T*B rows of w) whose skipped rows are 0: the rare
 * case pays, the usual one reads the operand as it is. Returns the operand to use
 * (*ld updated), or NULL when out of memory. */
static const real *FN(skip_rows)(const fr_seq *a, const real *rows, long *ld, int w, real **owned)
{
    if ((!a->lengths && !a->step_mask) || !FN(skipped_nonfinite)(a, rows, *ld, w)) return rows;
    real *copy = (real *)fr_aligned_alloc((size_t)a->T * a->B * w * sizeof(real) + 64);
    if (!copy) return NULL;
    for (int t = 0; t < a->T; t++)
        for (int b = 0; b < a->B; b++) {
            size_t m = (size_t)t * a->B + b;
            if (FN(active)(a, t, b)) memcpy(copy + m * w, rows + m * *ld, (size_t)w * sizeof(real));
            else memset(copy + m * w, 0, (size_t)w * sizeof(real));
        }
    *owned = copy;
    *ld = w;
    return copy;
}

static int FN(backward)(const fr_seq *a)
{
    FN(ctx) c;
    FN(wsrc) src[3] = {{0}};
    FN(ctx_init)(&c, a);
    const int T_ = a->T, B = a->B, I = a->I, H = a->H, P = a->P, GH = c.GH;
    const real *w_hh = (const real *)a->w_hh;
    FN(phase) *ph = c.ph;
    /* Phases of a backward step. The products use transposed weights:
     * W^T(n, k) = W(k, n), i.e. strides (1, row length). */
    switch (a->cell) {
    case FR_RNN_TANH: case FR_RNN_RELU:
        ph[0] = FN(make_phase)(PH_B_RNN, H, 0, 0);
        ph[1] = FN(make_phase)(PH_B_DH, P, 1, GH); src[1] = (FN(wsrc)){w_hh, 1, P};
        c.n_phases = 2; break;
    case FR_GRU:
        if (a->lbr) {
            ph[0] = FN(make_phase)(PH_B_GRU, H, 0, 0);
            ph[1] = FN(make_phase)(PH_B_DH, P, 1, GH); src[1] = (FN(wsrc)){w_hh, 1, P};
            c.n_phases = 2;
        } else {
            ph[0] = FN(make_phase)(PH_B_GRU_ZN, H, 0, 0);
            ph[1] = FN(make_phase)(PH_B_GRU_R, H, 1, H); src[1] = (FN(wsrc)){w_hh + (size_t)2 * H * P, 1, P};
            ph[2] = FN(make_phase)(PH_B_DH, P, 1, 2 * H); src[2] = (FN(wsrc)){w_hh, 1, P};
            c.n_phases = 3;
        }
        break;
    default:
        if (c.proj) {
            ph[0] = FN(make_phase)(PH_B_DY, P, 0, 0);
            ph[1] = FN(make_phase)(PH_B_LSTM, H, 1, P); src[1] = (FN(wsrc)){(const real *)a->w_hr, 1, H};
            ph[2] = FN(make_phase)(PH_B_DH, P, 1, GH); src[2] = (FN(wsrc)){w_hh, 1, P};
            c.n_phases = 3;
        } else {
            ph[0] = FN(make_phase)(PH_B_LSTM, H, 0, 0);
            ph[1] = FN(make_phase)(PH_B_DH, P, 1, GH); src[1] = (FN(wsrc)){w_hh, 1, P};
            c.n_phases = 2;
        }
    }
    const int lstm = a->cell == FR_LSTM, gru_lbr = a->cell == FR_GRU && a->lbr;
    int nthr = FN(threads_for)(&c, a->n_threads, 0);
    if (a->steps_threads) *a->steps_threads = nthr;
    size_t n_dg = (size_t)T_ * B * GH, n_tiles = (size_t)nthr * 8 * 4 * VL, n_packed = 0;
    for (int i = 0; i < c.n_phases; i++) n_packed += FN(packed_size)(&ph[i]);
    size_t n_dhs = c.proj ? (size_t)T_ * B * P : 0;
    size_t n_carry = (size_t)2 * B * P + (lstm ? (size_t)2 * B * H : 0);
    size_t n_hm = c.rmask ? (size_t)T_ * B * P : 0;
    size_t total = n_dg * (gru_lbr ? 2 : 1) + n_tiles + n_packed + n_dhs + n_carry + n_hm;
    real *work = (real *)fr_aligned_alloc(total * sizeof(real) + 64);
    if (!work) return FR_ENOMEM;
    real *p = work;
    c.dgx = p; p += n_dg;
    if (gru_lbr) { c.dgh = p; p += n_dg; } else c.dgh = c.dgx;
    c.tiles = p; p += n_tiles;
    for (int i = 0; i < c.n_phases; i++) { ph[i].wp = p; p += FN(packed_size)(&ph[i]); }
    if (n_dhs) { c.dhs = p; p += n_dhs; }
    c.dh_buf = p; p += (size_t)2 * B * P;
    if (lstm) { c.dc_buf = p; p += (size_t)2 * B * H; }
    real *hm_all = n_hm ? p : NULL;

    /* The carries start from the final-state gradients, in the slot step T-1 reads. */
    memcpy(c.dh_buf, a->dh_n, (size_t)B * P * sizeof(real));
    if (lstm) memcpy(c.dc_buf, a->dc_n, (size_t)B * H * sizeof(real));

    FN(run_steps)(&c, src, 0, T_, 1, nthr);

    int k_end = T_ & 1;     /* the slot written by the last step (or the initial one when T == 0) */
    memcpy(a->dh0, c.dh_buf + (size_t)k_end * B * P, (size_t)B * P * sizeof(real));
    if (lstm) memcpy(a->dc0, c.dc_buf + (size_t)k_end * B * H, (size_t)B * H * sizeof(real));

    /* The products hoisted out of the loop, over all T*B rows at once. */
    const int M = T_ * B, nth = a->n_threads;
    const real *x = (const real *)a->x;
    const real *states = (const real *)a->states;
    const real *h_prev_all = a->reverse ? states + (size_t)B * P : states;   /* (T, B, P) by time */
    if (hm_all) {               /* the products saw h * rmask */
        for (size_t m = 0; m < (size_t)T_ * B; m++)
            for (int k = 0; k < P; k++)
                hm_all[m * P + k] = h_prev_all[m * P + k] * c.rmask[(m % B) * P + k];
        h_prev_all = hm_all;
    }
    /* operands whose skipped rows hold NaN/Inf are read from zeroed copies (skip_rows) */
    const int gru_rh = a->cell == FR_GRU && !a->lbr;
    real *owned[6] = {0};
    long ld_x = I, ld_h = P, ld_rh = 4 * H, ld_m = H, ld_cp = H, ld_cn = H;
    const real *rh = gru_rh ? (const real *)a->gates + 3 * H : NULL;    /* r*h_prev, gate slot 3 */
    const real *m_all = c.proj ? (const real *)a->proj_in : NULL;
    const real *cells = (const real *)a->cells;
    const real *c_prev_all = c.peep ? (a->reverse ? cells + (size_t)B * H : cells) : NULL;
    const real *c_new_all = c.peep ? (a->reverse ? cells : cells + (size_t)B * H) : NULL;
    int rc = FR_OK;
    if (!(x = FN(skip_rows)(a, x, &ld_x, I, &owned[0])) ||
        !(h_prev_all = FN(skip_rows)(a, h_prev_all, &ld_h, P, &owned[1])) ||
        (rh && !(rh = FN(skip_rows)(a, rh, &ld_rh, H, &owned[2]))) ||
        (m_all && !(m_all = FN(skip_rows)(a, m_all, &ld_m, H, &owned[3]))) ||
        (c_prev_all && !(c_prev_all = FN(skip_rows)(a, c_prev_all, &ld_cp, H, &owned[4]))) ||
        (c_new_all && !(c_new_all = FN(skip_rows)(a, c_new_all, &ld_cn, H, &owned[5]))))
        rc = FR_ENOMEM;
    if (!rc) rc = FN(gemm)((real *)a->dx, I, c.dgx, GH, 1, (const real *)a->w_ih, I, 1, M, I, GH, 0, nth);
    if (!rc) rc = FN(gemm)((real *)a->dw_ih, I, c.dgx, 1, GH, x, ld_x, 1, GH, I, M, 0, nth);
    if (!rc && gru_rh) {
        /* rows r, z see h_prev; rows n see r*h_prev */
        rc = FN(gemm)((real *)a->dw_hh, P, c.dgx, 1, GH, h_prev_all, ld_h, 1, 2 * H, P, M, 0, nth);
        if (!rc) rc = FN(gemm)((real *)a->dw_hh + (size_t)2 * H * P, P, c.dgx + 2 * H, 1, GH,
                               rh, ld_rh, 1, H, P, M, 0, nth);
    } else if (!rc) {
        rc = FN(gemm)((real *)a->dw_hh, P, c.dgh, 1, GH, h_prev_all, ld_h, 1, GH, P, M, 0, nth);
    }
    if (!rc && c.proj)
        rc = FN(gemm)((real *)a->dw_hr, H, c.dhs, 1, P, m_all, ld_m, 1, P, H, M, 0, nth);
    if (!rc && (a->lengths || a->step_mask)) {
        /* a skipped row of dx is 0, even where w_ih holds NaN or Inf */
        for (int t = 0; t < T_; t++)
            for (int b = 0; b < B; b++)
                if (!FN(active)(a, t, b)) memset((real *)a->dx + ((size_t)t * B + b) * I, 0, (size_t)I * sizeof(real));
    }
    if (rc) {
        for (int i = 0; i < 6; i++) fr_aligned_free(owned[i]);
        fr_aligned_free(work);
        return rc;
    }
    FN(colsum)((real *)a->db_ih, c.dgx, GH, NULL, 0, M, GH, 0, nth);
    if (c.dgh != c.dgx) FN(colsum)((real *)a->db_hh, c.dgh, GH, NULL, 0, M, GH, 0, nth);
    else memcpy(a->db_hh, a->db_ih, (size_t)GH * sizeof(real));     /* both biases add to the same sums */
    if (c.peep) {
        real *dp = (real *)a->dw_peep;
        FN(colsum)(dp, c.dgx, GH, c_prev_all, ld_cp, M, H, 0, nth);
        FN(colsum)(dp + H, c.dgx + H, GH, c_prev_all, ld_cp, M, H, 0, nth);
        FN(colsum)(dp + 2 * H, c.dgx + 3 * H, GH, c_new_all, ld_cn, M, H, 0, nth);
    }
    for (int i = 0; i < 6; i++) fr_aligned_free(owned[i]);
    fr_aligned_free(work);
    return FR_OK;
}
