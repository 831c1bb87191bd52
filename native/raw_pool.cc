#include "raw_pool.h"

#include <algorithm>

BlobPtr RawPool::Copy(const uint8_t* data, size_t len) {
  std::vector<uint8_t> bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      bytes = std::move(free_.back());
      free_.pop_back();
    }
    peak_ = std::max(peak_, ++inUse_);
    keep_ = std::max(keep_, peak_);
  }
  bytes.assign(data, data + len);  // no allocation once the buffer has served a chunk
  auto* blob = new Blob;
  blob->codec = Codec::kRaw;
  blob->rawLen = static_cast<uint32_t>(len);
  blob->bytes = std::move(bytes);  // no checksum: it never leaves memory, and is encoded next
  return BlobPtr(blob, [pool = shared_from_this()](Blob* b) {
    pool->Give(std::move(b->bytes));
    delete b;
  });
}

void RawPool::Give(std::vector<uint8_t> bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  inUse_--;
  // Beyond what is kept, the buffer is freed (by the releasing thread, mostly a saver).
  if (inUse_ + free_.size() < keep_) free_.push_back(std::move(bytes));
}

void RawPool::NewPeriod() {
  std::lock_guard<std::mutex> lock(mu_);
  keep_ = std::max(peak_, lastPeak_);
  lastPeak_ = peak_;
  peak_ = inUse_;
}
