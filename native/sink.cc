#include "sink.h"

#include <chrono>

void Sink::Hold(const BlobPtr& blob, int sign) {
  if (blob) heldBytes_ += sign * static_cast<int64_t>(blob->bytes.size());
}

void Sink::Open(uint64_t snap, uint32_t regionKey, bool full, std::string meta, uint32_t expected) {
  std::lock_guard<std::mutex> lock(mu_);
  Snap& s = snaps_[snap];
  s.regionKey = regionKey;
  s.full = full;
  s.meta = std::move(meta);
  s.expected = expected;
  // The writer records the snapshot with its next batch: woken now, from the program's
  // thread in its pause, it could preempt that thread for a whole tick (measured: ~1 ms).
  // A snapshot with no chunks is complete at once, and nothing else would wake it.
  if (expected == 0) cv_.notify_all();
}

void Sink::Stage(uint64_t snap, uint32_t chunk, BlobPtr raw) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snaps_.find(snap);
  if (it == snaps_.end() || it->second.failed) return;
  BlobPtr& slot = it->second.blobs[chunk];
  Hold(slot, -1);
  slot = std::move(raw);
  Hold(slot, +1);
}

void Sink::Put(uint64_t snap, uint32_t chunk, BlobPtr encoded) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snaps_.find(snap);
  if (it == snaps_.end() || it->second.failed) return;
  Snap& s = it->second;
  BlobPtr& slot = s.blobs[chunk];
  Hold(slot, -1);
  slot = encoded;
  Hold(slot, +1);
  s.put++;
  if (s.full && encoded->codec == Codec::kZero) {
    // A snapshot that stands alone stores nothing for zero chunks: absent means zero.
    s.drained++;
    s.skipped++;
    cv_.notify_all();
    return;
  }
  s.rawBytes += encoded->rawLen;
  s.storedBytes += encoded->bytes.size();
  readyBytes_ += encoded->bytes.size();
  ready_.push_back({snap, chunk, std::move(encoded)});
  cv_.notify_all();
}

void Sink::Fail(uint64_t snap, const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  auto first = snaps_.find(snap);
  if (first == snaps_.end()) return;
  const uint32_t region = first->second.regionKey;
  for (auto it = first; it != snaps_.end(); ++it) {
    Snap& s = it->second;
    if (s.regionKey != region || s.failed || s.endSent) continue;
    s.failed = true;
    s.error = it == first ? error : "its parent snapshot " + std::to_string(snap) + " failed: " + error;
    for (auto& kv : s.blobs) Hold(kv.second, -1);
    s.blobs.clear();
  }
  cv_.notify_all();
}

BlobPtr Sink::Lookup(uint64_t snap, uint32_t chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snaps_.find(snap);
  if (it == snaps_.end()) return nullptr;
  auto b = it->second.blobs.find(chunk);
  return b == it->second.blobs.end() ? nullptr : b->second;
}

bool Sink::EndReadyLocked() const {
  for (const auto& kv : snaps_) {
    const Snap& s = kv.second;
    if (s.endSent) continue;
    // Every chunk of the oldest open snapshot is either drained or waiting in ready_.
    return s.failed || s.put == s.expected;
  }
  return false;
}

bool Sink::HasWorkLocked() const {
  if (!ready_.empty()) return true;
  for (const auto& kv : snaps_) {
    const Snap& s = kv.second;
    if (!s.beginSent && !s.failed) return true;
    if (!s.endSent) return s.failed || s.drained == s.expected;  // ends go out in id order
  }
  return false;
}

Sink::Batch Sink::Drain(size_t maxBytes, int waitMs, int lingerMs) {
  std::unique_lock<std::mutex> lock(mu_);
  if (waitMs > 0)
    cv_.wait_for(lock, std::chrono::milliseconds(waitMs), [this] { return closed_ || HasWorkLocked(); });
  if (lingerMs > 0 && !ready_.empty())
    cv_.wait_for(lock, std::chrono::milliseconds(lingerMs),
                 [&] { return closed_ || readyBytes_ >= maxBytes || EndReadyLocked(); });
  Batch batch;
  for (auto& kv : snaps_) {
    Snap& s = kv.second;
    if (!s.beginSent && !s.failed) {
      batch.begins.push_back({kv.first, s.regionKey, s.full, s.meta});
      s.beginSent = true;
    }
  }
  size_t bytes = 0;
  while (!ready_.empty() && (batch.chunks.empty() || bytes < maxBytes)) {
    Chunk c = std::move(ready_.front());
    ready_.pop_front();
    auto it = snaps_.find(c.snap);
    if (it == snaps_.end() || it->second.failed) {
      readyBytes_ -= c.blob->bytes.size();
      continue;
    }
    it->second.drained++;
    bytes += c.blob->bytes.size();
    readyBytes_ -= c.blob->bytes.size();
    batch.chunks.push_back(std::move(c));
  }
  for (auto& kv : snaps_) {
    Snap& s = kv.second;
    if (s.endSent) continue;
    if (!s.failed && s.drained != s.expected) break;
    batch.ends.push_back({kv.first, s.expected - s.skipped, s.rawBytes, s.storedBytes, s.failed, s.error});
    s.endSent = true;
  }
  return batch;
}

void Sink::DropLocked(uint64_t snap, uint32_t chunk) {
  auto it = snaps_.find(snap);
  if (it == snaps_.end()) return;
  auto b = it->second.blobs.find(chunk);
  if (b == it->second.blobs.end()) return;
  Hold(b->second, -1);
  it->second.blobs.erase(b);
}

void Sink::Committed(const double* snaps, const uint32_t* chunks, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < n; i++) {
    const uint64_t snap = static_cast<uint64_t>(snaps[i]);
    if (pins_) committedWhilePinned_.emplace_back(snap, chunks[i]);
    else DropLocked(snap, chunks[i]);
  }
}

void Sink::Pin() {
  std::lock_guard<std::mutex> lock(mu_);
  pins_++;
}

void Sink::Unpin() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pins_ == 0 || --pins_ > 0) return;
  for (const auto& [snap, chunk] : committedWhilePinned_) DropLocked(snap, chunk);
  committedWhilePinned_.clear();
}

void Sink::Release(uint64_t snap) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snaps_.find(snap);
  if (it == snaps_.end() || !it->second.endSent) return;
  for (auto& kv : it->second.blobs) Hold(kv.second, -1);
  snaps_.erase(it);
}

void Sink::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

Sink::Stats Sink::GetStats() {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t inflight = 0;
  for (const auto& kv : snaps_)
    if (!kv.second.endSent) inflight++;
  return {heldBytes_, inflight};
}
