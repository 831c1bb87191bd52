#!/usr/bin/env bash
# Run by `npm pack` / `npm publish` (prepack): stripped N-API builds of the two addons a user runs,
# for this platform, shipped in the package so that installing it compiles nothing:
#   prebuilds/<platform>-<arch>/uffd-snapshot.glibc.node              (core/native.ts)
#   native/bench/prebuilds/<platform>-<arch>/usnap-bench.glibc.node   (usnap bench)
# The testing addon is never prebuilt nor shipped. The builds run in a scratch directory that
# links to the sources, so the working tree's build/ is left alone; postpack removes the prebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 1>&2  # build chatter must not mix with `npm pack --json`
repo=$PWD
rm -rf prebuilds native/bench/prebuilds
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
ln -s "$repo/binding.gyp" "$repo/package.json" "$repo/native" "$repo/node_modules" "$scratch/"
# N-API is ABI-stable: one build against this Node's headers serves every Node >= 20.
target=$(node -p process.versions.node)
export JOBS=${JOBS:-max}  # node-gyp: make -j on every core
USNAP_ONLY=uffd_snapshot prebuildify --napi --strip --tag-libc --target "$target" --cwd "$scratch" --out "$repo"
USNAP_ONLY=usnap_bench prebuildify --napi --strip --tag-libc --target "$target" --cwd "$scratch" --out "$repo/native/bench" --name usnap-bench
ls -l prebuilds/*/ native/bench/prebuilds/*/
