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
  // Runs separated by at most this many pages are protected with one ioctl. Half the
  // break-even gap: near it merging gains little, and an estimate a preempted ioctl inflated
  // would merge the runs of a whole region into one long protect.
  size_t MergeGapPages() const { return static_cast<size_t>(fixedNs_ / perPageNs_ / 2); }

  // Splits an ioctl's time between the parts: the fixed part learns from ioctls where the
  // pages took at most half of the time, the per-page part from large ranges where the fixed
  // part did. The fixed part follows the usual cost, not the spikes (a flush IPI to a vCPU the
  // host has descheduled takes 4x longer): it rises slowly and falls fast.
  void Observe(size_t pages, uint64_t ns) {
    const double t = static_cast<double>(ns), n = static_cast<double>(pages);
    if (perPageNs_ * n <= t / 2) {
      const double sample = t - perPageNs_ * n;
      fixedNs_ += (sample > fixedNs_ ? 0.05 : 0.2) * (std::clamp(sample, fixedNs_ / 2, fixedNs_ * 2) - fixedNs_);
    }
    if (pages >= kLarge && fixedNs_ <= t / 2) {
      const double sample = (t - fixedNs_) / n;
      perPageNs_ += 0.2 * (std::clamp(sample, perPageNs_ / 2, perPageNs_ * 2) - perPageNs_);
    }
  }

 private:
  static constexpr size_t kLarge = 4096;  // pages
  // Until measured: a few us per ioctl, ~80 ns per populated page (a bare-metal-like VM).
  double fixedNs_ = 4000;
  double perPageNs_ = 80;
};
