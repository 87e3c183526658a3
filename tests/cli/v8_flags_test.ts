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

Deno.test("this Deno's V8 knows every flag Sluice starts with", async () => {
  // An unknown V8 flag stops Deno before any code runs: a Deno upgrade that
  // drops one must fail here, not in a deployment.
  const script = await Deno.makeTempFile({ suffix: ".js" });
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...SLUICE_DENO_FLAGS, script],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert(code === 0, new TextDecoder().decode(stderr));
  } finally {
    await Deno.remove(script);
  }
});
