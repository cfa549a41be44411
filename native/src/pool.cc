#include "pool.h"

#include <chrono>
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SCALPEL_PAUSE() _mm_pause()
#else
#define SCALPEL_PAUSE() std::this_thread::yield()
#endif

namespace scalpel {

namespace {
// How long an idle worker spins before sleeping: long enough to bridge the gap between the kernel calls of
// one decoding step, short enough not to burn a core while JavaScript does something else.
constexpr auto kSpin = std::chrono::microseconds(300);
}  // namespace

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

Pool::Pool(int threads) : threads_(threads < 1 ? 1 : threads) {
  for (int t = 1; t < threads_; t++) workers_.emplace_back([this, t] { worker(t); });
}

Pool::~Pool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void Pool::run(Job job, void* ctx) {
  if (threads_ == 1) {
    job(ctx, 0, 1);
    return;
  }
  std::lock_guard<std::mutex> serial(run_mu_);
  job_ = job;
  ctx_ = ctx;
  pending_.store(threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  job(ctx, 0, threads_);
  for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; spins++) {
    if (spins < 4096) SCALPEL_PAUSE();
    else std::this_thread::yield();  // a worker was descheduled: don't hold the core it needs
  }
}

void Pool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    unsigned spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed)) {
      SCALPEL_PAUSE();
      if ((++spins & 255) == 0 && std::chrono::steady_clock::now() - start > kSpin) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(); });
      }
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    job_(ctx_, tid, threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace scalpel
