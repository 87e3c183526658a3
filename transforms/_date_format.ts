/**
 * A subset of Java's `SimpleDateFormat`, always in UTC as Kafka's
 * TimestampConverter uses it: y, M (numbers and names), d, H, k, K, h, m, s,
 * S, E, a, z, Z, X, quoted literals. Unknown pattern letters are refused.
 *
 * @module
 */

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const LETTERS = "yMdHkKhmsSEazZX";

type Token = { literal: string } | { letter: string; count: number };

/** A compiled date pattern that formats and parses instants in UTC. */
export interface DateFormat {
  format(date: Date): string;
  /** Epoch milliseconds, or throws when `text` does not match the pattern. */
  parse(text: string): number;
}

/** Compiles a `SimpleDateFormat` pattern; throws on illegal pattern characters. */
export function compileDateFormat(pattern: string): DateFormat {
  const tokens = tokenize(pattern);
  const { regex, fields } = parser(tokens);
  return {
    format: (date) => tokens.map((token) => formatToken(token, date)).join(""),
    parse(text) {
      const match = regex.exec(text);
      if (!match) throw new Error(`does not match the pattern "${pattern}"`);
      return toEpoch(fields, match);
    },
  };
}

function tokenize(pattern: string): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < pattern.length;) {
    const char = pattern[i];
    if (char === "'") {
      const end = pattern.indexOf("'", i + 1);
      if (end === i + 1) {
        tokens.push({ literal: "'" });
        i += 2;
        continue;
      }
      if (end < 0) throw new Error(`unterminated quote in "${pattern}"`);
      tokens.push({ literal: pattern.slice(i + 1, end).replaceAll("''", "'") });
      i = end + 1;
    } else if (/[A-Za-z]/.test(char)) {
      if (!LETTERS.includes(char)) throw new Error(`illegal pattern character '${char}'`);
      let count = 1;
      while (pattern[i + count] === char) count++;
      tokens.push({ letter: char, count });
      i += count;
    } else {
      tokens.push({ literal: char });
      i++;
    }
  }
  return tokens;
}

const pad = (value: number, width: number) => String(value).padStart(width, "0");

function formatToken(token: Token, date: Date): string {
  if ("literal" in token) return token.literal;
  const { letter, count } = token;
  const hours = date.getUTCHours();
  switch (letter) {
    case "y": {
      const year = date.getUTCFullYear();
      return count === 2 ? pad(year % 100, 2) : pad(year, count);
    }
    case "M": {
      const month = date.getUTCMonth();
      if (count >= 4) return MONTHS[month];
      if (count === 3) return MONTHS[month].slice(0, 3);
      return pad(month + 1, count);
    }
    case "d":
      return pad(date.getUTCDate(), count);
    case "H":
      return pad(hours, count);
    case "k":
      return pad(hours === 0 ? 24 : hours, count);
    case "K":
      return pad(hours % 12, count);
    case "h":
      return pad(hours % 12 === 0 ? 12 : hours % 12, count);
    case "m":
      return pad(date.getUTCMinutes(), count);
    case "s":
      return pad(date.getUTCSeconds(), count);
    case "S":
      return pad(date.getUTCMilliseconds(), count);
    case "E": {
      const day = DAYS[date.getUTCDay()];
      return count >= 4 ? day : day.slice(0, 3);
    }
    case "a":
      return hours < 12 ? "AM" : "PM";
    case "z":
      return count >= 4 ? "Coordinated Universal Time" : "UTC";
    case "Z":
      return "+0000";
    default: // X
      return "Z";
  }
}

interface Field {
  letter: string;
  count: number;
}

function parser(tokens: Token[]): { regex: RegExp; fields: Field[] } {
  const fields: Field[] = [];
  let source = "";
  for (const token of tokens) {
    if ("literal" in token) {
      source += token.literal.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
      continue;
    }
    const { letter, count } = token;
    fields.push(token);
    const digits = count === 1 ? "(\\d+)" : `(\\d{${count}})`;
    switch (letter) {
      case "M":
        source += count >= 3 ? `(${MONTHS.map((m) => m.slice(0, 3)).join("|")})[a-z]*` : digits;
        break;
      case "E":
        source += `(${DAYS.map((d) => d.slice(0, 3)).join("|")})[a-z]*`;
        break;
      case "a":
        source += "(AM|PM|am|pm)";
        break;
      case "z":
      case "Z":
      case "X":
        source += "(Z|UTC|GMT|Coordinated Universal Time|(?:GMT|UTC)?[+-]\\d{2}(?::?\\d{2})?)";
        break;
      case "y":
        source += count === 2 ? "(\\d{2})" : "(\\d{1,9})";
        break;
      default:
        source += digits;
    }
  }
  return { regex: new RegExp(`^${source}$`, "i"), fields };
}

function toEpoch(fields: Field[], match: RegExpExecArray): number {
  let year = 1970, month = 0, day = 1, hour = 0, minute = 0, second = 0, millis = 0;
  let pm: boolean | undefined;
  let offsetMinutes = 0;
  fields.forEach(({ letter, count }, index) => {
    const text = match[index + 1];
    const number = Number(text);
    switch (letter) {
      case "y":
        year = count === 2 ? twoDigitYear(number) : number;
        break;
      case "M":
        month = count >= 3
          ? MONTHS.findIndex((m) => m.slice(0, 3).toLowerCase() === text.toLowerCase())
          : number - 1;
        break;
      case "d":
        day = number;
        break;
      case "H":
      case "K":
      case "h":
        hour = letter === "h" && number === 12 ? 0 : number;
        break;
      case "k":
        hour = number === 24 ? 0 : number;
        break;
      case "m":
        minute = number;
        break;
      case "s":
        second = number;
        break;
      case "S":
        millis = number;
        break;
      case "a":
        pm = text.toUpperCase() === "PM";
        break;
      case "z":
      case "Z":
      case "X":
        offsetMinutes = zoneOffset(text);
        break;
    }
  });
  if (pm !== undefined && hour < 12 && pm) hour += 12;
  if (month < 0 || month > 11) throw new Error(`has no month ${month + 1}`);
  const date = new Date(0);
  date.setUTCFullYear(year, month, day); // unlike Date.UTC, keeps years 0–99 as written
  date.setUTCHours(hour, minute, second, millis);
  return date.getTime() - offsetMinutes * 60000;
}

/** Java's rule: a two-digit year lands within 80 years before and 20 after today. */
function twoDigitYear(yy: number): number {
  const now = new Date().getUTCFullYear();
  let year = Math.floor((now - 80) / 100) * 100 + yy;
  if (year < now - 80) year += 100;
  return year;
}

function zoneOffset(text: string): number {
  const match = /([+-])(\d{2}):?(\d{2})?$/.exec(text);
  if (!match) return 0;
  const minutes = Number(match[2]) * 60 + Number(match[3] ?? 0);
  return match[1] === "-" ? -minutes : minutes;
}
