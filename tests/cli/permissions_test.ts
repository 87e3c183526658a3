/**
 * `sluice permissions`: the flags are computed from the configs, and a
 * pipeline run under them works while a plugin that reaches for another
 * host or another file is refused by Deno.
 */
import postgres from "postgres";
import { assert, assertEquals } from "../_assert.ts";
import { permissionFlags, requiredPermissions } from "../../cli/permissions.ts";
import { createTestDatabase } from "../_services.ts";

const root = new URL("../..", import.meta.url).pathname;
const main = `${root}cli/main.ts`;

/** A transform that tries to escape: another host, another file. It prints what Deno said. */
const SPY_PLUGIN = `
import { defineTransform } from "${root}api/plugin.ts";
import { z } from "zod";

async function attempt(what, action) {
  try {
    await action();
    console.log("SPY " + what + " allowed");
  } catch (error) {
    console.log("SPY " + what + " " + error.name);
  }
}

export default defineTransform({
  name: "spy",
  summary: "Tries to reach what it should not.",
  config: z.strictObject({ secret: z.string() }),
  async create(config) {
    await attempt("net", () => Deno.connect({ hostname: "127.0.0.1", port: 9 }));
    await attempt("fetch", () => fetch("http://example.invalid:8080/"));
    await attempt("read", () => Deno.readTextFile(config.secret));
    await attempt("env", async () => Deno.env.get("HOME"));
    await attempt("run", () => new Deno.Command("true").output());
    return { apply: (record) => record };
  },
});
`;

async function withFixture(
  run: (dir: string, env: Record<string, string>) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase("permissions");
  const dir = await Deno.makeTempDir({ prefix: "sluice-permissions-" });
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql`create table source_rows (id int primary key, name text)`;
    await sql`create table target_rows (id int primary key, name text)`;
    await sql`insert into source_rows select g, 'row ' || g from generate_series(1, 10) g`;
    await Deno.mkdir(`${dir}/configs/plugins`, { recursive: true });
    await Deno.mkdir(`${dir}/state`);
    await Deno.mkdir(`${dir}/dead`);
    await Deno.writeTextFile(`${dir}/configs/plugins/spy.ts`, SPY_PLUGIN);
    await Deno.writeTextFile(`${dir}/secret.txt`, "not for plugins");
    await Deno.writeTextFile(`${dir}/configs/names.properties`, "topic=rows\n");
    await Deno.writeTextFile(
      `${dir}/configs/job.json`,
      JSON.stringify({
        name: "copy_rows",
        config: {
          "connector.class": "postgres_query",
          "connection.url": "${env:SPY_DB_URL}",
          table: "public.source_rows",
          mode: "full",
          topic: "${file:names.properties:topic}",
          transforms: "spy,dedup",
          "transforms.spy.type": "./plugins/spy.ts",
          "transforms.spy.secret": `${dir}/secret.txt`,
          "transforms.dedup.type": "dedup",
          "transforms.dedup.id.mode": "fields",
          "transforms.dedup.id.fields": "id",
          "transforms.dedup.state.path": `${dir}/state/dedup.json`,
          "sink.class": "postgres",
          "sink.connection.url": "${env:SPY_DB_URL}",
          "sink.table": "public.target_rows",
          "errors.tolerance": "all",
          "errors.deadletterqueue.file.path": `${dir}/dead/letters.jsonl`,
        },
      }),
    );
    await run(dir, { SPY_DB_URL: db.url });
  } finally {
    await sql.end();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sluice permissions computes net, read, write and env from the configs", async () => {
  await withFixture(async (dir, env) => {
    for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
    const permissions = await requiredPermissions([`${dir}/configs`], {
      offsetsFile: `${dir}/state/offsets.json`,
    });
    const port = new URL(env.SPY_DB_URL).port;
    // The database, and the operations endpoint `sluice run` listens on by default.
    assertEquals(permissions.net, [`127.0.0.1:${port}`, "127.0.0.1:8083"]);
    assertEquals(permissions.write, [`${dir}/dead`, `${dir}/state`]);
    const read = [
      `${dir}/configs`,
      `${dir}/configs/plugins/spy.ts`,
      `${dir}/configs/names.properties`,
    ];
    for (const path of read) {
      assert(permissions.read.includes(path), `read lacks ${path}: ${permissions.read}`);
    }
    assert(
      !permissions.read.includes(`${dir}/secret.txt`),
      "the spy's target must not be readable",
    );
    assert(permissions.env.includes("SPY_DB_URL"));
    assert(!permissions.env.includes("HOME"));
    assertEquals(permissions.sys, []);
    const flags = permissionFlags(permissions);
    assert(flags.every((flag) => /^--allow-(net|read|write|env)=./.test(flag)), flags.join(" "));
  });
});

Deno.test("a plugin run under the computed flags cannot reach another host, file, variable or program", async () => {
  await withFixture(async (dir, env) => {
    const computed = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", main, "permissions", `${dir}/configs`],
      env: { ...env, SLUICE_OFFSETS_FILE: `${dir}/state/offsets.json` },
      cwd: dir,
    }).output();
    const flags = new TextDecoder().decode(computed.stdout).trim().split(" ");
    assertEquals(computed.code, 0, new TextDecoder().decode(computed.stderr));
    const job = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, main, "job", "run", "copy_rows", `${dir}/configs`],
      env: { ...env, SLUICE_OFFSETS_FILE: `${dir}/state/offsets.json` },
      cwd: dir,
    }).output();
    const out = new TextDecoder().decode(job.stdout);
    const err = new TextDecoder().decode(job.stderr);
    assertEquals(job.code, 0, `${out}\n${err}`);
    const said = [...out.matchAll(/^SPY (\w+) (\w+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    assertEquals(said, [
      "net NotCapable",
      "fetch NotCapable",
      "read NotCapable",
      "env NotCapable",
      "run NotCapable",
    ]);
    assert(/copy_rows\s+succeeded\s+10\s+10/.test(out), out);
  });
});

Deno.test("the example's event pipelines get every database, the broker and the endpoint", async () => {
  const env = {
    WAREHOUSE_HOST: "127.0.0.1",
    WAREHOUSE_PORT: "6101",
    WAREHOUSE_USER: "u",
    WAREHOUSE_PASSWORD: "p",
    CITIZEN_URL: "postgres://u@127.0.0.1:6102/smart_citizen",
    SLUICE_DEAD_LETTER_DIR: "/tmp/sluice-dlq",
    SLUICE_STATE_DIR: "/tmp/sluice-state",
    SLUICE_MASK_KEY: "a-key-of-thirty-two-bytes-or-more-0123",
    SLUICE_FPE_KEY: "000102030405060708090a0b0c0d0e0f",
  };
  const saved = Object.keys(env).map((name) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
  try {
    const events = `${root}examples/warehouse_to_citizen/pipelines/events`;
    const settings = {
      offsetsFile: "/tmp/sluice-state/offsets.json",
      bootstrapServers: "127.0.0.1:6103",
    };
    const permissions = await requiredPermissions([events], settings, "127.0.0.1:6104");
    assertEquals(permissions.net, [
      "127.0.0.1:6101",
      "127.0.0.1:6102",
      "127.0.0.1:6103",
      "127.0.0.1:6104",
    ]);
    const off = await requiredPermissions([events], settings, "off");
    assert(!off.net.includes("127.0.0.1:6104"), "no endpoint, no listening permission");
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
});

Deno.test("a permission the flags do not cover is named in one line, without a stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-permissions-" });
  try {
    await Deno.writeTextFile(
      `${dir}/job.json`,
      JSON.stringify({
        name: "job",
        config: {
          "connector.class": "postgres_query",
          "connection.url": "postgres://u@127.0.0.1:5432/d",
          table: "public.t",
          "sink.class": "postgres",
          "sink.connection.url": "postgres://u@127.0.0.1:5432/d",
          "sink.table": "public.t",
        },
      }),
    );
    const flags = permissionFlags(
      await requiredPermissions(
        [`${dir}/job.json`],
        { offsetsFile: `${dir}/offsets.json` },
        "off",
      ),
    )
      // As if the flags came from another environment: one of Sluice's variables is left out.
      .map((flag) => flag.replace("SLUICE_MAX_PARALLEL_JOBS,", ""));
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...flags,
        main,
        "validate",
        `${dir}/job.json`,
        "--listen",
        "off",
        "--offsets",
        `${dir}/offsets.json`,
      ],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 1, stderr);
    assertEquals(
      stderr,
      'Missing permission: Requires env access to "SLUICE_MAX_PARALLEL_JOBS" (--allow-env). Print the flags this run needs with "sluice permissions <configs>", given the same environment and options (--offsets, --bootstrap, --listen, --cluster-url) as this run.\n',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
