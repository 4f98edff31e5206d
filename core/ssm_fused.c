/* The selective scan fused on the CPU (core/ssm_fused.py builds and loads this file; see its docstring).
 *
 * Lanes run over channels: a vector holds VW channels d of one batch row (VW = 16 floats with AVX-512, 8 with
 * AVX2), so the recurrence h_t[n] = exp(delta_t A[:, n]) * h_{t-1}[n] + delta_t u_t B_t[n] is N vector
 * updates per step with B_t[n], C_t[n] broadcast, and the read-out y_t = sum_n h_t[n] C_t[n] + D u_t adds
 * vectors (no sum across lanes). The state of a block (N vectors) stays in registers, exp is computed on the
 * fly, and nothing of size L x N per channel is stored but the state entering every K-th step (ckpt).
 *
 * The backward pass walks the chunks from the end; per chunk, each block of the task recomputes its states from
 * the checkpoint, runs the adjoint g_t = C_t gy_t + dA_{t+1} g_{t+1} through them and adds its lanes' terms of
 * B's and C's gradients (sums over channels) into per-chunk vectors, which are summed across lanes once per
 * chunk, after all the task's blocks: a task owns one gB / gC slice.
 *
 * Layouts: u, dt, gy [B, D, L] with any element strides (strides: u's, dt's, gy's (b, d, t); y and gu take
 * u's, gdt dt's); the rest contiguous: A [D, N]; Bm, Cm [B, L, N]; Dv [D]; ckpt [B, D/VW, NC, N, VW];
 * gA [B, D, N]; gD [B, D]; gB, gC [B, P, L, N] (one slice per part p of the channel blocks, summed by the caller).
 * Per chunk, a block's u, delta (and gy) are gathered into [K][VW] tiles, its outputs scattered back, so any
 * layout costs O(B L D) scalar moves against the O(B L D N) vector work. Lanes past D compute on zeros.
 * The file is compiled twice, REAL = float (suffix _f32, exp by an inline polynomial) and REAL = double
 * (_f64, libm's exp lane by lane: the precision gradcheck needs).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#define SUF(name) name##_f32
#define EXP expf
#define POLY_EXP 1
#endif

#ifndef SSM_FUSED_ONCE
#define SSM_FUSED_ONCE
#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
#define AT(s, b, d, t) ((b) * (s)[0] + (d) * (s)[1] + (t) * (s)[2])
#define MIN(a, b) ((a) < (b) ? (a) : (b))
/* __builtin_prefetch wants its read / write flag as a constant (a macro: the same code as writing both out) */
#define TOUCH(p, rw) do { if (rw) __builtin_prefetch((p), 1); else __builtin_prefetch((p), 0); } while (0)
#endif

typedef REAL SUF(vec) __attribute__((vector_size(VBYTES)));
#define VEC SUF(vec)
#define VW ((long)(VBYTES / sizeof(REAL)))

#ifdef POLY_EXP
typedef int SUF(ivec) __attribute__((vector_size(VBYTES)));

/* exp on float lanes: x = n ln2 + r (|r| <= ln2 / 2, Cody-Waite), exp(r) by its Taylor polynomial of degree 6
 * (relative error < 2e-7), times 2^n through the exponent bits; x clamped to [-87, 88] (exp(-87) ~ 1.6e-38
 * stands for 0). About a dozen vector instructions, inline: no call spills the state registers. */
static inline VEC SUF(vexp)(VEC x) {
    const VEC zero = {0};
    const SUF(ivec) low = x < -87.0f, high = x > 88.0f;
    x = (VEC)(((SUF(ivec))(zero - 87.0f) & low) | ((SUF(ivec))x & ~low));
    x = (VEC)(((SUF(ivec))(zero + 88.0f) & high) | ((SUF(ivec))x & ~high));
    const VEC t = x * 1.44269504f + 12582912.0f;  /* 1.5 * 2^23: round(x / ln2) lands in t's low bits */
    const SUF(ivec) n = (SUF(ivec))t - 0x4B400000;
    const VEC nf = __builtin_convertvector(n, VEC);
    const VEC r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    VEC p = zero + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return (VEC)((SUF(ivec))p + (n << 23));
}
#else
static inline VEC SUF(vexp)(VEC x) {
    VEC r;
    for (long i = 0; i < VW; i++) r[i] = EXP(x[i]);
    return r;
}
#endif

/* out[n] += sum over the lanes of v[n], n < N, lane by lane. */
static inline __attribute__((always_inline)) void SUF(add_lane_sums_each)(REAL *out, const VEC *v, const long N) {
    for (long n = 0; n < N; n++) {
        REAL s = 0;
        for (long c = 0; c < VW; c++) s += v[n][c];
        out[n] += s;
    }
}

/* add_lane_sums: the same sums, by a tree of shuffles where the vector holds 16 floats and N is a multiple of 16
 * (v[0 .. 15] folded pairwise, half a segment onto the other, into one vector of 16 sums), lane by lane otherwise. */
#if defined(POLY_EXP) && VBYTES == 64
static inline __attribute__((always_inline)) VEC SUF(fold)(VEC a, VEC b, int w) {
    const SUF(ivec) iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const SUF(ivec) lo = (iota & ~w) | (((iota & w) != 0) & 16), hi = lo + w;
    return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi);
}

static inline __attribute__((always_inline)) void SUF(add_lane_sums)(REAL *out, const VEC *v, const long N) {
    if (N % 16) {
        SUF(add_lane_sums_each)(out, v, N);
        return;
    }
    for (long g = 0; g < N; g += 16, v += 16) {  /* pairs in bit-reversed order: lane q ends with v[q]'s sum */
        const VEC x0 = SUF(fold)(v[0], v[8], 8), x1 = SUF(fold)(v[4], v[12], 8), x2 = SUF(fold)(v[2], v[10], 8);
        const VEC x3 = SUF(fold)(v[6], v[14], 8), x4 = SUF(fold)(v[1], v[9], 8), x5 = SUF(fold)(v[5], v[13], 8);
        const VEC x6 = SUF(fold)(v[3], v[11], 8), x7 = SUF(fold)(v[7], v[15], 8);
        const VEC y0 = SUF(fold)(x0, x1, 4), y1 = SUF(fold)(x2, x3, 4), y2 = SUF(fold)(x4, x5, 4);
        const VEC y3 = SUF(fold)(x6, x7, 4);
        VEC r, o;
        r = SUF(fold)(SUF(fold)(y0, y1, 2), SUF(fold)(y2, y3, 2), 1);
        memcpy(&o, out + g, sizeof o);
        o += r;
        memcpy(out + g, &o, sizeof o);
    }
}
#else
static inline __attribute__((always_inline)) void SUF(add_lane_sums)(REAL *out, const VEC *v, const long N) {
    SUF(add_lane_sums_each)(out, v, N);
}
#endif

typedef struct {
    const REAL *u, *dt, *A, *Bm, *Cm, *Dv, *gy;
    REAL *y, *ckpt, *gu, *gdt, *gA, *gB, *gC, *gD;
    long B, D, L, N, K, P;
    long su[3], sdt[3], sgy[3];  /* element strides (b, d, t) of u (and y, gu), dt (and gdt), gy */
    long next;  /* the next task (guarded by lock) */
    pthread_mutex_t lock;
} SUF(job);

static long SUF(take)(SUF(job) *j) {
    pthread_mutex_lock(&j->lock);
    long t = j->next++;
    pthread_mutex_unlock(&j->lock);
    return t;
}

/* Steps [t0, t1) of channels [d0, d0 + nb) of batch b from x (strides s) into tile[t - t0] (zeros past nb): one
 * vector load a step where channels are adjacent in memory (Mamba's [B, L, D]), else element by element. */
static void SUF(gather)(VEC *tile, const REAL *x, const long *s, long b, long d0, long nb, long t0, long t1) {
    if (s[1] == 1 && nb == VW) {
        for (long t = t0; t < t1; t++) memcpy(tile + t - t0, x + AT(s, b, d0, t), sizeof(VEC));
        return;
    }
    REAL *out = (REAL *)tile;  /* lanes written as scalars: a vector's element stored alone stalls its reload */
    memset(tile, 0, (t1 - t0) * sizeof(VEC));
    for (long c = 0; c < nb; c++)
        for (long t = t0; t < t1; t++) out[(t - t0) * VW + c] = x[AT(s, b, d0 + c, t)];
}

static void SUF(scatter)(REAL *x, const VEC *tile, const long *s, long b, long d0, long nb, long t0, long t1) {
    if (s[1] == 1 && nb == VW) {
        for (long t = t0; t < t1; t++) memcpy(x + AT(s, b, d0, t), tile + t - t0, sizeof(VEC));
        return;
    }
    const REAL *in = (const REAL *)tile;
    for (long c = 0; c < nb; c++)
        for (long t = t0; t < t1; t++) x[AT(s, b, d0 + c, t)] = in[(t - t0) * VW + c];
}

/* Ask the caches for what gather (rw 0) or scatter (rw 1) will touch at steps [t0, t1): the backward pass walks
 * its chunks from the end, a direction the hardware prefetchers do not follow across chunks. */
static void SUF(prefetch)(const REAL *x, const long *s, long b, long d0, long nb, long t0, long t1, int rw) {
    const long line = 64 / sizeof(REAL);
    if (s[1] == 1 && nb == VW) {
        for (long t = t0; t < t1; t++) TOUCH(x + AT(s, b, d0, t), rw);
    } else if (s[2] == 1) {
        for (long c = 0; c < nb; c++)
            for (long t = t0; t < t1; t += line) TOUCH(x + AT(s, b, d0 + c, t), rw);
    }
}

/* A[d0 + c, n] as aT[n][c] and D[d0 + c] as *dv (zeros past nb). */
static void SUF(block_params)(const SUF(job) *j, long d0, long nb, VEC *aT, VEC *dv, const long N) {
    REAL *a = (REAL *)aT, *d = (REAL *)dv;  /* lanes as scalars (see gather) */
    memset(aT, 0, N * sizeof(VEC));
    memset(dv, 0, sizeof(VEC));
    for (long c = 0; c < nb; c++) {
        for (long n = 0; n < N; n++) a[n * VW + c] = j->A[(d0 + c) * N + n];
        d[c] = j->Dv[d0 + c];
    }
}

static inline REAL *SUF(ckpt_at)(const SUF(job) *j, long b, long blk, long k) {
    const long NC = (j->L + j->K - 1) / j->K, blocks = (j->D + VW - 1) / VW;
    return j->ckpt + ((b * blocks + blk) * NC + k) * j->N * VW;
}

/* Forward of block blk of batch b. tiles: 3 K vectors. */
static inline __attribute__((always_inline)) void SUF(forward_block)(SUF(job) *j, long b, long blk, VEC *tiles,
                                                                      const long N) {
    const long L = j->L, K = j->K, d0 = blk * VW, nb = MIN(VW, j->D - d0);
    const REAL *Bb = j->Bm + b * L * N, *Cb = j->Cm + b * L * N;
    VEC *ut = tiles, *dtt = ut + K, *yt = dtt + K, aT[N], h[N], dv;
    SUF(block_params)(j, d0, nb, aT, &dv, N);
    memset(h, 0, sizeof h);
    for (long k = 0, t0 = 0; t0 < L; k++, t0 += K) {
        const long t1 = MIN(t0 + K, L);
        SUF(gather)(ut, j->u, j->su, b, d0, nb, t0, t1);
        SUF(gather)(dtt, j->dt, j->sdt, b, d0, nb, t0, t1);
        memcpy(SUF(ckpt_at)(j, b, blk, k), h, sizeof h);
        for (long t = t0; t < t1; t++) {
            const REAL *Bt = Bb + t * N, *Ct = Cb + t * N;
            const VEC del = dtt[t - t0], uu = ut[t - t0], du = del * uu;
            VEC acc[4] = {dv * uu};  /* four partial sums: a chain of N / 4 dependent adds per step, not N */
#pragma GCC unroll 16
            for (long n = 0; n < N; n++) {
                h[n] = SUF(vexp)(del * aT[n]) * h[n] + du * Bt[n];
                acc[n % 4] += h[n] * Ct[n];
            }
            yt[t - t0] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
        SUF(scatter)(j->y, yt, j->su, b, d0, nb, t0, t1);
    }
}

/* The per-worker scratch of the backward pass, in vectors. */
static long SUF(backward_scratch)(const SUF(job) *j) { return 2 * j->K * j->N + 5 * j->K + 7 * j->N; }

/* Backward of block blk of batch b, adding its B and C gradients (sums over its lanes) into the slice p. */
static inline __attribute__((always_inline)) void SUF(backward_block)(SUF(job) *j, long b, long p, long blk,
                                                                       VEC *work, const long N) {
    const long L = j->L, K = j->K, NC = (L + K - 1) / K, d0 = blk * VW, nb = MIN(VW, j->D - d0);
    const REAL *Bb = j->Bm + b * L * N, *Cb = j->Cm + b * L * N;
    REAL *gB = j->gB + (b * j->P + p) * L * N, *gC = j->gC + (b * j->P + p) * L * N;
    VEC *hs = work, *das = hs + K * N, *ut = das + K * N, *dtt = ut + K, *gyt = dtt + K, *gut = gyt + K;
    VEC *gdtt = gut + K, *aT = gdtt + K, *h0 = aT + N, *h = h0 + N, *cr = h + N, *ga = cr + N, *pb = ga + N;
    VEC *pc = pb + N, dv, gd = {0};
    SUF(block_params)(j, d0, nb, aT, &dv, N);
    memset(cr, 0, 2 * N * sizeof(VEC));
    for (long k = NC - 1; k >= 0; k--) {
        const long t0 = k * K, t1 = MIN(t0 + K, L), len = t1 - t0;
        SUF(gather)(ut, j->u, j->su, b, d0, nb, t0, t1);
        SUF(gather)(dtt, j->dt, j->sdt, b, d0, nb, t0, t1);
        SUF(gather)(gyt, j->gy, j->sgy, b, d0, nb, t0, t1);
        memcpy(h0, SUF(ckpt_at)(j, b, blk, k), N * sizeof(VEC));
        memcpy(h, h0, N * sizeof(VEC));
        if (k > 0) {  /* the next chunk's inputs and outputs, while this one computes */
            const long p0 = t0 - K;
            SUF(prefetch)(j->u, j->su, b, d0, nb, p0, t0, 0);
            SUF(prefetch)(j->dt, j->sdt, b, d0, nb, p0, t0, 0);
            SUF(prefetch)(j->gy, j->sgy, b, d0, nb, p0, t0, 0);
            SUF(prefetch)(j->gu, j->su, b, d0, nb, p0, t0, 1);
            SUF(prefetch)(j->gdt, j->sdt, b, d0, nb, p0, t0, 1);
        }
        for (long s = 0; s < len; s++) {  /* the chunk's states again, from its checkpoint */
            const REAL *Bt = Bb + (t0 + s) * N;
            const VEC del = dtt[s], du = del * ut[s];
#pragma GCC unroll 16
            for (long n = 0; n < N; n++) {
                const VEC da = SUF(vexp)(del * aT[n]);
                h[n] = da * h[n] + du * Bt[n];
                hs[s * N + n] = h[n];
                das[s * N + n] = da;
            }
        }
        for (long s = len - 1; s >= 0; s--) {
            const REAL *Bt = Bb + (t0 + s) * N, *Ct = Cb + (t0 + s) * N;
            REAL *gBt = gB + (t0 + s) * N, *gCt = gC + (t0 + s) * N;
            const VEC del = dtt[s], uu = ut[s], du = del * uu, g_y = gyt[s];
            const VEC *hp = s > 0 ? hs + (s - 1) * N : h0, *ht = hs + s * N, *da = das + s * N;
            VEC sa[2] = {{0}}, sgb[2] = {{0}};
#pragma GCC unroll 16
            for (long n = 0; n < N; n++) {
                const VEC g = g_y * Ct[n] + cr[n];  /* dL/dh_t */
                const VEC x = g * hp[n] * da[n];    /* dL/d(delta_t A_n) */
                sa[n % 2] += x * aT[n];
                ga[n] += x * del;
                sgb[n % 2] += g * Bt[n];
                pb[n] = g * du;
                pc[n] = g_y * ht[n];
                cr[n] = da[n] * g;
            }
            SUF(add_lane_sums)(gBt, pb, N);  /* sums over the channels */
            SUF(add_lane_sums)(gCt, pc, N);
            const VEC sa_ = sa[0] + sa[1], sgb_ = sgb[0] + sgb[1];
            gdtt[s] = sa_ + uu * sgb_;
            gut[s] = del * sgb_ + dv * g_y;
            gd += g_y * uu;
        }
        SUF(scatter)(j->gu, gut, j->su, b, d0, nb, t0, t1);
        SUF(scatter)(j->gdt, gdtt, j->sdt, b, d0, nb, t0, t1);
    }
    for (long c = 0; c < nb; c++) {
        for (long n = 0; n < N; n++) j->gA[(b * j->D + d0 + c) * N + n] = ga[n][c];
        j->gD[b * j->D + d0 + c] = gd[c];
    }
}

static void *SUF(forward_worker)(void *arg) {
    SUF(job) *j = arg;
    VEC *tiles = aligned_alloc(VBYTES, 3 * j->K * sizeof(VEC));
    const long blocks = (j->D + VW - 1) / VW;
    for (long t; (t = SUF(take)(j)) < j->B * blocks;) {
        if (j->N == 16)  /* Mamba's usual state size: a copy of the loops with N known, fully unrolled */
            SUF(forward_block)(j, t / blocks, t % blocks, tiles, 16);
        else
            SUF(forward_block)(j, t / blocks, t % blocks, tiles, j->N);
    }
    free(tiles);
    return NULL;
}

static void *SUF(backward_worker)(void *arg) {
    SUF(job) *j = arg;
    const long blocks = (j->D + VW - 1) / VW, per = (blocks + j->P - 1) / j->P;  /* blocks of a part */
    VEC *work = aligned_alloc(VBYTES, SUF(backward_scratch)(j) * sizeof(VEC));
    for (long t; (t = SUF(take)(j)) < j->B * j->P;) {
        const long b = t / j->P, p = t % j->P;
        for (long blk = p * per; blk < MIN((p + 1) * per, blocks); blk++) {
            if (j->N == 16)
                SUF(backward_block)(j, b, p, blk, work, 16);
            else
                SUF(backward_block)(j, b, p, blk, work, j->N);
        }
    }
    free(work);
    return NULL;
}

static void SUF(run)(SUF(job) *j, void *(*worker)(void *), int threads) {
    pthread_mutex_init(&j->lock, NULL);
    j->next = 0;
    pthread_t *ids = malloc(threads * sizeof(pthread_t));
    for (int i = 1; i < threads; i++) pthread_create(&ids[i], NULL, worker, j);
    worker(j);
    for (int i = 1; i < threads; i++) pthread_join(ids[i], NULL);
    free(ids);
    pthread_mutex_destroy(&j->lock);
}

long SUF(vector_width)(void) { return VW; }

void SUF(ssm_forward)(const REAL *u, const REAL *dt, const REAL *A, const REAL *Bm, const REAL *Cm, const REAL *Dv,
                      REAL *y, REAL *ckpt, const long *strides, long B, long D, long L, long N, long K,
                      int threads) {
    SUF(job) j = {.u = u, .dt = dt, .A = A, .Bm = Bm, .Cm = Cm, .Dv = Dv, .y = y, .ckpt = ckpt,
                  .B = B, .D = D, .L = L, .N = N, .K = K, .P = 1};
    memcpy(j.su, strides, 3 * sizeof(long));
    memcpy(j.sdt, strides + 3, 3 * sizeof(long));
    SUF(run)(&j, SUF(forward_worker), threads);
}

/* gB and gC must come zeroed; every other output is written whole. */
void SUF(ssm_backward)(const REAL *u, const REAL *dt, const REAL *A, const REAL *Bm, const REAL *Cm,
                       const REAL *Dv, const REAL *ckpt, const REAL *gy, REAL *gu, REAL *gdt, REAL *gA, REAL *gB,
                       REAL *gC, REAL *gD, const long *strides, long B, long D, long L, long N, long K, long P,
                       int threads) {
    SUF(job) j = {.u = u, .dt = dt, .A = A, .Bm = Bm, .Cm = Cm, .Dv = Dv, .ckpt = ckpt, .gy = gy, .gu = gu,
                  .gdt = gdt, .gA = gA, .gB = gB, .gC = gC, .gD = gD, .B = B, .D = D, .L = L, .N = N, .K = K,
                  .P = P};
    memcpy(j.su, strides, 3 * sizeof(long));
    memcpy(j.sdt, strides + 3, 3 * sizeof(long));
    memcpy(j.sgy, strides + 6, 3 * sizeof(long));
    SUF(run)(&j, SUF(backward_worker), threads);
}

/* This machine's limits for the kernel's own instructions, register-resident: `iters` x 8 vectors of exp, or of
 * fused multiply-adds (8 independent chains so latency hides); the sink keeps the compiler from dropping the
 * work. Lanes per call: 8 x iters x vector_width. */
REAL SUF(peak_exp)(long iters) {
    VEC x[8];
    REAL s = 0;
    for (int i = 0; i < 8; i++)
        for (long c = 0; c < VW; c++) x[i][c] = -(REAL)(i * VW + c) / (8 * VW);
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 8; i++) x[i] = SUF(vexp)(x[i]) - (REAL)1.5;
    for (int i = 0; i < 8; i++)
        for (long c = 0; c < VW; c++) s += x[i][c];
    return s;
}

REAL SUF(peak_fma)(long iters) {
    VEC x[8];
    REAL s = 0;
    for (int i = 0; i < 8; i++)
        for (long c = 0; c < VW; c++) x[i][c] = (REAL)(i * VW + c) / (8 * VW);
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 8; i++) x[i] = x[i] * (REAL)0.999 + (REAL)0.001;
    for (int i = 0; i < 8; i++)
        for (long c = 0; c < VW; c++) s += x[i][c];
    return s;
}

#undef VEC
#undef VW
#ifdef POLY_EXP
#undef POLY_EXP
#endif
