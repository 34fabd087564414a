/**
 * The single-document put in three round trips, as `tidemark_store::put_one`: read the latest
 * outbox entry of the contentId (one index seek on `{contentId, version}`), write the document
 * and its entry together (one client `bulkWrite` on MongoDB 8.0+, two writes before), commit.
 *
 * The latest entry says what the stored document should be: after an `upsert` entry of
 * version v the document exists with `_id = documentId` at version v; after a `delete` entry
 * (or none) there is no document and the next version is v + 1. The write checks that guess
 * (the update is filtered on `_id`, contentId and version; the insert meets the unique
 * `contentId` index). When the guess is wrong (a document written around the outbox, entries
 * expired by the retention TTL, a concurrent writer), the transaction is retried on the general
 * path of `writes.ts`, which reads the document itself.
 * @module
 */

import {
  Long,
  MongoClientBulkWriteError,
  ObjectId,
  type AnyClientBulkWriteModel,
  type ClientSession,
  type Document,
  type MongoClient,
} from "mongodb";
import {
  asI64,
  newDocument,
  newEntry,
  Op,
  putOutcome,
  updateOf,
  type Prepared,
  type PutOutcome,
} from "./records.js";
import { DUPLICATE_KEY, errorCode, Retry } from "./txn.js";
import { putBatch, RAW, type Collections } from "./writes.js";

/** Whether the document and its entry go in one client `bulkWrite` command. */
export type WriteMode = "bulk" | "separate";

/** Server error code of a command the server does not have. */
const COMMAND_NOT_FOUND = 59;

type DocWrite =
  { kind: "insert"; document: Document } | { kind: "update"; filter: Document; update: Document };

/** Everything one put needs; `careful` is set once the outbox did not describe the document. */
export interface PutOneContext extends Collections {
  client: MongoClient;
  database: string;
  mode: WriteMode;
  /** Called when the server turns out not to take `bulkWrite` (the writer then writes separately). */
  noBulk: () => void;
}

/** A transaction body for one document; keep it across attempts (it remembers `careful`). */
export function putOneBody(ctx: PutOneContext, p: Prepared) {
  let careful = false;
  const readInstead = (why: string) => {
    careful = true;
    return new Retry(why);
  };
  return async (session: ClientSession): Promise<PutOutcome[]> => {
    if (careful) return putBatch(ctx, [p], session);
    const cid = p.doc.contentId;
    const latest = await ctx.outbox.findOne(
      { contentId: cid },
      { sort: { version: -1 }, projection: { _id: 0, documentId: 1, op: 1, version: 1 }, session, ...RAW },
    );
    let id = new ObjectId();
    let stored: Long | undefined;
    let base = 0n;
    if (latest !== null) {
      const v = asI64(latest.version);
      if (!(latest.documentId instanceof ObjectId) || typeof latest.op !== "string" || v === undefined) {
        throw readInstead(`latest outbox entry of \`${cid}\` does not follow the contract`);
      }
      base = v;
      if (latest.op === Op.Upsert) {
        id = latest.documentId;
        stored = Long.fromBigInt(v);
      }
    }
    const version = base + 1n;
    const entry = newEntry(id, cid, Op.Upsert, version, p.hash, stored === undefined);
    const now = new Date();
    const write: DocWrite =
      stored === undefined
        ? { kind: "insert", document: newDocument(id, p, version, now) }
        : {
            kind: "update",
            filter: { _id: id, contentId: cid, version: stored },
            update: updateOf(p, version, now),
          };
    const why = await writeBoth(ctx, session, write, entry);
    if (why !== undefined) throw readInstead(`\`${cid}\`: ${why}`);
    return [putOutcome(id, p, version, entry)];
  };
}

const NOT_AT_VERSION = "the stored document is not at the outbox's latest version";
const UNSEEN = "a stored document the outbox did not show";

/** Writes the document and the entry; returns why the guess was wrong, or undefined. */
async function writeBoth(
  ctx: PutOneContext,
  session: ClientSession,
  write: DocWrite,
  entry: Document,
): Promise<string | undefined> {
  if (ctx.mode === "bulk") return writeBulk(ctx, session, write, entry);
  if (write.kind === "insert") {
    try {
      await ctx.documents.insertOne(write.document, { session });
    } catch (e) {
      if (errorCode(e) === DUPLICATE_KEY) return `${UNSEEN}: ${(e as Error).message}`;
      throw e;
    }
  } else {
    const r = await ctx.documents.updateOne(write.filter, write.update, { session });
    if (r.matchedCount !== 1) return NOT_AT_VERSION;
  }
  await ctx.outbox.insertOne(entry, { session });
  return undefined;
}

async function writeBulk(
  ctx: PutOneContext,
  session: ClientSession,
  write: DocWrite,
  entry: Document,
): Promise<string | undefined> {
  const ns = (coll: string) => `${ctx.database}.${coll}`;
  const documents = ns(ctx.documents.collectionName);
  const first: AnyClientBulkWriteModel<Document> =
    write.kind === "insert"
      ? { name: "insertOne", namespace: documents, document: write.document }
      : { name: "updateOne", namespace: documents, filter: write.filter, update: write.update };
  const second: AnyClientBulkWriteModel<Document> = {
    name: "insertOne",
    namespace: ns(ctx.outbox.collectionName),
    document: entry,
  };
  try {
    const r = await ctx.client.bulkWrite([first, second], { session, ordered: true });
    if (write.kind === "update" && r.matchedCount !== 1) return NOT_AT_VERSION;
    return undefined;
  } catch (e) {
    // Only a duplicate on the document (write 0) says the guess was wrong.
    if (e instanceof MongoClientBulkWriteError && e.writeErrors.get(0)?.code === DUPLICATE_KEY) {
      return `${UNSEEN}: ${e.writeErrors.get(0)?.message}`;
    }
    if (errorCode(e) === COMMAND_NOT_FOUND) {
      ctx.mode = "separate";
      ctx.noBulk();
      throw new Retry("the server has no bulkWrite command; writing separately");
    }
    throw e;
  }
}
