/**
 * `TidemarkWriter`: what a TypeScript service uses instead of writing Chroma itself. Every call
 * writes documents and their outbox entries in one MongoDB transaction, following
 * docs/CONTRACT.md as the Rust `tidemark_store::Store` does (same versions, ids, hashes, BSON
 * types, retries and validation messages); the tidemark worker does the rest.
 * @module
 */

import { MongoClient, type Collection, type Db, type Document, type MongoClientOptions } from "mongodb";
import {
  COLL_DOCUMENTS,
  COLL_OUTBOX,
  DEFAULT_DATABASE,
  DEFAULT_LIMITS,
  DEFAULT_RETENTION_SECONDS,
  type Limits,
} from "./contract.js";
import { BatchFailedError, ValidationError } from "./errors.js";
import { contentHash } from "./hash.js";
import { putOneBody, type PutOneContext, type WriteMode } from "./putOne.js";
import type { DeleteOutcome, Prepared, PutOutcome } from "./records.js";
import { ensureSchema } from "./schema.js";
import { DEFAULT_RETRY_POLICY, runTransaction, type RetryPolicy } from "./txn.js";
import { approxBytes, toBsonMetadata, validate, validateContentId, type NewDocument } from "./validate.js";
import { deleteOne, putBatch, type Collections } from "./writes.js";

/** Options of a writer; every one has the Rust store's default. */
export interface WriterOptions {
  /** The tidemark database (`mongodb.database`), default `tidemark`. */
  database?: string;
  /** Input limits (`[limits]`); give the same values as the worker's configuration. */
  limits?: Partial<Limits>;
  /** Transaction retry bounds. */
  retry?: Partial<RetryPolicy>;
  /** Retention of done outbox entries for `ensureSchema` (`outbox.retention`), default 7 days. */
  retentionSeconds?: number;
  /**
   * Write the document and its entry with two commands instead of one client `bulkWrite` even
   * on MongoDB 8.0+ (servers before 8.0 get two commands anyway).
   */
  separateWrites?: boolean;
}

/** The client `bulkWrite` command needs MongoDB 8.0 (wire version 25). */
const BULK_WRITE_WIRE_VERSION = 25;

/** Writes documents and their outbox entries transactionally. Share one per process. */
export class TidemarkWriter {
  readonly client: MongoClient;
  readonly db: Db;
  readonly limits: Readonly<Limits>;
  readonly retry: Readonly<RetryPolicy>;
  readonly #retentionSeconds: number;
  /** Whether `connect` created the client (then `close` closes it). */
  #owned = false;
  #mode: WriteMode | undefined;
  #retries = 0;

  /** A writer on an existing client (e.g. the one the service already has). */
  constructor(client: MongoClient, options: WriterOptions = {}) {
    this.client = client;
    this.db = client.db(options.database ?? DEFAULT_DATABASE);
    this.limits = Object.freeze({ ...DEFAULT_LIMITS, ...options.limits });
    this.retry = Object.freeze({ ...DEFAULT_RETRY_POLICY, ...options.retry });
    this.#retentionSeconds = options.retentionSeconds ?? DEFAULT_RETENTION_SECONDS;
    this.#mode = options.separateWrites ? "separate" : undefined;
  }

  /** Connects a client of its own to `uri` (a replica set: transactions need one). */
  static async connect(
    uri: string,
    options: WriterOptions = {},
    clientOptions: MongoClientOptions = {},
  ): Promise<TidemarkWriter> {
    const client = await new MongoClient(uri, clientOptions).connect();
    const writer = new TidemarkWriter(client, options);
    writer.#owned = true;
    return writer;
  }

  /** Closes the client if `connect` created it. */
  async close(): Promise<void> {
    if (this.#owned) await this.client.close();
  }

  /** Transaction attempts this writer retried so far (write conflicts, racing inserts). */
  get transactionRetries(): number {
    return this.#retries;
  }

  get documents(): Collection<Document> {
    return this.db.collection(COLL_DOCUMENTS);
  }

  get outbox(): Collection<Document> {
    return this.db.collection(COLL_OUTBOX);
  }

  /** Creates the collections and indexes (as `tidemark` does); safe to call on every start. */
  async ensureSchema(): Promise<void> {
    await ensureSchema(this.db, this.#retentionSeconds);
  }

  /**
   * Inserts or updates the document of `doc.contentId` and writes its `upsert` entry, in one
   * transaction; returns after the commit. Throws `ValidationError` (nothing written) on bad input.
   */
  async put(doc: NewDocument): Promise<PutOutcome> {
    validate(doc, this.limits);
    const [out] = await this.#putChunk([prepare(doc)], "put");
    return out!;
  }

  /**
   * Writes many documents, each with its entry, in as few transactions as `limits.maxBatchBytes`
   * allows (in input order). All are validated first (a field is prefixed with its index, e.g.
   * `[3].content`). A contentId given several times gets one entry per occurrence with growing
   * versions; the document ends as the last one. If a later transaction fails,
   * `BatchFailedError` says how many documents were committed.
   */
  async putMany(docs: readonly NewDocument[]): Promise<PutOutcome[]> {
    docs.forEach((d, i) => {
      try {
        validate(d, this.limits);
      } catch (e) {
        if (e instanceof ValidationError) throw new ValidationError(`[${i}].${e.field}`, e.reason);
        throw e;
      }
    });
    const outcomes: PutOutcome[] = [];
    let chunk: Prepared[] = [];
    let chunkBytes = 0;
    for (let i = 0; i < docs.length; i++) {
      const d = docs[i]!;
      chunkBytes += approxBytes(d);
      chunk.push(prepare(d));
      const next = docs[i + 1];
      const full = next !== undefined && chunkBytes + approxBytes(next) > this.limits.maxBatchBytes;
      if (!full && next !== undefined) continue;
      const committed = outcomes.length;
      try {
        outcomes.push(...(await this.#putChunk(chunk, "putMany")));
      } catch (e) {
        if (committed > 0) throw new BatchFailedError(committed, docs.length, e);
        throw e;
      }
      chunk = [];
      chunkBytes = 0;
    }
    return outcomes;
  }

  /**
   * Removes the document of `contentId` and writes its `delete` entry in one transaction.
   * `null` (and nothing written) when there is no such document.
   */
  async delete(contentId: string): Promise<DeleteOutcome | null> {
    validateContentId(contentId, this.limits);
    return runTransaction(
      this.client,
      this.retry,
      "delete",
      (s) => deleteOne(this.#collections(), contentId, s),
      () => {
        this.#retries++;
      },
    );
  }

  #collections(): Collections {
    return { documents: this.documents, outbox: this.outbox };
  }

  /** One transaction for validated documents: the three-round-trip path for a single one. */
  async #putChunk(items: Prepared[], operation: string): Promise<PutOutcome[]> {
    const onRetry = () => {
      this.#retries++;
    };
    if (items.length !== 1) {
      return runTransaction(
        this.client,
        this.retry,
        operation,
        (s) => putBatch(this.#collections(), items, s),
        onRetry,
      );
    }
    const ctx: PutOneContext = {
      ...this.#collections(),
      client: this.client,
      database: this.db.databaseName,
      mode: await this.#writeMode(),
      noBulk: () => {
        this.#mode = "separate";
      },
    };
    return runTransaction(this.client, this.retry, operation, putOneBody(ctx, items[0]!), onRetry);
  }

  /** Learnt once from the server's wire version, unless `separateWrites` was asked for. */
  async #writeMode(): Promise<WriteMode> {
    if (this.#mode === undefined) {
      const hello = await this.client.db("admin").command({ hello: 1 });
      const wire = typeof hello.maxWireVersion === "number" ? hello.maxWireVersion : 0;
      this.#mode = wire >= BULK_WRITE_WIRE_VERSION ? "bulk" : "separate";
    }
    return this.#mode;
  }
}

/** Hash and BSON metadata, computed once outside the transaction retries. */
function prepare(doc: NewDocument): Prepared {
  const metadata = toBsonMetadata(doc.metadata);
  return {
    doc: { contentId: doc.contentId, type: doc.type, content: doc.content, metadata: doc.metadata ?? {} },
    metadata,
    hash: contentHash(doc.content),
  };
}
