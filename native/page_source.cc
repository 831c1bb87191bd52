#include "page_source.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <pthread.h>

#include "sys_error.h"

PageSource::PageSource(Userfaultfd* uffd, uint8_t* base, size_t nChunks, std::string label)
    : uffd_(uffd),
      base_(base),
      nChunks_(nChunks),
      label_(std::move(label)),
      state_(nChunks, kMissing),
      hasData_(nChunks, 0),
      zeroServed_(nChunks, 0),
      faulted_(nChunks, 0) {}

PageSource::~PageSource() { Close(); }

void PageSource::SetPlan(const std::vector<uint8_t>& hasData) {
  std::vector<uint32_t> zeroNow;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (planned_ || closed_) return;
    planned_ = true;
    for (size_t c = 0; c < nChunks_; c++) {
      hasData_[c] = c < hasData.size() && hasData[c];
      if (hasData_[c]) dataChunks_++;
    }
    CountDoneLocked();
    // Faults that came before the plan on chunks that turn out to be zero.
    std::deque<uint32_t> still;
    for (uint32_t c : wanted_) {
      if (hasData_[c]) {
        still.push_back(c);
      } else {
        state_[c] = kFilling;
        fillers_++;
        zeroNow.push_back(c);
      }
    }
    wanted_.swap(still);
  }
  cv_.notify_all();
  for (uint32_t c : zeroNow) ServeZero(c);
}

void PageSource::Fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  if (!planned_) {
    planned_ = true;
    std::fill(hasData_.begin(), hasData_.end(), 1);
    dataChunks_ = nChunks_;
    CountDoneLocked();
  }
  if (corrupt_.empty()) corrupt_ = why;
  bool waiting = false;
  uint32_t waitingChunk = 0;
  for (uint32_t c = 0; c < nChunks_; c++) {
    const State s = static_cast<State>(state_[c]);
    if (!hasData_[c] || (s != kMissing && s != kWanted && s != kFetching)) continue;
    state_[c] = kCorrupt;
    corruptWhy_[c] = why;
    dataDone_++;
    if (faulted_[c] && !waiting) waiting = true, waitingChunk = c;
  }
  wanted_.clear();
  if (waiting) DieCorrupt(waitingChunk);
  cv_.notify_all();
}

// Chunks the reader supplied before the plan said which hold data (the recorded working set,
// faulted chunks) may be in memory already: they count as done.
void PageSource::CountDoneLocked() {
  for (size_t c = 0; c < nChunks_; c++)
    if (hasData_[c] && (state_[c] == kPresent || state_[c] == kCorrupt)) dataDone_++;
}

void PageSource::Stage(uint32_t chunk, BlobPtr blob) {
  std::lock_guard<std::mutex> lock(mu_);
  if (staged_.empty()) staged_.resize(nChunks_);
  if (chunk < nChunks_) staged_[chunk] = std::move(blob);
}

void PageSource::StartPrefetch() {
  std::lock_guard<std::mutex> lock(mu_);
  prefetchStaged_ = true;
  if (!filler_.joinable() && !closed_) filler_ = std::thread([this] { FillerLoop(); });
  cv_.notify_all();
}

// Materializes supplied chunks first (a fault may be waiting on them), then staged ones.
void PageSource::FillerLoop() {
  pthread_setname_np(pthread_self(), "usnap-filler");
  for (;;) {
    uint32_t c = 0;
    BlobPtr blob;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto hasWork = [&] {
        if (closed_ || !supplied_.empty()) return true;
        return prefetchStaged_ && NextPrefetchLocked(true) != kNone;
      };
      while (!hasWork()) {
        if (auto resume = HoldLocked())
          cv_.wait_until(lock, *resume);
        else
          cv_.wait(lock);
      }
      if (closed_) return;
      if (!supplied_.empty()) {
        c = supplied_.front().first;
        blob = std::move(supplied_.front().second);
        supplied_.pop_front();
        suppliedBytes_ -= blob->bytes.size();
        cv_.notify_all();  // room for the reader
        if (state_[c] == kPresent || state_[c] == kFilling || state_[c] == kCorrupt) continue;
      } else {
        c = NextPrefetchLocked(true);
        if (prefetchLog_.size() < kMaxRecorded) prefetchLog_.push_back(c);
        blob = staged_[c];
      }
      state_[c] = kFilling;
      fillers_++;
    }
    if (blob->codec == Codec::kZero && blob->bytes.empty())
      ServeZero(c);  // a data chunk that is zero in the store: the reader's plan knew better
    else
      Materialize(c, blob->codec, blob->rawLen, blob->hash, blob->bytes.data(), blob->bytes.size());
  }
}

void PageSource::OnMissingFault(uintptr_t addr) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(base_);
  if (addr < lo || addr >= lo + nChunks_ * kChunk) return;
  const uint32_t c = static_cast<uint32_t>((addr - lo) / kChunk);
  BlobPtr blob;
  bool zero = false;
  bool present = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_[c] != kPresent && !faulted_[c]) {
      faulted_[c] = 1;
      if (holding_) lastFault_ = Clock::now();
      if (faultOrder_.size() < kMaxRecorded) faultOrder_.push_back(c);
    }
    switch (state_[c]) {
      case kPresent:
        // Served already, yet missing again: discarded since (MADV_DONTNEED, reported to the
        // region as REMOVE). Such memory reads as zero; waking alone would refault forever.
        present = true;
        break;
      case kCorrupt:
        DieCorrupt(c);
      case kWanted:
      case kFetching:
      case kQueued:
      case kFilling:
        return;  // the copy in progress wakes it
      case kMissing:
        if (closed_) break;
        if (planned_ && !hasData_[c]) {
          zero = true;
        } else if (!staged_.empty() && staged_[c]) {
          blob = staged_[c];
        } else {
          state_[c] = kWanted;
          wanted_.push_back(c);
          cv_.notify_all();
          return;
        }
        state_[c] = kFilling;
        fillers_++;
        break;
    }
  }
  if (present) {
    static const std::vector<uint8_t> zeros(4096, 0);
    uint8_t* page = reinterpret_cast<uint8_t*>(addr & ~uintptr_t{4095});
    try {
      // UFFDIO_COPY (unlike ZEROPAGE) replaces a write-protect marker a later snapshot left.
      if (!uffd_->Copy(page, zeros.data(), 4096, true)) uffd_->Wake(page, 4096);
    } catch (const SysError& e) {
      if (e.errnum() != ENOENT && e.errnum() != EINVAL) throw;
    }
  } else if (zero)
    ServeZero(c);
  else if (blob)
    Materialize(c, blob->codec, blob->rawLen, blob->hash, blob->bytes.data(), blob->bytes.size());
  else
    uffd_->Wake(ChunkAddr(c), kChunk);
}

std::vector<uint32_t> PageSource::NextToFetch(size_t max, int waitMs) {
  std::unique_lock<std::mutex> lock(mu_);
  auto hasWork = [&] { return closed_ || !wanted_.empty() || NextPrefetchLocked(false) != kNone; };
  if (waitMs > 0) cv_.wait_for(lock, std::chrono::milliseconds(waitMs), hasWork);
  std::vector<uint32_t> out;
  if (closed_) return out;
  while (!wanted_.empty() && out.size() < max) {
    uint32_t c = wanted_.front();
    wanted_.pop_front();
    if (state_[c] != kWanted) continue;
    state_[c] = kFetching;
    out.push_back(c);
  }
  // A thread waits for these: hand them over alone rather than behind a batch of prefetches.
  if (!out.empty()) return out;
  for (uint32_t c; out.size() < max && (c = NextPrefetchLocked(false)) != kNone;) {
    state_[c] = kFetching;
    out.push_back(c);
    if (prefetchLog_.size() < kMaxRecorded) prefetchLog_.push_back(c);
  }
  return out;
}

std::optional<PageSource::Clock::time_point> PageSource::HoldLocked() {
  if (!holding_) return std::nullopt;
  const Clock::time_point cap = holdStart_ + std::chrono::milliseconds(kMaxRecordHoldMs);
  const Clock::time_point resume = handedOut_ ? std::min(lastFault_ + recordQuiet_, cap) : cap;
  if (Clock::now() >= resume) {
    holding_ = false;
    return std::nullopt;
  }
  return resume;
}

uint32_t PageSource::NextPrefetchLocked(bool staged) {
  // Before the plan, the reader may fetch the recorded chunks (it finds their rows one by one).
  if ((!planned_ && staged) || !prefetch_ || closed_ || HoldLocked()) return kNone;
  auto usable = [&](size_t c) {
    return c < nChunks_ && (hasData_[c] || !planned_) && state_[c] == kMissing &&
           (!staged || (!staged_.empty() && staged_[c]));
  };
  while (orderCursor_ < order_.size() && !usable(order_[orderCursor_])) orderCursor_++;
  if (orderCursor_ < order_.size()) return order_[orderCursor_];
  if (!planned_) return kNone;
  while (cursor_ < nChunks_ && !usable(cursor_)) cursor_++;
  return cursor_ < nChunks_ ? static_cast<uint32_t>(cursor_) : kNone;
}

void PageSource::SetOrder(std::vector<uint32_t> order, bool prefetch, int recordQuietMs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    order_ = std::move(order);
    orderCursor_ = 0;
    prefetch_ = prefetch;
    holding_ = prefetch && recordQuietMs > 0;
    recordQuiet_ = std::chrono::milliseconds(recordQuietMs);
    holdStart_ = lastFault_ = Clock::now();
  }
  cv_.notify_all();
}

void PageSource::PrefetchAll() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    prefetch_ = true;
    holding_ = false;
  }
  cv_.notify_all();
}

void PageSource::HandedOut() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    handedOut_ = true;
    lastFault_ = std::max(lastFault_, Clock::now());
  }
  cv_.notify_all();
}

std::vector<uint32_t> PageSource::FaultOrder() {
  std::lock_guard<std::mutex> lock(mu_);
  return faultOrder_;
}

std::vector<uint32_t> PageSource::PrefetchLog() {
  std::lock_guard<std::mutex> lock(mu_);
  return prefetchLog_;
}

bool PageSource::Supply(uint32_t c, BlobPtr blob) {
  constexpr size_t kMaxQueued = 4u << 20;
  std::unique_lock<std::mutex> lock(mu_);
  // A chunk a thread waits for is queued at once; prefetched ones wait for room.
  cv_.wait(lock, [&] { return closed_ || suppliedBytes_ < kMaxQueued || (c < nChunks_ && faulted_[c]); });
  if (closed_) return false;
  if (c >= nChunks_ || state_[c] == kQueued || state_[c] == kPresent || state_[c] == kFilling || state_[c] == kCorrupt)
    return true;
  state_[c] = kQueued;
  suppliedBytes_ += blob->bytes.size();
  // A chunk a thread waits for goes before the prefetched ones queued for the filler.
  if (faulted_[c])
    supplied_.emplace_front(c, std::move(blob));
  else
    supplied_.emplace_back(c, std::move(blob));
  if (!filler_.joinable()) filler_ = std::thread([this] { FillerLoop(); });
  cv_.notify_all();
  return true;
}


void PageSource::Materialize(uint32_t c, Codec codec, uint32_t rawLen, uint64_t hash, const uint8_t* bytes,
                             size_t len) {
  thread_local std::vector<uint8_t> scratch(kChunk);
  try {
    if (rawLen != kChunk) throw CorruptError("chunk is not 64 KiB");
    Verify(codec, rawLen, hash, bytes, len);
    Decode(codec, rawLen, bytes, len, scratch.data());
  } catch (const CorruptError& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      corruptWhy_[c] = e.what();
      if (corrupt_.empty()) corrupt_ = "chunk " + std::to_string(c) + ": " + e.what();
    }
    Finish(c, kCorrupt);
    return;
  }
  try {
    CopyIn(c, scratch.data());
  } catch (const SysError& e) {
    if (e.errnum() != ENOENT && e.errnum() != EINVAL) throw;  // the region is gone: nothing to serve
  }
  Finish(c, kPresent);
}

void PageSource::CopyIn(uint32_t c, const uint8_t* raw) {
  uint8_t* dst = ChunkAddr(c);
  if (uffd_->Copy(dst, raw, kChunk, true)) return;
  // Some page is already there (a racing filler): copy the others one page at a time.
  for (size_t off = 0; off < kChunk; off += 4096) uffd_->Copy(dst + off, raw + off, 4096, true, true);
  uffd_->Wake(dst, kChunk);
}

void PageSource::ServeZero(uint32_t c) {
  // UFFDIO_ZEROPAGE cannot map write-protected: map, protect, then wake the waiters. A thread
  // that was not waiting could write in between without trapping; such a write shows in the
  // contents, and then the chunk counts as written for the next snapshot.
  bool written = false;
  try {
    uffd_->ZeroPage(ChunkAddr(c), kChunk, true);
    uffd_->WriteProtect(ChunkAddr(c), kChunk, true);
    written = !IsZero(ChunkAddr(c), kChunk);
    uffd_->Wake(ChunkAddr(c), kChunk);
  } catch (const SysError& e) {
    if (e.errnum() != ENOENT && e.errnum() != EINVAL) throw;
  }
  if (written) {
    std::lock_guard<std::mutex> lock(mu_);
    zeroServed_[c] = 1;
    anyZeroServed_ = true;
  }
  Finish(c, kPresent);
}

void PageSource::Finish(uint32_t c, State s) {
  bool die;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (hasData_[c] && state_[c] != kPresent && state_[c] != kCorrupt) dataDone_++;
    state_[c] = s;
    fillers_--;
    // A thread blocked on this chunk would wait forever, and must never read wrong bytes.
    die = s == kCorrupt && faulted_[c];
  }
  cv_.notify_all();
  if (die) DieCorrupt(c);
}

void PageSource::DieCorrupt(uint32_t c) {
  fprintf(stderr,
          "uffd-snapshot: STORE_CORRUPT: %s: page %zu (chunk %u) cannot be restored: %s.\n"
          "uffd-snapshot: stopping the process: a page that fails its checksum is never handed to the program.\n",
          label_.c_str(), size_t{c} * (kChunk / 4096), c, corruptWhy_[c].c_str());
  fflush(stderr);
  abort();
}

bool PageSource::WaitReady(int timeoutMs) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                      [&] { return closed_ || (planned_ && dataDone_ == dataChunks_ && fillers_ == 0); });
}

bool PageSource::ready() {
  std::lock_guard<std::mutex> lock(mu_);
  return planned_ && dataDone_ == dataChunks_;
}

std::string PageSource::corrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  return corrupt_;
}

size_t PageSource::dataChunks() {
  std::lock_guard<std::mutex> lock(mu_);
  return dataChunks_;
}

size_t PageSource::dataPresent() {
  std::lock_guard<std::mutex> lock(mu_);
  return dataDone_;
}

bool PageSource::IsPresent(uint32_t c) {
  std::lock_guard<std::mutex> lock(mu_);
  return c < nChunks_ && state_[c] == kPresent;
}

void PageSource::TakeZeroServed(Bitmap* written, size_t pagesPerChunk) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!anyZeroServed_) return;
  for (size_t c = 0; c < nChunks_; c++) {
    if (zeroServed_[c]) {
      written->SetRange(c * pagesPerChunk, (c + 1) * pagesPerChunk);
      zeroServed_[c] = 0;
    }
  }
  anyZeroServed_ = false;
}

bool PageSource::FillForRollback(uint32_t c, const uint8_t* raw) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return state_[c] != kFilling && state_[c] != kQueued && state_[c] != kFetching && state_[c] != kWanted; });
    if (state_[c] == kPresent) return false;
    // Missing (zero in the snapshot the region came from) or corrupt: replace it outright.
    if (!raw) {
      state_[c] = kMissing;  // stays unpopulated: it reads as zero
      if (hasData_[c]) {
        hasData_[c] = 0;
        dataChunks_--;
        dataDone_--;
      }
      return true;
    }
    if (hasData_[c] && state_[c] == kCorrupt) dataDone_--;
    state_[c] = kFilling;
    fillers_++;
  }
  CopyIn(c, raw);
  Finish(c, kPresent);
  return true;
}

void PageSource::Close() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return fillers_ == 0; });
  }
  if (filler_.joinable()) filler_.join();
}
