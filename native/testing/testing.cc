// usnap_testing: helpers for the hardening tests only (never loaded by the library).
// Native writer threads, fork(), madvise, mremap, kernel-mode writes into region memory and
// a seccomp filter that denies userfaultfd.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace {

uint8_t* ViewData(const Napi::Value& v, size_t* len) {
  // Through the typed array itself: its buffer may be a SharedArrayBuffer (shared wasm memory).
  Napi::Uint8Array t = v.As<Napi::Uint8Array>();
  *len = t.ByteLength();
  return t.Data();
}

// ---- writer threads ----
// Thread t owns slots t, t+n, t+2n, ... of `slotBytes` each. Every round it stores the round
// number (uint32, release order) into the first word of every page of each owned slot, first
// page to last. So at any instant, within a slot, page values never increase from the first
// page to the last and first - last <= 1: a snapshot that mixes instants breaks that.
struct Writers {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::vector<uint32_t> rounds;
};
std::mutex gMu;
std::map<uint32_t, std::unique_ptr<Writers>> gWriters;
uint32_t gNextId = 1;

Napi::Value WritersStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t len;
  uint8_t* base = ViewData(info[0], &len);
  const size_t slotBytes = info[1].As<Napi::Number>().Uint32Value();
  const uint32_t n = info[2].As<Napi::Number>().Uint32Value();
  const uint32_t firstRound = info.Length() > 3 ? info[3].As<Napi::Number>().Uint32Value() : 1;
  if (slotBytes < 4096 || slotBytes % 4096 || len < slotBytes * n) throw Napi::Error::New(env, "bad slot layout");
  const size_t nSlots = len / slotBytes;
  auto w = std::make_unique<Writers>();
  w->rounds.assign(n, 0);
  Writers* wp = w.get();
  for (uint32_t t = 0; t < n; t++) {
    wp->threads.emplace_back([wp, t, n, base, slotBytes, nSlots, firstRound] {
      uint32_t round = firstRound;
      while (!wp->stop.load(std::memory_order_relaxed)) {
        for (size_t s = t; s < nSlots; s += n)
          for (size_t off = 0; off < slotBytes; off += 4096)
            reinterpret_cast<std::atomic<uint32_t>*>(base + s * slotBytes + off)->store(round, std::memory_order_release);
        wp->rounds[t] = round;
        round++;
      }
    });
  }
  std::lock_guard<std::mutex> lock(gMu);
  uint32_t id = gNextId++;
  gWriters[id] = std::move(w);
  return Napi::Number::New(env, id);
}

Napi::Value WritersStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unique_ptr<Writers> w;
  {
    std::lock_guard<std::mutex> lock(gMu);
    auto it = gWriters.find(info[0].As<Napi::Number>().Uint32Value());
    if (it == gWriters.end()) return env.Undefined();
    w = std::move(it->second);
    gWriters.erase(it);
  }
  w->stop = true;
  for (auto& t : w->threads) t.join();
  Napi::Array out = Napi::Array::New(env, w->rounds.size());
  for (size_t i = 0; i < w->rounds.size(); i++) out.Set(i, w->rounds[i]);
  return out;
}

// ---- fork ----
// fork_write(view, offset, len, byte, holdMs): the child writes `byte` over the range, sleeps
// holdMs, checks its own writes are there and _exits (0 ok, 3 its write did not stick).
Napi::Value ForkWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t len;
  uint8_t* base = ViewData(info[0], &len);
  const size_t off = info[1].As<Napi::Number>().Int64Value();
  const size_t n = info[2].As<Napi::Number>().Int64Value();
  const int byte = info[3].As<Napi::Number>().Int32Value();
  const int holdMs = info[4].As<Napi::Number>().Int32Value();
  if (off + n > len) throw Napi::RangeError::New(env, "range beyond the view");
  pid_t pid = fork();
  if (pid < 0) throw Napi::Error::New(env, std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    volatile uint8_t* p = base + off;
    for (size_t i = 0; i < n; i++) p[i] = static_cast<uint8_t>(byte);
    if (holdMs > 0) usleep(holdMs * 1000);
    for (size_t i = 0; i < n; i++)
      if (p[i] != static_cast<uint8_t>(byte)) _exit(3);
    _exit(0);
  }
  return Napi::Number::New(env, pid);
}

// wait_child(pid) -> exit status (or 128 + signal)
Napi::Value WaitChild(const Napi::CallbackInfo& info) {
  int status = 0;
  pid_t pid = info[0].As<Napi::Number>().Int32Value();
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int r = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  return Napi::Number::New(info.Env(), r);
}

// ---- madvise / mremap ----
Napi::Value MadviseDontneed(const Napi::CallbackInfo& info) {
  size_t len;
  uint8_t* base = ViewData(info[0], &len);
  const size_t off = info[1].As<Napi::Number>().Int64Value();
  const size_t n = info[2].As<Napi::Number>().Int64Value();
  int rc = madvise(base + off, n, MADV_DONTNEED);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : errno);
}

// mremap_roundtrip(view, back): moves the whole view's mapping to a fresh address and, when
// `back`, moves it back to where it was. Returns 0 or errno.
Napi::Value MremapRoundtrip(const Napi::CallbackInfo& info) {
  size_t len;
  uint8_t* base = ViewData(info[0], &len);
  const bool back = info[1].As<Napi::Boolean>().Value();
  void* tmp = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (tmp == MAP_FAILED) return Napi::Number::New(info.Env(), errno);
  void* moved = mremap(base, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, tmp);
  if (moved == MAP_FAILED) {
    int e = errno;
    munmap(tmp, len);
    return Napi::Number::New(info.Env(), e);
  }
  if (back) {
    void* again = mremap(moved, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, base);
    if (again == MAP_FAILED) return Napi::Number::New(info.Env(), errno);
  } else {
    // Keep the old range mapped (zero, untracked) so a stray access cannot crash the test.
    mmap(base, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  }
  return Napi::Number::New(info.Env(), 0);
}

// ---- kernel-mode writes ----
// pread_into(fd, view, offset, len, fileOffset) -> bytes read, or -errno
Napi::Value PreadInto(const Napi::CallbackInfo& info) {
  size_t len;
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t* base = ViewData(info[1], &len);
  const size_t off = info[2].As<Napi::Number>().Int64Value();
  const size_t n = info[3].As<Napi::Number>().Int64Value();
  const off_t foff = info[4].As<Napi::Number>().Int64Value();
  if (off + n > len) throw Napi::RangeError::New(info.Env(), "range beyond the view");
  ssize_t r = pread(fd, base + off, n, foff);
  return Napi::Number::New(info.Env(), r < 0 ? -errno : r);
}

// ---- seccomp: make userfaultfd(2) and opening /dev/userfaultfd fail with EPERM ----
Napi::Value DenyUserfaultfd(const Napi::CallbackInfo& info) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Napi::Number::New(info.Env(), errno);
  // TSYNC: every thread of the process, libuv's pool included.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
    return Napi::Number::New(info.Env(), errno);
  return Napi::Number::New(info.Env(), 0);
}

Napi::Value Address(const Napi::CallbackInfo& info) {
  size_t len;
  uint8_t* base = ViewData(info[0], &len);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(base)));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("writers_start", Napi::Function::New(env, WritersStart));
  exports.Set("writers_stop", Napi::Function::New(env, WritersStop));
  exports.Set("fork_write", Napi::Function::New(env, ForkWrite));
  exports.Set("wait_child", Napi::Function::New(env, WaitChild));
  exports.Set("madvise_dontneed", Napi::Function::New(env, MadviseDontneed));
  exports.Set("mremap_roundtrip", Napi::Function::New(env, MremapRoundtrip));
  exports.Set("pread_into", Napi::Function::New(env, PreadInto));
  exports.Set("deny_userfaultfd", Napi::Function::New(env, DenyUserfaultfd));
  exports.Set("address", Napi::Function::New(env, Address));
  return exports;
}

}  // namespace

NODE_API_MODULE(usnap_testing, Init)
