/**
 * `sluice run` as a supervisor sees it (issue 7, item 11): a process whose
 * every stream failed for good, with no job scheduled, exits non-zero and
 * says why in its last log line; a process that still has a scheduled job
 * keeps running after its stream failed.
 */
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { type SyncFixture, syncFixture } from "../_batch.ts";
import { uniqueSlot } from "../_cdc.ts";
import { waitUntil } from "../_wait.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

/** A `sluice run` child process with JSON log lines collected from stderr. */
interface Sluice {
  child: Deno.ChildProcess;
  lines: { level: string; message: string }[];
  done: Promise<Deno.CommandStatus>;
  /** Everything written to stdout (the run summary), once the process ended. */
  stdout: Promise<string>;
}

function startSluice(config: string, offsets: string): Sluice {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI,
      "run",
      config,
      "--offsets",
      offsets,
      "--log-format",
      "json",
      "--listen",
      "off",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const lines: Sluice["lines"] = [];
  const read = (async () => {
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        try {
          const entry = JSON.parse(line);
          lines.push({ level: entry.level, message: String(entry.message) });
        } catch {
          lines.push({ level: "RAW", message: line });
        }
      }
    }
  })();
  const done = Promise.all([child.status, read, stdout]).then(([status]) => status);
  return { child, lines, done, stdout };
}

/**
 * A CDC stream whose publication does not exist (and may not be created): it
 * fails for good at start, before any slot is made.
 */
function brokenStream(f: SyncFixture, slot: string) {
  return {
    name: "broken_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "slot.drop.on.stop": "true",
      "publication.name": "no_such_publication",
      "publication.autocreate.mode": "disabled",
      "table.include.list": "public.items",
      "snapshot.mode": "initial",
      "errors.tolerance": "none",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.no_such_table",
    },
  };
}

async function withConfig<T>(
  pipelines: unknown[],
  body: (config: string, offsets: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "sluice_exit_" });
  try {
    await Deno.writeTextFile(`${dir}/pipelines.json`, JSON.stringify(pipelines));
    return await body(`${dir}/pipelines.json`, `${dir}/offsets.json`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sluice run exits non-zero when its only stream failed for good", async () => {
  await using f = await syncFixture(
    "cli_exit",
    "create table public.items (id int primary key, name text); insert into items values (1, 'a');",
    "select 1",
  );
  await withConfig([brokenStream(f, uniqueSlot("exit"))], async (config, offsets) => {
    const sluice = startSluice(config, offsets);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      sluice.done,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          sluice.child.kill("SIGKILL");
          reject(new Error("sluice run did not exit within 60 s"));
        }, 60_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assertEquals(status.code, 1, `exit code; log:\n${JSON.stringify(sluice.lines, null, 1)}`);
    const last = sluice.lines.at(-1)!;
    assertEquals(last.level, "ERROR");
    assertMatch(last.message, /No pipeline can run any more: "?broken_stream"? failed for good/);
  });
});

Deno.test("sluice run keeps running after a stream failed while a job is still scheduled", async () => {
  await using f = await syncFixture(
    "cli_keep",
    "create table public.items (id int primary key, name text); insert into items values (1, 'a');",
    "create table public.items (id int primary key, name text)",
  );
  const scheduled = {
    name: "nightly_job",
    config: {
      "connector.class": "postgres_query",
      "connection.url": f.source.url,
      table: "public.items",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.items",
      "job.schedule": "0 3 * * *",
    },
  };
  await withConfig(
    [brokenStream(f, uniqueSlot("keep")), scheduled],
    async (config, offsets) => {
      const sluice = startSluice(config, offsets);
      let exited = false;
      sluice.done.then(() => exited = true);
      try {
        await waitUntil(
          "the stream to fail for good",
          () => sluice.lines.some((l) => /stays stopped/.test(l.message)) || exited,
          { timeoutMs: 60_000 },
        );
        assert(!exited, "the process exited although a job is still scheduled");
        sluice.child.kill("SIGTERM");
        const status = await sluice.done;
        assert(
          sluice.lines.some((l) => /Signal received/.test(l.message)),
          "the process ended by itself, not on SIGTERM",
        );
        assert(!sluice.lines.some((l) => /No pipeline can run any more/.test(l.message)));
        assertEquals(status.code, 1, "the failed stream is reported in the exit code");
        // The summary after SIGTERM still shows the stream that failed.
        assertMatch(await sluice.stdout, /\nbroken_stream\s+failed\s+0\s+0\s+0\s+0\s+0\s/);
      } finally {
        try {
          sluice.child.kill("SIGKILL");
        } catch { /* already gone */ }
        await sluice.done;
      }
    },
  );
});
