/**
 * What a new user meets in the first hour (issue "The first hour"): plain
 * log lines in files, left-over temporary files, option docs and `plugins`
 * on a plugin file, and the errors of a wrong config.
 */
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { describeOptions } from "../../api/options.ts";
import { FileOffsetStore } from "../../core/offsets.ts";
import { formatSummary } from "../../cli/summary.ts";
import { runDeno as runDenoIn } from "../_process.ts";
import { connect } from "../../drivers/postgres.ts";
import { createTestDatabase } from "../_services.ts";
import postgresCdc from "../../connectors/postgres_cdc/mod.ts";

const root = new URL("../..", import.meta.url).pathname;

/** `deno` with `args` in the repository's root. */
function runDeno(args: string[], env: Record<string, string> = {}) {
  return runDenoIn(args, { cwd: root, env });
}

const LOG_LINE = `
import { setUpLogging, tearDownLogging } from "./core/_log.ts";
import { getLogger } from "@logtape/logtape";
await setUpLogging({ format: "text" });
getLogger(["sluice"]).info("Pipeline {name} {status}", { name: "orders_cdc", status: "stopped" });
await tearDownLogging();
`;

Deno.test("--log-format text into a pipe writes plain lines with bare strings", async () => {
  const { code, stderr } = await runDeno(["eval", LOG_LINE]);
  assertEquals(code, 0, stderr);
  assert(!stderr.includes("\x1b["), `ANSI escapes in ${JSON.stringify(stderr)}`);
  assertMatch(stderr, /sluice: Pipeline orders_cdc stopped\n/);
});

Deno.test("the offset store removes temporary files a crash left behind", async () => {
  const folder = await Deno.makeTempDir();
  try {
    const path = `${folder}/offsets.json`;
    await Deno.writeTextFile(path, JSON.stringify({ a: 1 }));
    const stale = `${path}.${crypto.randomUUID()}.tmp`;
    const unrelated = `${folder}/other.json.${crypto.randomUUID()}.tmp`;
    await Deno.writeTextFile(stale, "{ torn");
    await Deno.writeTextFile(unrelated, "not ours");
    assertEquals(await new FileOffsetStore(path).read("a"), 1);
    const left = [];
    for await (const entry of Deno.readDir(folder)) left.push(entry.name);
    assertEquals(left.sort(), ["offsets.json", unrelated.slice(folder.length + 1)].sort());
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("option docs show an enum's values and its real default", () => {
  const snapshot = describeOptions(postgresCdc.config).find((o) => o.key === "snapshot.mode");
  assertEquals(snapshot?.required, false);
  assertEquals(snapshot?.default, "initial");
  assertMatch(snapshot?.type ?? "", /^"initial" \| "initial_only" \| .*"no_data"$/);
});

Deno.test("sluice plugins describes a plugin file given by path", async () => {
  const found = await runDeno([
    "run",
    "-A",
    "cli/main.ts",
    "plugins",
    "./tests/fixtures/numbers_source.ts",
  ]);
  assertEquals(found.code, 0, found.stderr);
  assertMatch(found.stdout, /^numbers \(source, batch\): Emits the numbers/);
  assertMatch(found.stdout, /count: integer \(default 10\)/);
  const missing = await runDeno(["run", "-A", "cli/main.ts", "plugins", "./no_such_plugin.ts"]);
  assertEquals(missing.code, 2);
  assertMatch(missing.stderr, /cannot load plugin module "\.\/no_such_plugin\.ts"/);
  assertMatch(missing.stderr, /kafka \(source\), kafka \(sink\)/);
});

Deno.test("JSON log lines render the message like the text lines and keep bigints", async () => {
  const script = LOG_LINE.replace('format: "text"', 'format: "json"').replace(
    'status: "stopped" }',
    'status: "stopped", lsn: 22n, error: new Error("boom") }',
  );
  const { code, stderr } = await runDeno(["eval", script]);
  assertEquals(code, 0, stderr);
  const line = JSON.parse(stderr.trim());
  assertEquals(line.message, "Pipeline orders_cdc stopped");
  assertEquals(line.level, "INFO");
  assertEquals(line.properties.lsn, "22");
  assertEquals(line.properties.error.message, "boom");
});

/** Writes `config` to a temporary file and runs `sluice <command>` on it. */
async function sluiceOn(
  command: string | string[],
  config: unknown,
  env: Record<string, string> = {},
) {
  const folder = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${folder}/pipeline.json`, JSON.stringify(config));
    const args = ["run", "-A", "--unstable-cron", "cli/main.ts", ...[command].flat()];
    const options = ["--listen", "off", "--offsets", `${folder}/offsets.json`];
    return await runDeno([...args, `${folder}/pipeline.json`, ...options], env);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
}

const DB = "postgres://u@127.0.0.1:5432/d";

Deno.test("a typo of a required transform option is named with a suggestion", async () => {
  const { code, stderr } = await sluiceOn("validate", {
    name: "m",
    config: {
      "connector.class": "postgres_query",
      "connection.url": DB,
      table: "public.t",
      transforms: "m",
      "transforms.m.type": "mask",
      "transforms.m.feilds": "a",
      "transforms.m.strategy": "redact",
      "sink.class": "postgres",
      "sink.connection.url": DB,
      "sink.table": "public.t",
    },
  });
  assertEquals(code, 2);
  assertMatch(stderr, /- m: config\.transforms\.m\.fields: is required\n/);
  assertMatch(
    stderr,
    /- m: config\.transforms\.m\.feilds: is not an option of transform "mask" \(did you mean "transforms\.m\.fields"\?\)/,
  );
});

Deno.test("a CDC pipeline into postgres whose topics are no table names fails validation", async () => {
  const { code, stderr } = await sluiceOn("validate", {
    name: "c",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": DB,
      "topic.prefix": "shop",
      "table.include.list": "public.orders",
      "sink.class": "postgres",
      "sink.connection.url": DB,
    },
  });
  assertEquals(code, 2);
  assertMatch(
    stderr,
    /- c: config\.sink: records of topic "shop\.public\.orders" would go to table "shop\.public\.orders" .*route the topics to table names .*or, for one captured table only, set sink\.table/,
  );
});

Deno.test("a CDC pipeline of two tables into one fixed sink.table fails validation, pointing at table.name.format", async () => {
  const config = {
    "connector.class": "postgres_cdc",
    "connection.url": DB,
    "topic.prefix": "shop",
    "table.include.list": "public.orders,public.customers",
    "sink.class": "postgres",
    "sink.connection.url": DB,
    "sink.table": "public.orders",
  };
  const { code, stderr } = await sluiceOn("validate", { name: "c", config });
  assertEquals(code, 2);
  assertMatch(
    stderr,
    /- c: config\.sink: sink\.table writes every record to the one table "public\.orders", but the records come from 2 topics \("shop\.public\.orders", "shop\.public\.customers"\), whose rows would be mixed there: to give each topic its own table, remove sink\.table and let sink\.table\.name\.format \(default "\$\{topic\}"\) name it from the topic/,
  );
  assert(!stderr.includes("schema.evolution"), stderr);
  // A fixed table.name.format is the same mistake.
  const { "sink.table": _, ...unfixed } = config;
  const format = await sluiceOn("validate", {
    name: "c",
    config: { ...unfixed, "sink.table.name.format": "public.orders" },
  });
  assertEquals(format.code, 2);
  assertMatch(format.stderr, /sink\.table\.name\.format writes every record to the one table/);
  // Routed to table names, or merged into one topic on purpose: accepted.
  const route = {
    transforms: "route",
    "transforms.route.type": "route",
    "transforms.route.regex": "[^.]+\\.([^.]+\\.[^.]+)",
  };
  const routed = await sluiceOn("validate", {
    name: "c",
    config: { ...unfixed, ...route, "transforms.route.replacement": "$1" },
  });
  assertEquals(routed.code, 0, routed.stderr);
  const merged = await sluiceOn("validate", {
    name: "c",
    config: { ...config, ...route, "transforms.route.replacement": "all" },
  });
  assertEquals(merged.code, 0, merged.stderr);
});

Deno.test("validation without a broker says how to give one, and warns of database.server.name", async () => {
  const config = {
    "connector.class": "postgres_cdc",
    "connection.url": DB,
    "database.server.name": "shop",
    "table.include.list": "public.orders",
  };
  const missing = await sluiceOn("validate", { name: "k", config });
  assertEquals(missing.code, 2);
  assertMatch(
    missing.stderr,
    /- k: config\.sink\.bootstrap\.servers: is required: give the Kafka broker with --bootstrap host:port or SLUICE_BOOTSTRAP_SERVERS/,
  );
  const given = await sluiceOn("validate", { name: "k", config }, {
    SLUICE_BOOTSTRAP_SERVERS: "127.0.0.1:9092",
  });
  assertEquals(given.code, 0, given.stderr);
  assertMatch(
    given.stdout,
    /warning: k: database\.server\.name is deprecated: use topic\.prefix \(taken from it: "shop"\)/,
  );
});

Deno.test("the run summary explains read against written with a skipped column", () => {
  const summary = formatSummary([{
    pipeline: "profile_sync",
    status: "succeeded",
    attempts: 1,
    durationMs: 1200,
    stats: { read: 10, written: 6, skipped: 2, filtered: 1, deadLettered: 1 },
    validation: [],
  } as never]);
  const [header, , row] = summary.split("\n");
  assertMatch(header, /read\s+written\s+skipped\s+filtered\s+dead/);
  assertMatch(row, /profile_sync\s+succeeded\s+10\s+6\s+2\s+1\s+1\s+1\.2 s/);
});

Deno.test("the run summary shows what a reconciliation that passed compared", () => {
  const summary = formatSummary([{
    pipeline: "profile_summary_reconcile",
    status: "succeeded",
    attempts: 1,
    durationMs: 188,
    stats: { read: 0, written: 0, skipped: 0, filtered: 0, deadLettered: 0 },
    validation: [{
      name: "reconciliation",
      ok: true,
      detail: "public.profile_summary in sync (fast; 2000 source rows)",
      reconciliation: {},
    }],
  } as never]);
  assertMatch(
    summary,
    /\n {2}profile_summary_reconcile: public\.profile_summary in sync \(fast; 2000 source rows\)$/,
  );
});

Deno.test("a connection error names the side and the database that failed, never the password", async () => {
  const db = await createTestDatabase("first_hour_where");
  try {
    const target = new URL(db.url);
    target.password = "s3cret-pw";
    const config = {
      "connector.class": "postgres_query",
      "connection.url": "postgres://reader:s3cret-pw@127.0.0.1:1/warehouse",
      table: "public.t",
      "sink.class": "postgres",
      "sink.connection.url": target.toString(),
      "sink.table": "public.t",
      "job.retries": "0",
    };
    await using sql = connect(db.url, { max: 1 });
    await sql`create table t (id int primary key)`;
    const source = await sluiceOn(["job", "run", "where"], { name: "where", config });
    assertMatch(
      source.stdout,
      /where: Cannot read from the source database 127\.0\.0\.1:1\/warehouse: connect ECONNREFUSED/,
    );
    const wrongDb = new URL(db.url);
    wrongDb.pathname = "/no_such_database";
    const sink = await sluiceOn(["job", "run", "where"], {
      name: "where",
      config: { ...config, "sink.connection.url": wrongDb.toString() },
    });
    assertMatch(
      sink.stdout,
      new RegExp(
        // The job's locks and ticks live in its sink database (no --cluster-url): that fails first.
        `where: Cannot start where: cannot use the sink database ${wrongDb.host}/no_such_database, where jobs coordinate unless --cluster-url names another: database "no_such_database" does not exist`,
      ),
    );
    assert(!`${source.stdout}${source.stderr}${sink.stdout}${sink.stderr}`.includes("s3cret-pw"));
  } finally {
    await db.drop();
  }
});

Deno.test("log lines and the run summary keep their order in one file", async () => {
  const folder = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${folder}/pipeline.json`,
      JSON.stringify({
        name: "numbers",
        config: {
          "connector.class": `${root}tests/fixtures/numbers_source.ts`,
          "sink.class": `${root}tests/fixtures/memory_sink.ts`,
          "sink.bucket": "order",
        },
      }),
    );
    const command = `"${Deno.execPath()}" run -A --unstable-cron cli/main.ts job run numbers ` +
      `"${folder}/pipeline.json" --offsets "${folder}/offsets.json" --log-format json 2>&1`;
    const output = await new Deno.Command("sh", {
      args: ["-c", command],
      cwd: root,
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(output.stdout).trimEnd().split("\n");
    const summary = lines.findIndex((line) => line.startsWith("pipeline "));
    assert(summary > 0, lines.join("\n"));
    assertMatch(lines[summary - 1], /"message":"numbers succeeded: read 10, written 10/);
    assert(lines.slice(summary).every((line) => !line.startsWith("{")), lines.join("\n"));
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("plan runs without the secrets of the configs or a broker, and validate still asks for them", async () => {
  const config = {
    "connector.class": "postgres_cdc",
    "database.hostname": "${env:FIRST_HOUR_NO_HOST}",
    "database.port": "${env:FIRST_HOUR_NO_PORT}",
    "database.dbname": "d",
    "database.user": "u",
    "database.password": "${env:FIRST_HOUR_NO_PASSWORD}",
    "topic.prefix": "shop",
    "table.include.list": "public.orders",
    transforms: "m,route",
    "transforms.m.type": "mask",
    "transforms.m.fields": "email",
    "transforms.m.strategy": "hmac",
    "transforms.m.key": "${env:FIRST_HOUR_NO_KEY}",
    "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
    "transforms.route.regex": "shop.public.(.*)",
    "transforms.route.replacement": "events.$1",
  };
  // No --bootstrap for the plan: it needs topic names, not a broker.
  const plan = await sluiceOn("plan", { name: "k", config }, { SLUICE_BOOTSTRAP_SERVERS: "" });
  assertEquals(plan.code, 1, plan.stderr);
  assertMatch(plan.stdout, /public\.orders\s+events\.orders\s+NOBODY CONSUMES THIS TOPIC/);
  assertMatch(
    plan.stdout,
    /4 provider reference\(s\) could not be resolved and got stand-ins \(the plan needs names, not secrets\): k: config\.database\.hostname, k: config\.database\.port, k: config\.database\.password, k: config\.transforms\.m\.key/,
  );
  const env = { SLUICE_BOOTSTRAP_SERVERS: "127.0.0.1:9092" };
  const validate = await sluiceOn("validate", { name: "k", config }, env);
  assertEquals(validate.code, 2);
  assertMatch(
    validate.stderr,
    /- k: config\.database\.password: environment variable "FIRST_HOUR_NO_PASSWORD" is not set/,
  );
});

Deno.test("validate refuses two pipelines on one replication slot of one database, naming both", async () => {
  const stream = (name: string, table: string, url = DB) => ({
    name,
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": url,
      "topic.prefix": "app",
      "table.include.list": `public.${table}`,
      "slot.name": "app_slot",
      "sink.class": "postgres",
      "sink.connection.url": DB,
      "sink.table": `public.${table}`,
    },
  });
  // A copied config whose slot name was left as it was.
  const copied = await sluiceOn("validate", [stream("orders", "orders"), stream("users", "users")]);
  assertEquals(copied.code, 2, copied.stderr);
  assertMatch(
    copied.stderr,
    /- users: config\.source: uses replication slot "app_slot" of 127\.0\.0\.1:5432\/d \(slot\.name\), which pipeline "orders" uses too/,
  );
  // The same slot name on another database is another slot.
  const other = await sluiceOn("validate", [
    stream("orders", "orders"),
    stream("users", "users", "postgres://u@127.0.0.1:5432/other"),
  ]);
  assertEquals(other.code, 0, other.stderr);
});

Deno.test("Kafka Connect JDBC sink options Sluice spells otherwise say what to write instead", async () => {
  const { code, stderr } = await sluiceOn("validate", {
    name: "j",
    config: {
      "connector.class": "kafka",
      topics: "orders",
      "bootstrap.servers": "127.0.0.1:9092",
      "sink.class": "postgres",
      "sink.connection.url": DB,
      "sink.table": "public.orders",
      "sink.pk.mode": "record_key",
      "sink.delete.enabled": "true",
    },
  });
  assertEquals(code, 2);
  assertMatch(
    stderr,
    /- j: config\.sink\.pk\.mode: is not an option of sink "postgres" \(upserts are keyed by the target's primary key, or by "sink\.primary\.key\.fields"\)/,
  );
  assertMatch(
    stderr,
    /config\.sink\.delete\.enabled: .*"sink\.delete\.mode": "soft" \(the default\), "hard" or "none"/,
  );
});
