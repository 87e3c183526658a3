/**
 * `postgres_cdc`: captures row changes from PostgreSQL's write-ahead log
 * through a logical replication slot with the built-in `pgoutput` plugin,
 * and emits Debezium change events (`op` c, u, d, r, t). Debezium's
 * PostgreSQL connector class name is accepted as an alias, and its property
 * names are used where they exist.
 *
 * - Publication and slot are created when missing (`publication.autocreate.mode`).
 * - `snapshot.mode` initial | initial_only | when_needed take a consistent
 *   snapshot (an exported snapshot of the new slot), then stream from the
 *   slot's consistent point: nothing lost or doubled in between. Each
 *   table's first and last snapshot record is marked (Debezium's
 *   `first_in_data_collection` / `last_in_data_collection`), so a postgres
 *   sink can delete what a snapshot taken again no longer holds.
 * - An LSN is confirmed to PostgreSQL only after the sink made everything up
 *   to it durable; on restart, changes re-delivered by the slot are skipped.
 *   Offsets are `{ "lsn": "0/16B3748", "txId": 745 }` (see `_capture.ts`).
 * - Connection faults raise a retriable error: the runtime restarts the
 *   stream from the committed offset, with backoff.
 *
 * Values: see `_values.ts`. With the defaults (`decimal.handling.mode`
 * precise, `time.precision.mode` isostring) every value survives PostgreSQL →
 * PostgreSQL unchanged. Unchanged TOAST columns are left out of `after`.
 *
 * Differences from Debezium worth knowing: truncates are emitted by default
 * (`skipped.operations` defaults to `none`, Debezium's to `t`);
 * `time.precision.mode` defaults to `isostring` (PostgreSQL's own text,
 * lossless) rather than `adaptive`; heartbeats persist the position (an
 * offset-only batch) instead of writing to a heartbeat topic; `source.sequence`
 * is `["<commit LSN of the transaction>","<LSN of the change>"]`.
 *
 * In direct mode (no Kafka), the plan's tables into the citizen database;
 * the route turns `warehouse-cdc.<schema>.<table>` into `<schema>.<table>`:
 *
 * ```json
 * { "name": "warehouse-to-citizen-direct",
 *   "config": {
 *     "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
 *     "database.hostname": "${env:WAREHOUSE_HOST}",
 *     "database.port": "5432",
 *     "database.user": "${env:WAREHOUSE_USER}",
 *     "database.password": "${env:WAREHOUSE_PASSWORD}",
 *     "database.dbname": "smart_warehouse",
 *     "topic.prefix": "warehouse-cdc",
 *     "table.include.list": "public.golden_records,public.profile_360,eligibility.eligibility_snapshots,decision.applications",
 *     "slot.name": "warehouse_citizen_slot",
 *     "publication.name": "warehouse_citizen_publication",
 *     "publication.autocreate.mode": "filtered",
 *     "plugin.name": "pgoutput",
 *     "snapshot.mode": "initial",
 *     "heartbeat.interval.ms": "10000",
 *     "transforms": "route",
 *     "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
 *     "transforms.route.regex": "warehouse-cdc\\.(.*)",
 *     "transforms.route.replacement": "$1",
 *     "sink.class": "postgres",
 *     "sink.connection.url": "${env:CITIZEN_URL}",
 *     "sink.table.name.format": "${topic}" } }
 * ```
 *
 * @module
 */
import { changeCdcOffsets, listCdcOffsets, slotHolder } from "./_offsets.ts";
import { z } from "zod";
import { boolean, integer, list, positiveInteger } from "../../api/options.ts";
import { defineSource } from "../../api/plugin.ts";
import type { ChangeOp } from "../../api/record.ts";
import {
  checkConnection,
  type ConnectionConfig,
  connectionOptions,
  connectionUrl,
  databaseLabel,
} from "../../drivers/postgres.ts";
import { Capture } from "./_capture.ts";
import { watchSlotLag } from "./_slot_metrics.ts";
import { CaptureFilter, compilePatterns } from "./_filters.ts";
import type { AutocreateMode } from "./_slot.ts";
import type { DecimalMode, IntervalMode, TimeMode } from "./_values.ts";
import { literalTables, topicName, topicProblems } from "./_topics.ts";
import { rowsExist } from "../_row_lookup.ts";
import { isChangeEvent } from "../../api/record.ts";

/** `source.version` of the events. */
export const VERSION = "sluice-0.1.0";

const SNAPSHOT_MODES = {
  initial: "initial",
  initial_only: "initial_only",
  when_needed: "when_needed",
  never: "never",
  no_data: "never",
} as const;

const OPERATIONS = ["c", "u", "d", "t", "none"] as const;

const fields = z.strictObject({
  ...connectionOptions,
  "topic.prefix": z.string().min(1).optional().describe(
    'Required, in direct mode too (the deprecated database.server.name stands in for it): the logical name of the source server. Events go to topics <topic.prefix>.<schema>.<table>, from which a postgres sink\'s table.name.format names its tables; characters other than letters, digits, ., _ and - become _ (as in Debezium), so public."Big Events" goes to <topic.prefix>.public.Big_Events.',
  ),
  "database.server.name": z.string().optional().describe(
    "Deprecated (Debezium 1.x): used as topic.prefix when that is not set; ignored otherwise.",
  ),
  "plugin.name": z.string().default("pgoutput").describe(
    "Logical decoding plugin; only pgoutput (built into PostgreSQL 10+) is supported.",
  ),
  "slot.name": z.string().regex(/^[a-z0-9_]{1,63}$/, {
    error: "must be 1 to 63 lower-case letters, digits or underscores",
  }).default("sluice").describe("Logical replication slot to create or reuse."),
  "slot.standby.retry.ms": positiveInteger().default(2000).describe(
    "With several Sluice processes on one plan, one owns the slot (an advisory lock on its replication connection) and the others stand by (state STANDBY), trying to take over this often (ms). Takeover time after the owner dies: this interval plus the time PostgreSQL needs to notice (at once for a killed process; up to wal_sender_timeout for a lost host).",
  ),
  "slot.drop.on.stop": boolean().default(false).describe(
    "Drop the slot when the pipeline stops (tests and one-off runs; the position is lost). Waits up to 15 s for its walsender to exit (ending it if it lingers); a slot another process streams from is never dropped: the stop logs a warning naming its walsender.",
  ),
  "publication.name": z.string().min(1).default("sluice_publication").describe(
    "Publication the slot streams.",
  ),
  "publication.autocreate.mode": z.enum(["all_tables", "filtered", "disabled"]).optional()
    .describe(
      "filtered: create the publication FOR TABLE the captured tables, or add the missing ones to it (tables it already publishes are kept, for other pipelines sharing it); the default when table.include.list or schema.include.list is given. Tables created later are added at the next start, without copying their earlier rows (a warning names them). all_tables: create it FOR ALL TABLES when missing (the default otherwise), with a warning: an UPDATE or DELETE on any table without a primary key or replica identity then fails. disabled: it must exist. A captured table without a usable replica identity stops the pipeline at start. A captured partitioned table needs publish_via_partition_root (PostgreSQL 13+): set when Sluice creates the publication, and in filtered mode on an existing one; a publication that would send its changes under names the include list drops stops the pipeline at start, naming the ALTER PUBLICATION to run.",
    ),
  "snapshot.mode": z.enum(Object.keys(SNAPSHOT_MODES) as [keyof typeof SNAPSHOT_MODES])
    .default("initial").transform((mode) => SNAPSHOT_MODES[mode]).describe(
      "initial: snapshot the captured tables when no offset is stored, then stream. initial_only: snapshot, then stop. when_needed: snapshot when no offset is stored, or the slot is gone or has confirmed past it. never (alias no_data): stream only.",
    ),
  "offset.mismatch.strategy": z.enum([
    "trust_offset",
    "trust_slot",
    "trust_greater_lsn",
    "no_validation",
  ])
    .default("trust_offset").describe(
      "What a start does when the slot has confirmed more than the stored offset, or is gone while an offset is stored: the changes in between were consumed elsewhere (another process or tool on the slot, a slot made anew, offsets restored from a backup) and cannot be read again. trust_offset: stop with an error naming both positions (snapshot.mode when_needed takes a new snapshot instead). trust_slot, trust_greater_lsn, no_validation: log a warning naming the gap and stream from the slot's position. Debezium's option; its default is no_validation.",
    ),
  "schema.include.list": list().optional().describe(
    "Regular expressions matching the schemas to capture (whole name, case-insensitive).",
  ),
  "schema.exclude.list": list().optional().describe(
    "Regular expressions matching schemas not to capture.",
  ),
  "table.include.list": list().optional().describe(
    "Regular expressions matching schema.table of the tables to capture (whole name, case-insensitive). A partitioned table is captured whole (snapshot and stream, its partitions included) under its own name and primary key; a pattern that also matches its partitions adds nothing. A partition matched without its partitioned table is captured under its own name.",
  ),
  "table.exclude.list": list().optional().describe(
    "Regular expressions matching schema.table of tables not to capture.",
  ),
  "column.include.list": list().optional().describe(
    "Regular expressions matching schema.table.column of the columns events carry.",
  ),
  "column.exclude.list": list().optional().describe(
    "Regular expressions matching schema.table.column of columns left out of events.",
  ),
  "tombstones.on.delete": boolean().default(true).describe(
    "Follow each delete event with a tombstone (same key, null value) for Kafka log compaction.",
  ),
  "skipped.operations": list().default(["none"]).describe(
    'Operations not emitted: a list of c, u, d, t, or "none".',
  ),
  "heartbeat.interval.ms": integer().pipe(z.number().min(0)).default(0).describe(
    "Every so many ms: run heartbeat.action.query, then store the position of an idle stream (an idle or filtered stream also stores it every status.update.interval.ms). 0: off.",
  ),
  "heartbeat.action.query": z.string().optional().describe(
    "SQL run on the source at every heartbeat, e.g. an update of a heartbeat table, so a quiet captured database still moves the slot.",
  ),
  "signal.data.collection": z.string().optional().describe(
    'The signal table (schema.table; columns id, type, data), as Debezium\'s: a row inserted there with type execute-snapshot and data {"data-collections": ["public.t"]} snapshots those captured tables while the stream waits at that point (a table added to the publication later gets its rows that way); type log writes data.message to the log. The table must be captured.',
  ),
  "max.batch.size": positiveInteger().default(2048).describe(
    "Events per batch handed to the pipeline. A full batch grows on to the end of the source transaction it is in, up to 4 times this (and max.batch.bytes), so that a transaction lands in one target transaction; larger ones are split. The events in flight, and so memory, grow with it: draining a backlog into Kafka peaked at ~165 MB with 2048 and ~144 MB with 512, for a quarter fewer events/s.",
  ),
  "max.batch.bytes": positiveInteger().default(4 * 1024 * 1024).describe(
    "A batch is handed over once its changes reach this size, even below max.batch.size, so wide rows (large documents) stay bounded in memory: pgoutput bytes in the stream, characters of COPY text in a snapshot. A single larger change still makes a batch of its own.",
  ),
  "poll.interval.ms": integer().pipe(z.number().min(0)).default(100).describe(
    "How long a partly filled batch may wait for more events before it is handed over (ms); bounds the added latency.",
  ),
  "status.update.interval.ms": positiveInteger().default(10000).describe(
    "How often the acknowledged position is sent to PostgreSQL even when nothing changed, and how often an idle or filtered stream stores the position it reached, which the slot then confirms, freeing the WAL before it (ms).",
  ),
  "lag.poll.interval.ms": integer().pipe(z.number().min(0)).default(10000).describe(
    "How often the slot's lag and retained WAL are read from pg_replication_slots for the metrics (ms); 0: never.",
  ),
  "decimal.handling.mode": z.enum(["precise", "string", "double"]).default("precise").describe(
    'numeric values: precise and string keep PostgreSQL\'s exact decimal text ("1234.5600", "NaN"; JSON has no decimal type); double converts to a JavaScript number (may round).',
  ),
  "time.precision.mode": z.enum(["isostring", "adaptive", "adaptive_time_microseconds", "connect"])
    .default("isostring").describe(
      "isostring: dates and times stay PostgreSQL's ISO text (lossless, microseconds kept). adaptive: Debezium's encodings: date as days since 1970, time/timestamp as ms or µs by column precision (a decimal string past 2^53, as for bigint: years after 2255), timestamptz/timetz as ISO strings in UTC. adaptive_time_microseconds: time always in µs. connect: ms (drops microseconds).",
    ),
  "interval.handling.mode": z.enum(["numeric", "string"]).default("numeric").describe(
    "How intervals travel in a typed format (value.converter.schemas.enable, Avro): numeric, Debezium's MicroDuration microseconds, where a month counts 30.4375 days (so '1 mon' arrives as '730:30:00', another value); string, io.debezium.time.Interval, ISO 8601 ('P1M'), exact. Schemaless JSON carries PostgreSQL's own text either way.",
  ),
});

const schema = fields.superRefine((config, context) => {
  checkConnection(config, context);
  const issue = (path: string, message: string, input?: unknown) =>
    context.addIssue({ code: "custom", path: [path], message, input });
  if (config["plugin.name"] !== "pgoutput") {
    issue(
      "plugin.name",
      `only "pgoutput" is supported (built into PostgreSQL 10 and later): current value is "${
        config["plugin.name"]
      }"`,
    );
  }
  if (!config["topic.prefix"] && !config["database.server.name"]) {
    issue("topic.prefix", "is required: it names the topics <topic.prefix>.<schema>.<table>");
  }
  // Tables named literally are known now: their topics must not collide.
  const prefix = config["topic.prefix"] ?? config["database.server.name"] ?? "";
  for (const problem of topicProblems(prefix, literalTables(config["table.include.list"] ?? []))) {
    issue("table.include.list", problem);
  }
  for (
    const [include, exclude] of [
      ["table.include.list", "table.exclude.list"],
      ["schema.include.list", "schema.exclude.list"],
      ["column.include.list", "column.exclude.list"],
    ] as const
  ) {
    if (config[include]?.length && config[exclude]?.length) {
      issue(exclude, `cannot be combined with ${include}; give one of them`);
    }
  }
  for (
    const key of [
      "schema.include.list",
      "schema.exclude.list",
      "table.include.list",
      "table.exclude.list",
      "column.include.list",
      "column.exclude.list",
    ] as const
  ) {
    for (const pattern of config[key] ?? []) {
      try {
        compilePatterns([pattern]);
      } catch (error) {
        issue(key, `holds an invalid regular expression "${pattern}": ${(error as Error).message}`);
      }
    }
  }
  const operations = config["skipped.operations"];
  for (const op of operations) {
    if (!(OPERATIONS as readonly string[]).includes(op)) {
      issue(
        "skipped.operations",
        `must list operations among c, u, d, t (or "none"): current value is "${
          operations.join(",")
        }"`,
      );
      break;
    }
  }
  const signalTable = config["signal.data.collection"];
  if (signalTable !== undefined) {
    const parts = signalTable.split(".");
    if (parts.length !== 2 || parts.some((part) => part === "")) {
      issue(
        "signal.data.collection",
        `must name a table as schema.table: current value is "${signalTable}"`,
      );
    } else if (!new CaptureFilter(config).table(parts[0], parts[1])) {
      issue(
        "signal.data.collection",
        `names ${signalTable}, which the include and exclude lists leave out: signals arrive only from a captured table (add it to table.include.list)`,
      );
    }
  }
  if (config["heartbeat.action.query"] && config["heartbeat.interval.ms"] === 0) {
    issue(
      "heartbeat.action.query",
      "runs only with heartbeat.interval.ms greater than 0",
    );
  }
}).transform(settingsOf);

/** The parsed config of `postgres_cdc`, in the connector's own words. */
export interface CdcSettings {
  /** The connection options, in the driver's vocabulary. */
  readonly connection: ConnectionConfig;
  readonly topicPrefix: string;
  /** `database.server.name` when given (deprecated). */
  readonly serverName?: string;
  readonly slot: string;
  readonly dropSlotOnStop: boolean;
  readonly standbyRetryMs: number;
  readonly publication: string;
  readonly autocreate: AutocreateMode;
  readonly snapshotMode: (typeof SNAPSHOT_MODES)[keyof typeof SNAPSHOT_MODES];
  /** `offset.mismatch.strategy`: whether a gap between the stored offset and the slot stops the start. */
  readonly trustOffset: boolean;
  readonly filter: CaptureFilter;
  /** `table.include.list` as given, for `sluice plan`. */
  readonly tableIncludeList: readonly string[];
  readonly tombstones: boolean;
  readonly skipped: ReadonlySet<ChangeOp>;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatQuery?: string;
  readonly signalTable?: string;
  readonly maxBatchSize: number;
  readonly maxBatchBytes: number;
  readonly pollIntervalMs: number;
  readonly statusIntervalMs: number;
  readonly lagPollIntervalMs: number;
  readonly decimal: DecimalMode;
  readonly time: TimeMode;
  readonly interval: IntervalMode;
}

type ParsedConfig = z.output<typeof fields>;

function settingsOf(config: ParsedConfig): CdcSettings {
  const connection: Record<string, unknown> = {};
  for (const key of Object.keys(connectionOptions)) {
    connection[key] = config[key as keyof ParsedConfig];
  }
  const includes = [config["table.include.list"], config["schema.include.list"]];
  return {
    connection: connection as ConnectionConfig,
    topicPrefix: config["topic.prefix"] ?? config["database.server.name"]!,
    serverName: config["database.server.name"],
    slot: config["slot.name"],
    dropSlotOnStop: config["slot.drop.on.stop"],
    standbyRetryMs: config["slot.standby.retry.ms"],
    publication: config["publication.name"],
    // Debezium's filtered behaviour when the capture is narrowed by an include list.
    autocreate: config["publication.autocreate.mode"] ??
      (includes.some((list) => list && list.length > 0) ? "filtered" : "all_tables"),
    snapshotMode: config["snapshot.mode"],
    trustOffset: config["offset.mismatch.strategy"] === "trust_offset",
    filter: new CaptureFilter(config),
    tableIncludeList: config["table.include.list"] ?? [],
    tombstones: config["tombstones.on.delete"],
    skipped: new Set(config["skipped.operations"].filter((op) => op !== "none") as ChangeOp[]),
    heartbeatIntervalMs: config["heartbeat.interval.ms"],
    heartbeatQuery: config["heartbeat.action.query"],
    signalTable: config["signal.data.collection"],
    maxBatchSize: config["max.batch.size"],
    maxBatchBytes: config["max.batch.bytes"],
    pollIntervalMs: config["poll.interval.ms"],
    statusIntervalMs: config["status.update.interval.ms"],
    lagPollIntervalMs: config["lag.poll.interval.ms"],
    decimal: config["decimal.handling.mode"],
    time: config["time.precision.mode"],
    interval: config["interval.handling.mode"],
  };
}

export default defineSource({
  name: "postgres_cdc",
  aliases: ["io.debezium.connector.postgresql.PostgresConnector"],
  mode: "stream",
  summary:
    "Streams row changes from a PostgreSQL logical replication slot (pgoutput) as Debezium change events.",
  config: schema,
  plan(settings) {
    // Without connecting, only plainly named tables (no regex) can be listed.
    const tables = literalTables(settings.tableIncludeList);
    const warnings = settings.serverName === undefined ? [] : [
      settings.topicPrefix !== settings.serverName
        ? `database.server.name is deprecated and ignored: topic.prefix "${settings.topicPrefix}" names the topics`
        : `database.server.name is deprecated: use topic.prefix (taken from it: "${settings.topicPrefix}")`,
    ];
    let database: string | undefined;
    try {
      database = databaseLabel(connectionUrl(settings.connection));
    } catch {
      database = undefined; // validation says what is wrong with the connection
    }
    return {
      captures: tables.map((t) => ({
        table: `${t.schema}.${t.table}`,
        topic: topicName(settings.topicPrefix, t.schema, t.table),
      })),
      warnings,
      // Every entry a plain name: those tables are all it captures.
      ...(tables.length > 0 && tables.length === settings.tableIncludeList.length
        ? { emits: tables.map((t) => topicName(settings.topicPrefix, t.schema, t.table)) }
        : {}),
      // Two pipelines on one slot take it from each other and each misses the other's changes.
      exclusive: database ? [`replication slot "${settings.slot}" of ${database} (slot.name)`] : [],
    };
  },
  offsets: {
    list: (settings, stored) => Promise.resolve(listCdcOffsets(settings.topicPrefix, stored)),
    change: (settings, _stored, change, context) =>
      changeCdcOffsets(
        { ...settings, url: connectionUrl(settings.connection) },
        change,
        context,
      ),
    runningElsewhere: (settings, context) =>
      slotHolder({ url: connectionUrl(settings.connection), slot: settings.slot }, context),
  },
  // A change event names its table; a record flattened by unwrap no longer does.
  rowsExist: (settings, records, context) =>
    rowsExist(
      connectionUrl(settings.connection),
      records.map((record) => {
        const value = record.value;
        if (!record.key || !isChangeEvent(value)) return undefined;
        const { schema, table } = value.source;
        return typeof schema === "string" && typeof table === "string"
          ? { schema, table, key: record.key }
          : undefined;
      }),
      `sluice:${context.pipeline}:replay`,
    ),
  watch(settings, context) {
    return watchSlotLag(
      connectionUrl(settings.connection),
      `sluice:${context.pipeline}:watch`,
      settings.slot,
      context.metrics,
      settings.lagPollIntervalMs,
      context.logger,
    );
  },
  create(settings, context) {
    const capture = new Capture(
      {
        ...settings,
        url: connectionUrl(settings.connection),
        applicationName: `sluice:${context.pipeline}`,
        claimed: context.claimed,
        readOffset: context.readOffset,
        events: {
          prefix: settings.topicPrefix,
          version: VERSION,
          tombstones: settings.tombstones,
          skipped: settings.skipped,
          filter: settings.filter,
        },
      },
      context.offset,
      context.logger,
      context.signal,
      context.metrics,
    );
    return {
      read: () => capture.read(),
      commit: (offset) => capture.commit(offset),
      close: () => capture.close(),
    };
  },
});
