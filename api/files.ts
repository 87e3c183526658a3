/**
 * File helpers for plugins that keep state on disk (offsets, dedup stores).
 *
 * @module
 */
import { basename, dirname, join } from "node:path";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/**
 * Replaces `path` with `text` so that readers see the old or the new content,
 * whole: the text goes to a temporary file, which is synced, then renamed
 * over `path`. Missing folders are created. The file is readable and
 * writable by its owner only (mode 0600).
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
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  const file = await createFile(temporary);
  try {
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temporary, path);
  await syncFolder(dirname(path));
}

/**
 * Creates `path`, and its folder when missing: the folder is looked for only
 * then, not before every write (offsets are written once per batch).
 */
async function createFile(path: string): Promise<Deno.FsFile> {
  // Owner only: state files hold watermarks with source keys, configs hold passwords.
  const options = { write: true, create: true, truncate: true, mode: 0o600 };
  try {
    return await Deno.open(path, options);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await Deno.mkdir(dirname(path), { recursive: true });
    return await Deno.open(path, options);
  }
}

/** Makes a rename in `folder` durable (POSIX needs the directory entry synced too). */
async function syncFolder(folder: string): Promise<void> {
  let directory: Deno.FsFile | undefined;
  try {
    directory = await Deno.open(folder, { read: true });
    await directory.sync();
  } catch {
    // Some platforms cannot open or sync a directory; the rename still happened.
  } finally {
    directory?.close();
  }
}

/**
 * Removes the temporary files a crash in {@linkcode writeAtomically} left
 * beside `path` (`<path>.<uuid>.tmp`); returns how many it removed. Call it
 * once when a store opens its file.
 */
export async function removeStaleTemporaries(path: string): Promise<number> {
  const pattern = new RegExp(`^${escapeRegExp(basename(path))}\\.${UUID}\\.tmp$`);
  let removed = 0;
  try {
    for await (const entry of Deno.readDir(dirname(path))) {
      if (!entry.isFile || !pattern.test(entry.name)) continue;
      await Deno.remove(join(dirname(path), entry.name)).catch(() => {});
      removed++;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
