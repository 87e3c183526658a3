/**
 * `reconcile`: a batch job that compares the source and the target of
 * another batch pipeline, through that pipeline's own transforms and
 * `fields.mapping`, reports what differs, and optionally repairs it through
 * the pipeline's sink.
 *
 * ```json
 * { "name": "profile_summary_reconcile",
 *   "config": {
 *     "connector.class": "reconcile",
 *     "pipeline": "profile_sync",
 *     "mode": "fast",
 *     "repair": "false",
 *     "job.schedule": "0 3 * * *",
 *     "job.retries": "0" } }
 * ```
 *
 * - `fast` compares keys and a version column (`version.column`, default the
 *   source's `timestamp.column.name`) by hashes of key ranges computed in each
 *   database, splitting only ranges that differ. It needs the key and
 *   version to pass through the transforms unchanged (checked on a sample);
 *   otherwise the run compares deep and says why.
 * - `deep` runs every source row through the transforms and compares every
 *   value the target holds.
 * - `repair` writes the differences through the pipeline's sink (upserts of
 *   the source rows; deletes, per `delete.mode`, of rows only the target
 *   has), then compares again.
 *
 * A run with differences left fails its validation check, so `sluice job run`
 * exits 1. Each run adds a row to `runs.table` in the target database.
 *
 * @module
 */
import { z } from "zod";
import { boolean, positiveInteger } from "../../api/options.ts";
import {
  defineSource,
  type PipelineParts,
  type ReconciliationFigures,
  type SourceBatch,
  type SourceContext,
  type ValidationCheck,
} from "../../api/plugin.ts";
import type { Row, SluiceRecord } from "../../api/record.ts";
import { RetriableError } from "../../api/errors.ts";
import { redactSecrets } from "../../api/redact.ts";
import {
  connect,
  type ConnectionConfig,
  connectionUrl,
  createOnce,
  databaseLabel,
  isConnectionError,
  parseTableName,
  quoteIdent,
  type Sql,
} from "../../drivers/postgres.ts";
import { decodeRawRow } from "../../drivers/pg_types.ts";
import { encodeText } from "../../drivers/pg_text.ts";
import {
  defaultVersionField,
  describeSubject,
  recordOf,
  type Subject,
  subjectProblem,
  TransformChain,
} from "./_subject.ts";
import { type Found, totalOf } from "./_found.ts";
import { compareFast } from "./_fast.ts";
import { compareDeep } from "./_deep.ts";

/** Rows a deep comparison counts as differences because the target cannot hold them, before it gives up. */
const MAX_UNFIT_ROWS = 100;

const schema = z.strictObject({
  pipeline: z.string().min(1).describe(
    "The batch pipeline to check (a postgres_query source with a postgres sink); the job uses its transforms and sink.",
  ),
  mode: z.enum(["fast", "deep"]).default("fast").describe(
    "fast: hashes of keys and version.column over key ranges, computed in each database; only ranges that differ are read. deep: every source row through the transforms, every value compared.",
  ),
  repair: boolean().default(false).describe(
    "Write the differences through the pipeline's sink (upserts, and deletes per its delete.mode), then compare again.",
  ),
  "version.column": z.string().optional().describe(
    "Source column compared with the key in fast mode; default: the source's timestamp.column.name when it reaches the target. Empty: keys only.",
  ),
  "sample.size": positiveInteger().default(10).describe(
    "Sample keys reported per kind of difference (missing, extra, different).",
  ),
  "chunk.size": positiveInteger().default(5000).describe(
    "Rows per chunk when streaming the source (deep mode) and per repair batch.",
  ),
  "fast.range.rows": positiveInteger().default(64).describe(
    "Fast mode: about how many rows a key range holds before a differing one is read rather than split again.",
  ),
  "runs.table": z.string().default("public.sluice_reconciliation_runs").describe(
    "Table in the target database that gets one row per run (created when missing).",
  ),
});

type Settings = z.output<typeof schema>;

export default defineSource({
  name: "reconcile",
  mode: "batch",
  summary:
    "Compares a batch pipeline's source and target through its transforms, reports and optionally repairs the differences.",
  config: schema,
  subject: (config) => config.pipeline,
  subjectProblem,
  plan: (settings) => ({
    reads: `checks ${settings.pipeline} (${settings.mode}${settings.repair ? ", repairs" : ""})`,
  }),
  create(settings, context) {
    const job = new Reconciliation(settings, context);
    return {
      read: () => job.read(),
      validate: () => job.validate(),
      close: () => job.close(),
    };
  },
});

/** One run: compare, maybe repair, compare again, record. */
class Reconciliation {
  readonly #settings: Settings;
  readonly #context: SourceContext;
  #source?: Sql;
  #target?: Sql;
  #subject?: Subject;
  #chain?: TransformChain;
  #mode: "fast" | "deep" = "fast";
  #versionField?: string;
  /** Why fast mode was not possible, when it was asked for. */
  #fallback?: string;
  /** Whether the key passes through the transforms unchanged (needed to delete extras). */
  #keyPassesThrough = false;
  /** The chain masks the key: source keys (of missing and different rows) are not shown. */
  #keyMasked = false;
  #first?: Found;
  #repaired = 0;
  #unrepairable = 0;
  #startedAt = new Date();

  constructor(settings: Settings, context: SourceContext) {
    this.#settings = settings;
    this.#context = context;
  }

  async *read(): AsyncGenerator<SourceBatch> {
    const parts = this.#context.subject;
    if (!parts) throw new Error(`"${this.#context.pipeline}" was started without its pipeline`);
    const problem = subjectProblem(parts);
    if (problem) throw new Error(`Cannot reconcile "${parts.name}": ${problem}`);
    try {
      await this.#open(parts);
      this.#first = await this.#compare();
      this.#log("Found", this.#first);
      if (!this.#settings.repair || totalOf(this.#first) === 0) return;
      yield* this.#repair(this.#first);
    } catch (error) {
      throw this.#retriable(error);
    }
  }

  async validate(): Promise<ValidationCheck[]> {
    if (!this.#first) return [];
    let final = this.#first;
    if (this.#repaired > 0) {
      await this.#first.close();
      final = await this.#compare();
      this.#log("After repair", final);
    }
    const figures: ReconciliationFigures = {
      mode: this.#first.mode,
      sourceRows: this.#first.sourceRows,
      targetRows: this.#first.targetRows,
      missing: this.#first.counts.missing,
      extra: this.#first.counts.extra,
      different: this.#first.counts.different,
      repaired: this.#repaired,
      remaining: totalOf(final),
      queries: this.#first.queries + (final === this.#first ? 0 : final.queries),
    };
    await this.#record(figures, final);
    if (final !== this.#first) await final.close();
    const subject = this.#subject!.name;
    return [{
      name: "reconciliation",
      ok: figures.remaining === 0,
      detail: figures.remaining === 0
        ? `${subject} in sync (${figures.mode}; ${figures.sourceRows} source rows` +
          (figures.repaired > 0 ? `; ${figures.repaired} differences repaired)` : ")")
        : `${subject}: ${figures.remaining} differences remain (${figures.missing} missing, ${figures.extra} extra, ${figures.different} different found; ${figures.repaired} repaired)`,
      reconciliation: figures,
    }];
  }

  async close(): Promise<void> {
    await this.#first?.close().catch(() => {});
    await this.#chain?.close();
    await this.#source?.end({ timeout: 1 });
    await this.#target?.end({ timeout: 1 });
  }

  async #open(parts: PipelineParts): Promise<void> {
    const name = `sluice:${this.#context.pipeline}`;
    this.#source = connect((parts.source.config as { url: string }).url, {
      max: 2,
      applicationName: name,
    });
    // One connection: deep mode keeps temporary tables in its session.
    const sinkConfig = parts.sink.config as { connection: ConnectionConfig };
    this.#target = connect(connectionUrl(sinkConfig.connection), { max: 1, applicationName: name });
    this.#subject = await describeSubject(parts, this.#source, this.#target);
    this.#chain = await TransformChain.open(parts, this.#context);
    this.#versionField = this.#chooseVersion(parts);
    const passing = await this.#passThrough();
    this.#keyPassesThrough = passing.key;
    this.#keyMasked = !passing.key && parts.transforms.some((step) => step.plugin.hidesData);
    this.#mode = this.#settings.mode;
    if (this.#mode === "fast" && passing.problem) {
      this.#fallback = passing.problem;
      this.#mode = "deep";
      this.#context.logger.warn(
        "Fast mode compares keys and versions hashed in SQL, but {problem}: comparing every value (deep) instead",
        { problem: passing.problem },
      );
    }
  }

  #chooseVersion(parts: PipelineParts): string | undefined {
    const subject = this.#subject!;
    const asked = this.#settings["version.column"];
    if (asked === "") return undefined;
    const field = asked ?? defaultVersionField(parts);
    const read = subject.sourceColumns.some((c) => c.name === field);
    if (read && subject.targetColumnOf(field)) return field;
    if (asked !== undefined) {
      throw new Error(
        `Cannot reconcile "${parts.name}": version.column "${asked}" ${
          read ? "does not reach the target (excluded or no column)" : "is not read by the source"
        }`,
      );
    }
    this.#context.logger.info(
      "{subject} has no version column that reaches the target; fast mode compares keys only",
      { subject: parts.name },
    );
    return undefined;
  }

  /**
   * Whether keys (and the version) leave the transforms as they came, on a
   * sample of the first rows: then the source can hash what the target
   * holds, and a row only the target has can be deleted by its key.
   */
  async #passThrough(): Promise<{ key: boolean; problem?: string }> {
    const subject = this.#subject!;
    const targetKey = new Set(subject.targetKey);
    const unmapped = subject.keyFields.filter((f) => !targetKey.has(subject.targetColumnOf(f)!));
    if (unmapped.length > 0) {
      const problem = `the source key (${unmapped.join(", ")}) is not the target's key`;
      return { key: false, problem };
    }
    if (this.#chain!.empty) return { key: true };
    const order = subject.keyFields.map(quoteIdent).join(", ");
    const rows = await this.#readSource(`${subject.sourceSelect} order by ${order} limit 200`, []);
    let key = true;
    let problem: string | undefined;
    for (const row of rows) {
      const record = await this.#chain!.apply(recordOf(subject, row));
      if (record === null) {
        problem ??= "the transforms drop some rows (a filter)";
        continue;
      }
      const value = (record.value ?? {}) as Row;
      for (const field of subject.keyFields) {
        if (encodeText(value[field]) !== encodeText(row[field])) {
          key = false;
          problem ??= `the transforms change the key field "${field}"`;
        }
      }
      const version = this.#versionField;
      if (version && encodeText(value[version]) !== encodeText(row[version])) {
        problem ??= `the transforms change the version field "${version}"`;
      }
    }
    return { key, problem };
  }

  #compare(): Promise<Found> {
    const subject = this.#subject!;
    const sampleSize = this.#settings["sample.size"];
    if (this.#mode === "fast") {
      return compareFast(subject, this.#source!, this.#target!, {
        versionField: this.#versionField,
        rangeRows: this.#settings["fast.range.rows"],
        sampleSize,
      });
    }
    let unfit = 0;
    return compareDeep(subject, this.#chain!, this.#target!, {
      chunkSize: this.#settings["chunk.size"],
      sampleSize,
    }, ({ key, error }) => {
      // A masked key stays out of the log, as it does from the samples.
      const named = this.#keyMasked
        ? "(key withheld: the pipeline masks it)"
        : Object.entries(key).map(([field, value]) => `${field}=${encodeText(value)}`).join(",");
      // Row after row refused: the types no longer match, which is not drift to count.
      if (++unfit > MAX_UNFIT_ROWS) {
        throw new Error(
          `More than ${MAX_UNFIT_ROWS} source rows hold values the target's columns cannot take (the last: ${named}: ${error}); make the target's column types match the source's, then reconcile again`,
        );
      }
      this.#context.logger.warn(
        "Source row {key} holds a value the target's columns cannot take ({error}); it counts as a difference, and a repair writes it through the sink, which dead-letters it or stops",
        { key: named, error },
      );
    });
  }

  /** Source rows of missing and different keys as upserts; extra rows as deletes. */
  async *#repair(found: Found): AsyncGenerator<SourceBatch> {
    const subject = this.#subject!;
    for await (const page of found.pages(this.#settings["chunk.size"])) {
      const records: SluiceRecord[] = [];
      const wanted = page.filter((d) => d.kind !== "extra").map((d) => d.key);
      if (wanted.length > 0) {
        const rows = await this.#sourceRowsByKey(wanted);
        records.push(...rows.map((row) => recordOf(subject, row)));
      }
      const extra = page.filter((d) => d.kind === "extra").map((d) => d.key);
      for (const key of await this.#deletable(extra)) records.push(this.#deletion(key));
      this.#repaired += records.length;
      if (records.length > 0) yield { records, overwrite: true };
    }
    if (this.#unrepairable > 0) {
      this.#context.logger.warn(
        "{count} rows only the target has were left: {why}",
        {
          count: this.#unrepairable,
          why: subject.deleteMode === "none"
            ? "the sink's delete.mode is none"
            : !this.#keyPassesThrough
            ? "the transforms change the key, so the source key of a target row is unknown"
            : subject.subset === "query"
            ? "the pipeline reads a query, so a row only the target has may be another writer's"
            : "the source table still holds them, outside the pipeline's where: another writer's rows, or rows that left the subset",
        },
      );
    }
  }

  /**
   * The extra rows (target keys) a repair may delete: none when it cannot
   * say which source row a target row came from, and, when the pipeline
   * reads a subset of the source, only rows its whole table no longer
   * holds: the target may hold other writers' rows (another pipeline
   * with another `where`). The others count as unrepairable.
   */
  async #deletable(keys: readonly (readonly string[])[]): Promise<(readonly string[])[]> {
    const subject = this.#subject!;
    const deletable = !this.#keyPassesThrough || subject.deleteMode === "none" ||
        subject.subset === "query"
      ? []
      : subject.subset === "where" && keys.length > 0
      ? await this.#absentFromWholeTable(keys)
      : [...keys];
    this.#unrepairable += keys.length - deletable.length;
    return deletable;
  }

  /** Of `keys` (target keys, the source's key values), those the whole source table lacks. */
  async #absentFromWholeTable(
    keys: readonly (readonly string[])[],
  ): Promise<(readonly string[])[]> {
    const subject = this.#subject!;
    const tuple = keyTuple(subject, keys);
    const rows = await this.#source!.unsafe<{ n: number }[]>(
      `select u.n::int as n from unnest(${tuple.unnest}) with ordinality as u(${tuple.names}, n)
       where not exists (select 1 from (${subject.wholeTableSelect}) s
                         where (${tuple.columns}) = (${tuple.typed}))`,
      tuple.params as never[],
    );
    return rows.map((row) => keys[row.n - 1]);
  }

  /** A delete event for a target row, keyed by the source fields its key columns come from. */
  #deletion(targetKey: readonly string[]): SluiceRecord {
    const subject = this.#subject!;
    const key: Row = {};
    subject.targetKey.forEach((column, i) => {
      const field = subject.keyFields.find((f) => subject.targetColumnOf(f) === column) ?? column;
      key[field] = targetKey[i];
    });
    return {
      topic: subject.topic,
      key,
      value: {
        op: "d",
        before: key,
        after: null,
        source: { connector: "reconcile", name: this.#context.pipeline },
        ts_ms: Date.now(),
      },
    };
  }

  async #sourceRowsByKey(keys: readonly (readonly string[])[]): Promise<Row[]> {
    const subject = this.#subject!;
    const { columns, unnest, names, typed, params } = keyTuple(subject, keys);
    const text = `select s.* from (${subject.sourceSelect}) s where (${columns}) in ` +
      `(select ${typed} from unnest(${unnest}) as u(${names}))`;
    return await this.#readSource(text, params);
  }

  async #readSource(text: string, params: unknown[]): Promise<Row[]> {
    const subject = this.#subject!;
    const raw = await this.#source!.unsafe(text, params as never[]).raw();
    const names = subject.sourceColumns.map((c) => c.name);
    return raw.map((row) => decodeRawRow(row as Uint8Array[], names, subject.sourceDecoders));
  }

  async #record(figures: ReconciliationFigures, final: Found): Promise<void> {
    const table = parseTableName(this.#settings["runs.table"]).quoted;
    const target = this.#target!;
    await createOnce(
      target,
      `create table if not exists ${table} (
        id bigserial primary key,
        pipeline text not null,
        checked_pipeline text not null,
        mode text not null,
        started_at timestamptz not null,
        finished_at timestamptz not null default now(),
        source_rows bigint not null,
        target_rows bigint not null,
        missing bigint not null,
        extra bigint not null,
        different bigint not null,
        repaired bigint not null,
        remaining bigint not null,
        queries integer not null,
        sample_keys jsonb not null,
        note text)`,
    );
    const samples = {
      ...this.#shown(this.#first!.samples),
      remaining: totalOf(final) > 0 ? this.#shown(final.samples) : {},
    };
    await target.unsafe(
      `insert into ${table} (pipeline, checked_pipeline, mode, started_at, source_rows, target_rows,
         missing, extra, different, repaired, remaining, queries, sample_keys, note)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14)`,
      [
        this.#context.pipeline,
        this.#subject!.name,
        figures.mode,
        this.#startedAt.toISOString(),
        figures.sourceRows,
        figures.targetRows,
        figures.missing,
        figures.extra,
        figures.different,
        figures.repaired,
        figures.remaining,
        figures.queries,
        JSON.stringify(samples),
        this.#fallback ? `fast mode not possible: ${this.#fallback}` : null,
      ] as never[],
    );
  }

  /**
   * Sample keys as they may be shown: the log and the runs table (in the
   * target database) must not hold the clear source keys a mask hides, so
   * those of missing and different rows are withheld (extra rows' keys are
   * the target's, masked already).
   */
  #shown(samples: Found["samples"]): Found["samples"] {
    if (!this.#keyMasked) return samples;
    const withheld = (keys: readonly string[]) =>
      keys.length > 0 ? ["(source keys withheld: the pipeline masks its key)"] : [];
    return {
      ...samples,
      missing: withheld(samples.missing),
      different: withheld(samples.different),
    };
  }

  #log(stage: string, found: Found): void {
    const { missing, extra, different } = found.counts;
    const samples = Object.entries(this.#shown(found.samples))
      .filter(([, keys]) => keys.length > 0)
      .map(([kind, keys]) => `${kind}: ${keys.join("; ")}`)
      .join(" | ");
    this.#context.logger.info(
      "{stage} ({mode}) between {subject}'s source and target: {sourceRows} source rows, " +
        "{targetRows} target rows; {missing} missing, {extra} extra, {different} different " +
        "({queries} queries){samples}",
      {
        stage,
        mode: found.mode,
        subject: this.#subject!.name,
        sourceRows: found.sourceRows,
        targetRows: found.targetRows,
        missing,
        extra,
        different,
        queries: found.queries,
        samples: samples ? `; e.g. ${samples}` : "",
      },
    );
  }

  #retriable(error: unknown): unknown {
    if (!isConnectionError(error)) return error;
    return new RetriableError(
      `Cannot reconcile: a database connection failed (${
        databaseLabel(this.#subject?.targetUrl ?? "")
      }): ${redactSecrets((error as Error).message)}`,
      { cause: error },
    );
  }
}

/**
 * SQL pieces to match source rows (alias `s`) against `keys` (text, one
 * array per key field, unnested as `u(k0, k1, …)` and cast to the fields'
 * types), and the arrays as parameters.
 */
function keyTuple(subject: Subject, keys: readonly (readonly string[])[]) {
  const names = subject.keyFields.map((_, i) => `k${i}`);
  return {
    columns: subject.keyFields.map((field) => `s.${quoteIdent(field)}`).join(", "),
    names: names.join(", "),
    typed: names.map((name, i) => `u.${name}::${subject.keyTypes[i]}`).join(", "),
    unnest: names.map((_, i) => `$${i + 1}::text[]`).join(", "),
    params: subject.keyFields.map((_, i) => keys.map((key) => key[i])),
  };
}
