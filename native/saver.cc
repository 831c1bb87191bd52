#include "saver.h"

#include <pthread.h>

#include "background.h"
#include "region.h"

Saver::Saver(Region* region, unsigned threads) : region_(region) {
  for (unsigned i = 0; i < threads; i++) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "usnap-saver");
      // On spare CPU only, and parked while the program takes the faults after a snapshot
      // (background.h). On a machine whose every CPU is busy, snapshots then persist slowly:
      // back-pressure (awaiting `persisted`) or the capture budget bounds what piles up.
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
