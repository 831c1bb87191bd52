#pragma once
#include <linux/userfaultfd.h>

#include <sys/ioctl.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

// ioctl(2), retried while a signal interrupts it.
inline int IoctlRetry(int fd, unsigned long req, void* arg) {
  int rc;
  do {
    rc = ioctl(fd, req, arg);
  } while (rc == -1 && errno == EINTR);
  return rc;
}

// Constants newer than the 6.1 system headers.
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

// How a userfaultfd was obtained.
enum class UffdRoute { kDevice, kSyscall, kSyscallUserModeOnly };

// Result of probing the kernel without keeping a descriptor.
struct UffdProbe {
  bool ok = false;
  int errnum = 0;           // set when !ok: why no route worked
  std::string failedOp;     // the call that failed last
  UffdRoute route = UffdRoute::kDevice;
  uint64_t features = 0;    // every feature the kernel offers
};

// One userfaultfd descriptor after the UFFDIO_API handshake. Owns the fd.
class Userfaultfd {
 public:
  // Opens /dev/userfaultfd first, then the syscall, then the syscall with
  // UFFD_USER_MODE_ONLY; enables `features` (all must be offered). Throws SysError.
  explicit Userfaultfd(uint64_t features);
  ~Userfaultfd();
  Userfaultfd(const Userfaultfd&) = delete;
  Userfaultfd& operator=(const Userfaultfd&) = delete;

  static UffdProbe Probe();

  int fd() const { return fd_; }
  UffdRoute route() const { return route_; }
  uint64_t features() const { return features_; }

  void Register(void* addr, size_t len, uint64_t mode);
  void Unregister(void* addr, size_t len);
  // Sets or clears write protection; clearing wakes waiters unless dontWake.
  void WriteProtect(void* addr, size_t len, bool protect, bool dontWake = false);
  // Returns false when the range was already populated (EEXIST): caller wakes.
  bool Copy(void* dst, const void* src, size_t len, bool protect, bool dontWake = false);
  bool ZeroPage(void* addr, size_t len, bool dontWake = false);
  void Wake(void* addr, size_t len);

 private:
  int fd_ = -1;
  UffdRoute route_ = UffdRoute::kDevice;
  uint64_t features_ = 0;
};

// Opens a raw descriptor by the first route that works; returns -1 and sets *err otherwise.
int OpenUserfaultfd(UffdRoute* route, int* err, std::string* failedOp);
