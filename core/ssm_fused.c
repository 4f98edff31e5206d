/* The selective scan fused on the CPU (core/ssm_fused.py builds and loads this file; see its docstring).
 *
 * A task advances a block of CB channels of one batch row step by step: their states h[CB][N] and the step's
 * B_t, C_t stay in L1, exp(delta * A) is computed on the fly, and nothing of size L x N per channel is stored but
 * the state entering every K-th step (ckpt). The backward pass walks the chunks from the end, recomputes each
 * chunk's states from its checkpoint, runs the adjoint recurrence g_t = C_t gy_t + dA_{t+1} g_{t+1} through them,
 * and adds a block's B and C gradients of a step once (a task owns one gB / gC slice).
 *
 * y_t = <h_t, C_t> + D u_t (the skip term fused too). Layouts: u, dt, gy [B, D, L] with any element strides
 * (strides: u's, dt's, gy's (b, d, t); y and gu take u's, gdt dt's), the rest contiguous:
 * A [D, N]; Bm, Cm [B, L, N]; Dv [D]; ckpt [B, D, NC, N]; gA [B, D, N]; gD [B, D]; gB, gC [B, P, L, N] (one
 * slice per part p of the channel blocks, summed by the caller).
 * The file is compiled twice, REAL = float (suffix _f32) and REAL = double (_f64).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#define SUF(name) name##_f32
#define EXP expf
#endif

typedef struct {
    const REAL *u, *dt, *A, *Bm, *Cm, *Dv, *gy;
    REAL *y, *ckpt, *gu, *gdt, *gA, *gB, *gC, *gD;
    long B, D, L, N, K, P;
    long su[3], sdt[3], sgy[3];  /* element strides (b, d, t) of u (and y, gu), dt (and gdt), gy */
    long next;  /* the next task (guarded by lock) */
    pthread_mutex_t lock;
} SUF(job);

#define CB 8  /* channels of a block: their states and one step's B_t, C_t stay in L1 together */
#define AT(s, b, d, t) ((b) * (s)[0] + (d) * (s)[1] + (t) * (s)[2])

static long SUF(take)(SUF(job) *j) {
    pthread_mutex_lock(&j->lock);
    long t = j->next++;
    pthread_mutex_unlock(&j->lock);
    return t;
}

/* Channels [d0, d1) of batch b, forward: h [CB * N] scratch. */
static inline __attribute__((always_inline)) void SUF(forward_block)(SUF(job) *j, long b, long d0, long d1,
                                                                      REAL *h, const long N) {
    const long L = j->L, K = j->K, NC = (L + K - 1) / K, nb = d1 - d0, base = b * j->D + d0;
    const REAL *Bb = j->Bm + b * L * N, *Cb = j->Cm + b * L * N;
    memset(h, 0, nb * N * sizeof(REAL));
    for (long t = 0; t < L; t++) {
        const REAL *Bt = Bb + t * N, *Ct = Cb + t * N;
        for (long c = 0; c < nb; c++) {
            const long bd = base + c;
            const long d = d0 + c, iu = AT(j->su, b, d, t);
            const REAL *a = j->A + d * N, del = j->dt[AT(j->sdt, b, d, t)], ut = j->u[iu], du = del * ut;
            REAL *hc = h + c * N, acc = 0;
            if (t % K == 0) memcpy(j->ckpt + (bd * NC + t / K) * N, hc, N * sizeof(REAL));
#pragma omp simd reduction(+ : acc)
            for (long n = 0; n < N; n++) {
                REAL hn = EXP(del * a[n]) * hc[n] + du * Bt[n];
                hc[n] = hn;
                acc += hn * Ct[n];
            }
            j->y[iu] = acc + j->Dv[d] * ut;
        }
    }
}

/* Channels [d0, d1) of batch b, backward, into the gB / gC slice ``p``. work: 2 K CB N + 4 CB N + 2 N. */
static inline __attribute__((always_inline)) void SUF(backward_block)(SUF(job) *j, long b, long p, long d0,
                                                                       long d1, REAL *work, const long N) {
    const long L = j->L, K = j->K, NC = (L + K - 1) / K, nb = d1 - d0, base = b * j->D + d0;
    const REAL *Bb = j->Bm + b * L * N, *Cb = j->Cm + b * L * N;
    REAL *gB = j->gB + (b * j->P + p) * L * N, *gC = j->gC + (b * j->P + p) * L * N;
    REAL *hs = work, *das = hs + K * CB * N, *carry = das + K * CB * N, *gA = carry + CB * N, *h = gA + CB * N;
    REAL *h0 = h + CB * N, *gBt_ = h0 + CB * N, *gCt_ = gBt_ + N;
    memset(carry, 0, nb * N * sizeof(REAL));
    memset(gA, 0, nb * N * sizeof(REAL));
    memset(j->gD + base, 0, nb * sizeof(REAL));
    for (long k = NC - 1; k >= 0; k--) {
        const long t0 = k * K, t1 = t0 + K < L ? t0 + K : L;
        for (long c = 0; c < nb; c++) memcpy(h0 + c * N, j->ckpt + ((base + c) * NC + k) * N, N * sizeof(REAL));
        memcpy(h, h0, nb * N * sizeof(REAL));
        for (long t = t0; t < t1; t++) {  /* the chunk's states again, from its checkpoint */
            const REAL *Bt = Bb + t * N;
            for (long c = 0; c < nb; c++) {
                const long d = d0 + c;
                const REAL *a = j->A + d * N, del = j->dt[AT(j->sdt, b, d, t)], du = del * j->u[AT(j->su, b, d, t)];
                REAL *hc = h + c * N, *ho = hs + ((t - t0) * CB + c) * N, *da = das + ((t - t0) * CB + c) * N;
#pragma omp simd
                for (long n = 0; n < N; n++) {
                    da[n] = EXP(del * a[n]);
                    hc[n] = da[n] * hc[n] + du * Bt[n];
                    ho[n] = hc[n];
                }
            }
        }
        for (long t = t1 - 1; t >= t0; t--) {
            const REAL *Bt = Bb + t * N, *Ct = Cb + t * N;
            memset(gBt_, 0, 2 * N * sizeof(REAL));
            for (long c = 0; c < nb; c++) {
                const long bd = base + c, d = d0 + c, iu = AT(j->su, b, d, t), idt = AT(j->sdt, b, d, t);
                const REAL *a = j->A + d * N, del = j->dt[idt], ut = j->u[iu], du = del * ut;
                const REAL g_y = j->gy[AT(j->sgy, b, d, t)];
                const REAL *da = das + ((t - t0) * CB + c) * N, *ht = hs + ((t - t0) * CB + c) * N;
                const REAL *hp = t > t0 ? hs + ((t - t0 - 1) * CB + c) * N : h0 + c * N;  /* h_{t-1} */
                REAL *cr = carry + c * N, *gAc = gA + c * N, sa = 0, sgb = 0;
#pragma omp simd reduction(+ : sa, sgb)
                for (long n = 0; n < N; n++) {
                    const REAL g = g_y * Ct[n] + cr[n];  /* dL/dh_t */
                    const REAL x = g * hp[n] * da[n];    /* dL/d(delta_t A_n) */
                    sa += x * a[n];
                    gAc[n] += x * del;
                    sgb += g * Bt[n];
                    gBt_[n] += g * du;
                    gCt_[n] += g_y * ht[n];
                    cr[n] = da[n] * g;
                }
                j->gdt[idt] = sa + ut * sgb;
                j->gu[iu] = del * sgb + j->Dv[d] * g_y;
                j->gD[bd] += g_y * ut;
            }
            REAL *gBt = gB + t * N, *gCt = gC + t * N;
#pragma omp simd
            for (long n = 0; n < N; n++) {
                gBt[n] += gBt_[n];
                gCt[n] += gCt_[n];
            }
        }
    }
    for (long c = 0; c < nb; c++) memcpy(j->gA + (base + c) * N, gA + c * N, N * sizeof(REAL));
}

static void *SUF(forward_worker)(void *arg) {
    SUF(job) *j = arg;
    REAL *h = malloc(CB * j->N * sizeof(REAL));
    const long blocks = (j->D + CB - 1) / CB;
    for (long t; (t = SUF(take)(j)) < j->B * blocks;) {
        const long b = t / blocks, d0 = (t % blocks) * CB, d1 = d0 + CB < j->D ? d0 + CB : j->D;
        if (j->N == 16)  /* Mamba's usual state size: a copy of the loops with N known, fully unrolled */
            SUF(forward_block)(j, b, d0, d1, h, 16);
        else
            SUF(forward_block)(j, b, d0, d1, h, j->N);
    }
    free(h);
    return NULL;
}

static void *SUF(backward_worker)(void *arg) {
    SUF(job) *j = arg;
    REAL *work = malloc((2 * j->K * CB * j->N + 4 * CB * j->N + 2 * j->N) * sizeof(REAL));
    const long blocks = (j->D + CB - 1) / CB, per = (blocks + j->P - 1) / j->P;  /* blocks of a part */
    for (long t; (t = SUF(take)(j)) < j->B * j->P;) {
        const long b = t / j->P, p = t % j->P;
        for (long k = p * per; k < (p + 1) * per && k < blocks; k++)
        {
            const long d1 = (k + 1) * CB < j->D ? (k + 1) * CB : j->D;
            if (j->N == 16)
                SUF(backward_block)(j, b, p, k * CB, d1, work, 16);
            else
                SUF(backward_block)(j, b, p, k * CB, d1, work, j->N);
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

/* This machine's limits, register-resident: `iters` x 64 lanes of exp, or of fused multiply-adds
 * (8 independent chains so latency hides); the sink keeps the compiler from dropping the work. */
REAL SUF(peak_exp)(long iters) {
    REAL x[64], s = 0;
    for (int i = 0; i < 64; i++) x[i] = -(REAL)i / 64;
    for (long k = 0; k < iters; k++) {
#pragma omp simd
        for (int i = 0; i < 64; i++) x[i] = EXP(x[i]) - (REAL)1.5;
    }
    for (int i = 0; i < 64; i++) s += x[i];
    return s;
}

REAL SUF(peak_fma)(long iters) {
    REAL x[64], s = 0;
    for (int i = 0; i < 64; i++) x[i] = (REAL)i / 64;
    for (long k = 0; k < iters; k++) {
#pragma omp simd
        for (int i = 0; i < 64; i++) x[i] = x[i] * (REAL)0.999 + (REAL)0.001;
    }
    for (int i = 0; i < 64; i++) s += x[i];
    return s;
}
