/* SIMD vectors and vectorised exp/expm1/sigmoid/tanh for one (dtype, ISA) instance.
 *
 * Included by kernels_impl.h, once per instance, with FR_T (float or double),
 * FR_VB (vector bytes) and the naming macros defined. GCC vector extensions are
 * lowered to the instruction set of the enclosing `#pragma GCC target`, so the
 * same source serves AVX-512, AVX2+FMA and portable builds.
 *
 * The math avoids -ffast-math: NaN propagates, +-Inf saturates.
 */

typedef real V __attribute__((vector_size(FR_VB)));
#if FR_IS_F64
typedef int64_t VI __attribute__((vector_size(FR_VB)));
#else
typedef int32_t VI __attribute__((vector_size(FR_VB)));
#endif

static inline V FN(vsplat)(real s) { V v = {0}; return s - v; }     /* s - (+0): keeps -0.0 */
static inline V FN(vload)(const real *p) { V v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(vstore)(real *p, V v) { memcpy(p, &v, sizeof v); }

/* First n (<= VL) lanes; the rest read as 0 and are never written. */
static inline V FN(vload_n)(const real *p, int n)
{
    if (n == VL) return FN(vload)(p);
    V v = {0};
    memcpy(&v, p, (size_t)n * sizeof(real));
    return v;
}
static inline void FN(vstore_n)(real *p, V v, int n)
{
    if (n == VL) FN(vstore)(p, v);
    else memcpy(p, &v, (size_t)n * sizeof(real));
}

/* Lane-wise m ? a : b, m from a vector comparison (all bits set or clear). */
static inline V FN(vsel)(VI m, V a, V b) { return (V)(((VI)a & m) | ((VI)b & ~m)); }

static inline V FN(vrelu)(V x) { return FN(vsel)(x < 0, FN(vsplat)(0), x); }  /* NaN stays NaN */

/* exp(x) = s * (1 + q): s = 2^n, q = expm1(r), r = x - n*ln2 with |r| <= ln2/2.
 * x is clamped to the range where s is a normal number; NaN passes the clamp.
 * q is the Taylor series of expm1 to the order that reaches the dtype's
 * precision on |r| <= 0.347 (8 for float, 14 for double). */
static inline void FN(vexp_parts)(V x, V *s, V *q)
{
#if FR_IS_F64
    const real hi = 709.0, lo = -708.0, shifter = 0x1.8p52;
    const real ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    const int64_t bias = 1023, mant = 52;
#else
    const real hi = 88.0f, lo = -87.0f, shifter = 0x1.8p23f;
    const real ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    const int32_t bias = 127, mant = 23;
#endif
    const real log2e = (real)1.44269504088896340736;
    x = FN(vsel)(x > hi, FN(vsplat)(hi), x);
    x = FN(vsel)(x < lo, FN(vsplat)(lo), x);
    V t = x * log2e + shifter;          /* round(x / ln2) in the low mantissa bits */
    V n = t - shifter;
    V r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    VI ni = (VI)t - (VI)FN(vsplat)(shifter);
    *s = (V)((ni + bias) << mant);
#if FR_IS_F64
    V p = FN(vsplat)(1.0 / 87178291200.0);          /* 1/14! */
    p = p * r + 1.0 / 6227020800.0;                 /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
#else
    V p = FN(vsplat)(1.0f / 40320.0f);              /* 1/8! */
    p = p * r + 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
#endif
    *q = r + (r * r) * p;
}

static inline V FN(vexp)(V x)
{
    V s, q;
    FN(vexp_parts)(x, &s, &q);
    return s + s * q;
}

/* 1/d. AVX-512 has a 14-bit reciprocal estimate: Newton steps (one for float,
 * two for double) bring it to the dtype's precision at a fraction of a divide. */
static inline V FN(vrecip)(V d)
{
#if FR_AVX512 && FR_IS_F64
    V r = (V)_mm512_rcp14_pd((__m512d)d);
    r = r * (2 - d * r);
    return r * (2 - d * r);
#elif FR_AVX512
    V r = (V)_mm512_rcp14_ps((__m512)d);
    return r * (2 - d * r);
#else
    return 1 / d;
#endif
}

/* 1 / (1 + e^-x); exactly 0 where e^-x overflows (vexp clamps there, which would
 * leave a tiny positive value: sigmoid(-inf) must be 0, as 0 * inf must stay NaN). */
static inline V FN(vsigmoid)(V x)
{
#if FR_IS_F64
    const real lim = -709.0;
#else
    const real lim = -88.0f;
#endif
    return FN(vsel)(x < lim, FN(vsplat)(0), FN(vrecip)(1 + FN(vexp)(-x)));
}

/* tanh(x) = sign(x) * -m / (2 + m), m = expm1(-2|x|): no cancellation near 0. */
static inline V FN(vtanh)(V x)
{
    const VI sign = (VI)FN(vsplat)(-0.0);
    V ax = (V)((VI)x & ~sign);
    V s, q;
    FN(vexp_parts)(-2 * ax, &s, &q);
    V m = s * q + (s - 1);
    V t = -m * FN(vrecip)(2 + m);
    return (V)((VI)t | ((VI)x & sign));
}

/* expm1(x) = s*q + (s - 1), from the parts of exp: no cancellation near 0. */
static inline V FN(vexpm1)(V x)
{
    V s, q;
    FN(vexp_parts)(x, &s, &q);
    return s * q + (s - 1);
}

/* Clamps to [-c, c]; NaN stays NaN. */
static inline V FN(vclip)(V x, real c)
{
    x = FN(vsel)(x > c, FN(vsplat)(c), x);
    return FN(vsel)(x < -c, FN(vsplat)(-c), x);
}

/* log(1 + e^x) lane by lane (the libm path: only ONNX models ask for it). */
static inline V FN(vsoftplus)(V x)
{
    real v[VL];
    memcpy(v, &x, sizeof x);
    for (int l = 0; l < VL; l++)
        v[l] = v[l] > 0 ? v[l] + (real)log1p(exp(-(double)v[l])) : (real)log1p(exp((double)v[l]));
    memcpy(&x, v, sizeof x);
    return x;
}

/* Activation `slot` of a forward's own set (fr_act, see fastrnn.h) on x: a gate's
 * pre-activation (slots 0, 1: clipped first when the set clips) or LSTM's cell
 * state (slot 2: never clipped). NaN propagates. */
static inline V FN(vact)(const fr_act *f, int slot, V x)
{
    const V zero = FN(vsplat)(0), one = FN(vsplat)(1);
    const real al = (real)f->alpha[slot], be = (real)f->beta[slot];
    if (f->clip > 0 && slot < 2) x = FN(vclip)(x, (real)f->clip);
    switch (f->kind[slot]) {
    case FR_ACT_SIGMOID: return FN(vsigmoid)(x);
    case FR_ACT_TANH: return FN(vtanh)(x);
    case FR_ACT_RELU: return FN(vrelu)(x);
    case FR_ACT_HARD_SIGMOID: {
        V t = x * al + be;
        t = FN(vsel)(t < 0, zero, t);
        return FN(vsel)(t > 1, one, t);
    }
    case FR_ACT_LEAKY_RELU: return FN(vsel)(x < 0, x * al, x);
    case FR_ACT_AFFINE: return x * al + be;
    case FR_ACT_SCALED_TANH: return al * FN(vtanh)(x * be);
    case FR_ACT_ELU: return FN(vsel)(x < 0, al * FN(vexpm1)(x), x);
    case FR_ACT_SOFTSIGN: {
        const VI sign = (VI)FN(vsplat)(-0.0);
        return x / (1 + (V)((VI)x & ~sign));
    }
    case FR_ACT_SOFTPLUS: return FN(vsoftplus)(x);
    case FR_ACT_THRESHOLDED_RELU: return FN(vsel)(x <= al, zero, x);
    }
    return x;
}
