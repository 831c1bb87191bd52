#include "codec.h"

#include <cstring>
#include <string>

#include "lz4.h"
#include "sys_error.h"
#include "xxhash.h"

bool IsZero(const uint8_t* data, size_t len) {
  // Word-at-a-time scan; chunks are page-aligned so the tail loop rarely runs.
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    uint64_t a, b, c, d;
    std::memcpy(&a, data + i, 8);
    std::memcpy(&b, data + i + 8, 8);
    std::memcpy(&c, data + i + 16, 8);
    std::memcpy(&d, data + i + 24, 8);
    if ((a | b | c | d) != 0) return false;
  }
  for (; i < len; i++)
    if (data[i]) return false;
  return true;
}

uint64_t Hash64(const void* data, size_t len) { return XXH64(data, len, 0); }

BlobPtr ZeroBlob(size_t len) {
  static const BlobPtr chunk = [] {
    auto b = std::make_shared<Blob>();
    b->rawLen = 64 * 1024;
    return b;
  }();
  if (len == chunk->rawLen) return chunk;
  auto b = std::make_shared<Blob>();
  b->rawLen = static_cast<uint32_t>(len);
  return b;
}

BlobPtr Encode(const uint8_t* data, size_t len) {
  auto blob = std::make_shared<Blob>();
  blob->rawLen = static_cast<uint32_t>(len);
  if (IsZero(data, len)) return blob;  // kZero, no bytes, hash 0
  // Compress into a reused buffer, then keep exactly the bytes produced.
  // (uint8_t, not char: assigning from char* makes std::vector copy byte by byte.)
  thread_local std::vector<uint8_t> scratch;
  const int bound = LZ4_compressBound(static_cast<int>(len));
  if (scratch.size() < static_cast<size_t>(bound)) scratch.resize(static_cast<size_t>(bound));
  int n = LZ4_compress_default(reinterpret_cast<const char*>(data), reinterpret_cast<char*>(scratch.data()),
                               static_cast<int>(len), bound);
  if (n > 0 && static_cast<size_t>(n) < len) {
    blob->codec = Codec::kLz4;
    blob->bytes.assign(scratch.data(), scratch.data() + n);
  } else {
    blob->codec = Codec::kRaw;
    blob->bytes.assign(data, data + len);
  }
  blob->hash = Hash64(blob->bytes.data(), blob->bytes.size());
  return blob;
}

void Verify(Codec codec, uint32_t rawLen, uint64_t hash, const uint8_t* bytes, size_t len) {
  switch (codec) {
    case Codec::kZero:
      if (len != 0) throw CorruptError("zero chunk carries data");
      return;
    case Codec::kRaw:
      if (len != rawLen) throw CorruptError("raw chunk length " + std::to_string(len) + " != " + std::to_string(rawLen));
      break;
    case Codec::kLz4:
      if (len == 0 || len > static_cast<size_t>(LZ4_compressBound(static_cast<int>(rawLen))))
        throw CorruptError("compressed chunk has impossible length " + std::to_string(len));
      break;
    default:
      throw CorruptError("unknown codec " + std::to_string(static_cast<int>(codec)));
  }
  if (Hash64(bytes, len) != hash) throw CorruptError("checksum mismatch");
}

void Decode(Codec codec, uint32_t rawLen, const uint8_t* bytes, size_t len, uint8_t* out) {
  switch (codec) {
    case Codec::kZero:
      std::memset(out, 0, rawLen);
      return;
    case Codec::kRaw:
      if (len != rawLen) throw CorruptError("raw chunk length mismatch");
      std::memcpy(out, bytes, rawLen);
      return;
    case Codec::kLz4: {
      int n = LZ4_decompress_safe(reinterpret_cast<const char*>(bytes), reinterpret_cast<char*>(out),
                                  static_cast<int>(len), static_cast<int>(rawLen));
      if (n != static_cast<int>(rawLen)) throw CorruptError("LZ4 data does not decode to the chunk size");
      return;
    }
  }
  throw CorruptError("unknown codec " + std::to_string(static_cast<int>(codec)));
}
