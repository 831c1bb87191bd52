#!/usr/bin/env bash
# The package as a user gets it (.ci/run, after npm test): npm pack; install the tarball into a
# fresh project with no C++ compiler, make or python reachable for our install step; require and
# import it; npx usnap probe; a snapshot/restore round trip, byte-exact, also through the CLI;
# usnap bench --quick --out without the optional chart libraries; type-check a TypeScript
# consumer (skipLibCheck: false, no @types but @types/node) against the shipped types; and
# check what the tarball holds; then the fallback, a source build on the user's machine (no
# testing addon). Prints the install's size, package count and times.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
work=$(mktemp -d /tmp/usnap-pack-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== pack-test: %s (at %d s)\n' "$*" $((SECONDS - start)); }
fail() { echo "pack-test: FAILED: $*" >&2; exit 1; }
lockver() { node -p "require('$repo/package-lock.json').packages['node_modules/$1'].version"; }

step "npm pack (prepack builds the prebuilds)"
t=$SECONDS
npm pack --json --pack-destination "$work" > "$work/pack.json"
pack_s=$((SECONDS - t))
tarball="$work/$(node -p "require('$work/pack.json')[0].filename")"

step "what the tarball holds"
node - "$work/pack.json" <<'JS'
const [entry] = require(process.argv[2]);
const files = entry.files.map((f) => f.path);
const bad = files.filter((f) =>
  /^(test|scripts|examples|docs|\.ci)\//.test(f) ||          // tests, dev scripts, docs sources
  /^dist\/(test|scripts|examples)\//.test(f) ||
  /^native\/testing\//.test(f) ||                              // the testing addon's source
  /(^|\/)build\//.test(f) ||                                   // build leftovers
  /\.(map|o|a|mk|gypi|tgz|usnap)$/.test(f) || /(^|\/)Makefile$/.test(f) ||
  (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)),                    // sources (declarations excepted)
);
if (bad.length) throw new Error('the tarball holds files it must not:\n  ' + bad.join('\n  '));
const need = ['package.json', 'README.md', 'binding.gyp', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/cli/main.js',
  'dist/store/writer-worker.js', 'dist/store/reader-worker.js', 'native/addon.cc',
  'prebuilds/linux-x64/uffd-snapshot.glibc.node', 'native/bench/prebuilds/linux-x64/usnap-bench.glibc.node'];
const missing = need.filter((f) => !files.includes(f));
if (missing.length) throw new Error('the tarball lacks: ' + missing.join(', '));
console.log(`${entry.filename}: ${files.length} files, ${(entry.size / 1024).toFixed(0)} KiB packed, ${(entry.unpackedSize / 1024).toFixed(0)} KiB unpacked; no tests, maps or build leftovers`);
JS

app="$work/app"
mkdir -p "$app"
cp test/pack/consumer.ts test/pack/tsconfig.json test/pack/roundtrip.cjs test/pack/import.mjs "$app/"
cat > "$app/package.json" <<JSON
{ "name": "pack-test-app", "version": "1.0.0", "private": true,
  "allowScripts": { "better-sqlite3": true, "lz4": true, "uffd-snapshot": true } }
JSON
cd "$app"

step "better-sqlite3 and lz4 (their addons built beforehand) and the type checker"
# better-sqlite3 and lz4 build themselves from source (better-sqlite3 cannot download its prebuilt
# binary without internet access): those builds are theirs, not ours, and `npm ci` already made them
# for the same versions and Node, so they are reused. Without them, they are built here.
t=$SECONDS
for dep in better-sqlite3 lz4; do
  built="$repo/node_modules/$dep/build/Release"
  if [ -d "$built" ]; then
    npm install --no-audit --no-fund --ignore-scripts "$dep@$(lockver "$dep")" >> "$work/deps.log" 2>&1 || { cat "$work/deps.log"; fail "installing $dep"; }
    mkdir -p "node_modules/$dep/build"
    cp -r "$built" "node_modules/$dep/build/"
  else
    npm install --no-audit --no-fund "$dep@$(lockver "$dep")" >> "$work/deps.log" 2>&1 || { cat "$work/deps.log"; fail "installing $dep"; }
  fi
done
node -e "require('better-sqlite3')(':memory:').close(); require('lz4')"
npm install --no-audit --no-fund --save-dev "typescript@$(lockver typescript)" "@types/node@$(lockver @types/node)" >> "$work/deps.log" 2>&1 || { cat "$work/deps.log"; fail "installing typescript"; }
deps_s=$((SECONDS - t))

step "npm install the tarball with no compiler, make or python reachable"
# Shims first on PATH: anything our install step tried to compile with would land in calls.log.
mkdir "$work/nocc"
for tool in cc gcc g++ c++ clang clang++ make gmake python python3 node-gyp; do
  printf '#!/bin/sh\necho "%s $*" >> "%s/calls.log"\nexit 127\n' "$tool" "$work" > "$work/nocc/$tool"
  chmod +x "$work/nocc/$tool"
done
t=$SECONDS
PATH="$work/nocc:$PATH" CC=false CXX=false \
  npm install --no-audit --no-fund --foreground-scripts "$tarball" > "$work/install.log" 2>&1 || { cat "$work/install.log"; fail "npm install of the tarball"; }
install_s=$((SECONDS - t))
cat "$work/install.log"
grep -q '^> uffd-snapshot@[^ ]* install$' "$work/install.log" || fail "our install script did not run (is it allowed?)"
[ ! -s "$work/calls.log" ] || { cat "$work/calls.log"; fail "our install step called a compiler, make or python"; }
[ ! -e node_modules/uffd-snapshot/build ] || fail "the installed package has a build/ folder"
[ ! -e node_modules/uffd-snapshot/native/testing ] || fail "the testing addon's source was installed"
for p in vega vega-lite d3-scale d3-array; do
  [ ! -e "node_modules/$p" ] || fail "a default install brought in $p"
done
if ls node_modules | grep -qE '^(vega|d3)'; then fail "a default install brought in vega or d3 packages: $(ls node_modules | grep -E '^(vega|d3)' | tr '\n' ' ')"; fi
# Size and count of what the package brings (its dependencies included, the type checker not).
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | sort -u > "$work/prod.txt"
pkgs=$(wc -l < "$work/prod.txt")
# A package's folder holds its nested node_modules: sum the top-level folders only.
grep -v '/node_modules/.*/node_modules/' "$work/prod.txt" | xargs du -s -B1 | sort -rn > "$work/sizes.txt"
bytes=$(awk '{ s += $1 } END { print s }' "$work/sizes.txt")
sqlite_bytes=$(awk '$2 ~ /\/better-sqlite3$/ { print $1 }' "$work/sizes.txt")

step "require (probe, prebuild loaded, snapshot/restore round trip)"
node roundtrip.cjs "$work/rt.usnap"

step "import"
node import.mjs

step "npx usnap"
npx usnap --version
npx usnap probe
npx usnap list "$work/rt.usnap"
npx usnap verify "$work/rt.usnap"
npx usnap restore "$work/rt.usnap" 2 -o "$work/image.bin" --verify
[ "$(sha256sum < "$work/image.bin" | cut -d' ' -f1)" = "$(cat "$work/rt.usnap.sha256")" ] || fail "usnap restore's image differs from the region's bytes"
echo "usnap restore: image byte-exact"

step "usnap bench --quick --size 4M --out, without vega (the bench addon's prebuild)"
t=$SECONDS
npx usnap bench --quick --size 4M --out "$work/bench" > "$work/bench.txt" 2> "$work/bench.err" || { cat "$work/bench.err"; fail "usnap bench"; }
bench_s=$((SECONDS - t))
[ -s "$work/bench/report.json" ] && [ -s "$work/bench/report.md" ] || fail "usnap bench --out wrote no report"
[ ! -e "$work/bench/pause.svg" ] || fail "pause.svg without vega?"
grep -q 'npm install vega vega-lite' "$work/bench.err" || { cat "$work/bench.err"; fail "usnap bench did not say how to get the chart"; }
grep 'pause chart' "$work/bench.err"

step "type-check a TypeScript consumer against the shipped types (skipLibCheck: false)"
[ ! -e node_modules/@types/better-sqlite3 ] || fail "@types/better-sqlite3 is installed: the check would prove nothing"
ls node_modules/@types
npx tsc -p tsconfig.json
echo "tsc: consumer.ts compiles"

step "the fallback: npm rebuild uffd-snapshot --build-from-source (compilers reachable again)"
t=$SECONDS
JOBS=max npm rebuild uffd-snapshot --build-from-source --foreground-scripts > "$work/rebuild.log" 2>&1 || { cat "$work/rebuild.log"; fail "the source build"; }
rebuild_s=$((SECONDS - t))
ls node_modules/uffd-snapshot/build/Release/*.node
[ -f node_modules/uffd-snapshot/build/Release/uffd_snapshot.node ] && [ -f node_modules/uffd-snapshot/build/Release/usnap_bench.node ] || fail "the source build made no addons"
[ ! -e node_modules/uffd-snapshot/build/Release/usnap_testing.node ] || fail "a user's source build built the testing addon"
node -e "
const { Region } = require('uffd-snapshot');
const r = Region.alloc(1 << 20); new Uint8Array(r.buffer).fill(5); const s = r.snapshot();
new Uint8Array(r.buffer).fill(6); r.restore(s);
if (!new Uint8Array(r.buffer).every((b) => b === 5)) throw new Error('not byte-exact');
r.close();
if (!require('fs').readFileSync('/proc/self/maps', 'utf8').includes('/build/Release/uffd_snapshot.node')) throw new Error('not the source build');
console.log('source build: loads from build/Release, snapshot/restore byte-exact');"
npx usnap bench --quick --size 4M --json > /dev/null || fail "usnap bench on the source build"

printf '\n== pack-test: passed in %d s\n' $((SECONDS - start))
printf 'tarball install: %d s with no compiler (better-sqlite3 and typescript before it: %d s); npm pack: %d s; usnap bench --quick: %d s; source-build fallback: %d s\n' "$install_s" "$deps_s" "$pack_s" "$bench_s" "$rebuild_s"
awk -v n="$pkgs" -v b="$bytes" -v s="$sqlite_bytes" 'BEGIN { printf "a default install: %d packages, %.1f MB on disk (better-sqlite3 built from source: %.1f MB of it)\n", n, b / 1e6, s / 1e6 }'
head -5 "$work/sizes.txt" | sed "s|$app/node_modules/||"
