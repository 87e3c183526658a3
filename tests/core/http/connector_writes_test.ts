/**
 * Creating, updating and deleting connectors over REST on a real `sluice run`
 * process started on a config folder (issue 9): changes are validated like
 * `sluice validate` (Kafka Connect's error shape, every bad key named),
 * saved to the folder with provider references as written, applied without
 * a restart, and still there after the process restarts. Offsets change only
 * while the connector is STOPPED.
 */
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { syncFixture } from "../../_batch.ts";
import { waitUntil } from "../../_wait.ts";
import { ConfigStore, ConfigStoreConflict } from "../../../core/config_store.ts";

const CLI = new URL("../../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../../..", import.meta.url).pathname;
const VARIABLE = "SLUICE_REST_WRITES_TEST_SOURCE_URL";

const SOURCE = `create table public.items (id int primary key, name text,
  updated_at timestamptz not null default now());`;
const TARGET = `create table public.items (id int primary key, name text,
  updated_at timestamptz, deleted_at timestamptz);`;

/** A free loopback port (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** `sluice run <folder>` in the background; resolves once its API answers. */
async function startSluice(folder: string, offsets: string, port: number, sourceUrl: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-cron",
      CLI,
      "run",
      folder,
      "--offsets",
      offsets,
      "--listen",
      `127.0.0.1:${port}`,
      "--log-level",
      "warning",
    ],
    cwd: ROOT,
    env: { [VARIABLE]: sourceUrl },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  await waitUntil("the API", async () => {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/connectors`);
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false;
    }
  }, { timeoutMs: 60_000 });
  return {
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      return { code: status.code, stderr: await stderr };
    },
  };
}

function job(targetUrl: string, schedule: string) {
  return {
    "connector.class": "postgres_query",
    "connection.url": `\${env:${VARIABLE}}`,
    table: "public.items",
    mode: "incremental",
    "timestamp.column.name": "updated_at",
    "sink.class": "postgres",
    "sink.connection.url": targetUrl,
    "sink.table": "public.items",
    "job.schedule": schedule,
  };
}

Deno.test("connectors created, updated and deleted over REST are validated, saved as written, applied, and survive a restart", async () => {
  await using db = await syncFixture("rest_writes", SOURCE, TARGET);
  await db.sourceSql`insert into items (id, name) select g, 'n' || g from generate_series(1, 25) g`;
  const folder = await Deno.makeTempDir({ prefix: "sluice-rest-writes-" });
  const offsets = `${folder}/.state/offsets.json`;
  await Deno.writeTextFile(
    `${folder}/jobs.json`,
    JSON.stringify([
      { name: "job_a", config: job(db.target.url, "0 3 * * *") },
      { name: "job_b", config: job(db.target.url, "0 4 * * *") },
    ]),
  );
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  };
  let sluice = await startSluice(folder, offsets, port, db.source.url);
  try {
    // Create: 201 with the connector's info, saved to <name>.json as written.
    const created = await call("POST", "/connectors", {
      name: "job_c",
      config: job(db.target.url, "0 5 * * *"),
    });
    assertEquals(created.status, 201, JSON.stringify(created.body));
    assertEquals(created.body.name, "job_c");
    assertEquals(created.body.type, "source");
    assertEquals(created.body.config["connection.url"], `\${env:${VARIABLE}}`);
    const saved = await Deno.readTextFile(`${folder}/job_c.json`);
    assert(saved.includes(`\${env:${VARIABLE}}`), saved);
    assert(!saved.includes(db.source.url), "the resolved secret is never written");
    const readBack = await call("GET", "/connectors/job_c/config");
    assertEquals(readBack.body["connection.url"], `\${env:${VARIABLE}}`);
    assert(!JSON.stringify(readBack.body).includes(db.source.url));
    assertEquals((await call("GET", "/connectors")).body.sort(), ["job_a", "job_b", "job_c"]);

    // 409 when it exists; 400 naming every bad key, nothing saved.
    const again = await call("POST", "/connectors", {
      name: "job_c",
      config: job(db.target.url, "0 5 * * *"),
    });
    assertEquals(again.status, 409);
    assertEquals(again.body.error_code, 409);
    const bad = await call("POST", "/connectors", {
      name: "job_bad",
      config: { ...job(db.target.url, "0 6 * * *"), "chunk.size": "many", mode: "sometimes" },
    });
    assertEquals(bad.status, 400);
    assertEquals(bad.body.error_code, 400);
    assertMatch(bad.body.message, /Invalid connector config, 2 problem\(s\)/);
    assertMatch(bad.body.message, /chunk\.size: /);
    assertMatch(bad.body.message, /mode: /);
    assertEquals(await exists(`${folder}/job_bad.json`), false);
    const mismatch = await call("PUT", "/connectors/job_a/config", { name: "other" });
    assertEquals(mismatch.status, 400);

    // Update: 200, the file it came from is rewritten and keeps job_b; the schedule applies now.
    const updated = await call("PUT", "/connectors/job_a/config", job(db.target.url, "30 2 * * *"));
    assertEquals(updated.status, 200, JSON.stringify(updated.body));
    const file = JSON.parse(await Deno.readTextFile(`${folder}/jobs.json`));
    assertEquals(file.map((e: { name: string }) => e.name), ["job_a", "job_b"]);
    assertEquals(file[0].config["job.schedule"], "30 2 * * *");
    assertEquals(file[1].config["job.schedule"], "0 4 * * *");
    const jobs = (await call("GET", "/jobs")).body as { name: string; schedule: string }[];
    assertEquals(jobs.find((j) => j.name === "job_a")?.schedule, "30 2 * * *");

    // PUT of a new name creates (201); DELETE removes it and its file (204).
    const putNew = await call("PUT", "/connectors/job_d/config", job(db.target.url, "0 7 * * *"));
    assertEquals(putNew.status, 201);
    assert(await exists(`${folder}/job_d.json`));
    assertEquals((await call("DELETE", "/connectors/job_d")).status, 204);
    assertEquals(await exists(`${folder}/job_d.json`), false);
    assertEquals((await call("GET", "/connectors/job_d")).status, 404);
    assertEquals((await call("DELETE", "/connectors/job_d")).status, 404);

    // Offsets: kept by the postgres sink; changed only while STOPPED.
    assertEquals((await call("POST", "/jobs/job_c/run")).status, 202);
    await waitUntil(
      "job_c's offsets",
      async () => (await call("GET", "/connectors/job_c/offsets")).body.offsets.length === 1,
    );
    await waitUntil("job_c's run in the metrics", async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return /sluice_batch_runs_total\{[^}]*pipeline="job_c"[^}]*\} 1/.test(text);
    });
    const refused = await call("DELETE", "/connectors/job_c/offsets");
    assertEquals(refused.status, 400);
    assertMatch(refused.body.message, /RUNNING: offsets can be changed only while it is STOPPED/);
    const patchRefused = await call("PATCH", "/connectors/job_c/offsets", {
      offsets: [{ partition: { table: "public.items" }, offset: { ts: "2024-01-01T00:00:00Z" } }],
    });
    assertEquals(patchRefused.status, 400);
    const cliRefused = await cli(
      "offsets",
      "reset",
      folder,
      "job_c",
      "--to-earliest",
      "--url",
      base,
    );
    assertEquals(cliRefused.code, 2);
    assertMatch(cliRefused.err, /job_c is RUNNING in the Sluice process at .*: stop it first/);
    assertEquals((await call("PUT", "/connectors/job_c/stop")).status, 204);
    const patched = await call("PATCH", "/connectors/job_c/offsets", {
      offsets: [{ partition: { table: "public.items" }, offset: { ts: "2024-01-01T00:00:00Z" } }],
    });
    assertEquals(patched.status, 200, JSON.stringify(patched.body));
    assertEquals(patched.body.offsets[0].offset.ts, "2024-01-01T00:00:00Z");
    const malformed = await call("PATCH", "/connectors/job_c/offsets", {
      offsets: [{ offset: {} }],
    });
    assertEquals(malformed.status, 400);
    const viaProcess = await cli(
      "offsets",
      "reset",
      folder,
      "job_c",
      "--to-timestamp",
      "2024-02-01T00:00:00Z",
      "--url",
      base,
    );
    assertEquals(viaProcess.code, 0, viaProcess.err);
    assertMatch(viaProcess.out, /changed through the process at/);
    assertEquals(
      (await call("GET", "/connectors/job_c/offsets")).body.offsets[0].offset.ts,
      "2024-02-01T00:00:00.000Z",
    );
    const reset = await call("DELETE", "/connectors/job_c/offsets");
    assertEquals(reset.status, 200, JSON.stringify(reset.body));
    assertEquals((await call("GET", "/connectors/job_c/offsets")).body, { offsets: [] });
    const [{ n }] = await db.targetSql`select count(*)::int as n from public.sluice_offsets
      where pipeline = 'job_c'`;
    assertEquals(n, 0, "reset where the offsets live: the sink's table");

    // Restart: the folder is read again.
    const ended = await sluice.stop();
    assertEquals(ended.code, 0, ended.stderr);
    sluice = await startSluice(folder, offsets, port, db.source.url);
    assertEquals((await call("GET", "/connectors")).body.sort(), ["job_a", "job_b", "job_c"]);
    assertEquals(
      (await call("GET", "/connectors/job_a/config")).body["job.schedule"],
      "30 2 * * *",
    );
    assertEquals(
      (await call("GET", "/connectors/job_c/config")).body["connection.url"],
      `\${env:${VARIABLE}}`,
    );
  } finally {
    await sluice.stop();
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("a process started on files cannot create connectors, and keeps a file it was given non-empty", async () => {
  const folder = await Deno.makeTempDir({ prefix: "sluice-rest-files-" });
  try {
    const file = `${folder}/one.json`;
    const entry = (name: string) => ({ name, config: { "connector.class": "kafka", topics: "t" } });
    await Deno.writeTextFile(file, JSON.stringify([entry("a"), entry("b")]));
    await Deno.writeTextFile(`${folder}/solo.json`, JSON.stringify(entry("c")));
    const store = await ConfigStore.open([file, `${folder}/solo.json`]);
    assertEquals(store.folder, undefined);
    const refusal = catching(() => store.draft("new_one", {}));
    assert(refusal instanceof ConfigStoreConflict);
    assertMatch(refusal.message, /started on config files, not a folder/);
    // An update rewrites the file it came from; a named file keeps one pipeline.
    await store.save(store.draft("a", { "connector.class": "kafka", topics: "u" }));
    const written = JSON.parse(await Deno.readTextFile(file));
    assertEquals(written.map((e: { name: string }) => e.name), ["a", "b"]);
    assertEquals(written[0].config.topics, "u");
    assertMatch(String(catching(() => store.checkRemovable("c"))), /only pipeline of/);
    store.checkRemovable("b");
    await store.remove("b");
    assertEquals(JSON.parse(await Deno.readTextFile(file)).length, 1);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

/** The CLI run to its end (environment with the source URL). */
async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args, "--log-level", "warning"],
    cwd: ROOT,
    env: { [VARIABLE]: "postgres://127.0.0.1:9/unused" },
    stdin: "null",
  }).output();
  const decode = (data: Uint8Array) => new TextDecoder().decode(data);
  return { code: output.code, out: decode(output.stdout), err: decode(output.stderr) };
}

function catching(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
