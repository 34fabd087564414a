// Transaction retries against a private SecantusDB with fail points (`failCommand` as mongod's):
// a TransientTransactionError retries the whole transaction, an UnknownTransactionCommitResult
// only the commit (the write happens once), the attempts are bounded and nothing is written when
// they run out. Also the pure pieces: the backoff and the error classification.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MongoClient, MongoClientBulkWriteError, MongoServerError } from "mongodb";
import { DEFAULT_RETRY_POLICY, RetriesExhaustedError } from "../src/index.js";
import { backoffMs, errorCode, isTransient } from "../src/txn.js";
import { FailPointServer, freshWriter } from "./helpers.js";

const APP = "tidemark-ts-retries";
let server: FailPointServer;
let client: MongoClient;
before(async () => {
  server = await FailPointServer.start(APP);
  client = await new MongoClient(server.uri).connect();
});
after(async () => {
  await client?.close();
  server?.stop();
});

async function failPoint(mode: unknown, data: Record<string, unknown>) {
  await client
    .db("admin")
    .command({ configureFailPoint: "failCommand", mode, data: { appName: APP, ...data } });
}

for (const separateWrites of [false, true]) {
  const writes = separateWrites ? ["insert"] : ["bulkWrite"];
  describe(separateWrites ? "separate writes" : "bulkWrite", () => {
    test("a transient error retries the whole transaction", async () => {
      const w = await freshWriter(client, "transient", { separateWrites });
      await failPoint(
        { times: 2 },
        { failCommands: writes, errorCode: 112, errorLabels: ["TransientTransactionError"] },
      );
      const out = await w.put({ contentId: "a", type: "t", content: "x" });
      assert.equal(out.version, 1);
      assert.equal(w.transactionRetries, 2);
      assert.equal(await w.outbox.countDocuments(), 1);
      await w.db.dropDatabase();
    });

    test("attempts are bounded; nothing is written when they run out", async () => {
      const w = await freshWriter(client, "exhaust", { separateWrites, retry: { maxAttempts: 3 } });
      await failPoint("alwaysOn", {
        failCommands: writes,
        errorCode: 112,
        errorLabels: ["TransientTransactionError"],
      });
      try {
        await assert.rejects(
          w.put({ contentId: "a", type: "t", content: "x" }),
          (e: unknown) =>
            e instanceof RetriesExhaustedError &&
            e.attempts === 3 &&
            /^put: gave up after 3 attempts, nothing was written: /.test(e.message),
        );
      } finally {
        await failPoint("off", {});
      }
      assert.equal(w.transactionRetries, 2);
      assert.equal(await w.documents.countDocuments(), 0);
      assert.equal(await w.outbox.countDocuments(), 0);
      await w.db.dropDatabase();
    });
  });
}

test("an unknown commit result retries only the commit: the write happens once", async () => {
  const w = await freshWriter(client, "commit");
  await w.put({ contentId: "a", type: "t", content: "one" });
  // MaxTimeMSExpired (50) is not one the driver retries by itself: both failures reach the
  // writer's own commit loop.
  await failPoint(
    { times: 2 },
    { failCommands: ["commitTransaction"], errorCode: 50, errorLabels: ["UnknownTransactionCommitResult"] },
  );
  const out = await w.put({ contentId: "a", type: "t", content: "two" });
  assert.equal(out.version, 2);
  assert.equal(w.transactionRetries, 0, "the transaction itself ran once");
  assert.equal(await w.outbox.countDocuments(), 2);
  await w.delete("a");
  assert.equal(await w.outbox.countDocuments(), 3);
  await w.db.dropDatabase();
});

test("a delete is retried on a transient error too", async () => {
  const w = await freshWriter(client, "delete");
  await w.put({ contentId: "a", type: "t", content: "one" });
  await failPoint(
    { times: 1 },
    { failCommands: ["delete"], errorCode: 112, errorLabels: ["TransientTransactionError"] },
  );
  const del = await w.delete("a");
  assert.equal(del?.version, 2);
  assert.equal(w.transactionRetries, 1);
  await w.db.dropDatabase();
});

test("backoff is bounded and jittered", () => {
  const p = DEFAULT_RETRY_POLICY;
  for (let attempt = 0; attempt < 100; attempt++) assert.ok(backoffMs(p, attempt) <= p.maxBackoffMs);
  assert.ok(new Set(Array.from({ length: 50 }, () => backoffMs(p, 10))).size > 1, "jitter expected");
});

test("classification: labels and write conflicts, also wrapped by a client bulkWrite", () => {
  const conflict = new MongoServerError({ message: "write conflict", code: 112 });
  assert.ok(isTransient(conflict));
  const labelled = new MongoServerError({
    message: "x",
    code: 251,
    errorLabels: ["TransientTransactionError"],
  });
  assert.ok(isTransient(labelled));
  const dup = new MongoServerError({ message: "dup", code: 11000 });
  assert.ok(!isTransient(dup));
  assert.equal(errorCode(dup), 11000);
  const wrapped = new MongoClientBulkWriteError({ message: "bulk" });
  wrapped.cause = labelled;
  assert.ok(isTransient(wrapped), "the label of the command error the bulk error wraps counts");
  wrapped.writeErrors.set(0, { code: 11000, message: "dup" });
  assert.equal(errorCode(wrapped), 11000);
  assert.ok(!isTransient(new Error("plain")));
});
