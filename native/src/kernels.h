// Shared declarations of the native kernels. Every variant computes the same thing:
//   y[i, j] = sum_p x[i, p] * W[j, p] (+ bias[j])   for i < m and j in [j0, j1)
// with x and y f32 row-major, W [n, k] row-major in its stored dtype (widened to f32 inside the kernel).
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace scalpel {

enum DType : int { F32 = 0, F16 = 1, BF16 = 2 };

struct MatmulArgs {
  float* y;
  const float* x;
  const void* w;
  const float* bias;  // may be null
  int dtype;
  size_t m, n, k;
};

// Column-range workers: each thread calls one with its own [j0, j1).
// `unit` is how many output columns a variant's tile covers; ranges are split on multiples of it.
void matmul_scalar(const MatmulArgs& a, size_t j0, size_t j1);
constexpr size_t kScalarUnit = 4;
#if defined(SCALPEL_X86)
void matmul_avx2(const MatmulArgs& a, size_t j0, size_t j1);
constexpr size_t kAvx2Unit = 4;
void matmul_avx512(const MatmulArgs& a, size_t j0, size_t j1);
constexpr size_t kAvx512Unit = 6;
#endif

// Calls f(std::integral_constant<int, DT>{}) for a run-time dtype, so each variant's entry point can hand the
// dtype to its kernels as a template parameter (any code other than F32 or F16 is BF16, as addon.cc validates).
template <class F>
inline void with_dtype(int dtype, F&& f) {
  switch (dtype) {
    case F32: f(std::integral_constant<int, F32>{}); break;
    case F16: f(std::integral_constant<int, F16>{}); break;
    default: f(std::integral_constant<int, BF16>{}); break;
  }
}

// Exact widening of 16-bit floats (shared by the scalar code and the tests of the SIMD tails).
inline float bf16_to_f32(uint16_t b) {
  union { uint32_t u; float f; } v;
  v.u = static_cast<uint32_t>(b) << 16;
  return v.f;
}
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) { man <<= 1; exp--; }
      man &= 0x3ffu;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  union { uint32_t u; float f; } v;
  v.u = bits;
  return v.f;
}

}  // namespace scalpel

namespace scalpel {

// Causal attention over a KV cache laid out [slot][kv head][position][head dim] (see src/engine/cache.ts).
// Row b's real tokens start at column first_real[b]; the query at column c = start + i sees keys firstReal[b] ≤ j ≤ c
// (and c - window < j when window > 0); padding queries output zeros. softcap 0 = none.
struct AttentionArgs {
  float* out;          // [batch, seq, heads, head_dim]
  const float* q;      // same shape
  const float* k;      // one layer of the cache
  const float* v;
  const int32_t* first_real;  // [batch]
  const int32_t* slots;       // [batch]
  size_t batch, seq, start, heads, kv_heads, head_dim, capacity;
  double scale, softcap;
  size_t window;  // 0 = none
};
/** Runs the (batch, head) pairs [p0, p1) of b * heads + h; scratch holds start + seq doubles. */
void attention_pairs(const AttentionArgs& a, size_t p0, size_t p1, double* scratch);

/** gate[i] = act(gate[i]) * up[i] for i in [i0, i1); act 0 = silu, 1 = gelu (tanh approximation). */
void gated_act(float* gate, const float* up, size_t i0, size_t i1, int act);

}  // namespace scalpel
