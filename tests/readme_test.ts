import { assertEquals } from "./_assert.ts";
import { withReference } from "../dev/config_reference.ts";

Deno.test("the README's config reference matches the plugins' schemas (run `deno task docs`)", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  assertEquals(readme, withReference(readme));
});
