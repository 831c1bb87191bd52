#include "region.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "background.h"
#include "fault_handler.h"
#include "pagemap.h"
#include "saver.h"
#include "signal_faults.h"
#include "sys_error.h"

Mapping::Mapping(size_t size, bool hugePages) : size_(size) {
  if (!hugePages) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw SysError("mmap", errno);
    base_ = static_cast<uint8_t*>(p);
    return;
  }
  // Huge pages need 2 MiB-aligned addresses: map more, trim to an aligned range.
  constexpr size_t kHuge = 2u << 20;
  void* p = mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw SysError("mmap", errno);
  const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (raw + kHuge - 1) & ~(kHuge - 1);
  if (aligned > raw) munmap(p, aligned - raw);
  munmap(reinterpret_cast<void*>(aligned + size), raw + kHuge - aligned);
  base_ = reinterpret_cast<uint8_t*>(aligned);
  madvise(base_, size, MADV_HUGEPAGE);  // best effort: THP may be off on this machine
}

void Mapping::Unmap() {
  if (!unmapped_.exchange(true)) munmap(base_, size_);
}

namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}


// Walks [base, base + size) with PAGEMAP_SCAN, calling fn(start, end, categories) for each
// matching run. Returns the errno of a failed scan (0 on success).
template <typename Fn>
int PagemapScan(uint8_t* base, size_t size, const PmScanArg& query, Fn fn) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  std::vector<PageRegion> vec(1024);
  uint64_t start = reinterpret_cast<uint64_t>(base);
  const uint64_t end = start + size;
  int err = 0;
  while (start < end) {
    PmScanArg arg = query;
    arg.size = sizeof(arg);
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec.data());
    arg.vec_len = vec.size();
    int n = IoctlRetry(fd, kPagemapScan, &arg);
    if (n < 0) {
      err = errno;
      break;
    }
    for (int i = 0; i < n; i++) fn(vec[i].start, vec[i].end, vec[i].categories);
    if (arg.walk_end <= start) break;
    start = arg.walk_end;
  }
  close(fd);
  return err;
}

// Units (pages or chunks, by `unit` bytes) holding a page written since it was last protected
// (async write-protect); with `protect`, write-protects those pages in the same pass.
void ScanWritten(uint8_t* base, size_t size, bool protect, Bitmap* out, size_t unit = kChunkSize) {
  PmScanArg q = {};
  q.flags = protect ? (kPmScanWpMatching | kPmScanCheckWpAsync) : 0;
  q.category_mask = kPageIsWritten;
  q.return_mask = kPageIsWritten;
  const uint64_t b0 = reinterpret_cast<uint64_t>(base);
  int err = PagemapScan(base, size, q, [&](uint64_t s, uint64_t e, uint64_t) { out->SetRange((s - b0) / unit, (e - 1 - b0) / unit + 1); });
  if (err) throw SysError("ioctl(PAGEMAP_SCAN)", err);
}

std::vector<uint32_t> ChunkList(const Bitmap& b) {
  std::vector<uint32_t> v;
  b.ForEachRun([&](size_t s, size_t e) {
    for (size_t c = s; c < e; c++) v.push_back(static_cast<uint32_t>(c));
  });
  return v;
}

// Marks the chunks holding any page in one of `categories` other than the shared zero page.
// Returns false when the kernel cannot answer (then every chunk must be read).
bool ScanPopulated(uint8_t* base, size_t size, uint64_t categories, Bitmap* out) {
  PmScanArg q = {};
  q.category_anyof_mask = categories;
  q.return_mask = kPageIsPresent | kPageIsSwapped | kPageIsPfnZero;
  const uint64_t b0 = reinterpret_cast<uint64_t>(base);
  return PagemapScan(base, size, q, [&](uint64_t s, uint64_t e, uint64_t cat) {
           if ((cat & kPageIsPfnZero) && !(cat & kPageIsSwapped)) return;
           out->SetRange((s - b0) / kChunkSize, (e - 1 - b0) / kChunkSize + 1);
         }) == 0;
}

}  // namespace

Region::Region(const RegionOptions& opts)
    : size_(opts.size),
      nPages_(opts.size / kPageSize),
      nChunks_(opts.size / kChunkSize),
      faultAround_(opts.faultAroundPages),
      pauseMode_(opts.pauseMode),
      signalFaults_(opts.signalFaults),
      faultAroundMax_(std::max(opts.faultAroundPages, opts.faultAroundMaxPages)),
      captureBudget_(opts.captureBudget),
      saverThreads_(std::max<uint32_t>(1, opts.saverThreads)),
      regionKey_(opts.regionKey),
      sink_(opts.sink),
      written_(opts.size / kPageSize),
      pendingSnap_(opts.size / kChunkSize, 0) {
  if (size_ == 0 || size_ % kChunkSize != 0) throw std::invalid_argument("size must be a positive multiple of 64 KiB");
  if (faultAround_ == 0 || (faultAround_ & (faultAround_ - 1)) != 0 || (faultAroundMax_ & (faultAroundMax_ - 1)) != 0)
    throw std::invalid_argument("faultAround must be a power of two");
  base_ = opts.base;
  if (!base_ || reinterpret_cast<uintptr_t>(base_) % kPageSize != 0)
    throw std::invalid_argument("region memory is not page-aligned");
  try {
    static const UffdProbe probe = Userfaultfd::Probe();  // the kernel's features do not change
    if (!probe.ok) throw SysError(probe.failedOp, probe.errnum);
    if (!(probe.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) throw SysError("UFFD_FEATURE_PAGEFAULT_FLAG_WP", ENOTSUP);
    // Unpopulated pages must trap too, or a first write to one would go unrecorded.
    if (!(probe.features & UFFD_FEATURE_WP_UNPOPULATED)) throw SysError("UFFD_FEATURE_WP_UNPOPULATED", ENOTSUP);
    uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED;
    if (pauseMode_) {
      if (!(probe.features & UFFD_FEATURE_WP_ASYNC)) throw SysError("UFFD_FEATURE_WP_ASYNC", ENOTSUP);
      if (opts.restore) throw std::invalid_argument("a restored region cannot use pause mode");
      want |= UFFD_FEATURE_WP_ASYNC;
    }
    if (signalFaults_) {
      if (!(probe.features & UFFD_FEATURE_SIGBUS)) throw SysError("UFFD_FEATURE_SIGBUS", ENOTSUP);
      if (opts.restore || pauseMode_) throw std::invalid_argument("faults: 'signal' is for live regions allocated or attached, not restored or in pause mode");
      want |= UFFD_FEATURE_SIGBUS;
    }
    if (probe.features & UFFD_FEATURE_EVENT_REMOVE) want |= UFFD_FEATURE_EVENT_REMOVE;
    // mremap keeps the registration and tells us, instead of silently dropping the markers.
    if (probe.features & UFFD_FEATURE_EVENT_REMAP) want |= UFFD_FEATURE_EVENT_REMAP;
    uffd_ = std::make_unique<Userfaultfd>(want);
    // A kernel write to a protected page cannot take a signal: it fails with EFAULT.
    kernelWritesTrap_ = uffd_->route() != UffdRoute::kSyscallUserModeOnly && !signalFaults_;
    captureEpoch_.assign(nChunks_, 0);
    captureSnap_.assign(nChunks_, 0);
    if (opts.restore) {
      // Tracked from the start: every page the source copies in arrives write-protected.
      uffd_->Register(base_, size_, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
      source_ = std::make_shared<PageSource>(uffd_.get(), base_, nChunks_, opts.restoreLabel);
      tracking_ = true;
    } else {
      uffd_->Register(base_, size_, UFFDIO_REGISTER_MODE_WP);
    }
    // The handler thread still reads the events (REMOVE, REMAP) that signals do not carry.
    handler_ = std::make_unique<FaultHandler>(this, uffd_->fd());
    if (signalFaults_) signal_faults::Add(this, reinterpret_cast<uintptr_t>(base_), reinterpret_cast<uintptr_t>(base_) + size_);
  } catch (...) {
    handler_.reset();
    uffd_.reset();
    throw;
  }
}

Region::~Region() {
  try {
    Close();
  } catch (...) {
  }
}

namespace {

// Appends the chunks pages [b, e) lie in; runs come in increasing order.
void AppendChunks(std::vector<uint32_t>* chunks, size_t b, size_t e) {
  uint32_t first = b / kPagesPerChunk, last = (e - 1) / kPagesPerChunk;
  if (!chunks->empty() && chunks->back() >= first) first = chunks->back() + 1;
  for (uint32_t c = first; c <= last; c++) chunks->push_back(c);
}

}  // namespace

std::vector<uint32_t> Region::WrittenChunksLocked() const {
  std::vector<uint32_t> chunks;
  written_.ForEachRun([&](size_t b, size_t e) { AppendChunks(&chunks, b, e); });
  return chunks;
}

std::vector<uint32_t> Region::ProtectAll(bool* scanLater) {
  auto protectAll = [this] {
    BackgroundPark park(kBurstQuietNs, kBurstMaxNs);  // for the ioctl alone: nothing allocates meanwhile
    ProtectRangeLocked(0, nPages_);
  };
  std::vector<uint32_t> chunks;
  struct sysinfo si;
  const bool swap = sysinfo(&si) != 0 || si.totalswap > 0;
  if (!swap) {
    // After protecting, a page can be populated only through our handler, which captures
    // it first: the saver can scan for populated pages at leisure.
    protectAll();
    chunks.resize(nChunks_);
    for (uint32_t c = 0; c < nChunks_; c++) chunks[c] = c;
    *scanLater = true;
    return chunks;
  }
  // A protected unpopulated page reads back from PAGEMAP_SCAN as a swap entry (the uffd-wp
  // marker), so swapped pages are looked for before protecting and present pages after:
  // a page populated in between is present afterwards.
  Bitmap populated(nChunks_);
  bool ok = !tracking_ && ScanPopulated(base_, size_, kPageIsPresent | kPageIsSwapped, &populated);
  protectAll();
  ok = ok && ScanPopulated(base_, size_, kPageIsPresent, &populated);
  if (!ok) populated.SetAll();
  populated.ForEachRun([&](size_t b, size_t e) {
    for (size_t c = b; c < e; c++) chunks.push_back(static_cast<uint32_t>(c));
  });
  *scanLater = false;
  return chunks;
}

void Region::ProtectRangeLocked(size_t firstPage, size_t endPage) {
  const uint64_t t0 = NowNs();
  uffd_->WriteProtect(base_ + firstPage * kPageSize, (endPage - firstPage) * kPageSize, true);
  protectCost_.Observe(endPage - firstPage, NowNs() - t0);
}

template <typename ForEachRun>
void Region::ProtectRunsLocked(ForEachRun forEachRun) {
  size_t first = 0, end = 0;
  forEachRun([&](size_t b, size_t e) {
    if (end > first && b - end <= protectCost_.MergeGapPages()) {
      end = e;
      return;
    }
    if (end > first) ProtectRangeLocked(first, end);
    first = b;
    end = e;
  });
  if (end > first) ProtectRangeLocked(first, end);
}

void Region::ProtectPagesLocked(const Bitmap& pages) {
  ProtectRunsLocked([&](auto fn) { pages.ForEachRun(fn); });
}

SnapshotResult Region::Snapshot(uint64_t snapId, std::string meta, bool hold) {
  const uint64_t t0 = NowNs();
  SnapshotResult r;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) throw std::logic_error("region is closed");
    WaitForHandlerLocked(lock);  // a REMAP/REMOVE that mremap/madvise returned from is handled
    CheckUsableLocked();
    MergeZeroServedLocked();
    bool scanLater = false;
    rawPool_->NewPeriod();
    if (pauseMode_) {
      SnapshotPausedLocked(snapId, std::move(meta), &r);
    } else if (!tracking_ || baselineBroken_) {
      r.chunks = ProtectAll(&scanLater);
      tracking_ = true;
      baselineBroken_ = false;
      r.full = true;
    } else {
      {
        BackgroundPark park(kBurstQuietNs, kBurstMaxNs);
        // One walk of the written pages for both (a second cost ~10 us at 1 GiB, cold).
        ProtectRunsLocked([&](auto protect) {
          written_.ForEachRun([&](size_t b, size_t e) {
            AppendChunks(&r.chunks, b, e);
            protect(b, e);
          });
        });
      }
      DropUnchangedLocked(&r.chunks);
    }
    if (!pauseMode_) {
      written_.ClearAll();
      for (uint32_t c : r.chunks) SetPendingLocked(c, snapId);
      sink_->Open(snapId, regionKey_, r.full, std::move(meta), static_cast<uint32_t>(r.chunks.size()));
      if (!saver_) saver_ = std::make_unique<Saver>(this, saverThreads_);
      if (!r.chunks.empty()) inflight_.push_back({snapId, r.chunks, 0, scanLater, nullptr});
    }
    held_ = hold;
    headSnap_ = snapId;
    NewHeadLocked(false);
    r.pauseNs = NowNs() - t0;
    stats_.snapshots++;
    stats_.lastPauseNs = r.pauseNs;
    stats_.maxPauseNs = std::max(stats_.maxPauseNs, r.pauseNs);
  }
  // The savers would only wait out the park (background.h): the handler thread wakes them
  // when it ends, sparing the program's thread the wake-up.
  if (!handler_->WakeSaversAt(static_cast<int64_t>(NowNs()) + kBurstQuietNs)) saverCv_.notify_all();
  return r;
}

// Pause mode: the kernel resolves write faults itself (async write-protect), so the snapshot
// finds the written pages, protects them again and copies them, all before it returns.
void Region::SnapshotPausedLocked(uint64_t snapId, std::string meta, SnapshotResult* r) {
  Bitmap chunks(nChunks_);
  if (!tracking_ || baselineBroken_) {
    uffd_->WriteProtect(base_, size_, true);
    if (!ScanPopulated(base_, size_, kPageIsPresent, &chunks)) chunks.SetAll();
    tracking_ = true;
    baselineBroken_ = false;
    r->full = true;
  } else {
    ScanWritten(base_, size_, true, &chunks);
  }
  r->chunks = ChunkList(chunks);
  sink_->Open(snapId, regionKey_, r->full, std::move(meta), static_cast<uint32_t>(r->chunks.size()));
  if (!saver_) saver_ = std::make_unique<Saver>(this, saverThreads_);
  for (uint32_t c : r->chunks) {
    BlobPtr raw = rawPool_->Copy(ChunkAddr(c), kChunkSize);
    sink_->Stage(snapId, c, raw);
    rawQueue_.push_back({snapId, c, std::move(raw)});
    rawQueueBytes_ += kChunkSize;
    stats_.bytesCaptured += kChunkSize;
  }
}

std::vector<uint32_t> Region::ChangedChunksLocked() {
  if (!pauseMode_) return WrittenChunksLocked();
  Bitmap chunks(nChunks_);
  ScanWritten(base_, size_, false, &chunks);
  return ChunkList(chunks);
}

void Region::CaptureLocked(uint32_t c) {
  const uint64_t snap = pendingSnap_[c];
  captureEpoch_[c] = readEpoch_;
  captureSnap_[c] = snap;
  SetPendingLocked(c, 0);
  stats_.chunksCapturedByHandler++;
  stats_.bytesCaptured += kChunkSize;
  if (rawQueueBytes_ >= captureBudget_) {
    // The saver is behind: compressing here makes the writer wait longer, but bounds the
    // memory a snapshot of a region the program keeps rewriting can take.
    stats_.chunksEncodedByHandler++;
    sink_->Put(snap, c, Encode(ChunkAddr(c), kChunkSize));
    return;
  }
  BlobPtr raw = rawPool_->Copy(ChunkAddr(c), kChunkSize);
  sink_->Stage(snap, c, raw);
  rawQueue_.push_back({snap, c, std::move(raw)});
  rawQueueBytes_ += kChunkSize;
}

void Region::FlushLocked() {
  // Every pending chunk, not only those still queued in inflight_: the chunks savers are
  // encoding right now are pending too (their Inflight may already be gone), and capturing
  // them here is what tells those savers to drop their copies.
  for (uint32_t c = 0; pendingCount_ && c < nChunks_; c++)
    if (pendingSnap_[c]) CaptureLocked(c);
  inflight_.clear();
  if (!rawQueue_.empty()) saverCv_.notify_all();
}

void Region::Release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = false;
  }
  holdCv_.notify_all();
}

void Region::OnWriteFault(uintptr_t addr) {
  const uint64_t t0 = NowNs();
  bool captured = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    // The JS thread holds only while it protects the other members of a group snapshot (it
    // touches no member's memory meanwhile) and releases on every path, close included.
    holdCv_.wait(lock, [&] { return !held_; });
    stats_.wpFaults++;
    ExtendBackgroundPark();
    if (moved_ || addr < reinterpret_cast<uintptr_t>(base_) || addr >= reinterpret_cast<uintptr_t>(base_) + size_) {
      ReleaseStrayFaultLocked(addr, true);
      return;
    }
    const size_t page = (addr - reinterpret_cast<uintptr_t>(base_)) / kPageSize;
    size_t g0 = page & ~static_cast<size_t>(faultAround_ - 1);
    // A write that continues right where the previous fault's group ended is sequential:
    // double the group (up to faultAroundMax) to pay one trap for more pages.
    size_t span = faultAround_;
    if (g0 == lastGroupEnd_) span = std::min<size_t>(lastSpan_ * 2, faultAroundMax_);
    size_t g1 = std::min(g0 + span, nPages_);
    if (source_ && !source_->ready()) {
      // Chunks still missing must not be captured or unprotected: keep to the faulting one.
      g0 = std::max(g0, page / kPagesPerChunk * kPagesPerChunk);
      g1 = std::min(g1, (page / kPagesPerChunk + 1) * kPagesPerChunk);
    }
    // The previous group's chunks ahead of its fault were written through: no need to look again.
    if (g0 == lastGroupEnd_ && lastGroupSpeculative_ < speculative_.size()) speculative_.resize(lastGroupSpeculative_);
    lastGroupSpeculative_ = speculative_.size();
    const size_t faulting = page / kPagesPerChunk;
    for (size_t c = g0 / kPagesPerChunk; c <= (g1 - 1) / kPagesPerChunk; c++) {
      // Not the chunks a snapshot in flight still needs (pending): they are copied here
      // anyway, and a writer that keeps rewriting a region should not pay a hash on top.
      if (c != faulting && c * kPagesPerChunk >= g0 && (c + 1) * kPagesPerChunk <= g1 && !pendingSnap_[c] &&
          speculative_.size() < kMaxSpeculative && tracking_ && !pauseMode_) {
        bool clean = true;
        for (size_t p = c * kPagesPerChunk; clean && p < (c + 1) * kPagesPerChunk; p++) clean = !written_.Test(p);
        // Still protected, so these are its contents at the head.
        if (clean) speculative_.push_back({static_cast<uint32_t>(c), Hash64(ChunkAddr(c), kChunkSize)});
      }
      if (pendingSnap_[c]) {
        CaptureLocked(static_cast<uint32_t>(c));
        captured = true;
      }
    }
    lastGroupEnd_ = g1;
    lastSpan_ = span;
    if (undoValid_) RecordUndoLocked(g0, g1);
    // Unprotecting wakes the faulting thread(s).
    uffd_->WriteProtect(base_ + g0 * kPageSize, (g1 - g0) * kPageSize, false);
    if (!closed_) written_.SetRange(g0, g1);
    stats_.faultNsTotal += NowNs() - t0;
  }
  if (captured) saverCv_.notify_one();
}

void Region::OnMissingFault(uintptr_t addr) {
  if (source_) {
    source_->OnMissingFault(addr);  // never takes mu_: holders of mu_ may be waiting on this
    return;
  }
  // Alloc'd regions are not registered for missing faults; serve zeros so no thread can hang.
  std::lock_guard<std::mutex> lock(mu_);
  stats_.missingFaults++;
  if (moved_ || addr < reinterpret_cast<uintptr_t>(base_) || addr >= reinterpret_cast<uintptr_t>(base_) + size_) {
    ReleaseStrayFaultLocked(addr, false);
    return;
  }
  const size_t page = (addr - reinterpret_cast<uintptr_t>(base_)) / kPageSize;
  if (!uffd_->ZeroPage(base_ + page * kPageSize, kPageSize)) uffd_->Wake(base_ + page * kPageSize, kPageSize);
}

void Region::OnRemove(uintptr_t start, uintptr_t end) {
  std::lock_guard<std::mutex> lock(mu_);
  const uintptr_t lo = std::max(start, reinterpret_cast<uintptr_t>(base_));
  const uintptr_t hi = std::min(end, reinterpret_cast<uintptr_t>(base_) + size_);
  if (lo >= hi || !tracking_) return;
  undoValid_ = false;  // the pages change without a write fault
  if (pauseMode_) {
    // Dropped pages do not show as written to PAGEMAP_SCAN: start a new full baseline.
    baselineBroken_ = true;
    return;
  }
  const size_t p0 = (lo - reinterpret_cast<uintptr_t>(base_)) / kPageSize;
  const size_t p1 = (hi - reinterpret_cast<uintptr_t>(base_) + kPageSize - 1) / kPageSize;
  // The kernel drops these pages right after we read the event: their contents change
  // without a write fault, so the next snapshot must save them.
  written_.SetRange(p0, p1);
  uint64_t lost = 0;
  auto consider = [&](uint64_t snap) {
    if (snap && (lost == 0 || snap < lost)) lost = snap;
  };
  for (size_t c = p0 / kPagesPerChunk; c <= (p1 - 1) / kPagesPerChunk; c++) {
    consider(pendingSnap_[c]);
    // Captured after the read that brought this event: possibly the discarded contents.
    if (captureEpoch_[c] >= readEpoch_) consider(captureSnap_[c]);
  }
  if (!lost) return;
  // A capture in flight lost its contents: that snapshot and every later one of this
  // region fail, and the next snapshot starts a new full baseline.
  sink_->Fail(lost, "memory in the region was discarded (MADV_DONTNEED or similar) before it was saved");
  for (uint32_t c = 0; c < nChunks_; c++)
    if (pendingSnap_[c] >= lost) SetPendingLocked(c, 0);
  inflight_.erase(std::remove_if(inflight_.begin(), inflight_.end(), [&](const Inflight& f) { return f.snap >= lost; }),
                  inflight_.end());
  baselineBroken_ = true;
}

void Region::BeginEventRead() {
  std::lock_guard<std::mutex> lock(mu_);
  readEpoch_++;
}

void Region::EndEventBatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    doneEpoch_ = readEpoch_;
  }
  handlerCv_.notify_all();
}

void Region::WaitForHandlerLocked(std::unique_lock<std::mutex>& lock) {
  // Only the batch in progress now: a handler that keeps reading new faults cannot starve us.
  const uint64_t target = readEpoch_;
  handlerCv_.wait(lock, [&] { return doneEpoch_ >= target || closed_; });
}

void Region::OnRemap(uintptr_t from, uintptr_t to, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(base_), hi = lo + size_;
  if (from + len <= lo || from >= hi || moved_) return;
  // Our view of the memory (and the JS ArrayBuffer's) is stale: stop tracking for good. Captures
  // still to do would read the old addresses: they are dropped, failing their snapshots.
  moved_ = true;
  uint64_t lost = 0;
  for (auto& s : pendingSnap_) {
    if (s && (lost == 0 || s < lost)) lost = s;
    s = 0;
  }
  pendingCount_ = 0;
  speculative_.clear();
  lastGroupSpeculative_ = 0;
  inflight_.clear();
  if (lost) sink_->Fail(lost, "the region's memory was moved by mremap() before it was saved");
  // The moved pages stay registered: their faults are ours to release (ReleaseStrayFaultLocked).
  if (signalFaults_) signal_faults::Add(this, to, to + len);
}

void Region::CheckUsableLocked() const {
  if (moved_)
    throw MovedError("the region's memory was moved by mremap(): its write tracking is lost");
}

void Region::ReleaseStrayFaultLocked(uintptr_t addr, bool wp) {
  // Only reachable after an mremap (EVENT_REMAP keeps the moved range registered): never
  // leave the faulting thread blocked.
  uint8_t* page = reinterpret_cast<uint8_t*>(addr & ~(uintptr_t{kPageSize} - 1));
  try {
    if (wp)
      uffd_->WriteProtect(page, kPageSize, false);
    else if (!uffd_->ZeroPage(page, kPageSize))
      uffd_->Wake(page, kPageSize);
  } catch (const SysError&) {
    try {
      uffd_->Wake(page, kPageSize);
    } catch (const SysError&) {
    }
  }
}

void Region::Unprotect(size_t offset, size_t len) {
  bool captured = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) throw std::logic_error("region is closed");
    WaitForHandlerLocked(lock);
    CheckUsableLocked();
    if (offset > size_ || len > size_ - offset) throw std::out_of_range("range beyond the region");
    if (len == 0 || !tracking_) return;
    const size_t p0 = offset / kPageSize, p1 = (offset + len + kPageSize - 1) / kPageSize;
    for (size_t c = p0 / kPagesPerChunk; c <= (p1 - 1) / kPagesPerChunk; c++) {
      if (pendingSnap_[c]) {
        CaptureLocked(static_cast<uint32_t>(c));
        captured = true;
      }
    }
    uffd_->WriteProtect(base_ + p0 * kPageSize, (p1 - p0) * kPageSize, false);
    written_.SetRange(p0, p1);
    undoValid_ = false;
  }
  if (captured) saverCv_.notify_one();
}

void Region::WakeSaver() {
  { std::lock_guard<std::mutex> lock(mu_); }  // a saver between its check and its wait sees the stop
  saverCv_.notify_all();
}

bool Region::WaitForSaveWork(const std::atomic<bool>& stop) {
  std::unique_lock<std::mutex> lock(mu_);
  saverCv_.wait(lock, [&] { return stop.load() || HasSaveWorkLocked(); });
  return HasSaveWorkLocked();
}

bool Region::SaveStep() {
  RawCapture raw;
  uint64_t snap = 0;
  uint32_t chunk = 0;
  uint64_t scanFor = 0;
  uint64_t epoch = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!rawQueue_.empty()) {
      raw = std::move(rawQueue_.front());
      rawQueue_.pop_front();
      rawQueueBytes_ -= kChunkSize;
    } else if (!inflight_.empty() && inflight_.front().scanPending) {
      scanFor = inflight_.front().snap;
      inflight_.front().scanPending = false;
      scanning_ = true;
    } else {
      while (!inflight_.empty()) {
        Inflight& f = inflight_.front();
        // Chunks the scan found unpopulated are zero at the snapshot: no need to read them.
        while (f.next < f.chunks.size() && f.populated && pendingSnap_[f.chunks[f.next]] == f.snap &&
               !f.populated->Test(f.chunks[f.next])) {
          SetPendingLocked(f.chunks[f.next], 0);
          sink_->Put(f.snap, f.chunks[f.next], ZeroBlob(kChunkSize));
          f.next++;
        }
        while (f.next < f.chunks.size() && pendingSnap_[f.chunks[f.next]] != f.snap) f.next++;
        if (f.next == f.chunks.size()) {
          inflight_.pop_front();
          continue;
        }
        chunk = f.chunks[f.next++];
        snap = f.snap;
        epoch = readEpoch_;
        break;
      }
      if (!snap) return false;
    }
  }
  if (scanFor) {
    auto populated = std::make_shared<Bitmap>(nChunks_);
    if (!ScanPopulated(base_, size_, kPageIsPresent, populated.get())) populated.reset();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!inflight_.empty() && inflight_.front().snap == scanFor) inflight_.front().populated = std::move(populated);
      scanning_ = false;
    }
    saverCv_.notify_all();
    return true;
  }
  if (raw.raw) {
    sink_->Put(raw.snap, raw.chunk, Encode(raw.raw->bytes.data(), raw.raw->bytes.size()));
    return true;
  }
  // Encode straight from the region: the chunk stays protected while it is pending, and a
  // write that races us is served by the handler, which captures its own copy first.
  BlobPtr encoded = Encode(ChunkAddr(chunk), kChunkSize);
  std::lock_guard<std::mutex> lock(mu_);
  if (pendingSnap_[chunk] == snap) {
    SetPendingLocked(chunk, 0);
    captureEpoch_[chunk] = epoch;
    captureSnap_[chunk] = snap;
    stats_.chunksSavedInBackground++;
    stats_.bytesCaptured += kChunkSize;
    sink_->Put(snap, chunk, std::move(encoded));
  } else {
    stats_.savesDiscarded++;
  }
  return true;
}

std::vector<uint32_t> Region::PrepareRollback() {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) throw std::logic_error("region is closed");
  WaitForHandlerLocked(lock);
  CheckUsableLocked();
  FlushLocked();
  MergeZeroServedLocked();
  if (!tracking_) {
    std::vector<uint32_t> all(nChunks_);
    for (uint32_t c = 0; c < nChunks_; c++) all[c] = c;
    return all;
  }
  return ChangedChunksLocked();
}

void Region::NewHeadLocked(bool rolledBack) {
  undo_.clear();
  undoUsed_ = 0;
  undoValid_ = rolledBack && tracking_ && !pauseMode_ && !source_;
  if (!rolledBack) std::vector<uint8_t>().swap(undoBytes_);
  speculative_.clear();
  lastGroupSpeculative_ = 0;
}

void Region::DropUnchangedLocked(std::vector<uint32_t>* chunks) {
  if (speculative_.empty()) return;
  // Protected again by now: the contents cannot change under the hash.
  Bitmap unchanged(nChunks_);
  for (const Speculative& s : speculative_)
    if (Hash64(ChunkAddr(s.chunk), kChunkSize) == s.hash) unchanged.Set(s.chunk);
  const size_t before = chunks->size();
  chunks->erase(std::remove_if(chunks->begin(), chunks->end(), [&](uint32_t c) { return unchanged.Test(c); }), chunks->end());
  stats_.chunksUnchanged += before - chunks->size();
}

void Region::RecordUndoLocked(size_t p0, size_t p1) {
  // Pages written since the head were recorded when first written, and may differ now.
  size_t p = p0;
  while (p < p1) {
    while (p < p1 && written_.Test(p)) p++;
    const size_t b = p;
    while (p < p1 && !written_.Test(p)) p++;
    if (b == p) continue;
    const size_t len = (p - b) * kPageSize;
    if (undoUsed_ + len > kUndoBudget) {
      undo_.clear();
      undoUsed_ = 0;
      undoValid_ = false;  // until the next rollback: the written pages are not all recorded
      return;
    }
    if (undoBytes_.size() < undoUsed_ + len) undoBytes_.resize(std::max(undoUsed_ + len, undoBytes_.size() * 2));
    // Still protected, so unchanged since the head (and present: reading cannot fault to us).
    std::memcpy(undoBytes_.data() + undoUsed_, base_ + b * kPageSize, len);
    undo_.push_back({static_cast<uint32_t>(b), static_cast<uint32_t>(p - b), undoUsed_});
    undoUsed_ += len;
  }
}

bool Region::ResetFromUndoLocked() {
  FlushLocked();
  std::sort(undo_.begin(), undo_.end(), [](const UndoEntry& a, const UndoEntry& b) { return a.firstPage < b.firstPage; });
  size_t n = 0;
  for (const UndoEntry& e : undo_) {
    std::memcpy(base_ + size_t{e.firstPage} * kPageSize, undoBytes_.data() + e.offset, size_t{e.pages} * kPageSize);
    n += e.pages;
  }
  ProtectRunsLocked([&](auto fn) {
    size_t i = 0;
    while (i < undo_.size()) {
      const size_t b = undo_[i].firstPage;
      size_t e = b + undo_[i].pages;
      while (++i < undo_.size() && undo_[i].firstPage == e) e += undo_[i].pages;
      fn(b, e);
    }
  });
  for (const UndoEntry& e : undo_) written_.ClearRange(e.firstPage, size_t{e.firstPage} + e.pages);
  stats_.rollbacks++;
  stats_.pagesRolledBack += n;
  NewHeadLocked(true);
  return true;
}

bool Region::ResetToHead(uint64_t target) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) throw std::logic_error("region is closed");
  CheckUsableLocked();
  if (undoValid_ && target == headSnap_) return ResetFromUndoLocked();
  if (!tracking_ || target != cacheSnap_ || cache_.empty() || (source_ && !source_->ready())) return false;
  FlushLocked();
  MergeZeroServedLocked();
  Bitmap scanned;
  if (pauseMode_) {
    scanned = Bitmap(nPages_);
    ScanWritten(base_, size_, false, &scanned, kPageSize);
  }
  const Bitmap& pages = pauseMode_ ? scanned : written_;
  bool cached = true;
  pages.ForEachRun([&](size_t b, size_t e) {
    for (size_t c = b / kPagesPerChunk; cached && c <= (e - 1) / kPagesPerChunk; c++) cached = cache_.count(c) > 0;
  });
  if (!cached) return false;
  // Written pages are writable already (live mode unprotected them on the fault; pause mode
  // never blocks writes): copy the head's bytes back, then protect them again.
  size_t n = 0;
  pages.ForEachRun([&](size_t b, size_t e) {
    for (size_t p = b; p < e; p++) {
      const std::vector<uint8_t>& chunk = cache_.find(p / kPagesPerChunk)->second;
      if (chunk.empty()) std::memset(base_ + p * kPageSize, 0, kPageSize);
      else std::memcpy(base_ + p * kPageSize, chunk.data() + (p % kPagesPerChunk) * kPageSize, kPageSize);
    }
    n += e - b;
  });
  if (pauseMode_) {
    Bitmap ignored(nChunks_);
    ScanWritten(base_, size_, true, &ignored);
  } else {
    ProtectPagesLocked(pages);
  }
  written_.ClearAll();
  stats_.rollbacks++;
  stats_.pagesRolledBack += n;
  NewHeadLocked(true);
  return true;
}

std::vector<uint32_t> Region::Uncached(uint64_t target, const std::vector<uint32_t>& chunks) {
  std::lock_guard<std::mutex> lock(mu_);
  if (target != cacheSnap_) return chunks;
  std::vector<uint32_t> out;
  for (uint32_t c : chunks)
    if (!cache_.count(c)) out.push_back(c);
  return out;
}

std::vector<uint32_t> Region::Rollback(uint64_t target, const std::vector<ChunkSource>& input,
                                       const std::vector<uint32_t>& cached, bool onlyWritten) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) throw std::logic_error("region is closed");
  CheckUsableLocked();
  FlushLocked();
  MergeZeroServedLocked();
  if (target != cacheSnap_) {
    cache_.clear();
    cacheBytes_ = 0;
    cacheSnap_ = target;
  }
  std::vector<ChunkSource> sources = input;
  for (uint32_t c : cached) {
    auto it = cache_.find(c);
    if (it == cache_.end()) throw std::invalid_argument("chunk is not in the rollback cache");
    ChunkSource s;
    s.chunk = c;
    s.codec = it->second.empty() ? Codec::kZero : Codec::kRaw;
    s.rawLen = kChunkSize;
    s.bytes = it->second.data();
    s.len = it->second.size();
    s.fromCache = true;
    sources.push_back(s);
  }
  Bitmap covered(nChunks_);
  for (const ChunkSource& s : sources) {
    if (s.chunk >= nChunks_) throw std::out_of_range("chunk index beyond the region");
    covered.Set(s.chunk);
  }
  std::vector<uint32_t> missing;
  if (tracking_) {
    for (uint32_t c : ChangedChunksLocked())
      if (!covered.Test(c)) missing.push_back(c);
  } else {
    for (uint32_t c = 0; c < nChunks_; c++)
      if (!covered.Test(c)) missing.push_back(c);
  }
  if (!missing.empty()) return missing;
  undoValid_ = false;  // until it succeeds: the pages it rewrites are not in the log
  // Rolling back to the head itself: only pages written since differ. Copy just those from
  // the cache (a fuzzer that writes one page per chunk rewrites pages, not chunks).
  Bitmap pages;
  if (onlyWritten && tracking_) {
    if (pauseMode_) {
      pages = Bitmap(nPages_);
      ScanWritten(base_, size_, false, &pages, kPageSize);
    } else {
      pages = written_;
    }
  }

  std::vector<const ChunkSource*> order;
  order.reserve(sources.size());
  for (const ChunkSource& s : sources) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->chunk < b->chunk; });
  // Rewrite each run of consecutive chunks with its protection lifted (without waking
  // writers blocked there: they resume after us and their write lands on the restored page).
  size_t pagesWritten = 0;
  size_t i = 0;
  while (i < order.size()) {
    size_t j = i + 1;
    while (j < order.size() && order[j]->chunk == order[j - 1]->chunk + 1) j++;
    uint8_t* runBase = ChunkAddr(order[i]->chunk);
    const size_t runLen = (j - i) * kChunkSize;
    // (Pause mode needs no unprotect: async write-protect never blocks a write.)
    if (tracking_ && !pauseMode_) uffd_->WriteProtect(runBase, runLen, false, true);
    try {
      for (size_t k = i; k < j; k++) {
        const ChunkSource& s = *order[k];
        uint8_t* dst = ChunkAddr(s.chunk);
        if (s.rawLen != kChunkSize) throw CorruptError("chunk is not 64 KiB");
        if (s.fromCache && pages.size()) {
          const size_t p0 = size_t{s.chunk} * kPagesPerChunk;
          for (size_t p = 0; p < kPagesPerChunk; p++) {
            if (!pages.Test(p0 + p)) continue;
            pagesWritten++;
            if (s.len) std::memcpy(dst + p * kPageSize, s.bytes + p * kPageSize, kPageSize);
            else std::memset(dst + p * kPageSize, 0, kPageSize);
          }
          continue;
        }
        pagesWritten += kPagesPerChunk;
        if (source_ && !source_->IsPresent(s.chunk)) {
          // Never materialized: fill it with the target contents directly.
          thread_local std::vector<uint8_t> scratch(kChunkSize);
          if (s.codec != Codec::kZero) Decode(s.codec, s.rawLen, s.bytes, s.len, scratch.data());
          if (source_->FillForRollback(s.chunk, s.codec == Codec::kZero ? nullptr : scratch.data())) continue;
        }
        // Reading an untouched page maps the shared zero page: no memory is spent on zeros.
        if (s.codec != Codec::kZero || !IsZero(dst, kChunkSize)) Decode(s.codec, s.rawLen, s.bytes, s.len, dst);
        // Cached for the next reset to this target; a zero chunk as an empty entry.
        if (s.fromCache || cache_.count(s.chunk)) continue;
        if (s.codec == Codec::kZero) {
          cache_.emplace(s.chunk, std::vector<uint8_t>());
        } else if (cacheBytes_ < kRollbackCacheBudget) {
          cache_.emplace(s.chunk, std::vector<uint8_t>(dst, dst + kChunkSize));
          cacheBytes_ += kChunkSize;
        }
      }
    } catch (...) {
      if (tracking_) uffd_->WriteProtect(runBase, runLen, true);
      written_.SetRange(order[i]->chunk * kPagesPerChunk, (order[j - 1]->chunk + 1) * kPagesPerChunk);
      throw;
    }
    if (tracking_ && !pauseMode_) uffd_->WriteProtect(runBase, runLen, true);
    i = j;
  }
  if (tracking_ && pauseMode_) {
    // One pass re-protects every page written since the head, ours included.
    Bitmap ignored(nChunks_);
    ScanWritten(base_, size_, true, &ignored);
  }
  if (!tracking_) {
    uffd_->WriteProtect(base_, size_, true);
    tracking_ = true;
  }
  written_.ClearAll();
  baselineBroken_ = false;
  headSnap_ = target;
  NewHeadLocked(true);
  stats_.rollbacks++;
  stats_.chunksRolledBack += sources.size();
  stats_.pagesRolledBack += pagesWritten;
  return {};
}

void Region::Grow(size_t newSize) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) throw std::logic_error("region is closed");
  if (newSize % kChunkSize != 0) throw std::invalid_argument("new size must be a multiple of 64 KiB");
  CheckUsableLocked();
  if (newSize <= size_) return;
  // Served before registered: no write to the new pages may find no handler.
  if (signalFaults_) signal_faults::Add(this, reinterpret_cast<uintptr_t>(base_) + size_, reinterpret_cast<uintptr_t>(base_) + newSize);
  uffd_->Register(base_ + size_, newSize - size_, UFFDIO_REGISTER_MODE_WP);
  const size_t oldPages = nPages_;
  size_ = newSize;
  nPages_ = newSize / kPageSize;
  nChunks_ = newSize / kChunkSize;
  written_.Resize(nPages_);
  pendingSnap_.resize(nChunks_, 0);
  captureEpoch_.resize(nChunks_, 0);
  captureSnap_.resize(nChunks_, 0);
  if (tracking_) written_.SetRange(oldPages, nPages_);
  undoValid_ = false;
}

RegionStats Region::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  RegionStats s = stats_;
  s.pendingChunks = pendingCount_ + rawQueue_.size();
  return s;
}

void Region::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || !uffd_) return;
    FlushLocked();
    closed_ = true;
    held_ = false;
  }
  holdCv_.notify_all();
  // The saver encodes what the flush captured, so every snapshot taken still completes.
  saver_.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      if (tracking_) uffd_->WriteProtect(base_, size_, false);  // wakes any writer still blocked
    } catch (const SysError&) {
      // Part of the range is no longer registered (moved by mremap): nothing waits there.
    }
  }
  if (signalFaults_) signal_faults::Remove(this);
  handler_.reset();
  if (source_) source_->Close();
  try {
    uffd_->Unregister(base_, size_);
  } catch (const SysError&) {
    // Already gone (the mapping was replaced): closing the descriptor is enough.
  }
  uffd_.reset();
}
