/**
 * `sluice job run <configs…> <pipeline>` and `offsets reset`: telling the
 * pipeline name from the config paths, in either order.
 */
import { assertEquals, assertRejects } from "../_assert.ts";
import { ConfigError } from "../../api/errors.ts";
import { splitPipelineArgument } from "../../cli/offsets.ts";

/** Runs `fn` in a temporary folder holding `masktest/m.json` and `other/`. */
async function inFolder(fn: () => Promise<void>) {
  const folder = await Deno.makeTempDir();
  const before = Deno.cwd();
  try {
    await Deno.mkdir(`${folder}/masktest`);
    await Deno.mkdir(`${folder}/other`);
    await Deno.writeTextFile(`${folder}/masktest/m.json`, "{}");
    Deno.chdir(folder);
    await fn();
  } finally {
    Deno.chdir(before);
    await Deno.remove(folder, { recursive: true });
  }
}

Deno.test("a pipeline name that is also a folder here is still the pipeline, in either order", async () => {
  await inFolder(async () => {
    assertEquals(await splitPipelineArgument(["masktest", "./masktest/m.json"], true), {
      paths: ["./masktest/m.json"],
      pipeline: "masktest",
    });
    assertEquals(await splitPipelineArgument(["./masktest/m.json", "masktest"], true), {
      paths: ["./masktest/m.json"],
      pipeline: "masktest",
    });
    assertEquals(await splitPipelineArgument(["masktest/", "masktest"], true), {
      paths: ["masktest/"],
      pipeline: "masktest",
    });
    // A name that is no path is the pipeline, as before.
    assertEquals(await splitPipelineArgument(["masktest", "job"], true), {
      paths: ["masktest"],
      pipeline: "job",
    });
  });
});

Deno.test("two bare arguments that both exist are refused with how to tell them apart", async () => {
  await inFolder(async () => {
    await assertRejects(
      () => splitPipelineArgument(["masktest", "other"], true),
      ConfigError,
      'cannot tell the pipeline name from the config paths: "masktest", "other" all exist as files or folders here; write config folders as "./masktest" or "masktest/"',
    );
    // offsets show takes no name: every argument is a path.
    assertEquals(await splitPipelineArgument(["masktest", "other"], false), {
      paths: ["masktest", "other"],
      pipeline: undefined,
    });
  });
});
