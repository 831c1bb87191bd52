#pragma once
#include <atomic>
#include <thread>
#include <vector>

class Region;

// The background threads that finish every snapshot: they encode the chunks the fault
// handler copied and the chunks nobody wrote to. Stopping lets them finish the work already
// queued, so no snapshot taken is lost.
class Saver {
 public:
  Saver(Region* region, unsigned threads);
  ~Saver();  // finishes queued work, then joins

 private:
  Region* region_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};
