#include "saver.h"

#include "region.h"

Saver::Saver(Region* region) : region_(region) {
  thread_ = std::thread([this] {
    while (region_->WaitForSaveWork(stop_)) region_->SaveStep();
  });
}

Saver::~Saver() {
  stop_ = true;
  region_->WakeSaver();
  if (thread_.joinable()) thread_.join();
}
