#pragma once
#include <cstddef>
#include <cstdint>

class Region;

// Write faults served on the faulting thread itself (UFFD_FEATURE_SIGBUS): a write to a
// protected page of a registered region raises SIGBUS, and the handler installed here calls
// the region's OnWriteFault on that thread before the write is retried. No handler thread is
// woken and none spins, so a fault costs the signal and the unprotect (on a VM, waking a
// sleeping thread on another vCPU is most of a threaded fault's cost).
//
// Safe in a signal handler because the signal is synchronous: it arrives only at a write to
// a region's memory, and no thread holds a region's lock while it writes there.
namespace signal_faults {

// Starts serving [begin, end) for `region`; installs the SIGBUS handler on first use, keeping
// the previous one for signals that are not ours.
void Add(Region* region, uintptr_t begin, uintptr_t end);
// Stops serving `region` and returns once no thread is inside its handler. For a short while
// after, a SIGBUS raised in its range before removal is retried rather than passed on.
void Remove(Region* region);

}  // namespace signal_faults
