/**
 * The value codec of `drivers/pg_codec.ts`: PostgreSQL text → Sluice values
 * by column type and back, including what the JSON edge encoded (base64
 * bytea, Debezium's day numbers) and the change position of an envelope.
 */
import postgres from "postgres";
import { assertEquals, assertMatch } from "../_assert.ts";
import { testPgUrl } from "../_services.ts";
import {
  changePosition,
  type ColumnType,
  PgCodec,
  type ValueModes,
} from "../../drivers/pg_codec.ts";
import { decodeBase64, decodeBytea, encodeBytea } from "../../drivers/pg_text.ts";

const BYTEA = 17, FLOAT8 = 701, INT4_ARRAY = 1007, BYTEA_ARRAY = 1001, DATE = 1082;
const PG_LSN = 3220, TEXT = 25;

async function withCodec<T>(
  modes: Partial<ValueModes>,
  fn: (codec: PgCodec) => Promise<T>,
): Promise<T> {
  const sql = postgres(testPgUrl(), { max: 1, onnotice: () => {} });
  try {
    return await fn(new PgCodec(sql, modes));
  } finally {
    await sql.end();
  }
}

const column = (typeOid: number): ColumnType => ({ typeOid });

Deno.test("bytea decodes from hex and escape output and encodes back as hex", () => {
  assertEquals(decodeBytea("\\x00010203fffe"), Uint8Array.from([0, 1, 2, 3, 255, 254]));
  assertEquals(decodeBytea("\\x"), new Uint8Array());
  assertEquals(decodeBytea("a\\\\b\\000\\377"), Uint8Array.from([97, 92, 98, 0, 255]));
  assertEquals(encodeBytea(Uint8Array.from([0x5c, 0x27])), "\\x5c27");
});

Deno.test("base64 decodes in both alphabets and other text is refused with the value quoted", () => {
  assertEquals(decodeBase64("AAECA//+"), Uint8Array.from([0, 1, 2, 3, 255, 254]));
  assertEquals(decodeBase64("AAECA__-"), Uint8Array.from([0, 1, 2, 3, 255, 254]));
  assertEquals(decodeBase64(""), new Uint8Array());
  let message = "";
  try {
    decodeBase64("not base64!");
  } catch (error) {
    message = (error as Error).message;
  }
  assertMatch(message, /"not base64!" is neither base64 nor bytea hex text/);
});

Deno.test("decoders keep float -0, NaN and arrays with explicit bounds exactly", async () => {
  const decoded = await withCodec({}, async (codec) => {
    const [float, ints, bytes] = await codec.decoders(
      [column(FLOAT8), column(INT4_ARRAY), column(BYTEA_ARRAY)],
    );
    return [
      float("-0"),
      float("NaN"),
      float("0"),
      float("1.5"),
      ints("{1,NULL}"),
      ints("[0:1]={7,8}"),
      bytes('{"\\\\x00",NULL}'),
    ];
  });
  assertEquals(decoded, ["-0", "NaN", 0, 1.5, [1, null], "[0:1]={7,8}", [
    Uint8Array.from([0]),
    null,
  ]]);
});

Deno.test("binary.handling.mode base64 gives bytea as base64 text at once", async () => {
  const decode = (binary: ValueModes["binary"]) =>
    withCodec({ binary }, async (codec) => {
      const [decoder] = await codec.decoders([column(BYTEA)]);
      return decoder("\\x00010203fffe");
    });
  assertEquals(await decode("base64"), "AAECA//+");
  assertEquals(await decode("base64-url-safe"), "AAECA__-");
  assertEquals(await decode("bytes"), Uint8Array.from([0, 1, 2, 3, 255, 254]));
});

Deno.test("adaptive timestamps past 2^53 µs are exact decimal strings, not rounded numbers", async () => {
  const TIMESTAMP = 1114;
  const decode = (time: ValueModes["time"], modifier: number, text: string) =>
    withCodec({ time }, async (codec) => {
      const [decoder] = await codec.decoders([{ typeOid: TIMESTAMP, typeModifier: modifier }]);
      return decoder(text);
    });
  // The 9999-12-31 sentinel of slowly changing dimensions: a double would say 253402300800000000.
  assertEquals(await decode("adaptive", -1, "9999-12-31 23:59:59.999999"), "253402300799999999");
  assertEquals(await decode("adaptive", 3, "9999-12-31 23:59:59.999"), 253402300799999);
  assertEquals(await decode("connect", -1, "9999-12-31 23:59:59.999999"), 253402300799999);
  // Figures from PostgreSQL: extract(epoch from …) * 1e6.
  assertEquals(await decode("adaptive", -1, "1000-01-01 00:00:00.000001 BC"), "-93692591999999999");
  assertEquals(await decode("adaptive", -1, "2024-05-01 12:00:00.5"), 1714564800500000);
});

Deno.test("encoders decode by the target column's type what the JSON edge encoded", async () => {
  const encoded = await withCodec({}, async (codec) => {
    const [bytea, byteaArray, date, lsn, text] = await codec.encoders(
      [BYTEA, BYTEA_ARRAY, DATE, PG_LSN, TEXT].map(column),
    );
    return [
      bytea(Uint8Array.from([0, 1])),
      bytea("AAECA//+"),
      bytea("\\x5c27"),
      bytea(null),
      byteaArray(["AA==", null, "XCc="]),
      date(19782),
      date(-2440588),
      date("2024-02-29"),
      lsn(0x16B3748n),
      text("AAECA//+"),
      text(-0),
    ];
  });
  assertEquals(encoded, [
    "\\x0001",
    "\\x00010203fffe",
    "\\x5c27",
    null,
    '{"\\\\x00",NULL,"\\\\x5c27"}',
    "2024-02-29",
    "4714-11-24 BC",
    "2024-02-29",
    "0/16B3748",
    "AAECA//+",
    "-0",
  ]);
});

Deno.test("a change event's position is its commit LSN, else its lsn", () => {
  assertEquals(changePosition({ sequence: '["24023928","24023960"]', lsn: 24023960 }), 24023928n);
  assertEquals(changePosition({ sequence: '[null,"24023960"]', lsn: 24023960 }), 24023960n);
  assertEquals(changePosition({ lsn: "77" }), 77n);
  assertEquals(changePosition({ lsn: -1 }), undefined);
  assertEquals(changePosition(null), undefined);
});
