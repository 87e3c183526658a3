/**
 * `decimal.handling.mode` and `time.precision.mode` of `postgres_cdc`: how a
 * column's text becomes an event value, and the pgoutput frame decoder.
 */
import postgres from "postgres";
import { assertEquals } from "../../_assert.ts";
import { testPgUrl } from "../../_services.ts";
import { type TimeMode, ValueDecoders } from "../../../connectors/postgres_cdc/_values.ts";
import { decodeFrame, standbyStatusUpdate } from "../../../connectors/postgres_cdc/_pgoutput.ts";
import { formatLsn, parseLsn } from "../../../connectors/postgres_cdc/_lsn.ts";

const NUMERIC = 1700,
  DATE = 1082,
  TIME = 1083,
  TIMESTAMP = 1114,
  TIMESTAMPTZ = 1184,
  TIMETZ = 1266,
  NUMERIC_ARRAY = 1231,
  INT4_ARRAY = 1007;

async function decode(
  mode: { decimal?: "precise" | "string" | "double"; time?: TimeMode },
  columns: [number, number, string][],
): Promise<unknown[]> {
  const sql = postgres(testPgUrl(), { max: 1, onnotice: () => {} });
  try {
    const decoders = await new ValueDecoders(
      sql,
      mode.decimal ?? "precise",
      mode.time ?? "isostring",
    )
      .for(columns.map(([typeOid, typeModifier]) => ({ typeOid, typeModifier })));
    return columns.map(([, , text], i) => decoders[i](text));
  } finally {
    await sql.end();
  }
}

Deno.test("decimal.handling.mode precise and string keep numeric text; double makes numbers", async () => {
  const columns: [number, number, string][] = [
    [NUMERIC, -1, "12345678901234567890.123456789"],
    [NUMERIC, -1, "NaN"],
    [NUMERIC_ARRAY, -1, "{1.50,NULL}"],
    [INT4_ARRAY, -1, "{{1,2},{3,NULL}}"],
  ];
  const precise = ["12345678901234567890.123456789", "NaN", ["1.50", null], [[1, 2], [3, null]]];
  assertEquals(await decode({ decimal: "precise" }, columns), precise);
  assertEquals(await decode({ decimal: "string" }, columns), precise);
  assertEquals(await decode({ decimal: "double" }, columns), [
    12345678901234567890.123456789,
    "NaN",
    [1.5, null],
    [[1, 2], [3, null]],
  ]);
});

Deno.test("time.precision.mode isostring keeps PostgreSQL's text; adaptive and connect use Debezium's encodings", async () => {
  const columns: [number, number, string][] = [
    [DATE, -1, "2024-02-29"],
    [DATE, -1, "infinity"],
    [TIME, -1, "10:11:12.123456"],
    [TIME, 3, "10:11:12.123"],
    [TIMESTAMP, -1, "2024-02-29 10:11:12.123456"],
    [TIMESTAMP, 3, "2024-02-29 10:11:12.123"],
    [TIMESTAMPTZ, -1, "2024-02-29 10:11:12.123456+00"],
    [TIMETZ, -1, "10:11:12.5+05:30"],
  ];
  const texts = columns.map(([, , text]) => text);
  assertEquals(await decode({ time: "isostring" }, columns), texts);
  const days = 19782; // 2024-02-29
  const micros = days * 86_400_000_000 + (10 * 3600 + 11 * 60 + 12) * 1_000_000 + 123456;
  assertEquals(await decode({ time: "adaptive" }, columns), [
    days,
    "infinity",
    (10 * 3600 + 11 * 60 + 12) * 1_000_000 + 123456,
    (10 * 3600 + 11 * 60 + 12) * 1000 + 123,
    micros,
    Math.floor(micros / 1000),
    "2024-02-29T10:11:12.123456Z",
    "04:41:12.5Z",
  ]);
  const connect = await decode({ time: "connect" }, columns);
  assertEquals(connect.slice(2, 6), [
    (10 * 3600 + 11 * 60 + 12) * 1000 + 123,
    (10 * 3600 + 11 * 60 + 12) * 1000 + 123,
    Math.floor(micros / 1000),
    Math.floor(micros / 1000),
  ]);
  const microseconds = await decode({ time: "adaptive_time_microseconds" }, columns);
  assertEquals(microseconds[3], (10 * 3600 + 11 * 60 + 12) * 1_000_000 + 123000);
});

Deno.test("pgoutput frames and LSNs decode and encode", () => {
  assertEquals(formatLsn(parseLsn("16/B374D848")), "16/B374D848");
  assertEquals(parseLsn("0/16B3748"), 0x16B3748n);
  // A keepalive asking for a reply.
  const keepalive = new Uint8Array(18);
  keepalive[0] = 0x6b;
  new DataView(keepalive.buffer).setBigUint64(1, 0x1234n);
  keepalive[17] = 1;
  assertEquals(decodeFrame(keepalive), {
    kind: "keepalive",
    walEnd: 0x1234n,
    replyRequested: true,
  });
  // A Begin message inside XLogData.
  const begin = new Uint8Array(25 + 21);
  const view = new DataView(begin.buffer);
  begin[0] = 0x77;
  view.setBigUint64(1, 100n);
  view.setBigUint64(9, 200n);
  begin[25] = 0x42; // B
  view.setBigUint64(26, 300n);
  view.setBigInt64(34, 5n);
  view.setUint32(42, 4000000000);
  assertEquals(decodeFrame(begin), {
    kind: "xlog",
    walStart: 100n,
    walEnd: 200n,
    message: { type: "begin", finalLsn: 300n, commitTime: 5n, xid: 4000000000 },
  });
  const status = standbyStatusUpdate(1n, 2n, 3n, true);
  const statusView = new DataView(status.buffer);
  assertEquals(
    [status[0], statusView.getBigUint64(1), statusView.getBigUint64(9), status[33]],
    [0x72, 1n, 2n, 1],
  );
});
