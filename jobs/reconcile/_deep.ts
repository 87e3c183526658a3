/**
 * Deep mode: every source row goes through the pipeline's transforms and is
 * compared, value by value, with the target row of its key.
 *
 * The source is streamed with COPY in chunks (bounded memory). Each chunk,
 * transformed, is COPYed into a temporary table of the target's session,
 * typed like the target table's columns, so a value is parsed by the same
 * column types the sink writes into and compares as the target stores it
 * (numeric scales, time zones, arrays). One full join on the key inside the
 * target database then finds rows missing, extra and different; PostgreSQL
 * runs it with its own bounded memory (spilling to disk), and Sluice reads
 * the differences back page by page. The join is on the transformed key, so
 * masked keys compare correctly.
 *
 * A source value the target's column cannot take (a new enum label, a string
 * too long for its varchar, a number out of range) fails its chunk's COPY.
 * The chunk is then staged in halves, down to the rows that fail alone; such
 * a row is staged by its key only and marked, so it counts as different (or
 * missing), as the sink could not have written it either, and the
 * comparison goes on.
 *
 * @module
 */
import type { Writable } from "node:stream";
import { connect, copyFrom, quoteIdent, type Sql } from "../../drivers/postgres.ts";
import { parseCopyText } from "../../drivers/pg_types.ts";
import { PgCodec } from "../../drivers/pg_codec.ts";
import { type Encoder, encodeText, escapeCopy } from "../../drivers/pg_text.ts";
import type { Row } from "../../api/record.ts";
import { recordOf, type Subject, type TransformChain } from "./_subject.ts";
import { type Difference, type DifferenceKind, type Found, Tally } from "./_found.ts";

/** Options of a deep comparison. */
export interface DeepOptions {
  readonly chunkSize: number;
  readonly sampleSize: number;
}

const STAGED = "pg_temp.sluice_reconcile_source";
const DIFFS = "pg_temp.sluice_reconcile_diffs";
const SOURCE_KEY = "sluice_source_key";
/** Marks a row staged by its key only: the target's columns cannot take its values. */
const UNFIT = "sluice_unfit";

/** A source row the target cannot hold, and why. */
export interface UnfitRow {
  readonly key: Row;
  readonly error: string;
}

/**
 * Compares every transformed value of `subject`. `target` must be a
 * single-connection client: the temporary tables live in its session.
 */
export async function compareDeep(
  subject: Subject,
  chain: TransformChain,
  target: Sql,
  options: DeepOptions,
  onUnfit: (row: UnfitRow) => void = () => {},
): Promise<Found> {
  let queries = 0;
  const run = async <T>(text: string, params: unknown[] = []): Promise<T[]> => {
    queries++;
    return [...await target.unsafe(text, params as never[])] as T[];
  };
  await run(`drop table if exists ${STAGED}`);
  await run(`drop table if exists ${DIFFS}`);
  let columns: string[] | undefined;
  let encoders: Encoder[] = [];
  let sourceRows = 0;
  for await (const chunk of sourceChunks(subject, options.chunkSize)) {
    queries++;
    sourceRows += chunk.length;
    const staged: { row: Row; key: Row }[] = [];
    for (const row of chunk) {
      const original = recordOf(subject, row);
      const record = chain.empty ? original : await chain.apply(original);
      if (record === null) continue; // dropped by a filter: the target should not have it either
      staged.push({ row: record.value as Row, key: original.key as Row });
    }
    if (staged.length === 0) continue;
    if (!columns) {
      columns = comparedColumns(subject, staged[0].row);
      await run(
        `create temp table ${STAGED} as select ${
          columns.map(quoteIdent).join(", ")
        } from ${subject.targetTable} with no data`,
      );
      await run(
        `alter table ${STAGED} add column ${SOURCE_KEY} text[], add column ${UNFIT} boolean`,
      );
      encoders = await new PgCodec(target).encoders(
        columns.map((c) => ({ typeOid: subject.targetColumns.get(c)!.typeOid })),
      );
      queries++;
    }
    queries += await stageFitting(target, subject, columns, encoders, staged, onUnfit);
  }
  columns ??= [...subject.targetKey];
  const exists = await run<{ ok: boolean }>(`select to_regclass('${STAGED}') is not null as ok`);
  if (!exists[0].ok) {
    await run(
      `create temp table ${STAGED} as select ${
        columns.map(quoteIdent).join(", ")
      } from ${subject.targetTable} with no data`,
    );
    await run(
      `alter table ${STAGED} add column ${SOURCE_KEY} text[], add column ${UNFIT} boolean`,
    );
  }
  await run(diffStatement(subject, columns));
  const [{ n: targetCount }] = await run<{ n: string }>(
    `select count(*)::text as n from ${subject.targetTable} where ${subject.targetLive}`,
  );
  const tally = new Tally(
    options.sampleSize,
    (kind) => kind === "extra" ? [...subject.targetKey] : [...subject.keyFields],
  );
  const counted = await run<{ kind: DifferenceKind; n: string }>(
    `select kind, count(*)::text as n from ${DIFFS} group by kind`,
  );
  for (const row of counted) tally.counts[row.kind] = Number(row.n);
  const sampled = await run<{ kind: DifferenceKind; key: string[] }>(
    `select kind, key from (select kind, key, row_number() over (partition by kind order by id) as n
       from ${DIFFS}) d where n <= $1 order by kind, n`,
    [options.sampleSize],
  );
  for (const row of sampled) {
    const counts = tally.counts[row.kind];
    tally.add(row.kind, row.key);
    tally.counts[row.kind] = counts;
  }
  return {
    mode: "deep",
    sourceRows,
    targetRows: Number(targetCount),
    counts: tally.counts,
    samples: tally.samples,
    queries,
    rounds: 0,
    async *pages(size: number): AsyncIterable<Difference[]> {
      let after = 0;
      while (true) {
        const rows = await target.unsafe<{ id: string; kind: DifferenceKind; key: string[] }[]>(
          `select id::text, kind, key from ${DIFFS} where id > $1 order by id limit $2`,
          [after, size],
        );
        if (rows.length === 0) return;
        after = Number(rows[rows.length - 1].id);
        yield rows.map((row) => ({ kind: row.kind, key: row.key }));
      }
    },
    async close() {
      await target.unsafe(`drop table if exists ${STAGED}`);
      await target.unsafe(`drop table if exists ${DIFFS}`);
    },
  };
}

/** The source's rows, by COPY on a connection of its own (postgres.js #499: see FACTS). */
async function* sourceChunks(subject: Subject, chunkSize: number): AsyncGenerator<Row[]> {
  const sql = connect(subject.sourceUrl, { max: 1, applicationName: "sluice:reconcile" });
  try {
    const stream = await sql.unsafe(`copy (${subject.sourceSelect}) to stdout`).readable();
    yield* parseCopyText(
      stream as AsyncIterable<Uint8Array>,
      subject.sourceColumns.map((c) => c.name),
      subject.sourceDecoders,
      chunkSize,
    ) as AsyncGenerator<Row[]>;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Target columns a transformed row fills: its fields, mapped, that the table has. */
function comparedColumns(subject: Subject, row: Row): string[] {
  const columns = new Set<string>(subject.targetKey);
  for (const field of Object.keys(row)) {
    const column = subject.targetColumnOf(field);
    if (column) columns.add(column);
  }
  return [...columns];
}

/**
 * Stages `staged`, in halves when the target refuses a value, down to the
 * rows it refuses alone: those are staged by their key, marked unfit, and
 * told to `onUnfit`. Returns the statements it ran.
 */
async function stageFitting(
  target: Sql,
  subject: Subject,
  columns: readonly string[],
  encoders: readonly Encoder[],
  staged: readonly { row: Row; key: Row }[],
  onUnfit: (row: UnfitRow) => void,
): Promise<number> {
  try {
    await stage(target, subject, columns, encoders, staged);
    return 1;
  } catch (error) {
    // 22: a value the type cannot take; 23: a domain's constraint.
    if (!/^2[23]/.test((error as { code?: string }).code ?? "")) throw error;
    if (staged.length > 1) {
      const half = staged.length >> 1;
      return 1 +
        await stageFitting(target, subject, columns, encoders, staged.slice(0, half), onUnfit) +
        await stageFitting(target, subject, columns, encoders, staged.slice(half), onUnfit);
    }
    const [{ row, key }] = staged;
    const keyOnly: Row = {};
    for (const field of Object.keys(row)) {
      if (subject.targetKey.includes(subject.targetColumnOf(field) ?? "")) {
        keyOnly[field] = row[field];
      }
    }
    await stage(target, subject, columns, encoders, [{ row: keyOnly, key }], true);
    onUnfit({ key, error: (error as Error).message });
    return 2;
  }
}

/** COPYs transformed rows, as target columns, into the staging table. */
async function stage(
  target: Sql,
  subject: Subject,
  columns: readonly string[],
  encoders: readonly Encoder[],
  staged: readonly { row: Row; key: Row }[],
  unfit = false,
): Promise<void> {
  const fieldOf = new Map<string, string>();
  for (const field of Object.keys(staged[0].row)) {
    const column = subject.targetColumnOf(field);
    if (column) fieldOf.set(column, field);
  }
  const lines: string[] = [];
  for (const { row, key } of staged) {
    const fields = columns.map((column, i) => {
      const value = row[fieldOf.get(column) ?? column];
      const text = value === undefined || value === null ? null : encoders[i](value);
      return text === null ? "\\N" : escapeCopy(text);
    });
    const keyText = subject.keyFields.map((field) => {
      const text = encodeText(key[field]);
      return text === null ? "NULL" : `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
    });
    fields.push(escapeCopy(`{${keyText.join(",")}}`), unfit ? "t" : "f");
    lines.push(fields.join("\t"));
  }
  const list = [...columns, SOURCE_KEY, UNFIT].map(quoteIdent).join(", ");
  await copyFrom(target, `copy ${STAGED} (${list}) from stdin`, async (writable: Writable) => {
    const text = lines.join("\n") + "\n";
    await new Promise<void>((resolve, reject) => {
      writable.write(text, (error) => error ? reject(error) : resolve());
    });
    await new Promise<void>((resolve, reject) => {
      writable.once("error", reject);
      writable.end(() => resolve());
    });
  });
}

/** Full join of staged and target rows on the key; the rows that differ. */
function diffStatement(subject: Subject, columns: readonly string[]): string {
  const key = subject.targetKey.map(quoteIdent);
  const on = key.map((k) => `s.${k} = t.${k}`).join(" and ");
  const compared = columns.filter((c) => !subject.targetKey.includes(c)).map((column) => {
    const type = subject.targetColumns.get(column)!.type;
    // json has no equality operator; jsonb compares by value.
    const cast = type === "json" ? "::jsonb" : type === "json[]" ? "::jsonb[]" : "";
    return [`s.${quoteIdent(column)}${cast}`, `t.${quoteIdent(column)}${cast}`];
  });
  const differs = compared.length === 0
    ? "false"
    : `row(${compared.map((c) => c[0]).join(", ")}) is distinct from row(${
      compared.map((c) => c[1]).join(", ")
    })`;
  const targetKeyText = `array[${key.map((k) => `t.${k}::text`).join(", ")}]`;
  return `create temp table ${DIFFS} as
    select row_number() over () as id,
      case when t.${key[0]} is null then 'missing' when s.${SOURCE_KEY} is null then 'extra'
           else 'different' end as kind,
      case when s.${SOURCE_KEY} is null then ${targetKeyText} else s.${SOURCE_KEY} end as key
    from ${STAGED} s
    full join (select * from ${subject.targetTable} where ${subject.targetLive}) t on ${on}
    where s.${SOURCE_KEY} is null or t.${key[0]} is null or s.${UNFIT} or ${differs}`;
}
