/**
 * The outbox contract of docs/CONTRACT.md as constants: collection names, field values and the
 * default limits. Mirrors `tidemark_core::contract` and `tidemark_core::config::Limits`.
 * @module
 */

/** Version of the outbox entry shape this writer produces (`schemaVersion`). */
export const SCHEMA_VERSION = 1;

export const COLL_DOCUMENTS = "documents";
export const COLL_OUTBOX = "outbox";
export const COLL_SYNC_STATE = "sync_state";

/** What an outbox entry asks the worker to do. */
export const Op = { Upsert: "upsert", Delete: "delete" } as const;
export type Op = (typeof Op)[keyof typeof Op];

/** The status every writer gives a new entry. */
export const STATUS_PENDING = "pending";

/** The database the Rust tools use when `mongodb.database` is not set. */
export const DEFAULT_DATABASE = "tidemark";

/** Bounds on input, the `[limits]` section of the tidemark configuration. */
export interface Limits {
  /** Largest `content`, in bytes of UTF-8 (`limits.max_content_bytes`). */
  maxContentBytes: number;
  /** Longest `contentId`, in bytes of UTF-8 (`limits.max_content_id_len`). */
  maxContentIdLen: number;
  /** Deepest metadata nesting; the metadata object itself is level 1 (`limits.max_metadata_depth`). */
  maxMetadataDepth: number;
  /** Upper bound of one `putMany` transaction, in approximate bytes (`limits.max_batch_bytes`). */
  maxBatchBytes: number;
}

/** The defaults of the Rust store. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxContentBytes: 1 << 20,
  maxContentIdLen: 512,
  maxMetadataDepth: 8,
  maxBatchBytes: 8 << 20,
});

/** Default of `outbox.retention`: done entries are kept 7 days (the TTL index on `doneAt`). */
export const DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600;

/** The indexes `ensureSchema` creates, as [collection, index name] (as `tidemark_store::INDEX_NAMES`). */
export const INDEX_NAMES: ReadonlyArray<readonly [string, string]> = Object.freeze([
  [COLL_DOCUMENTS, "contentId_unique"],
  [COLL_OUTBOX, "status_nextAttemptAt"],
  [COLL_OUTBOX, "status_createdAt"],
  [COLL_OUTBOX, "documentId_version"],
  [COLL_OUTBOX, "contentId_version"],
  [COLL_OUTBOX, "doneAt_ttl"],
] as const);
