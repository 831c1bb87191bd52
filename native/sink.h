#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "codec.h"

// The hand-off between capture (fault handler, saver) and the store writer, one per store.
// Holds each chunk of a snapshot until the writer has committed it, so an in-place rollback
// can read snapshots that are not yet persisted (committed chunks it reads from the store).
// Never blocks a producer.
class Sink {
 public:
  struct Begin {
    uint64_t snap;
    uint32_t regionKey;
    bool full;  // stands alone: the writer records no parent
    std::string meta;
  };
  struct Chunk {
    uint64_t snap;
    uint32_t chunk;
    BlobPtr blob;
  };
  struct End {
    uint64_t snap;
    uint32_t chunks;
    uint64_t rawBytes;
    uint64_t storedBytes;
    bool failed;
    std::string error;
  };
  struct Batch {
    std::vector<Begin> begins;
    std::vector<Chunk> chunks;
    std::vector<End> ends;
    bool empty() const { return begins.empty() && chunks.empty() && ends.empty(); }
  };
  struct Stats {
    uint64_t heldBytes;
    uint32_t inflight;
  };

  void Open(uint64_t snap, uint32_t regionKey, bool full, std::string meta, uint32_t expected);
  // A raw copy made by the fault handler: visible to Lookup until Put replaces it.
  void Stage(uint64_t snap, uint32_t chunk, BlobPtr raw);
  // The encoded chunk, ready for the writer.
  void Put(uint64_t snap, uint32_t chunk, BlobPtr encoded);
  // Marks `snap` and every later open snapshot of the same region failed.
  void Fail(uint64_t snap, const std::string& error);
  BlobPtr Lookup(uint64_t snap, uint32_t chunk);
  // Waits up to waitMs for work, then up to lingerMs more for ~maxBytes of it (fewer, larger
  // transactions); returns begins, up to ~maxBytes of chunks, and the ends of snapshots whose
  // every chunk is in this or an earlier batch (in id order).
  Batch Drain(size_t maxBytes, int waitMs, int lingerMs = 0);
  // The writer committed these chunks: they are readable from the store, drop the copies.
  void Committed(const double* snaps, const uint32_t* chunks, size_t n);
  // While pinned, Committed drops nothing: a rollback that found a chunk not yet in the store
  // can still read it here.
  void Pin();
  void Unpin();
  // The writer made `snap` durable (or dropped it): forget it.
  void Release(uint64_t snap);
  void Close();
  Stats GetStats();

 private:
  struct Snap {
    uint32_t regionKey;
    bool full;
    std::string meta;
    uint32_t expected;
    uint32_t put = 0;
    uint32_t drained = 0;
    uint32_t skipped = 0;
    bool beginSent = false;
    bool endSent = false;
    bool failed = false;
    std::string error;
    uint64_t rawBytes = 0;
    uint64_t storedBytes = 0;
    std::unordered_map<uint32_t, BlobPtr> blobs;
  };
  bool HasWorkLocked() const;
  bool EndReadyLocked() const;
  void Hold(const BlobPtr& blob, int sign);
  void DropLocked(uint64_t snap, uint32_t chunk);

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Snap> snaps_;
  std::deque<Chunk> ready_;
  uint64_t heldBytes_ = 0;
  uint64_t readyBytes_ = 0;
  uint32_t pins_ = 0;
  std::vector<std::pair<uint64_t, uint32_t>> committedWhilePinned_;
  bool closed_ = false;
};
