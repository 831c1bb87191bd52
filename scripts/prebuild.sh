#!/usr/bin/env bash
# Run by `npm pack` / `npm publish` (prepack): stripped N-API builds of the two addons a user runs,
# for this platform, shipped in the package so that installing it compiles nothing:
#   prebuilds/<platform>-<arch>/uffd-snapshot.glibc.node               (lib/native.ts)
#   native/bench/prebuilds/<platform>-<arch>/usnap-bench.glibc.node  (usnap bench)
# The testing addon is never prebuilt nor shipped. The developer's build/ is set aside and put
# back, so packing leaves the working tree's addons as they were; postpack removes the prebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 1>&2  # build chatter must not mix with `npm pack --json`
rm -rf prebuilds native/bench/prebuilds
keep=$(mktemp -d)
if [ -d build ]; then mv build "$keep/build"; fi
put_back() {
  rm -rf build
  if [ -d "$keep/build" ]; then mv "$keep/build" build; fi
  rmdir "$keep"
}
trap put_back EXIT
# N-API is ABI-stable: one build against this Node's headers serves every Node >= 20.
target=$(node -p process.versions.node)
USNAP_ONLY=uffd_snapshot prebuildify --napi --strip --tag-libc --target "$target"
USNAP_ONLY=usnap_bench prebuildify --napi --strip --tag-libc --target "$target" --name usnap-bench --out native/bench
ls -l prebuilds/*/ native/bench/prebuilds/*/
