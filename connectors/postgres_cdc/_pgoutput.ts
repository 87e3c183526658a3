/**
 * Decodes the frames of a logical replication stream: the CopyData payloads
 * `w` (XLogData, carrying one pgoutput message) and `k` (primary keepalive),
 * and the pgoutput messages of protocol version 1.
 *
 * Tuple values arrive in text format; they are returned as strings, with
 * `null` for SQL NULL and {@linkcode UNCHANGED_TOAST} for a TOASTed value the
 * update did not change (pgoutput's `u` kind, which carries no data).
 *
 * @module
 */

/** A TOASTed column value that the change left untouched and pgoutput did not send. */
export const UNCHANGED_TOAST: unique symbol = Symbol("unchanged TOAST value");

/** One column value of a tuple. */
export type TupleValue = string | null | typeof UNCHANGED_TOAST;

/** A column of a relation, as the Relation message describes it. */
export interface RelationColumn {
  readonly name: string;
  readonly typeOid: number;
  readonly typeModifier: number;
  /** Part of the replica identity (with REPLICA IDENTITY FULL: every column). */
  readonly identity: boolean;
}

/** A table as the Relation message describes it. */
export interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly table: string;
  /** REPLICA IDENTITY: `d` default (primary key), `n` nothing, `f` full, `i` index. */
  readonly replicaIdentity: string;
  readonly columns: readonly RelationColumn[];
}

/** A pgoutput message. */
export type PgOutputMessage =
  | { type: "begin"; finalLsn: bigint; commitTime: bigint; xid: number }
  | { type: "commit"; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  | { type: "origin"; lsn: bigint; name: string }
  | { type: "relation"; relation: Relation }
  | { type: "type"; oid: number; schema: string; name: string }
  | { type: "insert"; relationOid: number; tuple: TupleValue[] }
  | {
    type: "update";
    relationOid: number;
    /** `K`: the old key (the key changed); `O`: the whole old row (REPLICA IDENTITY FULL). */
    oldKind?: "K" | "O";
    oldTuple?: TupleValue[];
    tuple: TupleValue[];
  }
  | { type: "delete"; relationOid: number; oldKind: "K" | "O"; oldTuple: TupleValue[] }
  | { type: "truncate"; relationOids: number[]; cascade: boolean; restartIdentity: boolean }
  | { type: "message"; lsn: bigint; prefix: string; content: Uint8Array; transactional: boolean }
  | { type: "unknown"; tag: string };

/** A CopyData payload of the replication stream. */
export type ReplicationFrame =
  | {
    kind: "xlog";
    /** Where the message's WAL record starts (for a change: the change's LSN). */
    walStart: bigint;
    walEnd: bigint;
    message: PgOutputMessage;
  }
  | { kind: "keepalive"; walEnd: bigint; replyRequested: boolean }
  | { kind: "unknown"; tag: number };

/** Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
export const PG_EPOCH_MICROS = 946_684_800_000_000n;

const utf8 = new TextDecoder("utf-8", { fatal: false });

/** Decodes one CopyData payload of a `START_REPLICATION … LOGICAL` stream. */
export function decodeFrame(bytes: Uint8Array): ReplicationFrame {
  const tag = bytes[0];
  if (tag === 0x77) { // w
    return {
      kind: "xlog",
      walStart: xlogWalStart(bytes),
      walEnd: readUint64(bytes, 9),
      message: decodeXLogMessage(bytes),
    };
  }
  if (tag === 0x6b) { // k
    return { kind: "keepalive", walEnd: readUint64(bytes, 1), replyRequested: bytes[17] === 1 };
  }
  return { kind: "unknown", tag };
}

/**
 * The pgoutput message of an XLogData (`w`) frame, read in place: the
 * capture loop takes frames apart with this and {@linkcode xlogWalStart}
 * instead of {@linkcode decodeFrame}, so a frame costs no wrapper object
 * and no LSN it does not need.
 */
export function decodeXLogMessage(frame: Uint8Array): PgOutputMessage {
  return decodeAt(frame, 25);
}

/** Where the WAL record of an XLogData (`w`) frame's message starts. */
export function xlogWalStart(frame: Uint8Array): bigint {
  return readUint64(frame, 1);
}

/** A keepalive's (`k`) WAL end. */
export function keepaliveWalEnd(frame: Uint8Array): bigint {
  return readUint64(frame, 1);
}

function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

function readUint64(bytes: Uint8Array, at: number): bigint {
  const high = readUint32(bytes, at);
  const low = readUint32(bytes, at + 4);
  // Positions below 2^53 (every LSN in practice) skip the bigint arithmetic.
  return high < 0x200000 ? BigInt(high * 0x100000000 + low) : (BigInt(high) << 32n) | BigInt(low);
}

/** Builds a Standby Status Update (`r`) acknowledging the given positions. */
export function standbyStatusUpdate(
  written: bigint,
  flushed: bigint,
  applied: bigint,
  replyRequested = false,
): Uint8Array {
  const bytes = new Uint8Array(34);
  const view = new DataView(bytes.buffer);
  bytes[0] = 0x72; // r
  view.setBigUint64(1, written);
  view.setBigUint64(9, flushed);
  view.setBigUint64(17, applied);
  view.setBigInt64(25, BigInt(Date.now()) * 1000n - PG_EPOCH_MICROS);
  bytes[33] = replyRequested ? 1 : 0;
  return bytes;
}

/**
 * A cursor over one message's bytes. Integers are read byte by byte rather
 * than through a DataView: a change event is three frames, and a view per
 * frame showed among the allocations per event.
 */
class Reader {
  #bytes: Uint8Array;
  position: number;

  constructor(bytes: Uint8Array, position: number) {
    this.#bytes = bytes;
    this.position = position;
  }

  /** Points the reader at another message (one reader serves every message). */
  reset(bytes: Uint8Array, position: number): this {
    this.#bytes = bytes;
    this.position = position;
    return this;
  }

  byte(): number {
    return this.#bytes[this.position++];
  }
  int16(): number {
    const bytes = this.#bytes;
    const at = this.position;
    this.position += 2;
    return ((bytes[at] << 24) | (bytes[at + 1] << 16)) >> 16;
  }
  int32(): number {
    const value = readUint32(this.#bytes, this.position) | 0;
    this.position += 4;
    return value;
  }
  uint32(): number {
    const value = readUint32(this.#bytes, this.position);
    this.position += 4;
    return value;
  }
  uint64(): bigint {
    const value = readUint64(this.#bytes, this.position);
    this.position += 8;
    return value;
  }
  int64(): bigint {
    const value = BigInt.asIntN(64, readUint64(this.#bytes, this.position));
    this.position += 8;
    return value;
  }
  /** A NUL-terminated string. */
  string(): string {
    const end = this.#bytes.indexOf(0, this.position);
    const value = utf8.decode(this.#bytes.subarray(this.position, end));
    this.position = end + 1;
    return value;
  }
  bytes(length: number): Uint8Array {
    const value = this.#bytes.subarray(this.position, this.position + length);
    this.position += length;
    return value;
  }
  tuple(): TupleValue[] {
    const count = this.int16();
    const values: TupleValue[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const kind = this.byte();
      if (kind === 0x74) { // t
        const length = this.int32();
        values[i] = utf8.decode(this.bytes(length));
      } else if (kind === 0x6e) values[i] = null; // n
      else if (kind === 0x75) values[i] = UNCHANGED_TOAST; // u
      else throw new Error(`Unexpected tuple value kind "${String.fromCharCode(kind)}"`);
    }
    return values;
  }
}

/** Decodes one pgoutput (protocol version 1) message. */
export function decodeMessage(bytes: Uint8Array): PgOutputMessage {
  return decodeAt(bytes, 0);
}

const sharedReader = new Reader(new Uint8Array(0), 0);

function decodeAt(bytes: Uint8Array, start: number): PgOutputMessage {
  // Decoding is synchronous, so one reader serves every call.
  const reader = sharedReader.reset(bytes, start);
  const tag = String.fromCharCode(reader.byte());
  switch (tag) {
    case "B":
      return {
        type: "begin",
        finalLsn: reader.uint64(),
        commitTime: reader.int64(),
        xid: reader.uint32(),
      };
    case "C": {
      reader.byte(); // flags, unused
      return {
        type: "commit",
        commitLsn: reader.uint64(),
        endLsn: reader.uint64(),
        commitTime: reader.int64(),
      };
    }
    case "O":
      return { type: "origin", lsn: reader.uint64(), name: reader.string() };
    case "R": {
      const oid = reader.uint32();
      const schema = reader.string();
      const table = reader.string();
      const replicaIdentity = String.fromCharCode(reader.byte());
      const count = reader.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = reader.byte();
        columns.push({
          name: reader.string(),
          typeOid: reader.uint32(),
          typeModifier: reader.int32(),
          identity: (flags & 1) === 1,
        });
      }
      return { type: "relation", relation: { oid, schema, table, replicaIdentity, columns } };
    }
    case "Y":
      return { type: "type", oid: reader.uint32(), schema: reader.string(), name: reader.string() };
    case "I": {
      const relationOid = reader.uint32();
      reader.byte(); // N
      return { type: "insert", relationOid, tuple: reader.tuple() };
    }
    case "U": {
      const relationOid = reader.uint32();
      const kind = String.fromCharCode(reader.byte());
      let oldKind: "K" | "O" | undefined;
      let oldTuple: TupleValue[] | undefined;
      if (kind === "K" || kind === "O") {
        oldKind = kind;
        oldTuple = reader.tuple();
        reader.byte(); // N
      }
      return { type: "update", relationOid, oldKind, oldTuple, tuple: reader.tuple() };
    }
    case "D": {
      const relationOid = reader.uint32();
      const oldKind = String.fromCharCode(reader.byte()) as "K" | "O";
      return { type: "delete", relationOid, oldKind, oldTuple: reader.tuple() };
    }
    case "T": {
      const count = reader.int32();
      const options = reader.byte();
      const relationOids: number[] = [];
      for (let i = 0; i < count; i++) relationOids.push(reader.uint32());
      return {
        type: "truncate",
        relationOids,
        cascade: (options & 1) === 1,
        restartIdentity: (options & 2) === 2,
      };
    }
    case "M": {
      const transactional = reader.byte() === 1;
      const lsn = reader.uint64();
      const prefix = reader.string();
      const length = reader.int32();
      return { type: "message", lsn, prefix, content: reader.bytes(length), transactional };
    }
    default:
      return { type: "unknown", tag };
  }
}
