/**
 * Log sequence numbers: PostgreSQL prints them as two hexadecimal halves
 * (`0/16B3748`); on the wire and in comparisons they are unsigned 64-bit
 * integers, kept here as bigints.
 *
 * @module
 */

/** Parses `X/Y` into a bigint; throws a sentence quoting a malformed value. */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not an LSN of the form 0/16B3748`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats a bigint LSN as PostgreSQL prints it (`0/16B3748`). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${
    (lsn & 0xffffffffn).toString(16).toUpperCase()
  }`;
}

/** The larger of two LSNs. */
export function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
