#pragma once
// How native failures reach JavaScript, shared by the addons: plain Errors carrying
// `nativeCode` (SYS, CORRUPT, INVALID, CLOSED, NOMEM, INTERNAL), plus `errno`/`syscall` for
// SYS. lib/ turns them into SnapshotErrors with stable codes and hints.
#include <napi.h>

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "sys_error.h"

inline Napi::Error NativeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("nativeCode", Napi::String::New(env, code));
  return e;
}

template <typename Fn>
inline Napi::Value Guard(const Napi::CallbackInfo& info, Fn fn) {
  Napi::Env env = info.Env();
  try {
    return fn(env);
  } catch (const Napi::Error&) {
    throw;
  } catch (const SysError& e) {
    Napi::Error err = NativeError(env, "SYS", std::string(e.op()) + ": " + strerror(e.errnum()));
    err.Set("errno", Napi::Number::New(env, e.errnum()));
    err.Set("syscall", Napi::String::New(env, e.op()));
    throw err;
  } catch (const CorruptError& e) {
    throw NativeError(env, "CORRUPT", e.what());
  } catch (const MovedError& e) {
    throw NativeError(env, "REMAPPED", e.what());
  } catch (const std::invalid_argument& e) {
    throw NativeError(env, "INVALID", e.what());
  } catch (const std::out_of_range& e) {
    throw NativeError(env, "INVALID", e.what());
  } catch (const std::logic_error& e) {
    throw NativeError(env, "CLOSED", e.what());
  } catch (const std::bad_alloc&) {
    throw NativeError(env, "NOMEM", "out of memory");
  } catch (const std::exception& e) {
    throw NativeError(env, "INTERNAL", e.what());
  }
}
