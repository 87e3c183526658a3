/**
 * Start-up benchmark (issue 12, target 5: "start-up < 0.5 s to the first
 * event, < 60 MB idle").
 *
 * Each trial spawns `sluice run` the way `deno task run` does (the task's
 * command and flags are read from deno.json, so V8 flags set there count)
 * with one `postgres_cdc` → `postgres` pipeline (direct mode, slot made
 * beforehand) and commits one row in the source right after the spawn. It
 * measures:
 *
 * - time to first event: spawn → the row is visible in the target;
 * - CPU time of the Sluice process at that moment (user + system, from
 *   /proc): on a loaded machine this says more than the wall clock;
 * - idle RSS: VmRSS `--idle-ms` after the row landed, nothing left to do,
 *   with the HTTP endpoint and metrics on (the default);
 * - peak RSS (VmHWM) up to then.
 *
 * The reference, in the same run and interleaved trial by trial: bare
 * `deno run` of a script that prints a line and waits (spawn → its line;
 * its RSS at the same idle point). Ratios are printed against the reference
 * and against the targets.
 *
 * ```
 * deno run -A bench/startup_bench.ts [--trials 5] [--idle-ms 3000] [--bundle task|none|<main.js>,…] [--binary ./sluice]
 * ```
 * It also measures the bundled CLI: `deno task bundle`'s command is run into a
 * scratch folder inside the checkout and its `main.js` started with the run
 * task's flags in place of `cli/main.ts` (`--bundle none` skips it,
 * `--bundle task,other/main.js` adds a bundle built elsewhere).
 * `--other <dir>` measures another checkout's `deno task run` (main, say)
 * in the same trials. `--binary` also measures a `deno compile`d Sluice (`deno task compile`);
 * `--v8="<flags>;<flags>"` adds `deno task run` with other V8 flags (each
 * set comma-separated, replacing the task's `--v8-flags`; `none` for
 * none).
 * Uses SLUICE_TEST_PG_URL when set (`deno task bench` sets it), else starts a
 * private PostgreSQL.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { stopChild } from "../dev/_common.ts";
import { startPostgres } from "../dev/postgres.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    trials: { type: "string", default: "5" },
    "idle-ms": { type: "string", default: "3000" },
    binary: { type: "string" },
    // V8 flag sets to compare with the task's own, separated by ";": --v8="--lite-mode;--max-semi-space-size=1"
    v8: { type: "string" },
    // Another checkout of Sluice (e.g. main) measured in the same trials: --other /path/to/main
    other: { type: "string" },
    // Bundled CLIs, comma-separated: "task" (the default) builds one with `deno task
    // bundle`'s command into a scratch folder, a path is a bundle's entry file; "none": none.
    bundle: { type: "string", default: "task" },
  },
});
const trials = Number(values.trials);
const idleMs = Number(values["idle-ms"]);
const TARGET_MS = 500;
const TARGET_IDLE_MB = 60;

const root = new URL("..", import.meta.url).pathname;
const external = Deno.env.get("SLUICE_TEST_PG_URL");
const server = external ? undefined : await startPostgres();
const adminUrl = external ?? server!.url;
const urlFor = (db: string) => Object.assign(new URL(adminUrl), { pathname: `/${db}` }).href;
const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
const SRC = "bench_startup_src";
const DST = "bench_startup_dst";
const SLOT = "bench_startup_slot";
const scratch = await Deno.makeTempDir({ prefix: "sluice_startup_" });
const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

/** What one process showed: when it was ready, its CPU then, its memory when idle. */
interface Sample {
  readyMs: number;
  cpuMs: number;
  idleRssMb: number;
  peakRssMb: number;
}

const load = async () =>
  (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

/** `deno task run`'s command in checkout `dir` as arguments of the deno binary (V8 flags included). */
async function runTaskArgs(dir = root): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${dir}deno.json`));
  const words = (config.tasks.run as string).split(/\s+/);
  if (words[0] !== "deno") throw new Error(`unexpected run task: ${config.tasks.run}`);
  return words.slice(1).map((word) => word.startsWith("cli/") ? `${dir}${word}` : word);
}

async function procStatus(pid: number): Promise<{ rss: number; hwm: number; cpuMs: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  // Fields after the command name (which may hold spaces) start at its closing parenthesis.
  const stat = (await Deno.readTextFile(`/proc/${pid}/stat`)).split(") ")[1].split(" ");
  const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime
  return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024, cpuMs: ticks * 1000 / TICKS };
}

/** Waits for `ready` (with a deadline), then samples the process, idles and samples again. */
async function measure(
  command: string,
  args: string[],
  ready: (child: Deno.ChildProcess) => Promise<void>,
): Promise<Sample> {
  const started = performance.now();
  const child = new Deno.Command(command, {
    args,
    cwd: scratch,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${command} not ready after 60 s`)), 60_000);
    });
    await Promise.race([
      ready(child),
      deadline,
      child.status.then((s) => {
        throw new Error(`${command} ${args.join(" ")} exited early with ${s.code}`);
      }),
    ]).finally(() => clearTimeout(timer));
    const readyMs = performance.now() - started;
    const { cpuMs } = await procStatus(child.pid);
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const { rss, hwm } = await procStatus(child.pid);
    return { readyMs, cpuMs, idleRssMb: rss, peakRssMb: hwm };
  } finally {
    await stopChild(child);
    await child.stdout.cancel().catch(() => {});
  }
}

/** The reference: bare Deno, a script that says it started and waits. */
async function reference(): Promise<Sample> {
  const script = `${scratch}/idle.ts`;
  await Deno.writeTextFile(
    script,
    `console.log("ready"); setTimeout(() => {}, 600_000);\n`,
  );
  return await measure(Deno.execPath(), ["run", "-A", script], async (child) => {
    const reader = child.stdout.getReader();
    await reader.read(); // its line: the script runs
    reader.releaseLock();
  });
}

/**
 * Builds the CLI with `deno task bundle`'s command into a folder inside the
 * checkout (the bundle leaves the Kafka client to the import map of deno.json,
 * found from the bundle's folder) and returns its entry file.
 */
async function buildBundle(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  const words = (config.tasks.bundle as string).split(/\s+/);
  const outdir = await Deno.makeTempDir({ dir: root, prefix: ".startup_bundle_" });
  bundleDirs.push(outdir);
  const args = words.slice(1).map((word, i, all) => all[i - 1] === "--outdir" ? outdir : word);
  const built = await new Deno.Command(Deno.execPath(), { args, cwd: root, stdout: "null" })
    .output();
  if (!built.success) {
    throw new Error(`deno ${args.join(" ")}: ${new TextDecoder().decode(built.stderr)}`);
  }
  return `${outdir}/main.js`;
}
const bundleDirs: string[] = [];

let nextId = 1;

/** Sluice: spawned, then a row committed at once; ready when it is in the target. */
async function sluice(
  source: postgres.Sql,
  target: postgres.Sql,
  command: string,
  args: string[],
  first = false,
): Promise<Sample> {
  const id = nextId++;
  return await measure(command, args, async () => {
    // A first run makes the slot: a row committed before it would not be streamed.
    while (first) {
      const slots = await source`select 1 from pg_replication_slots
                                 where slot_name = ${SLOT} and active`;
      if (slots.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await source`insert into items (id, name) values (${id}, ${"row " + id})`;
    for (;;) {
      const rows = await target`select 1 from items where id = ${id}`;
      if (rows.length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function report(name: string, samples: Sample[], ref: Sample[]) {
  const m = (key: keyof Sample) => median(samples.map((s) => s[key]));
  const r = (key: keyof Sample) => median(ref.map((s) => s[key]));
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  console.log(
    `${name}: first event ${m("readyMs").toFixed(0)} ms wall (${
      ratio(m("readyMs"), r("readyMs"))
    } bare deno, ${ratio(m("readyMs"), TARGET_MS)} target ${TARGET_MS} ms), ` +
      `${m("cpuMs").toFixed(0)} ms CPU (${ratio(m("cpuMs"), TARGET_MS)} target); ` +
      `idle RSS ${m("idleRssMb").toFixed(1)} MB (${
        ratio(m("idleRssMb"), r("idleRssMb"))
      } bare deno, ${ratio(m("idleRssMb"), TARGET_IDLE_MB)} target ${TARGET_IDLE_MB} MB), ` +
      `peak ${m("peakRssMb").toFixed(1)} MB`,
  );
}

try {
  for (const db of [SRC, DST]) {
    await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots
                where database = ${db} and not active`;
    await admin.unsafe(`drop database if exists ${db} with (force)`);
    await admin.unsafe(`create database ${db}`);
  }
  const source = postgres(urlFor(SRC), { max: 1, onnotice: () => {} });
  const target = postgres(urlFor(DST), { max: 1, onnotice: () => {} });
  await source`create table items (id int primary key, name text)`;
  await target`create table items (id int primary key, name text)`;
  const config = `${scratch}/startup.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      name: "startup",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": urlFor(SRC),
        "topic.prefix": "startup",
        "slot.name": SLOT,
        "publication.name": "bench_startup_publication",
        "snapshot.mode": "never",
        "sink.class": "postgres",
        "sink.connection.url": urlFor(DST),
        "sink.table": "public.items",
        "sink.delete.mode": "hard",
      },
    }),
  );
  const port = (() => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    listener.close();
    return port;
  })();
  const runArgs = [
    config,
    "--offsets",
    `${scratch}/offsets.json`,
    "--listen",
    `127.0.0.1:${port}`,
    "--log-level",
    "warning",
  ];
  const task = [...await runTaskArgs(), "run", ...runArgs];
  console.log(`load average (1, 5, 15 min) at start: ${await load()}`);
  console.log(`sluice: deno ${task.join(" ")}`);
  // Warm-up: makes the slot and publication (the row of a first run would
  // precede the slot) and fills Deno's caches.
  await sluice(source, target, Deno.execPath(), task, true);
  const variants: [string, string, string[]][] = [["deno task run", Deno.execPath(), task]];
  for (const flags of values.v8?.split(";").filter((f) => f !== "") ?? []) {
    // "none": the task's command without V8 flags.
    const args = [
      task[0],
      ...(flags === "none" ? [] : [`--v8-flags=${flags}`]),
      ...task.slice(1).filter((arg) => !arg.startsWith("--v8-flags")),
    ];
    variants.push([
      flags === "none" ? "no V8 flags" : `--v8-flags=${flags}`,
      Deno.execPath(),
      args,
    ]);
  }
  if (values.other) {
    const dir = values.other.endsWith("/") ? values.other : `${values.other}/`;
    variants.push([`${dir} deno task run`, Deno.execPath(), [
      ...await runTaskArgs(dir),
      "run",
      ...runArgs,
    ]]);
  }
  // "task": built here with `deno task bundle`'s command; a path: a bundle built elsewhere.
  for (const file of values.bundle.split(",").filter((f) => f !== "" && f !== "none")) {
    const bundle = await Deno.realPath(file === "task" ? await buildBundle() : file);
    const name = file === "task" ? "deno task bundle" : `bundle ${file}`;
    // The bundle in place of cli/main.ts, with the run task's flags.
    variants.push([
      name,
      Deno.execPath(),
      task.map((arg) => arg.endsWith("cli/main.ts") ? bundle : arg),
    ]);
  }
  if (values.binary) {
    variants.push(["compiled binary", values.binary, ["run", ...runArgs]]);
  }
  // Every other variant once unmeasured too, for its caches.
  for (const [, command, args] of variants.slice(1)) await sluice(source, target, command, args);
  const ref: Sample[] = [];
  const results = variants.map(() => [] as Sample[]);
  for (let trial = 0; trial < trials; trial++) {
    ref.push(await reference());
    for (const [i, [, command, args]] of variants.entries()) {
      results[i].push(await sluice(source, target, command, args));
    }
    console.log(
      `  trial ${trial + 1}: bare deno ${ref.at(-1)!.readyMs.toFixed(0)} ms ${
        ref.at(-1)!.idleRssMb.toFixed(1)
      } MB; ${
        variants.map(([name], i) =>
          `${name} ${results[i].at(-1)!.readyMs.toFixed(0)} ms (${
            results[i].at(-1)!.cpuMs.toFixed(0)
          } ms CPU) ${results[i].at(-1)!.idleRssMb.toFixed(1)} MB`
        ).join("; ")
      }; load ${await load()}`,
    );
  }
  const r = (key: keyof Sample) => median(ref.map((s) => s[key]));
  console.log(
    `bare deno (reference): ready ${r("readyMs").toFixed(0)} ms wall, ${
      r("cpuMs").toFixed(0)
    } ms CPU; idle RSS ${r("idleRssMb").toFixed(1)} MB`,
  );
  for (const [i, [name]] of variants.entries()) report(name, results[i], ref);
  console.log(`load average at end: ${await load()}`);
  await source.end();
  await target.end();
} finally {
  await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots
              where slot_name = ${SLOT} and not active`.catch(() => {});
  for (const db of [SRC, DST]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch(() => {});
  }
  await admin.end();
  await server?.stop();
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
  for (const dir of bundleDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
}
