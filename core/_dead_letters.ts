/**
 * The file dead-letter destination, kept by the runtime for every pipeline
 * that sets `errors.deadletterqueue.file.path`.
 *
 * @module
 */
import { deadLetterEntry } from "../api/dead_letters.ts";
import { encodeJson } from "../api/json.ts";
import type { DeadLetterWriter } from "../api/plugin.ts";

/** Appends dead letters as JSON lines to a file and syncs it before resolving. */
export function fileDeadLetters(path: string): DeadLetterWriter {
  let tail = Promise.resolve();
  return {
    description: `file ${path}`,
    write(failures, pipeline) {
      const text = failures.map((failure) => encodeJson(deadLetterEntry(failure, pipeline)) + "\n")
        .join("");
      const next = tail.then(async () => {
        const file = await Deno.open(path, { append: true, create: true });
        try {
          await file.write(new TextEncoder().encode(text));
          await file.sync();
        } finally {
          file.close();
        }
      });
      tail = next.catch(() => {});
      return next;
    },
    close: () => tail,
  };
}
