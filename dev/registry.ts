/**
 * A private schema registry with the Confluent-compatible API, for the Avro
 * tests and benchmarks: Apicurio Registry with its in-memory storage.
 *
 * Apicurio publishes its application jar on Maven Central but no runnable
 * build, so {@linkcode ensureRegistryBuild} builds one once with Maven from
 * `dev/registry/` (its pom says why that version and what is substituted)
 * and caches it per version. {@linkcode startRegistry} runs it on a free
 * loopback port; the Confluent API is at `<url>/apis/ccompat/v7`, which is
 * what {@linkcode RegistryServer.url} returns.
 *
 * CLI: `deno run -A dev/registry.ts` prints the URL and keeps the registry
 * running until SIGINT/SIGTERM.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  childStopper,
  freePorts,
  run,
  secondsSince,
  sluiceCacheDir,
  tailFile,
  waitForStopSignal,
} from "./_common.ts";

/** Apicurio version; must match `apicurio.version` in dev/registry/pom.xml. */
export const REGISTRY_VERSION = "2.4.2.Final";

const PROJECT = fileURLToPath(new URL("./registry/", import.meta.url));
const PROJECT_FILES = [
  "pom.xml",
  "src/main/resources/application.properties",
  "src/main/java/dev/sluice/registry/DynamicConfigListProducer.java",
];

/** What {@linkcode startRegistry} returns. */
export interface RegistryServer {
  /** The Confluent-compatible API, `http://127.0.0.1:PORT/apis/ccompat/v7`. */
  readonly url: string;
  /** Apicurio's own API, `http://127.0.0.1:PORT/apis/registry/v2` (its serdes and converters use it). */
  readonly apicurioUrl: string;
  readonly logFile: string;
  /** Stops the registry (SIGTERM, SIGKILL after 20 s) and removes its folder. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const MISSING_TOOLS = "Java 17 and Maven (`mvn`) are needed to build and run the private " +
  "schema registry: install them with `apt-get install openjdk-17-jdk-headless maven`.";

const cacheRoot = () => sluiceCacheDir(`registry-${REGISTRY_VERSION}`);

/**
 * Builds the registry with Maven unless the cache holds a build of the same
 * project files, and returns the folder holding `registry.jar` and `lib/`.
 * Like `mavenLibs`, the build happens in a scratch folder that is renamed
 * into place only after the marker (the project files' text) was written.
 */
export async function ensureRegistryBuild(): Promise<string> {
  const texts = await Promise.all(PROJECT_FILES.map((f) => Deno.readTextFile(PROJECT + f)));
  if (!texts[0].includes(`<apicurio.version>${REGISTRY_VERSION}</apicurio.version>`)) {
    throw new Error(`${PROJECT}pom.xml must use Apicurio ${REGISTRY_VERSION} (registry.ts)`);
  }
  const marker = texts.join("\n");
  const root = cacheRoot();
  const app = `${root}/app`;
  try {
    if (await Deno.readTextFile(`${app}/.sluice-complete`) === marker) return app;
  } catch { /* not built yet */ }
  await Deno.mkdir(root, { recursive: true });
  const scratch = await Deno.makeTempDir({ dir: root, prefix: "build-" });
  try {
    for (const [i, file] of PROJECT_FILES.entries()) {
      const path = `${scratch}/${file}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, texts[i]);
    }
    let res;
    try {
      res = await run(["mvn", "-q", "-B", "package", "-DskipTests"], { cwd: scratch });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new Error(MISSING_TOOLS);
      throw e;
    }
    if (res.code !== 0) {
      throw new Error(`Maven could not build the schema registry:\n${res.stdout}${res.stderr}`);
    }
    await Deno.rename(
      `${scratch}/target/sluice-dev-registry-1-runner.jar`,
      `${scratch}/registry.jar`,
    );
    await Deno.rename(`${scratch}/target/lib`, `${scratch}/lib`);
    await Deno.remove(`${scratch}/target`, { recursive: true });
    await Deno.writeTextFile(`${scratch}/.sluice-complete`, marker);
    // Another process may have finished first; ours is as good, replace it.
    await Deno.remove(app, { recursive: true }).catch(() => {});
    await Deno.rename(scratch, app);
    return app;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/**
 * Builds (once) and starts the registry on a free loopback port with
 * in-memory storage; resolves once its Confluent API answers. Throws with
 * the log's tail when it does not within `timeoutMs` (default 180 s: the
 * JVM takes over a minute on a loaded two-core machine).
 */
export async function startRegistry(
  options: { timeoutMs?: number } = {},
): Promise<RegistryServer> {
  const app = await ensureRegistryBuild();
  const dir = await Deno.makeTempDir({ prefix: "sluice-registry-" });
  const [port] = freePorts(1);
  const base = `http://127.0.0.1:${port}`;
  const logFile = `${dir}/registry.log`;
  const args = [
    "-Xmx384m",
    "-XX:TieredStopAtLevel=1",
    `-Dquarkus.http.port=${port}`,
    "-Dquarkus.http.host=127.0.0.1",
    // No metrics, no UI, no audit noise: only the API is used.
    "-Dquarkus.log.level=WARN",
    "-jar",
    `${app}/registry.jar`,
  ];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("sh", {
      args: ["-c", 'exec "$@" >>"$SLUICE_REGISTRY_LOG" 2>&1', "sh", "java", ...args],
      env: { SLUICE_REGISTRY_LOG: logFile },
      cwd: dir,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
  const stop = childStopper(child, dir);
  const url = `${base}/apis/ccompat/v7`;
  try {
    await waitUntilServing(url, child, options.timeoutMs ?? 180_000);
  } catch (e) {
    const tail = await tailFile(logFile, 30);
    await stop();
    throw new Error(`${(e as Error).message}\n${tail}`);
  }
  const apicurioUrl = `${base}/apis/registry/v2`;
  return { url, apicurioUrl, logFile, stop, [Symbol.asyncDispose]: stop };
}

async function waitUntilServing(
  url: string,
  child: Deno.ChildProcess,
  timeoutMs: number,
): Promise<void> {
  const start = performance.now();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => exited = s);
  let last = "";
  while (performance.now() - start < timeoutMs) {
    if (exited) {
      throw new Error(
        exited.code === 127 ? MISSING_TOOLS : `the registry exited with code ${exited.code}`,
      );
    }
    try {
      const response = await fetch(`${url}/subjects`);
      await response.body?.cancel();
      if (response.ok) return;
      last = `HTTP ${response.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`The schema registry was not serving after ${secondsSince(start)}: ${last}`);
}

if (import.meta.main) {
  const registry = await startRegistry();
  console.log(`Schema registry at ${registry.url}`);
  await waitForStopSignal();
  await registry.stop();
}
