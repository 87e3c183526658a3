/**
 * The bundled CLI (`deno task bundle`, issue 12 target 5): built with the
 * task's own command, it answers `--help`, loads a plugin file given by path,
 * finds the Kafka client it leaves to the import map, prints the permission
 * flags for the checkout it sits in, and streams a committed row from
 * PostgreSQL to PostgreSQL under those narrow flags.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import { createTestDatabase } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { runDeno } from "../_process.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

function deno(args: string[], cwd = ROOT) {
  return runDeno(args, { cwd });
}

/** `deno task bundle`'s command, its output folder replaced by `outdir`. */
async function bundleArgs(outdir: string): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const words = (config.tasks.bundle as string).split(/\s+/);
  assertEquals(words[0], "deno");
  assert(words.includes("--outdir"), config.tasks.bundle);
  return words.slice(1).map((word, i, all) => all[i - 1] === "--outdir" ? outdir : word);
}

Deno.test("the bundled CLI runs: help, plugin files, Kafka client, narrow permissions, a stream", async (t) => {
  // Inside the checkout, like dist/: the Kafka client resolves through its deno.json.
  const outdir = await Deno.makeTempDir({ dir: ROOT, prefix: ".bundle_test_" });
  const work = await Deno.makeTempDir({ prefix: "sluice_bundle_" });
  try {
    const built = await deno(await bundleArgs(outdir));
    assertEquals(built.code, 0, built.stderr);
    const main = `${outdir}/main.js`;

    await t.step("--help", async () => {
      const help = await deno(["run", main, "--help"], work);
      assertEquals(help.code, 0, help.stderr);
      assertMatch(help.stdout, /^Usage: sluice <command>/);
    });

    await t.step("a plugin file given by path", async () => {
      const found = await deno([
        "run",
        "-A",
        main,
        "plugins",
        `${ROOT}tests/fixtures/numbers_source.ts`,
      ], work);
      assertEquals(found.code, 0, found.stderr);
      assertMatch(found.stdout, /^numbers \(source, batch\): Emits the numbers/);
    });

    await t.step("the Kafka client, left out of the bundle, loads beside it", async () => {
      const probe = `${outdir}/kafka_probe.js`;
      await Deno.writeTextFile(
        probe,
        `const kafka = await import("@platformatic/kafka");\nconsole.log(typeof kafka.Producer);\n`,
      );
      const loaded = await deno(["run", "-A", probe], work);
      assertEquals(loaded.code, 0, loaded.stderr);
      assertEquals(loaded.stdout.trim(), "function");
    });

    if (!Deno.env.get("SLUICE_TEST_PG_URL")) return;
    await t.step("a CDC stream under the flags `permissions` prints", async () => {
      const source = await createTestDatabase("bundle_src");
      const target = await createTestDatabase("bundle_dst");
      const src = postgres(source.url, { max: 1, onnotice: () => {} });
      const dst = postgres(target.url, { max: 1, onnotice: () => {} });
      const slot = uniqueSlot("bundle");
      let child: Deno.ChildProcess | undefined;
      try {
        await src`create table items (id int primary key, name text)`;
        await dst`create table items (id int primary key, name text)`;
        const config = `${work}/stream.json`;
        await Deno.writeTextFile(
          config,
          JSON.stringify({
            name: "bundled",
            config: {
              "connector.class": "postgres_cdc",
              "connection.url": source.url,
              "topic.prefix": "bundled",
              "slot.name": slot,
              "publication.name": "bundle_publication",
              "snapshot.mode": "never",
              "sink.class": "postgres",
              "sink.connection.url": target.url,
              "sink.table": "public.items",
              "sink.delete.mode": "hard",
            },
          }),
        );
        const options = ["--offsets", `${work}/offsets.json`, "--listen", "off"];
        const permissions = await deno([
          "run",
          "--allow-read",
          "--allow-env",
          main,
          "permissions",
          config,
          ...options,
        ], work);
        assertEquals(permissions.code, 0, permissions.stderr);
        const flags = permissions.stdout.trim().split(/\s+/);
        assert(!flags.includes("-A"), permissions.stdout);
        child = new Deno.Command(Deno.execPath(), {
          args: ["run", ...flags, main, "run", config, ...options, "--log-level", "warning"],
          cwd: work,
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).spawn();
        const stderr = new Response(child.stderr).text();
        const exited = child.status.then(async (status) => {
          throw new Error(`sluice exited early (${status.code}): ${await stderr}`);
        });
        await Promise.race([waitForActiveSlot(src, slot), exited]);
        await src`insert into items values (1, 'one')`;
        await Promise.race([
          waitUntil(
            "the row in the target",
            async () => (await dst`select name from items where id = 1`)[0]?.name === "one",
          ),
          exited,
        ]);
        exited.catch(() => {});
        child.kill("SIGTERM");
        const { code } = await child.status;
        child = undefined;
        assertEquals(code, 0, await stderr);
        assert(!/NotCapable|Requires .* access/.test(await stderr), await stderr);
      } finally {
        try {
          child?.kill("SIGKILL");
        } catch { /* already ended */ }
        await child?.status;
        await src.end();
        await dst.end();
        await source.drop();
        await target.drop();
      }
    });
  } finally {
    await Deno.remove(outdir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
