/**
 * Config checks of issue 7: destinations (item 5), duplicate aliases
 * (item 8), folders of configs (item 10) and credentials kept out of every
 * message (item 14).
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { buildPipelines, loadPipelines, parseConnectors } from "../../core/config.ts";
import { ConfigError } from "../../api/errors.ts";
import { connect, connectionUrl } from "../../drivers/postgres.ts";
import { formatSummary } from "../../cli/summary.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";

async function problems(config: Record<string, unknown>): Promise<string[]> {
  try {
    await buildPipelines(parseConnectors({ name: "job", config }), {
      registry: builtinRegistry(),
    });
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map((i) => `${i.path}: ${i.message}`);
    throw error;
  }
  return [];
}

const batch = {
  "connector.class": "postgres_query",
  "connection.url": "postgres://u@127.0.0.1:5432/w",
  "table": "public.profile_360",
  "sink.class": "postgres",
  "sink.connection.url": "postgres://u@127.0.0.1:5432/c",
  "sink.table": "public.profile_summary",
};

const debezium = {
  "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
  "database.hostname": "127.0.0.1",
  "database.port": "5432",
  "database.dbname": "w",
  "topic.prefix": "w",
  "sink.class": "postgres",
  "sink.connection.url": "postgres://u@127.0.0.1:5432/c",
  "sink.table": "public.t",
};

Deno.test("database.port 70000 fails validation instead of connecting to 5432", async () => {
  assertEquals(await problems({ ...debezium, "database.port": "70000" }), [
    "job: config.database.port: must be a port number from 1 to 65535: current value is 70000",
  ]);
  assertEquals((await problems({ ...debezium, "database.port": "0" })).length, 1);
  assertEquals(await problems(debezium), []);
});

Deno.test("every malformed connection.url, source or sink, is reported with the key it came from", async () => {
  const found = await problems({
    ...batch,
    "connection.url": "postgres://u@127.0.0.1:70000/w",
    "sink.connection.url": "postgres://u@bad host name:5432/c",
  });
  assertEquals(found.length, 2, found.join("\n"));
  assertMatch(found[0], /^job: config\.connection\.url: is not a valid URL/);
  assertMatch(found[1], /^job: config\.sink\.connection\.url: is not a valid URL/);
  const more = [
    ["mysql://u@h:3306/w", /must start with postgres:\/\//],
    ["postgres:///w", /names no host/],
    ["postgres://u@h:5432", /names no database/],
    ["postgres://u@h:0/w", /port from 1 to 65535/],
    ["postgres://u@[::1]:5432/w", /IPv6/],
    ["postgres://u@h1:5432,h2:5433/w", /not a valid URL: several hosts are not supported/],
    [
      "postgres://u@h:99999/w",
      /not a valid URL: the port 99999 is not a port number from 1 to 65535/,
    ],
    ["postgres://u@h:5432x/w", /not a valid URL: the port "5432x" is not a number/],
  ] as const;
  for (const [url, expected] of more) {
    const [problem, ...rest] = await problems({ ...batch, "connection.url": url });
    assertEquals(rest, [], url);
    assertMatch(problem ?? "", expected, url);
  }
  assertEquals(
    await problems({ ...batch, "connection.url": "jdbc:postgresql://db.internal/w?user=u" }),
    [],
  );
});

Deno.test("a sink.fields.mapping entry that is not source:target fails validation, naming the entry", async () => {
  assertEquals(await problems({ ...batch, "sink.fields.mapping": "customer_email" }), [
    'job: config.sink.fields.mapping: each entry must be "source_field:target_column": current entry is "customer_email"',
  ]);
  assertEquals(await problems({ ...batch, "sink.fields.mapping": ":x, a:b:c" }), [
    'job: config.sink.fields.mapping: each entry must be "source_field:target_column": current entry is ":x"',
    'job: config.sink.fields.mapping: each entry must be "source_field:target_column": current entry is "a:b:c"',
  ]);
  assertEquals(await problems({ ...batch, "sink.fields.mapping": "a:x,b:x,a:y" }), [
    'job: config.sink.fields.mapping: maps both "a" and "b" to column "x"',
    'job: config.sink.fields.mapping: maps field "a" twice',
  ]);
  assertEquals(await problems({ ...batch, "sink.fields.mapping": " a : b ,c:d," }), []);
});

Deno.test("a sink option written without its sink. prefix is pointed at it", async () => {
  assertEquals(await problems({ ...batch, "delete.mode": "hard" }), [
    'job: config.delete.mode: is not an option of source "postgres_query" (did you mean "sink.delete.mode"?)',
  ]);
});

Deno.test("a database.hostname that is not a host, or given beside connection.url, is refused", async () => {
  for (const hostname of ["bad host", "db:5432", "/var/run/postgresql", "postgres://db", " "]) {
    const found = await problems({ ...debezium, "database.hostname": hostname });
    assert(
      found.some((p) => p.startsWith("job: config.database.hostname:")),
      `${JSON.stringify(hostname)}: ${found.join("; ")}`,
    );
  }
  const both = await problems({ ...debezium, "connection.url": "postgres://u@other:5432/w" });
  assertEquals(
    both,
    ["database.hostname", "database.port", "database.dbname"].map((key) =>
      `job: config.${key}: cannot be combined with connection.url: give one destination, not two`
    ),
  );
});

Deno.test("bootstrap.servers must be a list of host:port for Kafka sources and sinks", async () => {
  const consumer = {
    "connector.class": "kafka",
    "bootstrap.servers": "localhost",
    "topics": "t",
    "sink.class": "kafka",
    "sink.bootstrap.servers": "a:9092,b:99999",
  };
  const found = await problems(consumer);
  assertEquals(found, [
    'job: config.bootstrap.servers: must be a comma-separated list of host:port (port 1 to 65535): "localhost" is not one',
    'job: config.sink.bootstrap.servers: must be a comma-separated list of host:port (port 1 to 65535): "b:99999" is not one',
  ]);
  const fine = await problems({
    ...consumer,
    "bootstrap.servers": "PLAINTEXT://broker-1:9092, broker-2.internal:9093",
    "sink.bootstrap.servers": "127.0.0.1:9092",
  });
  assertEquals(fine, []);
});

Deno.test("a connection goes where the config says even when PGHOST, PGPORT and PGDATABASE point elsewhere", async () => {
  const db = await createTestDatabase("destination");
  const live = new URL(db.url);
  const saved = ["PGHOST", "PGPORT", "PGDATABASE"].map((k) => [k, Deno.env.get(k)] as const);
  Deno.env.set("PGHOST", live.hostname);
  Deno.env.set("PGPORT", live.port);
  Deno.env.set("PGDATABASE", db.name);
  try {
    // Named exactly: the database.* keys reach the live server and database.
    const named = connect(connectionUrl({
      "database.hostname": live.hostname,
      "database.port": Number(live.port),
      "database.user": "postgres",
      "database.dbname": db.name,
    }));
    const [here] = await named`select current_database() as db, inet_server_port() as port`;
    await named.end();
    assertEquals([here.db, String(here.port)], [db.name, live.port]);
    // A URL without a port means 5432, written out, not the environment's port.
    const noPort = connectionUrl({ "connection.url": `postgres://postgres@${live.hostname}/x` });
    assertEquals(new URL(noPort).port, "5432");
    // A port where nothing listens: the connection fails, it does not go elsewhere.
    const closed = connect(
      connectionUrl({
        "connection.url": `postgres://postgres@${live.hostname}:1/${db.name}`,
      }),
      { max: 1 },
    );
    const error = await assertRejects(() => closed`select 1`);
    await closed.end();
    assertMatch(String((error as { code?: string }).code ?? error.message), /ECONNREFUSED/);
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) Deno.env.delete(key);
      else Deno.env.set(key, value);
    }
    await db.drop();
  }
});

Deno.test("a transform or predicate alias listed twice is rejected, as Kafka Connect does", async () => {
  const found = await problems({
    ...batch,
    "transforms": "r,r",
    "transforms.r.type": "route",
    "transforms.r.regex": "(.*)",
    "transforms.r.replacement": "x.$1",
    "predicates": "p, p",
    "predicates.p.type": "topic_name_matches",
    "predicates.p.pattern": ".*",
  });
  assertEquals(found.sort(), [
    'job: config.predicates: lists the alias "p" more than once; aliases must be unique: current value is "p, p"',
    'job: config.transforms: lists the alias "r" more than once; aliases must be unique: current value is "r,r"',
  ]);
});

/** Runs the sluice command in its own process; its exit code and output. */
async function cli(args: string[]): Promise<{ code: number; text: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      new URL("../../deno.json", import.meta.url).pathname,
      new URL("../../cli/main.ts", import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    text: decoder.decode(output.stdout) + decoder.decode(output.stderr),
  };
}

async function withTree(files: Record<string, unknown>, fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "sluice_configs_" });
  try {
    for (const [path, json] of Object.entries(files)) {
      const full = `${dir}/${path}`;
      await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(full, JSON.stringify(json));
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("config folders are read at any depth, hidden folders skipped", async () => {
  await withTree({
    "batch/hourly.json": { name: "hourly", config: batch },
    "batch/deep/daily.json": [{ name: "daily", config: batch }],
    ".sluice/offsets.json": { not: "a pipeline" },
    "README.txt": "ignored",
  }, async (dir) => {
    const specs = await loadPipelines([dir], { registry: builtinRegistry() });
    assertEquals(specs.map((s) => s.name).sort(), ["daily", "hourly"]);
  });
});

Deno.test("validate, plan and run exit non-zero when a path holds no pipeline", async () => {
  await withTree({ "nested/empty/notes.txt": "no configs here" }, async (dir) => {
    const error = await assertRejects(() => loadPipelines([dir], { registry: builtinRegistry() }));
    assertMatch(error.message, /holds no pipeline/);
    for (const command of ["validate", "plan", "run"]) {
      const { code, text } = await cli([command, dir]);
      assertEquals(code, 2, `${command}: ${text}`);
      assertMatch(text, /holds no pipeline/);
    }
  });
  await withTree({ "a/b/job.json": { name: "job", config: batch } }, async (dir) => {
    const { code, text } = await cli(["validate", dir]);
    assertEquals(code, 0, text);
    assertMatch(text, /1 pipeline\(s\) valid/);
  });
});

Deno.test("a malformed connection.url never shows its password in the config error", async () => {
  const secret = "Sup3r-Secret";
  const found = await problems({
    ...batch,
    "connection.url": `postgres://postgres:${secret}@bad host name:5432/w`,
    "sink.connection.url": `jdbc:postgresql://db:5432/c?user=u&password=${secret}&x=1 2`,
    "sink.database.password": 42,
  });
  const message = new ConfigError(found.map((line) => ({ path: "p", message: line }))).message;
  assert(found.length >= 2, found.join("\n"));
  assert(!message.includes(secret), message);
  assertMatch(message, /postgres:\/\/postgres:\*\*\*@bad host name/);
});

Deno.test("a job failing with a password in its error shows it neither in logs nor in the summary", async () => {
  const secret = "Sup3r-Secret";
  await withTree({
    "job.json": {
      name: "leaky",
      config: {
        "connector.class": "./leaky_source.ts",
        "url": `postgres://app:${secret}@db.internal:5432/w?password=${secret}`,
        "sink.class": "kafka",
        "sink.bootstrap.servers": testKafkaBrokers(),
      },
    },
  }, async (dir) => {
    const mod = new URL("../../mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/leaky_source.ts`,
      `import { z } from "zod";
       import { defineSource } from "${mod}";
       export default defineSource({
         name: "leaky", mode: "batch", summary: "Fails with its URL in the message.",
         config: z.strictObject({ url: z.string().describe("A URL.") }),
         create(config, context) {
           return {
             async *read() {
               context.logger.warn("connecting to " + config.url);
               throw new Error("Invalid URL: '" + config.url + "'");
             },
             async close() {},
           };
         },
       });`,
    );
    const { code, text } = await cli([
      "job",
      "run",
      "leaky",
      dir,
      "--offsets",
      `${dir}/offsets.json`,
      "--log-format",
      "json",
    ]);
    assertEquals(code, 1, text);
    assertMatch(text, /postgres:\/\/app:\*\*\*@db\.internal/);
    assert(!text.includes(secret), text);
  });
  // The summary hides what a report's error holds, whoever built the report.
  const summary = formatSummary([{
    pipeline: "p",
    status: "failed",
    attempts: 1,
    durationMs: 5,
    stats: { read: 0, written: 0, filtered: 0, deadLettered: 0 },
    validation: [],
    error: new Error(`connect postgres://u:${secret}@h/db failed`),
  } as never]);
  assert(!summary.includes(secret), summary);
});
