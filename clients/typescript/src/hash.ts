/**
 * Content hashing, identical to `tidemark_core::content_hash`: `"sha256:"` and the lowercase hex
 * SHA-256 of the UTF-8 bytes of the content. Metadata is not hashed, so a metadata-only change
 * keeps the hash and the worker updates the vector's metadata without embedding again.
 * @module
 */

import { createHash } from "node:crypto";

export const HASH_PREFIX = "sha256:";

/** The `contentHash` of `content`. */
export function contentHash(content: string): string {
  return HASH_PREFIX + createHash("sha256").update(content, "utf8").digest("hex");
}
