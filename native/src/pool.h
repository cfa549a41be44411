// A small persistent thread pool: the calling thread plus (threads - 1) workers that spin briefly
// for the next job (kernels come in quick succession during decoding), then sleep on a condition variable.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace scalpel {

class Pool {
 public:
  using Job = void (*)(void* ctx, int tid, int nthreads);
  explicit Pool(int threads);
  ~Pool();
  int threads() const { return threads_; }
  /** Runs job(ctx, tid, n) for tid = 0..n-1, tid 0 on the calling thread; returns when all are done. */
  void run(Job job, void* ctx);

 private:
  void worker(int tid);
  int threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one job at a time (several JS threads may share the pool)
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  Job job_ = nullptr;
  void* ctx_ = nullptr;
};

/** Default thread count: the CPUs this process may run on. */
int available_cpus();

}  // namespace scalpel
