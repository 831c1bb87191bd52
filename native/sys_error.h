#pragma once
#include <cerrno>
#include <stdexcept>
#include <string>

// A failed system call: carries errno so the JS layer can map it to a SnapshotError code.
class SysError : public std::runtime_error {
 public:
  SysError(const std::string& op, int err)
      : std::runtime_error(op + " failed: " + std::to_string(err)), op_(op), errnum_(err) {}
  const std::string& op() const { return op_; }
  int errnum() const { return errnum_; }

 private:
  std::string op_;
  int errnum_;
};

// Invalid data met in native code (a corrupt blob): maps to STORE_CORRUPT.
class CorruptError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The region's memory was moved (mremap): its tracking is lost for good. Maps to REMAPPED.
class MovedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
