/**
 * `postgres`: writes records into PostgreSQL tables, set-based.
 *
 * Each batch is copied (COPY, text format) into a temporary staging table and
 * merged with one `INSERT … SELECT … ON CONFLICT (key) DO UPDATE` per table,
 * in one transaction together with the pipeline's offset. When the target
 * rejects rows (a value that does not fit a column, a failed constraint), a
 * server-side function finds them in one round trip (see `_isolate.ts`), and
 * the rejected rows go to the dead-letter destination (or stop the pipeline,
 * per `errors.tolerance`); the rest of the batch lands.
 *
 * Change events (`op` c/u/r) are upserts of their `after` image; deletes
 * (`op` d, or a tombstone) become soft deletes (`deleted_at` set) or hard
 * deletes, as `delete.mode` says; a truncate (`op` t) soft-deletes or
 * deletes every row (`delete.mode` none ignores them). A stream pipeline
 * whose target cannot apply deletes as configured (soft, without the
 * column) does not start; in a batch pipeline such a delete fails its
 * record. Columns an event leaves out (unchanged TOAST values, a delete's
 * `before` with only the key) keep their stored value. When the table has
 * the `source.position.column` (e.g. `_source_lsn pg_lsn`), every write
 * stores the event's commit LSN there and events older than the row's are
 * skipped, so replaying a stream from an older position never rolls a row
 * back. The same column lets the end of a table's snapshot (its last `op` r
 * record) delete the rows that snapshot did not write: rows deleted at the
 * source before a snapshot that was taken again (see `_sweep.ts`). When one
 * table is also written by batch jobs, `version.column` names the column
 * holding the source row's version (e.g. its `updated_at`),
 * and every write, batch or change event, lands only on a row older than it
 * (`ON CONFLICT … DO UPDATE … WHERE target.version < excluded.version`), so
 * an hourly job that read a row before CDC changed it cannot roll it back.
 *
 * A field the target has no column for fails its record, unless it is
 * listed in `fields.exclude` or `schema.evolution` is `basic` (then it
 * becomes a new column). `auto.create` makes a missing table from the first
 * record; types are inferred from values (see `_schema.ts`).
 *
 * ```json
 * { "sink.class": "postgres",
 *   "sink.connection.url": "${env:CITIZEN_URL}",
 *   "sink.table": "public.profile_summary",
 *   "sink.fields.mapping": "full_name:display_name,updated_at:source_updated_at",
 *   "sink.write.timestamp.column": "synced_at",
 *   "sink.delete.mode": "soft",
 *   "sink.schema.evolution": "none" }
 * ```
 *
 * @module
 */
import { type DeadLetterWriter, defineSink } from "../../api/plugin.ts";
import { postgresDeadLetters, postgresDeadLetterStore } from "./_dead_letters.ts";
import { schema } from "./_settings.ts";
import { PostgresWriter } from "./_writer.ts";
import { connectionUrl, parseTableName } from "../../drivers/postgres.ts";
import type { Settings } from "./_settings.ts";

/** Why `table.name.format` makes no table name of `topic`, if it does not. */
function tableNameProblem(settings: Settings, topic: string): string | undefined {
  const name = settings.tableNameFormat.replaceAll("${topic}", topic);
  try {
    parseTableName(name);
    return undefined;
  } catch {
    return `records of topic "${topic}" would go to table "${name}" (table.name.format ` +
      `"${settings.tableNameFormat}"), which is not a table name of the form schema.table: ` +
      `route the topics to table names (a route transform, e.g. ` +
      `"transforms.route.regex": "[^.]+\\.([^.]+\\.[^.]+)", "transforms.route.replacement": "$1"), ` +
      `or, for one captured table only, set sink.table`;
  }
}

/**
 * Several topics into one fixed table mix rows of different tables, and the
 * first record whose fields differ fails as if a column were missing. Kafka
 * Connect's JDBC sink names the table from the topic (`${topic}`) for this.
 */
function oneTableProblem(settings: Settings, topics: readonly string[]): string | undefined {
  const fixed = settings.table ??
    (settings.tableNameFormat.includes("${topic}") ? undefined : settings.tableNameFormat);
  if (fixed === undefined || topics.length < 2) return undefined;
  const key = settings.table ? "sink.table" : "sink.table.name.format";
  const shown = topics.slice(0, 5).map((topic) => `"${topic}"`).join(", ") +
    (topics.length > 5 ? ", …" : "");
  return `${key} writes every record to the one table "${fixed}", but the records come from ` +
    `${topics.length} topics (${shown}), whose rows would be mixed there: to give each topic ` +
    `its own table, remove ${key} and let sink.table.name.format (default "\${topic}") name ` +
    `it from the topic, routing the topics to table names with a transform where needed ` +
    `(e.g. "transforms.route.regex": "[^.]+\\.([^.]+\\.[^.]+)", ` +
    `"transforms.route.replacement": "$1"); to merge tables of one shape on purpose, route ` +
    `their topics to one topic first`;
}

/** The sink's URL, or undefined when its settings cannot make one (validation says why). */
function urlOrUndefined(settings: Settings): string | undefined {
  try {
    return connectionUrl(settings.connection);
  } catch {
    return undefined;
  }
}

export default defineSink({
  name: "postgres",
  aliases: [
    "io.debezium.connector.jdbc.JdbcSinkConnector",
    "io.confluent.connect.jdbc.JdbcSinkConnector",
  ],
  summary: "Upserts rows and change events into PostgreSQL tables, with soft or hard deletes.",
  plan(settings) {
    return {
      destination: `postgres ${settings.table ?? settings.tableNameFormat}`,
      topicProblem: (topic) => settings.table ? undefined : tableNameProblem(settings, topic),
      topicsProblem: (topics) => oneTableProblem(settings, topics),
      clusterDatabase: urlOrUndefined(settings),
    };
  },
  config: schema,
  deadLetterStore: (settings, destination) =>
    postgresDeadLetterStore(connectionUrl(settings.connection), destination),
  async create(settings, context) {
    const writer = await PostgresWriter.open(settings, context);
    return {
      write: (batch) => writer.write(batch),
      copyText: true,
      offsets: {
        read: (key) => writer.readOffset(key),
        write: (key, value) => writer.writeOffset(key, value),
        delete: (key) => writer.deleteOffset(key),
      },
      deadLetters: (destination): DeadLetterWriter => postgresDeadLetters(writer.url, destination),
      replayCheck: (records) => writer.replayCheck(records),
      validate: () => writer.validate(),
      close: () => writer.close(),
    };
  },
});
