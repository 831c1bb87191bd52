#include "uffd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "sys_error.h"

namespace {

// UFFDIO_API may only run once per descriptor, so the handshake sits beside the open.
bool Handshake(int fd, uint64_t features, uint64_t* offered, int* err) {
  uffdio_api api = {};
  api.api = UFFD_API;
  api.features = features;
  if (IoctlRetry(fd, UFFDIO_API, &api) == -1) {
    *err = errno;
    return false;
  }
  *offered = api.features;
  return true;
}

}  // namespace

int OpenUserfaultfd(UffdRoute* route, int* err, std::string* failedOp) {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    int saved = errno;
    close(dev);
    if (fd >= 0) {
      *route = UffdRoute::kDevice;
      return fd;
    }
    *err = saved;
    *failedOp = "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)";
  } else {
    *err = errno;
    *failedOp = "open(/dev/userfaultfd)";
  }
  int fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
  if (fd >= 0) {
    *route = UffdRoute::kSyscall;
    return fd;
  }
  *err = errno;
  *failedOp = "userfaultfd()";
  if (errno == EPERM) {
    fd = static_cast<int>(syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
    if (fd >= 0) {
      *route = UffdRoute::kSyscallUserModeOnly;
      return fd;
    }
    // EINVAL: a kernel before 5.11 without UFFD_USER_MODE_ONLY; report the EPERM.
    if (errno != EINVAL) *err = errno;
    *failedOp = "userfaultfd(UFFD_USER_MODE_ONLY)";
  }
  return -1;
}

UffdProbe Userfaultfd::Probe() {
  UffdProbe p;
  int fd = OpenUserfaultfd(&p.route, &p.errnum, &p.failedOp);
  if (fd < 0) return p;
  if (!Handshake(fd, 0, &p.features, &p.errnum)) {
    p.failedOp = "ioctl(UFFDIO_API)";
  } else {
    p.ok = true;
    p.errnum = 0;
    p.failedOp.clear();
  }
  close(fd);
  return p;
}

Userfaultfd::Userfaultfd(uint64_t features) {
  int err = 0;
  std::string op;
  fd_ = OpenUserfaultfd(&route_, &err, &op);
  if (fd_ < 0) throw SysError(op, err);
  uint64_t offered = 0;
  if (!Handshake(fd_, features, &offered, &err)) {
    close(fd_);
    fd_ = -1;
    throw SysError("ioctl(UFFDIO_API)", err);
  }
  features_ = offered;
}

Userfaultfd::~Userfaultfd() {
  if (fd_ >= 0) close(fd_);
}

void Userfaultfd::Register(void* addr, size_t len, uint64_t mode) {
  uffdio_register reg = {};
  reg.range.start = reinterpret_cast<uint64_t>(addr);
  reg.range.len = len;
  reg.mode = mode;
  if (IoctlRetry(fd_, UFFDIO_REGISTER, &reg) == -1) throw SysError("ioctl(UFFDIO_REGISTER)", errno);
}

void Userfaultfd::Unregister(void* addr, size_t len) {
  uffdio_range range = {reinterpret_cast<uint64_t>(addr), len};
  if (IoctlRetry(fd_, UFFDIO_UNREGISTER, &range) == -1) throw SysError("ioctl(UFFDIO_UNREGISTER)", errno);
}

void Userfaultfd::WriteProtect(void* addr, size_t len, bool protect, bool dontWake) {
  uffdio_writeprotect wp = {};
  wp.range.start = reinterpret_cast<uint64_t>(addr);
  wp.range.len = len;
  wp.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
            (dontWake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
  // EAGAIN: the mm is changing under us (e.g. a concurrent fork); retrying is the documented answer.
  while (IoctlRetry(fd_, UFFDIO_WRITEPROTECT, &wp) == -1) {
    if (errno != EAGAIN) throw SysError("ioctl(UFFDIO_WRITEPROTECT)", errno);
  }
}

bool Userfaultfd::Copy(void* dst, const void* src, size_t len, bool protect, bool dontWake) {
  size_t done = 0;
  while (done < len) {
    uffdio_copy copy = {};
    copy.dst = reinterpret_cast<uint64_t>(dst) + done;
    copy.src = reinterpret_cast<uint64_t>(src) + done;
    copy.len = len - done;
    copy.mode = (protect ? UFFDIO_COPY_MODE_WP : 0) | (dontWake ? UFFDIO_COPY_MODE_DONTWAKE : 0);
    if (IoctlRetry(fd_, UFFDIO_COPY, &copy) == 0) return true;
    if (errno == EEXIST) return false;
    if (errno != EAGAIN) throw SysError("ioctl(UFFDIO_COPY)", errno);
    if (copy.copy > 0) done += static_cast<size_t>(copy.copy);  // partial copy: continue after it
  }
  return true;
}

bool Userfaultfd::ZeroPage(void* addr, size_t len, bool dontWake) {
  size_t done = 0;
  while (done < len) {
    uffdio_zeropage zp = {};
    zp.range.start = reinterpret_cast<uint64_t>(addr) + done;
    zp.range.len = len - done;
    zp.mode = dontWake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
    if (IoctlRetry(fd_, UFFDIO_ZEROPAGE, &zp) == 0) return true;
    if (errno == EEXIST) return false;
    if (errno != EAGAIN) throw SysError("ioctl(UFFDIO_ZEROPAGE)", errno);
    if (zp.zeropage > 0) done += static_cast<size_t>(zp.zeropage);
  }
  return true;
}

void Userfaultfd::Wake(void* addr, size_t len) {
  uffdio_range range = {reinterpret_cast<uint64_t>(addr), len};
  if (IoctlRetry(fd_, UFFDIO_WAKE, &range) == -1) throw SysError("ioctl(UFFDIO_WAKE)", errno);
}
