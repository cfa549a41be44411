// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl; used only when cpuid says so).
// Tile: MR rows of x against NR rows of W, each pair accumulating 16 lanes along k in its own register;
// W is widened in registers (bf16: shift into the top half; f16: vcvtph2ps), so it is read in its stored width.
// The lanes are summed once per tile at the end.
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"

namespace scalpel {
namespace {

#ifndef SCALPEL_MR
#define SCALPEL_MR 4
#endif
#ifndef SCALPEL_MB
#define SCALPEL_MB 64
#endif
#ifndef SCALPEL_KC
#define SCALPEL_KC 1024
#endif
constexpr int MR = SCALPEL_MR;
constexpr int NR = 6;  // = kAvx512Unit
// Cache blocking: a block of MB rows of x by KC columns (<= 256 KB f32) stays in L2 while every tile of W
// passes over it; one W tile (NR x KC) stays in L1 while the row tiles of the block pass over it.
constexpr size_t MB = SCALPEL_MB;
constexpr size_t KC = SCALPEL_KC;  // a multiple of 16: only the last k block has a ragged tail

template <int DT>
inline __m512 load_w(const void* w, size_t off) {
  if constexpr (DT == F32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + off);
  } else if constexpr (DT == F16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off)));
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <int DT>
inline __m512 load_w_masked(const void* w, size_t off, __mmask16 mk) {
  if constexpr (DT == F32) {
    return _mm512_maskz_loadu_ps(mk, static_cast<const float*>(w) + off);
  } else if constexpr (DT == F16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, static_cast<const uint16_t*>(w) + off));
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(mk, static_cast<const uint16_t*>(w) + off);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

inline __m256 fold(__m512 a) {
  return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

// Four horizontal sums at once: [sum a, sum b, sum c, sum d].
inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m256 ab = _mm256_hadd_ps(fold(a), fold(b));
  const __m256 cd = _mm256_hadd_ps(fold(c), fold(d));
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

template <int R, int C, int DT>
inline void tile(const MatmulArgs& a, size_t i0, size_t j0, size_t p0, size_t p1) {
  const size_t k = a.k;
  const float* x = a.x + i0 * k;
  __m512 acc[R][C];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < C; j++) acc[i][j] = _mm512_setzero_ps();
  size_t p = p0;
  for (; p + 16 <= p1; p += 16) {
    __m512 wv[C];
    for (int j = 0; j < C; j++) wv[j] = load_w<DT>(a.w, (j0 + j) * k + p);
    for (int i = 0; i < R; i++) {
      const __m512 xv = _mm512_loadu_ps(x + i * k + p);
      for (int j = 0; j < C; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (p < p1) {
    const __mmask16 mk = static_cast<__mmask16>((1u << (p1 - p)) - 1u);
    __m512 wv[C];
    for (int j = 0; j < C; j++) wv[j] = load_w_masked<DT>(a.w, (j0 + j) * k + p, mk);
    for (int i = 0; i < R; i++) {
      const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * k + p);
      for (int j = 0; j < C; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
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
      float s = _mm512_reduce_add_ps(acc[i][j]);
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
        case 4: column_tile<4, DT>(a, ib, ie, j, p0, p1); break;
        case 5: column_tile<5, DT>(a, ib, ie, j, p0, p1); break;
        default: break;
      }
    }
  }
}

}  // namespace

void matmul_avx512(const MatmulArgs& a, size_t j0, size_t j1) {
  switch (a.dtype) {
    case F32: run<F32>(a, j0, j1); break;
    case F16: run<F16>(a, j0, j1); break;
    default: run<BF16>(a, j0, j1); break;
  }
}

}  // namespace scalpel
