/* One-pass CPU quantization kernels: the bits of kernels.py, at the speed of a copy.
 *
 * Each block is read from memory once: its maximum is taken while it is in cache and its
 * elements are rounded straight after. The input is a contiguous [outer, length, inner]
 * view blocked along `length`; a short last block is not padded. For inner > 1 (blocks
 * along a strided axis) a tile of the block's rows and a chunk of columns is processed at
 * once, so that the innermost loops run along memory and vectorise.
 *
 * Exactness: every operation is a correctly rounded IEEE one (division by exact powers of
 * two, round-half-even, comparisons); the build turns off FMA contraction and fast math,
 * so vectorised code gives the same bits as torch's eager kernels (tests/test_native.py).
 * Stochastic rounding's noise is noise.py's hash, in uint32 arithmetic (the same values as
 * noise.py's masked int64 products). -fno-trapping-math (no FP exceptions are looked at)
 * lets floor and rint vectorise; it changes no value.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define CHUNK 256 /* columns of a strided tile: 64 rows x 256 floats stay in L2 */

enum kind { HBFP = 0, MX = 1, MINIFLOAT = 2 };

typedef struct {
    int32_t kind;
    int32_t stochastic;
    uint32_t k0, k1; /* the call's noise keys (noise.py) */
    /* HBFP */
    int32_t mantissa_bits, block_size, exp_lo, exp_hi, sub_block_size, micro_range;
    /* MX and minifloat elements */
    int32_t exp_bits, man_bits, emin, emax, has_inf;
    float max_normal;
} params_t;

#define INLINE static inline __attribute__((always_inline))

INLINE uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
INLINE float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

#define INF_BITS 0x7F800000u /* the exponent field, all ones */

/* floor(log2(m)) for finite m >= 0; -1 for 0 (kernels.floor_log2). */
INLINE int32_t floor_log2(float m) {
    int tiny = m < 0x1p-126f;
    float normal = tiny ? m * 0x1p64f : m;
    int32_t e = (int32_t)(f2u(normal) >> 23) - 127;
    e = tiny ? e - 64 : e;
    return m == 0.0f ? -1 : e;
}

/* Exact 2**e for e in [-149, 127] (kernels.pow2). */
INLINE float pow2(int32_t e) {
    int32_t biased = e + 127 < 1 ? 1 : e + 127;
    int32_t shift = e + 149 < 0 ? 0 : (e + 149 > 22 ? 22 : e + 149);
    return e >= -126 ? u2f((uint32_t)biased << 23) : u2f(1u << shift);
}

/* x / 2**e, rounded once, as (x * up(e)) * down(e): multiplications, which are cheaper than a
 * division and give its bits (kernels.reciprocal_factors). The first product is exact. */
INLINE float up(int32_t e) { return e < -127 ? 0x1p64f : 1.0f; }
INLINE float down(int32_t e) { return pow2(e < -127 ? -e - 64 : -e); }

/* A block's scale 2**e and the factors that divide by it, computed once a block: in the
 * element loops, the selects that build them would keep the loops from vectorising. */
typedef struct {
    float scale, up, down;
} scale_t;

INLINE scale_t scale_of(int32_t e) {
    scale_t s = {pow2(e), up(e), down(e)};
    return s;
}

/* The scales of a tile's columns or of a group's blocks, as arrays: the element loops then
 * load each from consecutive memory (an array of scale_t would take gathers). */
typedef struct {
    float scale[CHUNK], up[CHUNK], down[CHUNK];
} scales_t;

INLINE void set_scale(scales_t *s, int64_t i, int32_t e) {
    s->scale[i] = pow2(e);
    s->up[i] = up(e);
    s->down[i] = down(e);
}

INLINE scale_t scale_at(const scales_t *s, int64_t i) {
    scale_t t = {s->scale[i], s->up[i], s->down[i]};
    return t;
}

INLINE int32_t clampi(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

INLINE float clampf(float v, float lo, float hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

INLINE uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x21F0AAADu;
    x ^= x >> 15;
    x *= 0x735A2D97u;
    return x ^ (x >> 15);
}

/* The 24 random bits at memory position `index` (noise.uniform_noise), for tensors of fewer
 * than 2**32 values (the high word of the position is 0). */
INLINE uint32_t noise_bits(uint32_t index, uint32_t k0, uint32_t k1) {
    return mix32(mix32(index ^ k0) ^ k1) >> 8;
}

/* Those bits as U[0, 1); 0 without stochastic rounding. */
INLINE float noise_at(int st, uint32_t index, uint32_t k0, uint32_t k1) {
    return st ? (float)(int32_t)noise_bits(index, k0, k1) * 0x1p-24f : 0.0f;
}

/* v rounded to an integer: half to even, or up where the noise u is below its fraction. */
INLINE float round_unbounded(float v, int st, float u) {
    if (!st)
        return nearbyintf(v); /* half to even: the default rounding mode */
    float low = floorf(v);
    return copysignf(low + (u < v - low ? 1.0f : 0.0f), v);
}

/* kernels.round_integer: for integer bounds, clamping after rounding gives its bits. */
INLINE float round_integer(float v, float lo, float hi, int st, float u) {
    return clampf(round_unbounded(v, st, u), lo, hi);
}

/* A narrow element's parameters, and how a call rounds: constants of each specialisation. */
typedef struct {
    int st, fixed, saturate; /* stochastic; MXINT8's fixed point; saturating overflow */
    int32_t man_bits, emin;
    float max_normal;
} element_t;

/* kernels.element: a finite value cast to a narrow float or fixed-point element. */
INLINE float element(float v, float u, element_t e) {
    if (e.fixed) {
        float steps_per_unit = (float)(1 << e.man_bits);
        float limit = e.max_normal * steps_per_unit;
        float q;
        if (!e.st) { /* MXINT8 rounds half away from zero */
            float scaled = fabsf(v) * steps_per_unit;
            float low = floorf(scaled);
            float r = low + (scaled - low >= 0.5f ? 1.0f : 0.0f);
            q = copysignf(r > limit ? limit : r, v);
        } else {
            q = round_integer(v * steps_per_unit, -limit, limit, 1, u);
        }
        return q * u2f((uint32_t)(127 - e.man_bits) << 23);
    }
    /* The step is 2**(max(floor(log2|v|), emin) - man_bits): v's exponent field raised to
     * emin's, less man_bits (normal for every such format; those with FP32's exponent range
     * round as bits). |v| / step < 2**(man_bits + 1), so the steps need no clamp. */
    const uint32_t least = (uint32_t)(e.emin + 127) << 23;
    uint32_t field = f2u(v) & INF_BITS;
    field = field > least ? field : least;
    float steps = v * u2f(((uint32_t)(254 + e.man_bits) << 23) - field); /* v / step */
    float q = round_unbounded(steps, e.st, u) * u2f(field - ((uint32_t)e.man_bits << 23));
    if (e.saturate)
        return clampf(q, -e.max_normal, e.max_normal);
    return fabsf(q) > e.max_normal ? q * INFINITY : q;
}

/* Maxima are taken over the bits of magnitudes, whose integer order is their order as
 * floats: an integer maximum vectorises, a float one (NaN and -0 aside) does not.
 * The bits of |v|: MX blocks take the maximum of every magnitude, NaN and infinities the
 * largest, since such a block is NaN whatever its scale (bad: its maximum is not finite). */
INLINE uint32_t magnitude(float v) { return f2u(v) & 0x7FFFFFFFu; }

/* The bits of |v| for finite v, else 0 (by a mask: GCC 12 vectorises no maximum of a select). */
INLINE uint32_t finite_abs(float v) {
    uint32_t m = magnitude(v);
    return m & (0u - (uint32_t)(m < INF_BITS));
}

INLINE uint32_t maxu(uint32_t a, uint32_t b) { return a > b ? a : b; }

/* The maximum of x[0..n): of finite values only, or of every magnitude. */
INLINE uint32_t run_maximum(const float *restrict x, int64_t n, int finite) {
    uint32_t m = 0;
    for (int64_t r = 0; r < n; r++)
        m = maxu(m, finite ? finite_abs(x[r]) : magnitude(x[r]));
    return m;
}

/* One HBFP element on a block scale (kernels.hbfp_apply). */
INLINE float hbfp_element(float v, scale_t s, float limit, int st, float u) {
    float q = round_integer(v * s.up * s.down, -limit, limit, st, u) * s.scale;
    return fabsf(v) < INFINITY ? q : v;
}

/* One MX element under its block's scale (kernels.mx), in a block whose maximum magnitude
 * (its bits) is `m`. */
INLINE float mx_element(float v, scale_t s, uint32_t m, float u, element_t e) {
    float q = element(v * s.down, u, e) * s.scale; /* a non-finite v's block is bad */
    return m >= INF_BITS ? NAN : q;
}

/* The exponent of a sub-block under its block's (kernels.hbfp_scale). */
INLINE int32_t sub_exponent(uint32_t sub_max, int32_t block_exp, const params_t *p) {
    int32_t floor = block_exp - p->micro_range;
    int32_t least = -149 + p->mantissa_bits - 2;
    floor = floor < least ? least : floor;
    int32_t e = floor_log2(u2f(sub_max));
    e = e > floor ? e : floor;
    return e < block_exp ? e : block_exp;
}

INLINE element_t element_of(const params_t *p, int st, int fixed, int saturate) {
    element_t e = {st, fixed, saturate, p->man_bits, p->emin, p->max_normal};
    return e;
}

/* One HBFP block along a contiguous axis: values x[0..rows), at memory position `base`. */
INLINE void hbfp_contiguous(const float *restrict x, float *restrict y, int64_t base,
                            int64_t rows, const params_t *p, int st) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    const float limit = (float)((1 << (p->mantissa_bits - 1)) - 1);
    const int32_t step = p->mantissa_bits - 2;
    const uint32_t m = run_maximum(x, rows, 1);
    int32_t block_exp = clampi(floor_log2(u2f(m)), p->exp_lo, p->exp_hi);
    int64_t sub = p->sub_block_size > 0 ? p->sub_block_size : rows;
    for (int64_t s0 = 0; s0 < rows; s0 += sub) {
        int64_t s1 = s0 + sub < rows ? s0 + sub : rows;
        int32_t e = block_exp;
        if (p->sub_block_size > 0)
            e = sub_exponent(run_maximum(x + s0, s1 - s0, 1), block_exp, p);
        const scale_t scale = scale_of(e - step);
        uint32_t at = (uint32_t)(base + s0);
        for (int64_t r = s0; r < s1; r++, at++)
            y[r] = hbfp_element(x[r], scale, limit, st, noise_at(st, at, k0, k1));
    }
}

/* One MX block along a contiguous axis. */
INLINE void mx_contiguous(const float *restrict x, float *restrict y, int64_t base, int64_t rows,
                          const params_t *p, element_t e) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    const uint32_t m = run_maximum(x, rows, 0);
    const scale_t scale = scale_of(clampi(floor_log2(u2f(m)) - p->emax, -127, 127));
    uint32_t at = (uint32_t)base;
    for (int64_t r = 0; r < rows; r++, at++)
        y[r] = mx_element(x[r], scale, m, noise_at(e.st, at, k0, k1), e);
}

/* One HBFP block along a strided axis: `rows` rows of stride `inner`, columns [0, cols). */
INLINE void hbfp_strided(const float *restrict x, float *restrict y, int64_t base, int64_t rows,
                         int64_t inner, int64_t cols, const params_t *p, int st) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    const float limit = (float)((1 << (p->mantissa_bits - 1)) - 1);
    const int32_t step = p->mantissa_bits - 2;
    uint32_t m[CHUNK];
    int32_t block_exp[CHUNK];
    scales_t scale;
    for (int64_t c = 0; c < cols; c++)
        m[c] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            m[c] = maxu(m[c], finite_abs(x[r * inner + c]));
    for (int64_t c = 0; c < cols; c++) {
        block_exp[c] = clampi(floor_log2(u2f(m[c])), p->exp_lo, p->exp_hi);
        set_scale(&scale, c, block_exp[c] - step);
    }
    int64_t sub = p->sub_block_size > 0 ? p->sub_block_size : rows;
    for (int64_t s0 = 0; s0 < rows; s0 += sub) {
        int64_t s1 = s0 + sub < rows ? s0 + sub : rows;
        if (p->sub_block_size > 0) {
            for (int64_t c = 0; c < cols; c++)
                m[c] = 0;
            for (int64_t r = s0; r < s1; r++)
                for (int64_t c = 0; c < cols; c++)
                    m[c] = maxu(m[c], finite_abs(x[r * inner + c]));
            for (int64_t c = 0; c < cols; c++)
                set_scale(&scale, c, sub_exponent(m[c], block_exp[c], p) - step);
        }
        for (int64_t r = s0; r < s1; r++) {
            const float *restrict row = x + r * inner;
            float *restrict out = y + r * inner;
            uint32_t at = (uint32_t)(base + r * inner);
            for (int64_t c = 0; c < cols; c++, at++)
                out[c] = hbfp_element(row[c], scale_at(&scale, c), limit, st,
                                      noise_at(st, at, k0, k1));
        }
    }
}

/* One MX block along a strided axis. */
INLINE void mx_strided(const float *restrict x, float *restrict y, int64_t base, int64_t rows,
                       int64_t inner, int64_t cols, const params_t *p, element_t e) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    uint32_t m[CHUNK];
    scales_t scale;
    for (int64_t c = 0; c < cols; c++)
        m[c] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            m[c] = maxu(m[c], magnitude(x[r * inner + c]));
    for (int64_t c = 0; c < cols; c++)
        set_scale(&scale, c, clampi(floor_log2(u2f(m[c])) - p->emax, -127, 127));
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict row = x + r * inner;
        float *restrict out = y + r * inner;
        uint32_t at = (uint32_t)(base + r * inner);
        for (int64_t c = 0; c < cols; c++, at++)
            out[c] = mx_element(row[c], scale_at(&scale, c), m[c], noise_at(e.st, at, k0, k1), e);
    }
}

/* One contiguous block of `rows` values. */
INLINE void contiguous_block(const float *x, float *y, int64_t base, int64_t rows,
                             const params_t *p, int st, int fixed) {
    if (p->kind == HBFP)
        hbfp_contiguous(x, y, base, rows, p, st);
    else
        mx_contiguous(x, y, base, rows, p, element_of(p, st, fixed, 1));
}

#define GROUP 64 /* short blocks' scales are computed together, GROUP scales at a time */
_Static_assert(GROUP <= CHUNK, "a group's scales fit a scales_t");

/* GCC's generic vectors, which it lowers for any target (Clang spells shuffles otherwise: there
 * the loop of run_maximum serves). */
#if defined(__GNUC__) && !defined(__clang__)
#define TRANSPOSED_MAXIMA
typedef uint32_t u32x16 __attribute__((vector_size(64)));

INLINE u32x16 maxv(u32x16 a, u32x16 b) { /* lane-wise unsigned maximum */
    u32x16 a_larger = (u32x16)(a > b);
    return (a & a_larger) | (b & ~a_larger);
}

/* Of a's and b's runs of 2w lanes (a's, then b's), the maxima of their halves, in order. */
#define FOLD(w, a, b)                                                                          \
    maxv(__builtin_shuffle(a, b, FOLD_MASK(w, 0)), __builtin_shuffle(a, b, FOLD_MASK(w, w)))
#define FOLD_LANE(w, o, i) ((i) / (w) * 2 * (w) + (i) % (w) + (o))
#define FOLD_MASK(w, o)                                                                        \
    (u32x16){FOLD_LANE(w, o, 0),  FOLD_LANE(w, o, 1),  FOLD_LANE(w, o, 2),  FOLD_LANE(w, o, 3), \
             FOLD_LANE(w, o, 4),  FOLD_LANE(w, o, 5),  FOLD_LANE(w, o, 6),  FOLD_LANE(w, o, 7), \
             FOLD_LANE(w, o, 8),  FOLD_LANE(w, o, 9),  FOLD_LANE(w, o, 10), FOLD_LANE(w, o, 11), \
             FOLD_LANE(w, o, 12), FOLD_LANE(w, o, 13), FOLD_LANE(w, o, 14), FOLD_LANE(w, o, 15)}

/* m[0..16) = the maxima of the 16 runs of `run` values (16 or 32) in x[0..16 run),
 * of finite values only or of every magnitude: each run's vectors folded into one, then the 16
 * transposed by halves (four rounds of two-vector permutes), where a run at a time would end
 * in a horizontal reduction of its vector. */
INLINE void maxima_of_16_runs(const float *restrict x, uint32_t *restrict m, int64_t run,
                              int finite) {
    u32x16 v[16];
    for (int i = 0; i < 16; i++) {
        v[i] = (u32x16){0};
        for (int64_t k = 0; k < run; k += 16) {
            u32x16 a;
            memcpy(&a, x + run * i + k, sizeof(u32x16));
            a &= 0x7FFFFFFFu;
            v[i] = maxv(v[i], finite ? a & (u32x16)(a < INF_BITS) : a);
        }
    }
    for (int i = 0; i < 8; i++)
        v[i] = FOLD(8, v[2 * i], v[2 * i + 1]);
    for (int i = 0; i < 4; i++)
        v[i] = FOLD(4, v[2 * i], v[2 * i + 1]);
    for (int i = 0; i < 2; i++)
        v[i] = FOLD(2, v[2 * i], v[2 * i + 1]);
    v[0] = FOLD(1, v[0], v[1]);
    memcpy(m, &v[0], sizeof(u32x16));
}
#endif

/* Consecutive blocks of `rows` values each from x[0], `units` sub-blocks of `sub` values in
 * all (rows / sub of them a block; sub == rows for single-level formats; units <= GROUP):
 * the maxima first, then every scale at once (a vector loop, where one block at a time
 * would be a chain of scalar steps per block), then the elements. */
INLINE void uniform_group(const float *restrict x, float *restrict y, int64_t base, int64_t units,
                          int64_t rows, int64_t sub, const params_t *p, int st, int fixed) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    uint32_t m[GROUP];
    int32_t block_exp[GROUP];
    scales_t scale;
    const int finite = p->kind == HBFP; /* HBFP: maxima of finite values; MX: magnitude() */
    int64_t done = 0;
#ifdef TRANSPOSED_MAXIMA
    if (sub == 16 || sub == 32) /* longer runs reduce as fast one at a time */
        for (; done + 16 <= units; done += 16)
            maxima_of_16_runs(x + done * sub, m + done, sub, finite);
#endif
    for (int64_t u = done; u < units; u++)
        m[u] = finite ? run_maximum(x + u * sub, sub, 1) : run_maximum(x + u * sub, sub, 0);
    if (p->kind == HBFP) {
        const float limit = (float)((1 << (p->mantissa_bits - 1)) - 1);
        const int32_t step = p->mantissa_bits - 2;
        if (p->sub_block_size > 0 && rows == sub) { /* one sub-block a block: a vector loop */
            for (int64_t u = 0; u < units; u++)
                block_exp[u] = sub_exponent(
                    m[u], clampi(floor_log2(u2f(m[u])), p->exp_lo, p->exp_hi), p);
        } else if (p->sub_block_size > 0) {
            const int64_t subs = rows / sub;
            for (int64_t b = 0; b < units / subs; b++) {
                uint32_t mb = 0;
                for (int64_t s = 0; s < subs; s++)
                    mb = maxu(mb, m[b * subs + s]);
                int32_t e = clampi(floor_log2(u2f(mb)), p->exp_lo, p->exp_hi);
                for (int64_t s = 0; s < subs; s++)
                    block_exp[b * subs + s] = e;
            }
            for (int64_t u = 0; u < units; u++)
                block_exp[u] = sub_exponent(m[u], block_exp[u], p);
        } else {
            for (int64_t u = 0; u < units; u++)
                block_exp[u] = clampi(floor_log2(u2f(m[u])), p->exp_lo, p->exp_hi);
        }
        for (int64_t u = 0; u < units; u++)
            set_scale(&scale, u, block_exp[u] - step);
        for (int64_t u = 0; u < units; u++) {
            const scale_t s = scale_at(&scale, u);
            uint32_t at = (uint32_t)(base + u * sub);
            for (int64_t r = 0; r < sub; r++, at++)
                y[u * sub + r] = hbfp_element(x[u * sub + r], s, limit, st,
                                              noise_at(st, at, k0, k1));
        }
    } else {
        const element_t e = element_of(p, st, fixed, 1);
        for (int64_t u = 0; u < units; u++)
            set_scale(&scale, u, clampi(floor_log2(u2f(m[u])) - p->emax, -127, 127));
        for (int64_t u = 0; u < units; u++) {
            const scale_t s = scale_at(&scale, u);
            uint32_t at = (uint32_t)(base + u * sub);
            for (int64_t r = 0; r < sub; r++, at++)
                y[u * sub + r] = mx_element(x[u * sub + r], s, m[u],
                                            noise_at(st, at, k0, k1), e);
        }
    }
}

/* Blocks [t0, t1) of a tensor blocked along its contiguous axis (inner == 1). */
INLINE void contiguous_blocks(const float *x, float *y, int64_t length, int64_t t0, int64_t t1,
                              const params_t *p, int st, int fixed) {
    const int64_t block = p->block_size;
    const int64_t blocks = (length + block - 1) / block;
    const int64_t rows = length < block ? length : block;
    const int64_t sub = p->sub_block_size > 0 && p->sub_block_size < rows ? p->sub_block_size
                                                                            : rows;
    const int64_t subs = rows / sub;
    if (length % rows == 0 && rows % sub == 0 && subs <= GROUP) { /* equal blocks, back to back */
        const int64_t per_group = GROUP / subs;
        for (int64_t t = t0; t < t1; t += per_group) {
            int64_t count = t + per_group < t1 ? per_group : t1 - t, base = t * rows;
            int64_t units = count * subs;
            /* a constant sub-block length unrolls the loops over it */
            if (sub == 64)
                uniform_group(x + base, y + base, base, units, rows, 64, p, st, fixed);
            else if (sub == 32)
                uniform_group(x + base, y + base, base, units, rows, 32, p, st, fixed);
            else if (sub == 16 && rows == 64) /* two-level: four sub-blocks */
                uniform_group(x + base, y + base, base, units, 64, 16, p, st, fixed);
            else if (sub == 16)
                uniform_group(x + base, y + base, base, units, rows, 16, p, st, fixed);
            else if (sub == 3) /* an RGB image's channels */
                uniform_group(x + base, y + base, base, units, rows, 3, p, st, fixed);
            else
                uniform_group(x + base, y + base, base, units, rows, sub, p, st, fixed);
        }
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t r0 = (t % blocks) * block;
        int64_t n = r0 + block < length ? block : length - r0;
        int64_t base = (t / blocks) * length + r0;
        contiguous_block(x + base, y + base, base, n, p, st, fixed);
    }
}

/* Tiles [t0, t1) of a tensor blocked along a strided axis: (outer, block, column chunk). */
INLINE void strided_tiles(const float *x, float *y, int64_t length, int64_t inner, int64_t t0,
                          int64_t t1, const params_t *p, int st, int fixed) {
    const int64_t block = p->block_size;
    const int64_t blocks = (length + block - 1) / block;
    const int64_t chunks = (inner + CHUNK - 1) / CHUNK;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / (blocks * chunks), b = (t / chunks) % blocks, k = t % chunks;
        int64_t r0 = b * block;
        int64_t rows = r0 + block < length ? block : length - r0;
        int64_t c0 = k * CHUNK;
        int64_t cols = c0 + CHUNK < inner ? CHUNK : inner - c0;
        int64_t base = (o * length + r0) * inner + c0;
        if (p->kind == HBFP)
            hbfp_strided(x + base, y + base, base, rows, inner, cols, p, st);
        else
            mx_strided(x + base, y + base, base, rows, inner, cols, p, element_of(p, st, fixed, 1));
    }
}

INLINE void tiles(const float *x, float *y, int64_t length, int64_t inner, int64_t t0,
                  int64_t t1, const params_t *p, int st, int fixed) {
    if (inner == 1)
        contiguous_blocks(x, y, length, t0, t1, p, st, fixed);
    else
        strided_tiles(x, y, length, inner, t0, t1, p, st, fixed);
}

/* A thread's share of the tiles, its loops specialised on what varies between calls. */
static void tiles_of(const float *x, float *y, int64_t length, int64_t inner, int64_t t0,
                     int64_t t1, const params_t *p) {
    const int fixed = p->exp_bits == 0;
    if (p->stochastic)
        fixed ? tiles(x, y, length, inner, t0, t1, p, 1, 1)
              : tiles(x, y, length, inner, t0, t1, p, 1, 0);
    else
        fixed ? tiles(x, y, length, inner, t0, t1, p, 0, 1)
              : tiles(x, y, length, inner, t0, t1, p, 0, 0);
}

/* Block formats (HBFP, MX) along dim 1 of a contiguous [outer, length, inner] tensor. */
void hbfp_dse_quantize_blocks(const float *x, float *y, int64_t outer, int64_t length,
                              int64_t inner, const params_t *p, int32_t threads) {
    const int64_t block = p->block_size;
    const int64_t blocks = (length + block - 1) / block;
    const int64_t tiles = outer * blocks * (inner == 1 ? 1 : (inner + CHUNK - 1) / CHUNK);
    if (threads <= 1) {
        tiles_of(x, y, length, inner, 0, tiles, p);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
        tiles_of(x, y, length, inner, tiles * i / n, tiles * (i + 1) / n, p);
    }
}

INLINE void elements(const float *restrict x, float *restrict y, int64_t start, int64_t end,
                     const params_t *p, element_t e, int has_inf) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    uint32_t at = (uint32_t)start;
    for (int64_t i = start; i < end; i++, at++) {
        float v = x[i];
        float q = element(fabsf(v) < INFINITY ? v : 0.0f, noise_at(e.st, at, k0, k1), e);
        float passthrough = has_inf ? v : v - v; /* Inf - Inf is NaN */
        y[i] = fabsf(v) < INFINITY ? q : passthrough;
    }
}

/* A float with FP32's exponent range (BF16): each step is a bit of the FP32 value, so
 * kernels.minifloat's rounding of x / step is a decision on the dropped bits, as integers.
 * Nearest: half to even. Stochastic: a magnitude rounds up where the 24-bit noise is below
 * its dropped fraction (in 24 bits), or, below 0 (floor(v) rounds the magnitude up where
 * u >= 1 - fraction), at or above 2**24 less it. Rounding up carries into the exponent, to
 * infinity past the largest value, as the kernel's product does. */
INLINE void bit_elements(const float *restrict x, float *restrict y, int64_t start, int64_t end,
                         const params_t *p, int st) {
    const uint32_t k0 = p->k0, k1 = p->k1;
    const int drop = 23 - p->man_bits;
    const uint32_t low_mask = (1u << drop) - 1, half = 1u << (drop - 1);
    uint32_t at = (uint32_t)start;
    for (int64_t i = start; i < end; i++, at++) {
        uint32_t bits = f2u(x[i]);
        uint32_t sign = bits & 0x80000000u, magnitude = bits & 0x7FFFFFFFu;
        uint32_t low = magnitude & low_mask, round_up;
        if (st) {
            uint32_t noise = noise_bits(at, k0, k1);
            uint32_t fraction = low << (24 - drop);
            round_up = sign ? noise >= (1u << 24) - fraction : noise < fraction;
        } else {
            round_up = low > half || (low == half && ((magnitude >> drop) & 1u));
        }
        uint32_t q = sign | ((magnitude & ~low_mask) + (round_up << drop));
        y[i] = magnitude < INF_BITS ? u2f(q) : x[i];
    }
}

/* n contiguous values (kernels.minifloat) with the rounding `st`: the formats with
 * infinities do not saturate. */
INLINE void narrow_floats(const float *x, float *y, int64_t start, int64_t end, const params_t *p,
                          int st) {
    if (p->exp_bits == 8)
        bit_elements(x, y, start, end, p, st);
    else if (p->has_inf)
        elements(x, y, start, end, p, element_of(p, st, 0, 0), 1);
    else
        elements(x, y, start, end, p, element_of(p, st, 0, 1), 0);
}

/* Element-wise narrow floats over n contiguous values. */
void hbfp_dse_quantize_elements(const float *x, float *y, int64_t n, const params_t *p,
                                int32_t threads) {
    const int64_t span = 1 << 14;
    const int64_t spans = (n + span - 1) / span;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t s = 0; s < spans; s++) {
        int64_t start = s * span, end = start + span < n ? start + span : n;
        if (p->stochastic)
            narrow_floats(x, y, start, end, p, 1);
        else
            narrow_floats(x, y, start, end, p, 0);
    }
}
