/**
 * Produce requests (versions 9 to 11) with uncompressed RecordBatch v2,
 * written in one pass into one reused buffer.
 *
 * `@platformatic/kafka` builds a writer object per field of every record and
 * concatenates them: the largest share of the memory a change event
 * allocated on its way to Kafka (about 1.8 of 6.6 kB sampled per event). Its
 * producer keeps everything else it does — producer id, sequence numbers,
 * leaders, retries of the same batches, the connection — and only the
 * request body comes from here, through the `Produce` API the producer asks
 * its connection for (`kGetApi`, see `drivers/kafka.ts`).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { crc32c, Writer } from "@platformatic/kafka";

/**
 * A message as the client hands it to the Produce API: partition already
 * chosen, key and value serialized (bytes as given), headers in a map whose
 * keys may be distinct objects with the same name bytes.
 */
export interface ProduceMessage {
  readonly topic: string;
  readonly partition?: number;
  readonly key?: Uint8Array | null;
  readonly value?: Uint8Array | null;
  readonly headers?: ReadonlyMap<Uint8Array, Uint8Array | null | undefined>;
  /** Milliseconds since the epoch; the time of encoding when absent. */
  readonly timestamp?: number | bigint;
}

/** The batch fields the client's producer decides (all absent without idempotence). */
export interface ProduceBatchOptions {
  readonly producerId?: bigint;
  readonly producerEpoch?: number;
  /** First sequence number of each `topic:partition` in this request. */
  readonly sequences?: { getWithDefault(key: string, fallback: number): number };
  readonly transactionalId?: string;
}

const MAGIC = 2;
const TRANSACTIONAL = 1 << 4;
/** RecordBatch bytes from its start up to the first record. */
const BATCH_HEADER = 61;
/** Offset in a RecordBatch where the CRC-covered part (attributes onwards) begins. */
const CRC_START = 21;

const encoder = new TextEncoder();

/**
 * A growable byte buffer written at a cursor. One instance serves every
 * request: {@linkcode encodeProduceRequest} returns a copy-free view, which
 * the connection copies into its framed request before anything else is
 * encoded.
 */
class ByteWriter {
  bytes = new Uint8Array(1 << 16);
  pos = 0;

  ensure(more: number): void {
    const need = this.pos + more;
    if (need <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < need) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.pos));
    this.bytes = grown;
  }

  int8(value: number): void {
    this.bytes[this.pos++] = value;
  }

  int16(value: number): void {
    const b = this.bytes;
    b[this.pos] = value >>> 8;
    b[this.pos + 1] = value;
    this.pos += 2;
  }

  int32(value: number): void {
    const b = this.bytes;
    const p = this.pos;
    b[p] = value >>> 24;
    b[p + 1] = value >>> 16;
    b[p + 2] = value >>> 8;
    b[p + 3] = value;
    this.pos = p + 4;
  }

  /** A signed 64-bit integer from a number (exact within ±2^53). */
  int64(value: number): void {
    const high = Math.floor(value / 4294967296);
    this.int32(high | 0);
    this.int32((value - high * 4294967296) | 0);
  }

  bigInt64(value: bigint): void {
    this.int32(Number(BigInt.asIntN(32, value >> 32n)));
    this.int32(Number(BigInt.asIntN(32, value)));
  }

  /** Unsigned varint of a number below 2^53. */
  unsignedVarint(value: number): void {
    const b = this.bytes;
    let p = this.pos;
    while (value >= 0x80) {
      b[p++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    b[p++] = value;
    this.pos = p;
  }

  /** Zigzag varint (Kafka's varint and varlong), for integers within ±2^52. */
  varint(value: number): void {
    this.unsignedVarint(value >= 0 ? value * 2 : -value * 2 - 1);
  }

  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** A compact string (unsigned varint of length + 1, then UTF-8), or null as 0. */
  compactString(text: string | undefined): void {
    if (text === undefined) {
      this.unsignedVarint(0);
      return;
    }
    const bytes = encoder.encode(text);
    this.ensure(5 + bytes.length);
    this.unsignedVarint(bytes.length + 1);
    this.raw(bytes);
  }
}

/** Bytes of the zigzag varint of `value`. */
function varintSize(value: number): number {
  let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
  let size = 1;
  while (zigzag >= 0x80) {
    zigzag = Math.floor(zigzag / 0x80);
    size++;
  }
  return size;
}

const writer = new ByteWriter();
/** Sizes of the records of the batch being written (length prefix excluded). */
let recordSizes = new Int32Array(4096);

function timestampOf(message: ProduceMessage, now: number): number {
  const timestamp = message.timestamp;
  return timestamp === undefined
    ? now
    : typeof timestamp === "bigint"
    ? Number(timestamp)
    : timestamp;
}

/** Bytes of a record after its length prefix. */
function recordSize(message: ProduceMessage, index: number, delta: number): number {
  const key = message.key;
  const value = message.value;
  let size = 1 + varintSize(delta) + varintSize(index);
  size += key ? varintSize(key.length) + key.length : 1;
  size += value ? varintSize(value.length) + value.length : 1;
  const headers = message.headers;
  size += varintSize(headers?.size ?? 0);
  if (headers) {
    for (const [name, data] of headers) {
      size += varintSize(name.length) + name.length;
      size += data ? varintSize(data.length) + data.length : 1;
    }
  }
  return size;
}

function writeRecord(message: ProduceMessage, index: number, delta: number, size: number): void {
  const out = writer;
  out.ensure(5 + size);
  out.varint(size);
  out.int8(0); // record attributes: none are defined
  out.varint(delta);
  out.varint(index);
  const key = message.key;
  if (key) {
    out.varint(key.length);
    out.raw(key);
  } else out.varint(-1);
  const value = message.value;
  if (value) {
    out.varint(value.length);
    out.raw(value);
  } else out.varint(-1);
  const headers = message.headers;
  out.varint(headers?.size ?? 0);
  if (headers) {
    for (const [name, data] of headers) {
      out.varint(name.length);
      out.raw(name);
      if (data) {
        out.varint(data.length);
        out.raw(data);
      } else out.varint(-1);
    }
  }
}

/**
 * Writes the COMPACT_RECORDS field of one partition: the length prefix, then
 * a RecordBatch v2 holding `messages` in order, uncompressed.
 */
function writeBatch(
  topic: string,
  partition: number,
  messages: readonly ProduceMessage[],
  options: ProduceBatchOptions,
  now: number,
): void {
  const count = messages.length;
  if (recordSizes.length < count) recordSizes = new Int32Array(count * 2);
  const first = timestampOf(messages[0], now);
  let max = first;
  let length = BATCH_HEADER;
  for (let i = 0; i < count; i++) {
    const timestamp = timestampOf(messages[i], now);
    if (timestamp > max) max = timestamp;
    const size = recordSize(messages[i], i, timestamp - first);
    recordSizes[i] = size;
    length += varintSize(size) + size;
  }
  const out = writer;
  out.ensure(5 + BATCH_HEADER);
  out.unsignedVarint(length + 1);
  const start = out.pos;
  out.int64(0); // base offset: the broker assigns offsets
  out.int32(length - 12); // batch length: what follows this field
  out.int32(-1); // partition leader epoch: set by the broker
  out.int8(MAGIC);
  const crcAt = out.pos;
  out.int32(0); // CRC-32C, written once the rest is in place
  out.int16(options.transactionalId === undefined ? 0 : TRANSACTIONAL);
  out.int32(count - 1); // last offset delta
  out.int64(first);
  out.int64(max);
  const idempotent = options.producerId !== undefined;
  out.bigInt64(options.producerId ?? -1n);
  out.int16(idempotent ? options.producerEpoch ?? 0 : -1);
  out.int32(
    idempotent && options.sequences
      ? options.sequences.getWithDefault(`${topic}:${partition}`, 0)
      : -1,
  );
  out.int32(count);
  for (let i = 0; i < count; i++) {
    const message = messages[i];
    writeRecord(message, i, timestampOf(message, now) - first, recordSizes[i]);
  }
  const end = out.pos;
  if (end - start !== length) {
    throw new Error(`RecordBatch size mismatch: computed ${length} bytes, wrote ${end - start}`);
  }
  const crc = crc32c(Buffer.from(out.bytes.buffer, start + CRC_START, end - start - CRC_START));
  out.pos = crcAt;
  out.int32(crc);
  out.pos = end;
}

/**
 * The body of a Produce request (v9–v11 share it): every message's record
 * in a batch per topic partition, partitions in the order they first appear,
 * records in the order given.
 */
export function encodeProduceRequest(
  acks: number,
  timeoutMs: number,
  messages: readonly ProduceMessage[],
  options: ProduceBatchOptions = {},
): Uint8Array {
  const byTopic = new Map<string, Map<number, ProduceMessage[]>>();
  for (const message of messages) {
    let partitions = byTopic.get(message.topic);
    if (!partitions) {
      partitions = new Map();
      byTopic.set(message.topic, partitions);
    }
    const partition = message.partition ?? 0;
    const list = partitions.get(partition);
    if (list) list.push(message);
    else partitions.set(partition, [message]);
  }
  const now = Date.now();
  const out = writer;
  out.pos = 0;
  out.ensure(16);
  out.compactString(options.transactionalId);
  out.ensure(16);
  out.int16(acks);
  out.int32(timeoutMs);
  out.unsignedVarint(byTopic.size + 1);
  for (const [topic, partitions] of byTopic) {
    out.compactString(topic);
    out.ensure(5);
    out.unsignedVarint(partitions.size + 1);
    for (const [partition, list] of partitions) {
      out.ensure(4);
      out.int32(partition);
      writeBatch(topic, partition, list, options, now);
      out.ensure(1);
      out.unsignedVarint(0); // partition tagged fields
    }
    out.ensure(1);
    out.unsignedVarint(0); // topic tagged fields
  }
  out.ensure(1);
  out.unsignedVarint(0); // request tagged fields
  return out.bytes.subarray(0, out.pos);
}

/**
 * {@linkcode encodeProduceRequest} as the client's request creator: a
 * writer over the shared buffer. The connection frames it (header, length)
 * into a new buffer as soon as this returns, before any other request is
 * encoded, so sharing is safe.
 */
export function produceRequestWriter(
  acks: number,
  timeoutMs: number,
  messages: readonly ProduceMessage[],
  options: ProduceBatchOptions = {},
): Writer {
  const body = encodeProduceRequest(acks, timeoutMs, messages, options);
  const request = Writer.create().append(
    Buffer.from(body.buffer, body.byteOffset, body.byteLength),
  );
  // acks=0: the broker sends no response, and the connection must not wait.
  if (acks === 0) request.context.noResponse = true;
  return request;
}
