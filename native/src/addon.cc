// The JavaScript face of the native kernels (node-addon-api).
//   matmul(y, x, w, dtype, m, n, k, bias?)  y[m,n] = x[m,k] · Wᵀ (+ bias); typed arrays are used in place.
//   info() → { isa, best, threads };  setIsa(name) → isa in use;  setThreads(n) → threads in use.
#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "kernels.h"
#include "pool.h"

namespace scalpel {
namespace {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

Isa detect_isa() {
#if defined(SCALPEL_X86)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::Avx512;
  if (avx2) return Isa::Avx2;
#endif
  return Isa::Scalar;
}

Isa parse_isa(const std::string& s, Isa fallback) {
  if (s == "scalar") return Isa::Scalar;
  if (s == "avx2") return Isa::Avx2;
  if (s == "avx512") return Isa::Avx512;
  return fallback;
}

const Isa kBest = detect_isa();
Isa g_isa = kBest;
std::unique_ptr<Pool> g_pool;

Pool& pool() {
  if (!g_pool) g_pool = std::make_unique<Pool>(available_cpus());
  return *g_pool;
}

struct Job {
  MatmulArgs args;
  Isa isa;
  size_t unit;
};

void run_range(const Job& job, size_t j0, size_t j1) {
  if (j0 >= j1) return;
  switch (job.isa) {
#if defined(SCALPEL_X86)
    case Isa::Avx512: matmul_avx512(job.args, j0, j1); break;
    case Isa::Avx2: matmul_avx2(job.args, j0, j1); break;
#endif
    default: matmul_scalar(job.args, j0, j1); break;
  }
}

void run_job(void* ctx, int tid, int nthreads) {
  const Job& job = *static_cast<const Job*>(ctx);
  const size_t n = job.args.n;
  const size_t units = (n + job.unit - 1) / job.unit;
  const size_t per = (units + nthreads - 1) / nthreads * job.unit;
  const size_t j0 = std::min(n, per * tid);
  const size_t j1 = std::min(n, j0 + per);
  run_range(job, j0, j1);
}

size_t unit_of(Isa isa) {
  switch (isa) {
#if defined(SCALPEL_X86)
    case Isa::Avx512: return kAvx512Unit;
    case Isa::Avx2: return kAvx2Unit;
#endif
    default: return kScalarUnit;
  }
}

template <typename T>
T* typed_data(const Napi::Value& v, napi_typedarray_type want, size_t need, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string("matmul: ") + what + " must be a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != want) throw Napi::TypeError::New(v.Env(), std::string("matmul: ") + what + " has the wrong element type");
  if (ta.ElementLength() < need)
    throw Napi::RangeError::New(v.Env(), std::string("matmul: ") + what + " has " + std::to_string(ta.ElementLength()) +
                                             " elements, needs " + std::to_string(need));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

size_t dim(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string("matmul: ") + what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != static_cast<double>(static_cast<int64_t>(d)) || d > 9.0e15)
    throw Napi::RangeError::New(v.Env(), std::string("matmul: ") + what + " must be a non-negative integer");
  return static_cast<size_t>(d);
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "matmul(y, x, w, dtype, m, n, k, bias?)");
  const size_t m = dim(info[4], "m"), n = dim(info[5], "n"), k = dim(info[6], "k");
  const size_t dtype = dim(info[3], "dtype");
  if (dtype > 2) throw Napi::RangeError::New(env, "matmul: dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
  Job job{};
  job.args.m = m;
  job.args.n = n;
  job.args.k = k;
  job.args.dtype = static_cast<int>(dtype);
  job.args.y = typed_data<float>(info[0], napi_float32_array, m * n, "y");
  job.args.x = typed_data<const float>(info[1], napi_float32_array, m * k, "x");
  job.args.w = dtype == F32 ? static_cast<const void*>(typed_data<const float>(info[2], napi_float32_array, n * k, "w"))
                            : static_cast<const void*>(typed_data<const uint16_t>(info[2], napi_uint16_array, n * k, "w"));
  job.args.bias = nullptr;
  if (info.Length() > 7 && !info[7].IsUndefined() && !info[7].IsNull())
    job.args.bias = typed_data<const float>(info[7], napi_float32_array, n, "bias");
  if (m == 0 || n == 0) return env.Undefined();
  if (k == 0) {  // an empty sum: y is the bias (or zero)
    for (size_t i = 0; i < m; i++)
      for (size_t j = 0; j < n; j++) job.args.y[i * n + j] = job.args.bias ? job.args.bias[j] : 0.0f;
    return env.Undefined();
  }
  job.isa = g_isa;
  job.unit = unit_of(g_isa);
  // Small products are not worth waking a second thread for.
  if (m * n * k < 64 * 1024 || n < 2 * job.unit) run_range(job, 0, n);
  else pool().run(run_job, &job);
  return env.Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", isa_name(g_isa));
  o.Set("best", isa_name(kBest));
  o.Set("threads", pool().threads());
  return o;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setIsa(name)");
  const Isa want = parse_isa(info[0].As<Napi::String>().Utf8Value(), kBest);
  g_isa = static_cast<int>(want) <= static_cast<int>(kBest) ? want : kBest;
  return Napi::String::New(info.Env(), isa_name(g_isa));
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const size_t n = dim(info[0], "threads");
  const int t = static_cast<int>(std::clamp<size_t>(n == 0 ? available_cpus() : n, 1, 256));
  if (!g_pool || g_pool->threads() != t) g_pool = std::make_unique<Pool>(t);
  return Napi::Number::New(info.Env(), t);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  if (const char* isa = std::getenv("SCALPEL_ISA")) {
    const Isa want = parse_isa(isa, kBest);
    g_isa = static_cast<int>(want) <= static_cast<int>(kBest) ? want : kBest;
  }
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  return exports;
}

}  // namespace
}  // namespace scalpel

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return scalpel::Init(env, exports); }
NODE_API_MODULE(scalpel_native, InitModule)
