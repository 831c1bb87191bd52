#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

// What one UFFDIO_WRITEPROTECT costs: a fixed part (mostly the TLB flush, an IPI when other
// threads of the process have run on another CPU, a host round trip in some VMs) plus a part
// per page of its range. Runs of pages closer than fixed/perPage pages are cheaper protected as
// one range: the pages between them are protected already, and protecting them again changes
// nothing. Both parts differ 20x between machines, so they are learnt from the ioctls themselves.
class ProtectCost {
 public:
  // Runs separated by at most this many pages are protected with one ioctl.
  size_t MergeGapPages() const { return static_cast<size_t>(fixedNs_ / perPageNs_); }

  // Splits an ioctl's time between the parts: the fixed part learns from ioctls where the
  // pages took at most half of the time, the per-page part from large ranges where the fixed
  // part did. A sample counts as at most twice (or half) the estimate: a preempted ioctl is an
  // outlier, not a new machine.
  void Observe(size_t pages, uint64_t ns) {
    const double t = static_cast<double>(ns), n = static_cast<double>(pages);
    if (perPageNs_ * n <= t / 2) fixedNs_ = Learn(fixedNs_, t - perPageNs_ * n);
    if (pages >= kLarge && fixedNs_ <= t / 2) perPageNs_ = Learn(perPageNs_, (t - fixedNs_) / n);
  }

 private:
  static constexpr size_t kLarge = 4096;  // pages
  static double Learn(double old, double sample) { return 0.8 * old + 0.2 * std::clamp(sample, old / 2, old * 2); }
  // Until measured: a few us per ioctl, ~80 ns per populated page (a bare-metal-like VM).
  double fixedNs_ = 4000;
  double perPageNs_ = 80;
};
