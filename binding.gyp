{
  "variables": {
    "lz4_lib": "<!(node -p \"require('path').join(require('path').dirname(require.resolve('lz4/package.json')), 'deps', 'lz4', 'lib')\")",
    "napi_include": "<!(node -p \"require('node-addon-api').include_dir\")",
    "usnap_only%": "<!(node -p \"process.env.USNAP_ONLY || 'all'\")",
    "with_testing%": "<!(node -p \"+require('fs').existsSync('native/testing/testing.cc')\")"
  },
  "conditions": [
    ["usnap_only in ('all', 'uffd_snapshot')", {"targets": [
    {
      "target_name": "uffd_snapshot",
      "sources": [
        "native/addon.cc",
        "native/background.cc",
        "native/codec.cc",
        "native/fault_handler.cc",
        "native/page_source.cc",
        "native/raw_pool.cc",
        "native/region.cc",
        "native/saver.cc",
        "native/signal_faults.cc",
        "native/sink.cc",
        "native/uffd.cc",
        "native/lz4_sources.c"
      ],
      "include_dirs": ["<(napi_include)", "<(lz4_lib)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "XXH_NAMESPACE=USNAP_"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags": ["-O2", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }]}],
    ["usnap_only in ('all', 'usnap_bench')", {"targets": [
    {
      "target_name": "usnap_bench",
      "sources": [
        "native/bench/addon.cc",
        "native/bench/baselines.cc",
        "native/bench/util.cc",
        "native/lz4_sources.c"
      ],
      "include_dirs": ["<(napi_include)", "<(lz4_lib)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "XXH_NAMESPACE=USNAP_BENCH_"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags": ["-O2", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }]}],
    ["usnap_only == 'all' and with_testing == 1", {"targets": [
    {
      "target_name": "usnap_testing",
      "sources": ["native/testing/testing.cc"],
      "include_dirs": ["<(napi_include)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags": ["-O2", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }]}]
  ]
}
