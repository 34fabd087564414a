/**
 * @tidemark/writer: the TypeScript writer of tidemark. A document and its outbox entry go into
 * MongoDB in one transaction, following docs/CONTRACT.md; the tidemark worker embeds the content
 * and writes Chroma. Start with `TidemarkWriter`.
 *
 * Map: `writer` (the class), `validate` (input rules and metadata to BSON), `writes` and
 * `putOne` (the transaction bodies), `txn` (transaction retries), `schema` (`ensureSchema`),
 * `records` (stored shapes and outcomes), `hash` (`contentHash`), `contract` (constants),
 * `errors`.
 * @module
 */

export { TidemarkWriter, type WriterOptions } from "./writer.js";
export type { NewDocument, JsonObject, JsonValue } from "./validate.js";
export { validate, validateContentId } from "./validate.js";
export type { PutOutcome, DeleteOutcome } from "./records.js";
export { contentHash } from "./hash.js";
export { TidemarkError, ValidationError, RetriesExhaustedError, BatchFailedError } from "./errors.js";
export { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./txn.js";
export {
  SCHEMA_VERSION,
  COLL_DOCUMENTS,
  COLL_OUTBOX,
  COLL_SYNC_STATE,
  DEFAULT_DATABASE,
  DEFAULT_LIMITS,
  DEFAULT_RETENTION_SECONDS,
  INDEX_NAMES,
  Op,
  type Limits,
} from "./contract.js";
