/**
 * A logical replication connection made with postgres.js, used the way
 * ../../../shared/FACTS.md describes: `replication: "database"`, one
 * connection, simple-protocol commands only, and `START_REPLICATION` read as
 * a duplex stream whose acknowledgements (Standby Status Updates) we send
 * ourselves. `sql.subscribe()` is not used: it acknowledges every LSN on
 * receipt, so changes made while Sluice is down would be lost.
 *
 * @module
 */
import postgres from "postgres";
import type { Duplex } from "node:stream";
import { formatLsn, parseLsn } from "./_lsn.ts";
import { standbyStatusUpdate } from "./_pgoutput.ts";

import { TEXT_SETTINGS } from "../../drivers/postgres.ts";

export { TEXT_SETTINGS };

/** A slot created by {@linkcode ReplicationConnection.createSlot}. */
export interface CreatedSlot {
  readonly consistentPoint: bigint;
  /** The exported snapshot's name, valid until this connection runs another command. */
  readonly snapshotName?: string;
}

/** One replication connection: creates slots and starts one stream. */
export class ReplicationConnection {
  readonly #sql: postgres.Sql;
  #stream?: ReplicationStream;
  #pid?: number;

  constructor(url: string, applicationName: string) {
    this.#sql = postgres(url, {
      max: 1,
      fetch_types: false,
      idle_timeout: undefined,
      max_lifetime: null,
      onnotice: () => {},
      connection: { application_name: applicationName, replication: "database", ...TEXT_SETTINGS },
    });
  }

  /**
   * `CREATE_REPLICATION_SLOT … LOGICAL pgoutput`. With `exportSnapshot`, the
   * returned snapshot shows the database exactly as of the slot's consistent
   * point: read it with `SET TRANSACTION SNAPSHOT` on another connection
   * while this one stays idle, then stream from the consistent point.
   */
  async createSlot(name: string, exportSnapshot: boolean): Promise<CreatedSlot> {
    // The keyword form is accepted by PostgreSQL 10 to 17; the option-list
    // form `(SNAPSHOT 'export')` only from 15.
    const rows = await this.#sql.unsafe<
      { consistent_point: string; snapshot_name: string | null }[]
    >(
      `CREATE_REPLICATION_SLOT ${quoteSlot(name)} LOGICAL pgoutput ${
        exportSnapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"
      }`,
    );
    const row = rows[0];
    return {
      consistentPoint: parseLsn(row.consistent_point),
      snapshotName: row.snapshot_name ?? undefined,
    };
  }

  /**
   * Tries to take the session-level advisory lock `key` (a signed 64-bit
   * integer) on this connection. The lock lives as long as the walsender:
   * when PostgreSQL ends it (the process died, or wal_sender_timeout passed
   * without a reply), the lock goes with it.
   */
  async tryLock(key: string): Promise<boolean> {
    const rows = await this.#sql.unsafe<{ locked: boolean; pid: number }[]>(
      `select pg_try_advisory_lock(${BigInt(key)}) as locked, pg_backend_pid() as pid`,
    );
    this.#pid = rows[0]?.pid;
    return rows[0]?.locked === true;
  }

  /** The walsender's process id, once {@linkcode tryLock} ran. */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** `START_REPLICATION SLOT … LOGICAL <start>` with pgoutput protocol version 1. */
  async start(slot: string, publication: string, start: bigint): Promise<ReplicationStream> {
    // publication_names is a string literal holding a list of identifiers.
    const command = `START_REPLICATION SLOT ${quoteSlot(slot)} LOGICAL ${
      formatLsn(start)
    } (proto_version '1', publication_names ${quoteLiteral(quoteIdentifier(publication))})`;
    const duplex = await this.#sql.unsafe(command).writable() as unknown as Duplex;
    this.#stream = new ReplicationStream(duplex);
    return this.#stream;
  }

  /** Ends the stream (CopyDone) and the connection. */
  async close(): Promise<void> {
    await this.#stream?.end();
    await this.#sql.end({ timeout: 1 });
  }
}

/** Slot names are lower-case letters, digits and underscores. */
function quoteSlot(name: string): string {
  if (!/^[a-z0-9_]{1,63}$/.test(name)) {
    throw new Error(
      `slot.name must use only lower-case letters, digits and underscores: current value is "${name}"`,
    );
  }
  return name;
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** Frames buffered ahead of the reader before the stream is paused (TCP backpressure). */
const HIGH_WATER = 1024;
const LOW_WATER = 256;

/**
 * The CopyBoth stream of `START_REPLICATION`, read frame by frame.
 *
 * Frames are taken in flowing mode (each `data` event is one CopyData
 * payload; paused-mode reads would merge them) into a small queue; when the
 * queue is full the stream is paused, postgres.js then pauses the socket, and
 * PostgreSQL keeps the backlog in its WAL.
 */
export class ReplicationStream {
  readonly #duplex: Duplex;
  #frames: Uint8Array[] = [];
  #head = 0;
  #paused = false;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #closed: Promise<void>;

  constructor(duplex: Duplex) {
    this.#duplex = duplex;
    this.#closed = new Promise((resolve) => duplex.once("close", () => resolve()));
    duplex.on("data", (chunk: Uint8Array) => {
      this.#frames.push(chunk);
      if (this.#frames.length - this.#head >= HIGH_WATER && !this.#paused) {
        this.#paused = true;
        duplex.pause();
      }
      this.#notify();
    });
    duplex.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    duplex.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    duplex.on("error", (error: Error) => {
      this.#error ??= error;
      this.#ended = true;
      this.#notify();
    });
  }

  /** Set once the stream broke or the server ended it. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** True once no more frames will come (check {@linkcode error} for why). */
  get ended(): boolean {
    return this.#ended;
  }

  /** The next buffered frame, or undefined when none is buffered now. */
  poll(): Uint8Array | undefined {
    if (this.#head >= this.#frames.length) return undefined;
    const frame = this.#frames[this.#head];
    this.#frames[this.#head++] = undefined as unknown as Uint8Array;
    if (this.#head > 4096 && this.#head * 2 > this.#frames.length) {
      this.#frames = this.#frames.slice(this.#head);
      this.#head = 0;
    }
    if (this.#paused && this.#frames.length - this.#head <= LOW_WATER) {
      this.#paused = false;
      this.#duplex.resume();
    }
    return frame;
  }

  /** Resolves when a frame is buffered, the stream ends, `ms` pass, or `signal` aborts. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#head < this.#frames.length || this.#ended || signal.aborted) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  /** Sends a Standby Status Update; a no-op once the stream is gone. */
  sendStatus(flushed: bigint, replyRequested = false): void {
    if (this.#ended || this.#duplex.destroyed || this.#duplex.writableEnded) return;
    this.#duplex.write(standbyStatusUpdate(flushed, flushed, flushed, replyRequested));
  }

  /** Ends the copy (CopyDone) and waits briefly for the server to close it. */
  async end(): Promise<void> {
    if (!this.#duplex.destroyed) {
      if (!this.#duplex.writableEnded) this.#duplex.end();
      this.#duplex.resume();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#closed,
        new Promise<void>((resolve) => timer = setTimeout(resolve, 2000)),
      ]);
      clearTimeout(timer);
      if (!this.#duplex.destroyed) this.#duplex.destroy();
    }
  }

  #notify(): void {
    this.#wake?.();
  }
}
