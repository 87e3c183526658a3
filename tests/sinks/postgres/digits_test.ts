/**
 * The postgres sink's check for values a column would round (`_digits.ts`),
 * as values and as COPY text; the writes themselves are tested against the
 * real PostgreSQL in `sink_test.ts` and `e2e/copy_text_test.ts`.
 */
import { assertEquals } from "../../_assert.ts";
import { copyTextKeepsDigits, digitLimit, keepsDigits } from "../../../sinks/postgres/_digits.ts";

Deno.test("only types whose modifier can drop digits have a limit", () => {
  assertEquals(digitLimit("numeric(6,2)")?.digits, 2);
  assertEquals(digitLimit("numeric(6,-2)")?.digits, -2);
  assertEquals(digitLimit("numeric(6,2)[]")?.array, true);
  assertEquals(digitLimit("timestamp(3) with time zone")?.loose, "timestamp with time zone");
  assertEquals(digitLimit("time(0) without time zone")?.digits, 0);
  assertEquals(digitLimit("interval day")?.loose, "interval");
  assertEquals(digitLimit("interval(2)")?.digits, 2);
  for (const type of ["numeric", "timestamp(6) with time zone", "timestamp without time zone"]) {
    assertEquals(digitLimit(type), undefined, type);
  }
  for (const type of ["interval", "integer", "text", "character varying", "character(3)"]) {
    assertEquals(digitLimit(type), undefined, type);
  }
  // Types that drop a time of day, binary digits, or trailing spaces.
  assertEquals(digitLimit("date")?.kind, "date");
  assertEquals(digitLimit("real[]")?.kind, "real");
  assertEquals(digitLimit("double precision")?.kind, "double");
  assertEquals(digitLimit("character varying(3)")?.digits, 3);
});

Deno.test("a varchar(n) refuses a value longer by trailing spaces alone, and leaves others to PostgreSQL", () => {
  const limit = digitLimit("character varying(3)")!;
  const fits = (value: unknown) => keepsDigits(limit, value);
  for (const value of ["abc", "ab ", "Ă¥ö", "abcd", "abc x", null, 42]) {
    assertEquals(fits(value), true, String(value));
  }
  for (const value of ["abc ", "a    ", "Ă¥ö  "]) assertEquals(fits(value), false, value);
  const array = digitLimit("character varying(3)[]")!;
  assertEquals(keepsDigits(array, ["abc", "ab"]), true);
  assertEquals(keepsDigits(array, ["abc", "ab   "]), false);
});

Deno.test("a numeric value fits when no non-zero digit lies past the scale", () => {
  const limit = digitLimit("numeric(8,2)")!;
  const fits = (value: unknown) => keepsDigits(limit, value);
  for (const value of [1, 1.2, "1.23", "1.2300", "-0.50", "12e-2", "1.5E1", null, "NaN", 0]) {
    assertEquals(fits(value), true, String(value));
  }
  for (const value of [1.234, "1.231", "-0.001", "1e-3", "1.2301", 0.1 + 0.2]) {
    assertEquals(fits(value), false, String(value));
  }
  const hundreds = digitLimit("numeric(6,-2)")!;
  assertEquals(keepsDigits(hundreds, 12300), true);
  assertEquals(keepsDigits(hundreds, "1.23e4"), true);
  assertEquals(keepsDigits(hundreds, 12345), false);
  assertEquals(keepsDigits(limit, [1.5, "2.25", null]), true);
  assertEquals(keepsDigits(limit, [1.5, ["2.255"]]), false);
  assertEquals(keepsDigits(digitLimit("numeric(8,2)[]")!, "{1.5,2.255}"), false);
  assertEquals(keepsDigits(digitLimit("numeric(8,2)[]")!, "{1.5,NULL,2.25}"), true);
});

Deno.test("a time value fits when its fraction of a second has no more digits than the precision", () => {
  const limit = digitLimit("timestamp(3) with time zone")!;
  const fits = (value: unknown) => keepsDigits(limit, value);
  for (
    const value of [
      "2026-12-01 10:00:00+00",
      "2026-12-01T10:00:00.123Z",
      "2026-12-01 10:00:00.123000+05:30",
      new Date("2026-12-01T10:00:00.123Z"),
      "infinity",
    ]
  ) {
    assertEquals(fits(value), true, String(value));
  }
  assertEquals(fits("2026-12-01 10:00:00.1234+00"), false);
  assertEquals(keepsDigits(digitLimit("time(0) without time zone")!, "10:00:00.7"), false);
  assertEquals(keepsDigits(digitLimit("interval(0)")!, "P1DT0.5S"), false);
  assertEquals(keepsDigits(digitLimit("interval(0)")!, "1 day 00:00:01"), true);
});

Deno.test("COPY text is checked field by field, nulls and unchecked fields aside", () => {
  const text = (lines: string[]) => new TextEncoder().encode(lines.join("\n") + "\n");
  const limits = new Map([
    [1, digitLimit("numeric(8,2)")!],
    [2, digitLimit("timestamp(0) with time zone")!],
  ]);
  const good = text([
    "1\t1.50\t2026-12-01 10:00:00+00\tx.123456",
    "2\t\\N\t\\N\ty",
    "3\t-12.3\t2026-12-01 10:00:01.000+00\t1.23456",
  ]);
  assertEquals(copyTextKeepsDigits(good, 4, limits), true);
  assertEquals(
    copyTextKeepsDigits(
      text(["1\t1.50\t2026-12-01 10:00:00+00\tx", "2\t1.505\t\\N\ty"]),
      4,
      limits,
    ),
    false,
  );
  assertEquals(
    copyTextKeepsDigits(text(["1\t1\t2026-12-01 10:00:00.7+00\tx"]), 4, limits),
    false,
  );
  // The last field of the line is checked too.
  const lastField = new Map([[1, digitLimit("numeric(8,2)")!]]);
  assertEquals(copyTextKeepsDigits(text(["1\t1.25", "2\t2.5"]), 2, lastField), true);
  assertEquals(copyTextKeepsDigits(text(["1\t1.25", "2\t2.555"]), 2, lastField), false);
});

Deno.test("a real or double column refuses only what it would not read back", () => {
  const real = digitLimit("real")!, double = digitLimit("double precision")!;
  // A float's bits however spelt (shortest, Java's nine digits, as a double), and a number.
  for (const value of ["0.1", "1.17549435e-38", "0.10000000149011612", 0.10000000149011612, 1.5]) {
    assertEquals(keepsDigits(real, value), true, String(value));
  }
  for (const value of ["0.123456789", "16777217", 16777217, 0.1 + 0.2]) {
    assertEquals(keepsDigits(real, value), false, String(value));
  }
  for (const value of ["0.1", "0.30000000000000004", 0.1 + 0.2, "1e308", "NaN"]) {
    assertEquals(keepsDigits(double, value), true, String(value));
  }
  for (const value of ["0.12345678901234567890", "9007199254740993"]) {
    assertEquals(keepsDigits(double, value), false, value);
  }
});
