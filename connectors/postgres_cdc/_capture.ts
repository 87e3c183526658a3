/**
 * The capture loop of `postgres_cdc`: publication and slot set-up, the
 * optional snapshot, then the replication stream turned into batches of
 * change events, with acknowledgements that never run ahead of the sink.
 *
 * ## Offsets
 *
 * A batch's offset is `{ "lsn": "0/16B3748", "txId": 745 }`: every
 * transaction whose commit record starts before `lsn` (the end of the last
 * fully delivered transaction's commit record, or a keepalive's WAL end when
 * nothing was pending) has been delivered. A batch boundary may fall inside a
 * transaction; then the offset also says how far into it:
 * `"partial": { "commitLsn": "0/16B4000", "txId": 746, "events": 42 }` means
 * the first 42 change messages of the transaction committing at `commitLsn`
 * were delivered too.
 *
 * On restart the stream starts at `lsn`; PostgreSQL may still re-deliver
 * older transactions (a slot's confirmed position survives a crash only once
 * checkpointed), and those, like the delivered part of a partial
 * transaction, are skipped.
 *
 * ## Acknowledgements
 *
 * The flush LSN sent in Standby Status Updates is the `lsn` of the last
 * offset the pipeline committed (after the sink made it durable), never
 * more: so the slot's `confirmed_flush_lsn` is never past the stored offset,
 * and a start that finds it past (or the slot gone) knows something else
 * consumed the slot (`offset.mismatch.strategy`). So that an idle or
 * filtered slot does not hold WAL, the position reached while nothing is in
 * flight (including keepalives' WAL end) is stored as an offset-only batch
 * every `status.update.interval.ms`, and at once when the server asks for a
 * reply (it does so when it shuts down).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { RetriableError, StandbyError } from "../../api/errors.ts";
import { advisoryLockKey } from "../../drivers/pg_cluster.ts";
import type { JsonValue, SluiceRecord } from "../../api/record.ts";
import type { SourceBatch } from "../../api/plugin.ts";
import {
  connect,
  databaseLabel,
  isConnectionError,
  isLoginError,
  type Sql,
} from "../../drivers/postgres.ts";
import {
  type ChangePosition,
  changeRecords,
  type EventOptions,
  rowOf,
  type TableInfo,
  Tables,
} from "./_changes.ts";
import { parseSignal, type Signal, signalTables } from "./_signals.ts";
import { formatLsn, maxLsn, parseLsn } from "./_lsn.ts";
import { decodeXLogMessage, keepaliveWalEnd, PG_EPOCH_MICROS, xlogWalStart } from "./_pgoutput.ts";
import { ReplicationConnection, type ReplicationStream, TEXT_SETTINGS } from "./_replication.ts";
import { readSnapshot } from "./_snapshot.ts";
import {
  type AutocreateMode,
  dropSlot,
  inspectSlot,
  preparePublication,
  publishedTables,
  type SlotInfo,
  type TableRef,
  warnOfGeneratedColumns,
  whileSlotWaits,
} from "./_slot.ts";
import { type DecimalMode, type IntervalMode, type TimeMode, ValueDecoders } from "./_values.ts";
import type { CaptureFilter } from "./_filters.ts";
import type { PluginMetrics } from "../../api/metrics.ts";
import { pollSlotLag } from "./_slot_metrics.ts";
import { parentsFirst } from "../../drivers/pg_foreign_keys.ts";

/** How far past max.batch.size a batch grows to end with its transaction (see `#full`). */
const TRANSACTION_STRETCH = 4;

/** The settings of one capture, from the parsed config. */
export interface CaptureSettings {
  readonly url: string;
  readonly applicationName: string;
  readonly slot: string;
  readonly dropSlotOnStop: boolean;
  readonly publication: string;
  readonly autocreate: AutocreateMode;
  readonly snapshotMode: "initial" | "never" | "when_needed" | "initial_only";
  /**
   * A stored offset the slot has moved past (or a slot gone while an offset
   * is stored) stops the start, unless `snapshotMode` is when_needed; false:
   * a warning, and the stream goes on from the slot.
   */
  readonly trustOffset: boolean;
  readonly maxBatchSize: number;
  readonly maxBatchBytes: number;
  readonly pollIntervalMs: number;
  readonly statusIntervalMs: number;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatQuery?: string;
  /** How often the slot's lag is read for the metrics (ms); 0: never. */
  readonly lagPollIntervalMs?: number;
  /** How often a standby tries to take the slot over (ms). */
  readonly standbyRetryMs: number;
  /** Told once this run owns the slot. */
  readonly claimed?: (resource: string) => void;
  /** Reads the stored offset again, once this run owns the slot (see `#ownSlot`). */
  readonly readOffset?: () => Promise<JsonValue | undefined>;
  readonly decimal: DecimalMode;
  readonly time: TimeMode;
  readonly interval?: IntervalMode;
  readonly filter: CaptureFilter;
  readonly events: Omit<EventOptions, "database">;
  /** `signal.data.collection`: the signal table's `schema.table` (see `_signals.ts`). */
  readonly signalTable?: string;
}

/** A signal read from the stream, acted on before anything after it is handed over. */
interface PendingSignal {
  readonly signal: Signal;
  /** Commit LSN of the signal's transaction: the position a snapshot it asks for carries. */
  readonly commitLsn: bigint;
  /** The signal row's own change records (the signal table may be captured too). */
  readonly records: SluiceRecord[];
}

/** The stored position, parsed. */
interface Position {
  lsn: bigint;
  txId: number | null;
  partial?: { commitLsn: bigint; txId: number; events: number };
}

/** The transaction being received. */
interface Transaction {
  finalLsn: bigint;
  xid: number;
  micros: bigint;
  /** Change messages received so far (filtered ones included). */
  changes: number;
  /** Already delivered before a restart: skip it whole. */
  skipAll: boolean;
  /** Already delivered up to this many change messages. */
  skipFirst: number;
  /** The position of its changes (`lsn` set per change). */
  position?: { -readonly [K in keyof ChangePosition]: ChangePosition[K] };
}

/** Reads a stored offset; throws a sentence when it is not one of ours. */
export function parsePosition(value: JsonValue | undefined): Position | undefined {
  if (value === undefined || value === null) return undefined;
  const bad = () =>
    new Error(
      `The stored offset ${
        JSON.stringify(value)
      } is not a postgres_cdc position ({"lsn": "0/16B3748", "txId": …}); delete it to start over`,
    );
  if (typeof value !== "object" || Array.isArray(value) || typeof value.lsn !== "string") {
    throw bad();
  }
  try {
    const position: Position = {
      lsn: parseLsn(value.lsn),
      txId: typeof value.txId === "number" ? value.txId : null,
    };
    const partial = value.partial;
    if (partial && typeof partial === "object" && !Array.isArray(partial)) {
      position.partial = {
        commitLsn: parseLsn(String(partial.commitLsn)),
        txId: Number(partial.txId),
        events: Number(partial.events),
      };
    }
    return position;
  } catch {
    throw bad();
  }
}

/** One run of the capture: `read()` once, `commit()` per delivered batch, `close()`. */
export class Capture {
  readonly #settings: CaptureSettings;
  readonly #logger: Logger;
  readonly #signal: AbortSignal;
  #stored: Position | undefined;
  #meta?: Sql;
  #replication?: ReplicationConnection;
  #stream?: ReplicationStream;
  #statusTimer?: ReturnType<typeof setInterval>;
  #lagPolling?: { stop(): Promise<void> };
  readonly #metrics?: PluginMetrics;
  #closed = false;
  /** This run holds the slot's lock (a standby never drops the slot). */
  #owner = false;

  /** Everything with a commit before this LSN was received (and buffered or yielded). */
  #reached: { lsn: bigint; txId: number | null } = { lsn: 0n, txId: null };
  /** The flush LSN the pipeline acknowledged. */
  #acked = 0n;
  #yielded = 0;
  #committed = 0;
  #buffered = 0;
  #lastSentFlush = -1n;
  #lastOffsetLsn = -1n;
  #pendingSignal?: PendingSignal;
  /** The server asked for a reply: store an idle position now rather than at the next interval. */
  #replyRequested = false;

  constructor(
    settings: CaptureSettings,
    offset: JsonValue | undefined,
    logger: Logger,
    signal: AbortSignal,
    metrics?: PluginMetrics,
  ) {
    this.#metrics = metrics;
    this.#settings = settings;
    this.#logger = logger;
    this.#signal = signal;
    this.#stored = parsePosition(offset);
  }

  /** Yields batches until the signal aborts; throws RetriableError on connection faults. */
  async *read(): AsyncGenerator<SourceBatch> {
    // Creating a slot waits for every transaction running on the server, and
    // a snapshot can be long: a stop must not wait for them. While streaming,
    // the loop itself sees the signal and ends after the batch in hand.
    const interrupt = () => {
      if (!this.#stream) void this.close();
    };
    this.#signal.addEventListener("abort", interrupt, { once: true });
    try {
      yield* this.#run();
    } catch (error) {
      // Stopping closes the connections under a read in progress: not a fault.
      if (this.#signal.aborted) return;
      throw classify(error, databaseLabel(this.#settings.url));
    } finally {
      this.#signal.removeEventListener("abort", interrupt);
      await this.close();
    }
  }

  /** Acknowledges an offset the pipeline made durable. */
  commit(offset: JsonValue): void {
    this.#committed++;
    const position = parsePosition(offset);
    if (position) this.#acked = maxLsn(this.#acked, position.lsn);
    this.#sendStatus(false);
  }

  /** Ends the stream and connections; drops the slot when `slot.drop.on.stop` is set. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#statusTimer);
    this.#sendStatus(true);
    const replication = this.#replication;
    this.#replication = undefined;
    const ownPid = replication?.pid;
    try {
      await replication?.close();
    } catch (error) {
      this.#logger.warn("Closing the replication connection failed: {error}", {
        error: (error as Error).message,
      });
    }
    await this.#lagPolling?.stop();
    const meta = this.#meta;
    this.#meta = undefined;
    if (meta) {
      try {
        if (this.#settings.dropSlotOnStop && this.#owner) {
          await dropSlot(meta, this.#settings.slot, { ownPid });
          this.#logger.info("Dropped replication slot {slot}", { slot: this.#settings.slot });
        }
      } catch (error) {
        this.#logger.warn("Dropping slot {slot} failed: {error}", {
          slot: this.#settings.slot,
          error: (error as Error).message,
        });
      } finally {
        await meta.end({ timeout: 1 });
      }
    }
  }

  async *#run(): AsyncGenerator<SourceBatch> {
    const settings = this.#settings;
    const { meta, db, catalog, events } = await this.#open();
    if (this.#closed) return; // stopped while connecting: open nothing more
    const replication = this.#replication = new ReplicationConnection(
      settings.url,
      settings.applicationName,
    );
    await this.#ownSlot(replication, meta);
    if (this.#closed) return; // stopped while taking the slot: the connection is closed
    // Only the slot's owner reports its lag: standbys would repeat the figure.
    this.#lagPolling = pollSlotLag(
      meta,
      settings.slot,
      this.#metrics,
      settings.lagPollIntervalMs ?? 0,
      this.#logger,
    );
    const { newlyPublished, generated } = await preparePublication(
      meta,
      settings.publication,
      settings.autocreate,
      settings.filter,
      this.#logger,
    );
    this.#generatedWarned = new Set(generated);
    await this.#checkSignalTable(meta);
    const slot = await this.#existingSlot(meta, db);
    const stored = this.#stored;
    const mode = settings.snapshotMode;
    if (mode === "initial_only" && stored) {
      this.#logger.info(
        "The initial snapshot was taken already (snapshot.mode initial_only); nothing to do",
      );
      return;
    }
    if (this.#closed) return; // stopped meanwhile: open nothing more
    const gap = offsetGap(stored, slot, settings.dropSlotOnStop);
    let start: bigint;
    if (snapshotNeeded(mode, stored, slot, gap)) {
      if (gap) {
        this.#logger.warn(
          `${describeGap(settings.slot, gap)}: taking a new snapshot (snapshot.mode when_needed)`,
        );
      }
      start = yield* this.#snapshot(meta, replication, slot, catalog, events);
      if (mode === "initial_only" || this.#signal.aborted) return;
    } else {
      if (gap) this.#onOffsetGap(gap);
      // Without a stored offset, snapshot.mode never asked for no copy at all.
      if (stored) this.#warnOfUncopiedRows(newlyPublished);
      start = await this.#resumeSlot(meta, replication, slot);
    }
    this.#acked = this.#reached.lsn;
    this.#lastOffsetLsn = this.#reached.lsn;

    const stream = this.#stream = await replication.start(
      settings.slot,
      settings.publication,
      start,
    );
    this.#logger.info("Streaming from slot {slot} at {lsn}", {
      slot: settings.slot,
      // A slot made just now starts at its consistent point, not at 0/0.
      lsn: formatLsn(maxLsn(maxLsn(start, slot?.confirmedFlush ?? 0n), this.#reached.lsn)),
    });
    this.#statusTimer = setInterval(() => this.#sendStatus(true), settings.statusIntervalMs);
    yield* this.#stream_(stream, catalog, events);
  }

  /**
   * Makes this run the slot's one owner in the group: an advisory lock keyed
   * on the slot's name, taken on the replication connection itself, so it
   * is released exactly when the walsender ends. Another process holding it
   * puts this run on standby (a StandbyError), before anything is touched.
   */
  async #ownSlot(replication: ReplicationConnection, meta: Sql): Promise<void> {
    const slot = this.#settings.slot;
    const key = await advisoryLockKey(`sluice slot ${slot}`);
    if (await replication.tryLock(key)) {
      this.#owner = true;
      // The offset this run was given was read before the lock: the owner
      // it takes over from may have stored (and the slot confirmed) more
      // since, which the stale read would take for a gap.
      if (this.#settings.readOffset) {
        this.#stored = parsePosition(await this.#settings.readOffset());
      }
      this.#settings.claimed?.(`slot ${slot}`);
      return;
    }
    const holder = await meta<{ pid: number; client: string | null; app: string }[]>`
      select a.pid, a.client_addr::text || ':' || a.client_port as client,
             a.application_name as app
      from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.granted and l.objsubid = 1
        and ((l.classid::bigint << 32) | l.objid::bigint) = ${key}::bigint`;
    const who = holder[0]
      ? `${holder[0].app} (walsender pid ${holder[0].pid}${
        holder[0].client ? ` for ${holder[0].client}` : ""
      })`
      : "another worker";
    throw new StandbyError(
      `replication slot "${slot}" is owned by ${who}`,
      this.#settings.standbyRetryMs,
    );
  }

  /** The metadata connection and the catalog that turns changes into events. */
  async #open(): Promise<{ meta: Sql; db: string; catalog: Tables; events: EventOptions }> {
    const settings = this.#settings;
    const meta = this.#meta = connect(settings.url, {
      max: 1,
      applicationName: settings.applicationName,
      connection: { ...TEXT_SETTINGS },
    });
    const [{ db }] = await meta<{ db: string }[]>`select current_database() as db`;
    const events: EventOptions = { ...settings.events, database: db };
    const catalog = new Tables(
      meta,
      new ValueDecoders(meta, settings.decimal, settings.time, settings.interval),
      events,
    );
    return { meta, db, catalog, events };
  }

  /** The slot when it exists, after checking it is a pgoutput slot of this database. */
  async #existingSlot(meta: Sql, db: string): Promise<SlotInfo | undefined> {
    const name = this.#settings.slot;
    const slot = await inspectSlot(meta, name);
    if (slot && slot.database !== db) {
      throw new Error(
        `Replication slot "${name}" belongs to database "${slot.database}", not "${db}"; choose another slot.name`,
      );
    }
    if (slot && slot.plugin !== "pgoutput") {
      throw new Error(
        `Replication slot "${name}" uses plugin "${slot.plugin}"; postgres_cdc needs a pgoutput slot: drop it or choose another slot.name`,
      );
    }
    return slot;
  }

  /**
   * Creates the slot anew with an exported snapshot, yields the captured
   * tables as of that snapshot, and returns the LSN to stream from.
   */
  async *#snapshot(
    meta: Sql,
    replication: ReplicationConnection,
    slot: SlotInfo | undefined,
    catalog: Tables,
    events: EventOptions,
  ): AsyncGenerator<SourceBatch, bigint> {
    const settings = this.#settings;
    if (slot) {
      this.#logger.info("Dropping slot {slot} to take a consistent snapshot", {
        slot: settings.slot,
      });
      await dropSlot(meta, settings.slot);
    }
    const created = await whileSlotWaits(
      meta,
      settings.slot,
      this.#logger,
      () => replication.createSlot(settings.slot, true),
    );
    this.#logger.info("Created slot {slot} at {lsn}; taking a snapshot", {
      slot: settings.slot,
      lsn: formatLsn(created.consistentPoint),
    });
    // Parents first: a target with the source's foreign keys takes each table's rows.
    const tables = await parentsFirst(meta, await publishedTables(meta, settings.publication));
    for await (
      const records of readSnapshot({
        url: settings.url,
        applicationName: settings.applicationName,
        snapshotName: created.snapshotName!,
        consistentPoint: created.consistentPoint,
        tables,
        catalog,
        events,
        batchSize: settings.maxBatchSize,
        batchBytes: settings.maxBatchBytes,
        logger: this.#logger,
      })
    ) {
      yield { records };
      if (this.#signal.aborted) return created.consistentPoint;
    }
    this.#reached = { lsn: created.consistentPoint, txId: null };
    yield this.#batch([]);
    return created.consistentPoint;
  }

  /**
   * Tables that start to be streamed now, without a snapshot (added to the
   * publication at this start, typically created since the last one): their
   * rows written before were never streamed, and streaming does not copy
   * them. Copying them while the stream runs would need a snapshot
   * consistent with the slot's position, which only a new slot gives.
   */
  #warnOfUncopiedRows(tables: readonly TableRef[]): void {
    if (tables.length === 0) return;
    this.#logger.warn(
      "{tables} start to be streamed now (added to publication {publication}) without a snapshot: their rows written before this start are not copied, only changes from now on. To copy them, send an execute-snapshot signal (signal.data.collection, see the README), take a new snapshot (stop the pipeline, sluice offsets reset … --to-earliest, start it with snapshot.mode initial or when_needed), or copy them once with a batch job (postgres_query)",
      {
        tables: tables.map((t) => `${t.schema}.${t.table}`).join(", "),
        publication: this.#settings.publication,
      },
    );
  }

  /**
   * The changes between the stored offset and the slot's position cannot be
   * read again: with `offset.mismatch.strategy` trust_offset the start
   * stops, naming the ways out; otherwise it goes on with a warning.
   */
  #onOffsetGap(gap: OffsetGap): void {
    const said = describeGap(this.#settings.slot, gap);
    if (!this.#settings.trustOffset) {
      this.#logger.warn(`${said}; streaming on from the slot (offset.mismatch.strategy)`);
      return;
    }
    // Without a slot there is no confirmed position to reset to: a stored
    // offset of any kind would leave the same gap at the next start.
    const accept = gap.confirmed === undefined
      ? "To accept the gap: offset.mismatch.strategy trust_slot, or --to-earliest with snapshot.mode never. "
      : "To accept the gap: --to-latest, or offset.mismatch.strategy trust_slot. ";
    throw new Error(
      `${said}. Something other than this pipeline consumed the slot (another process or tool on slot.name, a slot made anew, offsets restored from a backup). ` +
        "To copy everything again: sluice offsets reset <configs> <pipeline> --to-earliest (a new snapshot), or snapshot.mode when_needed. " +
        accept +
        "Processes of one group keep their offsets where all of them read them (the postgres sink, or --cluster-url)",
    );
  }

  /** Streams on from the stored offset (creating the slot when missing); returns the start LSN. */
  async #resumeSlot(
    meta: Sql,
    replication: ReplicationConnection,
    slot: SlotInfo | undefined,
  ): Promise<bigint> {
    const settings = this.#settings;
    const stored = this.#stored;
    if (!slot) {
      if (stored && settings.dropSlotOnStop) {
        this.#logger.warn(
          "Replication slot {slot} is missing (slot.drop.on.stop drops it at every stop); changes made since {lsn} are not streamed (snapshot.mode when_needed would take a new snapshot)",
          { slot: settings.slot, lsn: formatLsn(stored.lsn) },
        );
      }
      const created = await whileSlotWaits(
        meta,
        settings.slot,
        this.#logger,
        () => replication.createSlot(settings.slot, false),
      );
      this.#logger.info("Created slot {slot} at {lsn}", {
        slot: settings.slot,
        lsn: formatLsn(created.consistentPoint),
      });
      // Nothing before the new slot's consistent point will arrive (an
      // offset stored before it is a gap that was accepted).
      this.#reached = stored && stored.lsn >= created.consistentPoint
        ? { lsn: stored.lsn, txId: stored.txId }
        : { lsn: created.consistentPoint, txId: null };
    } else {
      this.#reached = stored
        ? { lsn: stored.lsn, txId: stored.txId }
        : { lsn: slot.confirmedFlush ?? 0n, txId: null };
    }
    return stored?.lsn ?? 0n;
  }

  /**
   * Turns the replication stream into batches: a batch is handed over when
   * it is full or when its first event waited `poll.interval.ms`; an idle
   * stream runs the heartbeat and persists its position.
   */
  async *#stream_(
    stream: ReplicationStream,
    catalog: Tables,
    events: EventOptions,
  ): AsyncGenerator<SourceBatch> {
    const settings = this.#settings;
    const tracker = new TransactionTracker(this.#stored);
    const batch = new PendingBatch();
    const heartbeat = settings.heartbeatIntervalMs;
    let nextHeartbeat = heartbeat > 0 ? Date.now() + heartbeat : Infinity;
    let nextIdleSave = Date.now() + settings.statusIntervalMs;
    const take = () => this.#batch(batch.take(), tracker.offset(this.#reached));

    for (;;) {
      if (this.#signal.aborted) return;
      const bytes = stream.poll();
      if (bytes) {
        // Synchronous but for Relation messages: an await per frame cost
        // a promise and a microtask, three times per change event.
        const waiting = this.#onFrame(bytes, tracker, batch, catalog, events);
        if (waiting) await waiting;
        if (this.#pendingSignal) yield* this.#onSignal(tracker, batch, catalog, events);
        if (this.#full(batch, tracker)) yield take();
        continue;
      }
      const now = Date.now();
      // A batch waits out poll.interval.ms for more changes, and for the rest
      // of a transaction that has begun to arrive (see #full).
      const due = batch.size > 0 && !tracker.inTransaction;
      if (due && now - batch.firstAt >= settings.pollIntervalMs) {
        yield take();
        continue;
      }
      if (stream.ended) {
        throw new RetriableError(
          `The replication stream of slot "${settings.slot}" ended${
            stream.error ? `: ${stream.error.message}` : ""
          }`,
          { cause: stream.error },
        );
      }
      if (now >= nextHeartbeat) {
        nextHeartbeat = now + heartbeat;
        const skipped = tracker.takeSkipped();
        if (skipped > 0) this.#logger.debug("Skipped {skipped} re-delivered changes", { skipped });
        await this.#runHeartbeatQuery();
        nextIdleSave = 0; // store the position it may have moved
        continue;
      }
      if (now >= nextIdleSave || this.#replyRequested) {
        nextIdleSave = now + settings.statusIntervalMs;
        this.#replyRequested = false;
        // Store the position of an idle (or filtered) stream: the slot
        // confirms it once stored, and may then free the WAL before it.
        if (batch.size === 0 && this.#idle() && this.#reached.lsn > this.#lastOffsetLsn) {
          yield take();
          continue;
        }
      }
      const until = Math.min(
        due ? batch.firstAt + settings.pollIntervalMs : Infinity,
        nextHeartbeat,
        nextIdleSave,
        now + 1000,
      );
      await stream.wait(until - now, this.#signal);
    }
  }

  /**
   * Whether the batch is handed over now. A full batch waits for the end of
   * the transaction it is in, up to {@linkcode TRANSACTION_STRETCH} times
   * max.batch.size (max.batch.bytes still bounds it): a transaction then
   * lands in one target transaction, so a deferred key at the target holds
   * and no reader sees half of it.
   */
  #full(batch: PendingBatch, tracker: TransactionTracker): boolean {
    const { maxBatchSize, maxBatchBytes } = this.#settings;
    if (batch.bytes >= maxBatchBytes || batch.size >= maxBatchSize * TRANSACTION_STRETCH) {
      return true;
    }
    return batch.size >= maxBatchSize && !tracker.inTransaction;
  }

  /**
   * Applies one frame: a message of a transaction, or a keepalive. Returns a
   * promise only when the frame needs a catalog lookup (a Relation message).
   */
  #onFrame(
    frame: Uint8Array,
    tracker: TransactionTracker,
    batch: PendingBatch,
    catalog: Tables,
    events: EventOptions,
  ): Promise<unknown> | undefined {
    if (frame[0] === 0x6b) { // k: keepalive
      if (!tracker.inTransaction) {
        this.#reached = {
          lsn: maxLsn(this.#reached.lsn, keepaliveWalEnd(frame)),
          txId: this.#reached.txId,
        };
      }
      if (frame[17] === 1) this.#replyRequested = true;
      this.#sendStatus(frame[17] === 1);
      return;
    }
    if (frame[0] !== 0x77) return; // not XLogData
    const message = decodeXLogMessage(frame);
    switch (message.type) {
      case "relation": {
        // Only a Relation message waits (for catalog lookups).
        const before = catalog.get(message.relation.oid);
        return catalog.define(message.relation).then((after) => {
          this.#warnOfGoneColumns(before, after);
          // A new shape of a captured table may have a generated column since.
          if (before && after.captured) return this.#warnOfNewGeneratedColumns(after);
        });
      }
      case "begin":
        tracker.begin(message);
        return;
      case "commit":
        this.#reached = tracker.commit(message);
        return;
      case "insert":
      case "update":
      case "delete": {
        const position = tracker.change(xlogWalStart(frame));
        if (!position) return;
        const info = catalog.get(message.relationOid);
        if (!info) {
          throw new Error(
            `Change for relation ${message.relationOid} arrived before its description`,
          );
        }
        if (message.type === "insert" && this.#isSignalTable(info)) {
          const records: SluiceRecord[] = [];
          if (info.captured) changeRecords(info, message, position, events, records);
          this.#pendingSignal = {
            signal: parseSignal(rowOf(info, message.tuple)),
            commitLsn: position.commitLsn,
            records,
          };
          return;
        }
        if (info.captured) changeRecords(info, message, position, events, batch.records);
        batch.added(frame.length);
        this.#buffered = batch.size;
        return;
      }
      case "truncate": {
        const position = tracker.change(xlogWalStart(frame));
        if (!position) return;
        for (const oid of message.relationOids) {
          const info = catalog.get(oid);
          if (!info) throw new Error(`Change for relation ${oid} arrived before its description`);
          if (info.captured) changeRecords(info, message, position, events, batch.records);
        }
        batch.added();
        this.#buffered = batch.size;
        return;
      }
    }
  }

  /** Signals written to a table the publication leaves out never arrive: say so at start. */
  async #checkSignalTable(meta: Sql): Promise<void> {
    const name = this.#settings.signalTable;
    if (name === undefined) return;
    const published = await publishedTables(meta, this.#settings.publication);
    if (published.some((t) => `${t.schema}.${t.table}` === name)) return;
    this.#logger.warn(
      "The signal table {table} (signal.data.collection) is not in publication {publication}: signals written there will not be seen. Create it (columns id, type, data) and restart, or add it to the publication",
      { table: name, publication: this.#settings.publication },
    );
  }

  #isSignalTable(info: TableInfo): boolean {
    const name = this.#settings.signalTable;
    return name !== undefined && `${info.relation.schema}.${info.relation.table}` === name;
  }

  /**
   * Acts on the signal just read, before any change after it is handed
   * over. A snapshot's batches carry the offset of the changes before the
   * signal, so a restart in the middle reads the signal again and takes the
   * snapshot again; its records carry the signal transaction's commit LSN,
   * so changes streamed after them (that transaction's later ones
   * included) are never older than them for a sink's position guard.
   */
  async *#onSignal(
    tracker: TransactionTracker,
    batch: PendingBatch,
    catalog: Tables,
    events: EventOptions,
  ): AsyncGenerator<SourceBatch> {
    const { signal, commitLsn, records } = this.#pendingSignal!;
    this.#pendingSignal = undefined;
    const refuse = (reason: string) =>
      this.#logger.error("Signal {id} refused, nothing done: {reason}", { id: signal.id, reason });
    if (signal.kind === "log") {
      this.#logger.info("Signal {id}: {message}", { id: signal.id, message: signal.message });
    } else if (signal.kind === "refused") {
      refuse(signal.reason);
    } else {
      let tables: TableRef[] | undefined;
      try {
        const published = await publishedTables(this.#meta!, this.#settings.publication);
        const captured = published.filter((t) => this.#settings.filter.table(t.schema, t.table));
        tables = await parentsFirst(this.#meta!, signalTables(signal.collections, captured));
      } catch (error) {
        refuse((error as Error).message);
      }
      if (tables) {
        const before = tracker.offset(this.#reached, true);
        if (batch.size > 0) yield this.#batch(batch.take(), before);
        this.#logger.info(
          "Signal {id}: snapshot of {tables} while the stream waits at {lsn}{note}",
          {
            id: signal.id,
            tables: tables.map((t) => `${t.schema}.${t.table}`).join(", "),
            lsn: formatLsn(commitLsn),
            note: signal.type === "incremental"
              ? " (asked as incremental: Sluice takes it as a blocking snapshot)"
              : "",
          },
        );
        let rows = 0;
        try {
          for await (
            const chunk of readSnapshot({
              url: this.#settings.url,
              applicationName: this.#settings.applicationName,
              consistentPoint: commitLsn,
              tables,
              catalog,
              events,
              batchSize: this.#settings.maxBatchSize,
              batchBytes: this.#settings.maxBatchBytes,
              logger: this.#logger,
            })
          ) {
            rows += chunk.length;
            yield this.#batch(chunk, before);
            if (this.#signal.aborted) return;
          }
        } catch (error) {
          // A lost connection takes the snapshot again after the restart. A
          // table that cannot be read (dropped since, no privilege) would
          // fail the same way at every restart and hold the stream forever:
          // the signal fails instead, loudly, and the stream goes on.
          if (isConnectionError(error) || this.#signal.aborted) throw error;
          this.#logger.error(
            "Signal {id}: the snapshot failed after {rows} rows and is abandoned (the target holds those rows, not the rest): {error}. Fix the cause and send the signal again",
            { id: signal.id, rows, error: (error as Error).message },
          );
        }
      }
    }
    batch.records.push(...records);
    batch.added();
    this.#buffered = batch.size;
  }

  #batch(records: SluiceRecord[], offset?: JsonValue): SourceBatch {
    const position = offset ?? {
      lsn: formatLsn(this.#reached.lsn),
      txId: this.#reached.txId,
    };
    this.#yielded++;
    this.#buffered = 0;
    this.#lastOffsetLsn = this.#reached.lsn;
    return { records, offset: position };
  }

  /**
   * A captured column that a new shape of its table no longer has was
   * dropped or renamed. Nothing in the stream says which, and the target's
   * column keeps its values (a renamed column's new name fills only as rows
   * change): say so once, with what repairs it.
   */
  #warnOfGoneColumns(before: TableInfo | undefined, after: TableInfo): void {
    if (!before?.captured || !after.captured) return;
    const now = new Set(after.fields.map((field) => field.name));
    const gone = before.fields.map((field) => field.name).filter((name) => !now.has(name));
    if (gone.length === 0) return;
    this.#logger.warn(
      "Columns {columns} of {table} are gone from the source (dropped or renamed): the target keeps " +
        "their last values, and a renamed column gets values only as rows change. Re-sync the table " +
        "(a batch job with --full-refresh, or a reconcile job with repair) to make it whole",
      {
        columns: gone.join(", "),
        table: `${after.relation.schema}.${after.relation.table}`,
      },
    );
  }

  /** Generated columns named in a warning already (`schema.table.column`). */
  #generatedWarned = new Set<string>();

  /** Warns of generated columns added to a captured table while it streams. */
  async #warnOfNewGeneratedColumns(info: TableInfo): Promise<void> {
    if (!this.#meta) return;
    const now = await warnOfGeneratedColumns(
      this.#meta,
      [info.relation.oid],
      this.#logger,
      this.#generatedWarned,
    ).catch(() => new Set<string>()); // a warning is not worth failing the stream for
    for (const name of now) this.#generatedWarned.add(name);
  }

  /** Every yielded batch was committed and nothing waits in the buffer. */
  #idle(): boolean {
    return this.#yielded === this.#committed && this.#buffered === 0;
  }

  #sendStatus(force: boolean): void {
    const stream = this.#stream;
    if (!stream) return;
    const flush = this.#acked;
    if (!force && flush <= this.#lastSentFlush) return;
    this.#lastSentFlush = maxLsn(this.#lastSentFlush, flush);
    stream.sendStatus(flush);
  }

  async #runHeartbeatQuery(): Promise<void> {
    const query = this.#settings.heartbeatQuery;
    if (!query || !this.#meta) return;
    try {
      await this.#meta.unsafe(query);
    } catch (error) {
      if (isConnectionError(error)) throw error;
      this.#logger.warn("heartbeat.action.query failed: {error}", {
        error: (error as Error).message,
      });
    }
  }
}

/** Changes this pipeline can no longer read: the slot moved past the stored offset, or is gone. */
type OffsetGap =
  | { readonly stored: bigint; readonly confirmed: bigint }
  | { readonly stored: bigint; readonly confirmed?: undefined };

/**
 * The gap between the stored offset and the slot, if any. The slot confirms
 * only positions stored durably (see `#sendStatus`), so a slot ahead of the
 * stored offset was moved by something else. A slot the pipeline drops at
 * every stop (`slot.drop.on.stop`) is expected to be gone.
 */
function offsetGap(
  stored: Position | undefined,
  slot: SlotInfo | undefined,
  dropsSlot: boolean,
): OffsetGap | undefined {
  if (!stored) return undefined;
  if (!slot) return dropsSlot ? undefined : { stored: stored.lsn };
  const confirmed = slot.confirmedFlush;
  return confirmed !== null && confirmed > stored.lsn
    ? { stored: stored.lsn, confirmed }
    : undefined;
}

function describeGap(slot: string, gap: OffsetGap): string {
  return gap.confirmed === undefined
    ? `Replication slot "${slot}" is missing although an offset is stored (${
      formatLsn(gap.stored)
    }): the changes made since then are lost to this pipeline`
    : `Replication slot "${slot}" has confirmed ${
      formatLsn(gap.confirmed)
    }, past the stored offset ${
      formatLsn(gap.stored)
    }: the changes in between are lost to this pipeline`;
}

/** Whether this start takes a snapshot (`snapshot.mode`). */
function snapshotNeeded(
  mode: CaptureSettings["snapshotMode"],
  stored: Position | undefined,
  slot: SlotInfo | undefined,
  gap: OffsetGap | undefined,
): boolean {
  if (mode === "initial" || mode === "initial_only") return !stored;
  if (mode === "when_needed") return !stored || !slot || gap !== undefined;
  return false;
}

/**
 * Follows the transactions of the stream: which change messages were
 * delivered before a restart (skipped), and the position to store with a
 * batch, including how far into an open transaction it reaches.
 */
class TransactionTracker {
  readonly #skipBefore: bigint;
  #partial: Position["partial"];
  #tx: Transaction | undefined;
  #skipped = 0;

  constructor(stored: Position | undefined) {
    this.#skipBefore = stored?.lsn ?? 0n;
    this.#partial = stored?.partial;
  }

  get inTransaction(): boolean {
    return this.#tx !== undefined;
  }

  begin(message: { finalLsn: bigint; xid: number; commitTime: bigint }): void {
    const partial = this.#partial;
    this.#tx = {
      finalLsn: message.finalLsn,
      xid: message.xid,
      micros: message.commitTime + PG_EPOCH_MICROS,
      changes: 0,
      skipAll: message.finalLsn < this.#skipBefore,
      skipFirst: partial && partial.commitLsn === message.finalLsn ? partial.events : 0,
    };
  }

  /** Ends the transaction; returns the position every delivered change is before. */
  commit(message: { endLsn: bigint }): { lsn: bigint; txId: number | null } {
    const tx = this.#tx;
    if (tx && tx.skipFirst > 0) this.#partial = undefined;
    if (tx && (tx.skipAll || tx.skipFirst > 0)) {
      this.#skipped += tx.skipAll ? tx.changes : Math.min(tx.changes, tx.skipFirst);
    }
    this.#tx = undefined;
    return { lsn: message.endLsn, txId: tx?.xid ?? null };
  }

  /**
   * Counts a change message; its position, or undefined when it was
   * delivered already. The position is one object per transaction, updated
   * per change: it is read while the change's records are built, never kept.
   */
  change(walStart: bigint): ChangePosition | undefined {
    const tx = this.#tx;
    if (!tx) return undefined;
    tx.changes++;
    if (tx.skipAll || tx.changes <= tx.skipFirst) return undefined;
    const position = tx.position ??= {
      commitLsn: tx.finalLsn,
      lsn: walStart,
      txId: tx.xid,
      micros: tx.micros,
      snapshot: "false",
    };
    position.lsn = walStart;
    return position;
  }

  /**
   * The offset of everything handed over so far, given the last commit
   * reached; with `withoutCurrent`, the change counted last is left out (it
   * is delivered again after a restart).
   */
  offset(reached: { lsn: bigint; txId: number | null }, withoutCurrent = false): JsonValue {
    const offset: Record<string, JsonValue> = {
      lsn: formatLsn(reached.lsn),
      txId: reached.txId,
    };
    const tx = this.#tx;
    if (tx) {
      const events = withoutCurrent ? tx.changes - 1 : tx.changes;
      offset.partial = { commitLsn: formatLsn(tx.finalLsn), txId: tx.xid, events };
    }
    return offset;
  }

  /** Re-delivered changes skipped since the last call. */
  takeSkipped(): number {
    const skipped = this.#skipped;
    this.#skipped = 0;
    return skipped;
  }
}

/** The events gathered for the next batch, and when the first of them arrived. */
class PendingBatch {
  /** Where change records are appended; call {@linkcode added} after. */
  records: SluiceRecord[] = [];
  firstAt = 0;
  /** pgoutput bytes of the changes in {@linkcode records} (`max.batch.bytes`). */
  bytes = 0;
  #counted = 0;

  get size(): number {
    return this.records.length;
  }

  /** Notes records appended to {@linkcode records}, decoded from `bytes` of pgoutput. */
  added(bytes = 0): void {
    this.bytes += bytes;
    if (this.#counted === 0 && this.records.length > 0) this.firstAt = Date.now();
    this.#counted = this.records.length;
  }

  take(): SluiceRecord[] {
    const records = this.records;
    this.records = [];
    this.#counted = 0;
    this.bytes = 0;
    return records;
  }
}

/** Connection faults become RetriableError so the runtime restarts from the committed offset. */
function classify(error: unknown, where: string): unknown {
  if (error instanceof RetriableError) return error;
  const code = (error as { code?: string })?.code;
  // 55006: the slot is in use by another process (another worker owns it).
  if (isConnectionError(error) || code === "55006" || code === "53300") {
    return new RetriableError(
      `Change capture from the source database ${where} interrupted: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (isLoginError(error)) {
    return new Error(
      `Cannot connect to the source database ${where}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  // 53400: "all replication slots are in use".
  if (code === "53400" && /replication slot/.test((error as Error).message)) {
    return new Error(
      `Cannot create a replication slot on the source database ${where}: ${
        (error as Error).message
      }. Raise max_replication_slots on that server (it needs a restart), or drop the slots ` +
        `nothing uses any more (select slot_name, active from pg_replication_slots; ` +
        `select pg_drop_replication_slot('<name>'))`,
      { cause: error },
    );
  }
  return error;
}
