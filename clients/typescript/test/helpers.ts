// Shared set-up of the integration tests: the replica set from MONGODB_URI (as the Rust tests),
// a uniquely named database per test, raw reads that keep the exact BSON types, and a private
// SecantusDB with test commands (fail points) for the retry tests.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MongoClient, type Document } from "mongodb";
import { TidemarkWriter, type WriterOptions } from "../src/index.js";

export const DEFAULT_MONGODB_URI = "mongodb://127.0.0.1:27018/?replicaSet=secantus";
export const mongodbUri = () => process.env.MONGODB_URI ?? DEFAULT_MONGODB_URI;

/** clients/typescript/dist/test -> the repository root. */
export const repoRoot = () => join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");

let seq = 0;
/** A database name unique to this process and call (as the Rust harness's unique_name). */
export function uniqueName(prefix: string): string {
  return `t_ts_${prefix.slice(0, 12)}_${process.pid}_${seq++}_${Date.now().toString(36)}`;
}

/** A writer on a fresh database with the schema in place. */
export async function freshWriter(
  client: MongoClient,
  prefix: string,
  options: WriterOptions = {},
): Promise<TidemarkWriter> {
  const w = new TidemarkWriter(client, { ...options, database: uniqueName(prefix) });
  await w.ensureSchema();
  return w;
}

/** Every document of a collection with its exact BSON types, in insertion order. */
export async function raw(w: TidemarkWriter, coll: "documents" | "outbox", filter: Document = {}) {
  return w.db.collection(coll).find(filter, { promoteValues: false }).sort({ _id: 1 }).toArray();
}

/** A port free at the time of the call, on loopback. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** A SecantusDB of this test alone, in memory, with `configureFailPoint`; never a shared one. */
export class FailPointServer {
  private constructor(
    readonly uri: string,
    private readonly proc: ChildProcess,
  ) {}

  static async start(appName: string): Promise<FailPointServer> {
    const venv = process.env.TIDEMARK_VENV ?? join(repoRoot(), ".venv");
    const bin = join(venv, "bin", "secantusd-py");
    if (!existsSync(bin))
      throw new Error(`${bin} is missing: run scripts/services up (or set TIDEMARK_VENV)`);
    const port = await freePort();
    const proc = spawn(
      bin,
      [
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--storage-path",
        ":memory:",
        "--enable-test-commands",
        "--log-level",
        "WARNING",
      ],
      { stdio: "ignore" },
    );
    const uri = `mongodb://127.0.0.1:${port}/?replicaSet=secantus&appName=${appName}`;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const probe = new MongoClient(uri, { serverSelectionTimeoutMS: 300 });
      try {
        await probe.db("admin").command({ ping: 1 });
        await probe.close();
        return new FailPointServer(uri, proc);
      } catch (e) {
        await probe.close().catch(() => {});
        if (proc.exitCode !== null || Date.now() > deadline) {
          proc.kill();
          throw new Error(`secantusd-py on port ${port} did not start: ${e}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  stop(): void {
    this.proc.kill("SIGTERM");
  }
}
