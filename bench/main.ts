/**
 * `deno task bench`: runs every benchmark in `bench/`, one process each, so
 * that memory figures are their own. Each prints its reference command's
 * figures beside Sluice's and the ratio against its target.
 *
 * @module
 */
const here = new URL(".", import.meta.url).pathname;
const benches = [...Deno.readDirSync(here)]
  .filter((entry) => entry.isFile && entry.name.endsWith("_bench.ts"))
  .map((entry) => entry.name)
  .sort();

let failed = 0;
for (const bench of benches) {
  console.log(`\n=== ${bench} ===`);
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-cron", `${here}${bench}`, ...Deno.args],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  if (!status.success) failed++;
}
Deno.exit(failed > 0 ? 1 : 0);
