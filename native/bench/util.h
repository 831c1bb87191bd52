// Helpers for the baseline measurements: timing, memory, realistic data, a raw userfaultfd.
// The bench addon shares headers with the main addon, but no object files.
#pragma once
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../pagemap.h"
#include "../sys_error.h"
#include "../uffd.h"

namespace bench {

constexpr size_t kPageSize = 4096;
constexpr size_t kChunkSize = 64 * 1024;


// A failed system call (or other setup step), with errno.
using BenchError = SysError;

// CLOCK_MONOTONIC in nanoseconds.
uint64_t NowNs();

// An anonymous private mapping, populated by writing to it; unmapped on destruction.
// With hugePages the mapping is 2 MiB aligned and MADV_HUGEPAGE; otherwise MADV_NOHUGEPAGE, so
// page counts are exact whatever the system's THP setting.
class Mapping {
 public:
  explicit Mapping(size_t size, bool hugePages = false);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  uint8_t* data() const { return base_; }
  size_t size() const { return size_; }
  size_t pages() const { return size_ / kPageSize; }

 private:
  uint8_t* raw_ = nullptr;
  size_t rawSize_ = 0;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Fills `len` bytes with heap-like data in 256-byte blocks, each picked at random: two thirds
// are 64-byte object records (growing id, type tag, flags, pointer into a pretend heap, small
// counters, a field name from a short dictionary), one third pseudo-random bytes. LZ4 on
// 64 KiB chunks compresses it about 2.1x. Deterministic per seed; no page is all zero.
void FillRealistic(uint8_t* p, size_t len, uint64_t seed);

// Page i of n is in the evenly spread subset of `count` pages.
inline bool InSpread(size_t i, size_t n, size_t count) {
  return ((i + 1) * count) / n > (i * count) / n;
}
// How many of n pages a fraction in [0, 1] selects.
size_t SpreadCount(size_t n, double fraction);

// A userfaultfd after the UFFDIO_API handshake with `features`; throws BenchError.
int OpenUffd(uint64_t features);
void UffdRegister(int uffd, void* addr, size_t len, uint64_t mode);
void UffdWriteProtect(int uffd, void* addr, size_t len, bool protect);

inline int Ioctl(int fd, unsigned long req, void* arg) { return IoctlRetry(fd, req, arg); }

// A child process that is killed (if still running) and reaped on destruction.
class Child {
 public:
  Child() = default;
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  // Waits for exit; returns the raw wait status. Throws if the child is gone already.
  int Wait();

 private:
  pid_t pid_ = -1;
};

}  // namespace bench
