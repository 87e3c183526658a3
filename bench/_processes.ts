/**
 * CPU and memory figures of the processes a benchmark compares, read from
 * `/proc` (Linux), and the real Debezium as a capture reference.
 *
 * @module
 */
import { type ConnectWorker, startConnect } from "../dev/connect.ts";

/** User + system CPU seconds a process (all its threads) has used so far; 0 once it is gone. */
export async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Peak resident memory (VmHWM) of a process so far, in kB; 0 once it is gone. */
export async function peakRssKb(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = /VmHWM:\s+(\d+)/.exec(status);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Wall time, CPU seconds and peak RSS of a command run to its end. */
export interface Timed {
  readonly ms: number;
  /** User + system CPU seconds; undefined when GNU time is missing. */
  readonly cpu?: number;
  /** Peak RSS in kB; undefined when GNU time is missing. */
  readonly peakKb?: number;
}

/**
 * Runs `command` to its end; with `/usr/bin/time` (GNU time) present, its
 * CPU time and peak RSS are measured exactly, after it exited.
 */
export async function timeCommand(command: string, args: string[]): Promise<Timed> {
  const gnuTime = await Deno.stat("/usr/bin/time").then(() => true, () => false);
  const report = gnuTime ? await Deno.makeTempFile({ prefix: "sluice_bench_time_" }) : "";
  const started = performance.now();
  const status = await new Deno.Command(gnuTime ? "/usr/bin/time" : command, {
    args: gnuTime ? ["-o", report, "-f", "%U %S %M", command, ...args] : args,
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  const ms = performance.now() - started;
  if (!status.success) throw new Error(`${command} ${args.join(" ")} exited with ${status.code}`);
  if (!gnuTime) return { ms };
  const text = await Deno.readTextFile(report);
  await Deno.remove(report).catch(() => {});
  const [user, system, maxKb] = text.trim().split("\n").at(-1)!.split(" ").map(Number);
  return { ms, cpu: user + system, peakKb: maxKb };
}

/** What the Debezium reference reads, and how its producer is tuned. */
export interface DebeziumCapture {
  /** Database URL (postgres://user:password@host:port/db). */
  readonly url: string;
  readonly brokers: string;
  readonly prefix: string;
  /** An existing pgoutput slot, created at the same point as the others'. */
  readonly slot: string;
  /** An existing publication. */
  readonly publication: string;
  readonly table: string;
}

/**
 * Kafka Connect standalone with Debezium's PostgreSQL connector streaming
 * an existing slot (`snapshot.mode` no_data: no snapshot, no stored offset,
 * so it starts at the slot's position). The producer is tuned for
 * throughput (linger.ms 5, batch.size 256 KB) and the JVM runs with its
 * defaults (no heap cap, full JIT), as one would run it in production.
 */
export async function startDebezium(capture: DebeziumCapture): Promise<ConnectWorker> {
  const url = new URL(capture.url);
  return await startConnect(
    capture.brokers,
    [{
      name: `${capture.prefix}-debezium`,
      config: {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": url.hostname,
        "database.port": url.port || "5432",
        "database.user": decodeURIComponent(url.username),
        "database.password": decodeURIComponent(url.password),
        "database.dbname": url.pathname.slice(1),
        "topic.prefix": capture.prefix,
        "plugin.name": "pgoutput",
        "slot.name": capture.slot,
        "publication.name": capture.publication,
        "publication.autocreate.mode": "disabled",
        "table.include.list": capture.table,
        "snapshot.mode": "no_data",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
      },
    }],
    {
      timeoutMs: 300_000,
      jvm: [],
      worker: {
        "producer.linger.ms": "5",
        "producer.batch.size": "262144",
        "offset.flush.interval.ms": "1000",
      },
    },
  );
}
