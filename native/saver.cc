#include "saver.h"

#include <pthread.h>

#include "region.h"

Saver::Saver(Region* region, unsigned threads) : region_(region) {
  for (unsigned i = 0; i < threads; i++) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "usnap-saver");
      while (region_->WaitForSaveWork(stop_)) region_->SaveStep();
    });
  }
}

Saver::~Saver() {
  stop_ = true;
  region_->WakeSaver();
  for (std::thread& t : threads_) t.join();
}
