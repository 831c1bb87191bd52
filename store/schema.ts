// The store's on-disk format. Bump SCHEMA_VERSION and append a migration for every change.
import type { Database } from 'better-sqlite3';
import { SnapshotError } from '../core/errors';
import { chunkTag, snapshotTag } from './tags';

export const FORMAT = 'uffd-snapshot';
export const SCHEMA_VERSION = 3;
/** A read-only handle opens stores from this version on without migrating (what is newer is optional). */
const READABLE_FROM = 2;

/** Blob codecs, shared with native/codec.h. */
export const CODEC = { zero: 0, raw: 1, lz4: 2 } as const;

const V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE regions (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY,
  region_id INTEGER NOT NULL REFERENCES regions(id),
  parent_id INTEGER,
  label TEXT,
  created_at INTEGER NOT NULL,
  region_size INTEGER NOT NULL,
  full INTEGER NOT NULL DEFAULT 0,
  complete INTEGER NOT NULL DEFAULT 0,
  chunks INTEGER NOT NULL DEFAULT 0,
  raw_bytes INTEGER NOT NULL DEFAULT 0,
  stored_bytes INTEGER NOT NULL DEFAULT 0,
  unique_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX snapshots_region ON snapshots(region_id, id);
CREATE INDEX snapshots_parent ON snapshots(parent_id);
-- One row per distinct chunk content: hash is xxh64 of data (the checksum and dedup key).
CREATE TABLE blobs (
  id INTEGER PRIMARY KEY,
  hash INTEGER NOT NULL,
  codec INTEGER NOT NULL,
  raw_len INTEGER NOT NULL,
  size INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX blobs_hash ON blobs(hash);
-- The chunks a snapshot stores. blob_id NULL: the chunk is all zero.
CREATE TABLE chunks (
  id INTEGER PRIMARY KEY,
  snapshot_id INTEGER NOT NULL,
  chunk INTEGER NOT NULL,
  blob_id INTEGER
);
CREATE UNIQUE INDEX chunks_snapshot ON chunks(snapshot_id, chunk);
CREATE INDEX chunks_blob ON chunks(blob_id);
-- The one process allowed to write, so snapshot ids never collide.
CREATE TABLE writer (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, token TEXT NOT NULL, since INTEGER NOT NULL);
`;

/** Migrations from version i+1 to i+2, in order. New stores are created at 1 and migrated. */
const MIGRATIONS: ((db: Database) => void)[] = [
  // 2: row tags (store/tags.ts), and each chunk row names the checksum its blob must have.
  (db) => {
    db.exec(`
      ALTER TABLE chunks ADD COLUMN hash INTEGER;
      ALTER TABLE chunks ADD COLUMN tag INTEGER;
      ALTER TABLE snapshots ADD COLUMN tag INTEGER;
      UPDATE chunks SET hash = (SELECT b.hash FROM blobs b WHERE b.id = chunks.blob_id) WHERE blob_id IS NOT NULL;
    `);
    const setChunk = db.prepare('UPDATE chunks SET tag = ? WHERE id = ?');
    for (const r of db.prepare('SELECT id, snapshot_id, chunk, hash FROM chunks').safeIntegers(true).iterate() as Iterable<{ id: bigint; snapshot_id: bigint; chunk: bigint; hash: bigint | null }>) {
      setChunk.run(chunkTag(r.snapshot_id, r.chunk, r.hash), r.id);
    }
    const setSnap = db.prepare('UPDATE snapshots SET tag = ? WHERE id = ?');
    for (const s of db.prepare('SELECT id, region_id, parent_id, region_size, full FROM snapshots').safeIntegers(true).all() as { id: bigint; region_id: bigint; parent_id: bigint | null; region_size: bigint; full: bigint }[]) {
      setSnap.run(snapshotTag(s.id, s.region_id, s.parent_id, s.region_size, s.full), s.id);
    }
  },
  // 3: the working set a lazy restore of a snapshot touched first, in order (uint32 LE chunk
  // indices): the next restore of it prefetches those chunks first. A hint only.
  (db) => {
    db.exec('CREATE TABLE IF NOT EXISTS working_sets (snapshot_id INTEGER PRIMARY KEY, chunks BLOB NOT NULL, recorded_at INTEGER NOT NULL)');
  },
];

/** Whether the store has the working_sets table (version 3; a read-only handle may open 2). */
export function hasWorkingSets(db: Database): boolean {
  return hasTable(db, 'working_sets');
}

/** SQLite page size of new stores: 64 KiB pages hold a compressed chunk in one page (see docs/store.md). */
export const STORE_PAGE_SIZE = 65536;

/**
 * Connection settings. The writer connection turns automatic checkpoints off and checkpoints
 * itself when idle (or every `checkpointBytes` of WAL), so commits never stall on a checkpoint.
 */
export function pragmas(db: Database, readonly: boolean): void {
  db.pragma('busy_timeout = 10000');
  if (!readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('wal_autocheckpoint = 0');
  }
  db.pragma('cache_size = -32768');
}

function hasTable(db: Database, name: string): boolean {
  return !!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name);
}

/** Creates or upgrades the schema; throws NOT_A_STORE / STORE_VERSION for foreign files. */
// Nothing is written before the file is known to be a store (or empty): a foreign database
// keeps its journal mode and every byte.
export function initSchema(db: Database, path: string, readonly: boolean): void {
  db.pragma('busy_timeout = 10000');
  const empty = !db.prepare('SELECT 1 FROM sqlite_master LIMIT 1').get();
  if (empty) {
    if (readonly) throw new SnapshotError('NOT_A_STORE', `${path} is an empty database, not a uffd-snapshot store`, {
      hint: 'Open it without { readonly: true } to create a store there, or pass the path of an existing store.',
    });
    // Both must precede the first table (page_size also precedes WAL mode).
    if ((db.pragma('page_count', { simple: true }) as number) === 0) db.pragma(`page_size = ${STORE_PAGE_SIZE}`);
    db.pragma('auto_vacuum = INCREMENTAL');
    pragmas(db, readonly);
    db.transaction(() => {
      db.exec(V1);
      for (const migrate of MIGRATIONS) migrate(db);
      const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
      put.run('format', FORMAT);
      put.run('schema_version', String(SCHEMA_VERSION));
      put.run('page_size', '4096');
      put.run('chunk_size', '65536');
      put.run('created_at', String(Date.now()));
    }).immediate();
    return;
  }
  const format = hasTable(db, 'meta')
    ? (db.prepare("SELECT value FROM meta WHERE key = 'format'").get() as { value: string } | undefined)?.value
    : undefined;
  if (format !== FORMAT) {
    throw new SnapshotError('NOT_A_STORE', `${path} is a SQLite database but not a uffd-snapshot store`, {
      hint: 'Pass the path of a store created by Store.open(), or a new path to create one.',
    });
  }
  const version = Number((db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined)?.value);
  if (!Number.isInteger(version) || version < 1 || version > SCHEMA_VERSION) {
    throw new SnapshotError('STORE_VERSION', `${path} has store schema version ${version}; this uffd-snapshot reads versions 1 to ${SCHEMA_VERSION}`, {
      hint: version > SCHEMA_VERSION ? 'Upgrade uffd-snapshot to open this store.' : 'The store metadata is damaged; restore the file from a backup.',
    });
  }
  pragmas(db, readonly);
  for (const table of ['regions', 'snapshots', 'blobs', 'chunks', 'writer']) {
    if (!hasTable(db, table)) {
      throw new SnapshotError('STORE_CORRUPT', `${path} is damaged: its ${table} table is missing`, {
        hint: 'Restore the file from a backup.',
      });
    }
  }
  const pageSize = (db.prepare("SELECT value FROM meta WHERE key = 'page_size'").get() as { value: string } | undefined)?.value;
  const chunkSize = (db.prepare("SELECT value FROM meta WHERE key = 'chunk_size'").get() as { value: string } | undefined)?.value;
  if (pageSize !== '4096' || chunkSize !== '65536') {
    throw new SnapshotError('STORE_VERSION', `${path} uses page size ${pageSize} and chunk size ${chunkSize}; this build supports 4096 and 65536`);
  }
  if (version < SCHEMA_VERSION) {
    if (readonly && version >= READABLE_FROM) return;
    if (readonly) {
      throw new SnapshotError('STORE_VERSION', `${path} has schema version ${version} and must be upgraded`, {
        hint: 'Open it once without { readonly: true } to migrate it.',
      });
    }
    db.transaction(() => {
      for (let v = version; v < SCHEMA_VERSION; v++) MIGRATIONS[v - 1]!(db);
      db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
    }).immediate();
  }
}
