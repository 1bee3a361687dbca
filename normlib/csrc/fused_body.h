/* The kernels for one dtype T (included by fused.c; FN(name) appends the dtype). */

/* Pointer to block (b, r, g) of set s = r*G + g, in a layout (B, R, G, K, L) with M = K*L. */
static inline const T *FN(block)(const T *a, int64_t s, int64_t bb, int64_t sets, int64_t M)
{
    return a + (bb * sets + s) * M;
}

/* 1/sqrt(var_S) from x itself, in double (the forward's two passes; eps is negligible where this is needed). */
static double FN(rstd_again)(const T *x, T mu, int64_t s, int64_t B, int64_t sets, int64_t M)
{
    double ss = 0.0;
    for (int64_t bb = 0; bb < B; ++bb) {
        const T *xs = FN(block)(x, s, bb, sets, M);
        for (int64_t i = 0; i < M; ++i) {
            const double d = (double)(xs[i] - mu);
            ss += d * d;
        }
    }
    return 1.0 / sqrt(ss / (double)(B * M));
}

/* y = (x - mean_S) / sqrt(var_S + eps) * w + b, with mean_S and var_S written out. */
void FN(norm_forward)(const T *x, const T *w, const T *b, T *y, T *mean_out, T *var_out,
                      int64_t R, int64_t B, int64_t G, int64_t K, int64_t L, double eps,
                      int center, int nthreads)
{
    const int64_t M = K * L, sets = R * G;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t s = 0; s < sets; ++s) {
        const int64_t g = s % G;
        double sum = 0.0;
        if (center)
            for (int64_t bb = 0; bb < B; ++bb) {
                const T *xs = FN(block)(x, s, bb, sets, M);
#pragma omp simd reduction(+ : sum)
                for (int64_t i = 0; i < M; ++i) sum += xs[i];
            }
        const T mu = (T)(center ? sum / (double)(B * M) : 0.0);
        double ss = 0.0;
        for (int64_t bb = 0; bb < B; ++bb) {
            const T *xs = FN(block)(x, s, bb, sets, M);
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < M; ++i) {
                const double d = (double)(xs[i] - mu);
                ss += d * d;
            }
        }
        const double var = ss / (double)(B * M);
        const T r = (T)(1.0 / sqrt(var + eps));
        mean_out[s] = mu;
        var_out[s] = (T)var;
        const T *wg = w ? w + g * K : NULL, *bg = b ? b + g * K : NULL;
        for (int64_t bb = 0; bb < B; ++bb) {
            const T *xs = FN(block)(x, s, bb, sets, M);
            T *ys = (T *)FN(block)(y, s, bb, sets, M);
            if (L == 1) { /* Layer Norm: w varies along the whole set */
#pragma omp simd
                for (int64_t k = 0; k < K; ++k)
                    ys[k] = (xs[k] - mu) * r * (wg ? wg[k] : (T)1) + (bg ? bg[k] : (T)0);
                continue;
            }
            for (int64_t k = 0; k < K; ++k) {
                const T sc = wg ? r * wg[k] : r, sh = bg ? bg[k] : (T)0;
                const T *xk = xs + k * L;
                T *yk = ys + k * L;
#pragma omp simd
                for (int64_t l = 0; l < L; ++l) yk[l] = (xk[l] - mu) * sc + sh;
            }
        }
    }
}

/* dx = r*(g - mean_S(g) - xhat*mean_S(g*xhat)), g = w*dy, xhat = (x - mean)*r, r = rstd;
 * dw[g,k] = sum of dy*xhat, db[g,k] = sum of dy over everything w[g,k] multiplies
 * (either may be NULL).  Per-thread partial sums in double, added in a fixed order.
 * rstd[s] == 0 means the set's variance overflowed T (|x| beyond about 1e19 in
 * float): r is then taken again from x, in double.
 * Returns 0, or 1 if the partial sums could not be allocated. */
int FN(norm_backward)(const T *dy, const T *x, const T *mean, const T *rstd, const T *w,
                       T *dx, T *dw, T *db, int64_t R, int64_t B, int64_t G, int64_t K, int64_t L,
                       int center, int nthreads)
{
    const int64_t M = K * L, sets = R * G, P = G * K;
    /* per-thread partial sums of dw and db (always kept: the loops stay free of branches) */
    double *acc = calloc((size_t)(2 * P * nthreads), sizeof(double));
    if (!acc) return 1; /* out of memory */
#pragma omp parallel num_threads(nthreads)
    {
        double *acc_w = acc + (size_t)(2 * P) * thread_id(), *acc_b = acc_w + P;
#pragma omp for schedule(static)
        for (int64_t s = 0; s < sets; ++s) {
            const int64_t g = s % G;
            const T mu = center ? mean[s] : (T)0;
            double r = (double)rstd[s];
            if (r == 0.0) r = FN(rstd_again)(x, mu, s, B, sets, M);
            const T *wg = w ? w + g * K : NULL;
            double s_g = 0.0, s_gd = 0.0; /* sums over S of w*dy and of w*dy*(x - mu) */
            for (int64_t bb = 0; bb < B; ++bb) {
                const T *dys = FN(block)(dy, s, bb, sets, M), *xs = FN(block)(x, s, bb, sets, M);
                if (L == 1) { /* Layer Norm: one w per entry; one loop for all four sums */
                    double *aw = acc_w + g * K, *ab = acc_b + g * K;
#pragma omp simd reduction(+ : s_g, s_gd)
                    for (int64_t k = 0; k < K; ++k) {
                        const double wk = wg ? (double)wg[k] : 1.0, dyk = (double)dys[k];
                        const double dd = dyk * (double)(xs[k] - mu);
                        s_g += wk * dyk;
                        s_gd += wk * dd;
                        aw[k] += dd * r;
                        ab[k] += dyk;
                    }
                    continue;
                }
                for (int64_t k = 0; k < K; ++k) {
                    const T *dyk = dys + k * L, *xk = xs + k * L;
                    double a = 0.0, c = 0.0;
#pragma omp simd reduction(+ : a, c)
                    for (int64_t l = 0; l < L; ++l) {
                        a += dyk[l];
                        c += (double)dyk[l] * (double)(xk[l] - mu);
                    }
                    const double wk = wg ? (double)wg[k] : 1.0;
                    s_g += wk * a;
                    s_gd += wk * c;
                    acc_w[g * K + k] += c * r;
                    acc_b[g * K + k] += a;
                }
            }
            /* dx = r*w*dy - c1 - (x - mu)*c2 with c1 = r*mean_S(g), c2 = r^3*mean_S(g*(x - mu)).
             * Where |x| is huge (r tiny) r^3 underflows T: then dx = r*w*dy - c1 - ((x - mu)*r)*(c2/r),
             * xhat formed first; elsewhere the factor xscale is 1 and the arithmetic is the plain form. */
            const int tiny = r < 1e-10;
            const T c1 = center ? (T)(r * s_g / (double)(B * M)) : (T)0;
            const T c2 = (T)((tiny ? r * r : r * r * r) * s_gd / (double)(B * M));
            const T rt = (T)r, xscale = tiny ? rt : (T)1;
            for (int64_t bb = 0; bb < B; ++bb) {
                const T *dys = FN(block)(dy, s, bb, sets, M), *xs = FN(block)(x, s, bb, sets, M);
                T *dxs = (T *)FN(block)(dx, s, bb, sets, M);
                if (L == 1) {
#pragma omp simd
                    for (int64_t k = 0; k < K; ++k)
                        dxs[k] = rt * (wg ? wg[k] : (T)1) * dys[k] - c1 - (xs[k] - mu) * xscale * c2;
                    continue;
                }
                for (int64_t k = 0; k < K; ++k) {
                    const T a = wg ? rt * wg[k] : rt;
                    const T *dyk = dys + k * L, *xk = xs + k * L;
                    T *dxk = dxs + k * L;
#pragma omp simd
                    for (int64_t l = 0; l < L; ++l) dxk[l] = a * dyk[l] - c1 - (xk[l] - mu) * xscale * c2;
                }
            }
        }
    }
    if (dw || db) {
        for (int64_t p = 0; p < P; ++p) {
            double sw = 0.0, sb = 0.0;
            for (int t = 0; t < nthreads; ++t) {
                sw += acc[(size_t)(2 * P) * t + p];
                sb += acc[(size_t)(2 * P) * t + P + p];
            }
            if (dw) dw[p] = (T)sw;
            if (db) db[p] = (T)sb;
        }
    }
    free(acc);
    return 0;
}
