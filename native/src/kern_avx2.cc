// AVX2 + FMA + F16C kernels (used when cpuid reports them but not AVX-512): the skeleton of kern_tiled.h with
// 8 lanes and 16 registers, so MR x NR = 3 x 4 accumulators.
// The k tail (k % 8) goes through small zero-padded buffers, widened with the exact scalar conversions.
#include <immintrin.h>

#include "kern_tiled.h"
#include "kernels.h"

namespace scalpel {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr size_t W = 8;
  static constexpr int MR = 3;
  static constexpr int NR = 4;  // = kAvx2Unit
  static constexpr size_t MB = 64;    // cache blocking as in kern_avx512.cc
  static constexpr size_t KC = 1024;  // a multiple of 8

  static reg zero() { return _mm256_setzero_ps(); }
  static reg load_x(const float* p) { return _mm256_loadu_ps(p); }
  static reg fma(reg x, reg w, reg acc) { return _mm256_fmadd_ps(x, w, acc); }

  static __m128i load_h(const uint16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
  static reg from_f16(__m128i h) { return _mm256_cvtph_ps(h); }
  static reg from_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

  template <int DT>
  static float widen(const void* w, size_t off) {
    if constexpr (DT == F32) return static_cast<const float*>(w)[off];
    else if constexpr (DT == F16) return f16_to_f32(static_cast<const uint16_t*>(w)[off]);
    else return bf16_to_f32(static_cast<const uint16_t*>(w)[off]);
  }

  // No masked loads in AVX2 (vmaskmovps has no 16-bit form): copy the r < 8 tail into a zeroed buffer.
  static reg load_x_tail(const float* p, size_t r) {
    alignas(32) float t[8] = {};
    for (size_t i = 0; i < r; i++) t[i] = p[i];
    return _mm256_load_ps(t);
  }
  template <int DT>
  static reg load_w_tail(const void* w, size_t off, size_t r) {
    alignas(32) float t[8] = {};
    for (size_t i = 0; i < r; i++) t[i] = widen<DT>(w, off + i);
    return _mm256_load_ps(t);
  }

  static __m128 hsum4(reg a, reg b, reg c, reg d) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
  }
  static float hsum(reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace

void matmul_avx2(const MatmulArgs& a, size_t j0, size_t j1) { Tiled<Avx2>::matmul(a, j0, j1); }

}  // namespace scalpel
