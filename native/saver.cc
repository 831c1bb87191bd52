#include "saver.h"

#include <pthread.h>

#include "background.h"
#include "region.h"

Saver::Saver(Region* region, unsigned threads) : region_(region) {
  for (unsigned i = 0; i < threads; i++) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "usnap-saver");
      // Background work runs on spare CPU only (SCHED_IDLE): a program thread that wants a CPU
      // preempts a saver at once, and the scheduler counts a CPU running only savers as idle
      // when it places a woken thread. Measured with a loop checkpointed every 100 ms: the
      // loop's time waiting for a CPU fell from ~6% to ~1.5% (SCHED_BATCH, docs/benchmark.md).
      // On a machine whose every CPU is busy, snapshots then persist slowly: back-pressure
      // (awaiting `persisted`) or the capture budget bounds what piles up meanwhile.
      EnterBackground(false);
      while (region_->WaitForSaveWork(stop_)) {
        WaitWhileBackgroundParked();
        region_->SaveStep();
      }
    });
  }
}

Saver::~Saver() {
  stop_ = true;
  region_->WakeSaver();
  for (std::thread& t : threads_) t.join();
}
