/**
 * The shapes this writer stores, built field by field in the order and with the BSON types of
 * the Rust store (`tidemark_core::DocumentRecord`, `OutboxEntry::new_pending`): int64 versions,
 * int32 `attempts` and `schemaVersion`, Dates, ObjectIds. Also the outcome types of the calls.
 * @module
 */

import { Int32, Long, ObjectId, type Document } from "mongodb";
import { Op, SCHEMA_VERSION, STATUS_PENDING } from "./contract.js";
import type { NewDocument } from "./validate.js";

/** Result of a committed put. */
export interface PutOutcome {
  /** The document's `_id`, which is also its vector id in Chroma (as hex). */
  documentId: ObjectId;
  contentId: string;
  /** The version this put produced (1, 2, ... per contentId, growing across delete and re-put). */
  version: number;
  /** The `_id` of the outbox entry; the vector is indexed when the worker marks it done. */
  outboxId: ObjectId;
  contentHash: string;
}

/** Result of a committed delete. */
export interface DeleteOutcome {
  documentId: ObjectId;
  /** The version of the `delete` entry: the deleted document's version + 1. */
  version: number;
  outboxId: ObjectId;
}

/** A validated document with its BSON metadata and hash, computed once outside the retries. */
export interface Prepared {
  doc: NewDocument;
  metadata: Document;
  hash: string;
}

/**
 * A new pending outbox entry, due now. `created`: this transaction inserts the document row,
 * so the entry says `newDocument: true` (the worker then skips reading stored vectors).
 */
export function newEntry(
  documentId: ObjectId,
  contentId: string,
  op: Op,
  version: bigint,
  contentHash: string,
  created = false,
): Document {
  const now = new Date();
  const entry: Document = {
    _id: new ObjectId(),
    schemaVersion: new Int32(SCHEMA_VERSION),
    documentId,
    contentId,
    op,
    version: Long.fromBigInt(version),
    contentHash,
    status: STATUS_PENDING,
    attempts: new Int32(0),
    nextAttemptAt: now,
    createdAt: now,
  };
  if (created) entry.newDocument = true;
  return entry;
}

/** A new `documents` row. */
export function newDocument(id: ObjectId, p: Prepared, version: bigint, now: Date): Document {
  return {
    _id: id,
    contentId: p.doc.contentId,
    type: p.doc.type,
    content: p.doc.content,
    metadata: p.metadata,
    timestamp: now,
    version: Long.fromBigInt(version),
    contentHash: p.hash,
  };
}

/** The `$set` of an update in place (same `_id`). */
export function updateOf(p: Prepared, version: bigint, now: Date): Document {
  return {
    $set: {
      type: p.doc.type,
      content: p.doc.content,
      metadata: p.metadata,
      timestamp: now,
      version: Long.fromBigInt(version),
      contentHash: p.hash,
    },
  };
}

/**
 * An integer BSON value read with `promoteValues: false` as a bigint: int64 or int32 (as the
 * Rust `as_i64`), else undefined.
 */
export function asI64(v: unknown): bigint | undefined {
  if (v instanceof Long) return v.toBigInt();
  if (v instanceof Int32) return BigInt(v.value);
  return undefined;
}

/** The outcome of a put of `p` at `version`, entry `entry`. */
export function putOutcome(id: ObjectId, p: Prepared, version: bigint, entry: Document): PutOutcome {
  return {
    documentId: id,
    contentId: p.doc.contentId,
    version: Number(version),
    outboxId: entry._id as ObjectId,
    contentHash: p.hash,
  };
}

export { Op };
