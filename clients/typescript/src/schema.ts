/**
 * `ensureSchema`: creates the collections and every index the system needs, idempotently and
 * with the names and options of `tidemark_store::Store::ensure_schema`, so a TypeScript service
 * and the Rust tools can both run it on the same database:
 * - `documents`: unique `contentId`;
 * - `outbox`: `{status, nextAttemptAt}`, `{status, createdAt}`, `{documentId, version: -1}`,
 *   `{contentId, version: -1}`, and a TTL index on `doneAt` (the audit-trail retention).
 * A changed retention is applied to the existing TTL index with `collMod`.
 * @module
 */

import type { Db } from "mongodb";
import { COLL_DOCUMENTS, COLL_OUTBOX, COLL_SYNC_STATE } from "./contract.js";
import { errorCode } from "./txn.js";

const TTL_INDEX = "doneAt_ttl";
/** Server error code when a collection is created concurrently. */
const NAMESPACE_EXISTS = 48;

/** Creates what is missing; `retentionSeconds` is the TTL of done outbox entries. */
export async function ensureSchema(db: Db, retentionSeconds: number): Promise<void> {
  const existing = new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
  for (const name of [COLL_DOCUMENTS, COLL_OUTBOX, COLL_SYNC_STATE]) {
    if (existing.has(name)) continue;
    try {
      await db.createCollection(name);
    } catch (e) {
      if (errorCode(e) !== NAMESPACE_EXISTS) throw e;
    }
  }
  await db
    .collection(COLL_DOCUMENTS)
    .createIndex({ contentId: 1 }, { name: "contentId_unique", unique: true });
  await db.collection(COLL_OUTBOX).createIndexes([
    { key: { status: 1, nextAttemptAt: 1 }, name: "status_nextAttemptAt" },
    { key: { status: 1, createdAt: 1 }, name: "status_createdAt" },
    { key: { documentId: 1, version: -1 }, name: "documentId_version" },
    { key: { contentId: 1, version: -1 }, name: "contentId_version" },
  ]);
  await ensureTtl(db, Math.max(1, Math.floor(retentionSeconds)));
}

async function ensureTtl(db: Db, secs: number): Promise<void> {
  const outbox = db.collection(COLL_OUTBOX);
  const current = (await outbox.listIndexes().toArray()).find((ix) => ix.name === TTL_INDEX);
  if (current === undefined) {
    await outbox.createIndex({ doneAt: 1 }, { name: TTL_INDEX, expireAfterSeconds: secs });
    return;
  }
  if (current.expireAfterSeconds === secs) return;
  try {
    await db.command({ collMod: COLL_OUTBOX, index: { name: TTL_INDEX, expireAfterSeconds: secs } });
  } catch {
    // As the Rust store: a server without collMod of TTL indexes gets the index recreated.
    await outbox.dropIndex(TTL_INDEX);
    await outbox.createIndex({ doneAt: 1 }, { name: TTL_INDEX, expireAfterSeconds: secs });
  }
}
