/**
 * Kafka Connect standalone with Debezium's PostgreSQL source and JDBC sink
 * connectors and Apicurio's Avro converter, for the interoperability tests:
 * the real Debezium writes topics Sluice reads, and reads topics Sluice
 * writes.
 *
 * The jars come from Maven ({@linkcode ensureConnectJars}, cached per
 * version, as `dev/kafka.ts` does for the broker). The worker runs with
 * `plugin.discovery=service_load` (the classpath scan alone costs ~1 GB and
 * seconds), JsonConverter for keys and values, file offsets, and its REST
 * listener on a free loopback port.
 *
 * CLI: `deno run -A dev/connect.ts <brokers> <connector.properties>…` runs
 * the worker until SIGINT/SIGTERM.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  childStopper,
  freePorts,
  mavenLibs,
  secondsSince,
  sluiceCacheDir,
  tailFile,
  waitForStopSignal,
} from "./_common.ts";

/** Versions; must match dev/connect/pom.xml (they name the cache folder). */
export const CONNECT_VERSIONS = {
  kafka: "4.2.2",
  debezium: "3.6.1.Final",
  jdbc: "3.6.0.Final",
  apicurio: "2.4.2.Final",
};

const POM = fileURLToPath(new URL("./connect/pom.xml", import.meta.url));

function cacheDir(): string {
  const { kafka, debezium, jdbc, apicurio } = CONNECT_VERSIONS;
  return sluiceCacheDir(`connect-${kafka}-${debezium}-${jdbc}-${apicurio}`);
}

/**
 * Makes sure Kafka Connect's and Debezium's jars are in the cache and
 * returns that folder (see {@linkcode mavenLibs}).
 */
export async function ensureConnectJars(): Promise<string> {
  const pom = await Deno.readTextFile(POM);
  for (const [name, version] of Object.entries(CONNECT_VERSIONS)) {
    if (!pom.includes(`>${version}<`)) {
      throw new Error(`${POM} must use ${name} ${version} (CONNECT_VERSIONS in connect.ts)`);
    }
  }
  return await mavenLibs(
    POM,
    cacheDir(),
    "Kafka Connect and Debezium",
    "Maven (`mvn`) is needed once to fetch Kafka Connect and Debezium",
  );
}

/** A connector for the worker: its name and properties. */
export interface ConnectorProperties {
  readonly name: string;
  readonly config: Readonly<Record<string, string>>;
}

/** A running Kafka Connect standalone worker. */
export interface ConnectWorker {
  /** `http://127.0.0.1:PORT`, Kafka Connect's REST API. */
  readonly rest: string;
  readonly logFile: string;
  /** The Java process's id (for CPU and memory figures). */
  readonly pid: number;
  /** The connector's and its tasks' states (`RUNNING`, `FAILED`…), and a failed task's trace. */
  status(name: string): Promise<{ connector: string; tasks: string[]; trace?: string }>;
  /** Stops the worker (SIGTERM, SIGKILL after 20 s) and removes its folder. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// Warnings and errors only: the tests read the REST status, not the log.
const LOG4J2 = `status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
`;

const properties = (entries: Record<string, string>) =>
  Object.entries(entries).map(([k, v]) => `${k}=${v.replaceAll("\\", "\\\\")}`).join("\n") +
  "\n";

/**
 * Starts Kafka Connect standalone against `brokers` with the given
 * connectors; resolves once every connector and task is RUNNING (throws with
 * the log's tail when one fails or after `timeoutMs`).
 */
export async function startConnect(
  brokers: string,
  connectors: readonly ConnectorProperties[],
  options: {
    timeoutMs?: number;
    worker?: Record<string, string>;
    /** JVM options before the class path; default a 512 MB heap and C1 only (fast start). */
    jvm?: readonly string[];
  } = {},
): Promise<ConnectWorker> {
  const libs = await ensureConnectJars();
  const dir = await Deno.makeTempDir({ prefix: "sluice-connect-" });
  const [port] = freePorts(1);
  const rest = `http://127.0.0.1:${port}`;
  const logFile = `${dir}/connect.log`;
  await Deno.writeTextFile(`${dir}/log4j2.properties`, LOG4J2);
  await Deno.writeTextFile(
    `${dir}/worker.properties`,
    properties({
      "bootstrap.servers": brokers,
      "key.converter": "org.apache.kafka.connect.json.JsonConverter",
      "value.converter": "org.apache.kafka.connect.json.JsonConverter",
      "offset.storage.file.filename": `${dir}/offsets`,
      "offset.flush.interval.ms": "1000",
      "plugin.discovery": "service_load",
      "listeners": rest,
      ...options.worker,
    }),
  );
  const files: string[] = [];
  for (const connector of connectors) {
    const file = `${dir}/${connector.name}.properties`;
    await Deno.writeTextFile(file, properties({ name: connector.name, ...connector.config }));
    files.push(file);
  }
  const args = [
    ...(options.jvm ?? ["-Xmx512m", "-XX:TieredStopAtLevel=1"]),
    "-cp",
    `${libs}/*`,
    `-Dlog4j2.configurationFile=${dir}/log4j2.properties`,
    "org.apache.kafka.connect.cli.ConnectStandalone",
    `${dir}/worker.properties`,
    ...files,
  ];
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" >>"$SLUICE_CONNECT_LOG" 2>&1', "sh", "java", ...args],
    env: { SLUICE_CONNECT_LOG: logFile },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = childStopper(child, dir);
  const status = async (name: string) => {
    const response = await fetch(`${rest}/connectors/${encodeURIComponent(name)}/status`);
    if (!response.ok) {
      await response.body?.cancel();
      return { connector: `HTTP ${response.status}`, tasks: [] };
    }
    const body = await response.json() as {
      connector: { state: string };
      tasks: { state: string; trace?: string }[];
    };
    return {
      connector: body.connector.state,
      tasks: body.tasks.map((t) => t.state),
      trace: body.tasks.find((t) => t.trace)?.trace,
    };
  };
  const worker: ConnectWorker = {
    rest,
    logFile,
    // `sh -c 'exec java …'`: the shell becomes the JVM, same process id.
    pid: child.pid,
    status,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  try {
    await waitUntilRunning(worker, connectors, child, options.timeoutMs ?? 120_000);
  } catch (e) {
    const tail = await tailFile(logFile, 30);
    await stop();
    throw new Error(`${(e as Error).message}\n${tail}`);
  }
  return worker;
}

async function waitUntilRunning(
  worker: ConnectWorker,
  connectors: readonly ConnectorProperties[],
  child: Deno.ChildProcess,
  timeoutMs: number,
): Promise<void> {
  const start = performance.now();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => exited = s);
  let last = "";
  while (performance.now() - start < timeoutMs) {
    if (exited) throw new Error(`Kafka Connect exited with code ${exited.code} while starting`);
    try {
      const states = await Promise.all(connectors.map((c) => worker.status(c.name)));
      last = JSON.stringify(states.map((s) => [s.connector, s.tasks]));
      const failed = states.find((s) => s.connector === "FAILED" || s.tasks.includes("FAILED"));
      if (failed) throw new Error(`a connector failed: ${failed.trace ?? last}`);
      if (
        states.every((s) =>
          s.connector === "RUNNING" && s.tasks.length > 0 &&
          s.tasks.every((t) => t === "RUNNING")
        )
      ) return;
    } catch (e) {
      if ((e as Error).message.startsWith("a connector failed")) throw e;
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`Kafka Connect was not running after ${secondsSince(start)}: ${last}`);
}

if (import.meta.main) {
  const [brokers, ...files] = Deno.args;
  if (!brokers || files.length === 0) {
    console.error("usage: deno run -A dev/connect.ts <brokers> <connector.properties>…");
    Deno.exit(2);
  }
  const connectors = await Promise.all(files.map(async (file) => {
    const config: Record<string, string> = {};
    for (const line of (await Deno.readTextFile(file)).split("\n")) {
      const match = /^\s*([^#=\s][^=]*)=(.*)$/.exec(line);
      if (match) config[match[1].trim()] = match[2].trim();
    }
    return { name: config.name ?? file, config };
  }));
  const worker = await startConnect(brokers, connectors);
  console.log(worker.rest);
  await waitForStopSignal();
  await worker.stop();
}
