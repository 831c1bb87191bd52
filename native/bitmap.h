#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

// A plain bit set over page or chunk indexes, with run iteration for ioctl batching.
class Bitmap {
 public:
  explicit Bitmap(size_t n = 0) : n_(n), words_((n + 63) / 64, 0) {}
  size_t size() const { return n_; }
  void Resize(size_t n) {
    n_ = n;
    words_.resize((n + 63) / 64, 0);
  }
  bool Test(size_t i) const { return (words_[i >> 6] >> (i & 63)) & 1; }
  void Set(size_t i) { words_[i >> 6] |= uint64_t{1} << (i & 63); }
  void SetRange(size_t begin, size_t end) {
    for (size_t i = begin; i < end; i++) Set(i);
  }
  void Clear(size_t i) { words_[i >> 6] &= ~(uint64_t{1} << (i & 63)); }
  void ClearRange(size_t begin, size_t end) {
    for (size_t i = begin; i < end; i++) Clear(i);
  }
  void ClearAll() { std::fill(words_.begin(), words_.end(), 0); }
  void SetAll() {
    ClearAll();
    SetRange(0, n_);
  }
  bool Any() const {
    for (uint64_t w : words_)
      if (w) return true;
    return false;
  }
  // Calls fn(begin, end) for each maximal run of set bits.
  template <typename Fn>
  void ForEachRun(Fn fn) const {
    size_t i = 0;
    while (i < n_) {
      uint64_t w = words_[i >> 6] >> (i & 63);
      if (w == 0) {
        i = (i | 63) + 1;
        continue;
      }
      i += __builtin_ctzll(w);
      if (i >= n_) break;
      size_t begin = i;
      while (i < n_ && Test(i)) i++;
      fn(begin, i);
    }
  }

 private:
  size_t n_;
  std::vector<uint64_t> words_;
};
