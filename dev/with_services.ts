/**
 * Runs a command with a private PostgreSQL and Kafka broker around it:
 *
 *     deno run -A dev/with_services.ts deno test -A tests/
 *
 * Both services start in parallel; the child gets `SLUICE_TEST_PG_URL` and
 * `SLUICE_TEST_KAFKA_BROKERS`. When either variable is already set, that
 * existing service is reused and not started. The services are stopped when
 * the child ends (also on SIGINT/SIGTERM) and the child's exit code is ours.
 *
 * @module
 */
import { type PostgresServer, startPostgres } from "./postgres.ts";
import { type KafkaServer, startKafka } from "./kafka.ts";
import { secondsSince } from "./_common.ts";

const command = Deno.args;
if (command.length === 0) {
  console.error("usage: deno run -A dev/with_services.ts <command> [args...]");
  Deno.exit(2);
}

/** Starts one service, printing where it is and how long it took. */
async function timed<T>(name: string, start: () => Promise<T>, where: (s: T) => string) {
  const t0 = performance.now();
  const server = await start();
  console.error(`with_services: ${name} at ${where(server)} (${secondsSince(t0)})`);
  return server;
}

// Listen for stop requests from the start, so a Ctrl-C while the services
// boot still stops them instead of leaving a server behind. Once the child
// runs, a request is passed on to it and it is left to finish; a second one
// kills it. (Ctrl-C in a terminal already reaches the child through the
// process group; forwarding is for a SIGTERM aimed at us alone, e.g. from CI.)
const running: { child?: Deno.ChildProcess } = {};
let signals = 0;
const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
  const handler = () => {
    signals++;
    try {
      running.child?.kill(signals > 1 ? "SIGKILL" : sig);
    } catch { /* child already gone */ }
  };
  Deno.addSignalListener(sig, handler);
  return [sig, handler] as const;
});

const pgFromEnv = Deno.env.get("SLUICE_TEST_PG_URL");
const kafkaFromEnv = Deno.env.get("SLUICE_TEST_KAFKA_BROKERS");
const [pgResult, kafkaResult] = await Promise.allSettled([
  pgFromEnv ? undefined : timed("PostgreSQL", () => startPostgres(), (s) => s.url),
  kafkaFromEnv ? undefined : timed("Kafka", () => startKafka(), (s) => s.brokers),
]);
const pg: PostgresServer | undefined = pgResult.status === "fulfilled" ? pgResult.value : undefined;
const kafka: KafkaServer | undefined = kafkaResult.status === "fulfilled"
  ? kafkaResult.value
  : undefined;

/** Stops what we started, stops listening for signals, and exits. */
async function finish(code: number): Promise<never> {
  await Promise.allSettled([pg?.stop(), kafka?.stop()]);
  for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  Deno.exit(code);
}

const failures = [pgResult, kafkaResult].filter((r) => r.status === "rejected");
for (const f of failures) console.error(`with_services: ${(f as PromiseRejectedResult).reason}`);
if (failures.length > 0) await finish(1);
if (signals > 0) await finish(130);

const child = running.child = new Deno.Command(command[0], {
  args: command.slice(1),
  env: {
    SLUICE_TEST_PG_URL: pgFromEnv || pg!.url,
    SLUICE_TEST_KAFKA_BROKERS: kafkaFromEnv || kafka!.brokers,
  },
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
await finish((await child.status).code);
