/**
 * Input validation, done before any write (a rejected document never reaches MongoDB), and the
 * conversion of metadata to the BSON types the Rust store writes. Rules, limits, field names and
 * messages are those of `tidemark_store::validate`:
 * - `contentId`: not empty, at most `maxContentIdLen` bytes, no NUL character;
 * - `type`: not empty (white space only counts as empty);
 * - `content`: not empty, at most `maxContentBytes` bytes (UTF-8);
 * - `metadata`: a JSON object; no key is empty, starts with `$`, contains `.` or NUL (at any
 *   depth, including objects inside arrays); nesting depth at most `maxMetadataDepth`, where the
 *   metadata object itself is depth 1 and every nested object or array adds one; integers must
 *   fit in a signed 64-bit integer.
 *
 * JavaScript can hold what JSON cannot, so a few checks are added with the same kind of message:
 * strings must be well-formed Unicode (no lone surrogates), numbers finite, and metadata values
 * JSON values (no `undefined`, functions, `Date`s or other class instances).
 * @module
 */

import { Double, Long, type Document } from "mongodb";
import type { Limits } from "./contract.js";
import { ValidationError } from "./errors.js";

/** A JSON value. `bigint` stands for an integer that a JavaScript number cannot hold exactly. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A document to write, keyed by its `contentId`. */
export interface NewDocument {
  contentId: string;
  type: string;
  content: string;
  /** A JSON object; `{}` when left out. */
  metadata?: JsonObject | undefined;
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
/** Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` removes. */
const RUST_WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/u;
const LONE_SURROGATE = "must be valid Unicode: it contains a lone surrogate";

function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** How a value is named in messages: the Rust store's words for JSON kinds. */
export function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  switch (typeof v) {
    case "boolean":
      return "a boolean";
    case "number":
    case "bigint":
      return "a number";
    case "string":
      return "a string";
    case "undefined":
      return "undefined";
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      if (isPlainObject(v)) return "an object";
      return `a ${(v as object).constructor?.name ?? "non-plain"} object`;
  }
}

function requireString(v: unknown, field: string): string {
  if (typeof v !== "string") throw new ValidationError(field, `must be a string, not ${kind(v)}`);
  if (!v.isWellFormed()) throw new ValidationError(field, LONE_SURROGATE);
  return v;
}

/** Checks a `contentId` alone (also used by `delete`). */
export function validateContentId(contentId: unknown, limits: Limits): string {
  const id = requireString(contentId, "contentId");
  if (id.length === 0) throw new ValidationError("contentId", "must not be empty");
  const bytes = utf8Bytes(id);
  if (bytes > limits.maxContentIdLen) {
    throw new ValidationError(
      "contentId",
      `is ${bytes} bytes, longer than the limit of ${limits.maxContentIdLen} bytes (limits.max_content_id_len)`,
    );
  }
  if (id.includes("\0")) throw new ValidationError("contentId", "must not contain a NUL character");
  return id;
}

/** Checks one document; throws `ValidationError` naming the first field that is wrong. */
export function validate(doc: NewDocument, limits: Limits): void {
  if (!isPlainObject(doc)) {
    throw new ValidationError("document", `must be an object, not ${kind(doc)}`);
  }
  validateContentId(doc.contentId, limits);
  const type = requireString(doc.type, "type");
  if (RUST_WHITESPACE.test(type)) throw new ValidationError("type", "must not be empty");
  const content = requireString(doc.content, "content");
  if (content.length === 0) throw new ValidationError("content", "must not be empty");
  const bytes = utf8Bytes(content);
  if (bytes > limits.maxContentBytes) {
    throw new ValidationError(
      "content",
      `is ${bytes} bytes, over the limit of ${limits.maxContentBytes} bytes (limits.max_content_bytes)`,
    );
  }
  const metadata: unknown = doc.metadata === undefined ? {} : doc.metadata;
  if (!isPlainObject(metadata)) {
    throw new ValidationError("metadata", `must be a JSON object, not ${kind(metadata)}`);
  }
  checkObject(metadata, "metadata", 1, limits.maxMetadataDepth);
}

function tooDeep(path: string, max: number): ValidationError {
  return new ValidationError(
    path,
    `nesting is deeper than the limit of ${max} levels (limits.max_metadata_depth)`,
  );
}

function checkObject(obj: Record<string, unknown>, path: string, depth: number, max: number): void {
  if (depth > max) throw tooDeep(path, max);
  for (const key of Object.keys(obj)) {
    const here = `${path}.${key}`;
    if (key.length === 0) throw new ValidationError(path, "has an empty key");
    if (key.startsWith("$")) {
      throw new ValidationError(here, "keys must not start with `$` (reserved by MongoDB operators)");
    }
    if (key.includes(".")) {
      throw new ValidationError(
        here,
        "keys must not contain `.` (it separates nested keys in vector metadata)",
      );
    }
    if (key.includes("\0")) throw new ValidationError(here, "keys must not contain a NUL character");
    if (!key.isWellFormed()) throw new ValidationError(here, `keys ${LONE_SURROGATE}`);
    checkValue(obj[key], here, depth, max);
  }
}

function checkValue(value: unknown, path: string, depth: number, max: number): void {
  if (value === null || typeof value === "boolean") return;
  if (Array.isArray(value)) {
    if (depth + 1 > max) throw tooDeep(path, max);
    for (let i = 0; i < value.length; i++) {
      checkValue(value[i], `${path}[${i}]`, depth + 1, max);
    }
    return;
  }
  if (isPlainObject(value)) return checkObject(value, path, depth + 1, max);
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw new ValidationError(path, LONE_SURROGATE);
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new ValidationError(path, "must be a finite number (JSON has no NaN or Infinity)");
      }
      return;
    case "bigint":
      if (value < I64_MIN || value > I64_MAX) {
        throw new ValidationError(path, `${value} does not fit in a signed 64-bit integer`);
      }
      return;
    default:
      throw new ValidationError(
        path,
        `is ${kind(value)}, not a JSON value (null, boolean, number, string, array or object)`,
      );
  }
}

/**
 * Metadata as the Rust store stores it (JSON converted by serde): integers as int64, other
 * numbers as double, objects and arrays in their key order. Call after `validate`.
 */
export function toBsonMetadata(metadata: JsonObject | undefined): Document {
  return convertObject(metadata ?? {});
}

function convertObject(obj: Record<string, unknown>): Document {
  const out: Document = {};
  for (const key of Object.keys(obj)) {
    // defineProperty keeps a key named `__proto__` an ordinary field.
    Object.defineProperty(out, key, {
      value: convertValue(obj[key]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function convertValue(v: unknown): unknown {
  if (typeof v === "number") {
    if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63) return Long.fromBigInt(BigInt(v));
    return new Double(v);
  }
  if (typeof v === "bigint") return Long.fromBigInt(v);
  if (Array.isArray(v)) return v.map(convertValue);
  if (isPlainObject(v)) return convertObject(v);
  return v;
}

/** Rough size in bytes of the stored document, used to bound `putMany` transactions. */
export function approxBytes(doc: NewDocument): number {
  const md = JSON.stringify(doc.metadata ?? {}, (_k, v: unknown) =>
    typeof v === "bigint" ? v.toString() : v,
  );
  return utf8Bytes(doc.contentId) + utf8Bytes(doc.type) + utf8Bytes(doc.content) + utf8Bytes(md) + 200;
}
