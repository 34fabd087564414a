// Validation and metadata conversion (pure): every rule names its field with the Rust store's
// message, the limits are inclusive where the Rust ones are, and metadata gets the BSON types the
// Rust store writes. Cases mirror crates/tidemark-store/src/validate.rs's tests.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Double, Long } from "mongodb";
import {
  contentHash,
  DEFAULT_LIMITS,
  validate,
  validateContentId,
  ValidationError,
  type NewDocument,
} from "../src/index.js";
import { approxBytes, toBsonMetadata } from "../src/validate.js";

const limits = { maxContentBytes: 10, maxContentIdLen: 5, maxMetadataDepth: 3, maxBatchBytes: 100 };

function rejection(doc: unknown): ValidationError {
  try {
    validate(doc as NewDocument, limits);
  } catch (e) {
    assert.ok(e instanceof ValidationError, `expected a ValidationError, got ${e}`);
    return e;
  }
  assert.fail(`expected ${JSON.stringify(doc)} to be rejected`);
}
const fieldOf = (doc: unknown) => rejection(doc).field;
const md = (metadata: unknown) => ({ contentId: "a", type: "t", content: "c", metadata });

test("accepts a good document, metadata optional", () => {
  validate({ contentId: "a", type: "t", content: "hello", metadata: { x: { y: [1, 2] } } }, limits);
  validate({ contentId: "a", type: "t", content: "hello" }, limits);
});

test("each rule names its field", () => {
  assert.equal(fieldOf({ contentId: "", type: "t", content: "c" }), "contentId");
  assert.equal(fieldOf({ contentId: "toolong", type: "t", content: "c" }), "contentId");
  assert.equal(fieldOf({ contentId: "a\0", type: "t", content: "c" }), "contentId");
  assert.equal(fieldOf({ contentId: "a", type: " ", content: "c" }), "type");
  assert.equal(fieldOf({ contentId: "a", type: "t", content: "" }), "content");
  assert.equal(fieldOf({ contentId: "a", type: "t", content: "01234567890" }), "content");
  assert.equal(fieldOf(md([1])), "metadata");
  assert.equal(fieldOf(md(null)), "metadata");
  assert.equal(fieldOf(md({ $set: 1 })), "metadata.$set");
  assert.equal(fieldOf(md({ a: { "b.c": 1 } })), "metadata.a.b.c");
  assert.equal(fieldOf(md({ a: [{ $x: 1 }] })), "metadata.a[0].$x");
  assert.equal(fieldOf(md({ a: { b: { c: {} } } })), "metadata.a.b.c");
  assert.equal(fieldOf(md({ a: [[[1]]] })), "metadata.a[0][0]");
  assert.equal(fieldOf(md({ n: 2n ** 64n - 1n })), "metadata.n");
  assert.equal(fieldOf(md({ a: { "": 1 } })), "metadata.a");
  assert.equal(fieldOf(md({ "k\0": 1 })), "metadata.k\0");
});

test("messages are the Rust store's, word for word", () => {
  const cases: Array<[unknown, string]> = [
    [{ contentId: "", type: "t", content: "c" }, "invalid `contentId`: must not be empty"],
    [
      { contentId: "toolong", type: "t", content: "c" },
      "invalid `contentId`: is 7 bytes, longer than the limit of 5 bytes (limits.max_content_id_len)",
    ],
    [{ contentId: "a\0", type: "t", content: "c" }, "invalid `contentId`: must not contain a NUL character"],
    [{ contentId: "a", type: "\t\n", content: "c" }, "invalid `type`: must not be empty"],
    [{ contentId: "a", type: "t", content: "" }, "invalid `content`: must not be empty"],
    [
      { contentId: "a", type: "t", content: "01234567890" },
      "invalid `content`: is 11 bytes, over the limit of 10 bytes (limits.max_content_bytes)",
    ],
    [md([1]), "invalid `metadata`: must be a JSON object, not an array"],
    [md(null), "invalid `metadata`: must be a JSON object, not null"],
    [md("x"), "invalid `metadata`: must be a JSON object, not a string"],
    [md(3), "invalid `metadata`: must be a JSON object, not a number"],
    [md(true), "invalid `metadata`: must be a JSON object, not a boolean"],
    [
      md({ $set: 1 }),
      "invalid `metadata.$set`: keys must not start with `$` (reserved by MongoDB operators)",
    ],
    [
      md({ a: { "b.c": 1 } }),
      "invalid `metadata.a.b.c`: keys must not contain `.` (it separates nested keys in vector metadata)",
    ],
    [md({ "k\0": 1 }), "invalid `metadata.k\0`: keys must not contain a NUL character"],
    [md({ a: { "": 1 } }), "invalid `metadata.a`: has an empty key"],
    [
      md({ a: { b: { c: {} } } }),
      "invalid `metadata.a.b.c`: nesting is deeper than the limit of 3 levels (limits.max_metadata_depth)",
    ],
    [
      md({ n: 18446744073709551615n }),
      "invalid `metadata.n`: 18446744073709551615 does not fit in a signed 64-bit integer",
    ],
  ];
  for (const [doc, message] of cases) assert.equal(rejection(doc).message, message);
});

test("byte lengths are UTF-8, as Rust's str::len", () => {
  // "é" is 2 bytes: 5 of them are 10 bytes (at the limit), 6 are over it.
  validate({ contentId: "a", type: "t", content: "é".repeat(5) }, limits);
  assert.equal(
    rejection({ contentId: "a", type: "t", content: "é".repeat(6) }).message,
    "invalid `content`: is 12 bytes, over the limit of 10 bytes (limits.max_content_bytes)",
  );
  assert.equal(fieldOf({ contentId: "ééé", type: "t", content: "c" }), "contentId");
  validateContentId("x".repeat(512), DEFAULT_LIMITS);
  assert.throws(
    () => validateContentId("x".repeat(513), DEFAULT_LIMITS),
    /513 bytes, longer than the limit of 512/,
  );
});

test("depth limit is inclusive", () => {
  validate(md({ a: { b: { c: 1 } }, l: [[1]] }) as NewDocument, limits);
});

test("white space in `type` is Rust's: U+0085 is space, U+FEFF is not", () => {
  assert.equal(fieldOf({ contentId: "a", type: "\u0085\u3000", content: "c" }), "type");
  validate({ contentId: "a", type: "\ufeff", content: "c" }, limits);
});

test("what JSON cannot hold is rejected with its path", () => {
  const cases: Array<[unknown, string]> = [
    [
      md({ d: new Date(0) }),
      "invalid `metadata.d`: is a Date object, not a JSON value (null, boolean, number, string, array or object)",
    ],
    [
      md({ u: undefined }),
      "invalid `metadata.u`: is undefined, not a JSON value (null, boolean, number, string, array or object)",
    ],
    [md({ x: [NaN] }), "invalid `metadata.x[0]`: must be a finite number (JSON has no NaN or Infinity)"],
    [md({ x: Infinity }), "invalid `metadata.x`: must be a finite number (JSON has no NaN or Infinity)"],
    [md({ s: "\ud800" }), "invalid `metadata.s`: must be valid Unicode: it contains a lone surrogate"],
    [
      { contentId: "a", type: "t", content: "x\udc00" },
      "invalid `content`: must be valid Unicode: it contains a lone surrogate",
    ],
    [{ contentId: 7, type: "t", content: "c" }, "invalid `contentId`: must be a string, not a number"],
    [{ contentId: "a", content: "c" }, "invalid `type`: must be a string, not undefined"],
    [md(new Map()), "invalid `metadata`: must be a JSON object, not a Map object"],
  ];
  for (const [doc, message] of cases) assert.equal(rejection(doc).message, message);
});

test("metadata gets the Rust store's BSON types and key order", () => {
  const out = toBsonMetadata({
    z: 1,
    a: -2,
    f: 1.5,
    big: 2 ** 60,
    huge: 1e300,
    b: 9007199254740993n,
    s: "x",
    t: true,
    n: null,
    l: [1, { k: 2.5 }],
  });
  assert.deepEqual(Object.keys(out), ["z", "a", "f", "big", "huge", "b", "s", "t", "n", "l"]);
  assert.ok(out.z instanceof Long && out.z.toNumber() === 1, "integers are int64");
  assert.ok(out.a instanceof Long && out.a.toNumber() === -2);
  assert.ok(out.f instanceof Double && out.f.value === 1.5, "fractions are doubles");
  assert.ok(out.big instanceof Long && out.big.toBigInt() === 2n ** 60n, "large integers exactly");
  assert.ok(out.huge instanceof Double, "integers past int64 stay doubles");
  assert.ok(out.b instanceof Long && out.b.toBigInt() === 9007199254740993n, "bigint exactly");
  assert.equal(out.s, "x");
  assert.equal(out.t, true);
  assert.equal(out.n, null);
  assert.ok(out.l[0] instanceof Long);
  assert.ok(out.l[1].k instanceof Double);
});

test("a key named __proto__ stays an ordinary field", () => {
  const parsed = JSON.parse('{"__proto__": {"x": 1}}');
  validate(md(parsed) as NewDocument, limits);
  const out = toBsonMetadata(parsed);
  assert.deepEqual(Object.keys(out), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
});

test("content hash is tidemark_core::content_hash", () => {
  assert.equal(contentHash("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Non-ASCII content is hashed as UTF-8 (value from Python's hashlib).
  assert.equal(
    contentHash("héllo wörld ✓"),
    "sha256:c2a59c71097b678dc5af2eb1f98ddc575b63948b0fa6740071a945673aaada4d",
  );
});

test("approximate size counts UTF-8 bytes plus a fixed overhead", () => {
  assert.equal(approxBytes({ contentId: "ab", type: "t", content: "é" }), 2 + 1 + 2 + 2 + 200);
  assert.equal(
    approxBytes({ contentId: "a", type: "t", content: "c", metadata: { n: 1n } }),
    3 + '{"n":"1"}'.length + 200,
  );
});
