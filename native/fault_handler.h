#pragma once
#include <atomic>
#include <string>
#include <thread>

class Region;

// The thread that answers a region's userfaultfd: polls the descriptor, an eventfd used only
// to stop it and a timerfd that wakes the savers, and hands each message to the region. It
// never waits on JavaScript.
class FaultHandler {
 public:
  FaultHandler(Region* region, int uffd);
  ~FaultHandler();  // stops and joins

  // Wakes the region's savers at CLOCK_MONOTONIC time `ns` (or at the earlier time already
  // set), from this thread: a wake-up from the program's thread costs it an IPI (~30 us here)
  // or a preemption by the woken thread. False if it cannot: then the caller wakes them.
  bool WakeSaversAt(int64_t ns);

 private:
  void Run();

  Region* region_;
  int uffd_;
  int stopFd_;
  int timerFd_;
  std::atomic<int64_t> wakeAt_{0};  // the armed wake-up, 0 when none
  std::thread thread_;
};
