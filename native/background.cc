#include "background.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>

namespace {

constexpr int kMaxThreads = 64;
constexpr int64_t kAckWaitNs = 200'000;
constexpr int64_t kMaxParkNs = 100'000'000;

struct Slot {
  bool used = false;  // under registryMu
  pthread_t thread{};
  std::atomic<bool> busy{false};
};

std::mutex registryMu;
Slot slots[kMaxThreads];
bool signalWorks = false;  // the park signal's handler is ours (set once, under registryMu)

std::atomic<int> parkGen{0};          // bumped when a park's end moves earlier (a futex word)
std::atomic<int64_t> parkUntilNs{0};  // the park's end: parked threads re-read it
std::atomic<int64_t> parkCapNs{0};    // the latest end write faults may push it to
std::atomic<int64_t> parkQuietNs{0};
int64_t parkStretchStartNs = 0;       // under registryMu
std::atomic<int> inHandler{0};
std::atomic<uint64_t> statParks{0}, statSent{0}, statAcked{0};

int ParkSignal() { return SIGRTMIN + 5; }

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void FutexWake() { syscall(SYS_futex, reinterpret_cast<int*>(&parkGen), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0); }

// Async-signal-safe: atomics, clock_gettime and futex only.
void SleepWhileParked() {
  const int64_t giveUp = NowNs() + kMaxParkNs;
  for (;;) {
    const int gen = parkGen.load();
    const int64_t now = NowNs(), until = std::min(parkUntilNs.load(), giveUp);
    if (now >= until) return;
    timespec ts{static_cast<time_t>((until - now) / 1'000'000'000), static_cast<long>((until - now) % 1'000'000'000)};
    syscall(SYS_futex, reinterpret_cast<int*>(&parkGen), FUTEX_WAIT_PRIVATE, gen, &ts, nullptr, 0);
  }
}

void OnParkSignal(int) {
  const int saved = errno;
  inHandler.fetch_add(1);
  SleepWhileParked();
  inHandler.fetch_sub(1);
  errno = saved;
}

// Installs the handler unless the program already handles the signal (then no thread is
// signalled; the savers still stop).
void InstallLocked() {
  static bool tried = false;
  if (tried) return;
  tried = true;
  struct sigaction old = {};
  if (sigaction(ParkSignal(), nullptr, &old) != 0 || old.sa_handler != SIG_DFL) return;
  struct sigaction sa = {};
  sa.sa_handler = OnParkSignal;
  sa.sa_flags = SA_RESTART;
  sigfillset(&sa.sa_mask);
  signalWorks = sigaction(ParkSignal(), &sa, nullptr) == 0;
}

void SetParkSignalBlocked(bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, ParkSignal());
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

struct Registration {
  int slot = -1;
  ~Registration() {
    if (slot < 0) return;
    std::lock_guard<std::mutex> lock(registryMu);
    slots[slot].used = false;
    slots[slot].busy.store(false);
  }
};
thread_local Registration registration;

}  // namespace

void EnterBackground(bool parkBySignal) {
  sched_param none{};
  sched_setscheduler(0, SCHED_IDLE, &none);
  if (!parkBySignal || registration.slot >= 0) return;
  std::lock_guard<std::mutex> lock(registryMu);
  InstallLocked();
  if (!signalWorks) return;
  for (int i = 0; i < kMaxThreads; i++) {
    if (slots[i].used) continue;
    slots[i].used = true;
    slots[i].thread = pthread_self();
    slots[i].busy.store(true);
    registration.slot = i;
    SetParkSignalBlocked(false);
    return;
  }
}

BackgroundIdle::BackgroundIdle() : registered_(registration.slot >= 0) {
  if (!registered_) return;
  SetParkSignalBlocked(true);
  slots[registration.slot].busy.store(false);
}

BackgroundIdle::~BackgroundIdle() {
  if (!registered_) return;
  slots[registration.slot].busy.store(true);
  SetParkSignalBlocked(false);
}

BackgroundPark::BackgroundPark(int64_t burstQuietNs, int64_t burstMaxNs)
    : lock_(registryMu), burstQuietNs_(burstQuietNs), burstMaxNs_(burstMaxNs) {
  // Parks that follow each other closely make one stretch, capped at burstMaxNs; after a
  // stretch, the background runs as long before the next may start: snapshots back to back
  // under endless write faults would otherwise never let it persist anything.
  const int64_t now = NowNs(), until = parkUntilNs.load();
  if (now >= until) {
    if (now < until + burstMaxNs) return;
    stretchStartNs_ = now;
  } else {
    stretchStartNs_ = parkStretchStartNs;
  }
  parkStretchStartNs = stretchStartNs_;
  active_ = true;
  statParks.fetch_add(1, std::memory_order_relaxed);
  parkCapNs.store(INT64_MAX);
  parkUntilNs.store(INT64_MAX);
  if (!signalWorks) return;
  const int before = inHandler.load();
  int sent = 0;
  const pthread_t self = pthread_self();
  for (Slot& s : slots) {
    if (s.used && s.busy.load() && !pthread_equal(s.thread, self) && pthread_kill(s.thread, ParkSignal()) == 0) sent++;
  }
  if (sent == 0) return;
  const int64_t deadline = NowNs() + kAckWaitNs;
  while (inHandler.load() - before < sent && NowNs() < deadline) CpuRelax();
  statSent.fetch_add(sent, std::memory_order_relaxed);
  statAcked.fetch_add(std::max(0, inHandler.load() - before), std::memory_order_relaxed);
}

BackgroundPark::~BackgroundPark() {
  if (!active_) return;
  const int64_t now = NowNs();
  const int64_t cap = std::max(now, stretchStartNs_ + burstMaxNs_);
  parkQuietNs.store(burstQuietNs_);
  parkCapNs.store(cap);
  parkUntilNs.store(std::min(now + burstQuietNs_, cap));
  parkGen.fetch_add(1);
  FutexWake();
}

void ExtendBackgroundPark() {
  const int64_t until = parkUntilNs.load(std::memory_order_relaxed);
  const int64_t now = NowNs();
  if (now >= until) return;
  const int64_t want = std::min(now + parkQuietNs.load(std::memory_order_relaxed), parkCapNs.load(std::memory_order_relaxed));
  // Only ever later: a parked thread that wakes early reads the new end and sleeps again.
  if (want > until) parkUntilNs.store(want, std::memory_order_relaxed);
}

void WaitWhileBackgroundParked() { SleepWhileParked(); }

BackgroundParkStats GetBackgroundParkStats() {
  return {statParks.load(), statSent.load(), statAcked.load()};
}
