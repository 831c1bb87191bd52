// Baseline measurements for `usnap bench`: what the alternatives to a userfaultfd snapshot cost.
// Each runs one trial on a region of `size` bytes it maps itself (anonymous, private,
// MADV_NOHUGEPAGE unless stated, fully written with FillRealistic data first), times only the
// operation named, cleans up every fd, child and signal handler, and throws BenchError or
// std::invalid_argument on failure. Times are CLOCK_MONOTONIC nanoseconds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bench {

struct MemcpyResult {
  uint64_t ns;  // memcpy of the whole region into a pre-faulted buffer
  double bytesPerSec;
};
MemcpyResult MemcpyFull(size_t size);

struct ForkPauseResult {
  uint64_t ns;      // fork() until it returns in the parent, region mapped and populated
  uint64_t baseNs;  // the same fork() before the region was mapped (the rest of the process)
};
ForkPauseResult ForkPause(size_t size);

struct ForkWriteResult {
  uint64_t forkNs;         // the fork() itself
  uint64_t writeNs;        // parent rewriting one word in every page while the child is alive
  double writeNsPerPage;   // writeNs / pages: the copy-on-write fault cost
  uint64_t pages;
};
ForkWriteResult ForkWriteOverhead(size_t size);

enum class ChildWork { kLz4 = 0, kRead = 1 };
struct ForkPeakResult {
  uint64_t extraPages;     // region pages copied while the child was saving (child's exclusive pages at end of save)
  uint64_t extraBytes;     // extraPages * 4096
  double fraction;         // extraBytes / size
  uint64_t pages;
  uint64_t childSaveNs;    // the child's pass over the region
  uint64_t parentWriteNs;  // the parent's rewrite of every page
  uint64_t parentPagesBeforeSaveDone;  // pages the parent had rewritten when the child finished
};
ForkPeakResult ForkPeakExtra(size_t size, ChildWork work);

struct MprotectResult {
  uint64_t pauseNs;        // mprotect(PROT_READ) of the whole region
  uint64_t writeNs;        // rewriting every page, each first write trapping to the SIGSEGV handler
  double writeNsPerPage;
  uint64_t faults;         // handler invocations on the region (== pages)
  uint64_t pages;
};
MprotectResult MprotectSigsegvWriteOverhead(size_t size, bool writes);  // !writes: the pause alone

struct WpAsyncResult {
  uint64_t pauseNs;         // scan + re-protect (one PAGEMAP_SCAN with WP_MATCHING) + copy of found pages
  uint64_t scanNs;          // the PAGEMAP_SCAN ioctls alone
  uint64_t copyNs;          // copying the found pages into a pre-faulted buffer
  uint64_t pagesFound;      // pages PAGEMAP_SCAN reported written
  uint64_t pagesDirtied;    // pages written before the scan
  uint64_t scanCalls;       // PAGEMAP_SCAN ioctls needed
  uint64_t protectNs;       // UFFDIO_WRITEPROTECT of the whole region before the write pass
  uint64_t writeNs;         // rewriting every page after that protect (kernel-resolved first writes)
  double writeNsPerPage;
  uint64_t pages;
};
WpAsyncResult WpAsyncScan(size_t size, double dirtyFraction);

struct WpIoctlResult {
  uint64_t fullNs;          // one UFFDIO_WRITEPROTECT over the whole populated region
  uint64_t unprotectNs;     // one UFFDIO_WRITEPROTECT mode=0 over the whole region
  uint64_t partialNs;       // protecting `percent` of the pages as 16-page runs, one ioctl per run
  std::vector<uint64_t> partialIdleNs;  // the same runs as a program leaves them: written, idleMs idle
  uint64_t partialPages;
  uint64_t partialIoctls;
  uint64_t pages;
};
WpIoctlResult WpIoctlRaw(size_t size, double percent, bool hugePages, int idleMs, int idleSamples);

struct Lz4Result {
  uint64_t ns;
  double bytesPerSec;   // uncompressed bytes per second
  double ratio;         // uncompressed / compressed
  uint64_t compressedBytes;
};
Lz4Result Lz4Raw(size_t size);
Lz4Result Lz4DecodeRaw(size_t size);

struct UffdioCopyResult {
  uint64_t ns;          // every UFFDIO_COPY (64 KiB each) into a fresh MODE_MISSING region
  double bytesPerSec;
  uint64_t ioctls;
  uint64_t eexist;      // chunks already present (should be 0)
};
UffdioCopyResult UffdioCopyRaw(size_t size, bool wp);
UffdioCopyResult UffdioZeroPageRaw(size_t size);

struct ForkResetResult {
  uint64_t ns;            // all iterations
  double itersPerSec;
  double nsPerIter;
  uint64_t pagesPerIter;  // pages each child dirtied
};
ForkResetResult ForkReset(size_t size, double dirtyFraction, uint32_t iterations);

// The primitives under a live-mode reset and nothing else: `pagesPerReset` random pages
// written, each first write to a 64 KiB chunk copying it aside and unprotecting it in a SIGBUS
// handler; the reset copies the chunks back and re-protects each.
struct UffdResetResult {
  uint64_t ns;
  double itersPerSec;
  bool intact;  // every written word was back afterwards
};
UffdResetResult UffdResetRaw(size_t size, uint32_t pagesPerReset, uint32_t iterations);

// A program that keeps running while it is checkpointed: random 8-byte updates in a hot set of
// `hotFraction` of the 64 KiB chunks (chosen anew every period), `phaseMs` in all without
// checkpoints and `phaseMs` with one checkpoint at the start of every period, in alternating
// blocks of `blockMs` (the host's speed drifts over seconds; alternating weighs it on both):
//   kForkBgsave: fork(); the child LZ4-compresses the region chunk by chunk and writes it to a
//                file in `dir` (as fork-based savers do); at most 8 children in flight, the
//                loop waits for the oldest beyond that;
//   kMemcpy:     a copy of the whole region into a pre-faulted buffer.
//   kUffdWp:     the primitives under a live-mode snapshot and nothing else: the chunks written
//                in the period re-protected (one UFFDIO_WRITEPROTECT each), each first write
//                after that unprotecting its chunk in a SIGBUS handler; nothing is copied.
enum class CheckpointKind { kForkBgsave = 0, kMemcpy = 1, kUffdWp = 2 };
struct ContinuousResult {
  double updatesPerSecPlain;  // without checkpoints
  double updatesPerSec;       // with them
  double loss;                // 1 - updatesPerSec / updatesPerSecPlain
  double batchP99NsPlain;     // p99 time of a 1000-update batch without checkpoints
  double batchP99Ns;          // the same with them (a batch that includes a checkpoint's pause counts)
  uint64_t checkpoints;
};
ContinuousResult Continuous(size_t size, double hotFraction, uint32_t phaseMs, uint32_t periodMs, uint32_t blockMs,
                            CheckpointKind kind, const char* dir);

}  // namespace bench
