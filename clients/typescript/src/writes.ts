/**
 * The general transactional writes, as `tidemark_store::write`: a put of one or many documents
 * that reads the stored documents (and, for new ones, the highest outbox version of their
 * contentId) before writing, and a delete. Each is the body of one transaction (`txn.ts`), so a
 * document change and its outbox entry commit together or not at all.
 * @module
 */

import { BSON, Long, ObjectId, type ClientSession, type Collection, type Document } from "mongodb";
import { ValidationError } from "./errors.js";
import {
  asI64,
  newDocument,
  newEntry,
  Op,
  putOutcome,
  updateOf,
  type DeleteOutcome,
  type Prepared,
  type PutOutcome,
} from "./records.js";
import { DUPLICATE_KEY, errorCode, Retry } from "./txn.js";

/** The collections a write touches. */
export interface Collections {
  documents: Collection<Document>;
  outbox: Collection<Document>;
}

/** Reads with the exact BSON types (Long, Int32, Double wrappers). */
export const RAW = { promoteValues: false } as const;

/** State of one contentId while a batch is planned. */
interface Slot {
  id: ObjectId;
  /** Version of the stored document before this transaction, as stored (undefined: not stored). */
  stored: Long | undefined;
  /** The last version assigned (the stored one, or the highest of an earlier incarnation). */
  version: bigint;
  /** Index of the last occurrence in the batch (the document's final state). */
  last: number;
}

/** Stored documents of `ids`, by contentId. */
async function storedSlots(c: Collections, ids: string[], session: ClientSession) {
  const slots = new Map<string, Slot>();
  const cursor = c.documents.find(
    { contentId: { $in: ids } },
    { projection: { _id: 1, contentId: 1, version: 1 }, session, ...RAW },
  );
  for await (const d of cursor) {
    if (!(d._id instanceof ObjectId) || typeof d.contentId !== "string" || !(d.version instanceof Long)) {
      throw new ValidationError(
        "documents",
        `stored document ${BSON.EJSON.stringify(d)} does not follow the contract (_id, contentId, int64 version)`,
      );
    }
    slots.set(d.contentId, { id: d._id, stored: d.version, version: d.version.toBigInt(), last: 0 });
  }
  return slots;
}

/** Highest outbox version of each contentId in `ids` (earlier incarnations). */
async function highestVersions(c: Collections, ids: string[], session: ClientSession) {
  const max = new Map<string, bigint>();
  const cursor = c.outbox.aggregate(
    [{ $match: { contentId: { $in: ids } } }, { $group: { _id: "$contentId", v: { $max: "$version" } } }],
    { session, ...RAW },
  );
  for await (const d of cursor) {
    const v = asI64(d.v);
    if (typeof d._id === "string" && v !== undefined) max.set(d._id, v);
  }
  return max;
}

/** Writes every document of the batch and one entry per occurrence, versions in input order. */
export async function putBatch(
  c: Collections,
  items: Prepared[],
  session: ClientSession,
): Promise<PutOutcome[]> {
  const ids = [...new Set(items.map((p) => p.doc.contentId))].sort();
  const slots = await storedSlots(c, ids, session);
  const newIds = ids.filter((id) => !slots.has(id));
  if (newIds.length > 0) {
    const max = await highestVersions(c, newIds, session);
    for (const id of newIds) {
      slots.set(id, { id: new ObjectId(), stored: undefined, version: max.get(id) ?? 0n, last: 0 });
    }
  }

  const entries: Document[] = [];
  const outcomes: PutOutcome[] = [];
  items.forEach((p, i) => {
    const slot = slots.get(p.doc.contentId)!;
    slot.version += 1n;
    slot.last = i;
    const created = slot.stored === undefined;
    const entry = newEntry(slot.id, p.doc.contentId, Op.Upsert, slot.version, p.hash, created);
    outcomes.push(putOutcome(slot.id, p, slot.version, entry));
    entries.push(entry);
  });

  const now = new Date();
  const inserts: Document[] = [];
  for (const [cid, slot] of slots) {
    const p = items[slot.last]!;
    if (slot.stored === undefined) {
      inserts.push(newDocument(slot.id, p, slot.version, now));
      continue;
    }
    const r = await c.documents.updateOne(
      { _id: slot.id, version: slot.stored },
      updateOf(p, slot.version, now),
      { session },
    );
    if (r.matchedCount !== 1) throw new Retry(`document \`${cid}\` changed concurrently`);
  }
  if (inserts.length > 0) {
    try {
      await c.documents.insertMany(inserts, { session });
    } catch (e) {
      // A concurrent writer created the document first: the next attempt updates it.
      if (errorCode(e) === DUPLICATE_KEY) {
        throw new Retry(`a concurrent put created the document first: ${(e as Error).message}`);
      }
      throw e;
    }
  }
  await c.outbox.insertMany(entries, { session });
  return outcomes;
}

/** Removes the document of `contentId` and writes its `delete` entry; null when there is none. */
export async function deleteOne(
  c: Collections,
  contentId: string,
  session: ClientSession,
): Promise<DeleteOutcome | null> {
  const current = await c.documents.findOne(
    { contentId },
    { projection: { _id: 1, version: 1, contentHash: 1 }, session, ...RAW },
  );
  if (current === null) return null;
  const version = asI64(current.version);
  if (
    !(current._id instanceof ObjectId) ||
    version === undefined ||
    typeof current.contentHash !== "string"
  ) {
    throw new ValidationError(
      "documents",
      `stored document ${BSON.EJSON.stringify(current)} does not follow the contract (_id, int64 version, contentHash)`,
    );
  }
  const r = await c.documents.deleteOne({ _id: current._id, version: current.version }, { session });
  if (r.deletedCount !== 1) throw new Retry(`document \`${contentId}\` changed concurrently`);
  const entry = newEntry(current._id, contentId, Op.Delete, version + 1n, current.contentHash);
  await c.outbox.insertOne(entry, { session });
  return { documentId: current._id, version: Number(version + 1n), outboxId: entry._id as ObjectId };
}
