// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl; used only when cpuid says so): the skeleton of
// kern_tiled.h with 16 lanes and 32 registers, so MR x NR = 4 x 6 accumulators. W is widened in registers
// (bf16: shift into the top half; f16: vcvtph2ps); the k tail uses masked loads.
#include <immintrin.h>

#include "kern_tiled.h"
#include "kernels.h"

namespace scalpel {
namespace {

// Overridable for tuning runs (e.g. -DSCALPEL_MR=3); the defaults are the measured best.
#ifndef SCALPEL_MR
#define SCALPEL_MR 4
#endif
#ifndef SCALPEL_MB
#define SCALPEL_MB 64
#endif
#ifndef SCALPEL_KC
#define SCALPEL_KC 1024
#endif

// Adds the upper half of a to the lower: 16 lanes to 8.
inline __m256 fold(__m512 a) {
  return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

struct Avx512 {
  using reg = __m512;
  static constexpr size_t W = 16;
  static constexpr int MR = SCALPEL_MR;
  static constexpr int NR = 6;  // = kAvx512Unit
  // MB rows x KC columns of f32 x is <= 256 KB, so it stays in L2.
  static constexpr size_t MB = SCALPEL_MB;
  static constexpr size_t KC = SCALPEL_KC;  // a multiple of 16

  static reg zero() { return _mm512_setzero_ps(); }
  static reg load_x(const float* p) { return _mm512_loadu_ps(p); }
  static reg fma(reg x, reg w, reg acc) { return _mm512_fmadd_ps(x, w, acc); }

  static __m256i load_h(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static reg from_f16(__m256i h) { return _mm512_cvtph_ps(h); }
  static reg from_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

  // Masked loads read nothing past lane r, so the tail never touches memory beyond the row.
  static __mmask16 tail_mask(size_t r) { return static_cast<__mmask16>((1u << r) - 1u); }
  static reg load_x_tail(const float* p, size_t r) { return _mm512_maskz_loadu_ps(tail_mask(r), p); }
  template <int DT>
  static reg load_w_tail(const void* w, size_t off, size_t r) {
    if constexpr (DT == F32) {
      return load_x_tail(static_cast<const float*>(w) + off, r);
    } else {
      const __m256i h = _mm256_maskz_loadu_epi16(tail_mask(r), static_cast<const uint16_t*>(w) + off);
      if constexpr (DT == F16) return from_f16(h);
      else return from_bf16(h);
    }
  }

  // Four horizontal sums at once: [sum a, sum b, sum c, sum d].
  static __m128 hsum4(reg a, reg b, reg c, reg d) {
    const __m256 ab = _mm256_hadd_ps(fold(a), fold(b));
    const __m256 cd = _mm256_hadd_ps(fold(c), fold(d));
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
  }
  static float hsum(reg a) { return _mm512_reduce_add_ps(a); }
};

}  // namespace

void matmul_avx512(const MatmulArgs& a, size_t j0, size_t j1) { Tiled<Avx512>::matmul(a, j0, j1); }

}  // namespace scalpel
