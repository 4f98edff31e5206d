/* The selective scan fused on the CPU (core/ssm_fused.py builds and loads this file; see its docstring).
 *
 * One task per (batch, channel block): the state h[N] of a channel stays in cache, exp(delta * A) is computed on
 * the fly, and nothing of size L x N is stored but the state entering every K-th step (ckpt). The backward pass
 * walks the chunks from the end, recomputes each chunk's states from its checkpoint, and runs the adjoint
 * recurrence g_t = C_t gy_t + dA_{t+1} g_{t+1} through them.
 *
 * Layouts (contiguous): u, dt, y, gu, gdt [B, D, L]; A [D, N]; Bm, Cm [B, L, N]; ckpt [B, D, NC, N];
 * gA [B, D, N]; gB, gC [B, P, L, N] (one slice per channel block p, summed by the caller).
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
    const REAL *u, *dt, *A, *Bm, *Cm, *gy;
    REAL *y, *ckpt, *gu, *gdt, *gA, *gB, *gC;
    long B, D, L, N, K, P;
    long next;  /* the next task (guarded by lock) */
    pthread_mutex_t lock;
} SUF(job);

static long SUF(take)(SUF(job) *j) {
    pthread_mutex_lock(&j->lock);
    long t = j->next++;
    pthread_mutex_unlock(&j->lock);
    return t;
}

static void SUF(forward_channel)(SUF(job) *j, long b, long d, REAL *h) {
    const long L = j->L, N = j->N, K = j->K, NC = (L + K - 1) / K, bd = b * j->D + d;
    const REAL *a = j->A + d * N, *u = j->u + bd * L, *dt = j->dt + bd * L;
    const REAL *Bb = j->Bm + b * L * N, *Cb = j->Cm + b * L * N;
    REAL *y = j->y + bd * L, *ck = j->ckpt + bd * NC * N;
    memset(h, 0, N * sizeof(REAL));
    for (long t = 0; t < L; t++) {
        if (t % K == 0) memcpy(ck + (t / K) * N, h, N * sizeof(REAL));
        const REAL del = dt[t], du = del * u[t], *Bt = Bb + t * N, *Ct = Cb + t * N;
        REAL acc = 0;
#pragma omp simd reduction(+ : acc)
        for (long n = 0; n < N; n++) {
            REAL hn = EXP(del * a[n]) * h[n] + du * Bt[n];
            h[n] = hn;
            acc += hn * Ct[n];
        }
        y[t] = acc;
    }
}

static void SUF(backward_channel)(SUF(job) *j, long b, long p, long d, REAL *work) {
    const long L = j->L, N = j->N, K = j->K, NC = (L + K - 1) / K, bd = b * j->D + d;
    const REAL *a = j->A + d * N, *u = j->u + bd * L, *dt = j->dt + bd * L, *gy = j->gy + bd * L;
    const REAL *Bb = j->Bm + b * L * N, *Cb = j->Cm + b * L * N, *ck = j->ckpt + bd * NC * N;
    REAL *gu = j->gu + bd * L, *gdt = j->gdt + bd * L, *gA = j->gA + bd * N;
    REAL *gB = j->gB + (b * j->P + p) * L * N, *gC = j->gC + (b * j->P + p) * L * N;
    REAL *hs = work, *das = work + K * N, *carry = work + 2 * K * N, *h = work + 2 * K * N + N;
    memset(carry, 0, N * sizeof(REAL));
    memset(gA, 0, N * sizeof(REAL));
    for (long c = NC - 1; c >= 0; c--) {
        const long t0 = c * K, t1 = t0 + K < L ? t0 + K : L;
        memcpy(h, ck + c * N, N * sizeof(REAL));
        for (long t = t0; t < t1; t++) {  /* the chunk's states again, from its checkpoint */
            const REAL del = dt[t], du = del * u[t], *Bt = Bb + t * N;
            REAL *ho = hs + (t - t0) * N, *da = das + (t - t0) * N;
#pragma omp simd
            for (long n = 0; n < N; n++) {
                da[n] = EXP(del * a[n]);
                h[n] = da[n] * h[n] + du * Bt[n];
                ho[n] = h[n];
            }
        }
        for (long t = t1 - 1; t >= t0; t--) {
            const REAL del = dt[t], ut = u[t], du = del * ut, g_y = gy[t];
            const REAL *Bt = Bb + t * N, *Ct = Cb + t * N, *da = das + (t - t0) * N, *ht = hs + (t - t0) * N;
            const REAL *hp = t > t0 ? hs + (t - t0 - 1) * N : ck + c * N;  /* h_{t-1} */
            REAL *gBt = gB + t * N, *gCt = gC + t * N;
            REAL sa = 0, sgb = 0;
#pragma omp simd reduction(+ : sa, sgb)
            for (long n = 0; n < N; n++) {
                const REAL g = g_y * Ct[n] + carry[n];  /* dL/dh_t */
                const REAL x = g * hp[n] * da[n];       /* dL/d(delta_t A_n) */
                sa += x * a[n];
                gA[n] += x * del;
                sgb += g * Bt[n];
                gBt[n] += g * du;
                gCt[n] += g_y * ht[n];
                carry[n] = da[n] * g;
            }
            gdt[t] = sa + ut * sgb;
            gu[t] = del * sgb;
        }
    }
}

static void *SUF(forward_worker)(void *arg) {
    SUF(job) *j = arg;
    REAL *h = malloc(j->N * sizeof(REAL));
    for (long t; (t = SUF(take)(j)) < j->B * j->D;) SUF(forward_channel)(j, t / j->D, t % j->D, h);
    free(h);
    return NULL;
}

static void *SUF(backward_worker)(void *arg) {
    SUF(job) *j = arg;
    REAL *work = malloc((2 * j->K * j->N + 2 * j->N) * sizeof(REAL));
    const long per = (j->D + j->P - 1) / j->P;  /* channels of a block */
    for (long t; (t = SUF(take)(j)) < j->B * j->P;) {
        const long b = t / j->P, p = t % j->P, end = (p + 1) * per < j->D ? (p + 1) * per : j->D;
        for (long d = p * per; d < end; d++) SUF(backward_channel)(j, b, p, d, work);
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

void SUF(ssm_forward)(const REAL *u, const REAL *dt, const REAL *A, const REAL *Bm, const REAL *Cm, REAL *y,
                      REAL *ckpt, long B, long D, long L, long N, long K, int threads) {
    SUF(job) j = {.u = u, .dt = dt, .A = A, .Bm = Bm, .Cm = Cm, .y = y, .ckpt = ckpt,
                  .B = B, .D = D, .L = L, .N = N, .K = K, .P = 1};
    SUF(run)(&j, SUF(forward_worker), threads);
}

/* gB and gC must come zeroed; every other output is written whole. */
void SUF(ssm_backward)(const REAL *u, const REAL *dt, const REAL *A, const REAL *Bm, const REAL *Cm,
                       const REAL *ckpt, const REAL *gy, REAL *gu, REAL *gdt, REAL *gA, REAL *gB, REAL *gC,
                       long B, long D, long L, long N, long K, long P, int threads) {
    SUF(job) j = {.u = u, .dt = dt, .A = A, .Bm = Bm, .Cm = Cm, .ckpt = ckpt, .gy = gy, .gu = gu, .gdt = gdt,
                  .gA = gA, .gB = gB, .gC = gC, .B = B, .D = D, .L = L, .N = N, .K = K, .P = P};
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
