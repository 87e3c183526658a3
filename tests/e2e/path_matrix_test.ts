/**
 * The path matrix: one fixture table with every PostgreSQL type (as wide as
 * Debezium's PostgreSQL type tests) goes through every path Sluice offers,
 * and each target row must equal its source row, compared by
 * `md5(row::text)` per key on tables with the same column types:
 *
 * - batch: `postgres_query` → `postgres`;
 * - direct CDC: `postgres_cdc` → `postgres`, snapshot rows and streamed rows;
 * - CDC over Kafka: `postgres_cdc` → kafka sink → kafka source → `postgres`,
 *   snapshot rows and streamed rows.
 *
 * The CDC paths also update a row holding a 128 kB TOASTed value without
 * touching it: the target must keep that value.
 */
import { assertEquals } from "../_assert.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { specsFrom } from "../_batch.ts";
import { startStream, uniqueSlot } from "../_cdc.ts";
import { kafkaSpecs, uniqueName } from "../_kafka.ts";
import {
  assertSameRows,
  matrixFixture,
  rows,
  TOUCH,
  waitForStreamingSlot,
  waitForTarget,
} from "../_matrix.ts";

Deno.test("path matrix: batch postgres_query → postgres keeps every type byte for byte", async () => {
  const { f, columns } = await matrixFixture("matrix_batch");
  await using _ = f;
  const [spec] = await specsFrom({
    name: "matrix-batch",
    config: {
      "connector.class": "postgres_query",
      "connection.url": f.source.url,
      table: "public.matrix",
      mode: "full",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.matrix",
    },
  });
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.error?.message, undefined);
  await assertSameRows(f, columns);
});

Deno.test("path matrix: direct CDC postgres_cdc → postgres keeps every type, snapshot and stream", async () => {
  const { f, columns } = await matrixFixture("matrix_direct");
  await using _ = f;
  const slot = uniqueSlot("matrix_direct");
  const [spec] = await specsFrom({
    name: "matrix-direct",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "matrix_direct",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.matrix",
      "sink.delete.mode": "hard",
    },
  });
  const stream = startStream(spec);
  try {
    await waitForStreamingSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(rows(columns, 101));
    await waitForTarget(f, 10, 0);
    await f.sourceSql.unsafe(TOUCH);
    await waitForTarget(f, 10, 2);
    await assertSameRows(f, columns);
  } finally {
    const report = await stream.stop();
    assertEquals(report.error?.message, undefined);
  }
});

Deno.test("path matrix: CDC over Kafka postgres_cdc → kafka → postgres keeps every type, snapshot and stream", async () => {
  const { f, columns } = await matrixFixture("matrix_kafka");
  await using _ = f;
  const slot = uniqueSlot("matrix_kafka");
  const prefix = uniqueName("matrix");
  const [capture, consume] = await kafkaSpecs([
    {
      name: uniqueName("matrix-capture"),
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": f.source.url,
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": "matrix_kafka",
        "snapshot.mode": "initial",
        "poll.interval.ms": "20",
      },
    },
    {
      name: uniqueName("matrix-consume"),
      config: {
        "connector.class": "kafka",
        topics: `${prefix}.public.matrix`,
        "fetch.max.wait.ms": "50",
        "sink.class": "postgres",
        "sink.connection.url": f.target.url,
        "sink.table": "public.matrix",
        "sink.delete.mode": "hard",
      },
    },
  ]);
  const producer = startStream(capture);
  const consumer = startStream(consume);
  try {
    await waitForStreamingSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(rows(columns, 101));
    await waitForTarget(f, 10, 0);
    await f.sourceSql.unsafe(TOUCH);
    await waitForTarget(f, 10, 2);
    await assertSameRows(f, columns);
  } finally {
    const reports = [await producer.stop(), await consumer.stop()];
    assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
  }
});
