#include "signal_faults.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "region.h"

namespace signal_faults {
namespace {

// A range served for a region. The handler reads slots without a lock: `region` is published
// last (release) and cleared first; `inside` counts handlers between their check and their
// return, so Remove can wait them out.
struct Slot {
  std::atomic<Region*> region{nullptr};
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uint32_t> inside{0};
};
constexpr size_t kSlots = 1024;
Slot slots[kSlots];
std::atomic<size_t> slotsUsed{0};  // high-water mark: the handler looks no further

// Ranges removed lately. A thread that faulted just before its region was removed takes the
// signal after: its write is retried (the range is unprotected by then) instead of the
// signal being passed on as someone else's.
struct Retired {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<int64_t> atNs{0};
};
constexpr size_t kRetired = 64;
constexpr int64_t kRetryForNs = 100'000'000;
Retired retired[kRetired];
std::atomic<size_t> retiredNext{0};

std::mutex registryMu;  // Add and Remove; never taken in the handler
bool installed = false;
struct sigaction previous {};

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool Serve(uintptr_t addr) {
  const size_t used = slotsUsed.load(std::memory_order_acquire);
  for (size_t i = 0; i < used; i++) {
    Slot& s = slots[i];
    Region* r = s.region.load(std::memory_order_acquire);
    if (!r || addr < s.begin.load(std::memory_order_relaxed) || addr >= s.end.load(std::memory_order_relaxed)) continue;
    s.inside.fetch_add(1, std::memory_order_seq_cst);
    if (s.region.load(std::memory_order_seq_cst) != r) {
      s.inside.fetch_sub(1, std::memory_order_release);
      continue;
    }
    try {
      r->OnWriteFault(addr);
    } catch (const std::exception& e) {
      // The write cannot go on: the same end as for the handler thread.
      fprintf(stderr, "uffd-snapshot: fault handler failed: %s\n", e.what());
      std::terminate();
    }
    s.inside.fetch_sub(1, std::memory_order_release);
    return true;
  }
  return false;
}

bool RemovedLately(uintptr_t addr) {
  const int64_t now = NowNs();
  for (Retired& r : retired) {
    if (addr >= r.begin.load(std::memory_order_relaxed) && addr < r.end.load(std::memory_order_relaxed) &&
        now - r.atNs.load(std::memory_order_relaxed) < kRetryForNs)
      return true;
  }
  return false;
}

void OnSigbus(int sig, siginfo_t* info, void* context) {
  const int savedErrno = errno;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const bool ours = info->si_code > 0 && (Serve(addr) || RemovedLately(addr));
  errno = savedErrno;
  if (ours) return;
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  } else {
    // Not ours: die of it as if we were not here. A fault repeats when the access is retried.
    signal(SIGBUS, SIG_DFL);
    if (info->si_code <= 0) raise(SIGBUS);
  }
}

}  // namespace

void Add(Region* region, uintptr_t begin, uintptr_t end) {
  std::lock_guard<std::mutex> lock(registryMu);
  if (!installed) {
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous) != 0) throw std::runtime_error(std::string("sigaction(SIGBUS): ") + strerror(errno));
    installed = true;
  }
  for (size_t i = 0; i < kSlots; i++) {
    Slot& s = slots[i];
    if (s.region.load(std::memory_order_relaxed) || s.inside.load(std::memory_order_acquire)) continue;
    s.begin.store(begin, std::memory_order_relaxed);
    s.end.store(end, std::memory_order_relaxed);
    s.region.store(region, std::memory_order_release);
    if (i >= slotsUsed.load(std::memory_order_relaxed)) slotsUsed.store(i + 1, std::memory_order_release);
    return;
  }
  throw std::runtime_error("too many regions with faults: 'signal' open at once (at most 1024 ranges)");
}

void Remove(Region* region) {
  std::vector<Slot*> cleared;
  {
    std::lock_guard<std::mutex> lock(registryMu);
    for (size_t i = 0; i < slotsUsed.load(std::memory_order_relaxed); i++) {
      Slot& s = slots[i];
      if (s.region.load(std::memory_order_relaxed) != region) continue;
      Retired& r = retired[retiredNext.fetch_add(1) % kRetired];
      r.atNs.store(0, std::memory_order_relaxed);
      r.begin.store(s.begin.load(std::memory_order_relaxed), std::memory_order_relaxed);
      r.end.store(s.end.load(std::memory_order_relaxed), std::memory_order_relaxed);
      r.atNs.store(NowNs(), std::memory_order_release);
      s.region.store(nullptr, std::memory_order_seq_cst);
      cleared.push_back(&s);
    }
  }
  // Not under the lock: a handler inside may wait for the region's lock, whose holder may be
  // adding a range (Grow, OnRemap).
  for (Slot* s : cleared)
    while (s->inside.load(std::memory_order_seq_cst) != 0) usleep(50);
}

}  // namespace signal_faults
