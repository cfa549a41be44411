// Portable C++ kernels: any CPU, no intrinsics. Eight partial sums per dot product so the compiler can
// keep several FMAs in flight (and vectorise where the baseline ISA allows).
#include <algorithm>
#include <vector>

#include "kernels.h"

namespace scalpel {
namespace {

// f16 → f32 by table (256 KB, built on first use): the bit-level conversion branches on subnormals.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; h++) t[h] = f16_to_f32(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

template <int DT>
inline float widen(const void* w, size_t off) {
  if constexpr (DT == F32) return static_cast<const float*>(w)[off];
  else if constexpr (DT == F16) return f16_table()[static_cast<const uint16_t*>(w)[off]];
  else return bf16_to_f32(static_cast<const uint16_t*>(w)[off]);
}

template <int DT>
void run(const MatmulArgs& a, size_t j0, size_t j1) {
  const size_t k = a.k;
  constexpr size_t NB = 32;
  float wrow[8];
  for (size_t jb = j0; jb < j1; jb += NB) {
    const size_t je = std::min(jb + NB, j1);
    for (size_t i = 0; i < a.m; i++) {
      const float* x = a.x + i * k;
      for (size_t j = jb; j < je; j++) {
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t p = 0;
        for (; p + 8 <= k; p += 8) {
          for (int t = 0; t < 8; t++) wrow[t] = widen<DT>(a.w, j * k + p + t);
          for (int t = 0; t < 8; t++) s[t] += x[p + t] * wrow[t];
        }
        for (; p < k; p++) s[p % 8] += x[p] * widen<DT>(a.w, j * k + p);
        float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        if (a.bias) sum += a.bias[j];
        a.y[i * a.n + j] = sum;
      }
    }
  }
}

}  // namespace

void matmul_scalar(const MatmulArgs& a, size_t j0, size_t j1) {
  with_dtype(a.dtype, [&](auto dt) { run<decltype(dt)::value>(a, j0, j1); });
}

}  // namespace scalpel
