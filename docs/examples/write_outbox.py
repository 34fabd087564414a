#!/usr/bin/env python3
"""Write a tidemark document and its outbox entry in ONE MongoDB transaction, from Python.

This is the reference writer for applications that do not link the Rust library
(tidemark-store). It follows the contract in docs/CONTRACT.md exactly; the tidemark test
suite runs it against a real replica set and checks that what it writes parses as the Rust
contract types.

Usage (pymongo >= 4.0; a replica set, because transactions need one):

    MONGODB_URI='mongodb://127.0.0.1:27018/?replicaSet=secantus' \
    TIDEMARK_MONGODB_DATABASE=tidemark \
    python write_outbox.py put CONTENT_ID TYPE CONTENT ['{"metadata": "as JSON"}']

    python write_outbox.py delete CONTENT_ID

Prints the result as one JSON line: documentId, contentId, version, outboxId.
"""

import datetime
import hashlib
import json
import os
import random
import sys
import time

from bson import Int64, ObjectId
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

SCHEMA_VERSION = 1  # outbox entry shape version (int32)


def content_hash(content: str) -> str:
    """sha256 of the UTF-8 content, hex, prefixed with the algorithm."""
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def new_entry(document_id, content_id, op, version, chash, now):
    """A pending outbox entry. Integer types matter: version is int64, attempts and
    schemaVersion are int32 (Python ints below 2**31 are stored as int32 by pymongo)."""
    return {
        "_id": ObjectId(),
        "schemaVersion": SCHEMA_VERSION,
        "documentId": document_id,
        "contentId": content_id,
        "op": op,  # "upsert" | "delete"
        "version": Int64(version),
        "contentHash": chash,
        "status": "pending",
        "attempts": 0,
        "nextAttemptAt": now,
        "createdAt": now,
    }


def put_txn(session, db, content_id, doc_type, content, metadata):
    """The body of the put transaction; may run several times (with_transaction retries it)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    chash = content_hash(content)
    current = db.documents.find_one(
        {"contentId": content_id}, {"_id": 1, "version": 1}, session=session
    )
    if current is not None:
        # Update: same _id, next version. The version in the filter makes a lost race visible.
        document_id = current["_id"]
        version = current["version"] + 1
        res = db.documents.update_one(
            {"_id": document_id, "version": current["version"]},
            {"$set": {
                "type": doc_type,
                "content": content,
                "metadata": metadata,
                "timestamp": now,
                "version": Int64(version),
                "contentHash": chash,
            }},
            session=session,
        )
        if res.matched_count != 1:
            raise RuntimeError("document changed concurrently")
    else:
        # New incarnation: fresh _id; version continues after every earlier entry of this
        # contentId (a deleted predecessor's entries), so versions never go backwards.
        last = db.outbox.find_one(
            {"contentId": content_id}, {"version": 1},
            sort=[("version", -1)], session=session,
        )
        document_id = ObjectId()
        version = (last["version"] if last else 0) + 1
        db.documents.insert_one({
            "_id": document_id,
            "contentId": content_id,
            "type": doc_type,
            "content": content,
            "metadata": metadata,
            "timestamp": now,
            "version": Int64(version),
            "contentHash": chash,
        }, session=session)
    entry = new_entry(document_id, content_id, "upsert", version, chash, now)
    db.outbox.insert_one(entry, session=session)
    return {"documentId": str(document_id), "contentId": content_id,
            "version": version, "outboxId": str(entry["_id"])}


def delete_txn(session, db, content_id):
    """The body of the delete transaction: remove the document, log a delete entry."""
    now = datetime.datetime.now(datetime.timezone.utc)
    current = db.documents.find_one({"contentId": content_id}, session=session)
    if current is None:
        return None
    res = db.documents.delete_one(
        {"_id": current["_id"], "version": current["version"]}, session=session
    )
    if res.deleted_count != 1:
        raise RuntimeError("document changed concurrently")
    version = current["version"] + 1
    entry = new_entry(current["_id"], content_id, "delete", version,
                      current["contentHash"], now)
    db.outbox.insert_one(entry, session=session)
    return {"documentId": str(current["_id"]), "contentId": content_id,
            "version": version, "outboxId": str(entry["_id"])}


def in_transaction(client, body, attempts=10):
    """Runs body(session) in a transaction. with_transaction retries the whole transaction on
    TransientTransactionError (e.g. write conflicts) and the commit on
    UnknownTransactionCommitResult. A concurrent first insert of the same contentId raises a
    duplicate key error instead: retry, and the next attempt sees the document and updates it."""
    for attempt in range(attempts):
        try:
            with client.start_session() as session:
                return session.with_transaction(
                    body,
                    read_concern=ReadConcern("snapshot"),
                    write_concern=WriteConcern("majority", j=True),
                )
        except DuplicateKeyError:
            if attempt + 1 == attempts:
                raise
            time.sleep(random.uniform(0, 0.01 * 2 ** attempt))


def main(argv):
    uri = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27018/?replicaSet=secantus")
    db_name = os.environ.get("TIDEMARK_MONGODB_DATABASE", "tidemark")
    client = MongoClient(uri)
    db = client[db_name]
    if len(argv) >= 5 and argv[1] == "put":
        _, _, content_id, doc_type, content, *rest = argv
        metadata = json.loads(rest[0]) if rest else {}
        if not isinstance(metadata, dict):
            sys.exit("metadata must be a JSON object")
        result = in_transaction(
            client, lambda s: put_txn(s, db, content_id, doc_type, content, metadata))
    elif len(argv) == 3 and argv[1] == "delete":
        result = in_transaction(client, lambda s: delete_txn(s, db, argv[2]))
        if result is None:
            sys.exit(f"no document with contentId {argv[2]!r}")
    else:
        sys.exit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
