// The writer against the real replica set (MONGODB_URI): versions across update, delete and
// re-put, the stored shapes with their exact BSON types and field order, putMany, validation
// that writes nothing, racing first inserts, documents written around the outbox, ensureSchema.
// Every scenario runs in both write modes (one client bulkWrite, and two separate writes).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Double, Int32, Long, MongoClient, ObjectId } from "mongodb";
import { BatchFailedError, contentHash, INDEX_NAMES, TidemarkWriter, ValidationError } from "../src/index.js";
import { freshWriter, mongodbUri, raw } from "./helpers.js";

let client: MongoClient;
before(async () => {
  client = await new MongoClient(mongodbUri()).connect();
});
after(async () => {
  await client.close();
});

const DOC_KEYS = ["_id", "contentId", "type", "content", "metadata", "timestamp", "version", "contentHash"];
const ENTRY_KEYS = [
  "_id",
  "schemaVersion",
  "documentId",
  "contentId",
  "op",
  "version",
  "contentHash",
  "status",
  "attempts",
  "nextAttemptAt",
  "createdAt",
];

for (const separateWrites of [false, true]) {
  describe(separateWrites ? "separate writes" : "bulkWrite", () => {
    const open = (prefix: string, opts = {}) => freshWriter(client, prefix, { separateWrites, ...opts });

    test("put, update, delete and re-put: versions only grow, a fresh _id per incarnation", async () => {
      const w = await open("versions");
      const first = await w.put({
        contentId: "faq-1",
        type: "faq",
        content: "one",
        metadata: { lang: "en" },
      });
      assert.equal(first.version, 1);
      assert.equal(first.contentHash, contentHash("one"));
      const second = await w.put({ contentId: "faq-1", type: "faq", content: "two" });
      assert.equal(second.version, 2);
      assert.ok(second.documentId.equals(first.documentId), "an update keeps the _id");
      const del = await w.delete("faq-1");
      assert.ok(del);
      assert.equal(del.version, 3);
      assert.ok(del.documentId.equals(first.documentId));
      assert.equal(await w.documents.countDocuments(), 0);
      assert.equal(await w.delete("faq-1"), null, "deleting what is gone writes nothing");
      const again = await w.put({ contentId: "faq-1", type: "faq", content: "three" });
      assert.equal(again.version, 4, "versions continue after a delete");
      assert.ok(!again.documentId.equals(first.documentId), "a new incarnation gets a fresh _id");
      const third = await w.put({ contentId: "faq-1", type: "faq", content: "four" });
      assert.equal(third.version, 5);

      const entries = await raw(w, "outbox");
      assert.deepEqual(
        entries.map((e) => [e.op, (e.version as Long).toNumber(), (e.documentId as ObjectId).toHexString()]),
        [
          ["upsert", 1, first.documentId.toHexString()],
          ["upsert", 2, first.documentId.toHexString()],
          ["delete", 3, first.documentId.toHexString()],
          ["upsert", 4, again.documentId.toHexString()],
          ["upsert", 5, again.documentId.toHexString()],
        ],
      );
      assert.equal(entries[2]!.contentHash, contentHash("two"), "a delete entry carries the deleted hash");
      assert.ok((entries[4]!._id as ObjectId).equals(third.outboxId));
      const [doc] = await raw(w, "documents");
      assert.equal(doc!.content, "four");
      assert.equal((doc!.version as Long).toNumber(), 5);
      await w.db.dropDatabase();
    });

    test("stored shapes: field names, order and BSON types of the Rust writer", async () => {
      const w = await open("shapes");
      const before = Date.now();
      const out = await w.put({
        contentId: "s-1",
        type: "note",
        content: "héllo",
        metadata: { n: 1, f: 0.5, s: "x", b: false, z: null, nested: { k: [1, "a"] } },
      });
      const [doc] = await raw(w, "documents");
      assert.deepEqual(Object.keys(doc!), DOC_KEYS);
      assert.ok(doc!._id instanceof ObjectId && doc!._id.equals(out.documentId));
      assert.ok(doc!.version instanceof Long && doc!.version.toNumber() === 1, "version is int64");
      assert.ok(doc!.timestamp instanceof Date && doc!.timestamp.getTime() >= before - 1000);
      assert.equal(doc!.contentHash, contentHash("héllo"));
      const m = doc!.metadata;
      assert.ok(m.n instanceof Long, "metadata integers are int64, as serde_json -> BSON");
      assert.ok(m.f instanceof Double);
      assert.deepEqual([m.s, m.b, m.z], ["x", false, null]);
      assert.ok(m.nested.k[0] instanceof Long);

      const [entry] = await raw(w, "outbox");
      assert.deepEqual(Object.keys(entry!), [...ENTRY_KEYS, "newDocument"], "the put created it");
      assert.equal(entry!.newDocument, true);
      assert.ok(entry!.schemaVersion instanceof Int32 && entry!.schemaVersion.value === 1);
      assert.ok(entry!.attempts instanceof Int32 && entry!.attempts.value === 0);
      assert.ok(entry!.version instanceof Long && entry!.version.toNumber() === 1);
      assert.ok(entry!.nextAttemptAt instanceof Date && entry!.createdAt instanceof Date);
      assert.equal(entry!.nextAttemptAt.getTime(), entry!.createdAt.getTime());
      assert.deepEqual([entry!.op, entry!.status, entry!.contentId], ["upsert", "pending", "s-1"]);
      assert.ok((entry!.documentId as ObjectId).equals(out.documentId));

      await w.put({ contentId: "s-1", type: "note", content: "again" });
      const second = (await raw(w, "outbox"))[1]!;
      assert.deepEqual(Object.keys(second), ENTRY_KEYS, "an update's entry has no newDocument");
      const [updated] = await raw(w, "documents");
      assert.deepEqual(Object.keys(updated!), DOC_KEYS, "an update keeps the field order");
      assert.deepEqual(updated!.metadata, {}, "metadata left out is {}");
      await w.delete("s-1");
      const del = (await raw(w, "outbox"))[2]!;
      assert.deepEqual(Object.keys(del), ENTRY_KEYS);
      assert.equal(del.op, "delete");
      await w.db.dropDatabase();
    });

    test("putMany: one entry per occurrence, the document ends as the last one", async () => {
      const w = await open("many");
      await w.put({ contentId: "m-0", type: "t", content: "existing" });
      const out = await w.putMany([
        { contentId: "m-1", type: "t", content: "a" },
        { contentId: "m-0", type: "t", content: "b" },
        { contentId: "m-1", type: "t", content: "c" },
      ]);
      assert.deepEqual(
        out.map((o) => [o.contentId, o.version]),
        [
          ["m-1", 1],
          ["m-0", 2],
          ["m-1", 2],
        ],
      );
      assert.ok(out[0]!.documentId.equals(out[2]!.documentId));
      const docs = await raw(w, "documents");
      assert.deepEqual(docs.map((d) => [d.contentId, d.content, (d.version as Long).toNumber()]).sort(), [
        ["m-0", "b", 2],
        ["m-1", "c", 2],
      ]);
      assert.equal((await raw(w, "outbox")).length, 4);
      assert.deepEqual(await w.putMany([]), []);
      await w.db.dropDatabase();
    });

    test("putMany splits at limits.maxBatchBytes; a failed later transaction reports what committed", async () => {
      // Each document is about 226 bytes: three fit in 700, so the chunks are [0-2], [3-5], [6].
      const w = await open("chunks", { limits: { maxBatchBytes: 700 } });
      const docs = Array.from({ length: 7 }, (_, i) => ({
        contentId: `c-${i}`,
        type: "t",
        content: "x".repeat(20),
      }));
      const out = await w.putMany(docs);
      assert.deepEqual(
        out.map((o) => [o.contentId, o.version]),
        docs.map((d) => [d.contentId, 1]),
      );
      assert.equal(await w.documents.countDocuments(), 7);

      // The second chunk meets a stored document that breaks the contract (an int32 version).
      const w2 = await open("chunkfail", { limits: { maxBatchBytes: 700 } });
      await w2.documents.insertOne({ contentId: "c-4", version: new Int32(1) });
      const err = await w2.putMany(docs).then(
        () => assert.fail("expected a failure"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof BatchFailedError, `${err}`);
      assert.deepEqual([err.committed, err.total], [3, 7]);
      assert.ok(err.cause instanceof ValidationError && err.cause.field === "documents", `${err.cause}`);
      assert.match(
        err.message,
        /^3 of 7 documents were committed before the failure: invalid `documents`: stored/,
      );
      const ids = (await raw(w2, "documents")).map((d) => d.contentId).sort();
      assert.deepEqual(ids, ["c-0", "c-1", "c-2", "c-4"], "the failed chunk wrote nothing");
      assert.equal(await w2.outbox.countDocuments(), 3);
      await w.db.dropDatabase();
      await w2.db.dropDatabase();
    });

    test("bad input is rejected before anything is written", async () => {
      const w = await open("invalid");
      await assert.rejects(w.put({ contentId: "", type: "t", content: "c" }), {
        name: "ValidationError",
        message: "invalid `contentId`: must not be empty",
      });
      await assert.rejects(
        w.put({ contentId: "a", type: "t", content: "c", metadata: { "a.b": 1 } }),
        ValidationError,
      );
      await assert.rejects(
        w.putMany([
          { contentId: "ok", type: "t", content: "fine" },
          { contentId: "bad", type: "t", content: "x".repeat(w.limits.maxContentBytes + 1) },
        ]),
        (e: unknown) =>
          e instanceof ValidationError &&
          e.field === "[1].content" &&
          e.message ===
            `invalid \`[1].content\`: is ${w.limits.maxContentBytes + 1} bytes, over the limit of ${w.limits.maxContentBytes} bytes (limits.max_content_bytes)`,
      );
      await assert.rejects(w.delete("x".repeat(513)), /invalid `contentId`: is 513 bytes/);
      assert.equal(await w.documents.countDocuments(), 0);
      assert.equal(await w.outbox.countDocuments(), 0);
      await w.db.dropDatabase();
    });

    test("concurrent first puts of one contentId: one document, versions 1..n", async () => {
      const w = await open("race");
      const other = await new MongoClient(mongodbUri()).connect();
      const w2 = new TidemarkWriter(other, { database: w.db.databaseName, separateWrites });
      const n = 8;
      const outs = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          (i % 2 ? w2 : w).put({ contentId: "race", type: "t", content: `v${i}` }),
        ),
      );
      assert.deepEqual(
        outs.map((o) => o.version).sort((a, b) => a - b),
        Array.from({ length: n }, (_, i) => i + 1),
      );
      assert.equal(new Set(outs.map((o) => o.documentId.toHexString())).size, 1, "one incarnation");
      assert.ok(w.transactionRetries + w2.transactionRetries > 0, "the losers retried");
      const docs = await raw(w, "documents");
      assert.equal(docs.length, 1);
      const last = outs.find((o) => o.version === n)!;
      assert.equal(docs[0]!.contentHash, last.contentHash, "the document is the highest version's");
      await other.close();
      await w.db.dropDatabase();
    });

    test("a document written around the outbox is updated, not duplicated", async () => {
      const w = await open("around");
      const id = new ObjectId();
      await w.documents.insertOne({
        _id: id,
        contentId: "ar-1",
        type: "t",
        content: "legacy",
        metadata: {},
        timestamp: new Date(),
        version: Long.fromNumber(5),
        contentHash: contentHash("legacy"),
      });
      const out = await w.put({ contentId: "ar-1", type: "t", content: "new" });
      assert.equal(out.version, 6);
      assert.ok(out.documentId.equals(id));
      // And an entry whose document vanished around the outbox: a new incarnation at 7.
      await w.documents.deleteOne({ _id: id });
      const next = await w.put({ contentId: "ar-1", type: "t", content: "newer" });
      assert.equal(next.version, 7);
      assert.ok(!next.documentId.equals(id));
      assert.equal(await w.documents.countDocuments(), 1);
      await w.db.dropDatabase();
    });
  });
}

test("ensureSchema creates the Rust store's indexes, is idempotent and applies a new retention", async () => {
  const w = await freshWriter(client, "schema", { retentionSeconds: 3600 });
  await w.ensureSchema();
  const names = async (coll: string) =>
    (await w.db.collection(coll).listIndexes().toArray()).map((ix) => ix.name as string);
  for (const [coll, name] of INDEX_NAMES) assert.ok((await names(coll)).includes(name), `${coll}.${name}`);
  const ttl = async () => (await w.outbox.listIndexes().toArray()).find((ix) => ix.name === "doneAt_ttl")!;
  assert.equal((await ttl()).expireAfterSeconds, 3600);
  const unique = (await w.documents.listIndexes().toArray()).find((ix) => ix.name === "contentId_unique")!;
  assert.equal(unique.unique, true);
  await new TidemarkWriter(client, { database: w.db.databaseName, retentionSeconds: 7200 }).ensureSchema();
  assert.equal((await ttl()).expireAfterSeconds, 7200);
  await w.db.dropDatabase();
});

test("BatchFailedError says how many documents were committed", () => {
  const e = new BatchFailedError(2, 5, new Error("boom"));
  assert.equal(e.message, "2 of 5 documents were committed before the failure: boom");
  assert.equal((e.cause as Error).message, "boom");
});
