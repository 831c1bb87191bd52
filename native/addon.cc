// N-API layer: type checks and conversions only. Validation, defaults and error wording live
// in lib/ (TypeScript); how native failures are thrown is in napi_errors.h.
#include <napi.h>

#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

#include "background.h"
#include "codec.h"
#include "napi_errors.h"
#include "region.h"
#include "sink.h"
#include "sys_error.h"
#include "uffd.h"

namespace {

// ---- objects reachable by id from every environment: a writer in a worker thread drains a
// sink, a reader in a worker supplies a restored region's page source ----

template <typename T>
class Registry {
 public:
  uint32_t Add(std::shared_ptr<T> v) {
    std::lock_guard<std::mutex> lock(mu_);
    map_[next_] = std::move(v);
    return next_++;
  }
  std::shared_ptr<T> Find(const Napi::Value& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(id.As<Napi::Number>().Uint32Value());
    return it == map_.end() ? nullptr : it->second;
  }
  std::shared_ptr<T> Take(uint32_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return nullptr;
    std::shared_ptr<T> v = std::move(it->second);
    map_.erase(it);
    return v;
  }

 private:
  std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<T>> map_;
  uint32_t next_ = 1;
};

Registry<Sink> gSinks;
Registry<PageSource> gSources;

std::shared_ptr<Sink> FindSink(Napi::Env env, const Napi::Value& v) {
  std::shared_ptr<Sink> s = gSinks.Find(v);
  if (!s) throw NativeError(env, "CLOSED", "sink is closed");
  return s;
}

std::shared_ptr<PageSource> FindSource(Napi::Env env, const Napi::Value& v) {
  std::shared_ptr<PageSource> s = gSources.Find(v);
  if (!s) throw NativeError(env, "CLOSED", "the restored region is closed");
  return s;
}

// Encoded chunks passed as parallel arrays: { chunk, codec, rawLen, hash, offset, data }.
struct ChunkArrays {
  Napi::Uint32Array chunk;
  Napi::Uint8Array codec;
  Napi::Uint32Array rawLen;
  const uint64_t* hash;
  Napi::Uint32Array offset;
  Napi::Uint8Array data;
  size_t n;
  explicit ChunkArrays(Napi::Env env, const Napi::Object& o)
      : chunk(o.Get("chunk").As<Napi::Uint32Array>()),
        codec(o.Get("codec").As<Napi::Uint8Array>()),
        rawLen(o.Get("rawLen").As<Napi::Uint32Array>()),
        offset(o.Get("offset").As<Napi::Uint32Array>()),
        data(o.Get("data").As<Napi::Uint8Array>()),
        n(chunk.ElementLength()) {
    Napi::TypedArray h = o.Get("hash").As<Napi::TypedArray>();
    hash = reinterpret_cast<const uint64_t*>(static_cast<uint8_t*>(h.ArrayBuffer().Data()) + h.ByteOffset());
    if (codec.ElementLength() != n || rawLen.ElementLength() != n || h.ElementLength() != n ||
        offset.ElementLength() != n + 1 || offset[n] > data.ByteLength())
      throw NativeError(env, "INVALID", "chunk arrays differ in length");
    for (size_t i = 0; i < n; i++)
      if (offset[i] > offset[i + 1]) throw NativeError(env, "INVALID", "chunk offsets go backwards");
  }
  const uint8_t* bytes(size_t i) const { return data.Data() + offset[i]; }
  size_t len(size_t i) const { return offset[i + 1] - offset[i]; }
  // Entry i copied out of the JS arrays, to outlive this call.
  BlobPtr blob(size_t i) const {
    auto b = std::make_shared<Blob>();
    b->codec = static_cast<Codec>(codec[i]);
    b->rawLen = rawLen[i];
    b->hash = hash[i];
    b->bytes.assign(bytes(i), bytes(i) + len(i));
    return b;
  }
};

// ---- regions: owned by the JS handle, closed by the environment's cleanup hook at exit ----

struct RegionHandle;
struct EnvData {
  std::set<RegionHandle*> regions;
};

struct RegionHandle {
  std::unique_ptr<Region> region;
  uint32_t sourceId = 0;
  std::shared_ptr<Mapping> mapping;  // null when the memory belongs to someone else (attach)
  Napi::Reference<Napi::ArrayBuffer> buffer;
  EnvData* envData = nullptr;

  void Close() {
    if (region) region->Close();
    if (sourceId) {
      gSources.Take(sourceId);
      sourceId = 0;
    }
  }
};

RegionHandle* GetRegion(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) throw NativeError(env, "INVALID", "not a region handle");
  RegionHandle* h = v.As<Napi::External<RegionHandle>>().Data();
  if (!h->region) throw NativeError(env, "CLOSED", "region is closed");
  return h;
}

Napi::Uint32Array ToUint32Array(Napi::Env env, const std::vector<uint32_t>& v) {
  Napi::Uint32Array a = Napi::Uint32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(uint32_t));
  return a;
}

int64_t HashToSigned(uint64_t h) {
  int64_t s;
  std::memcpy(&s, &h, sizeof(s));
  return s;
}

uint64_t HashFromValue(const Napi::Value& v) {
  bool lossless;
  int64_t s = v.As<Napi::BigInt>().Int64Value(&lossless);
  uint64_t h;
  std::memcpy(&h, &s, sizeof(h));
  return h;
}

// The ArrayBuffer co-owns the mapping: memory stays valid for as long as JS can reach it.
// Node may run the finalizer itself when it cannot make the buffer (Node 20 does for lengths
// above buffer.constants.MAX_LENGTH) and node-addon-api then frees its own wrapper again: so
// the raw N-API call, and an owner registry that makes releasing an owner idempotent.
std::mutex gOwnersMu;
std::set<std::shared_ptr<Mapping>*> gOwners;

void ReleaseOwner(std::shared_ptr<Mapping>* o) {
  {
    std::lock_guard<std::mutex> lock(gOwnersMu);
    if (gOwners.erase(o) == 0) return;
  }
  delete o;
}

Napi::ArrayBuffer MappingBuffer(Napi::Env env, const std::shared_ptr<Mapping>& mapping) {
  auto* owner = new std::shared_ptr<Mapping>(mapping);
  {
    std::lock_guard<std::mutex> lock(gOwnersMu);
    gOwners.insert(owner);
  }
  napi_value value;
  napi_status status = napi_create_external_arraybuffer(
      env, mapping->base(), mapping->size(),
      [](napi_env, void*, void* hint) { ReleaseOwner(static_cast<std::shared_ptr<Mapping>*>(hint)); }, owner, &value);
  if (status != napi_ok) {
    ReleaseOwner(owner);
    if (env.IsExceptionPending()) env.GetAndClearPendingException();
    throw NativeError(env, "INVALID", "the region is larger than this Node.js can hold in one ArrayBuffer");
  }
  return Napi::ArrayBuffer(env, value);
}

// ---- exports ----

Napi::Value ProbeUffd(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    UffdProbe p = Userfaultfd::Probe();
    Napi::Object o = Napi::Object::New(env);
    o.Set("ok", p.ok);
    o.Set("errno", p.errnum);
    o.Set("failedOp", p.failedOp);
    const char* route = p.route == UffdRoute::kDevice    ? "device"
                        : p.route == UffdRoute::kSyscall ? "syscall"
                                                         : "syscall-user-mode-only";
    o.Set("route", route);
    o.Set("features", Napi::Number::New(env, static_cast<double>(p.features)));
    return o;
  });
}

// region_open({ size, faultAroundPages, sink, regionKey, memory?: Uint8Array })
Napi::Value RegionOpen(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    Napi::Object opts = info[0].As<Napi::Object>();
    auto handle = std::make_unique<RegionHandle>();
    RegionOptions ro;
    ro.faultAroundPages = opts.Get("faultAroundPages").As<Napi::Number>().Uint32Value();
    if (opts.Get("faultAroundMaxPages").IsNumber())
      ro.faultAroundMaxPages = opts.Get("faultAroundMaxPages").As<Napi::Number>().Uint32Value();
    ro.pauseMode = opts.Get("pauseMode").ToBoolean();
    ro.signalFaults = opts.Get("signalFaults").ToBoolean();
    if (opts.Get("captureBudget").IsNumber())
      ro.captureBudget = static_cast<size_t>(opts.Get("captureBudget").As<Napi::Number>().Int64Value());
    if (opts.Get("saverThreads").IsNumber()) ro.saverThreads = opts.Get("saverThreads").As<Napi::Number>().Uint32Value();
    ro.regionKey = opts.Get("regionKey").As<Napi::Number>().Uint32Value();
    ro.sink = FindSink(env, opts.Get("sink"));
    Napi::Value restore = opts.Get("restore");
    if (restore.IsObject()) {
      ro.restore = true;
      ro.restoreLabel = restore.As<Napi::Object>().Get("label").As<Napi::String>().Utf8Value();
    }
    Napi::Value memory = opts.Get("memory");
    if (memory.IsTypedArray()) {
      Napi::Uint8Array view = memory.As<Napi::Uint8Array>();
      ro.base = view.Data();
      ro.size = view.ByteLength();
    } else {
      ro.size = static_cast<size_t>(opts.Get("size").As<Napi::Number>().Int64Value());
      handle->mapping = std::make_shared<Mapping>(ro.size, opts.Get("hugePages").ToBoolean());
      ro.base = handle->mapping->base();
    }
    handle->region = std::make_unique<Region>(ro);
    if (handle->region->source()) handle->sourceId = gSources.Add(handle->region->source());
    if (handle->mapping) handle->buffer = Napi::Persistent(MappingBuffer(env, handle->mapping));
    EnvData* envData = env.GetInstanceData<EnvData>();
    handle->envData = envData;
    envData->regions.insert(handle.get());
    return Napi::External<RegionHandle>::New(env, handle.release(), [](Napi::Env, RegionHandle* h) {
      if (h->envData) h->envData->regions.erase(h);
      h->Close();
      delete h;
    });
  });
}

Napi::Value RegionBuffer(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    if (h->buffer.IsEmpty()) return env.Undefined();
    return h->buffer.Value();
  });
}

Napi::Value RegionSnapshot(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    uint64_t snap = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    std::string meta = info[2].As<Napi::String>().Utf8Value();
    const bool hold = info[3].ToBoolean().Value();
    Napi::Float64Array out = info[4].As<Napi::Float64Array>();
    if (out.ElementLength() < 2) throw std::invalid_argument("region_snapshot: out must hold 2 numbers");
    SnapshotResult r = h->region->Snapshot(snap, std::move(meta), hold);
    // Through `out` rather than a result object: this call starts cold, and each property
    // set costs ~10 us then (docs/benchmark.md, fifth session).
    out[0] = static_cast<double>(r.pauseNs);
    out[1] = r.full ? 1 : 0;
    return ToUint32Array(env, r.chunks);
  });
}

Napi::Value RegionRelease(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    GetRegion(env, info[0])->region->Release();
    return env.Undefined();
  });
}

Napi::Value RegionPrepareRollback(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    return ToUint32Array(env, GetRegion(env, info[0])->region->PrepareRollback());
  });
}

// region_rollback(handle, sink, { chunk: Uint32Array, sinkSnap: Float64Array, codec: Uint8Array,
//   rawLen: Uint32Array, hash: BigInt64Array, data: (Uint8Array|null)[] })
// A source with sinkSnap > 0 is read from the sink; otherwise from `data` (checked first).
Napi::Value RegionRollback(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    std::shared_ptr<Sink> sink = FindSink(env, info[1]);
    Napi::Object src = info[2].As<Napi::Object>();
    Napi::Uint32Array chunk = src.Get("chunk").As<Napi::Uint32Array>();
    Napi::Float64Array sinkSnap = src.Get("sinkSnap").As<Napi::Float64Array>();
    Napi::Uint8Array codec = src.Get("codec").As<Napi::Uint8Array>();
    Napi::Uint32Array rawLen = src.Get("rawLen").As<Napi::Uint32Array>();
    Napi::TypedArray hashArr = src.Get("hash").As<Napi::TypedArray>();
    const uint64_t* hash = reinterpret_cast<const uint64_t*>(
        static_cast<uint8_t*>(hashArr.ArrayBuffer().Data()) + hashArr.ByteOffset());
    Napi::Array data = src.Get("data").As<Napi::Array>();
    const size_t n = chunk.ElementLength();
    if (sinkSnap.ElementLength() != n || codec.ElementLength() != n || rawLen.ElementLength() != n ||
        hashArr.ElementLength() != n || data.Length() != n)
      throw NativeError(env, "INVALID", "rollback source arrays differ in length");
    std::vector<uint32_t> cached;
    Napi::Value cachedV = src.Get("cached");
    if (cachedV.IsTypedArray()) {
      Napi::Uint32Array ca = cachedV.As<Napi::Uint32Array>();
      cached.assign(ca.Data(), ca.Data() + ca.ElementLength());
    }
    const uint64_t target = static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value());
    std::vector<ChunkSource> sources(n);
    for (size_t i = 0; i < n; i++) {
      ChunkSource& s = sources[i];
      s.chunk = chunk[i];
      if (sinkSnap[i] > 0) {
        s.keep = sink->Lookup(static_cast<uint64_t>(sinkSnap[i]), s.chunk);
        if (!s.keep) throw NativeError(env, "INVALID", "chunk is no longer held in memory");
        s.codec = s.keep->codec;
        s.rawLen = s.keep->rawLen;
        s.bytes = s.keep->bytes.data();
        s.len = s.keep->bytes.size();
        continue;
      }
      s.codec = static_cast<Codec>(codec[i]);
      s.rawLen = rawLen[i];
      Napi::Value d = data.Get(static_cast<uint32_t>(i));
      if (d.IsTypedArray()) {
        Napi::Uint8Array bytes = d.As<Napi::Uint8Array>();
        s.bytes = bytes.Data();
        s.len = bytes.ByteLength();
      }
      if (s.rawLen != kChunkSize) throw CorruptError("chunk " + std::to_string(s.chunk) + " is not 64 KiB");
      try {
        Verify(s.codec, s.rawLen, hash[i], s.bytes, s.len);
      } catch (const CorruptError& e) {
        throw CorruptError("chunk " + std::to_string(s.chunk) + ": " + e.what());
      }
    }
    const bool onlyWritten = info.Length() > 4 && info[4].ToBoolean();
    return ToUint32Array(env, h->region->Rollback(target, sources, cached, onlyWritten));
  });
}

// region_grow(handle, view: Uint8Array over the whole grown memory)
Napi::Value RegionGrow(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    Napi::Uint8Array view = info[1].As<Napi::Uint8Array>();
    if (view.Data() != h->region->base())
      throw NativeError(env, "MOVED", "the memory moved when it grew; it cannot be tracked in place");
    h->region->Grow(view.ByteLength());
    return env.Undefined();
  });
}

// region_reset_to_head(handle, target) -> boolean (false: take the general path)
Napi::Value RegionResetToHead(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    return Napi::Boolean::New(env, h->region->ResetToHead(static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value())));
  });
}

// region_uncached(handle, target, chunks: Uint32Array) -> Uint32Array
Napi::Value RegionUncached(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    const uint64_t target = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    Napi::Uint32Array a = info[2].As<Napi::Uint32Array>();
    return ToUint32Array(env, h->region->Uncached(target, std::vector<uint32_t>(a.Data(), a.Data() + a.ElementLength())));
  });
}

// region_unprotect(handle, offset, length): lets the kernel write there until the next snapshot.
Napi::Value RegionUnprotect(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionHandle* h = GetRegion(env, info[0]);
    h->region->Unprotect(static_cast<size_t>(info[1].As<Napi::Number>().Int64Value()),
                         static_cast<size_t>(info[2].As<Napi::Number>().Int64Value()));
    return env.Undefined();
  });
}

Napi::Value RegionKernelWritesTrap(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    return Napi::Boolean::New(env, GetRegion(env, info[0])->region->kernelWritesTrap());
  });
}

Napi::Value RegionStatsFn(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    RegionStats s = GetRegion(env, info[0])->region->Stats();
    Napi::Object o = Napi::Object::New(env);
    auto num = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
    num("wpFaults", s.wpFaults);
    num("missingFaults", s.missingFaults);
    num("chunksCapturedByHandler", s.chunksCapturedByHandler);
    num("chunksEncodedByHandler", s.chunksEncodedByHandler);
    num("chunksSavedInBackground", s.chunksSavedInBackground);
    num("savesDiscarded", s.savesDiscarded);
    num("bytesCaptured", s.bytesCaptured);
    num("snapshots", s.snapshots);
    num("rollbacks", s.rollbacks);
    num("chunksRolledBack", s.chunksRolledBack);
    num("pagesRolledBack", s.pagesRolledBack);
    num("lastPauseNs", s.lastPauseNs);
    num("maxPauseNs", s.maxPauseNs);
    num("pendingChunks", s.pendingChunks);
    num("faultNsTotal", s.faultNsTotal);
    num("chunksUnchanged", s.chunksUnchanged);
    return o;
  });
}

Napi::Value RegionClose(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    if (!info[0].IsExternal()) throw NativeError(env, "INVALID", "not a region handle");
    RegionHandle* h = info[0].As<Napi::External<RegionHandle>>().Data();
    if (!h->region) return env.Undefined();
    h->Close();
    h->region.reset();
    if (!h->buffer.IsEmpty()) {
      // Detach first: views over the buffer become empty instead of pointing at unmapped memory.
      Napi::ArrayBuffer ab = h->buffer.Value();
      if (!ab.IsDetached()) ab.Detach();
      h->buffer.Reset();
    }
    if (h->mapping) h->mapping->Unmap();
    h->mapping.reset();
    return env.Undefined();
  });
}

Napi::Value RegionSource(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    return Napi::Number::New(env, GetRegion(env, info[0])->sourceId);
  });
}

Napi::Value SourceSetPlan(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = FindSource(env, info[0]);
    Napi::Uint8Array plan = info[1].As<Napi::Uint8Array>();
    src->SetPlan(std::vector<uint8_t>(plan.Data(), plan.Data() + plan.ByteLength()));
    return env.Undefined();
  });
}

Napi::Value SourceFail(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    FindSource(env, info[0])->Fail(info[1].As<Napi::String>().Utf8Value());
    return env.Undefined();
  });
}

Napi::Value SourceStage(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = FindSource(env, info[0]);
    ChunkArrays a(env, info[1].As<Napi::Object>());
    for (size_t i = 0; i < a.n; i++) src->Stage(a.chunk[i], a.blob(i));
    return env.Undefined();
  });
}

Napi::Value SourceStartPrefetch(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    FindSource(env, info[0])->StartPrefetch();
    return env.Undefined();
  });
}

// source_set_order(source, order: Uint32Array, prefetch: boolean, recordQuietMs: number)
Napi::Value SourceSetOrder(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = FindSource(env, info[0]);
    Napi::Uint32Array order = info[1].As<Napi::Uint32Array>();
    src->SetOrder(std::vector<uint32_t>(order.Data(), order.Data() + order.ElementLength()), info[2].ToBoolean().Value(),
                  info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0);
    return env.Undefined();
  });
}

Napi::Value SourcePrefetchAll(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = gSources.Find(info[0]);
    if (src) src->PrefetchAll();
    return env.Undefined();
  });
}

Napi::Value SourceHandedOut(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = gSources.Find(info[0]);
    if (src) src->HandedOut();
    return env.Undefined();
  });
}

// source_trace(source): { faultOrder, prefetchLog } (Uint32Arrays), or null once closed.
Napi::Value SourceTrace(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = gSources.Find(info[0]);
    if (!src) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("faultOrder", ToUint32Array(env, src->FaultOrder()));
    o.Set("prefetchLog", ToUint32Array(env, src->PrefetchLog()));
    return o;
  });
}

Napi::Value SourceNext(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = FindSource(env, info[0]);
    return ToUint32Array(env, src->NextToFetch(info[1].As<Napi::Number>().Uint32Value(), info[2].As<Napi::Number>().Int32Value()));
  });
}

Napi::Value SourceSupply(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = gSources.Find(info[0]);
    if (!src) return Napi::Boolean::New(env, false);
    ChunkArrays a(env, info[1].As<Napi::Object>());
    for (size_t i = 0; i < a.n; i++)
      if (!src->Supply(a.chunk[i], a.blob(i))) return Napi::Boolean::New(env, false);
    return Napi::Boolean::New(env, true);
  });
}

Napi::Value SourceWaitReady(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<PageSource> src = FindSource(env, info[0]);
    return Napi::Boolean::New(env, src->WaitReady(info[1].As<Napi::Number>().Int32Value()));
  });
}

Napi::Value SourceStatsFn(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    std::shared_ptr<PageSource> src = gSources.Find(info[0]);
    o.Set("open", !!src);
    if (!src) return o;
    o.Set("dataChunks", Napi::Number::New(env, static_cast<double>(src->dataChunks())));
    o.Set("dataPresent", Napi::Number::New(env, static_cast<double>(src->dataPresent())));
    o.Set("ready", src->ready());
    o.Set("corrupt", src->corrupt());
    return o;
  });
}

Napi::Value SinkOpen(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    return Napi::Number::New(env, gSinks.Add(std::make_shared<Sink>()));
  });
}

// sink_committed(sink, snap: Float64Array, chunk: Uint32Array): the batch's chunks are in the store.
Napi::Value SinkCommitted(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<Sink> sink = FindSink(env, info[0]);
    Napi::Float64Array snap = info[1].As<Napi::Float64Array>();
    Napi::Uint32Array chunk = info[2].As<Napi::Uint32Array>();
    if (snap.ElementLength() != chunk.ElementLength()) throw NativeError(env, "INVALID", "snap and chunk differ in length");
    BackgroundIdle idle;
    sink->Committed(snap.Data(), chunk.Data(), chunk.ElementLength());
    return env.Undefined();
  });
}

// sink_pin(sink, pinned): while pinned, committed chunks stay in memory.
Napi::Value SinkPin(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<Sink> sink = FindSink(env, info[0]);
    if (info[1].ToBoolean()) sink->Pin();
    else sink->Unpin();
    return env.Undefined();
  });
}

Napi::Value SinkDrain(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<Sink> sink = FindSink(env, info[0]);
    size_t maxBytes = info[1].As<Napi::Number>().Uint32Value();
    int waitMs = info[2].As<Napi::Number>().Int32Value();
    int lingerMs = info.Length() > 3 ? info[3].As<Napi::Number>().Int32Value() : 0;
    Sink::Batch b;
    {
      BackgroundIdle idle;
      b = sink->Drain(maxBytes, waitMs, lingerMs);
    }
    Napi::Object o = Napi::Object::New(env);
    Napi::Array begins = Napi::Array::New(env, b.begins.size());
    for (size_t i = 0; i < b.begins.size(); i++) {
      Napi::Object x = Napi::Object::New(env);
      x.Set("snap", Napi::Number::New(env, static_cast<double>(b.begins[i].snap)));
      x.Set("regionKey", b.begins[i].regionKey);
      x.Set("full", b.begins[i].full);
      x.Set("meta", b.begins[i].meta);
      begins.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("begins", begins);
    const size_t n = b.chunks.size();
    size_t total = 0;
    for (const auto& c : b.chunks) total += c.blob->bytes.size();
    Napi::Float64Array snap = Napi::Float64Array::New(env, n);
    Napi::Uint32Array chunk = Napi::Uint32Array::New(env, n);
    Napi::Uint8Array codec = Napi::Uint8Array::New(env, n);
    Napi::Uint32Array rawLen = Napi::Uint32Array::New(env, n);
    Napi::BigInt64Array hash = Napi::BigInt64Array::New(env, n);
    Napi::Uint32Array offset = Napi::Uint32Array::New(env, n + 1);
    // A caller's reusable buffer (the writer's) saves faulting in fresh memory for every batch.
    Napi::Value scratch = info.Length() > 4 ? info[4] : env.Undefined();
    Napi::Uint8Array data = scratch.IsTypedArray() && scratch.As<Napi::Uint8Array>().ByteLength() >= total
                                ? scratch.As<Napi::Uint8Array>()
                                : Napi::Buffer<uint8_t>::New(env, total);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
      const Sink::Chunk& c = b.chunks[i];
      snap[i] = static_cast<double>(c.snap);
      chunk[i] = c.chunk;
      codec[i] = static_cast<uint8_t>(c.blob->codec);
      rawLen[i] = c.blob->rawLen;
      hash[i] = HashToSigned(c.blob->hash);
      offset[i] = static_cast<uint32_t>(pos);
      if (!c.blob->bytes.empty()) std::memcpy(data.Data() + pos, c.blob->bytes.data(), c.blob->bytes.size());
      pos += c.blob->bytes.size();
    }
    offset[n] = static_cast<uint32_t>(pos);
    Napi::Object chunks = Napi::Object::New(env);
    chunks.Set("snap", snap);
    chunks.Set("chunk", chunk);
    chunks.Set("codec", codec);
    chunks.Set("rawLen", rawLen);
    chunks.Set("hash", hash);
    chunks.Set("offset", offset);
    chunks.Set("data", data);
    o.Set("chunks", chunks);
    Napi::Array ends = Napi::Array::New(env, b.ends.size());
    for (size_t i = 0; i < b.ends.size(); i++) {
      const Sink::End& e = b.ends[i];
      Napi::Object x = Napi::Object::New(env);
      x.Set("snap", Napi::Number::New(env, static_cast<double>(e.snap)));
      x.Set("chunks", e.chunks);
      x.Set("rawBytes", Napi::Number::New(env, static_cast<double>(e.rawBytes)));
      x.Set("storedBytes", Napi::Number::New(env, static_cast<double>(e.storedBytes)));
      x.Set("failed", e.failed);
      x.Set("error", e.error);
      ends.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("ends", ends);
    return o;
  });
}

Napi::Value SinkRelease(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    FindSink(env, info[0])->Release(static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()));
    return env.Undefined();
  });
}

Napi::Value SinkStatsFn(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    std::shared_ptr<Sink> sink = FindSink(env, info[0]);
    Sink::Stats s;
    {
      BackgroundIdle idle;
      s = sink->GetStats();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("heldBytes", Napi::Number::New(env, static_cast<double>(s.heldBytes)));
    o.Set("inflight", s.inflight);
    return o;
  });
}

Napi::Value SinkClose(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    if (std::shared_ptr<Sink> sink = gSinks.Take(info[0].As<Napi::Number>().Uint32Value())) sink->Close();
    return env.Undefined();
  });
}

Napi::Object BlobToObject(Napi::Env env, const Blob& b) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("codec", static_cast<uint32_t>(b.codec));
  o.Set("rawLen", b.rawLen);
  o.Set("hash", Napi::BigInt::New(env, HashToSigned(b.hash)));
  o.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, b.bytes.data(), b.bytes.size()));
  return o;
}

Napi::Value CodecEncode(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    Napi::Uint8Array in = info[0].As<Napi::Uint8Array>();
    return BlobToObject(env, *Encode(in.Data(), in.ByteLength()));
  });
}

Napi::Value CodecDecode(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    uint32_t codec = info[0].As<Napi::Number>().Uint32Value();
    uint32_t rawLen = info[1].As<Napi::Number>().Uint32Value();
    Napi::Uint8Array in = info[2].As<Napi::Uint8Array>();
    if (rawLen > (64u << 20)) throw CorruptError("decoded length too large");
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, rawLen);
    Decode(static_cast<Codec>(codec), rawLen, in.Data(), in.ByteLength(), out.Data());
    return out;
  });
}

Napi::Value CodecVerify(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    uint32_t codec = info[0].As<Napi::Number>().Uint32Value();
    uint32_t rawLen = info[1].As<Napi::Number>().Uint32Value();
    uint64_t hash = HashFromValue(info[2]);
    Napi::Uint8Array in = info[3].As<Napi::Uint8Array>();
    Verify(static_cast<Codec>(codec), rawLen, hash, in.Data(), in.ByteLength());
    return env.Undefined();
  });
}

Napi::Value CodecHash(const Napi::CallbackInfo& info) {
  return Guard(info, [&](Napi::Env env) -> Napi::Value {
    Napi::Uint8Array in = info[0].As<Napi::Uint8Array>();
    return Napi::BigInt::New(env, HashToSigned(Hash64(in.Data(), in.ByteLength())));
  });
}

Napi::Value ThreadSetBackground(const Napi::CallbackInfo& info) {
  EnterBackground(true);
  return info.Env().Undefined();
}

Napi::Value BackgroundParkStatsFn(const Napi::CallbackInfo& info) {
  BackgroundParkStats s = GetBackgroundParkStats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("parks", Napi::Number::New(info.Env(), static_cast<double>(s.parks)));
  o.Set("signalsSent", Napi::Number::New(info.Env(), static_cast<double>(s.signalsSent)));
  o.Set("signalsAcked", Napi::Number::New(info.Env(), static_cast<double>(s.signalsAcked)));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* envData = new EnvData();
  env.SetInstanceData<EnvData>(envData);
  // At environment teardown (process exit, worker exit) stop every region's threads before
  // the memory they read goes away.
  env.AddCleanupHook([envData] {
    for (RegionHandle* h : envData->regions) {
      h->envData = nullptr;
      h->Close();
    }
    envData->regions.clear();
  });
  exports.Set("thread_set_background", Napi::Function::New(env, ThreadSetBackground, "thread_set_background"));
  exports.Set("background_park_stats", Napi::Function::New(env, BackgroundParkStatsFn, "background_park_stats"));
  exports.Set("probe", Napi::Function::New(env, ProbeUffd, "probe"));
  exports.Set("region_open", Napi::Function::New(env, RegionOpen, "region_open"));
  exports.Set("region_buffer", Napi::Function::New(env, RegionBuffer, "region_buffer"));
  exports.Set("region_snapshot", Napi::Function::New(env, RegionSnapshot, "region_snapshot"));
  exports.Set("region_release", Napi::Function::New(env, RegionRelease, "region_release"));
  exports.Set("region_prepare_rollback", Napi::Function::New(env, RegionPrepareRollback, "region_prepare_rollback"));
  exports.Set("region_rollback", Napi::Function::New(env, RegionRollback, "region_rollback"));
  exports.Set("region_reset_to_head", Napi::Function::New(env, RegionResetToHead, "region_reset_to_head"));
  exports.Set("region_uncached", Napi::Function::New(env, RegionUncached, "region_uncached"));
  exports.Set("region_grow", Napi::Function::New(env, RegionGrow, "region_grow"));
  exports.Set("region_unprotect", Napi::Function::New(env, RegionUnprotect, "region_unprotect"));
  exports.Set("region_kernel_writes_trap", Napi::Function::New(env, RegionKernelWritesTrap, "region_kernel_writes_trap"));
  exports.Set("region_stats", Napi::Function::New(env, RegionStatsFn, "region_stats"));
  exports.Set("region_close", Napi::Function::New(env, RegionClose, "region_close"));
  exports.Set("region_source", Napi::Function::New(env, RegionSource, "region_source"));
  exports.Set("source_set_plan", Napi::Function::New(env, SourceSetPlan, "source_set_plan"));
  exports.Set("source_fail", Napi::Function::New(env, SourceFail, "source_fail"));
  exports.Set("source_stage", Napi::Function::New(env, SourceStage, "source_stage"));
  exports.Set("source_start_prefetch", Napi::Function::New(env, SourceStartPrefetch, "source_start_prefetch"));
  exports.Set("source_set_order", Napi::Function::New(env, SourceSetOrder, "source_set_order"));
  exports.Set("source_prefetch_all", Napi::Function::New(env, SourcePrefetchAll, "source_prefetch_all"));
  exports.Set("source_handed_out", Napi::Function::New(env, SourceHandedOut, "source_handed_out"));
  exports.Set("source_trace", Napi::Function::New(env, SourceTrace, "source_trace"));
  exports.Set("source_next", Napi::Function::New(env, SourceNext, "source_next"));
  exports.Set("source_supply", Napi::Function::New(env, SourceSupply, "source_supply"));
  exports.Set("source_wait_ready", Napi::Function::New(env, SourceWaitReady, "source_wait_ready"));
  exports.Set("source_stats", Napi::Function::New(env, SourceStatsFn, "source_stats"));
  exports.Set("sink_open", Napi::Function::New(env, SinkOpen, "sink_open"));
  exports.Set("sink_drain", Napi::Function::New(env, SinkDrain, "sink_drain"));
  exports.Set("sink_committed", Napi::Function::New(env, SinkCommitted, "sink_committed"));
  exports.Set("sink_pin", Napi::Function::New(env, SinkPin, "sink_pin"));
  exports.Set("sink_release", Napi::Function::New(env, SinkRelease, "sink_release"));
  exports.Set("sink_stats", Napi::Function::New(env, SinkStatsFn, "sink_stats"));
  exports.Set("sink_close", Napi::Function::New(env, SinkClose, "sink_close"));
  exports.Set("codec_encode", Napi::Function::New(env, CodecEncode, "codec_encode"));
  exports.Set("codec_decode", Napi::Function::New(env, CodecDecode, "codec_decode"));
  exports.Set("codec_verify", Napi::Function::New(env, CodecVerify, "codec_verify"));
  exports.Set("codec_hash", Napi::Function::New(env, CodecHash, "codec_hash"));
  exports.Set("chunkSize", Napi::Number::New(env, kChunkSize));
  exports.Set("pageSize", Napi::Number::New(env, kPageSize));
  return exports;
}

}  // namespace

NODE_API_MODULE(uffd_snapshot, Init)
