#include "baselines.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "lz4.h"
#include "util.h"

namespace bench {

namespace {

constexpr size_t kPagesPerChunk = kChunkSize / kPageSize;

void CheckSize(size_t size) {
  if (size == 0 || size % kChunkSize != 0) throw std::invalid_argument("size must be a positive multiple of 65536");
}

// Maps and populates a region with realistic data.
struct Region {
  explicit Region(size_t size, uint64_t seed = 1, bool hugePages = false) : map(size, hugePages) {
    FillRealistic(map.data(), size, seed);
  }
  uint8_t* data() const { return map.data(); }
  size_t size() const { return map.size(); }
  size_t pages() const { return map.pages(); }
  Mapping map;
};

// A populated scratch buffer (pages faulted in, not the shared zero page).
struct Scratch {
  explicit Scratch(size_t size) : map((size + kPageSize - 1) / kPageSize * kPageSize) {
    memset(map.data(), 0xA5, map.size());
  }
  uint8_t* data() const { return map.data(); }
  Mapping map;
};

// Changes one word in every page (read-modify-write, so the store cannot be elided).
inline void TouchEveryPage(uint8_t* base, size_t pages) {
  for (size_t i = 0; i < pages; i++) {
    volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(base + i * kPageSize + 64);
    *w = *w + 1;
  }
}

double PerSec(uint64_t bytes, uint64_t ns) { return ns ? static_cast<double>(bytes) * 1e9 / static_cast<double>(ns) : 0; }

pid_t Fork() {
  const pid_t pid = fork();
  if (pid < 0) throw BenchError("fork", errno);
  return pid;
}

}  // namespace

// ---- memcpy ----

MemcpyResult MemcpyFull(size_t size) {
  CheckSize(size);
  Region src(size);
  Scratch dst(size);
  const uint64_t t0 = NowNs();
  memcpy(dst.data(), src.data(), size);
  const uint64_t ns = NowNs() - t0;
  // Keep the copy observable.
  if (dst.data()[size / 2] != src.data()[size / 2]) throw std::runtime_error("memcpy produced a wrong copy");
  return {ns, PerSec(size, ns)};
}

// ---- fork ----

ForkPauseResult ForkPause(size_t size) {
  CheckSize(size);
  ForkPauseResult r{};
  {
    const uint64_t t0 = NowNs();
    const pid_t pid = Fork();
    if (pid == 0) _exit(0);
    r.baseNs = NowNs() - t0;
    Child(pid).Wait();
  }
  Region region(size);
  const uint64_t t0 = NowNs();
  const pid_t pid = Fork();
  if (pid == 0) _exit(0);
  r.ns = NowNs() - t0;
  Child(pid).Wait();
  return r;
}

ForkWriteResult ForkWriteOverhead(size_t size) {
  CheckSize(size);
  Region region(size);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw BenchError("pipe2", errno);
  Fd rd(fds[0]), wr(fds[1]);
  ForkWriteResult r{};
  r.pages = region.pages();
  const uint64_t t0 = NowNs();
  const pid_t pid = Fork();
  if (pid == 0) {
    // Holds its copy of the address space until the parent closes the pipe.
    close(fds[1]);
    char c;
    while (read(fds[0], &c, 1) != 0) {
      if (errno != EINTR) break;
    }
    _exit(0);
  }
  r.forkNs = NowNs() - t0;
  Child child(pid);
  rd.Reset();
  const uint64_t t1 = NowNs();
  TouchEveryPage(region.data(), region.pages());
  r.writeNs = NowNs() - t1;
  r.writeNsPerPage = static_cast<double>(r.writeNs) / static_cast<double>(r.pages);
  wr.Reset();
  child.Wait();
  return r;
}

namespace {

struct PeakShared {
  std::atomic<uint64_t> saveDone;
  uint64_t extraPages;
  uint64_t saveNs;
  int64_t error;  // -errno from the child's pagemap read
};

// Runs in the forked child: only async-signal-safe calls and plain memory work.
void PeakChild(const Region& region, ChildWork work, uint8_t* scratch, int scratchCap, PeakShared* sh) {
  const uint64_t t0 = NowNs();
  uint64_t sum = 0;
  if (work == ChildWork::kLz4) {
    for (size_t off = 0; off < region.size(); off += kChunkSize)
      sum += static_cast<uint64_t>(LZ4_compress_default(reinterpret_cast<const char*>(region.data() + off),
                                                         reinterpret_cast<char*>(scratch), kChunkSize, scratchCap));
  } else {
    const uint64_t* w = reinterpret_cast<const uint64_t*>(region.data());
    for (size_t i = 0; i < region.size() / 8; i++) sum += w[i];
  }
  sh->saveNs = NowNs() - t0;
  sh->saveDone.store(1 + (sum & 1), std::memory_order_release);  // nonzero; depends on sum so the work stays
  // The pages the parent copied away are now mapped only here.
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    sh->error = -errno;
    _exit(1);
  }
  uint64_t buf[512];
  uint64_t exclusive = 0;
  const size_t pages = region.pages();
  const uint64_t first = reinterpret_cast<uintptr_t>(region.data()) / kPageSize;
  for (size_t i = 0; i < pages; i += 512) {
    const size_t n = std::min<size_t>(512, pages - i);
    const ssize_t got = pread(fd, buf, n * 8, static_cast<off_t>((first + i) * 8));
    if (got != static_cast<ssize_t>(n * 8)) {
      sh->error = got < 0 ? -errno : -EIO;
      close(fd);
      _exit(1);
    }
    for (size_t k = 0; k < n; k++)
      if ((buf[k] >> 63) & 1 && (buf[k] >> 56) & 1) exclusive++;
  }
  close(fd);
  sh->extraPages = exclusive;
  _exit(0);
}

}  // namespace

ForkPeakResult ForkPeakExtra(size_t size, ChildWork work) {
  CheckSize(size);
  Region region(size);
  const int cap = LZ4_compressBound(kChunkSize);
  Scratch scratch(cap);
  void* shm = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shm == MAP_FAILED) throw BenchError("mmap(MAP_SHARED)", errno);
  struct Unmap {
    void* p;
    ~Unmap() { munmap(p, kPageSize); }
  } unmapShm{shm};
  PeakShared* sh = new (shm) PeakShared();
  sh->saveDone.store(0);

  ForkPeakResult r{};
  r.pages = region.pages();
  const pid_t pid = Fork();
  if (pid == 0) PeakChild(region, work, scratch.data(), cap, sh);
  Child child(pid);
  // The program keeps running and rewrites all of its memory while the child saves it.
  const uint64_t t0 = NowNs();
  uint8_t* base = region.data();
  uint64_t before = r.pages;
  bool seen = false;
  for (size_t i = 0; i < r.pages; i++) {
    volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(base + i * kPageSize + 64);
    *w = *w + 1;
    if (!seen && sh->saveDone.load(std::memory_order_acquire) != 0) {
      seen = true;
      before = i + 1;
    }
  }
  r.parentWriteNs = NowNs() - t0;
  r.parentPagesBeforeSaveDone = before;
  const int st = child.Wait();
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    throw BenchError("fork child (pagemap read)", sh->error < 0 ? static_cast<int>(-sh->error) : EIO);
  r.childSaveNs = sh->saveNs;
  r.extraPages = sh->extraPages;
  r.extraBytes = r.extraPages * kPageSize;
  r.fraction = static_cast<double>(r.extraBytes) / static_cast<double>(size);
  return r;
}

ForkResetResult ForkReset(size_t size, double dirtyFraction, uint32_t iterations) {
  CheckSize(size);
  if (iterations == 0) throw std::invalid_argument("iterations must be at least 1");
  Region region(size);
  const size_t n = region.pages();
  const size_t count = SpreadCount(n, dirtyFraction);
  // The dirty set, computed once so the child only stores.
  std::vector<uint32_t> dirty;
  dirty.reserve(count);
  for (size_t i = 0; i < n; i++)
    if (InSpread(i, n, count)) dirty.push_back(static_cast<uint32_t>(i));
  uint8_t* base = region.data();
  const uint64_t t0 = NowNs();
  for (uint32_t it = 0; it < iterations; it++) {
    const pid_t pid = Fork();
    if (pid == 0) {
      for (uint32_t p : dirty) {
        volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(base + static_cast<size_t>(p) * kPageSize + 64);
        *w = *w + it + 1;
      }
      _exit(0);
    }
    const int st = Child(pid).Wait();
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) throw BenchError("fork child", EIO);
  }
  ForkResetResult r{};
  r.ns = NowNs() - t0;
  r.itersPerSec = static_cast<double>(iterations) * 1e9 / static_cast<double>(r.ns);
  r.nsPerIter = static_cast<double>(r.ns) / iterations;
  r.pagesPerIter = dirty.size();
  return r;
}

// ---- write faults served with nothing but the primitives ----

namespace {

// While alive, a SIGBUS from a write to a page protected through `uffd` (opened with
// UFFD_FEATURE_SIGBUS) unprotects the page's 64 KiB chunk on the faulting thread; with `undo`
// (kUndoSlots chunks), it first copies the chunk there and records it.
class SigbusUnprotect {
 public:
  static constexpr size_t kUndoSlots = 64;
  SigbusUnprotect(int uffd, uint8_t* undo) {
    uffd_ = uffd;
    undo_ = undo;
    used_ = 0;
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, &previous_);
  }
  ~SigbusUnprotect() { sigaction(SIGBUS, &previous_, nullptr); }
  // The chunks saved since the last call, newest first: a chunk saved twice gets its oldest
  // copy back last. fn(chunk address, its saved copy).
  template <typename Fn>
  void TakeSaved(Fn fn) {
    for (size_t slot = used_.load(); slot-- > 0;) fn(reinterpret_cast<uint8_t*>(chunks_[slot]), undo_ + slot * kChunkSize);
    used_ = 0;
  }

 private:
  static void OnSigbus(int, siginfo_t* info, void*) {
    const int saved = errno;
    const uintptr_t chunk = reinterpret_cast<uintptr_t>(info->si_addr) & ~uintptr_t{kChunkSize - 1};
    if (undo_) {
      const size_t slot = used_.fetch_add(1);
      if (slot >= kUndoSlots) abort();
      memcpy(undo_ + slot * kChunkSize, reinterpret_cast<void*>(chunk), kChunkSize);
      chunks_[slot] = chunk;
    }
    uffdio_writeprotect wp{};
    wp.range = {chunk, kChunkSize};
    if (ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp) != 0) abort();
    errno = saved;
  }
  static inline int uffd_ = -1;
  static inline uint8_t* undo_ = nullptr;
  static inline uintptr_t chunks_[kUndoSlots];
  static inline std::atomic<size_t> used_{0};
  struct sigaction previous_ {};
};

int OpenSigbusUffd() { return OpenUffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_SIGBUS); }

}  // namespace

UffdResetResult UffdResetRaw(size_t size, uint32_t pagesPerReset, uint32_t iterations) {
  CheckSize(size);
  if (iterations == 0 || pagesPerReset == 0 || pagesPerReset > SigbusUnprotect::kUndoSlots) throw std::invalid_argument("iterations and pagesPerReset (up to 64) must be positive");
  Region region(size);
  Scratch undo(SigbusUnprotect::kUndoSlots * kChunkSize);
  Fd uffd(OpenSigbusUffd());
  UffdRegister(uffd.get(), region.data(), size, UFFDIO_REGISTER_MODE_WP);
  UffdWriteProtect(uffd.get(), region.data(), size, true);
  const size_t pages = size / kPageSize;
  uint64_t x = 0x2545F4914F6CDD1Dull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  auto sum = [&] {
    uint64_t total = 0;
    for (size_t p = 0; p < pages; p++) total += *reinterpret_cast<const uint64_t*>(region.data() + p * kPageSize + 64);
    return total;
  };
  const uint64_t before = sum();
  SigbusUnprotect faults(uffd.get(), undo.data());
  const uint64_t t0 = NowNs();
  for (uint32_t it = 0; it < iterations; it++) {
    for (uint32_t k = 0; k < pagesPerReset; k++) {
      volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(region.data() + (next() % pages) * kPageSize + 64);
      *w = *w + it + 1;
    }
    faults.TakeSaved([&](uint8_t* chunk, const uint8_t* copy) {
      memcpy(chunk, copy, kChunkSize);
      UffdWriteProtect(uffd.get(), chunk, kChunkSize, true);
    });
  }
  UffdResetResult r{};
  r.ns = NowNs() - t0;
  r.itersPerSec = static_cast<double>(iterations) * 1e9 / static_cast<double>(r.ns);
  r.intact = sum() == before;
  return r;
}

// ---- mprotect + SIGSEGV ----

namespace {

uintptr_t gSegvBase = 0;
uintptr_t gSegvEnd = 0;
std::atomic<uint64_t> gSegvFaults{0};
struct sigaction gSegvPrev;

void SegvHandler(int sig, siginfo_t* si, void* ctx) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
  if (a >= gSegvBase && a < gSegvEnd) {
    mprotect(reinterpret_cast<void*>(a & ~(kPageSize - 1)), kPageSize, PROT_READ | PROT_WRITE);
    gSegvFaults.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Not ours (V8's wasm trap handler, a real crash): hand it to whoever was there before.
  if (gSegvPrev.sa_flags & SA_SIGINFO) {
    if (gSegvPrev.sa_sigaction) gSegvPrev.sa_sigaction(sig, si, ctx);
    return;
  }
  if (gSegvPrev.sa_handler == SIG_IGN) return;
  if (gSegvPrev.sa_handler == SIG_DFL) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &dfl, nullptr);  // the faulting access repeats and takes the default action
    return;
  }
  gSegvPrev.sa_handler(sig);
}

struct SegvGuard {
  SegvGuard(uint8_t* base, size_t size) {
    gSegvBase = reinterpret_cast<uintptr_t>(base);
    gSegvEnd = gSegvBase + size;
    gSegvFaults.store(0);
    struct sigaction sa = {};
    sa.sa_sigaction = SegvHandler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &gSegvPrev) != 0) throw BenchError("sigaction(SIGSEGV)", errno);
  }
  ~SegvGuard() {
    sigaction(SIGSEGV, &gSegvPrev, nullptr);
    gSegvBase = gSegvEnd = 0;
  }
};

}  // namespace

MprotectResult MprotectSigsegvWriteOverhead(size_t size, bool writes) {
  CheckSize(size);
  static std::mutex mu;  // the handler's state is process-wide: one measurement at a time
  std::lock_guard<std::mutex> lock(mu);
  Region region(size);
  MprotectResult r{};
  r.pages = region.pages();
  SegvGuard guard(region.data(), size);
  const uint64_t t0 = NowNs();
  if (mprotect(region.data(), size, PROT_READ) != 0) throw BenchError("mprotect", errno);
  r.pauseNs = NowNs() - t0;
  if (!writes) return r;
  const uint64_t t1 = NowNs();
  TouchEveryPage(region.data(), region.pages());
  r.writeNs = NowNs() - t1;
  r.faults = gSegvFaults.load();
  r.writeNsPerPage = static_cast<double>(r.writeNs) / static_cast<double>(r.pages);
  return r;
}

// ---- userfaultfd ----

WpAsyncResult WpAsyncScan(size_t size, double dirtyFraction) {
  CheckSize(size);
  Region region(size);
  Scratch capture(size);
  const size_t n = region.pages();
  const size_t count = SpreadCount(n, dirtyFraction);
  Fd uffd(OpenUffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_ASYNC));
  UffdRegister(uffd.get(), region.data(), size, UFFDIO_REGISTER_MODE_WP);
  UffdWriteProtect(uffd.get(), region.data(), size, true);
  Fd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (pagemap.get() < 0) throw BenchError("open(/proc/self/pagemap)", errno);

  WpAsyncResult r{};
  r.pages = n;
  uint8_t* base = region.data();
  for (size_t i = 0; i < n; i++) {
    if (!InSpread(i, n, count)) continue;
    volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(base + i * kPageSize + 64);
    *w = *w + 1;
    r.pagesDirtied++;
  }

  // Stop-and-copy: find the written pages, re-protect them in the same walk, copy them out.
  std::vector<PageRegion> vec(1024);
  memset(vec.data(), 0, vec.size() * sizeof(PageRegion));
  uint8_t* out = capture.data();
  const uint64_t start = reinterpret_cast<uint64_t>(base), end = start + size;
  const uint64_t t0 = NowNs();
  uint64_t cursor = start;
  while (cursor < end) {
    PmScanArg arg = {};
    arg.size = sizeof(arg);
    arg.flags = kPmScanWpMatching | kPmScanCheckWpAsync;
    arg.start = cursor;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec.data());
    arg.vec_len = vec.size();
    arg.category_mask = kPageIsWritten;
    arg.return_mask = kPageIsWritten;
    const uint64_t s0 = NowNs();
    const int got = Ioctl(pagemap.get(), kPagemapScan, &arg);
    r.scanNs += NowNs() - s0;
    if (got < 0) throw BenchError("ioctl(PAGEMAP_SCAN)", errno);
    r.scanCalls++;
    const uint64_t c0 = NowNs();
    for (int k = 0; k < got; k++) {
      const size_t len = vec[k].end - vec[k].start;
      memcpy(out, reinterpret_cast<const void*>(vec[k].start), len);
      out += len;
      r.pagesFound += len / kPageSize;
    }
    r.copyNs += NowNs() - c0;
    if (arg.walk_end <= cursor) break;
    cursor = arg.walk_end;
  }
  r.pauseNs = NowNs() - t0;

  // First-write cost under async write protection.
  const uint64_t p0 = NowNs();
  UffdWriteProtect(uffd.get(), base, size, true);
  r.protectNs = NowNs() - p0;
  const uint64_t w0 = NowNs();
  TouchEveryPage(base, n);
  r.writeNs = NowNs() - w0;
  r.writeNsPerPage = static_cast<double>(r.writeNs) / static_cast<double>(n);
  return r;
}

WpIoctlResult WpIoctlRaw(size_t size, double percent, bool hugePages, int idleMs, int idleSamples) {
  CheckSize(size);
  if (!(percent >= 0.0 && percent <= 100.0)) throw std::invalid_argument("percent must be in [0, 100]");
  Region region(size, 1, hugePages);
  Fd uffd(OpenUffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED));
  UffdRegister(uffd.get(), region.data(), size, UFFDIO_REGISTER_MODE_WP);
  WpIoctlResult r{};
  r.pages = region.pages();
  uint64_t t0 = NowNs();
  UffdWriteProtect(uffd.get(), region.data(), size, true);
  r.fullNs = NowNs() - t0;
  t0 = NowNs();
  UffdWriteProtect(uffd.get(), region.data(), size, false);
  r.unprotectNs = NowNs() - t0;

  const size_t chunks = size / kChunkSize;
  size_t runs = SpreadCount(chunks, percent / 100.0);
  if (runs == 0 && percent > 0) runs = 1;
  std::vector<size_t> which;
  for (size_t c = 0; c < chunks; c++)
    if (InSpread(c, chunks, runs)) which.push_back(c);
  auto protectRuns = [&] {
    const uint64_t start = NowNs();
    for (size_t c : which) UffdWriteProtect(uffd.get(), region.data() + c * kChunkSize, kChunkSize, true);
    return NowNs() - start;
  };
  r.partialNs = protectRuns();
  r.partialIoctls = which.size();
  r.partialPages = which.size() * kPagesPerChunk;

  // The state a program's next snapshot meets: everything protected by the previous one, the
  // runs unprotected by their first write (as a fault handler does) and written, then time
  // spent elsewhere. Measured here: after 20 ms the same ioctls cost 1.3-1.5x, the first 5-8x
  // (page tables and page structs no longer in cache), whether the thread slept or spun.
  if (idleMs <= 0) return r;
  UffdWriteProtect(uffd.get(), region.data(), size, true);
  for (int k = 0; k < idleSamples; k++) {
    for (size_t c : which) {
      uint8_t* chunk = region.data() + c * kChunkSize;
      UffdWriteProtect(uffd.get(), chunk, kChunkSize, false);
      TouchEveryPage(chunk, kPagesPerChunk);
    }
    usleep(static_cast<useconds_t>(idleMs) * 1000);
    r.partialIdleNs.push_back(protectRuns());
  }
  // Nothing writes to the region before the descriptor closes, which drops the protection.
  return r;
}

UffdioCopyResult UffdioCopyRaw(size_t size, bool wp) {
  CheckSize(size);
  Region src(size);
  Mapping dst(size);  // never touched: every page is missing
  Fd uffd(OpenUffd(wp ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0));
  UffdRegister(uffd.get(), dst.data(), size, UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0));
  UffdioCopyResult r{};
  const uint64_t t0 = NowNs();
  for (size_t off = 0; off < size; off += kChunkSize) {
    size_t done = 0;
    while (done < kChunkSize) {
      uffdio_copy c = {};
      c.dst = reinterpret_cast<uint64_t>(dst.data() + off + done);
      c.src = reinterpret_cast<uint64_t>(src.data() + off + done);
      c.len = kChunkSize - done;
      c.mode = wp ? UFFDIO_COPY_MODE_WP : 0;
      r.ioctls++;
      if (Ioctl(uffd.get(), UFFDIO_COPY, &c) == 0) {
        done += static_cast<size_t>(c.copy);
        continue;
      }
      if (errno == EAGAIN) {
        if (c.copy > 0) done += static_cast<size_t>(c.copy);
        continue;
      }
      if (errno == EEXIST) {
        r.eexist++;
        break;
      }
      throw BenchError("ioctl(UFFDIO_COPY)", errno);
    }
  }
  r.ns = NowNs() - t0;
  r.bytesPerSec = PerSec(size, r.ns);
  uffd.Reset();  // unregistered before anything reads dst
  if (memcmp(dst.data(), src.data(), size) != 0) throw std::runtime_error("UFFDIO_COPY produced a wrong copy");
  return r;
}

UffdioCopyResult UffdioZeroPageRaw(size_t size) {
  CheckSize(size);
  Mapping dst(size);
  Fd uffd(OpenUffd(0));
  UffdRegister(uffd.get(), dst.data(), size, UFFDIO_REGISTER_MODE_MISSING);
  UffdioCopyResult r{};
  const uint64_t t0 = NowNs();
  for (size_t off = 0; off < size; off += kChunkSize) {
    for (;;) {
      uffdio_zeropage z = {};
      z.range.start = reinterpret_cast<uint64_t>(dst.data() + off);
      z.range.len = kChunkSize;
      r.ioctls++;
      if (Ioctl(uffd.get(), UFFDIO_ZEROPAGE, &z) == 0) break;
      if (errno == EAGAIN) continue;
      if (errno == EEXIST) {
        r.eexist++;
        break;
      }
      throw BenchError("ioctl(UFFDIO_ZEROPAGE)", errno);
    }
  }
  r.ns = NowNs() - t0;
  r.bytesPerSec = PerSec(size, r.ns);
  return r;
}

// ---- LZ4 ----

namespace {

struct Compressed {
  std::unique_ptr<Scratch> buf;
  std::vector<int> sizes;
  size_t stride = 0;
  uint64_t total = 0;
  uint64_t ns = 0;
};

Compressed CompressChunks(const Region& src) {
  Compressed c;
  c.stride = static_cast<size_t>(LZ4_compressBound(kChunkSize));
  const size_t chunks = src.size() / kChunkSize;
  c.buf = std::make_unique<Scratch>(chunks * c.stride);
  c.sizes.resize(chunks);
  char* out = reinterpret_cast<char*>(c.buf->data());
  const char* in = reinterpret_cast<const char*>(src.data());
  const uint64_t t0 = NowNs();
  for (size_t i = 0; i < chunks; i++)
    c.sizes[i] = LZ4_compress_default(in + i * kChunkSize, out + i * c.stride, kChunkSize, static_cast<int>(c.stride));
  c.ns = NowNs() - t0;
  for (int s : c.sizes) {
    if (s <= 0) throw std::runtime_error("LZ4_compress_default failed");
    c.total += static_cast<uint64_t>(s);
  }
  return c;
}

}  // namespace

Lz4Result Lz4Raw(size_t size) {
  CheckSize(size);
  Region src(size);
  Compressed c = CompressChunks(src);
  return {c.ns, PerSec(size, c.ns), static_cast<double>(size) / static_cast<double>(c.total), c.total};
}

Lz4Result Lz4DecodeRaw(size_t size) {
  CheckSize(size);
  Region src(size);
  Compressed c = CompressChunks(src);
  Scratch out(size);
  const char* in = reinterpret_cast<const char*>(c.buf->data());
  char* dst = reinterpret_cast<char*>(out.data());
  const size_t chunks = size / kChunkSize;
  bool ok = true;
  const uint64_t t0 = NowNs();
  for (size_t i = 0; i < chunks; i++)
    ok &= LZ4_decompress_safe(in + i * c.stride, dst + i * kChunkSize, c.sizes[i], kChunkSize) == static_cast<int>(kChunkSize);
  const uint64_t ns = NowNs() - t0;
  if (!ok || memcmp(out.data(), src.data(), size) != 0) throw std::runtime_error("LZ4 round trip produced wrong bytes");
  return {ns, PerSec(size, ns), static_cast<double>(size) / static_cast<double>(c.total), c.total};
}

}  // namespace bench

namespace bench {

// ---- continuous checkpointing ----

namespace {

struct Xorshift {
  uint64_t s;
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

double P99(std::vector<uint64_t> v) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, v.size() * 99 / 100);
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return static_cast<double>(v[k]);
}

// The child of a fork-based save: LZ4 of every chunk, written to `path`.
[[noreturn]] void SaveChild(const uint8_t* base, size_t size, const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) _exit(1);
  const int bound = LZ4_compressBound(kChunkSize);
  std::vector<char> out(static_cast<size_t>(bound) * 16);
  size_t used = 0;
  for (size_t off = 0; off < size; off += kChunkSize) {
    const int n = LZ4_compress_default(reinterpret_cast<const char*>(base + off), out.data() + used, kChunkSize, bound);
    if (n <= 0) _exit(2);
    used += static_cast<size_t>(n);
    if (out.size() - used < static_cast<size_t>(bound) || off + kChunkSize == size) {
      for (size_t w = 0; w < used;) {
        const ssize_t k = write(fd, out.data() + w, used - w);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) _exit(3);
        w += static_cast<size_t>(k);
      }
      used = 0;
    }
  }
  close(fd);
  unlink(path.c_str());
  _exit(0);
}

}  // namespace

ContinuousResult Continuous(size_t size, double hotFraction, uint32_t phaseMs, uint32_t periodMs, uint32_t blockMs,
                            CheckpointKind kind, const char* dir) {
  CheckSize(size);
  if (!(hotFraction > 0 && hotFraction <= 1)) throw std::invalid_argument("hotFraction must be in (0, 1]");
  if (phaseMs == 0 || periodMs == 0 || blockMs == 0) throw std::invalid_argument("phaseMs, periodMs and blockMs must be positive");
  Region region(size);
  std::unique_ptr<Scratch> copy;
  if (kind == CheckpointKind::kMemcpy) copy = std::make_unique<Scratch>(size);
  // kUffdWp: the floor of write-protect checkpointing, nothing copied or saved.
  std::unique_ptr<Fd> uffd;
  std::unique_ptr<SigbusUnprotect> faults;
  if (kind == CheckpointKind::kUffdWp) {
    uffd = std::make_unique<Fd>(OpenSigbusUffd());
    UffdRegister(uffd->get(), region.data(), size, UFFDIO_REGISTER_MODE_WP);
    faults = std::make_unique<SigbusUnprotect>(uffd->get(), nullptr);
  }
  const size_t chunks = size / kChunkSize;
  const size_t hotCount = std::max<size_t>(1, static_cast<size_t>(static_cast<double>(chunks) * hotFraction + 0.5));
  constexpr size_t kWordsPerChunk = kChunkSize / 8;
  constexpr int kBatch = 1000;
  uint64_t* words = reinterpret_cast<uint64_t*>(region.data());
  std::vector<uint32_t> hot(hotCount);
  Xorshift rng{0x9E3779B97F4A7C15ull};
  std::vector<pid_t> children;
  uint64_t saves = 0;
  auto reap = [&](bool oldest) {
    for (size_t i = 0; i < children.size();) {
      int st;
      const pid_t r = waitpid(children[i], &st, oldest && i == 0 ? 0 : WNOHANG);
      if (r == children[i] || (r < 0 && errno != EINTR)) {
        if (r == children[i] && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) throw BenchError("fork_bgsave child", EIO);
        children.erase(children.begin() + static_cast<long>(i));
        oldest = false;
      } else {
        i++;
      }
    }
  };
  // One block of periods, with or without checkpoints; adds its updates and time to the totals.
  auto block = [&](bool checkpoints, uint64_t blockNs, std::vector<uint64_t>* batches, double* updates, double* ns) {
    const uint64_t t0 = NowNs(), end = t0 + blockNs;
    uint64_t nextPeriod = t0;
    uint64_t batchStart = t0;
    uint64_t done = 0;
    for (;;) {
      const uint64_t now = NowNs();
      if (now >= nextPeriod) {
        if (nextPeriod >= end) break;
        if (checkpoints) {
          if (kind == CheckpointKind::kMemcpy) {
            memcpy(copy->data(), region.data(), size);
          } else if (kind == CheckpointKind::kUffdWp) {
            // `hot` is still the period's that just ended: the chunks it wrote.
            for (uint32_t c : hot) UffdWriteProtect(uffd->get(), region.data() + size_t{c} * kChunkSize, kChunkSize, true);
          } else {
            while (children.size() >= 8) reap(true);
            const std::string path = std::string(dir) + "/bgsave-" + std::to_string(getpid()) + "-" + std::to_string(saves);
            const pid_t pid = Fork();
            if (pid == 0) SaveChild(region.data(), size, path);
            children.push_back(pid);
            reap(false);
          }
          saves++;
        }
        for (auto& h : hot) h = static_cast<uint32_t>(rng.Next() % chunks);
        nextPeriod += uint64_t{periodMs} * 1'000'000;
      }
      for (int i = 0; i < kBatch; i++) {
        const uint64_t r = rng.Next();
        volatile uint64_t* w = words + size_t{hot[r % hotCount]} * kWordsPerChunk + (r >> 32) % kWordsPerChunk;
        *w = *w + 1;
      }
      done += kBatch;
      const uint64_t after = NowNs();
      batches->push_back(after - batchStart);
      batchStart = after;
      if (after >= end) break;
    }
    *updates += static_cast<double>(done);
    *ns += static_cast<double>(NowNs() - t0);
  };
  ContinuousResult r{};
  std::vector<uint64_t> plain, with;
  // Blocks with and without checkpoints alternate, so that the machine's speed drifting over
  // seconds (a shared host) weighs on both alike.
  const uint64_t blockNs = uint64_t{std::min(blockMs, phaseMs)} * 1'000'000;
  double plainUpdates = 0, plainNs = 0, withUpdates = 0, withNs = 0;
  for (uint64_t spent = 0; spent < uint64_t{phaseMs} * 1'000'000; spent += blockNs) {
    block(false, blockNs, &plain, &plainUpdates, &plainNs);
    // As after a snapshot: every chunk protected but those written since (none yet).
    if (uffd) UffdWriteProtect(uffd->get(), region.data(), size, true);
    block(true, blockNs, &with, &withUpdates, &withNs);
    // Saves still running are stopped: what they would cost the loop after the block is not
    // measured for ours either, and finishing eight 1 GiB saves per block would take minutes.
    for (pid_t child : children) kill(child, SIGKILL);
    for (pid_t child : children)
      while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
      }
    children.clear();
    if (uffd) UffdWriteProtect(uffd->get(), region.data(), size, false);
  }
  r.updatesPerSecPlain = plainUpdates * 1e9 / plainNs;
  r.updatesPerSec = withUpdates * 1e9 / withNs;
  r.loss = 1 - r.updatesPerSec / r.updatesPerSecPlain;
  r.batchP99NsPlain = P99(plain);
  r.batchP99Ns = P99(with);
  r.checkpoints = saves;
  return r;
}

}  // namespace bench
