/**
 * Resources close through `Symbol.asyncDispose` as well as `close()`: the
 * runtime, offset stores, plugin sources and sinks, and the drivers' clients
 * all let `await using` release them when a scope ends, even by a throw.
 */
import { z } from "zod";
import { assert, assertEquals, assertRejects } from "../_assert.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { uniqueName } from "../_kafka.ts";
import {
  buildPipelines,
  defineSink,
  defineSource,
  disposable,
  FileOffsetStore,
  MemoryOffsetStore,
  Registry,
  Runtime,
} from "../../mod.ts";
import { connect } from "../../drivers/postgres.ts";
import { KafkaAdmin, KafkaConsumer, KafkaProducer } from "../../drivers/kafka.ts";

/** Replaces `target.close` with a wrapper that counts calls and runs the original. */
function countCloses(target: { close(): Promise<void> }): { count: number } {
  const calls = { count: 0 };
  const original = target.close.bind(target);
  target.close = () => {
    calls.count++;
    return original();
  };
  return calls;
}

Deno.test("a file offset store leaves its scope only once pending writes are on disk", async () => {
  const folder = await Deno.makeTempDir();
  const path = `${folder}/offsets.json`;
  let pending: Promise<void>;
  {
    await using store = new FileOffsetStore(path);
    pending = store.write("profile_sync", { watermark: "2024-05-01 10:00:00+00" });
  }
  // Read before awaiting the write: disposal alone must have waited for it.
  assertEquals(JSON.parse(await Deno.readTextFile(path)), {
    profile_sync: { watermark: "2024-05-01 10:00:00+00" },
  });
  await pending;
  await Deno.remove(folder, { recursive: true });
});

Deno.test("a memory offset store can be used with await using", async () => {
  await using store = new MemoryOffsetStore();
  await store.write("a", 1);
  assertEquals(await store.read("a"), 1);
});

Deno.test("a runtime stops its streams and closes their plugins when its scope ends", async () => {
  const events: string[] = [];
  const { promise: running, resolve: started } = Promise.withResolvers<void>();
  const waiting = defineSource({
    name: "waiting",
    mode: "stream",
    summary: "Reads nothing until stopped.",
    config: z.strictObject({}),
    create: (_config, context) => ({
      // A stream with nothing to read: it only waits to be stopped.
      // deno-lint-ignore require-yield
      async *read() {
        started();
        await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
      },
      close: () => {
        events.push("source closed");
        return Promise.resolve();
      },
    }),
  });
  const discard = defineSink({
    name: "discard",
    summary: "Accepts and forgets.",
    config: z.strictObject({}),
    create: () => ({
      write: (batch) => Promise.resolve({ written: batch.records.length }),
      close: () => {
        events.push("sink closed");
        return Promise.resolve();
      },
    }),
  });
  const specs = await buildPipelines(
    [{
      name: "forever",
      config: { "connector.class": "waiting", "sink.class": "discard" },
      baseDir: ".",
    }],
    { registry: new Registry([waiting, discard]) },
  );
  let signal: AbortSignal;
  {
    await using runtime = new Runtime(specs, { offsets: new MemoryOffsetStore() });
    signal = runtime.signal;
    assert(runtime.start(), "a stream keeps the runtime running");
    await running;
    assertEquals(events, []);
  }
  assert(signal.aborted, "the runtime's signal is aborted after its scope");
  assertEquals(events.sort(), ["sink closed", "source closed"]);
});

Deno.test("disposable() closes a plugin's sink when the scope throws", async () => {
  let closed = 0;
  const plugin = defineSink({
    name: "fragile",
    summary: "Fails every write.",
    config: z.strictObject({}),
    create: () => ({
      write: () => Promise.reject(new Error("target is read-only")),
      close: () => {
        closed++;
        return Promise.resolve();
      },
    }),
  });
  const error = await assertRejects(async () => {
    await using sink = disposable(
      await plugin.create({}, {
        pipeline: "p",
        logger: (await import("@logtape/logtape")).getLogger(["test"]),
        signal: new AbortController().signal,
      }),
    );
    await sink.write({ records: [], reject: () => Promise.resolve() });
  });
  assertEquals(error.message, "target is read-only");
  assertEquals(closed, 1);
});

Deno.test("disposable() keeps a resource's own asyncDispose", async () => {
  let disposed = 0;
  const resource = {
    close: () => Promise.reject(new Error("close must not be called")),
    [Symbol.asyncDispose]: () => {
      disposed++;
      return Promise.resolve();
    },
  };
  {
    await using _ = disposable(resource);
  }
  assertEquals(disposed, 1);
});

Deno.test("a postgres connection ends its sessions when its scope ends", async () => {
  const db = await createTestDatabase("dispose");
  const name = uniqueName("dispose");
  try {
    {
      await using sql = connect(db.url, { applicationName: name });
      const [{ one }] = await sql`select 1 as one`;
      assertEquals(one, 1);
    }
    await using admin = connect(db.url, { max: 1 });
    await waitUntil("the disposed connection's session to end", async () => {
      const [{ sessions }] = await admin`
        select count(*)::int as sessions from pg_stat_activity where application_name = ${name}`;
      return sessions === 0;
    });
  } finally {
    await db.drop();
  }
});

Deno.test("kafka admin, producer and consumer close when their scope ends", async () => {
  const brokers = [testKafkaBrokers()];
  const topic = uniqueName("dispose");
  const closes: { count: number }[] = [];
  {
    await using admin = new KafkaAdmin({ clientId: "sluice-tests", bootstrapServers: brokers });
    closes.push(countCloses(admin));
    await admin.createTopic(topic, { partitions: 1, replicationFactor: 1 });

    await using producer = new KafkaProducer({
      clientId: "sluice-tests",
      bootstrapServers: brokers,
    });
    closes.push(countCloses(producer));
    const bytes = new TextEncoder().encode("hello");
    await producer.send([{ topic, key: null, value: bytes }]);

    await using consumer = new KafkaConsumer({
      clientId: "sluice-tests",
      bootstrapServers: brokers,
      groupId: uniqueName("dispose-group"),
      subscription: { topics: [topic] },
      autoOffsetReset: "earliest",
      maxPollRecords: 10,
    });
    closes.push(countCloses(consumer));
    const message = await waitUntil(
      "the produced message",
      async () => (await consumer.poll(500))[0],
    );
    assertEquals(new TextDecoder().decode(message.value!), "hello");
    assertEquals(closes.map((c) => c.count), [0, 0, 0]);
  }
  assertEquals(closes.map((c) => c.count), [1, 1, 1]);
});
