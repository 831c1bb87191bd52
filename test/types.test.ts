// The published declarations, as a TypeScript user compiles against them: test/pack/consumer.ts
// with skipLibCheck: false, strict, lib ES2022 and no @types but @types/node (no
// @types/better-sqlite3 reachable). scripts/pack-test.sh does the same from the packed tarball.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { root, tmpDir } from './helpers';

const dir = tmpDir('usnap-types-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Copies the package's .d.ts files and package.json into dir/node_modules/uffd-snapshot. */
function stagePackage(): string[] {
  const pkg = path.join(dir, 'node_modules', 'uffd-snapshot');
  const copied: string[] = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.d.ts')) {
        fs.mkdirSync(path.dirname(path.join(pkg, r)), { recursive: true });
        fs.copyFileSync(path.join(root, r), path.join(pkg, r));
        copied.push(r);
      }
    }
  };
  for (const d of ['dist/core', 'dist/lib', 'dist/store']) walk(d);
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  fs.mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'));
  for (const f of ['consumer.ts', 'tsconfig.json']) fs.copyFileSync(path.join(root, 'test', 'pack', f), path.join(dir, f));
  return copied;
}

describe('the published type declarations', () => {
  it('compile in a strict consumer with skipLibCheck: false and no @types beyond @types/node', () => {
    expect(stagePackage().length).toBeGreaterThan(0);
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', dir, '--listFiles'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    // What the public entry reaches: no module that declares better-sqlite3 types.
    const reached = r.stdout.split('\n').filter((l) => l.includes('/node_modules/uffd-snapshot/'));
    expect(reached.length).toBeGreaterThan(0);
    for (const f of reached) expect(fs.readFileSync(f, 'utf8'), f).not.toMatch(/better-sqlite3|@internal/);
  });

  it('leave out every @internal member and give buffer its precise type', () => {
    const store = fs.readFileSync(path.join(root, 'dist', 'store', 'store.d.ts'), 'utf8');
    expect(store).not.toMatch(/@internal|\b_\w+\(/);
    const region = fs.readFileSync(path.join(root, 'dist', 'lib', 'region.d.ts'), 'utf8');
    expect(region).toMatch(/static alloc\(size: number, options\?: RegionOptions\): Region<ArrayBuffer>;/);
    expect(region).toMatch(/get buffer\(\): B;/);
  });
});
