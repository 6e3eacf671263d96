/* Session 32: a float32 register block of P positions x V 16-lane vectors (6 x 4: 24
 * accumulators), weights loaded as vectors, inputs broadcast from memory, K reduction
 * steps, run `reps` times: the multiply-add rate one core sustains with the loads a conv
 * kernel has (the roofline probe times register-only chains). Output: fma_block.txt
 *   gcc -O3 -march=skylake-avx512 -mprefer-vector-width=512 fma_block.c -o fma_block
 *   ./fma_block 1024 20000 1024; ./fma_block 1024 20000 1024 & ./fma_block 1024 20000 1024
 * Arguments: K, reps, input stride (floats between positions). */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
// register block: P positions x V vectors; K steps; weights K*V*16 floats; inputs P*K
#define P 6
#define V 4
int main(int argc, char** argv) {
  int K = atoi(argv[1]); long reps = atol(argv[2]); int stride = argc > 3 ? atoi(argv[3]) : K;
  float* w = aligned_alloc(64, (size_t)K * V * 16 * 4);
  float* x = aligned_alloc(64, (size_t)P * stride * 4 + 64);
  for (long i = 0; i < (long)K * V * 16; i++) w[i] = 1e-3f;
  for (long i = 0; i < (long)P * stride; i++) x[i] = 1e-3f;
  __m512 acc[P][V];
  float out[P * V * 16];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long r = 0; r < reps; r++) {
    for (int p = 0; p < P; p++) for (int v = 0; v < V; v++) acc[p][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
      __m512 wv[V];
      for (int v = 0; v < V; v++) wv[v] = _mm512_load_ps(w + (k * V + v) * 16);
      for (int p = 0; p < P; p++) {
        __m512 b = _mm512_set1_ps(x[p * stride + k]);
        for (int v = 0; v < V; v++) acc[p][v] = _mm512_fmadd_ps(b, wv[v], acc[p][v]);
      }
    }
    for (int p = 0; p < P; p++) for (int v = 0; v < V; v++) _mm512_storeu_ps(out + (p * V + v) * 16, acc[p][v]);
    __asm__ volatile("" : : "r"(out) : "memory");
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  float cs=0; for (int i=0;i<P*V*16;i++) cs+=out[i]; printf("K=%d stride=%d %.1f GFLOP/s (cs %f)\n", K, stride, 2.0 * P * V * 16 * K * reps / s / 1e9, cs);
}
