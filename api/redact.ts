/**
 * Hides credentials in text meant for people: error messages, log lines and
 * job summaries. Used by the config loader, the drivers, the runtime and the
 * CLI alike, so a password written in a connection URL or option never
 * reaches a terminal or a log shipper.
 *
 * @module
 */

/** What a hidden secret is replaced with. */
export const REDACTED = "***";

// scheme://user:password@ — the password runs to the last "@" of the word,
// since a malformed URL may hold a raw "@" or "/" in it.
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@'"]*):([^\s'"]*)@/gi;
// password=… in query strings, libpq key=value strings and JAAS configs.
const KEY_VALUE_PASSWORD =
  /\b((?:[a-z0-9_.-]*\.)?(?:password|passwd|pwd|secret|token))(\s*=\s*)("[^"]*"|'[^']*'|[^\s&;,'"]+)/gi;
const SECRET_KEY = /(^|[._-])(password|passwd|secret|token)$/i;

/**
 * Replaces passwords in URLs (`scheme://user:password@host`) and in
 * `password=…` pairs with `***`.
 *
 * @example Hide the password of a URL in an error message
 * ```ts
 * import { redactSecrets } from "./redact.ts";
 *
 * const message = "Invalid URL: 'postgres://app:s3cret@bad host:5432/db'";
 * console.assert(redactSecrets(message) === "Invalid URL: 'postgres://app:***@bad host:5432/db'");
 * console.assert(redactSecrets("host=db password=s3cret") === "host=db password=***");
 * ```
 */
export function redactSecrets(text: string): string {
  return text
    .replace(URL_PASSWORD, `$1:${REDACTED}@`)
    .replace(KEY_VALUE_PASSWORD, `$1$2${REDACTED}`);
}

/**
 * Whether an option holds a secret by its name (`database.password`,
 * `sasl.password`, `connection.password`, …), so its value is never shown.
 *
 * @example
 * ```ts
 * import { isSecretOption } from "./redact.ts";
 *
 * console.assert(isSecretOption("sink.database.password"));
 * console.assert(!isSecretOption("database.user"));
 * ```
 */
export function isSecretOption(key: string): boolean {
  return SECRET_KEY.test(key);
}

/**
 * The message of an error (or any thrown value) with secrets hidden.
 *
 * @example
 * ```ts
 * import { redactedMessage } from "./redact.ts";
 *
 * const error = new TypeError("Invalid URL: 'postgres://u:pw@bad host/db'");
 * console.assert(redactedMessage(error) === "Invalid URL: 'postgres://u:***@bad host/db'");
 * ```
 */
export function redactedMessage(error: unknown): string {
  return redactSecrets(error instanceof Error ? error.message : String(error));
}
