// A small command line over the writer, for the cross-language end-to-end test
// (tests/tests/ts_writer.rs) and for trying the client by hand. Prints one JSON value.
//
//   MONGODB_URI=... TIDEMARK_MONGODB_DATABASE=db node dist/tools/writer-cli.js COMMAND ...
//   put CONTENT_ID TYPE CONTENT [METADATA_JSON]     the put's outcome
//   delete CONTENT_ID                                the delete's outcome, or null
//   race START_EPOCH_MS CONTENT_ID...                waits until START, then puts every id at once
//   validate LIMITS_JSON < documents, one JSON a line   per line: null if valid, else the message
//   ensure-schema
import { createInterface } from "node:readline";
import {
  TidemarkWriter,
  validate,
  ValidationError,
  type DeleteOutcome,
  type PutOutcome,
} from "../src/index.js";

const DEFAULT_URI = "mongodb://127.0.0.1:27018/?replicaSet=secantus";

function json(o: PutOutcome | DeleteOutcome | null): unknown {
  if (o === null) return null;
  return { ...o, documentId: o.documentId.toHexString(), outboxId: o.outboxId.toHexString() };
}

async function validateLines(limitsJson: string): Promise<void> {
  const limits = JSON.parse(limitsJson);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "") continue;
    try {
      validate(JSON.parse(line), limits);
      console.log("null");
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      console.log(JSON.stringify(e.message));
    }
  }
}

async function race(w: TidemarkWriter, startAt: number, ids: string[]): Promise<unknown> {
  const lateMs = Date.now() - startAt;
  if (lateMs < 0) await new Promise((r) => setTimeout(r, -lateMs));
  const outs = await Promise.all(
    ids.map((id) => w.put({ contentId: id, type: "race", content: `ts ${id}` })),
  );
  return { lateMs: Math.max(0, lateMs), retries: w.transactionRetries, outcomes: outs.map(json) };
}

async function main(argv: string[]): Promise<unknown> {
  const [command, ...args] = argv;
  if (command === "validate") return validateLines(args[0] ?? "{}");
  const w = await TidemarkWriter.connect(process.env.MONGODB_URI ?? DEFAULT_URI, {
    database: process.env.TIDEMARK_MONGODB_DATABASE ?? "tidemark",
  });
  try {
    switch (command) {
      case "put": {
        const [contentId, type, content, metadata] = args as [string, string, string, string?];
        return json(
          await w.put({ contentId, type, content, metadata: metadata ? JSON.parse(metadata) : {} }),
        );
      }
      case "delete":
        return json(await w.delete(args[0] ?? ""));
      case "race":
        return race(w, Number(args[0]), args.slice(1));
      case "ensure-schema":
        await w.ensureSchema();
        return "ok";
      default:
        throw new Error(
          `unknown command ${JSON.stringify(command)}: put, delete, race, validate, ensure-schema`,
        );
    }
  } finally {
    await w.close();
  }
}

main(process.argv.slice(2)).then(
  (out) => {
    if (out !== undefined) console.log(JSON.stringify(out));
  },
  (e: unknown) => {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  },
);
