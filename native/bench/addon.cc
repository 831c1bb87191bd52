// N-API layer of the bench addon (usnap_bench.node): argument conversion only.
// Failures are thrown as Errors with `nativeCode` (SYS with errno/syscall, INVALID, INTERNAL).
#include <napi.h>

#include <cstring>
#include <stdexcept>

#include "../napi_errors.h"
#include "baselines.h"
#include "util.h"

namespace {

size_t SizeArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw std::invalid_argument("size must be a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d > 0) || d != static_cast<double>(static_cast<uint64_t>(d)) || d > 1e15)
    throw std::invalid_argument("size must be a positive integer");
  return static_cast<size_t>(d);
}

double NumArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw std::invalid_argument(std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsBoolean() && info[i].As<Napi::Boolean>().Value();
}

Napi::Number N(Napi::Env env, double v) { return Napi::Number::New(env, v); }

Napi::Value MemcpyFull(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    auto r = bench::MemcpyFull(SizeArg(info, 0));
    Napi::Object o = Napi::Object::New(env);
    o.Set("ns", N(env, r.ns));
    o.Set("bytesPerSec", N(env, r.bytesPerSec));
    return o;
  });
}

Napi::Value ForkPause(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    auto r = bench::ForkPause(SizeArg(info, 0));
    Napi::Object o = Napi::Object::New(env);
    o.Set("ns", N(env, r.ns));
    o.Set("baseNs", N(env, r.baseNs));
    return o;
  });
}

Napi::Value ForkWriteOverhead(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    auto r = bench::ForkWriteOverhead(SizeArg(info, 0));
    Napi::Object o = Napi::Object::New(env);
    o.Set("forkNs", N(env, r.forkNs));
    o.Set("writeNs", N(env, r.writeNs));
    o.Set("writeNsPerPage", N(env, r.writeNsPerPage));
    o.Set("pages", N(env, r.pages));
    return o;
  });
}

Napi::Value ForkPeakExtra(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    const size_t size = SizeArg(info, 0);
    bench::ChildWork work = bench::ChildWork::kLz4;
    if (info.Length() > 1 && info[1].IsString()) {
      const std::string w = info[1].As<Napi::String>().Utf8Value();
      if (w == "read") work = bench::ChildWork::kRead;
      else if (w != "lz4") throw std::invalid_argument("childWork must be 'lz4' or 'read'");
    }
    auto r = bench::ForkPeakExtra(size, work);
    Napi::Object o = Napi::Object::New(env);
    o.Set("extraPages", N(env, r.extraPages));
    o.Set("extraBytes", N(env, r.extraBytes));
    o.Set("fraction", N(env, r.fraction));
    o.Set("pages", N(env, r.pages));
    o.Set("childSaveNs", N(env, r.childSaveNs));
    o.Set("parentWriteNs", N(env, r.parentWriteNs));
    o.Set("parentPagesBeforeSaveDone", N(env, r.parentPagesBeforeSaveDone));
    return o;
  });
}

Napi::Value MprotectSigsegv(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    auto r = bench::MprotectSigsegvWriteOverhead(SizeArg(info, 0), info.Length() < 2 || info[1].ToBoolean());
    Napi::Object o = Napi::Object::New(env);
    o.Set("pauseNs", N(env, r.pauseNs));
    o.Set("writeNs", N(env, r.writeNs));
    o.Set("writeNsPerPage", N(env, r.writeNsPerPage));
    o.Set("faults", N(env, r.faults));
    o.Set("pages", N(env, r.pages));
    return o;
  });
}

Napi::Value WpAsyncScan(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    auto r = bench::WpAsyncScan(SizeArg(info, 0), NumArg(info, 1, "dirtyFraction"));
    Napi::Object o = Napi::Object::New(env);
    o.Set("pauseNs", N(env, r.pauseNs));
    o.Set("scanNs", N(env, r.scanNs));
    o.Set("copyNs", N(env, r.copyNs));
    o.Set("pagesFound", N(env, r.pagesFound));
    o.Set("pagesDirtied", N(env, r.pagesDirtied));
    o.Set("scanCalls", N(env, r.scanCalls));
    o.Set("protectNs", N(env, r.protectNs));
    o.Set("writeNs", N(env, r.writeNs));
    o.Set("writeNsPerPage", N(env, r.writeNsPerPage));
    o.Set("pages", N(env, r.pages));
    return o;
  });
}

Napi::Value WpIoctlRaw(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    auto r = bench::WpIoctlRaw(SizeArg(info, 0), NumArg(info, 1, "percent"), BoolArg(info, 2),
                               static_cast<int>(NumArg(info, 3, "idleMs")), static_cast<int>(NumArg(info, 4, "idleSamples")));
    Napi::Object o = Napi::Object::New(env);
    o.Set("fullNs", N(env, r.fullNs));
    o.Set("unprotectNs", N(env, r.unprotectNs));
    o.Set("partialNs", N(env, r.partialNs));
    Napi::Array idle = Napi::Array::New(env, r.partialIdleNs.size());
    for (size_t i = 0; i < r.partialIdleNs.size(); i++) idle.Set(static_cast<uint32_t>(i), N(env, r.partialIdleNs[i]));
    o.Set("partialIdleNs", idle);
    o.Set("partialPages", N(env, r.partialPages));
    o.Set("partialIoctls", N(env, r.partialIoctls));
    o.Set("pages", N(env, r.pages));
    return o;
  });
}

Napi::Object Lz4Obj(Napi::Env env, const bench::Lz4Result& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ns", N(env, r.ns));
  o.Set("bytesPerSec", N(env, r.bytesPerSec));
  o.Set("ratio", N(env, r.ratio));
  o.Set("compressedBytes", N(env, r.compressedBytes));
  return o;
}

Napi::Value Lz4Raw(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value { return Lz4Obj(env, bench::Lz4Raw(SizeArg(info, 0))); });
}

Napi::Value Lz4DecodeRaw(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value { return Lz4Obj(env, bench::Lz4DecodeRaw(SizeArg(info, 0))); });
}

Napi::Object CopyObj(Napi::Env env, const bench::UffdioCopyResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ns", N(env, r.ns));
  o.Set("bytesPerSec", N(env, r.bytesPerSec));
  o.Set("ioctls", N(env, r.ioctls));
  o.Set("eexist", N(env, r.eexist));
  return o;
}

Napi::Value UffdioCopyRaw(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    return CopyObj(env, bench::UffdioCopyRaw(SizeArg(info, 0), BoolArg(info, 1)));
  });
}

Napi::Value UffdioZeroPageRaw(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    return CopyObj(env, bench::UffdioZeroPageRaw(SizeArg(info, 0)));
  });
}

Napi::Value ForkReset(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    const double it = NumArg(info, 2, "iterations");
    if (!(it >= 1 && it <= 1e7) || it != static_cast<double>(static_cast<uint32_t>(it)))
      throw std::invalid_argument("iterations must be an integer in [1, 1e7]");
    auto r = bench::ForkReset(SizeArg(info, 0), NumArg(info, 1, "dirtyFraction"), static_cast<uint32_t>(it));
    Napi::Object o = Napi::Object::New(env);
    o.Set("ns", N(env, r.ns));
    o.Set("itersPerSec", N(env, r.itersPerSec));
    o.Set("nsPerIter", N(env, r.nsPerIter));
    o.Set("pagesPerIter", N(env, r.pagesPerIter));
    return o;
  });
}

Napi::Value UffdResetRaw(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    const double pages = NumArg(info, 1, "pagesPerReset"), iterations = NumArg(info, 2, "iterations");
    if (!(pages >= 1 && pages <= 64) || !(iterations >= 1 && iterations <= 1e7))
      throw std::invalid_argument("pagesPerReset must be in [1, 64] and iterations in [1, 1e7]");
    auto r = bench::UffdResetRaw(SizeArg(info, 0), static_cast<uint32_t>(pages), static_cast<uint32_t>(iterations));
    if (!r.intact) throw std::runtime_error("uffd_reset_raw: the region was not reset");
    Napi::Object o = Napi::Object::New(env);
    o.Set("ns", N(env, static_cast<double>(r.ns)));
    o.Set("itersPerSec", N(env, r.itersPerSec));
    return o;
  });
}

Napi::Value Continuous(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    const double phaseMs = NumArg(info, 2, "phaseMs"), periodMs = NumArg(info, 3, "periodMs");
    const double blockMs = NumArg(info, 6, "blockMs"), kind = NumArg(info, 4, "kind");
    if (!(phaseMs >= 1 && phaseMs <= 3.6e6) || !(periodMs >= 1 && periodMs <= 3.6e6) || !(blockMs >= 1 && blockMs <= 3.6e6))
      throw std::invalid_argument("phaseMs, periodMs and blockMs must be in [1, 3.6e6]");
    if (kind != 0 && kind != 1 && kind != 2) throw std::invalid_argument("kind must be 0 (fork_bgsave), 1 (memcpy) or 2 (uffd_wp_raw)");
    if (info.Length() < 6 || !info[5].IsString()) throw std::invalid_argument("dir must be a string");
    const std::string dir = info[5].As<Napi::String>().Utf8Value();
    auto r = bench::Continuous(SizeArg(info, 0), NumArg(info, 1, "hotFraction"), static_cast<uint32_t>(phaseMs),
                               static_cast<uint32_t>(periodMs), static_cast<uint32_t>(blockMs),
                               static_cast<bench::CheckpointKind>(kind), dir.c_str());
    Napi::Object o = Napi::Object::New(env);
    o.Set("updatesPerSecPlain", N(env, r.updatesPerSecPlain));
    o.Set("updatesPerSec", N(env, r.updatesPerSec));
    o.Set("loss", N(env, r.loss));
    o.Set("batchP99NsPlain", N(env, r.batchP99NsPlain));
    o.Set("batchP99Ns", N(env, r.batchP99Ns));
    o.Set("checkpoints", N(env, r.checkpoints));
    return o;
  });
}

Napi::Value FillRealistic(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw std::invalid_argument("data must be a Uint8Array");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_uint8_array) throw std::invalid_argument("data must be a Uint8Array");
    Napi::Uint8Array u8 = ta.As<Napi::Uint8Array>();
    const double seed = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 1;
    bench::FillRealistic(u8.Data(), u8.ByteLength(), static_cast<uint64_t>(seed));
    return env.Undefined();
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("memcpyFull", Napi::Function::New(env, MemcpyFull));
  exports.Set("forkPause", Napi::Function::New(env, ForkPause));
  exports.Set("forkWriteOverhead", Napi::Function::New(env, ForkWriteOverhead));
  exports.Set("forkPeakExtra", Napi::Function::New(env, ForkPeakExtra));
  exports.Set("mprotectSigsegvWriteOverhead", Napi::Function::New(env, MprotectSigsegv));
  exports.Set("wpAsyncScan", Napi::Function::New(env, WpAsyncScan));
  exports.Set("wpIoctlRaw", Napi::Function::New(env, WpIoctlRaw));
  exports.Set("lz4Raw", Napi::Function::New(env, Lz4Raw));
  exports.Set("lz4DecodeRaw", Napi::Function::New(env, Lz4DecodeRaw));
  exports.Set("uffdioCopyRaw", Napi::Function::New(env, UffdioCopyRaw));
  exports.Set("uffdioZeroPageRaw", Napi::Function::New(env, UffdioZeroPageRaw));
  exports.Set("forkReset", Napi::Function::New(env, ForkReset));
  exports.Set("continuous", Napi::Function::New(env, Continuous));
  exports.Set("uffdResetRaw", Napi::Function::New(env, UffdResetRaw));
  exports.Set("fillRealistic", Napi::Function::New(env, FillRealistic));
  exports.Set("pageSize", Napi::Number::New(env, bench::kPageSize));
  exports.Set("chunkSize", Napi::Number::New(env, bench::kChunkSize));
  return exports;
}

}  // namespace

NODE_API_MODULE(usnap_bench, Init)
