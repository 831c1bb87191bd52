#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "bitmap.h"
#include "codec.h"
#include "page_source.h"
#include "protect_cost.h"
#include "raw_pool.h"
#include "sink.h"
#include "uffd.h"

class FaultHandler;
class Saver;

constexpr size_t kPageSize = 4096;
constexpr size_t kChunkSize = 64 * 1024;
constexpr size_t kPagesPerChunk = kChunkSize / kPageSize;

struct RegionOptions {
  size_t size = 0;                 // bytes, a multiple of kChunkSize
  uint32_t faultAroundPages = 16;  // a power of two: pages unprotected (and saved) per write fault
  uint32_t faultAroundMaxPages = 512;  // sequential faults double the group up to this
  size_t captureBudget = 64u << 20;    // raw copies held for the saver; beyond it the handler compresses
  uint32_t saverThreads = 1;           // threads compressing in the background
  bool pauseMode = false;          // async write-protect: no faults to handle, snapshots copy in the pause
  bool signalFaults = false;       // write faults served on the faulting thread (SIGBUS), see signal_faults.h
  uint8_t* base = nullptr;         // page-aligned memory the caller keeps mapped beyond Close()
  uint32_t regionKey = 0;          // the store's id for this region, carried to the writer
  std::shared_ptr<Sink> sink;
  bool restore = false;            // filled lazily from a snapshot: missing pages fault to a PageSource
  std::string restoreLabel;        // names the store, region and snapshot in fatal messages
};

struct RegionStats {
  uint64_t wpFaults = 0;
  uint64_t missingFaults = 0;
  uint64_t chunksCapturedByHandler = 0;
  uint64_t chunksEncodedByHandler = 0;  // captured over budget: compressed in the fault itself
  uint64_t chunksSavedInBackground = 0;
  uint64_t savesDiscarded = 0;  // background saves lost to a racing fault (work done twice)
  uint64_t bytesCaptured = 0;   // raw bytes of snapshot contents captured
  uint64_t snapshots = 0;
  uint64_t rollbacks = 0;
  uint64_t chunksRolledBack = 0;
  uint64_t pagesRolledBack = 0;
  uint64_t lastPauseNs = 0;
  uint64_t maxPauseNs = 0;
  uint64_t pendingChunks = 0;
  uint64_t faultNsTotal = 0;  // time the handler spent serving faults
  uint64_t chunksUnchanged = 0;  // unprotected ahead of a write but unchanged: not stored
};

struct SnapshotResult {
  std::vector<uint32_t> chunks;  // the save set: chunks whose contents this snapshot stores
  bool full = false;             // saved against nothing (first snapshot, or after a broken baseline)
  uint64_t pauseNs = 0;
};

// Where one chunk's contents come from during a rollback: checked encoded bytes that stay
// valid for the call (`keep` holds them when they live in the sink).
struct ChunkSource {
  uint32_t chunk = 0;
  Codec codec = Codec::kZero;
  uint32_t rawLen = 0;
  const uint8_t* bytes = nullptr;
  size_t len = 0;
  BlobPtr keep;
  bool fromCache = false;  // decoded contents from the rollback cache
};

// Anonymous memory for a region, unmapped when the last owner lets go.
class Mapping {
 public:
  Mapping(size_t size, bool hugePages);
  ~Mapping() { Unmap(); }
  uint8_t* base() const { return base_; }
  size_t size() const { return size_; }
  void Unmap();

 private:
  uint8_t* base_;
  size_t size_;
  std::atomic<bool> unmapped_{false};
};

// A memory range tracked with userfaultfd write protection.
// Threads: the JS thread calls Snapshot/Rollback/Close; FaultHandler calls On*; Saver calls SaveStep.
// Every mutation of tracking state happens under mu_, and nothing holding mu_ touches memory
// that could fault to this region's handler.
class Region {
 public:
  explicit Region(const RegionOptions& opts);
  ~Region();

  uint8_t* base() const { return base_; }
  size_t size() const { return size_; }
  const std::shared_ptr<PageSource>& source() const { return source_; }

  // `hold`: after protecting, write faults on this region wait (queued in the kernel) until
  // Release(): Region.snapshotAll protects every member before any of them resumes.
  SnapshotResult Snapshot(uint64_t snapId, std::string meta, bool hold = false);
  void Release();
  // Captures every pending chunk now and returns the chunks written since the head snapshot.
  std::vector<uint32_t> PrepareRollback();
  // Rolls back to `target` when it is the head and the written pages' head contents are at
  // hand: from the undo log (the fault handler's copies of each group before its first write,
  // kept after a rollback until the next snapshot) or else the rollback cache. Copies back
  // just the written pages. Returns false (changing nothing) when the general path is
  // needed. The loop of a fuzzer lives here: its cost follows the pages written.
  bool ResetToHead(uint64_t target);
  // Of `chunks`, those the rollback cache does not hold decoded for snapshot `target`.
  std::vector<uint32_t> Uncached(uint64_t target, const std::vector<uint32_t>& chunks);
  // Rewrites `sources` and the `cached` chunks (from the rollback cache) in place and makes
  // them the clean head state `target`. Returns the chunks written since PrepareRollback that
  // neither covers (nothing changed then; call again).
  // `onlyWritten`: the target is the head, so only pages written since can differ.
  std::vector<uint32_t> Rollback(uint64_t target, const std::vector<ChunkSource>& sources,
                                 const std::vector<uint32_t>& cached, bool onlyWritten);
  RegionStats Stats();
  // The memory grew in place (WebAssembly.Memory.grow): track the new pages too. They were
  // writable untracked, so the next snapshot saves them.
  void Grow(size_t newSize);
  // Lifts write protection from the pages of [offset, offset+len) until the next snapshot,
  // capturing pending contents first, so the kernel can write there (read(2) into the region
  // with a user-mode-only userfaultfd, where kernel writes to protected pages fail with EFAULT).
  void Unprotect(size_t offset, size_t len);
  // Whether a write by the kernel itself (read(2), recv(2)...) into a protected page traps to
  // the handler. False with a UFFD_USER_MODE_ONLY descriptor: such writes fail with EFAULT.
  bool kernelWritesTrap() const { return kernelWritesTrap_; }
  // Finishes captures in flight, stops the threads and unregisters. Idempotent.
  void Close();

  // FaultHandler thread, or the faulting thread itself with signalFaults.
  void OnWriteFault(uintptr_t addr);
  void OnMissingFault(uintptr_t addr);
  void OnRemove(uintptr_t start, uintptr_t end);
  void OnRemap(uintptr_t from, uintptr_t to, size_t len);
  // Called before each read(2) of the descriptor: captures that start after this may see
  // memory a REMOVE event in that read is about to discard.
  void BeginEventRead();
  // After the events of that read are handled: snapshots waiting for them may go on.
  void EndEventBatch();
  // Saver thread: does one unit of work; returns false when there was none.
  bool SaveStep();
  // Blocks until there is save work or `stop` is set; false once stopped with nothing left.
  bool WaitForSaveWork(const std::atomic<bool>& stop);
  void WakeSaver();

 private:
  struct Inflight {
    uint64_t snap;
    std::vector<uint32_t> chunks;
    size_t next = 0;
    bool scanPending = false;     // a full snapshot: the saver still has to look for populated pages
    std::shared_ptr<Bitmap> populated;  // then: chunks with data (others are zero)
  };
  struct RawCapture {
    uint64_t snap;
    uint32_t chunk;
    BlobPtr raw;
  };
  uint8_t* ChunkAddr(uint32_t c) const { return base_ + size_t{c} * kChunkSize; }
  void CaptureLocked(uint32_t c);
  void FlushLocked();
  // Protects everything; returns the populated chunks when that must be known now (swap is
  // configured), else every chunk, leaving the scan to the saver (*scanLater = true).
  std::vector<uint32_t> ProtectAll(bool* scanLater);
  std::vector<uint32_t> WrittenChunksLocked() const;
  // Write-protects the marked pages, near runs merged into one ioctl (see ProtectCost).
  void ProtectPagesLocked(const Bitmap& pages);
  // The same for runs given in increasing order by forEachRun(fn(begin, end)).
  template <typename ForEachRun>
  void ProtectRunsLocked(ForEachRun forEachRun);
  // Sets pendingSnap_[c], keeping pendingCount_.
  void SetPendingLocked(uint32_t c, uint64_t snap) {
    pendingCount_ += (snap != 0) - (pendingSnap_[c] != 0);
    pendingSnap_[c] = snap;
  }
  // The memory now matches a new head (a snapshot, or a rollback when `rolledBack`): the undo
  // log starts over (it records only after a rollback, a fuzzer's loop, until the next
  // snapshot) and so does the list of speculative chunks.
  void NewHeadLocked(bool rolledBack);
  // Of the chunks fault-around unprotected ahead of a write, drops from `chunks` those whose
  // contents are unchanged since the head (their hash matches).
  void DropUnchangedLocked(std::vector<uint32_t>* chunks);
  // Records the head contents of pages [p0, p1) that no write has reached since the head.
  void RecordUndoLocked(size_t p0, size_t p1);
  bool ResetFromUndoLocked();
  void ProtectRangeLocked(size_t firstPage, size_t endPage);
  // Chunks changed since the head: the written bitmap, or in pause mode the kernel's record.
  std::vector<uint32_t> ChangedChunksLocked();
  void SnapshotPausedLocked(uint64_t snapId, std::string meta, SnapshotResult* r);
  void MergeZeroServedLocked() {
    if (source_) source_->TakeZeroServed(&written_, kPagesPerChunk);
  }
  // While one saver scans for populated pages the others wait: the chunks it finds unpopulated
  // need not be read.
  bool HasSaveWorkLocked() const { return !rawQueue_.empty() || (!inflight_.empty() && !scanning_); }
  void CheckUsableLocked() const;
  // Waits until the handler has handled every event it has read: a REMOVE that madvise() has
  // already returned from is then recorded before we look at what was written.
  void WaitForHandlerLocked(std::unique_lock<std::mutex>& lock);
  // A fault outside the region's range (its memory was moved): let the thread go untracked.
  void ReleaseStrayFaultLocked(uintptr_t addr, bool wp);

  uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t nPages_ = 0;
  size_t nChunks_ = 0;
  uint32_t faultAround_ = 16;
  bool pauseMode_ = false;
  bool signalFaults_ = false;
  uint32_t faultAroundMax_ = 512;
  size_t captureBudget_ = 64u << 20;
  uint32_t saverThreads_ = 1;
  bool scanning_ = false;
  size_t lastGroupEnd_ = SIZE_MAX;  // where the previous fault's group ended
  // A program takes most of its write faults in a burst right after a snapshot. The background
  // threads are parked from the snapshot's protects until the burst ends, 1 ms without a write
  // fault, at most 20 ms after the protects (background.h).
  static constexpr int64_t kBurstQuietNs = 1'000'000;
  static constexpr int64_t kBurstMaxNs = 20'000'000;
  size_t lastSpan_ = 0;
  size_t rawQueueBytes_ = 0;
  uint32_t regionKey_ = 0;
  std::shared_ptr<Sink> sink_;
  std::shared_ptr<RawPool> rawPool_ = std::make_shared<RawPool>();
  std::unique_ptr<Userfaultfd> uffd_;
  ProtectCost protectCost_;

  std::mutex mu_;
  std::condition_variable saverCv_;
  bool closed_ = false;
  bool tracking_ = false;        // protected at least once: writes are being recorded
  bool baselineBroken_ = false;  // a capture was lost: the next snapshot must be full
  bool held_ = false;            // a group snapshot is protecting other regions: faults wait
  std::condition_variable holdCv_;
  Bitmap written_;               // pages unprotected since the last snapshot (or rollback)
  std::vector<uint64_t> pendingSnap_;  // per chunk: snapshot still to capture it, 0 = none
  size_t pendingCount_ = 0;            // nonzero entries of pendingSnap_
  uint64_t headSnap_ = 0;              // the snapshot the memory last matched
  // Undo log: the head contents of every page written since the head, copied by the fault
  // handler before it lets the first write in. While `undoValid_`, written_ is exactly the
  // union of the entries' pages, so resetting to the head needs neither the store nor a walk
  // of the region.
  struct UndoEntry {
    uint32_t firstPage;
    uint32_t pages;
    size_t offset;  // into undoBytes_
  };
  static constexpr size_t kUndoBudget = 64u << 20;
  bool undoValid_ = false;
  std::vector<UndoEntry> undo_;
  std::vector<uint8_t> undoBytes_;
  size_t undoUsed_ = 0;
  // Chunks a fault-around group unprotected ahead of the write that faulted (the group grew
  // past the faulting chunk), with an xxh64 of their head contents taken before unprotecting
  // them. A fault that continues right after the group shows the write went on through them
  // (they are dropped from here: written); the rest are hashed again at the next snapshot,
  // which stores them only if they changed. Bounded: beyond it, chunks count as written.
  struct Speculative {
    uint32_t chunk;
    uint64_t hash;
  };
  static constexpr size_t kMaxSpeculative = 4096;
  std::vector<Speculative> speculative_;
  size_t lastGroupSpeculative_ = 0;  // where the previous group's entries begin
  std::deque<Inflight> inflight_;
  std::deque<RawCapture> rawQueue_;
  RegionStats stats_;
  // Decoded chunks of the last rollback target: a loop that keeps resetting to one snapshot
  // (a fuzzer) copies them instead of reading and decoding the store every time.
  static constexpr size_t kRollbackCacheBudget = 64u << 20;
  uint64_t cacheSnap_ = 0;
  std::unordered_map<uint32_t, std::vector<uint8_t>> cache_;  // an empty entry: a zero chunk
  size_t cacheBytes_ = 0;
  bool kernelWritesTrap_ = true;
  bool moved_ = false;           // mremap moved (part of) the memory: tracking is lost
  // REMOVE races: the kernel discards pages right after the handler reads the event, so a
  // capture that began after that read may hold discarded (zero) contents.
  uint64_t readEpoch_ = 0;                 // bumped before each read of the descriptor
  std::vector<uint64_t> captureEpoch_;     // per chunk: readEpoch_ when its last capture began
  std::vector<uint64_t> captureSnap_;      // per chunk: the snapshot that capture was for
  uint64_t doneEpoch_ = 0;                 // readEpoch_ whose events are all handled
  std::condition_variable handlerCv_;

  std::shared_ptr<PageSource> source_;
  std::unique_ptr<FaultHandler> handler_;
  std::unique_ptr<Saver> saver_;
};
