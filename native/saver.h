#pragma once
#include <atomic>
#include <thread>

class Region;

// The background thread that finishes every snapshot: it encodes the chunks the fault
// handler copied and the chunks nobody wrote to, in snapshot order. Stopping lets it
// finish the work already queued, so no snapshot taken is lost.
class Saver {
 public:
  explicit Saver(Region* region);
  ~Saver();  // finishes queued work, then joins

 private:
  Region* region_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};
