/* Fused CPU kernels for normalization: one loop per set S.
 *
 * The same arithmetic as normlib/core.py (_forward and _backward), written so
 * that each set is read from memory once and stays in the processor's cache
 * while it is normalized: the forward reads x once and writes y once, the
 * backward reads dy and x once and writes dx once.
 *
 * Layout: x is viewed as (B, R, G, K, L), contiguous.  One set S is one
 * (r, g): the B blocks (b, r, g, :, :) of M = K*L contiguous entries each.
 * The affine parameters w, b have G*K entries, w[g, k] constant along L:
 *   Batch Norm     B = N, R = 1,    G = C, K = 1,   L = H*W
 *   Layer Norm     B = 1, R = rows, G = 1, K = |S|, L = 1
 *   Group Norm     B = 1, R = N,    G = G, K = C/G, L = H*W
 *   Instance Norm  B = 1, R = N,    G = C, K = 1,   L = H*W
 * Sums are accumulated in double; the mean first, then the mean squared
 * deviation (two passes over a set that is in cache: never E[x^2] - E[x]^2).
 * Built by normlib/fused.py with the system C compiler; OpenMP splits the sets
 * over threads.  fused_body.h holds the kernels, included once per dtype.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
static int thread_id(void) { return omp_get_thread_num(); }
#else
static int thread_id(void) { return 0; }
#endif

#define T float
#define FN(name) name##_f32
#include "fused_body.h"
#undef T
#undef FN

#define T double
#define FN(name) name##_f64
#include "fused_body.h"
#undef T
#undef FN
