/**
 * A private, throw-away single-node Kafka broker for tests and the demo.
 *
 * The broker comes from Maven ({@linkcode ensureKafkaJars}, cached per Kafka
 * version), runs in KRaft combined mode (broker and controller in one JVM) on
 * two free loopback ports, with its data in a temporary folder.
 *
 * CLI: `deno run -A dev/kafka.ts start` prints the bootstrap address and keeps
 * the broker running until SIGINT/SIGTERM.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { Admin } from "@platformatic/kafka";
import {
  freePorts,
  mavenLibs,
  runOk,
  secondsSince,
  sluiceCacheDir,
  tailFile,
  waitForStopSignal,
} from "./_common.ts";

/** Kafka version of the broker; must match `kafka.version` in dev/kafka/pom.xml. */
export const KAFKA_VERSION = "4.2.2";

const POM = fileURLToPath(new URL("./kafka/pom.xml", import.meta.url));

/** A running private Kafka broker. */
export interface KafkaServer {
  /** Bootstrap address, `127.0.0.1:PORT`. */
  brokers: string;
  port: number;
  /** Broker log file (stdout and stderr of the JVM). */
  logFile: string;
  /** Stops the broker (SIGTERM, SIGKILL after 20 s) and removes its folder. */
  stop(): Promise<void>;
  /** Stops the broker keeping its data, then starts it on the same ports. */
  restart(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@linkcode startKafka}. */
export interface StartKafkaOptions {
  /** Client port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /** Where the broker's output goes; defaults to `kafka.log` in its temp folder. */
  logFile?: string;
}

const MISSING_JAVA =
  "Java 17 or newer is needed to run the private Kafka broker: install it with " +
  "`apt-get install openjdk-17-jdk-headless`, or set SLUICE_TEST_KAFKA_BROKERS to use an " +
  "existing broker instead.";

const cacheRoot = () => sluiceCacheDir(`kafka-${KAFKA_VERSION}`);

/**
 * Makes sure the broker's jars are in the cache and returns that folder
 * (`$XDG_CACHE_HOME` or `~/.cache`, then `sluice/kafka-<version>/libs`).
 *
 * (see {@linkcode mavenLibs}).
 */
export async function ensureKafkaJars(): Promise<string> {
  const pom = await Deno.readTextFile(POM);
  if (!pom.includes(`<kafka.version>${KAFKA_VERSION}</kafka.version>`)) {
    throw new Error(
      `${POM} must set kafka.version to ${KAFKA_VERSION} (KAFKA_VERSION in kafka.ts)`,
    );
  }
  return await mavenLibs(
    POM,
    cacheRoot(),
    `Kafka ${KAFKA_VERSION}`,
    "Maven (`mvn`) is needed once to download the Kafka broker: install it with " +
      "`apt-get install maven`, or set SLUICE_TEST_KAFKA_BROKERS to use an existing broker.",
  );
}

/** A cluster id for `StorageTool format`: 16 random bytes, base64url, no padding. */
function randomClusterId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

function serverProperties(dir: string, port: number, controllerPort: number): string {
  const props: Record<string, string | number | boolean> = {
    "process.roles": "broker,controller",
    "node.id": 1,
    // Dynamic quorum (what `format --standalone` sets up) is found through
    // bootstrap servers; controller.quorum.voters must not be set with it.
    "controller.quorum.bootstrap.servers": `127.0.0.1:${controllerPort}`,
    "listeners": `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    "advertised.listeners":
      `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "log.dirs": `${dir}/data`,
    // One node: every internal topic must make do with one replica.
    "offsets.topic.replication.factor": 1,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "min.insync.replicas": 1,
    // The defaults (50 partitions) make the first consumer group wait for
    // 50 partitions to be created; tests create many short-lived groups.
    "offsets.topic.num.partitions": 1,
    "transaction.state.log.num.partitions": 1,
    "group.initial.rebalance.delay.ms": 0,
    "auto.create.topics.enable": true,
    "num.partitions": 1,
  };
  return Object.entries(props).map(([k, v]) => `${k}=${v}`).join("\n") + "\n";
}

// Warnings and errors only, plus the one line saying the server started.
const LOG4J2 = `status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
`;

/**
 * Formats storage in a fresh temporary folder and starts a single-node KRaft
 * broker; resolves once an admin client can list topics and find the
 * group coordinator. Throws with the broker log's tail when it does not become
 * ready within about 60 s.
 */
export async function startKafka(options: StartKafkaOptions = {}): Promise<KafkaServer> {
  const libs = await ensureKafkaJars();
  const dir = await Deno.makeTempDir({ prefix: "sluice-kafka-" });
  try {
    const [freeA, freeB] = freePorts(2);
    const port = options.port ?? freeA;
    const controllerPort = freeB === port ? freePorts(1)[0] : freeB;
    const logFile = options.logFile ?? `${dir}/kafka.log`;
    const props = `${dir}/server.properties`;
    await Deno.writeTextFile(props, serverProperties(dir, port, controllerPort));
    await Deno.writeTextFile(`${dir}/log4j2.properties`, LOG4J2);
    const jvm = [
      "-cp",
      `${libs}/*`,
      `-Dlog4j2.configurationFile=${dir}/log4j2.properties`,
      "-Djava.awt.headless=true",
    ];
    // `--cluster-id=` rather than `-t <id>`: a base64url id may start with "-".
    const format = [
      "kafka.tools.StorageTool",
      "format",
      "--standalone",
      `--cluster-id=${randomClusterId()}`,
    ];
    try {
      await runOk(["java", ...jvm, ...format, "-c", props]);
    } catch (e) {
      throw e instanceof Deno.errors.NotFound ? new Error(MISSING_JAVA) : e;
    }
    const serverCmd = ["java", "-Xmx512m", ...jvm, "kafka.Kafka", props];

    let child: Deno.ChildProcess | undefined;
    let stopped = false;
    const launch = async () => {
      // exec through sh so the JVM writes straight into the log file: no pipe
      // for Deno to drain, and the log is complete even if Deno is busy.
      child = new Deno.Command("sh", {
        args: ["-c", 'exec "$@" >>"$SLUICE_KAFKA_LOG" 2>&1', "sh", ...serverCmd],
        env: { SLUICE_KAFKA_LOG: logFile },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitUntilReady(`127.0.0.1:${port}`, child, logFile);
    };
    const halt = async () => {
      const proc = child;
      child = undefined;
      if (!proc) return;
      const killTimer = setTimeout(() => {
        try {
          proc.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 20_000);
      try {
        proc.kill("SIGTERM");
      } catch { /* already gone */ }
      await proc.status;
      clearTimeout(killTimer);
    };
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      try {
        await halt();
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    };
    try {
      await launch();
    } catch (e) {
      await halt();
      throw e;
    }
    return {
      brokers: `127.0.0.1:${port}`,
      port,
      logFile,
      stop,
      restart: async () => {
        if (stopped) throw new Error("this Kafka broker was already stopped");
        await halt();
        try {
          await launch();
        } catch (e) {
          await halt();
          throw e;
        }
      },
      [Symbol.asyncDispose]: stop,
    };
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Polls with an admin client until topics and groups can be queried. */
async function waitUntilReady(
  brokers: string,
  child: Deno.ChildProcess,
  logFile: string,
): Promise<void> {
  const start = performance.now();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => exited = s);
  let lastError: unknown;
  while (performance.now() - start < 60_000) {
    if (exited) {
      throw new Error(
        `the Kafka broker exited with code ${exited.code} while starting:\n${await tailFile(
          logFile,
        )}`,
      );
    }
    const admin = new Admin({
      clientId: "sluice-dev-ready",
      bootstrapBrokers: [brokers],
      connectTimeout: 1000,
      retries: 0,
    });
    try {
      await admin.listTopics();
      // Asking for a group makes the broker create __consumer_offsets now, so
      // the first consumer in a test does not wait for the group coordinator.
      await admin.describeGroups({ groups: ["sluice-dev-ready"] });
      return;
    } catch (e) {
      lastError = e;
    } finally {
      await admin.close().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `the Kafka broker at ${brokers} was not ready after ${secondsSince(start)} ` +
      `(last error: ${lastError instanceof Error ? lastError.message : lastError}):\n` +
      await tailFile(logFile),
  );
}

if (import.meta.main) {
  if (Deno.args[0] !== "start") {
    console.error("usage: deno run -A dev/kafka.ts start");
    Deno.exit(2);
  }
  const server = await startKafka();
  console.log(server.brokers);
  await waitForStopSignal();
  await server.stop();
}
