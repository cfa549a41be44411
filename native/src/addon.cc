// The JavaScript face of the native kernels (node-addon-api).
//   matmul(y, x, w, dtype, m, n, k, bias?)  y[m,n] = x[m,k] · Wᵀ (+ bias); typed arrays are used in place.
//   attention(...), gatedAct(...)            the two non-matmul steps worth native code (see native/src/ops.cc)
//   attentionMany(calls, ...)                attention of many one-sequence blocks in one threaded job
//   info() → { isa, best, threads };  setIsa(name) → isa in use;  setThreads(n) → threads in use.
#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

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

// Thread tid's share [begin, end) of [0, total) when nthreads split it in contiguous pieces whose boundaries are
// multiples of unit (a kernel's tile width; 1 = any). Late threads may get an empty share.
struct Share {
  size_t begin, end;
};
Share share_of(size_t total, size_t unit, int tid, int nthreads) {
  const size_t units = (total + unit - 1) / unit;
  const size_t per = (units + nthreads - 1) / nthreads * unit;
  const size_t begin = std::min(total, per * tid);
  return {begin, std::min(total, begin + per)};
}

void run_job(void* ctx, int tid, int nthreads) {
  const Job& job = *static_cast<const Job*>(ctx);
  const Share s = share_of(job.args.n, job.unit, tid, nthreads);
  run_range(job, s.begin, s.end);
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
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string("scalpel native: ") + what + " must be a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != want) throw Napi::TypeError::New(v.Env(), std::string("scalpel native: ") + what + " has the wrong element type");
  if (ta.ElementLength() < need)
    throw Napi::RangeError::New(v.Env(), std::string("scalpel native: ") + what + " has " + std::to_string(ta.ElementLength()) +
                                             " elements, needs " + std::to_string(need));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

size_t dim(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string("scalpel native: ") + what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != static_cast<double>(static_cast<int64_t>(d)) || d > 9.0e15)
    throw Napi::RangeError::New(v.Env(), std::string("scalpel native: ") + what + " must be a non-negative integer");
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

// ---- attention(out, q, kCache, vCache, batch, seq, start, firstReal, slots, heads, kvHeads, headDim, capacity,
//                scale, softcap, window)
struct AttentionJob {
  AttentionArgs args;
  size_t pairs;
};

void run_attention(void* ctx, int tid, int nthreads) {
  const AttentionJob& job = *static_cast<const AttentionJob*>(ctx);
  const Share s = share_of(job.pairs, 1, tid, nthreads);
  if (s.begin >= s.end) return;
  std::unique_ptr<double[]> scratch(new double[job.args.start + job.args.seq]);
  attention_pairs(job.args, s.begin, s.end, scratch.get());
}

// The head layout (heads, kvHeads, headDim at info[at..at+2]) and the score settings (scale, softcap, window at
// info[sat..sat+2]) shared by attention() and attentionMany(), checked once here.
void read_attention_shape(const Napi::CallbackInfo& info, size_t at, size_t sat, AttentionArgs& a) {
  Napi::Env env = info.Env();
  a.heads = dim(info[at], "heads");
  a.kv_heads = dim(info[at + 1], "kvHeads");
  a.head_dim = dim(info[at + 2], "headDim");
  if (!info[sat].IsNumber() || !info[sat + 1].IsNumber()) throw Napi::TypeError::New(env, "attention: scale and softcap must be numbers");
  a.scale = info[sat].As<Napi::Number>().DoubleValue();
  a.softcap = info[sat + 1].As<Napi::Number>().DoubleValue();
  a.window = dim(info[sat + 2], "window");
  if (a.heads == 0 || a.kv_heads == 0 || a.heads % a.kv_heads != 0) throw Napi::RangeError::New(env, "attention: heads must be a multiple of kvHeads");
  if (a.head_dim == 0 || a.head_dim > 512) throw Napi::RangeError::New(env, "attention: headDim must be 1..512");
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 16) throw Napi::TypeError::New(env, "attention: expected 16 arguments");
  AttentionJob job{};
  AttentionArgs& a = job.args;
  a.batch = dim(info[4], "batch");
  a.seq = dim(info[5], "seq");
  a.start = dim(info[6], "start");
  read_attention_shape(info, 9, 13, a);
  a.capacity = dim(info[12], "capacity");
  if (a.start + a.seq > a.capacity) throw Napi::RangeError::New(env, "attention: start + seq exceeds the cache capacity");
  const size_t act = a.batch * a.seq * a.heads * a.head_dim;
  a.out = typed_data<float>(info[0], napi_float32_array, act, "out");
  a.q = typed_data<const float>(info[1], napi_float32_array, act, "q");
  a.first_real = typed_data<const int32_t>(info[7], napi_int32_array, a.batch, "firstReal");
  a.slots = typed_data<const int32_t>(info[8], napi_int32_array, a.batch, "slots");
  const size_t per_slot = a.kv_heads * a.capacity * a.head_dim;
  int32_t max_slot = 0;
  for (size_t b = 0; b < a.batch; b++) {
    if (a.slots[b] < 0 || a.first_real[b] < 0) throw Napi::RangeError::New(env, "attention: slots and firstReal must be non-negative");
    max_slot = std::max(max_slot, a.slots[b]);
  }
  const size_t cache = a.batch ? (static_cast<size_t>(max_slot) + 1) * per_slot : 0;
  a.k = typed_data<const float>(info[2], napi_float32_array, cache, "kCache");
  a.v = typed_data<const float>(info[3], napi_float32_array, cache, "vCache");
  job.pairs = a.batch * a.heads;
  if (job.pairs == 0 || a.seq == 0) return env.Undefined();
  const size_t work = a.batch * a.heads * a.seq * (a.start + a.seq) * a.head_dim;
  if (work < 256 * 1024 || job.pairs < 2) run_attention(&job, 0, 1);
  else pool().run(run_attention, &job);
  return env.Undefined();
}

// ---- attentionMany(calls, heads, kvHeads, headDim, scale, softcap, window)
// One pool job for the attention of many one-sequence blocks (the scheduler's rows, each with its own one-slot
// cache): calls[i] = [out, q, kCache, vCache, seq, start, capacity]. Each (block, head) pair runs exactly as in
// attention(), so results are the same as one call per block; only the threads are shared.
struct ManyJob {
  std::vector<AttentionArgs> blocks;
  std::vector<size_t> first_pair;  // prefix sums of pairs, one more entry than blocks
  size_t scratch;
};

void run_many(void* ctx, int tid, int nthreads) {
  const ManyJob& job = *static_cast<const ManyJob*>(ctx);
  const Share s = share_of(job.first_pair.back(), 1, tid, nthreads);
  if (s.begin >= s.end) return;
  std::unique_ptr<double[]> scratch(new double[job.scratch]);
  size_t b = std::upper_bound(job.first_pair.begin(), job.first_pair.end(), s.begin) - job.first_pair.begin() - 1;
  for (size_t pair = s.begin; pair < s.end; b++) {
    const size_t end = std::min(s.end, job.first_pair[b + 1]);
    attention_pairs(job.blocks[b], pair - job.first_pair[b], end - job.first_pair[b], scratch.get());
    pair = end;
  }
}

Napi::Value AttentionMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsArray()) throw Napi::TypeError::New(env, "attentionMany: expected (calls, heads, kvHeads, headDim, scale, softcap, window)");
  static const int32_t kZero = 0;
  AttentionArgs common{};
  common.batch = 1;
  common.first_real = &kZero;
  common.slots = &kZero;
  read_attention_shape(info, 1, 4, common);
  Napi::Array calls = info[0].As<Napi::Array>();
  ManyJob job{};
  job.first_pair.push_back(0);
  job.scratch = 1;
  size_t work = 0;
  for (uint32_t i = 0; i < calls.Length(); i++) {
    Napi::Value entry = calls.Get(i);
    if (!entry.IsArray() || entry.As<Napi::Array>().Length() < 7) throw Napi::TypeError::New(env, "attentionMany: each call is [out, q, k, v, seq, start, capacity]");
    Napi::Array c = entry.As<Napi::Array>();
    AttentionArgs a = common;
    a.seq = dim(c.Get(4u), "seq");
    a.start = dim(c.Get(5u), "start");
    a.capacity = dim(c.Get(6u), "capacity");
    if (a.start + a.seq > a.capacity) throw Napi::RangeError::New(env, "attentionMany: start + seq exceeds the cache capacity");
    const size_t act = a.seq * a.heads * a.head_dim;
    const size_t cache = a.kv_heads * a.capacity * a.head_dim;
    a.out = typed_data<float>(c.Get(0u), napi_float32_array, act, "out");
    a.q = typed_data<const float>(c.Get(1u), napi_float32_array, act, "q");
    a.k = typed_data<const float>(c.Get(2u), napi_float32_array, cache, "kCache");
    a.v = typed_data<const float>(c.Get(3u), napi_float32_array, cache, "vCache");
    if (a.seq == 0) continue;
    job.blocks.push_back(a);
    job.first_pair.push_back(job.first_pair.back() + a.heads);
    job.scratch = std::max(job.scratch, a.start + a.seq);
    work += a.heads * a.seq * (a.start + a.seq) * a.head_dim;
  }
  if (job.blocks.empty()) return env.Undefined();
  if (work < 256 * 1024 || job.first_pair.back() < 2) run_many(&job, 0, 1);
  else pool().run(run_many, &job);
  return env.Undefined();
}

// ---- gatedAct(gate, up, n, act): gate = act(gate) * up, act 0 = silu, 1 = gelu_tanh
struct GatedJob {
  float* gate;
  const float* up;
  size_t n;
  int act;
};

void run_gated(void* ctx, int tid, int nthreads) {
  const GatedJob& job = *static_cast<const GatedJob*>(ctx);
  const Share s = share_of(job.n, 1, tid, nthreads);
  gated_act(job.gate, job.up, s.begin, s.end, job.act);
}

Napi::Value GatedAct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "gatedAct(gate, up, n, act)");
  GatedJob job{};
  job.n = dim(info[2], "n");
  const size_t act = dim(info[3], "act");
  if (act > 1) throw Napi::RangeError::New(env, "gatedAct: act must be 0 (silu) or 1 (gelu_tanh)");
  job.act = static_cast<int>(act);
  job.gate = typed_data<float>(info[0], napi_float32_array, job.n, "gate");
  job.up = typed_data<const float>(info[1], napi_float32_array, job.n, "up");
  if (job.n < 32 * 1024) run_gated(&job, 0, 1);
  else pool().run(run_gated, &job);
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
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionMany", Napi::Function::New(env, AttentionMany));
  exports.Set("gatedAct", Napi::Function::New(env, GatedAct));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  return exports;
}

}  // namespace
}  // namespace scalpel

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return scalpel::Init(env, exports); }
NODE_API_MODULE(scalpel_native, InitModule)
