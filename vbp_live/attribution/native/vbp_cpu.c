/* VisualBackProp's deep-to-shallow pass on the CPU, in one call per batch.
 *
 * Plain C99, no Python or torch headers: compiled on first use by vbp_live.attribution.native
 * and called through ctypes (which releases the GIL). It replaces some 60 small torch ops per
 * frame (each with its own dispatch and allocation) by one loop over the images that keeps the
 * working maps in cache. The math is that of ones_kernel.py, checked against the float64
 * reference by the tests:
 *
 *   mask = map[K-1] * scale[K-1]
 *   for every step (an op of a stage, deep to shallow):
 *       mask = ones-kernel transposed op of mask            (separable: along W, then along H)
 *       if the step ends a stage k > 0: mask *= map[k-1] * scale[k-1]
 *   optionally one min-max per image.
 *
 * A step is 13 int64: mul_map, in_h, in_w, out_h, out_w, kh, kw, sh, sw, ph, pw, dh, dw
 * (mul_map = index of the map to multiply by after the op, or -1). Output index y of an axis
 * sums the inputs i with i*s + j*d == y + p for a tap 0 <= j < k, which is a transposed
 * convolution with all-ones weights whose output_padding (positive or negative) is implied by
 * out_h / out_w.
 *
 * vbp_relu_chansum_f32 is the capture side: it stands in for a stage's ReLU and writes the
 * ReLU's output and, in the same pass, the channel sum the pass above reads. Built with
 * OpenMP (only where the process already runs torch's libgomp, which this library then
 * shares), it splits the pixels of large maps over torch's threads; small maps stay on the
 * calling thread.
 */
#include <stdint.h>
#include <string.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define STEP_INTS 13

/* The hot loops are also built for AVX2 and picked at load time by the CPU they run on (GCC's
 * target_clones, through glibc's ifunc); elsewhere they are built once for the baseline. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define VBP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VBP_CLONES
#endif

/* Along W, row by row: in (rows, n) -> out (rows, t). Output x sums the inputs
 * i = (x + p - j*d) / s over the taps j where that is a whole index in [0, n). */
VBP_CLONES static void up_w(const float *in, float *out, int64_t rows, int64_t n, int64_t t,
                 int64_t k, int64_t s, int64_t p, int64_t d) {
    /* stride 1: every tap lands; in [lo, hi) all k taps are inside the row (one gather pass) */
    int64_t lo = (k - 1) * d - p, hi = n - p;
    lo = lo < 0 ? 0 : lo;
    hi = hi > t ? t : hi;
    for (int64_t r = 0; r < rows; r++) {
        const float *a = in + r * n;
        float *o = out + r * t;
        if (s == 1 && lo < hi) {
            for (int64_t x = 0; x < lo; x++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < k; j++) {
                    int64_t i = x + p - j * d;
                    if (i >= 0 && i < n) acc += a[i];
                }
                o[x] = acc;
            }
            const float *a0 = a + p;
            if (k == 3) {
                const float *a1 = a0 - d, *a2 = a0 - 2 * d;
                for (int64_t x = lo; x < hi; x++) o[x] = a0[x] + a1[x] + a2[x];
            } else if (k == 2) {
                const float *a1 = a0 - d;
                for (int64_t x = lo; x < hi; x++) o[x] = a0[x] + a1[x];
            } else {
                for (int64_t x = lo; x < hi; x++) o[x] = a0[x];
                for (int64_t j = 1; j < k; j++) {
                    const float *aj = a0 - j * d;
                    for (int64_t x = lo; x < hi; x++) o[x] += aj[x];
                }
            }
            for (int64_t x = hi; x < t; x++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < k; j++) {
                    int64_t i = x + p - j * d;
                    if (i >= 0 && i < n) acc += a[i];
                }
                o[x] = acc;
            }
            continue;
        }
        /* general stride: scatter form, one strided add per tap */
        memset(o, 0, (size_t)t * sizeof(float));
        for (int64_t j = 0; j < k; j++) {
            int64_t off = j * d - p; /* output index of input i is i*s + off */
            if (t - off <= 0) continue;
            int64_t i0 = off >= 0 ? 0 : (-off + s - 1) / s;
            int64_t i1 = (t - off + s - 1) / s;
            if (i1 > n) i1 = n;
            for (int64_t i = i0; i < i1; i++) o[i * s + off] += a[i];
        }
    }
}

/* Along H, gather form: in (n, w) -> out (t, w); each output row is the sum of its (<= k)
 * source rows, then, if mul is given, times mul * scale (the next shallower map), in one pass. */
VBP_CLONES static void up_h(const float *in, float *out, int64_t n, int64_t t, int64_t w,
                 int64_t k, int64_t s, int64_t p, int64_t d, const float *mul, float scale) {
    for (int64_t y = 0; y < t; y++) {
        float *restrict o = out + y * w;
        const float *src[3];
        int c = 0; /* source rows of output row y (counted past 3: then the general loop below) */
        for (int64_t j = 0; j < k; j++) {
            int64_t num = y + p - j * d;
            if (num < 0 || num % s || num / s >= n) continue;
            if (c < 3) src[c] = in + (num / s) * w;
            c++;
        }
        const float *m = mul ? mul + y * w : NULL;
        if (c == 0) {
            memset(o, 0, (size_t)w * sizeof(float));
        } else if (c == 1) {
            const float *r0 = src[0];
            if (m) for (int64_t x = 0; x < w; x++) o[x] = r0[x] * (m[x] * scale);
            else memcpy(o, r0, (size_t)w * sizeof(float));
        } else if (c == 2) {
            const float *r0 = src[0], *r1 = src[1];
            if (m) for (int64_t x = 0; x < w; x++) o[x] = (r0[x] + r1[x]) * (m[x] * scale);
            else for (int64_t x = 0; x < w; x++) o[x] = r0[x] + r1[x];
        } else if (c == 3) {
            const float *r0 = src[0], *r1 = src[1], *r2 = src[2];
            if (m) for (int64_t x = 0; x < w; x++) o[x] = (r0[x] + r1[x] + r2[x]) * (m[x] * scale);
            else for (int64_t x = 0; x < w; x++) o[x] = r0[x] + r1[x] + r2[x];
        } else {
            memset(o, 0, (size_t)w * sizeof(float));
            for (int64_t j = 0; j < k; j++) {
                int64_t num = y + p - j * d;
                if (num < 0 || num % s || num / s >= n) continue;
                const float *r = in + (num / s) * w;
                for (int64_t x = 0; x < w; x++) o[x] += r[x];
            }
            if (m) for (int64_t x = 0; x < w; x++) o[x] *= m[x] * scale;
        }
    }
}

/* Minimum and maximum of v[0..n) (n >= 1). SSE on x86-64 (the compiler keeps the scalar
 * ternaries below scalar, to honour NaN semantics), plain C elsewhere. */
static void scan_minmax(const float *v, int64_t n, float *lo_out, float *hi_out) {
    float lo = v[0], hi = v[0];
    int64_t i = 0;
#if defined(__SSE__) || defined(__x86_64__)
    if (n >= 16) {
        __m128 lo4a = _mm_loadu_ps(v), hi4a = lo4a, lo4b = _mm_loadu_ps(v + 4), hi4b = lo4b;
        for (; i + 8 <= n; i += 8) {
            __m128 ea = _mm_loadu_ps(v + i), eb = _mm_loadu_ps(v + i + 4);
            lo4a = _mm_min_ps(lo4a, ea);
            hi4a = _mm_max_ps(hi4a, ea);
            lo4b = _mm_min_ps(lo4b, eb);
            hi4b = _mm_max_ps(hi4b, eb);
        }
        float l[8], h[8];
        _mm_storeu_ps(l, _mm_min_ps(lo4a, lo4b));
        _mm_storeu_ps(h, _mm_max_ps(hi4a, hi4b));
        for (int j = 0; j < 4; j++) {
            lo = l[j] < lo ? l[j] : lo;
            hi = h[j] > hi ? h[j] : hi;
        }
    }
#endif
    for (; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
}

/* One min-max per image, in place: [lo, hi] -> [0, 1]; a constant image becomes zeros. */
VBP_CLONES static void minmax(float *v, int64_t n) {
    float lo, hi;
    scan_minmax(v, n, &lo, &hi);
    float span = hi - lo;
    if (!(span > 0.0f)) {
        memset(v, 0, (size_t)n * sizeof(float));
        return;
    }
    float inv = 1.0f / span;
    for (int64_t i = 0; i < n; i++) v[i] = (v[i] - lo) * inv;
}

/* Floats of workspace the steps need: two ping-pong maps and the W-pass buffer. */
static int64_t workspace_floats(int64_t n_maps, const int64_t *map_h, const int64_t *map_w,
                                const int64_t *steps, int64_t n_steps, int64_t *cap_out, int64_t *tmp_out) {
    int64_t cap = map_h[n_maps - 1] * map_w[n_maps - 1], tmp_cap = 1;
    for (int64_t q = 0; q < n_steps; q++) {
        const int64_t *st = steps + q * STEP_INTS;
        if (st[1] * st[4] > tmp_cap) tmp_cap = st[1] * st[4];
        if (st[3] * st[4] > cap) cap = st[3] * st[4];
    }
    *cap_out = cap;
    *tmp_out = tmp_cap;
    return 2 * cap + tmp_cap;
}

int64_t vbp_workspace_floats(int64_t n_maps, const int64_t *map_h, const int64_t *map_w,
                             const int64_t *steps, int64_t n_steps) {
    int64_t cap, tmp;
    return workspace_floats(n_maps, map_h, map_w, steps, n_steps, &cap, &tmp);
}

/* Returns 0 on success, 1 if the steps do not chain (sizes disagree), 3 if the workspace is
 * too small. maps[m] points at image 0 of map m, shaped (batch, map_h[m], map_w[m]),
 * contiguous; out is (batch, out_h, out_w); workspace has vbp_workspace_floats() floats
 * (the caller keeps it: allocating it per call costs page faults on every call). */
int vbp_backprop_f32(int64_t batch, int64_t n_maps, const float *const *maps, const int64_t *map_h,
                     const int64_t *map_w, const float *scales, const int64_t *steps, int64_t n_steps,
                     float *out, int64_t out_h, int64_t out_w, int normalize, float *workspace,
                     int64_t workspace_len) {
    int64_t h = map_h[n_maps - 1], w = map_w[n_maps - 1], cap, tmp_cap;
    for (int64_t q = 0; q < n_steps; q++) {
        const int64_t *st = steps + q * STEP_INTS;
        if (st[1] != h || st[2] != w) return 1;
        h = st[3];
        w = st[4];
        if (st[0] >= n_maps || (st[0] >= 0 && (map_h[st[0]] != h || map_w[st[0]] != w))) return 1;
    }
    if (h != out_h || w != out_w) return 1;
    if (workspace_floats(n_maps, map_h, map_w, steps, n_steps, &cap, &tmp_cap) > workspace_len) return 3;
    float *a = workspace, *b = workspace + cap, *tmp = workspace + 2 * cap;
    for (int64_t img = 0; img < batch; img++) {
        int64_t last = n_maps - 1, n0 = map_h[last] * map_w[last];
        const float *deep = maps[last] + img * n0;
        for (int64_t i = 0; i < n0; i++) a[i] = deep[i] * scales[last];
        float *cur = a, *nxt = b;
        float *dst_final = out + img * out_h * out_w;
        for (int64_t q = 0; q < n_steps; q++) {
            const int64_t *st = steps + q * STEP_INTS;
            int64_t mi = st[0];
            const float *mul = mi >= 0 ? maps[mi] + img * map_h[mi] * map_w[mi] : NULL;
            float *dst = q == n_steps - 1 ? dst_final : nxt;
            up_w(cur, tmp, st[1], st[2], st[4], st[6], st[8], st[10], st[12]);
            up_h(tmp, dst, st[1], st[3], st[4], st[5], st[7], st[9], st[11], mul, mi >= 0 ? scales[mi] : 1.0f);
            nxt = cur;
            cur = dst;
        }
        if (n_steps == 0) memcpy(dst_final, cur, (size_t)n0 * sizeof(float));
        if (normalize) minmax(dst_final, out_h * out_w);
    }
    return 0;
}


/* ---- capture side: ReLU and channel sum in one pass ---------------------------------------- */

#define RELU_TILE 1024 /* pixels per task: the running sum (4 KB) stays in L1 */

static inline float relu1(float v) { return v < 0.0f ? 0.0f : v; } /* as torch: NaN and -0.0 kept */

/* Four channels at a time (four input and four output streams, one running sum). */
static void relu4_copy(const float *restrict x0, const float *restrict x1, const float *restrict x2,
                       const float *restrict x3, float *restrict y0, float *restrict y1, float *restrict y2,
                       float *restrict y3, float *restrict acc, int64_t m) {
    for (int64_t p = 0; p < m; p++) {
        float a = relu1(x0[p]), b = relu1(x1[p]), c = relu1(x2[p]), d = relu1(x3[p]);
        y0[p] = a; y1[p] = b; y2[p] = c; y3[p] = d;
        acc[p] += (a + b) + (c + d);
    }
}

static void relu4_inplace(float *restrict x0, float *restrict x1, float *restrict x2, float *restrict x3,
                          float *restrict acc, int64_t m) {
    for (int64_t p = 0; p < m; p++) {
        float a = relu1(x0[p]), b = relu1(x1[p]), c = relu1(x2[p]), d = relu1(x3[p]);
        x0[p] = a; x1[p] = b; x2[p] = c; x3[p] = d;
        acc[p] += (a + b) + (c + d);
    }
}

/* Pixels [p0, p0 + m) of one image: y = relu(x) channel by channel, sum[p] = sum over channels. */
VBP_CLONES static void relu_chansum_tile(const float *x, float *y, float *sum, int64_t c, int64_t hw, int64_t p0, int64_t m) {
    float acc[RELU_TILE];
    for (int64_t p = 0; p < m; p++) acc[p] = 0.0f;
    int64_t k = 0;
    for (; k + 4 <= c; k += 4) {
        const float *xk = x + k * hw + p0;
        float *yk = y + k * hw + p0;
        if (xk == yk)
            relu4_inplace(yk, yk + hw, yk + 2 * hw, yk + 3 * hw, acc, m);
        else
            relu4_copy(xk, xk + hw, xk + 2 * hw, xk + 3 * hw, yk, yk + hw, yk + 2 * hw, yk + 3 * hw, acc, m);
    }
    for (; k < c; k++) {
        const float *xk = x + k * hw + p0;
        float *yk = y + k * hw + p0;
        for (int64_t p = 0; p < m; p++) {
            float a = relu1(xk[p]);
            yk[p] = a;
            acc[p] += a;
        }
    }
    memcpy(sum + p0, acc, (size_t)m * sizeof(float));
}

/* Task t of the flattened (image, pixel tile) grid. */
static inline void relu_chansum_task(const float *x, float *y, float *sum, int64_t c, int64_t hw, int64_t tiles,
                                     int64_t t) {
    int64_t img = t / tiles, p0 = (t % tiles) * RELU_TILE;
    int64_t m = hw - p0 < RELU_TILE ? hw - p0 : RELU_TILE;
    relu_chansum_tile(x + img * c * hw, y + img * c * hw, sum + img * hw, c, hw, p0, m);
}

/* y = relu(x) (y may be x: in place) and sum = its channel sum, for contiguous (batch, c, hw)
 * x and y and (batch, hw) sum; n_threads > 1 splits the pixels when built with OpenMP (the
 * caller passes 1 for small maps: waking a second thread costs more than it saves there). */
void vbp_relu_chansum_f32(const float *x, float *y, float *sum, int64_t batch, int64_t c, int64_t hw,
                          int n_threads) {
    int64_t tiles = (hw + RELU_TILE - 1) / RELU_TILE, n = batch * tiles;
#ifdef _OPENMP
    if (n_threads > 1 && n > 1) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
        for (int64_t t = 0; t < n; t++) {
            relu_chansum_task(x, y, sum, c, hw, tiles, t);
        }
        return;
    }
#else
    (void)n_threads; /* one thread without OpenMP */
#endif
    for (int64_t t = 0; t < n; t++) { /* serial: no OpenMP region is entered at all */
        relu_chansum_task(x, y, sum, c, hw, tiles, t);
    }
}

/* 1 if built with OpenMP (vbp_relu_chansum_f32 can use several threads), else 0. */
int vbp_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
