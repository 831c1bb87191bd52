#pragma once
#include <atomic>
#include <string>
#include <thread>

class Region;

// The thread that answers a region's userfaultfd: polls the descriptor and an eventfd used
// only to stop it, and hands each message to the region. It never waits on JavaScript.
class FaultHandler {
 public:
  FaultHandler(Region* region, int uffd);
  ~FaultHandler();  // stops and joins

 private:
  void Run();

  Region* region_;
  int uffd_;
  int stopFd_;
  std::thread thread_;
};
