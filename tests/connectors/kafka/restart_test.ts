/**
 * Kafka going away in the middle of a stream: a broker restart (the clients
 * reconnect, the kafka sink backs off and retries the batch) and a broker
 * that stops answering for longer than the clients wait (the kafka source's
 * pipeline fails with a retriable error and the runtime restarts it). In the
 * end every record arrived, at least once, without anyone stepping in. Uses a
 * private broker, since it is restarted and frozen.
 */
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { runPipeline } from "../../../core/pipeline.ts";
import { isRetriable, Runtime } from "../../../core/runtime.ts";
import { type KafkaServer, startKafka } from "../../../dev/kafka.ts";
import { assert, assertEquals } from "../../_assert.ts";
import { collector, fixture, kafkaSpecs, uniqueName } from "../../_kafka.ts";
import { deadline, waitUntil } from "../../_wait.ts";

/**
 * Stops the broker's JVM with SIGSTOP for `ms`, then lets it go on: requests
 * hang and time out, as with a broker on a machine that froze. The JVM is
 * found by its unique server.properties path (it is this test's own broker).
 */
async function freeze(kafka: KafkaServer, ms: number): Promise<void> {
  const properties = kafka.logFile.replace(/kafka\.log$/, "server.properties");
  let pid: number | undefined;
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes("kafka.Kafka") && cmdline.includes(properties)) pid = Number(entry.name);
    } catch { /* gone meanwhile */ }
  }
  if (pid === undefined) throw new Error(`cannot find the broker process of ${properties}`);
  Deno.kill(pid, "SIGSTOP");
  try {
    // The fault itself lasts `ms` (longer than the clients' request and
    // session timeouts): a duration of the scenario, not a wait for a result.
    await new Promise((resolve) => setTimeout(resolve, ms));
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
}

/** Distinct `seq` values the collector received. */
function distinctSeqs(records: readonly { value: unknown }[]): number {
  return new Set(records.map((r) => (r.value as { seq: number }).seq)).size;
}

Deno.test("kafka pipelines resume by themselves after a broker restart and a frozen broker", async () => {
  await using kafka = await startKafka();
  const topic = uniqueName("restart");
  const count = 6000;
  const { name, collector: got } = collector();
  const retry = { "errors.retry.timeout": "180000", "errors.retry.delay.max.ms": "2000" };
  const timeout = "3000";
  const specs = await kafkaSpecs([
    {
      name: uniqueName("restart-writer"),
      config: {
        "connector.class": "sequence",
        topic,
        count: String(count),
        "batch.size": "20",
        "interval.ms": "20",
        "sink.class": "kafka",
        "sink.topic.creation.default.partitions": "3",
        "sink.request.timeout.ms": timeout,
        ...retry,
      },
    },
    {
      name: uniqueName("restart-reader"),
      config: {
        "connector.class": "collect",
        collector: name,
        topics: topic,
        "max.poll.records": "100",
        "request.timeout.ms": timeout,
        "session.timeout.ms": "10000",
        "heartbeat.interval.ms": "1000",
        ...retry,
      },
    },
  ], kafka.brokers);
  const runtime = new Runtime(specs, { offsets: new MemoryOffsetStore() });
  const reports: { pipeline: string; status: string; error?: Error }[] = [];
  runtime.onReport((report) => reports.push(report));
  runtime.start();
  try {
    await got.waitFor(200, 60_000);
    await kafka.restart();
    const afterRestart = got.records.length;
    await got.waitFor(afterRestart + 200, 60_000);
    await freeze(kafka, 20_000);
    await waitUntil("every record", () => distinctSeqs(got.records) >= count, {
      timeoutMs: 120_000,
      intervalMs: 200,
    });
    assertEquals(distinctSeqs(got.records), count);
    // Both pipelines are still running: no run ended for good.
    assertEquals(reports, []);
  } finally {
    await runtime.stop();
  }
});

Deno.test("without a broker the kafka source and sink fail with retriable errors", async () => {
  // A port nobody listens on: connections are refused at once.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadBrokers = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  const { name } = collector();
  const [reader, writer] = await kafkaSpecs([
    {
      name: uniqueName("dead-reader"),
      config: {
        "connector.class": "collect",
        collector: name,
        topics: "t",
        "request.timeout.ms": "1000",
      },
    },
    {
      name: uniqueName("dead-writer"),
      config: {
        "connector.class": "records",
        fixture: fixture([{ topic: "t", key: { id: 1 }, value: { id: 1 } }]),
        "sink.class": "kafka",
        "sink.request.timeout.ms": "1000",
        // No retries inside the pipeline: show the error the runtime would back off on.
        "errors.retry.timeout": "0",
      },
    },
  ], deadBrokers);
  for (const spec of [reader, writer]) {
    const report = await deadline(
      spec.name,
      runPipeline(spec, { offsets: new MemoryOffsetStore() }),
      60_000,
    );
    assertEquals(report.status, "failed");
    assert(isRetriable(report.error), `${spec.name}: ${report.error?.message}`);
  }
});
