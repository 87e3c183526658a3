/**
 * Sluice's Produce request encoder (`drivers/_kafka_produce.ts`), read back
 * with the Kafka client's own decoder: request fields, one RecordBatch v2
 * per topic partition in order, every record field, producer id, epoch and
 * sequence numbers, and a CRC-32C the broker accepts. The broker's side is
 * covered by the Kafka sink and round-trip tests.
 */
import { Buffer } from "node:buffer";
import { crc32c, Reader, readRecordsBatch } from "@platformatic/kafka";
import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  encodeProduceRequest,
  type PartitionBatch,
  type ProduceRecord,
} from "../../drivers/_kafka_produce.ts";
import { RangeMessage } from "../../drivers/kafka.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array | null | undefined) =>
  data === null || data === undefined ? null : new TextDecoder().decode(data);

interface DecodedPartition {
  topic: string;
  partition: number;
  batch: ReturnType<typeof readRecordsBatch>;
  crcValid: boolean;
}

/** Reads a Produce v9–v11 request body. */
function decode(body: Uint8Array) {
  const reader = Reader.from(Buffer.from(body));
  const transactionalId = reader.readNullableString();
  const acks = reader.readInt16();
  const timeout = reader.readInt32();
  const partitions: DecodedPartition[] = [];
  reader.readArray((topicReader) => {
    const topic = topicReader.readString();
    topicReader.readArray((r) => {
      const partition = r.readInt32();
      const length = r.readUnsignedVarInt() - 1;
      const start = r.position;
      const batchBytes = Buffer.from(body.subarray(start, start + length));
      const batch = readRecordsBatch(r);
      assertEquals(r.position - start, length, "records length");
      const crcValid = crc32c(batchBytes.subarray(21)) === batch.crc;
      partitions.push({ topic, partition, batch, crcValid });
    });
  });
  reader.readTaggedFields();
  assertEquals(reader.remaining, 0, "nothing after the request");
  return { transactionalId, acks, timeout, partitions };
}

Deno.test("a produce request holds one batch per topic partition with every record field", () => {
  const big = new Uint8Array(20_000).fill(120);
  const record = (
    key: string | null,
    value: Uint8Array | string | null,
    timestamp: number,
    headers?: ProduceRecord["headers"],
  ): ProduceRecord => ({
    key: key === null ? null : bytes(key),
    value: typeof value === "string" ? bytes(value) : value,
    timestamp,
    headers,
  });
  const batches: PartitionBatch[] = [
    {
      topic: "a",
      partition: 2,
      firstSequence: 7,
      records: [
        record('{"id":1}', '{"v":"é€😀"}', 1_700_000_000_000),
        // Earlier than the first record of its batch: a negative delta.
        record('{"id":2}', "{}", 1_699_999_999_000),
        record('{"id":3}', "", 1_700_000_005_000),
      ],
    },
    { topic: "b", partition: 1, firstSequence: 2_147_483_000, records: [record(null, big, 1)] },
    {
      topic: "a",
      partition: 0,
      firstSequence: 0,
      records: [
        record("k0", null, 1_699_999_000_000, [["h", "1"], ["h", bytes("2")], ["é", ""]]),
      ],
    },
  ];
  const body = encodeProduceRequest(-1, 30_000, batches, {
    producerId: 12_345_678_901n,
    producerEpoch: 3,
  });
  const request = decode(body);
  assertEquals([request.transactionalId, request.acks, request.timeout], [null, -1, 30_000]);
  assertEquals(
    request.partitions.map((p) => [p.topic, p.partition, p.batch.records.length, p.crcValid]),
    [["a", 2, 3, true], ["a", 0, 1, true], ["b", 1, 1, true]],
  );
  const [a2, a0, b1] = request.partitions.map((p) => p.batch);
  for (const batch of [a2, a0, b1]) {
    assertEquals(batch.firstOffset, 0n);
    assertEquals(batch.magic, 2);
    assertEquals(batch.attributes, 0);
    assertEquals(batch.producerId, 12_345_678_901n);
    assertEquals(batch.producerEpoch, 3);
    assertEquals(batch.lastOffsetDelta, batch.records.length - 1);
  }
  assertEquals([a2.firstSequence, a0.firstSequence, b1.firstSequence], [7, 0, 2_147_483_000]);
  assertEquals([a2.firstTimestamp, a2.maxTimestamp], [1_700_000_000_000n, 1_700_000_005_000n]);
  assertEquals(a2.records.map((r) => [r.offsetDelta, r.timestampDelta]), [
    [0, 0n],
    [1, -1_000n],
    [2, 5_000n],
  ]);
  assertEquals(a2.records.map((r) => [text(r.key), text(r.value), r.headers.length]), [
    ['{"id":1}', '{"v":"é€😀"}', 0],
    ['{"id":2}', "{}", 0],
    ['{"id":3}', "", 0],
  ]);
  assertEquals([text(a0.records[0].key), a0.records[0].value], ["k0", null]);
  assertEquals(
    a0.records[0].headers.map(([name, value]) => [text(name), text(value)]),
    [["h", "1"], ["h", "2"], ["é", ""]],
  );
  assertEquals([b1.records[0].key, b1.records[0].value?.length], [null, 20_000]);
  assert(b1.records[0].value!.every((byte) => byte === 120));
});

Deno.test("records whose key and value are ranges of one buffer encode as their bytes would", () => {
  const shared = new Uint8Array(200).fill(0xee);
  let at = 5;
  /** Writes `key` and `value` into `shared` and gives the range record and the plain one. */
  const pair = (key: string | null, value: string | null): [ProduceRecord, ProduceRecord] => {
    const place = (part: string | null): [number, number] => {
      if (part === null) return [-1, at];
      const start = at;
      at += new TextEncoder().encodeInto(part, shared.subarray(at)).written;
      return [start, at];
    };
    const [keyStart, keyEnd] = place(key);
    const [valueStart, valueEnd] = place(value);
    const ranged = new RangeMessage("t", shared, keyStart, keyEnd, valueStart, valueEnd, [], 1);
    const plain = {
      key: key === null ? null : bytes(key),
      value: value === null ? null : bytes(value),
    };
    return [ranged, { ...plain, headers: [], timestamp: 1 }];
  };
  // A short key (copied byte by byte), a value over 32 bytes (copied as a
  // block), a tombstone, a keyless record, an empty value.
  const pairs = [
    pair('{"id":1}', '{"name":"Malmö","note":"over thirty-two bytes long"}'),
    pair('{"id":2}', null),
    pair(null, "{}"),
    pair('{"id":3}', ""),
  ];
  const request = (records: ProduceRecord[]) =>
    encodeProduceRequest(-1, 30_000, [{ topic: "t", partition: 0, firstSequence: 0, records }])
      .slice();
  const ranged = request(pairs.map(([range]) => range));
  const plain = request(pairs.map(([, bytes]) => bytes));
  assertEquals(ranged, plain);
  const [partition] = decode(ranged).partitions;
  assert(partition.crcValid);
  assertEquals(
    partition.batch.records.map((r) => [text(r.key), text(r.value)]),
    [
      ['{"id":1}', '{"name":"Malmö","note":"over thirty-two bytes long"}'],
      ['{"id":2}', null],
      [null, "{}"],
      ['{"id":3}', ""],
    ],
  );
});

Deno.test("without idempotence a batch carries no producer id, epoch or sequence", () => {
  const before = Date.now();
  const body = encodeProduceRequest(1, 5_000, [
    { topic: "t", partition: 0, firstSequence: 5, records: [{ key: null, value: bytes("x") }] },
  ]);
  const request = decode(body);
  assertEquals(request.acks, 1);
  const { batch, partition } = request.partitions[0];
  assertEquals(partition, 0);
  assertEquals([batch.producerId, batch.producerEpoch, batch.firstSequence], [-1n, -1, -1]);
  // No timestamp given: the time of encoding.
  assert(batch.firstTimestamp >= BigInt(before) && batch.firstTimestamp <= BigInt(Date.now()));
});

Deno.test("a request larger than the encoder's buffer grows it, and a transactional id marks the batches", () => {
  const value = new Uint8Array(300).fill(7);
  const batches: PartitionBatch[] = [0, 1, 2].map((partition) => ({
    topic: "grow",
    partition,
    firstSequence: 0,
    records: Array.from({ length: 667 - (partition === 2 ? 1 : 0) }, (_, i) => ({
      key: bytes(`key-${i * 3 + partition}`),
      value,
      timestamp: 1_700_000_000_000 + i,
    })),
  }));
  const body = encodeProduceRequest(-1, 1_000, batches, {
    producerId: 1n,
    producerEpoch: 0,
    transactionalId: "tx-é",
  });
  assert(body.length > 600_000);
  const request = decode(body);
  assertEquals(request.transactionalId, "tx-é");
  assertEquals(request.partitions.map((p) => [p.partition, p.batch.records.length, p.crcValid]), [
    [0, 667, true],
    [1, 667, true],
    [2, 666, true],
  ]);
  for (const { batch } of request.partitions) assertEquals(batch.attributes, 1 << 4);
  const keys = request.partitions[1].batch.records.map((r) => text(r.key));
  assertEquals(keys.slice(0, 3), ["key-1", "key-4", "key-7"]);
  // The buffer is reused: a small request after a large one is still whole.
  const small = [{ topic: "s", partition: 0, firstSequence: 0, records: [{ key: null, value }] }];
  assertEquals(decode(encodeProduceRequest(-1, 1, small)).partitions.length, 1);
});

Deno.test("a request refuses two batches of one partition and an empty batch", () => {
  const one = { key: null, value: bytes("v") };
  assertThrows(
    () =>
      encodeProduceRequest(-1, 1, [
        { topic: "t", partition: 1, firstSequence: 0, records: [one] },
        { topic: "t", partition: 1, firstSequence: 1, records: [one] },
      ]),
    Error,
    "Two batches for t:1",
  );
  assertThrows(
    () =>
      encodeProduceRequest(-1, 1, [{ topic: "t", partition: 0, firstSequence: 0, records: [] }]),
    Error,
    "Empty batch",
  );
});
