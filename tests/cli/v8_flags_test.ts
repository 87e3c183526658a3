import { assert } from "../_assert.ts";
import { SLUICE_DENO_FLAGS } from "../../cli/worker.ts";

Deno.test("deno task run and deno task compile start Sluice with its Deno and V8 settings", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  );
  for (const task of ["run", "compile"]) {
    const words = (config.tasks[task] as string).split(/\s+/);
    for (const flag of SLUICE_DENO_FLAGS) {
      assert(words.includes(flag), `deno.json task "${task}" lacks ${flag}: ${config.tasks[task]}`);
    }
  }
});
