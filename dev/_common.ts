/**
 * Small helpers shared by the private dev services (PostgreSQL, Kafka).
 *
 * @module
 */

/**
 * Returns `count` distinct free TCP ports on 127.0.0.1.
 *
 * The kernel picks them (bind to port 0); all listeners stay open until every
 * port is chosen so one call never returns the same port twice. There is a
 * short window before the server binds where another process could take it;
 * on a test machine that is rare enough to accept.
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => {
    return Deno.listen({ hostname: "127.0.0.1", port: 0 });
  });
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** What {@linkcode run} returns: exit status plus decoded output. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion and captures its output.
 *
 * Throws `Deno.errors.NotFound` when the program does not exist, so callers
 * can turn that into an install hint.
 */
export async function run(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Like {@linkcode run} but throws with the command's output when it fails. */
export async function runOk(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const res = await run(cmd, options);
  if (res.code !== 0) {
    throw new Error(
      `\`${cmd.join(" ")}\` exited with code ${res.code}:\n${(res.stdout + res.stderr).trim()}`,
    );
  }
  return res;
}

/** The last `lines` lines of a text file, or a note when it cannot be read. */
export async function tailFile(path: string, lines = 40): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch (e) {
    return `(could not read ${path}: ${e instanceof Error ? e.message : e})`;
  }
}

/** Resolves when the process receives SIGINT or SIGTERM (then stops listening). */
export function waitForStopSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const handlers = signals.map((sig) => {
      const handler = () => {
        signals.forEach((s, i) => Deno.removeSignalListener(s, handlers[i]));
        resolve(sig);
      };
      Deno.addSignalListener(sig, handler);
      return handler;
    });
  });
}

/** Seconds since `start` (a `performance.now()` value), for progress lines. */
export function secondsSince(start: number): string {
  return `${((performance.now() - start) / 1000).toFixed(1)} s`;
}

/**
 * Copies the dependencies of `pomPath` into `<root>/libs` with Maven, once,
 * and returns that folder. Maven copies into a scratch folder that is
 * renamed into place only after a marker file (holding the pom's text) was
 * written, so an interrupted copy is redone and a changed pom triggers a
 * fresh one. `what` names the download in errors; `withoutMaven` is the
 * sentence shown when `mvn` is missing.
 */
export async function mavenLibs(
  pomPath: string,
  root: string,
  what: string,
  withoutMaven: string,
): Promise<string> {
  const libs = `${root}/libs`;
  const pom = await Deno.readTextFile(pomPath);
  const marker = ".sluice-complete";
  try {
    if (await Deno.readTextFile(`${libs}/${marker}`) === pom) return libs;
  } catch { /* not there yet */ }
  await Deno.mkdir(root, { recursive: true });
  const scratch = await Deno.makeTempDir({ dir: root, prefix: "libs-partial-" });
  try {
    let res;
    try {
      res = await run([
        "mvn",
        ...["-q", "-B", "-f", pomPath, "dependency:copy-dependencies"],
        `-DoutputDirectory=${scratch}`,
      ]);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Error(withoutMaven);
    }
    if (res.code !== 0) {
      throw new Error(`Maven could not fetch ${what}:\n${res.stdout}${res.stderr}`);
    }
    await Deno.writeTextFile(`${scratch}/${marker}`, pom);
    // Another process may have finished first; ours is as good, replace it.
    await Deno.remove(libs, { recursive: true }).catch(() => {});
    await Deno.rename(scratch, libs);
    return libs;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/** `<cache>/sluice/<name>`: `$XDG_CACHE_HOME` or `~/.cache`, where fetched jars and builds live. */
export function sluiceCacheDir(name: string): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME");
  if (!xdg && !home) throw new Error("neither XDG_CACHE_HOME nor HOME is set");
  return `${xdg || `${home}/.cache`}/sluice/${name}`;
}

/** Stops a child: SIGTERM, SIGKILL if it is still there after `graceMs`. */
export async function stopChild(child: Deno.ChildProcess, graceMs = 20_000): Promise<void> {
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, graceMs);
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  await child.status;
  clearTimeout(timer);
}

/**
 * A stop function for a JVM child started by a dev script: {@linkcode stopChild},
 * then its scratch folder removed. Calling it again does nothing.
 */
export function childStopper(child: Deno.ChildProcess, dir: string): () => Promise<void> {
  let stopped = false;
  return async () => {
    if (stopped) return;
    stopped = true;
    await stopChild(child);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
}
