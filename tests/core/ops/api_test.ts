/**
 * The REST API against the shapes of Kafka Connect's documentation, the
 * jobs routes, and the token rule, over real HTTP on a free loopback port.
 */
import { assert, assertEquals, assertMatch } from "../../_assert.ts";

/** The error `fn` throws, checked to be a ConfigError. */
function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert(error instanceof ConfigError, String(error));
    return error;
  }
  throw new Error("expected a ConfigError");
}
import { specsFrom, syncFixture } from "../../_batch.ts";
import { waitUntil } from "../../_wait.ts";
import { startOps } from "../../_ops.ts";
import { ConfigError } from "../../../api/errors.ts";
import { checkServerOptions, parseListen } from "../../../core/http/server.ts";

const SOURCE = `create table public.items (id int primary key, name text,
  updated_at timestamptz not null default now());`;
const TARGET = `create table public.items (id int primary key, name text,
  updated_at timestamptz, deleted_at timestamptz);`;
const URL_VARIABLE = "SLUICE_OPS_API_TEST_SOURCE_URL";

/** The job as written in a config file: its source URL comes from the environment. */
function written(targetUrl: string) {
  return {
    "connector.class": "postgres_query",
    "connection.url": `\${env:${URL_VARIABLE}}`,
    table: "public.items",
    mode: "incremental",
    "timestamp.column.name": "updated_at",
    "sink.class": "postgres",
    "sink.connection.url": targetUrl,
    "sink.table": "public.items",
    "job.schedule": "0 3 * * *",
    "job.retries": "0",
  };
}

Deno.test("the REST API answers in Kafka Connect's shapes, and never shows a resolved secret", async () => {
  await using db = await syncFixture("ops_api", SOURCE, TARGET);
  await db.sourceSql`insert into items (id, name) select g, 'n' || g from generate_series(1, 30) g`;
  Deno.env.set(URL_VARIABLE, db.source.url);
  const config = written(db.target.url);
  const specs = await specsFrom({ name: "items_job", config });
  await using ops = await startOps(specs, { configs: { items_job: config } });
  const get = async (path: string) => {
    const response = await ops.api(path);
    assertEquals(response.headers.get("content-type"), "application/json", path);
    return { status: response.status, body: await response.json() };
  };

  assertEquals(await get("/connectors"), { status: 200, body: ["items_job"] });
  const { body: info } = await get("/connectors/items_job");
  assertEquals(Object.keys(info).sort(), ["config", "name", "tasks", "type"]);
  assertEquals(info.name, "items_job");
  assertEquals(info.tasks, [{ connector: "items_job", task: 0 }]);
  assertEquals(info.type, "source");
  const { body: shown } = await get("/connectors/items_job/config");
  assertEquals(shown, { ...config, name: "items_job" });
  assertEquals(shown["connection.url"], `\${env:${URL_VARIABLE}}`);
  assert(!JSON.stringify(shown).includes(db.source.url), "the resolved URL is never shown");

  const { body: status } = await get("/connectors/items_job/status");
  assertEquals(status.name, "items_job");
  assertEquals(status.type, "source");
  assertEquals(status.connector.state, "RUNNING");
  assertMatch(status.connector.worker_id, /^127\.0\.0\.1:\d+$/);
  assertEquals(status.tasks, [{ id: 0, state: "RUNNING", worker_id: status.connector.worker_id }]);

  const { body: expanded } = await get("/connectors?expand=status&expand=info");
  assertEquals(expanded, { items_job: { status, info } });
  assertEquals((await get("/connectors?expand=status")).body, { items_job: { status } });
  assertEquals((await get("/connectors?expand=info")).body, { items_job: { info } });

  const missing = await get("/connectors/nope/status");
  assertEquals(missing, {
    status: 404,
    body: { error_code: 404, message: "Connector nope not found" },
  });

  const { body: plugins } = await get("/connector-plugins");
  assert(
    plugins.some((p: Record<string, string>) =>
      p.class === "postgres_query" && p.type === "source" && p.version === "test"
    ),
  );
  assert(plugins.every((p: Record<string, string>) => ["source", "sink"].includes(p.type)));
  const { body: all } = await get("/connector-plugins?connectorsOnly=false");
  assert(
    all.some((p: Record<string, string>) => p.class === "mask" && p.type === "transformation"),
  );

  assertEquals((await get("/connectors/items_job/offsets")).body, { offsets: [] });
  const { body: jobs } = await get("/jobs");
  assertEquals(jobs[0].name, "items_job");
  assertEquals(jobs[0].schedule, "0 3 * * *");
  assertMatch(jobs[0].next_run, /^\d{4}-\d\d-\d\dT03:00:00\.000Z$/);
  assertEquals(jobs[0].last_runs, []);

  const run = await ops.api("/jobs/items_job/run?full_refresh=true", { method: "POST" });
  assertEquals(run.status, 202);
  assertEquals(await run.json(), { name: "items_job", full_refresh: true, state: "started" });
  const last = await waitUntil("the run", async () => (await get("/jobs")).body[0].last_runs[0]);
  assertEquals(last.status, "succeeded", last.error);
  assertEquals(last.stats.written, 30);
  const { body: offsets } = await get("/connectors/items_job/offsets");
  assertEquals(offsets.offsets.length, 1);
  // Partitioned as Kafka Connect's JDBC source does: by table.
  assertEquals(offsets.offsets[0].partition, { table: "public.items" });
  assertEquals(typeof offsets.offsets[0].offset, "object");

  const unknownJob = await get("/jobs/nope/run");
  assertEquals(unknownJob.status, 404);
  Deno.env.delete(URL_VARIABLE);
});

Deno.test("pause, resume, stop and restart answer as Kafka Connect does and change the state", async () => {
  await using db = await syncFixture("ops_lifecycle", SOURCE, TARGET);
  Deno.env.set(URL_VARIABLE, db.source.url);
  const specs = await specsFrom({ name: "items_job", config: written(db.target.url) });
  await using ops = await startOps(specs);
  const call = async (method: string, path: string) => {
    const response = await ops.api(`/connectors/items_job${path}`, { method });
    await response.body?.cancel();
    const state = (await (await ops.api("/connectors/items_job/status")).json()).connector.state;
    return [response.status, state];
  };
  assertEquals(await call("PUT", "/pause"), [202, "PAUSED"]);
  const refused = await ops.api("/jobs/items_job/run", { method: "POST" });
  assertEquals(refused.status, 409);
  assertEquals((await refused.json()).error_code, 409);
  assertEquals((await (await ops.api("/jobs")).json())[0].next_run, null);
  assertEquals(await call("PUT", "/resume"), [202, "RUNNING"]);
  assertEquals(await call("PUT", "/stop"), [204, "STOPPED"]);
  assertEquals(await call("POST", "/restart"), [204, "RUNNING"]);
  assertEquals((await ops.api("/connectors/nope/pause", { method: "PUT" })).status, 404);
  Deno.env.delete(URL_VARIABLE);
});

Deno.test("with a token every route but /healthz needs it", async () => {
  await using db = await syncFixture("ops_token", SOURCE, TARGET);
  Deno.env.set(URL_VARIABLE, db.source.url);
  const specs = await specsFrom({ name: "items_job", config: written(db.target.url) });
  await using ops = await startOps(specs, { token: "s3cret-token" });
  const status = async (path: string, authorization?: string) => {
    const response = await fetch(`${ops.url}${path}`, {
      headers: authorization ? { authorization } : {},
    });
    await response.body?.cancel();
    return response.status;
  };
  assertEquals(await status("/healthz"), 200);
  for (const path of ["/readyz", "/metrics", "/connectors", "/jobs", "/connector-plugins"]) {
    assertEquals(await status(path), 401, path);
    assertEquals(await status(path, "Bearer wrong-token!"), 401, path);
    assertEquals(await status(path, "Bearer s3cret-token"), 200, path);
  }
  const refused = await fetch(`${ops.url}/connectors`);
  assertEquals(await refused.json(), {
    error_code: 401,
    message: "A valid bearer token is required",
  });
  Deno.env.delete(URL_VARIABLE);
});

Deno.test("listening beyond loopback without a token is refused before anything connects", async () => {
  const error = configErrorOf(() => checkServerOptions({ listen: parseListen("0.0.0.0:8083") }));
  assertMatch(
    error.message,
    /--listen: "0\.0\.0\.0" is reachable from other machines.*SLUICE_API_TOKEN/,
  );
  checkServerOptions({ listen: parseListen("0.0.0.0:8083"), token: "t" });
  checkServerOptions({ listen: parseListen("127.0.0.1:8083") });
  checkServerOptions({ listen: parseListen("[::1]:8083") });
  checkServerOptions({ listen: parseListen("off") });
  assertMatch(configErrorOf(() => parseListen("8083")).message, /expected host:port/);

  const { code, stderr } = await runUnreachableJob("0.0.0.0:0", { SLUICE_API_TOKEN: "" });
  assertEquals(code, 2, stderr);
  assertMatch(stderr, /needs a bearer token/);
});

/** `sluice run --listen <listen>` of a job whose database is unreachable: its exit code and stderr. */
async function runUnreachableJob(listen: string, env: Record<string, string> = {}) {
  const folder = await Deno.makeTempDir({ prefix: "sluice_ops_cli_" });
  await Deno.writeTextFile(
    `${folder}/job.json`,
    JSON.stringify({
      name: "unreachable",
      config: {
        ...written("postgres://nobody@127.0.0.1:1/none"),
        "connection.url": "postgres://nobody@127.0.0.1:1/none",
      },
    }),
  );
  const cli = new URL("../../../cli/main.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-cron", cli, "run", "--listen", listen, folder],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(folder, { recursive: true });
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("an endpoint address already in use stops sluice run with what to do, not a stack trace", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${taken.addr.port}`;
  const { code, stderr } = await runUnreachableJob(address);
  assertEquals(code, 2, stderr);
  assertMatch(
    stderr,
    new RegExp(`--listen: ${address.replaceAll(".", "\\.")} is in use .*--listen off`),
  );
  assertEquals(/\n\s+at /.test(stderr), false, stderr);
});

Deno.test("config/validate answers Kafka Connect's validation shape with every problem per key", async () => {
  await using ops = await startOps([]);
  const validate = (plugin: string, config: unknown) =>
    ops.api(`/connector-plugins/${plugin}/config/validate`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(config),
    });
  const response = await validate("postgres_query", {
    "connector.class": "postgres_query",
    "connection.url": "postgres://u@127.0.0.1:1/db",
    "chunk.size": "many",
    "sink.class": "postgres",
    "sink.connection.url": "postgres://u@127.0.0.1:1/db",
  });
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals(Object.keys(body).sort(), ["configs", "error_count", "groups", "name"]);
  assertEquals(body.name, "postgres_query");
  assertEquals(body.groups, ["postgres_query", "postgres", "Common"]);
  type Info = { definition: Record<string, unknown>; value: Record<string, unknown> };
  const byName = new Map<string, Info>(body.configs.map((c: Info) => [c.definition.name, c]));
  const chunk = byName.get("chunk.size")!;
  assertEquals(Object.keys(chunk.definition).sort(), [
    "default_value",
    "dependents",
    "display_name",
    "documentation",
    "group",
    "importance",
    "name",
    "order",
    "required",
    "type",
    "width",
  ]);
  assertEquals(chunk.definition.type, "INT");
  assertEquals(chunk.value.value, "many");
  assertEquals(chunk.value.errors, ['expected an integer: current value is "many"']);
  assertMatch(String((byName.get("table")!.value.errors as string[])[0]), /table and query/);
  assertEquals(byName.get("sink.table")!.definition.group, "postgres");
  assertEquals(byName.get("job.retries")!.value.errors, []);
  assertEquals(
    body.error_count,
    body.configs.reduce((n: number, c: Info) => n + (c.value.errors as string[]).length, 0),
  );

  const valid = await validate("postgres_query", {
    "connection.url": "postgres://u@127.0.0.1:1/db",
    table: "public.items",
    "sink.class": "postgres",
    "sink.connection.url": "postgres://u@127.0.0.1:1/db",
    "sink.table": "public.items",
  });
  assertEquals((await valid.json()).error_count, 0);
  const unknown = await validate("nope", {});
  assertEquals(unknown.status, 404);
  assertEquals((await unknown.json()).error_code, 404);
});
