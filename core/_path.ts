/** Path helpers from Node's standard library (JSR's @std/path is not reachable here). */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

export { dirname, isAbsolute, join, resolve };

/** A file URL for an absolute path. */
export function toFileUrl(path: string): URL {
  return pathToFileURL(path);
}
