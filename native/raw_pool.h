#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "codec.h"

// The buffers of the raw copies a snapshot takes (the fault handler's, pause mode's), reused.
// A new 64 KiB allocation costs 16 page faults on the fault path whenever the allocator has
// given the previous ones back to the OS: at a 5% hot set that was about one page fault per
// write fault, and each write fault 20-30% dearer (docs/benchmark.md). The pool keeps as many
// buffers as the busier of the last two snapshot periods had in use at once.
class RawPool : public std::enable_shared_from_this<RawPool> {
 public:
  // A raw (uncompressed) blob copied from `data`; its buffer comes back here when it is released.
  BlobPtr Copy(const uint8_t* data, size_t len);
  // A snapshot starts a new period.
  void NewPeriod();

 private:
  void Give(std::vector<uint8_t> bytes);

  std::mutex mu_;
  std::vector<std::vector<uint8_t>> free_;
  size_t inUse_ = 0;
  size_t peak_ = 0;      // most buffers in use at once in this period
  size_t keep_ = 0;      // buffers kept: the larger of this period's peak and the last one's
  size_t lastPeak_ = 0;
};
