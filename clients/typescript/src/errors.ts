/**
 * Errors of the writer. Messages match `tidemark_store::StoreError`: a rejected input says
 * ``invalid `field`: reason`` and nothing was written. Errors of the MongoDB driver that are not
 * retried are thrown as they are (`MongoError` and its subclasses).
 * @module
 */

/** Base class of the errors this library throws itself. */
export class TidemarkError extends Error {
  override name = "TidemarkError";
}

/** The input was rejected before anything was written. */
export class ValidationError extends TidemarkError {
  override name = "ValidationError";
  /** The field, e.g. `content`, `metadata.a.b`, `[3].contentId` (putMany). */
  readonly field: string;
  /** Why, in words, as the Rust store says it. */
  readonly reason: string;

  constructor(field: string, reason: string) {
    super(`invalid \`${field}\`: ${reason}`);
    this.field = field;
    this.reason = reason;
  }
}

/**
 * The transaction kept failing with retryable errors (write conflicts, racing first inserts)
 * until the attempt bound was reached; nothing of this call was committed.
 */
export class RetriesExhaustedError extends TidemarkError {
  override name = "RetriesExhaustedError";
  readonly operation: string;
  readonly attempts: number;
  /** The last retryable error, in words. */
  readonly last: string;

  constructor(operation: string, attempts: number, last: string) {
    super(`${operation}: gave up after ${attempts} attempts, nothing was written: ${last}`);
    this.operation = operation;
    this.attempts = attempts;
    this.last = last;
  }
}

/**
 * A `putMany` split into several transactions failed part way: the first `committed` documents
 * (in input order) are committed, the rest are not. `cause` is the failure.
 */
export class BatchFailedError extends TidemarkError {
  override name = "BatchFailedError";
  readonly committed: number;
  readonly total: number;

  constructor(committed: number, total: number, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`${committed} of ${total} documents were committed before the failure: ${why}`, {
      cause,
    });
    this.committed = committed;
    this.total = total;
  }
}
