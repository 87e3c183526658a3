import { assert } from "../_assert.ts";
import { SLUICE_V8_FLAGS } from "../../cli/worker.ts";

Deno.test("deno task run and deno task compile start Sluice with its V8 settings", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  );
  for (const task of ["run", "compile"]) {
    assert(
      (config.tasks[task] as string).includes(`--v8-flags=${SLUICE_V8_FLAGS} `),
      `deno.json task "${task}" lacks --v8-flags=${SLUICE_V8_FLAGS}: ${config.tasks[task]}`,
    );
  }
});
