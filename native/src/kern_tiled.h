// The register-tiled matmul skeleton shared by the SIMD variants (kern_avx2.cc, kern_avx512.cc).
// Tile: R rows of x against C rows of W, each pair accumulating V::W lanes along k in its own register;
// W is widened in registers, so it is read in its stored width. The lanes are summed once per tile at the end.
// Cache blocking: a block of MB rows of x by KC columns stays in L2 while every tile of W passes over it; one
// W tile (NR x KC) stays in L1 while the row tiles of the block pass over it.
//
// V is a vector-traits struct: reg, W (lanes), MR, NR, MB, KC (a multiple of W, so only the last k block has a
// ragged tail), zero(), load_x(p) (W floats), load_h(p) (W 16-bit values) with from_f16(h) / from_bf16(h) to widen
// them exactly, load_x_tail(p, r) and load_w_tail<DT>(w, off, r) (lanes >= r read as 0), fma(x, w, acc) =
// x * w + acc, hsum4(a, b, c, d) -> __m128 of the four lane sums, hsum(a) -> float.
//
// Include this only from the translation unit that defines V and is compiled with V's -m flags. Everything here
// is in an unnamed namespace so each ISA gets its own internal copy: a shared (vague-linkage) instantiation could
// let the linker keep the AVX-512 one for the AVX2 path.
#pragma once
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"

namespace scalpel {
namespace {

template <class V>
struct Tiled {
  using reg = typename V::reg;

  // W lanes of row data in its stored dtype, widened to f32.
  template <int DT>
  static inline reg load_w(const void* w, size_t off) {
    if constexpr (DT == F32) {
      return V::load_x(static_cast<const float*>(w) + off);
    } else {
      const auto h = V::load_h(static_cast<const uint16_t*>(w) + off);
      if constexpr (DT == F16) return V::from_f16(h);
      else return V::from_bf16(h);
    }
  }

  template <int R, int C, int DT>
  static inline void tile(const MatmulArgs& a, size_t i0, size_t j0, size_t p0, size_t p1) {
    const size_t k = a.k;
    const float* x = a.x + i0 * k;
    reg acc[R][C];
    for (int i = 0; i < R; i++)
      for (int j = 0; j < C; j++) acc[i][j] = V::zero();
    size_t p = p0;
    for (; p + V::W <= p1; p += V::W) {
      reg wv[C];
      for (int j = 0; j < C; j++) wv[j] = load_w<DT>(a.w, (j0 + j) * k + p);
      for (int i = 0; i < R; i++) {
        const reg xv = V::load_x(x + i * k + p);
        for (int j = 0; j < C; j++) acc[i][j] = V::fma(xv, wv[j], acc[i][j]);
      }
    }
    if (p < p1) {  // the zero lanes add +0 * 0, so the tail folds into the same accumulators
      const size_t r = p1 - p;
      // All loads first: with buffer-based tails (AVX2) this keeps the R x C block unrolled in registers.
      reg wv[C], xv[R];
      for (int j = 0; j < C; j++) wv[j] = V::template load_w_tail<DT>(a.w, (j0 + j) * k + p, r);
      for (int i = 0; i < R; i++) xv[i] = V::load_x_tail(x + i * k + p, r);
      for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) acc[i][j] = V::fma(xv[i], wv[j], acc[i][j]);
    }
    // The first k block stores (with the bias), later ones add to what is there.
    const size_t n = a.n;
    const bool first = p0 == 0;
    for (int i = 0; i < R; i++) {
      float* y = a.y + (i0 + i) * n + j0;
      int j = 0;
      for (; j + 4 <= C; j += 4) {
        __m128 s = V::hsum4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
        if (!first) s = _mm_add_ps(s, _mm_loadu_ps(y + j));
        else if (a.bias) s = _mm_add_ps(s, _mm_loadu_ps(a.bias + j0 + j));
        _mm_storeu_ps(y + j, s);
      }
      for (; j < C; j++) {
        float s = V::hsum(acc[i][j]);
        if (!first) s += y[j];
        else if (a.bias) s += a.bias[j0 + j];
        y[j] = s;
      }
    }
  }

  template <int C, int DT>
  static void column_tile(const MatmulArgs& a, size_t ib, size_t ie, size_t j, size_t p0, size_t p1) {
    size_t i = ib;
    for (; i + V::MR <= ie; i += V::MR) tile<V::MR, C, DT>(a, i, j, p0, p1);
    for (; i + 2 <= ie; i += 2) tile<2, C, DT>(a, i, j, p0, p1);
    if (i < ie) tile<1, C, DT>(a, i, j, p0, p1);
  }

  // The last c < NR columns of a range: a tile exactly c wide (C counts down from NR - 1).
  template <int C, int DT>
  static void column_rest(const MatmulArgs& a, size_t c, size_t ib, size_t ie, size_t j, size_t p0, size_t p1) {
    if constexpr (C > 0) {
      if (c == C) column_tile<C, DT>(a, ib, ie, j, p0, p1);
      else column_rest<C - 1, DT>(a, c, ib, ie, j, p0, p1);
    }
  }

  template <int DT>
  static void run(const MatmulArgs& a, size_t j0, size_t j1) {
    for (size_t p0 = 0; p0 < a.k; p0 += V::KC) {
      const size_t p1 = std::min(p0 + V::KC, a.k);
      for (size_t ib = 0; ib < a.m; ib += V::MB) {
        const size_t ie = std::min(ib + V::MB, a.m);
        size_t j = j0;
        for (; j + V::NR <= j1; j += V::NR) column_tile<V::NR, DT>(a, ib, ie, j, p0, p1);
        column_rest<V::NR - 1, DT>(a, j1 - j, ib, ie, j, p0, p1);
      }
    }
  }

  static void matmul(const MatmulArgs& a, size_t j0, size_t j1) {
    with_dtype(a.dtype, [&](auto dt) { run<decltype(dt)::value>(a, j0, j1); });
  }
};

}  // namespace
}  // namespace scalpel
