#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace bench {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Mapping::Mapping(size_t size, bool hugePages) : size_(size) {
  if (size == 0 || size % kPageSize != 0) throw std::invalid_argument("size must be a positive multiple of 4096");
  constexpr size_t kHuge = 2 << 20;
  rawSize_ = hugePages ? size + kHuge : size;
  void* p = mmap(nullptr, rawSize_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw BenchError("mmap", errno);
  raw_ = static_cast<uint8_t*>(p);
  base_ = raw_;
  if (hugePages) {
    const uintptr_t a = (reinterpret_cast<uintptr_t>(raw_) + kHuge - 1) & ~(kHuge - 1);
    base_ = reinterpret_cast<uint8_t*>(a);
  }
  if (madvise(base_, size_, hugePages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    const int e = errno;
    munmap(raw_, rawSize_);
    throw BenchError(hugePages ? "madvise(MADV_HUGEPAGE)" : "madvise(MADV_NOHUGEPAGE)", e);
  }
}

Mapping::~Mapping() {
  if (raw_) munmap(raw_, rawSize_);
}

void Fd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

namespace {

struct Rng {
  uint64_t s;
  uint64_t Next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

const char* const kNames[] = {"user_id", "session", "created_at", "payload", "status", "items",
                              "parent",  "children", "refcount", "label", "value", "next"};

// 256 bytes of 64-byte records, like objects on a heap: a growing id, a type tag, flags, a
// pointer into a pretend heap, a small counter, a field name from a short dictionary, a small
// value and padding.
void StructuredBlock(uint8_t* p, Rng& rng, uint64_t& id) {
  memset(p, 0, 256);
  for (int r = 0; r < 4; r++) {
    uint8_t* rec = p + r * 64;
    const uint32_t id32 = static_cast<uint32_t>(id++);
    const uint16_t type = static_cast<uint16_t>(id32 % 4);
    const uint16_t flags = 0x0101;
    const uint64_t ptr = 0x00007f3a10000000ull + (id32 & 0xfff) * 64;
    const uint32_t refs = (rng.Next() & 7) == 0 ? 2 : 1;
    const uint64_t value = (rng.Next() & 3) == 0 ? rng.Next() % 1000 : type * 100;
    memcpy(rec, &id32, 4);
    memcpy(rec + 4, &type, 2);
    memcpy(rec + 6, &flags, 2);
    memcpy(rec + 8, &ptr, 8);
    memcpy(rec + 16, &refs, 4);
    const char* n = kNames[id32 % 12];
    memcpy(rec + 24, n, std::min<size_t>(strlen(n), 15));
    memcpy(rec + 40, &value, 8);
  }
}

}  // namespace

void FillRealistic(uint8_t* p, size_t len, uint64_t seed) {
  Rng rng{seed * 0x2545F4914F6CDD1Dull + 1};
  uint64_t id = seed << 20;
  size_t off = 0;
  while (off + 256 <= len) {
    if (rng.Next() % 3 != 0) {  // two thirds structured, one third random
      StructuredBlock(p + off, rng, id);
    } else {
      for (size_t i = 0; i < 256; i += 8) {
        const uint64_t v = rng.Next();
        memcpy(p + off + i, &v, 8);
      }
    }
    off += 256;
  }
  for (; off < len; off++) p[off] = static_cast<uint8_t>(rng.Next());
}

size_t SpreadCount(size_t n, double fraction) {
  if (!(fraction >= 0.0 && fraction <= 1.0)) throw std::invalid_argument("fraction must be in [0, 1]");
  return static_cast<size_t>(std::llround(static_cast<double>(n) * fraction));
}

int OpenUffd(uint64_t features) {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = -1;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    close(dev);
  }
  if (fd < 0) fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
  if (fd < 0 && errno == EPERM) fd = static_cast<int>(syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
  if (fd < 0) throw BenchError("userfaultfd", errno);
  uffdio_api api = {};
  api.api = UFFD_API;
  api.features = features;
  if (Ioctl(fd, UFFDIO_API, &api) != 0) {
    const int e = errno;
    close(fd);
    throw BenchError("ioctl(UFFDIO_API)", e);
  }
  return fd;
}

void UffdRegister(int uffd, void* addr, size_t len, uint64_t mode) {
  uffdio_register reg = {};
  reg.range.start = reinterpret_cast<uint64_t>(addr);
  reg.range.len = len;
  reg.mode = mode;
  if (Ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) throw BenchError("ioctl(UFFDIO_REGISTER)", errno);
}

void UffdWriteProtect(int uffd, void* addr, size_t len, bool protect) {
  uffdio_writeprotect wp = {};
  wp.range.start = reinterpret_cast<uint64_t>(addr);
  wp.range.len = len;
  wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  if (Ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) throw BenchError("ioctl(UFFDIO_WRITEPROTECT)", errno);
}

Child::~Child() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int st;
  while (waitpid(pid_, &st, 0) == -1 && errno == EINTR) {
  }
}

int Child::Wait() {
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &st, 0);
  } while (r == -1 && errno == EINTR);
  const int e = errno;
  pid_ = -1;  // reaped, or not ours to reap: never signal this pid again
  if (r == -1) throw BenchError("waitpid", e);
  return st;
}

}  // namespace bench
