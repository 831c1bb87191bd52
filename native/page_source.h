#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bitmap.h"
#include "codec.h"
#include "uffd.h"

// Serves a restored region's missing pages, a 64 KiB chunk at a time, with UFFDIO_COPY
// (write-protected, so the region's next snapshot is incremental against the restored one).
// Chunks come from blobs staged in memory (an in-memory store) or supplied by a reader
// thread that owns its own store connection: nothing here waits on the JS main thread.
// Chunks the snapshot holds as zero are left unpopulated until touched; a touched one gets
// the shared zero page, write-protected like the rest.
class PageSource {
 public:
  PageSource(Userfaultfd* uffd, uint8_t* base, size_t nChunks, std::string label);
  ~PageSource();

  // Which chunks hold data; until the plan is set every fault waits for the reader, which
  // may also fetch the chunks of the order (SetOrder) before it.
  void SetPlan(const std::vector<uint8_t>& hasData);
  void Stage(uint32_t chunk, BlobPtr blob);
  // The reader cannot go on (the plan or a read failed): every data chunk not yet in memory is
  // corrupt. A thread already waiting on one is stopped as for any corrupt chunk; the source
  // becomes ready with `why` as its error.
  void Fail(const std::string& why);
  // Materializes staged chunks on the filler thread.
  void StartPrefetch();
  // Background fetching takes the chunks of `order` first (a working set recorded by an
  // earlier restore), then the rest in address order. `prefetch` false: only faulted chunks
  // are fetched until PrefetchAll(). `recordQuietMs` > 0 (a restore that records the working
  // set): background fetching waits until no thread has touched a missing chunk for that long
  // (at most kMaxRecordHoldMs in all), so that first touches fault and are recorded in order.
  void SetOrder(std::vector<uint32_t> order, bool prefetch, int recordQuietMs);
  void PrefetchAll();
  // The program gets the memory now: a recording's quiet time counts from here at the earliest.
  void HandedOut();
  // Chunks in the order threads first touched them while missing (at most kMaxRecorded),
  // and the first chunks background fetching took, in order (for tests and stats).
  std::vector<uint32_t> FaultOrder();
  std::vector<uint32_t> PrefetchLog();
  static constexpr size_t kMaxRecorded = 4096;
  static constexpr int kMaxRecordHoldMs = 1000;

  // Fault handler thread.
  void OnMissingFault(uintptr_t addr);

  // Reader thread: chunks to fetch, faulted ones first, then the rest in order.
  std::vector<uint32_t> NextToFetch(size_t max, int waitMs);
  // Queues a chunk for the filler thread, so the reader can fetch the next ones meanwhile
  // (blocks while too much is queued). Returns false when the source is closed. A corrupt
  // chunk is recorded (see corrupt()).
  bool Supply(uint32_t chunk, BlobPtr blob);

  // Blocks until every data chunk is in memory (or corrupt, or closed). False on timeout.
  bool WaitReady(int timeoutMs);
  bool ready();
  std::string corrupt();
  size_t dataChunks();
  size_t dataPresent();

  // Region, under its own lock.
  bool IsPresent(uint32_t chunk);
  // Pages of zero chunks written while they were being mapped, since the last call.
  void TakeZeroServed(Bitmap* writtenPages, size_t pagesPerChunk);
  // Rollback into a missing chunk: copies `raw` (a decoded chunk, or nullptr for zero) in and
  // returns true; returns false when the chunk is present and the caller must write it.
  bool FillForRollback(uint32_t chunk, const uint8_t* raw);

  void Close();

 private:
  using Clock = std::chrono::steady_clock;
  // kWanted: faulted, for the reader; kFetching: the reader has it; kQueued: supplied, for the
  // filler (its bytes are here: a reader failing after that does not make it corrupt).
  enum State : uint8_t { kMissing, kWanted, kFetching, kQueued, kFilling, kPresent, kCorrupt };
  uint8_t* ChunkAddr(uint32_t c) const { return base_ + size_t{c} * kChunk; }
  // Called with the chunk in kFilling, without the lock held.
  void Materialize(uint32_t c, Codec codec, uint32_t rawLen, uint64_t hash, const uint8_t* bytes, size_t len);
  void CopyIn(uint32_t c, const uint8_t* raw);
  void ServeZero(uint32_t c);
  void Finish(uint32_t c, State s);
  [[noreturn]] void DieCorrupt(uint32_t c);
  void FillerLoop();
  void CountDoneLocked();
  // The next chunk background fetching should take, or kNone; `staged`: only staged ones.
  uint32_t NextPrefetchLocked(bool staged);
  // While recording holds background fetching back: the time it may resume; else nullopt.
  std::optional<Clock::time_point> HoldLocked();
  static constexpr uint32_t kNone = UINT32_MAX;

  static constexpr size_t kChunk = 64 * 1024;
  Userfaultfd* uffd_;
  uint8_t* base_;
  size_t nChunks_;
  std::string label_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool planned_ = false;
  bool closed_ = false;
  std::vector<uint8_t> state_;
  std::vector<uint8_t> hasData_;
  std::vector<BlobPtr> staged_;
  std::vector<uint8_t> zeroServed_;
  std::vector<uint8_t> faulted_;  // a thread touched it before it was present
  bool anyZeroServed_ = false;
  std::deque<uint32_t> wanted_;
  size_t cursor_ = 0;
  size_t dataChunks_ = 0;
  size_t dataDone_ = 0;  // present or corrupt
  size_t fillers_ = 0;   // threads inside Materialize/ServeZero
  std::string corrupt_;
  std::unordered_map<uint32_t, std::string> corruptWhy_;
  bool prefetchStaged_ = false;
  bool prefetch_ = true;
  bool holding_ = false;
  bool handedOut_ = false;
  Clock::duration recordQuiet_{};
  Clock::time_point holdStart_{};
  Clock::time_point lastFault_{};
  std::vector<uint32_t> order_;
  size_t orderCursor_ = 0;
  std::vector<uint32_t> faultOrder_;
  std::vector<uint32_t> prefetchLog_;
  std::deque<std::pair<uint32_t, BlobPtr>> supplied_;
  size_t suppliedBytes_ = 0;
  std::thread filler_;
};
