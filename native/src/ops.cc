// The non-matmul steps that are worth native code: attention over the KV cache and the gated activation.
// Portable C++ (the compiler vectorises the head-dim loops); the thread split is in addon.cc.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace scalpel {

namespace {
inline float dot(const float* a, const float* b, size_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int t = 0; t < 8; t++) s[t] += a[d + t] * b[d + t];
  for (; d < n; d++) s[d % 8] += a[d] * b[d];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}
// exp(x) for float, branch-free so that the compiler vectorises the loops that call it: round x/ln2 to n with the
// 1.5·2^23 trick, a degree-6 polynomial on the remainder (Cephes' expf coefficients, ~1 ulp), times 2^n built in the
// exponent bits. x is clamped to [-87, 88], where 2^n stays a normal float.
inline float fast_exp(float x) {
  x = std::min(88.0f, std::max(-87.0f, x));
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}
}  // namespace

void attention_pairs(const AttentionArgs& a, size_t p0, size_t p1, double* scores) {
  const size_t D = a.head_dim, H = a.heads, group = a.heads / a.kv_heads;
  float acc[512];
  for (size_t pair = p0; pair < p1; pair++) {
    const size_t b = pair / H, h = pair % H;
    const size_t first = static_cast<size_t>(a.first_real[b]);
    const size_t kv = (static_cast<size_t>(a.slots[b]) * a.kv_heads + h / group) * a.capacity * D;
    const float* K = a.k + kv;
    const float* V = a.v + kv;
    for (size_t i = 0; i < a.seq; i++) {
      const size_t c = a.start + i;
      const size_t qo = ((b * a.seq + i) * H + h) * D;
      float* out = a.out + qo;
      if (c < first) {
        std::memset(out, 0, D * sizeof(float));
        continue;
      }
      const size_t lo = a.window > 0 && c + 1 > a.window ? std::max(first, c + 1 - a.window) : first;
      const float* q = a.q + qo;
      double mx = -INFINITY;
      for (size_t j = lo; j <= c; j++) {
        double s = static_cast<double>(dot(q, K + j * D, D)) * a.scale;
        if (a.softcap > 0) s = a.softcap * std::tanh(s / a.softcap);
        scores[j] = s;
        mx = std::max(mx, s);
      }
      double sum = 0;
      for (size_t j = lo; j <= c; j++) {
        const double e = std::exp(scores[j] - mx);
        scores[j] = e;
        sum += e;
      }
      std::fill(acc, acc + D, 0.0f);
      for (size_t j = lo; j <= c; j++) {
        const float p = static_cast<float>(scores[j] / sum);
        const float* vj = V + j * D;
        for (size_t d = 0; d < D; d++) acc[d] += p * vj[d];
      }
      std::memcpy(out, acc, D * sizeof(float));
    }
  }
}

void gated_act(float* gate, const float* up, size_t i0, size_t i1, int act) {
  if (act == 0) {
    for (size_t i = i0; i < i1; i++) {
      const float g = gate[i];
      gate[i] = g / (1.0f + fast_exp(-g)) * up[i];
    }
  } else {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    for (size_t i = i0; i < i1; i++) {
      const float g = gate[i];
      gate[i] = 0.5f * g * (1.0f + std::tanh(c * (g + 0.044715f * g * g * g))) * up[i];
    }
  }
}

}  // namespace scalpel
