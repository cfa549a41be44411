// AVX2 + FMA + F16C kernels (used when cpuid reports them but not AVX-512).
// Same scheme as kern_avx512.cc with 8 lanes and 16 registers: MR x NR = 3 x 4 accumulators.
// The k tail (k % 8) goes through small zero-padded buffers, widened with the exact scalar conversions.
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"

namespace scalpel {
namespace {

constexpr int MR = 3;
constexpr int NR = 4;  // = kAvx2Unit
constexpr size_t MB = 64;    // cache blocking as in kern_avx512.cc
constexpr size_t KC = 1024;  // a multiple of 8

template <int DT>
inline __m256 load_w(const void* w, size_t off) {
  if constexpr (DT == F32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + off);
  } else if constexpr (DT == F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + off)));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + off));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <int DT>
inline float widen(const void* w, size_t off) {
  if constexpr (DT == F32) return static_cast<const float*>(w)[off];
  else if constexpr (DT == F16) return f16_to_f32(static_cast<const uint16_t*>(w)[off]);
  else return bf16_to_f32(static_cast<const uint16_t*>(w)[off]);
}

inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

template <int R, int C, int DT>
inline void tile(const MatmulArgs& a, size_t i0, size_t j0, size_t p0, size_t p1) {
  const size_t k = a.k;
  const float* x = a.x + i0 * k;
  __m256 acc[R][C];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < C; j++) acc[i][j] = _mm256_setzero_ps();
  size_t p = p0;
  for (; p + 8 <= p1; p += 8) {
    __m256 wv[C];
    for (int j = 0; j < C; j++) wv[j] = load_w<DT>(a.w, (j0 + j) * k + p);
    for (int i = 0; i < R; i++) {
      const __m256 xv = _mm256_loadu_ps(x + i * k + p);
      for (int j = 0; j < C; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (p < p1) {
    const size_t r = p1 - p;
    alignas(32) float xt[R][8] = {};
    alignas(32) float wt[C][8] = {};
    for (int i = 0; i < R; i++)
      for (size_t t = 0; t < r; t++) xt[i][t] = x[i * k + p + t];
    for (int j = 0; j < C; j++)
      for (size_t t = 0; t < r; t++) wt[j][t] = widen<DT>(a.w, (j0 + j) * k + p + t);
    for (int i = 0; i < R; i++) {
      const __m256 xv = _mm256_load_ps(xt[i]);
      for (int j = 0; j < C; j++) acc[i][j] = _mm256_fmadd_ps(xv, _mm256_load_ps(wt[j]), acc[i][j]);
    }
  }
  // The first k block stores (with the bias), later ones add to what is there.
  const size_t n = a.n;
  const bool first = p0 == 0;
  for (int i = 0; i < R; i++) {
    float* y = a.y + (i0 + i) * n + j0;
    int j = 0;
    for (; j + 4 <= C; j += 4) {
      __m128 s = hsum4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
      if (!first) s = _mm_add_ps(s, _mm_loadu_ps(y + j));
      else if (a.bias) s = _mm_add_ps(s, _mm_loadu_ps(a.bias + j0 + j));
      _mm_storeu_ps(y + j, s);
    }
    for (; j < C; j++) {
      float s = hsum(acc[i][j]);
      if (!first) s += y[j];
      else if (a.bias) s += a.bias[j0 + j];
      y[j] = s;
    }
  }
}

template <int C, int DT>
void column_tile(const MatmulArgs& a, size_t ib, size_t ie, size_t j, size_t p0, size_t p1) {
  size_t i = ib;
  for (; i + MR <= ie; i += MR) tile<MR, C, DT>(a, i, j, p0, p1);
  for (; i + 2 <= ie; i += 2) tile<2, C, DT>(a, i, j, p0, p1);
  if (i < ie) tile<1, C, DT>(a, i, j, p0, p1);
}

template <int DT>
void run(const MatmulArgs& a, size_t j0, size_t j1) {
  for (size_t p0 = 0; p0 < a.k; p0 += KC) {
    const size_t p1 = std::min(p0 + KC, a.k);
    for (size_t ib = 0; ib < a.m; ib += MB) {
      const size_t ie = std::min(ib + MB, a.m);
      size_t j = j0;
      for (; j + NR <= j1; j += NR) column_tile<NR, DT>(a, ib, ie, j, p0, p1);
      switch (j1 - j) {
        case 1: column_tile<1, DT>(a, ib, ie, j, p0, p1); break;
        case 2: column_tile<2, DT>(a, ib, ie, j, p0, p1); break;
        case 3: column_tile<3, DT>(a, ib, ie, j, p0, p1); break;
        default: break;
      }
    }
  }
}

}  // namespace

void matmul_avx2(const MatmulArgs& a, size_t j0, size_t j1) {
  switch (a.dtype) {
    case F32: run<F32>(a, j0, j1); break;
    case F16: run<F16>(a, j0, j1); break;
    default: run<BF16>(a, j0, j1); break;
  }
}

}  // namespace scalpel
