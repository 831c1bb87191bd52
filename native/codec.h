#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

// How a chunk's bytes are stored. The numbers are part of the store format.
enum class Codec : uint8_t { kZero = 0, kRaw = 1, kLz4 = 2 };

// One chunk's contents as stored: immutable once built, shared between threads.
struct Blob {
  Codec codec = Codec::kZero;
  uint32_t rawLen = 0;
  uint64_t hash = 0;  // xxh64 of `bytes` (0 for a zero chunk): the checksum, and the dedup key
  std::vector<uint8_t> bytes;
};
using BlobPtr = std::shared_ptr<const Blob>;

bool IsZero(const uint8_t* data, size_t len);
uint64_t Hash64(const void* data, size_t len);

// An all-zero chunk of `len` bytes (shared).
BlobPtr ZeroBlob(size_t len);
// Zero check, LZ4 (kept raw when it does not shrink), checksum.
BlobPtr Encode(const uint8_t* data, size_t len);
// Checks the checksum and the lengths without decoding. Throws CorruptError.
void Verify(Codec codec, uint32_t rawLen, uint64_t hash, const uint8_t* bytes, size_t len);
// Writes exactly rawLen bytes to `out`. Throws CorruptError on bad input; never writes past rawLen.
void Decode(Codec codec, uint32_t rawLen, const uint8_t* bytes, size_t len, uint8_t* out);
