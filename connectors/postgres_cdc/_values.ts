/**
 * How a column's text (from pgoutput or from the snapshot's COPY) becomes
 * the value a change event carries: the shared codec of
 * `drivers/pg_codec.ts`, with the connector's `decimal.handling.mode`,
 * `time.precision.mode` and `binary.handling.mode`.
 *
 * The replication and snapshot sessions run with TimeZone UTC, DateStyle ISO
 * and IntervalStyle postgres, so the text the codec sees is stable.
 *
 * @module
 */
import type { Sql } from "../../drivers/postgres.ts";
import type { Decoder } from "../../drivers/pg_text.ts";
import {
  type BinaryMode,
  type ColumnType,
  type DecimalMode,
  PgCodec,
  type TimeMode,
} from "../../drivers/pg_codec.ts";

export type { BinaryMode, ColumnType, DecimalMode, TimeMode };

/**
 * `interval.handling.mode`: how an interval travels in a typed format
 * (Connect JSON with schemas, Avro): numeric, Debezium's MicroDuration
 * microseconds (a month counts 30.4375 days, so months and days are not
 * kept as such); string, Debezium's `io.debezium.time.Interval`, ISO 8601
 * (`P1Y2M3DT4H5M6.789S`), exact.
 */
export type IntervalMode = "numeric" | "string";

/** Builds decoders for column types, looking arrays and domains up in `pg_type` once. */
export class ValueDecoders {
  readonly #codec: PgCodec;
  /** The modes the values follow (they decide the events' Connect schemas). */
  readonly modes: {
    readonly decimal: DecimalMode;
    readonly time: TimeMode;
    readonly interval: IntervalMode;
  };

  constructor(
    sql: Sql,
    decimal: DecimalMode,
    time: TimeMode,
    interval: IntervalMode = "numeric",
    binary: BinaryMode = "bytes",
  ) {
    this.#codec = new PgCodec(sql, { decimal, time, binary });
    this.modes = { decimal, time, interval };
  }

  /** One decoder per column, in order. */
  for(columns: readonly ColumnType[]): Promise<Decoder[]> {
    return this.#codec.decoders(columns);
  }
}
