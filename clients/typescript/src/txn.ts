/**
 * Running a multi-document transaction with the retry rules of the MongoDB driver
 * specification, as `tidemark_store::txn` does: the whole transaction is retried on the
 * `TransientTransactionError` label (e.g. a write conflict with a concurrent writer), only the
 * commit on `UnknownTransactionCommitResult`; attempts are bounded and spaced by a small
 * jittered backoff. Read concern `snapshot`, write concern `majority`.
 * @module
 */

import {
  MongoBulkWriteError,
  MongoClientBulkWriteError,
  MongoError,
  MongoServerError,
  type ClientSession,
  type MongoClient,
} from "mongodb";
import { RetriesExhaustedError } from "./errors.js";

/** Server error code of a write conflict between transactions. */
export const WRITE_CONFLICT = 112;
/** Server error code of a unique index violation. */
export const DUPLICATE_KEY = 11000;
export const TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError";
export const UNKNOWN_TRANSACTION_COMMIT_RESULT = "UnknownTransactionCommitResult";

/** Retry bounds (the Rust store's defaults: 60 attempts, 2 ms doubling to 200 ms). */
export interface RetryPolicy {
  /** Attempts of the whole transaction (and, separately, of the commit). */
  maxAttempts: number;
  /** First backoff in milliseconds; doubles per attempt up to `maxBackoffMs`, with full jitter. */
  baseBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 60,
  baseBackoffMs: 2,
  maxBackoffMs: 200,
});

/** The pause before attempt `attempt`: uniform in [0, min(base * 2^attempt, max)] ms. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const exp = Math.min(policy.baseBackoffMs * 2 ** Math.min(attempt, 16), policy.maxBackoffMs);
  const cap = Math.max(1, Math.floor(exp));
  return Math.floor(Math.random() * (cap + 1));
}

/** Thrown by a transaction body: run the whole transaction again (a lost race a fresh read fixes). */
export class Retry extends Error {
  override name = "Retry";
}

/**
 * The error and the errors it wraps: the driver's client `bulkWrite` reports a failed command
 * (e.g. a write conflict, with its labels) as the `cause` of a `MongoClientBulkWriteError`.
 */
function chain(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let cur = e; cur instanceof Error && out.length < 8; cur = cur.cause) out.push(cur);
  return out;
}

/** The server error code of a command or of the first failed write, if any. */
export function errorCode(e: unknown): number | undefined {
  for (const err of chain(e)) {
    const code = ownCode(err);
    if (code !== undefined) return code;
  }
  return undefined;
}

function ownCode(e: unknown): number | undefined {
  if (e instanceof MongoClientBulkWriteError) {
    const first = [...e.writeErrors.entries()].sort(([a], [b]) => a - b)[0];
    if (first) return first[1].code;
    const wc = e.writeConcernErrors[0] as { code?: number } | undefined;
    return wc?.code;
  }
  if (e instanceof MongoBulkWriteError) {
    const errs = e.writeErrors;
    const first = Array.isArray(errs) ? errs[0] : errs;
    if (first) return first.code;
  }
  if (e instanceof MongoServerError && typeof e.code === "number") return e.code;
  return undefined;
}

/** Whether the error, or one it wraps, carries `label`. */
export function hasLabel(e: unknown, label: string): boolean {
  return chain(e).some((err) => err instanceof MongoError && err.hasErrorLabel(label));
}

/** True when the error carries the `TransientTransactionError` label, or is a write conflict. */
export function isTransient(e: unknown): boolean {
  return hasLabel(e, TRANSIENT_TRANSACTION_ERROR) || errorCode(e) === WRITE_CONFLICT;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The body of a transaction: called once per attempt inside a started transaction. It must not
 * commit, and must derive its writes only from what it reads inside the transaction.
 */
export type TxnBody<T> = (session: ClientSession) => Promise<T>;

/**
 * Runs `body` in a transaction until it commits, an error is not retryable, or the policy's
 * attempts are used up. `operation` names the call in errors; `onRetry` counts retries.
 */
export async function runTransaction<T>(
  client: MongoClient,
  policy: RetryPolicy,
  operation: string,
  body: TxnBody<T>,
  onRetry: () => void = () => {},
): Promise<T> {
  const session = client.startSession();
  try {
    let last = "";
    for (let attempt = 0; attempt < policy.maxAttempts; attempt++) {
      if (attempt > 0) {
        onRetry();
        await sleep(backoffMs(policy, attempt));
      }
      session.startTransaction({
        readConcern: { level: "snapshot" },
        writeConcern: { w: "majority", j: true },
      });
      let out: T;
      try {
        out = await body(session);
      } catch (err) {
        // The server may already have aborted; an abort error changes nothing.
        await session.abortTransaction().catch(() => {});
        if (err instanceof Retry || isTransient(err)) {
          last = describe(err);
          continue;
        }
        throw err;
      }
      try {
        await commit(session, policy);
        return out;
      } catch (err) {
        if (isTransient(err)) {
          last = describe(err);
          continue;
        }
        throw err;
      }
    }
    throw new RetriesExhaustedError(operation, policy.maxAttempts, last);
  } finally {
    await session.endSession().catch(() => {});
  }
}

/** Commits, retrying only the commit while its outcome is unknown. */
async function commit(session: ClientSession, policy: RetryPolicy): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await session.commitTransaction();
      return;
    } catch (err) {
      const unknown =
        hasLabel(err, UNKNOWN_TRANSACTION_COMMIT_RESULT) && !hasLabel(err, TRANSIENT_TRANSACTION_ERROR);
      if (!unknown || attempt + 1 >= policy.maxAttempts) throw err;
      await sleep(backoffMs(policy, attempt + 1));
    }
  }
}
