/**
 * The path matrix fixture: one table with every PostgreSQL type (as wide as
 * Debezium's PostgreSQL type tests), its rows, and the comparison of target
 * with source by `md5(row::text)` per key. Used by the path matrix and the
 * interoperability tests with Kafka Connect and Debezium.
 *
 * @module
 */
import postgres from "postgres";
import { assertEquals } from "./_assert.ts";
import { type SyncFixture, syncFixture } from "./_batch.ts";
import { waitForActiveSlot } from "./_cdc.ts";
import { waitUntil } from "./_wait.ts";
import { testPgUrl } from "./_services.ts";

/** Extensions some columns need; a column is left out, with its reason, when one is missing. */
export const EXTENSIONS = ["hstore", "citext"] as const;

/** One column: its name (SQL, quoted when needed), type, and the values of rows 1–3 and 5. */
export interface Column {
  name: string;
  type: string;
  extension?: (typeof EXTENSIONS)[number];
  /** SQL literals for the typical row, two rows of edge values, and the TOAST row. */
  values: [string, string, string];
}

const MOOD = `create type mood as enum ('calm', 'busy', 'ünïcødé 🙂', 'with ''quote" and, comma')`;
const DOMAIN = `create domain positive_int as int check (value > 0)`;

export const COLUMNS: Column[] = [
  {
    name: "num",
    type: "numeric",
    values: ["12345678901234567890.123456789012345678901234567890", "'NaN'", "'-Infinity'"],
  },
  { name: "num_inf", type: "numeric", values: ["'Infinity'", "-0.000000000000000000001", "0"] },
  {
    name: "num_p",
    type: "numeric(40,20)",
    values: ["-0.00000000000000000001", "1.5", "99999999999999999999.99999999999999999999"],
  },
  { name: "cash", type: "money", values: ["1234567.89", "-92233720368547758.08", "0"] },
  { name: "i2", type: "int2", values: ["-32768", "32767", "0"] },
  { name: "i4", type: "int4", values: ["-2147483648", "2147483647", "0"] },
  {
    name: "i8",
    type: "int8",
    values: ["9223372036854775807", "-9223372036854775808", "9007199254740993"],
  },
  { name: "f4", type: "float4", values: ["'NaN'", "'-Infinity'", "'-0'"] },
  { name: "f4b", type: "float4", values: ["0.1", "3.4028235e38", "1.17549435e-38"] },
  { name: "f8", type: "float8", values: ["'Infinity'", "'-0'", "'NaN'"] },
  { name: "f8b", type: "float8", values: ["0.1", "1.7976931348623157e308", "5e-324"] },
  { name: "ok", type: "bool", values: ["true", "false", "true"] },
  { name: "d", type: "date", values: ["'2024-02-29'", "'4713-01-01 BC'", "'infinity'"] },
  { name: "d_neg", type: "date", values: ["'-infinity'", "'0001-01-01'", "'5874897-12-31'"] },
  { name: "t", type: "time", values: ["'23:59:59.999999'", "'24:00:00'", "'00:00:00.000001'"] },
  { name: "t3", type: "time(3)", values: ["'10:11:12.123'", "'00:00:00'", "'12:00:00.5'"] },
  {
    name: "ts",
    type: "timestamp",
    values: ["'1999-12-31 23:59:59.999999'", "'infinity'", "'0044-03-15 12:00:00.000001 BC'"],
  },
  {
    name: "tstz",
    type: "timestamptz",
    values: ["'2024-02-29 23:59:59.123456+05:30'", "'-infinity'", "'1970-01-01 00:00:00+00'"],
  },
  {
    name: "ttz",
    type: "timetz",
    values: ["'10:11:12.5+05:30'", "'00:00:00-12'", "'23:59:59.999999+14'"],
  },
  {
    name: "iv",
    type: "interval",
    values: [
      "'1 year 2 mons 3 days 04:05:06.789'",
      "'-1 days +00:00:00.000001'",
      "'178000000 years'",
    ],
  },
  {
    name: "j",
    type: "json",
    values: [
      `'{"b": 1,  "a": [1, 2, null], "b": 2}'`,
      "'null'",
      String.raw`'"\u00e9 \" \\ 🙂 \n"'`,
    ],
  },
  {
    name: "jb",
    type: "jsonb",
    values: [
      String
        .raw`'{"z": "\u00e9", "a": {"k": [true, null, 1.5e300, {"deep": ["🙂"]}]}, "esc": "tab\tq\"b\\"}'`,
      "'[]'",
      "'{}'",
    ],
  },
  { name: "x", type: "xml", values: [`'<a b="1">t &amp; ü<c/></a>'`, "'text only'", "''"] },
  {
    name: "u",
    type: "uuid",
    values: [
      "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
      "'00000000-0000-0000-0000-000000000000'",
      "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
    ],
  },
  { name: "ip", type: "inet", values: ["'192.168.0.1/24'", "'::1'", "'2001:db8::1/64'"] },
  { name: "net", type: "cidr", values: ["'10.0.0.0/8'", "'2001:db8::/32'", "'0.0.0.0/0'"] },
  {
    name: "mac",
    type: "macaddr",
    values: ["'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'", "'00:00:00:00:00:00'"],
  },
  {
    name: "mac8",
    type: "macaddr8",
    values: ["'08:00:2b:01:02:03:04:05'", "'ff:ff:ff:ff:ff:ff:ff:ff'", "'00:00:00:00:00:00:00:00'"],
  },
  { name: "bits", type: "bit(8)", values: ["B'10101010'", "B'00000000'", "B'11111111'"] },
  { name: "vbits", type: "varbit", values: ["B'101'", "B''", "B'1'"] },
  { name: "r4", type: "int4range", values: ["'[1,5)'", "'empty'", "'(,)'"] },
  {
    name: "rtz",
    type: "tstzrange",
    values: ["'[2024-01-01 00:00:00.000001+00,infinity)'", "'empty'", "'(,2024-01-01 10:00+05)'"],
  },
  {
    name: "rn",
    type: "numrange",
    values: ["'[0.000000000000000001,12345678901234567890.5]'", "'(,)'", "'empty'"],
  },
  {
    name: "rd",
    type: "daterange",
    values: ["'[2024-01-01,2024-02-29)'", "'empty'", "'[,infinity)'"],
  },
  { name: "iarr", type: "int[]", values: ["'{1,NULL,3}'", "'{}'", "'[0:1]={7,8}'"] },
  {
    name: "iarr2",
    type: "int[][]",
    values: ["'{{1,NULL},{3,4}}'", "'{{NULL,NULL}}'", "'{{{1}},{{2}}}'"],
  },
  {
    name: "tarr",
    type: "text[]",
    values: [
      String
        .raw`array['a,b', null, 'q"uote', '', 'back\slash', 'NULL', '{brace}', ' spaced ', 'emoji 🙂', E'tab\tnl\n']`,
      "'{}'",
      "array[null]::text[]",
    ],
  },
  { name: "tarr2", type: "text[][]", values: [`'{{"a b","c\\"d"},{NULL,""}}'`, "'{}'", "'{{x}}'"] },
  { name: "narr", type: "numeric[]", values: ["'{1.50,NaN,NULL,-Infinity}'", "'{}'", "'{0}'"] },
  {
    name: "tsarr",
    type: "timestamptz[]",
    values: [
      "array['2024-02-29 10:11:12.123456+00', null, 'infinity']::timestamptz[]",
      "'{}'",
      "'{-infinity}'",
    ],
  },
  {
    name: "barr",
    type: "bytea[]",
    values: [
      String.raw`array['\x00'::bytea, null, '\x5c27'::bytea, ''::bytea]`,
      "'{}'",
      String.raw`array['\xfffe'::bytea]`,
    ],
  },
  {
    name: "jbarr",
    type: "jsonb[]",
    values: [`array['{"a": "b,c"}', null, '[1]']::jsonb[]`, "'{}'", `array['"s"']::jsonb[]`],
  },
  { name: "uarr", type: "uuid[]", values: ["array[gen_random_uuid(), null]", "'{}'", "'{}'"] },
  { name: "barr2", type: "bool[]", values: ["'{t,NULL,f}'", "'{}'", "'{t}'"] },
  {
    name: "h",
    type: "hstore",
    extension: "hstore",
    values: [
      String.raw`'"a"=>"1", "b c"=>NULL, "q\"uote"=>"back\\slash", "🙂"=>""'`,
      "''",
      `'"k"=>"v"'`,
    ],
  },
  { name: "m", type: "mood", values: ["'ünïcødé 🙂'", "'calm'", `'with ''quote" and, comma'`] },
  {
    name: "marr",
    type: "mood[]",
    values: [`array['calm', null, 'with ''quote" and, comma']::mood[]`, "'{}'", "'{busy}'"],
  },
  { name: "dom", type: "positive_int", values: ["42", "2147483647", "1"] },
  { name: "ci", type: "citext", extension: "citext", values: ["'MiXeD CaSe ß'", "''", "'x'"] },
  { name: "b", type: "bytea", values: [String.raw`'\x00010203fffe'`, String.raw`'\x5c27'`, "''"] },
  {
    name: "b0",
    type: "bytea",
    values: [String.raw`'\x00'`, "decode(repeat('ab', 300), 'hex')", String.raw`'\x5c'`],
  },
  { name: `"Mixed Case Col"`, type: "text", values: ["'spaces & Caps'", "''", "'x'"] },
  { name: `"select"`, type: "int", values: ["1", "-1", "0"] },
  {
    name: "txt",
    type: "text",
    values: [
      String.raw`E'tab\there\nnew line\r\\ backslash 🦀 नमस्ते \u200f עברית 👩‍👩‍👧 \\N'`,
      "''",
      String.raw`'\N'`,
    ],
  },
  { name: "ch", type: "char(5)", values: ["'ab'", "''", "'abcde'"] },
  { name: "vc", type: "varchar(20)", values: ["'x'", "''", "'ü'"] },
  { name: "pt", type: "point", values: ["'(1.5,-2)'", "'(0,0)'", "'(1e300,-1e-300)'"] },
  { name: "tsv", type: "tsvector", values: ["'a fat:1 cat'", "''", `'''quoted'' word'`] },
];

/** The 128 kB value stored out of line (TOAST), in the last fixture row. */
export const TOAST_VALUE =
  "(select string_agg(md5(g::text) || ' 🙂', '') from generate_series(1, 3800) g)";

/** Which extensions this server has; the DDL leaves out columns of missing ones. */
export async function availableExtensions(): Promise<Set<string>> {
  const sql = postgres(testPgUrl(), { max: 1, onnotice: () => {} });
  const rows = await sql<{ name: string }[]>`
    select name from pg_available_extensions where name = any(${[...EXTENSIONS]})`
    .finally(() => sql.end());
  const found = new Set(rows.map((row) => row.name));
  for (const name of EXTENSIONS) {
    if (!found.has(name)) {
      console.warn(`path matrix: extension ${name} is not available here; its column is skipped`);
    }
  }
  return found;
}

export function columnsWith(extensions: Set<string>): Column[] {
  return COLUMNS.filter((column) => !column.extension || extensions.has(column.extension));
}

export function ddl(columns: Column[], extensions: Set<string>): string {
  const create = [...extensions].map((name) => `create extension if not exists ${name};`);
  const list = columns.map((column) => `${column.name} ${column.type}`).join(",\n  ");
  return `${create.join("\n")}
    ${MOOD}; ${DOMAIN};
    create table public.matrix (id int primary key,\n  ${list},\n  big text);
    alter table public.matrix alter column big set storage external;`;
}

/**
 * Five rows from `from`: typical values, two rows of edge values, NULL in
 * every column, and typical values with a 128 kB TOASTed text.
 */
export function rows(columns: Column[], from: number): string {
  const names = ["id", ...columns.map((c) => c.name), "big"].join(", ");
  const row = (id: number, values: string[], big: string) =>
    `(${[String(id), ...values, big].join(", ")})`;
  const values = [
    row(from, columns.map((c) => c.values[0]), "'short'"),
    row(from + 1, columns.map((c) => c.values[1]), "''"),
    row(from + 2, columns.map((c) => c.values[2]), "'x'"),
    row(from + 3, columns.map(() => "null"), "null"),
    row(from + 4, columns.map((c) => c.values[0]), TOAST_VALUE),
  ];
  return `insert into public.matrix (${names}) values\n${values.join(",\n")};`;
}

/**
 * Values Debezium's representations cannot carry (numeric NaN and
 * infinities as Decimal, a bit varying value with leading zeros or none as
 * Bits) fail their record on the way to a topic with schemas
 * (tests/drivers/connect_json_test.ts); `columns` with ordinary values in
 * their place, for the paths that carry those representations.
 */
export function debeziumRepresentable(columns: Column[]): Column[] {
  const ordinary: Record<string, Column["values"]> = {
    num: ["12345678901234567890.123456789012345678901234567890", "-1.5", "0"],
    num_inf: ["1e-30", "-0.000000000000000000001", "0"],
    narr: ["'{1.50,NULL,-2}'", "'{}'", "'{0}'"],
    vbits: ["B'101'", "B'1'", "B'1'"],
  };
  return columns.map((column) =>
    ordinary[column.name] ? { ...column, values: ordinary[column.name] } : column
  );
}

/** Updates of the TOAST rows that leave the TOASTed value unchanged. */
export const TOUCH = `update public.matrix set txt = 'touched' where big is not null
  and length(big) > 100000`;

/** md5(row::text) per key. */
export async function digests(sql: postgres.Sql): Promise<Record<string, string>> {
  const found = await sql<{ k: string; digest: string }[]>`
    select id::text as k, md5(whole_row::text) as digest from public.matrix whole_row
    order by id`;
  return Object.fromEntries(found.map((row) => [row.k, row.digest]));
}

/** Each column's text per key, to say which values differ when the digests do. */
export async function columnTexts(
  sql: postgres.Sql,
  columns: Column[],
): Promise<Map<string, string[]>> {
  const list = [...columns.map((c) => c.name), "big"].map((name) => `${name}::text`).join(", ");
  const found = await sql.unsafe<{ k: string; texts: (string | null)[] }[]>(
    `select id::text as k, array[${list}] as texts from public.matrix`,
  );
  return new Map(found.map((row) => [row.k, row.texts.map((text) => String(text))]));
}

/** Compares target with source by md5(row::text) per key, naming differing columns. */
export async function assertSameRows(f: SyncFixture, columns: Column[]): Promise<void> {
  const [source, target] = [await digests(f.sourceSql), await digests(f.targetSql)];
  let message: string | undefined;
  if (JSON.stringify(source) !== JSON.stringify(target)) {
    const [s, t] = [
      await columnTexts(f.sourceSql, columns),
      await columnTexts(f.targetSql, columns),
    ];
    const names = [...columns.map((c) => c.name), "big"];
    const differences: string[] = [];
    for (const [key, texts] of s) {
      texts.forEach((text, i) => {
        const other = t.get(key)?.[i];
        if (other !== text) {
          differences.push(`row ${key} ${names[i]}: ${text.slice(0, 60)} → ${other?.slice(0, 60)}`);
        }
      });
    }
    message = `target rows differ from the source:\n${differences.join("\n")}`;
  }
  assertEquals(target, source, message);
}

/**
 * A source and target with the fixture table, the source holding rows 1–5;
 * `values` picks the values of those rows (and callers pass it to `rows`).
 */
export async function matrixFixture(
  name: string,
  keep: (column: Column) => boolean = () => true,
  values: (columns: Column[]) => Column[] = (columns) => columns,
): Promise<{ f: SyncFixture; columns: Column[] }> {
  const extensions = await availableExtensions();
  const columns = columnsWith(extensions).filter(keep);
  const schema = ddl(columns, extensions);
  const f = await syncFixture(name, schema + rows(values(columns), 1), schema);
  const [{ length }] = await f.sourceSql`select length(big) from matrix where id = 5`;
  assertEquals(length > 128_000, true, `the TOAST value holds ${length} characters`);
  return { f, columns };
}

/**
 * Waits until the slot streams from its consistent point. Creating a slot
 * waits for every transaction running in the cluster, and the slot is
 * already active meanwhile.
 */
export async function waitForStreamingSlot(sql: postgres.Sql, slot: string): Promise<void> {
  await waitForActiveSlot(sql, slot);
  await waitUntil(`slot ${slot} at its consistent point`, async () => {
    const rows = await sql<{ ready: boolean }[]>`
      select confirmed_flush_lsn is not null as ready from pg_replication_slots
      where slot_name = ${slot}`;
    return rows[0]?.ready === true;
  }, { timeoutMs: 40_000 });
}

/** Waits until the target holds `count` rows and the touched TOAST rows. */
export async function waitForTarget(f: SyncFixture, count: number, touched: number): Promise<void> {
  await waitUntil(`${count} rows, ${touched} touched, in the target`, async () => {
    const [row] = await f.targetSql<{ n: number; touched: number }[]>`
      select count(*)::int as n, count(*) filter (where txt = 'touched')::int as touched
      from public.matrix`;
    return row.n === count && row.touched === touched;
  }, { timeoutMs: 40_000 });
}

/**
 * Compares target with source on some columns only, by `md5(row(…)::text)`
 * per key, naming the differing values: for paths through formats that
 * cannot carry every value (Debezium's schemas), the test names the columns
 * it leaves out and why.
 */
export async function assertSameColumns(f: SyncFixture, columns: Column[]): Promise<void> {
  const list = ["id", ...columns.map((c) => c.name), "big"].join(", ");
  const query = `select id::text as k, md5(row(${list})::text) as digest from public.matrix
    order by id`;
  const digest = async (sql: postgres.Sql) =>
    Object.fromEntries(
      (await sql.unsafe<{ k: string; digest: string }[]>(query)).map((r) => [r.k, r.digest]),
    );
  const [source, target] = [await digest(f.sourceSql), await digest(f.targetSql)];
  let message: string | undefined;
  if (JSON.stringify(source) !== JSON.stringify(target)) {
    const [s, t] = [
      await columnTexts(f.sourceSql, columns),
      await columnTexts(f.targetSql, columns),
    ];
    const names = [...columns.map((c) => c.name), "big"];
    const differences: string[] = [];
    for (const [key, texts] of s) {
      texts.forEach((text, i) => {
        const other = t.get(key)?.[i];
        if (other !== text) {
          differences.push(`row ${key} ${names[i]}: ${text.slice(0, 60)} → ${other?.slice(0, 60)}`);
        }
      });
    }
    message = `target rows differ from the source:\n${differences.join("\n")}`;
  }
  assertEquals(target, source, message);
}
