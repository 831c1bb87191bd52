#include "fault_handler.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <exception>

#include "region.h"
#include "sys_error.h"

namespace {

constexpr int64_t kSpinAfterFaultNs = 50'000;

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

}  // namespace

FaultHandler::FaultHandler(Region* region, int uffd) : region_(region), uffd_(uffd) {
  stopFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stopFd_ < 0) throw SysError("eventfd", errno);
  timerFd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);  // -1: savers woken directly
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "usnap-faults");
    Run();
  });
}

FaultHandler::~FaultHandler() {
  uint64_t one = 1;
  if (write(stopFd_, &one, sizeof(one)) < 0) {
    // An eventfd write fails only on overflow, impossible after one write.
  }
  if (thread_.joinable()) thread_.join();
  close(stopFd_);
  if (timerFd_ >= 0) close(timerFd_);
}

bool FaultHandler::WakeSaversAt(int64_t ns) {
  if (timerFd_ < 0) return false;
  // Snapshots in quick succession must not keep moving the wake-up later.
  const int64_t armed = wakeAt_.load();
  if (armed != 0 && armed <= ns) return true;
  wakeAt_.store(ns);
  itimerspec at = {};
  at.it_value.tv_sec = ns / 1'000'000'000;
  at.it_value.tv_nsec = ns % 1'000'000'000;
  if (timerfd_settime(timerFd_, TFD_TIMER_ABSTIME, &at, nullptr) == 0) return true;
  wakeAt_.store(0);
  return false;
}

void FaultHandler::Run() {
  pollfd fds[3] = {{uffd_, POLLIN, 0}, {stopFd_, POLLIN, 0}, {timerFd_, POLLIN, 0}};
  uffd_msg msgs[64];
  // After a fault, keep looking for the next one without sleeping for a while: faults come
  // in bursts after a snapshot, and waking a sleeping handler on the other vCPU costs an IPI
  // (55-65 us per fault measured here, against 16-20 us while it spins). Only with a CPU to
  // spare: on one CPU the spin would delay the very thread it just woke.
  const int64_t spinNs = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? kSpinAfterFaultNs : 0;
  int64_t spinUntil = 0;
  for (;;) {
    int n = poll(fds, 3, spinUntil ? 0 : -1);
    if (n == 0) {
      if (MonotonicNs() >= spinUntil) spinUntil = 0;
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("uffd-snapshot: poll");
      return;
    }
    if (fds[1].revents) return;
    if (fds[2].revents) {
      uint64_t expirations;
      if (read(timerFd_, &expirations, sizeof(expirations)) > 0) {
        wakeAt_.store(0);  // before the wake: a snapshot that finds it set has queued its work
        region_->WakeSaver();
      }
      if (!fds[0].revents) continue;
    }
    if (fds[0].revents & (POLLERR | POLLNVAL)) return;
    region_->BeginEventRead();
    ssize_t got = read(uffd_, msgs, sizeof(msgs));
    if (got < 0) {
      const int err = errno;
      region_->EndEventBatch();
      if (err == EAGAIN || err == EINTR) continue;
      errno = err;
      perror("uffd-snapshot: read(userfaultfd)");
      return;
    }
    const size_t count = static_cast<size_t>(got) / sizeof(uffd_msg);
    for (size_t i = 0; i < count; i++) {
      const uffd_msg& m = msgs[i];
      try {
        switch (m.event) {
          case UFFD_EVENT_PAGEFAULT:
            if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
              region_->OnWriteFault(m.arg.pagefault.address);
            else
              region_->OnMissingFault(m.arg.pagefault.address);
            break;
          case UFFD_EVENT_REMOVE:
            region_->OnRemove(m.arg.remove.start, m.arg.remove.end);
            break;
          case UFFD_EVENT_REMAP:
            region_->OnRemap(m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
            break;
          default:
            break;
        }
      } catch (const std::exception& e) {
        // A faulting thread would stay blocked forever: this is not recoverable.
        fprintf(stderr, "uffd-snapshot: fault handler failed: %s\n", e.what());
        std::terminate();
      }
    }
    region_->EndEventBatch();
    if (spinNs) spinUntil = MonotonicNs() + spinNs;
  }
}
