/**
 * File helpers for plugins that keep state on disk (offsets, dedup stores).
 *
 * @module
 */
import { dirname } from "node:path";

/**
 * Replaces `path` with `text` so that readers see the old or the new content,
 * whole: the text goes to a temporary file, which is synced, then renamed
 * over `path`. Missing folders are created.
 *
 * @example Keeping a plugin's state in a file
 * ```ts
 * import { writeAtomically } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const folder = await Deno.makeTempDir();
 * const path = `${folder}/state/dedup.json`;
 * await writeAtomically(path, '{"seen":1}');
 * await writeAtomically(path, '{"seen":2}');
 * assert.equal(await Deno.readTextFile(path), '{"seen":2}');
 * await Deno.remove(folder, { recursive: true });
 * ```
 */
export async function writeAtomically(path: string, text: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  const file = await Deno.open(temporary, { write: true, create: true, truncate: true });
  try {
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temporary, path);
}
