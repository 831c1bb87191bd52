#pragma once
#include <cstdint>
#include <mutex>

// Threads doing the library's background work: the savers and the store writer.
//
// They run on spare CPU only (SCHED_IDLE): a program thread that wants a CPU preempts them at
// once. And they are parked while a snapshot write-protects and while the program takes the
// write faults that follow it: every protect and unprotect flushes the TLB of each CPU running
// a thread of the process, so a background thread running on the other CPU turns each one into
// an IPI round trip, ~4x the ioctl's cost alone in a VM (docs/benchmark.md).
//
// The savers stop at their next chunk (WaitWhileBackgroundParked). The store writer runs
// SQLite, which has no such points: it is parked by a signal whose handler sleeps, except while
// it holds the sink's lock, which the program's fault path needs (BackgroundIdle).

// The calling thread: SCHED_IDLE. With parkBySignal, BackgroundPark also stops it by a signal
// while it is busy; it unregisters itself when the thread exits.
void EnterBackground(bool parkBySignal);

// For its scope, the calling registered thread is idle (waiting for work, or holding a lock the
// program may need): no park signal reaches it. A signal sent meanwhile parks it on leaving.
class BackgroundIdle {
 public:
  BackgroundIdle();
  ~BackgroundIdle();
  BackgroundIdle(const BackgroundIdle&) = delete;
  BackgroundIdle& operator=(const BackgroundIdle&) = delete;

 private:
  bool registered_;
};

// Parks the background threads from its construction until the program has taken no write fault
// for burstQuietNs after its destruction, at most burstMaxNs after the park began (or the park it
// prolongs); after that, the background runs at least burstMaxNs before the next park, so parks
// take at most half of its time. The constructor waits at most ~0.2 ms for signalled threads to
// stop. Nothing in the scope may allocate: a parked thread may hold the allocator's lock. A
// parked thread resumes by itself after 100 ms whatever happens.
class BackgroundPark {
 public:
  BackgroundPark(int64_t burstQuietNs, int64_t burstMaxNs);
  ~BackgroundPark();
  BackgroundPark(const BackgroundPark&) = delete;
  BackgroundPark& operator=(const BackgroundPark&) = delete;

 private:
  std::unique_lock<std::mutex> lock_;
  int64_t burstQuietNs_, burstMaxNs_;
  int64_t stretchStartNs_ = 0;
  bool active_ = false;
};

// The program took a write fault: a park in its burst lasts burstQuietNs more (up to its cap).
void ExtendBackgroundPark();

// A saver, before its next chunk: sleeps while a park lasts.
void WaitWhileBackgroundParked();

// Parks begun, park signals sent, and signalled threads that stopped within the wait.
struct BackgroundParkStats {
  uint64_t parks = 0, signalsSent = 0, signalsAcked = 0;
};
BackgroundParkStats GetBackgroundParkStats();
