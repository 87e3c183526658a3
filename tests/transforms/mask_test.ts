import {
  assert,
  assertEquals,
  assertMatch,
  assertNotStrictEquals,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "../_assert.ts";
import { createHash, createHmac } from "node:crypto";
import fc from "fast-check";
import { checkMaskFields, fpeDecrypt, fpeEncrypt, mask } from "../../transforms/mask/mod.ts";
import { ALPHABETS, FF1, hexBytes } from "../../transforms/mask/_ff1.ts";
import { partial } from "../../transforms/mask/_strategies.ts";
import { HmacSha256, sha256, toHex, utf8 } from "../../transforms/_sha256.ts";
import { apply, changeRecord, configIssues, images, make, rowRecord } from "../_transforms.ts";

const KEY = "a-test-key-that-is-long-enough-32bytes!";
const FPE_KEY = "2b7e151628aed2a6abf7158809cf4f3c";

async function masked(options: Record<string, unknown>, row: Record<string, unknown>) {
  return (await apply(await make(mask, options), rowRecord(row)))!.value as Record<string, unknown>;
}

// NIST SP 800-38G FF1 samples 1–9.
const K128 = "2B7E151628AED2A6ABF7158809CF4F3C";
const K192 = K128 + "EF4359D8D580AA4F";
const K256 = K192 + "7F036D6F04FC6A94";
const TWEAK10 = "39383736353433323130";
const TWEAK36 = "3737373770717273373737";
const nist: [number, string, string, "digits" | "lowercase", string, string][] = [
  [1, K128, "", "digits", "0123456789", "2433477484"],
  [2, K128, TWEAK10, "digits", "0123456789", "6124200773"],
  [3, K128, TWEAK36, "lowercase", "0123456789abcdefghi", "a9tv40mll9kdu509eum"],
  [4, K192, "", "digits", "0123456789", "2830668132"],
  [5, K192, TWEAK10, "digits", "0123456789", "2496655549"],
  [6, K192, TWEAK36, "lowercase", "0123456789abcdefghi", "xbj3kv35jrawxv32ysr"],
  [7, K256, "", "digits", "0123456789", "6657667009"],
  [8, K256, TWEAK10, "digits", "0123456789", "1001623463"],
  [9, K256, TWEAK36, "lowercase", "0123456789abcdefghi", "xs8a0azh2avyalyzuwd"],
];

for (const [sample, key, tweak, alphabet, plain, cipher] of nist) {
  Deno.test(`mask fpe reproduces NIST FF1 sample ${sample} (AES-${key.length * 4}, radix ${ALPHABETS[alphabet].length})`, () => {
    const ff1 = new FF1(hexBytes(key), ALPHABETS[alphabet], hexBytes(tweak));
    assertStrictEquals(ff1.encrypt(plain), cipher);
    assertStrictEquals(ff1.decrypt(cipher), plain);
  });
}

Deno.test("mask fpe refuses keys that are not AES keys and values below the FF1 minimum", () => {
  assertThrows(() => new FF1(new Uint8Array(10), ALPHABETS.digits), /16, 24 or 32 bytes/);
  const ff1 = new FF1(hexBytes(FPE_KEY), ALPHABETS.digits);
  assertThrows(() => ff1.encrypt("12345"), /at least 6 numerals in radix 10/);
  assertThrows(() => ff1.encrypt("12345a"), /"a" is not in the FF1 alphabet/);
  assertStrictEquals(new FF1(hexBytes(FPE_KEY), ALPHABETS.alphanumeric).minLength, 4);
});

Deno.test("mask fpe keeps separators in place and decrypts with the exported fpeDecrypt", () => {
  const options = { key: FPE_KEY, alphabet: "digits" as const };
  const encrypted = fpeEncrypt("19850614-1234", options);
  assertStrictEquals(encrypted.length, 13);
  assertStrictEquals(encrypted[8], "-");
  assertNotStrictEquals(encrypted, "19850614-1234");
  assertStrictEquals(fpeDecrypt(encrypted, options), "19850614-1234");
  // A long value needs more than one AES block of keystream per round (d > 16).
  const long = "1234567890".repeat(10);
  assertStrictEquals(fpeDecrypt(fpeEncrypt(long, options), options), long);
});

Deno.test("mask fpe round-trips and preserves length, alphabet and separator positions (property)", () => {
  const separators = [..."- /."];
  for (const name of Object.keys(ALPHABETS) as (keyof typeof ALPHABETS)[]) {
    const alphabet = [...ALPHABETS[name]];
    const ff1 = new FF1(hexBytes(FPE_KEY), ALPHABETS[name]);
    const char = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...alphabet) },
      { weight: 1, arbitrary: fc.constantFrom(...separators) },
    );
    const text = fc.array(char, { minLength: 1, maxLength: 40 }).map((chars) => chars.join(""))
      .filter((s) => [...s].filter((c) => alphabet.includes(c)).length >= ff1.minLength);
    fc.assert(
      fc.property(text, fc.uint8Array({ maxLength: 8 }), (clear, tweakBytes) => {
        const tweak = toHex(tweakBytes);
        const options = { key: FPE_KEY, alphabet: name, tweak };
        const encrypted = fpeEncrypt(clear, options);
        assertStrictEquals(encrypted.length, clear.length);
        [...clear].forEach((c, i) => {
          if (separators.includes(c)) assertStrictEquals(encrypted[i], c);
          else assert(alphabet.includes(encrypted[i]));
        });
        assertStrictEquals(fpeDecrypt(encrypted, options), clear);
      }),
      { numRuns: 60 },
    );
  }
});

Deno.test("mask hmac is deterministic per key and differs between keys (property)", async () => {
  const keyArb = fc.string({ minLength: 32, maxLength: 80 });
  const valueArb = fc.oneof(fc.string({ unit: "binary" }), fc.integer(), fc.boolean());
  await fc.assert(
    fc.asyncProperty(valueArb, keyArb, keyArb, async (value, key1, key2) => {
      fc.pre(key1 !== key2);
      const options = (key: string) => ({ fields: "v", strategy: "hmac", key });
      const a = (await masked(options(key1), { v: value })).v;
      const again = (await masked(options(key1), { v: value })).v;
      const other = (await masked(options(key2), { v: value })).v;
      assertStrictEquals(a, again);
      assertNotStrictEquals(a, other);
      assertMatch(a as string, /^[0-9a-f]{64}$/);
    }),
    { numRuns: 100 },
  );
});

// RFC 4231 section 4, HMAC-SHA-256 of test cases 1-7 (case 5 is truncated to 128 bits).
const RFC4231: [key: string, data: string, mac: string][] = [
  [
    "0b".repeat(20),
    toHex(utf8("Hi There")),
    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
  ],
  [
    toHex(utf8("Jefe")),
    toHex(utf8("what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  ],
  [
    "aa".repeat(20),
    "dd".repeat(50),
    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
  ],
  [
    "0102030405060708090a0b0c0d0e0f10111213141516171819",
    "cd".repeat(50),
    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
  ],
  ["0c".repeat(20), toHex(utf8("Test With Truncation")), "a3b6167473100ee06e0c796c2955552b"],
  [
    "aa".repeat(131),
    toHex(utf8("Test Using Larger Than Block-Size Key - Hash Key First")),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
  ],
  [
    "aa".repeat(131),
    toHex(utf8(
      "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
    )),
    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
  ],
];

Deno.test("mask hmac gives the RFC 4231 HMAC-SHA-256 test vectors", () => {
  for (const [key, data, mac] of RFC4231) {
    const hmac = new HmacSha256(hexBytes(key));
    assertStrictEquals(toHex(hmac.digest(hexBytes(data))).slice(0, mac.length), mac);
    // The same instance again: its keyed state must survive a digest.
    assertStrictEquals(toHex(hmac.digest(hexBytes(data))).slice(0, mac.length), mac);
    const bytes = hexBytes(data);
    if (bytes.every((byte) => byte >= 0x20 && byte <= 0x7e)) {
      const text = String.fromCharCode(...bytes);
      assertStrictEquals(hmac.hexOfText(text).slice(0, mac.length), mac);
    }
  }
});

Deno.test("mask hmac and hash agree with node:crypto (property)", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), fc.uint8Array({ maxLength: 150 }), (text, key) => {
      assertStrictEquals(
        toHex(new HmacSha256(key).digest(utf8(text))),
        createHmac("sha256", key).update(text).digest("hex"),
      );
      assertStrictEquals(
        new HmacSha256(key).hexOfText(text),
        createHmac("sha256", key).update(text).digest("hex"),
      );
      assertStrictEquals(toHex(sha256(key)), createHash("sha256").update(key).digest("hex"));
    }),
    { numRuns: 200 },
  );
});

Deno.test("mask partial keeps the prefix and suffix and the length (property)", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", maxLength: 30 }),
      fc.nat(6),
      fc.nat(6),
      (value, first, last) => {
        const chars = [...value];
        const out = [...partial(value, first, last, "*")];
        assertStrictEquals(out.length, chars.length);
        if (chars.length > first + last) {
          assertEquals(out.slice(0, first), chars.slice(0, first));
          assertEquals(out.slice(out.length - last), chars.slice(chars.length - last));
          assert(out.slice(first, out.length - last).every((c) => c === "*"));
        } else {
          assert(out.every((c) => c === "*"));
        }
      },
    ),
  );
});

// Each strategy on a value.
const strategyCases: [string, Record<string, unknown>, unknown, unknown][] = [
  [
    "hash salts and hashes the text",
    { strategy: "hash", salt: "pepper" },
    "anna",
    createHash("sha256").update("pepperanna").digest("hex"),
  ],
  [
    "hmac pseudonymises numbers through their text",
    { strategy: "hmac", key: KEY },
    42,
    createHmac("sha256", KEY).update("42").digest("hex"),
  ],
  [
    "redact replaces a string with a constant",
    { strategy: "redact", replacement: "REDACTED" },
    "anna",
    "REDACTED",
  ],
  ["redact empties a string by default", {}, "anna", ""],
  ["null nulls the value", { strategy: "null" }, "anna", null],
  [
    "truncate keeps the first characters",
    { strategy: "truncate", length: "3" },
    "Stockholm",
    "Sto",
  ],
  [
    "partial keeps the last digits of a phone",
    { strategy: "partial", "keep.last": "2" },
    "+46701234567",
    "**********67",
  ],
  [
    "partial masks a value too short to keep anything",
    { strategy: "partial", "keep.first": "2", "keep.last": "2" },
    "abc",
    "***",
  ],
  [
    "partial uses the mask character",
    { strategy: "partial", "keep.first": "1", "mask.char": "#" },
    "Anna",
    "A###",
  ],
  [
    "email masks the local part and keeps the domain",
    { strategy: "email", "keep.first": "1" },
    "anna.berg@example.se",
    "a********@example.se",
  ],
  ["email masks a value without @ whole", { strategy: "email" }, "nobody", "******"],
  [
    "email masks whole a value with more than a domain after the @",
    { strategy: "email", "mask.length": "5" },
    "x@corp.com (cell 555-0100)",
    "*****",
  ],
  [
    "email keeps an international domain",
    { strategy: "email", "mask.length": "3" },
    "anna@bücher.example",
    "***@bücher.example",
  ],
  [
    "partial with mask.length hides how long a name was",
    { strategy: "partial", "keep.first": "1", "mask.length": "5" },
    "Annabelle Lindqvist",
    "A*****",
  ],
  [
    "partial with mask.length masks a short value to the same length",
    { strategy: "partial", "keep.first": "1", "mask.length": "5" },
    "A",
    "*****",
  ],
  [
    "email with mask.length hides how long the mailbox was",
    { strategy: "email", "mask.length": "5" },
    "a@example.se",
    "*****@example.se",
  ],
  ["date generalises an ISO date to its month", { strategy: "date" }, "1985-06-14", "1985-06-01"],
  [
    "date generalises a Date to its year",
    { strategy: "date", granularity: "year" },
    new Date("1985-06-14T10:00:00Z"),
    new Date("1985-01-01T00:00:00Z"),
  ],
  [
    "date generalises epoch milliseconds",
    { strategy: "date" },
    Date.UTC(1985, 5, 14, 10),
    Date.UTC(1985, 5, 1),
  ],
  ["number buckets a number", { strategy: "number", "bucket.size": "10000" }, 53210, 50000],
  ["number buckets negative numbers downwards", { strategy: "number", "bucket.size": 10 }, -5, -10],
  [
    "number buckets a numeric string",
    { strategy: "number", "bucket.size": "1000" },
    "1234.56",
    "1000",
  ],
  ["number buckets a bigint", { strategy: "number", "bucket.size": "100" }, 12345n, 12300n],
  [
    "fpe encrypts digits in place",
    { strategy: "fpe", key: K128, "fpe.tweak": TWEAK10 },
    "0123-456789",
    "6124-200773",
  ],
  ["every strategy keeps null as null", { strategy: "hmac", key: KEY }, null, null],
];

// Arrays (text[] columns): each element, nulls kept; nested arrays too.
strategyCases.push(
  [
    "partial masks each element of an array",
    { strategy: "partial", "keep.first": "1", "keep.last": "1" },
    ["anna", null, "bo"],
    ["a**a", null, "**"],
  ],
  [
    "email masks each address of an array",
    { strategy: "email" },
    ["anna@example.org", "bo@x.se"],
    ["****@example.org", "**@x.se"],
  ],
  ["truncate cuts each element of a 2-D array", { strategy: "truncate", length: "2" }, [[
    "Stockholm",
    "Oslo",
  ], ["Ume\u00e5", null]], [["St", "Os"], ["Um", null]]],
);

for (const [what, options, input, expected] of strategyCases) {
  Deno.test(`mask ${what}`, async () => {
    assertEquals(await masked({ fields: "v", ...options }, { v: input, other: 1 }), {
      v: expected,
      other: 1,
    });
  });
}

// Kafka's MaskFieldTest: redact without a replacement empties each type.
Deno.test("mask redacts every type to its empty value like MaskField (testSchemaless)", async () => {
  const row = {
    magic: 42,
    bool: true,
    int: 42,
    double: 42.5,
    string: "55.121.20.20",
    date: new Date(),
    bigint: 42n,
    list: [42],
    map: { key: "value" },
    bytes: new Uint8Array([1, 2]),
  };
  const fields = Object.keys(row).filter((f) => f !== "magic").join(",");
  assertEquals(await masked({ fields }, row), {
    magic: 42,
    bool: false,
    int: 0,
    double: 0,
    string: "",
    date: new Date(0),
    bigint: 0n,
    list: [],
    map: {},
    bytes: new Uint8Array(),
  });
});

Deno.test("mask replaces numbers and strings with a typed replacement (testSchemalessWithReplacement)", async () => {
  assertEquals(
    await masked({ fields: "int,double,string,bigint", replacement: "123" }, {
      int: 42,
      double: 4.2,
      string: "x",
      bigint: 42n,
    }),
    { int: 123, double: 123, string: "123", bigint: 123n },
  );
});

Deno.test("mask fails records whose values cannot take the replacement (testSchemalessUnsupportedReplacementType, testReplacementTypeMismatch)", async () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ date: new Date() }, "123", /only strings and numbers can take a replacement/],
    [{ bool: false }, "123", /only strings and numbers/],
    [{ list: ["123"] }, "123", /only strings and numbers/],
    [{ int: 42 }, "foo", /the replacement is not a number/],
    [{ bigint: 42n }, "foo", /the replacement is not an integer/],
  ];
  for (const [row, replacement, message] of cases) {
    const transform = await make(mask, { fields: Object.keys(row)[0], replacement });
    await assertRejects(async () => await apply(transform, rowRecord(row)), message);
  }
});

Deno.test("mask masks before, after and key columns of change events", async () => {
  const transform = await make(mask, {
    fields: "national_id,phone",
    "fields.national_id.strategy": "fpe",
    "fields.national_id.key": FPE_KEY,
    "fields.phone.strategy": "partial",
    "fields.phone.keep.last": "2",
  });
  const out = await apply(
    transform,
    changeRecord("u", {
      before: { national_id: "850614-1234", phone: "0701234567", city: "Lund" },
      after: { national_id: "850614-1234", phone: "0709999999", city: "Malmö" },
    }, { key: { national_id: "850614-1234" } }),
  );
  const { before, after } = images(out);
  const id = fpeEncrypt("850614-1234", { key: FPE_KEY, alphabet: "digits" });
  assertEquals(before, { national_id: id, phone: "********67", city: "Lund" });
  assertEquals(after, { national_id: id, phone: "********99", city: "Malmö" });
  assertEquals(out!.key, { national_id: id });
  assert(!JSON.stringify(out).includes("850614"), "the clear national ID must not appear");
});

Deno.test("mask masks the old and new keys a key change carries in its headers", async () => {
  const key = "k".repeat(32);
  const transform = await make(mask, { fields: "email", strategy: "hmac", key });
  const hmac = (text: string) => createHmac("sha256", key).update(text).digest("hex");
  // The delete of the old key names the new one; the create names the old one.
  const moved = await apply(
    transform,
    changeRecord("d", { before: { email: "old@example.se", tenant: 7 } }, {
      key: { email: "old@example.se", tenant: 7 },
      headers: {
        "__debezium.newkey": JSON.stringify({ email: "new@example.se", tenant: 7 }),
        "other": "kept",
      },
    }),
  );
  assertEquals(moved!.key, { email: hmac("old@example.se"), tenant: 7 });
  assertEquals(moved!.headers, {
    "__debezium.newkey": JSON.stringify({ email: hmac("new@example.se"), tenant: 7 }),
    "other": "kept",
  });
  const created = await apply(
    transform,
    changeRecord("c", { after: { email: "new@example.se", tenant: 7 } }, {
      key: { email: "new@example.se", tenant: 7 },
      headers: { "__debezium.oldkey": JSON.stringify({ email: "old@example.se", tenant: 7 }) },
    }),
  );
  // The sink finds the stored row under the old key as the previous record wrote it.
  assertEquals(JSON.parse(created!.headers!["__debezium.oldkey"]), moved!.key);
  assert(!JSON.stringify([moved, created]).includes("@example"), "a clear email passed");
  // A key header it cannot read fails the record rather than pass in clear.
  await assertRejects(
    async () =>
      await apply(
        transform,
        changeRecord("c", { after: { email: "new@example.se" } }, {
          key: { email: "new@example.se" },
          headers: { "__debezium.oldkey": "old@example.se" },
        }),
      ),
    /__debezium.oldkey header .* is not a JSON object/,
  );
});

Deno.test("mask passes tombstones and leaves keys without masked columns alone", async () => {
  const transform = await make(mask, { fields: "email", strategy: "null" });
  const tombstone = rowRecord(null, { key: { id: 1 } });
  assertEquals(await apply(transform, tombstone), tombstone);
});

Deno.test("mask fails a record that lacks a listed field, naming the field and not the values", async () => {
  const transform = await make(mask, { fields: "phone,email", strategy: "null" });
  const error = await assertRejects(
    async () =>
      await apply(
        transform,
        rowRecord({ phone: "0701234567", name: "Anna" }, { topic: "profiles" }),
      ),
  );
  assertMatch(
    error.message,
    /mask: field "email" is not in a record on "profiles" \(its columns: phone, name\)/,
  );
  assert(!error.message.includes("0701234567"));

  // Inserts and snapshot reads carry every column: a missing field is a mistake there.
  for (const op of ["c", "r"] as const) {
    await assertRejects(
      async () => await apply(transform, changeRecord(op, { after: { phone: "1" } })),
      /field "email" is not in a record/,
    );
  }
  await assertRejects(
    async () => await apply(transform, { topic: "t", key: null, value: "a string" }),
    /is not a row, so its fields cannot be masked/,
  );
});

Deno.test("mask fails a record with a value its strategy cannot read", async () => {
  const cases: [Record<string, unknown>, unknown, RegExp][] = [
    [
      { strategy: "date" },
      "14/06/1985",
      /cannot apply date to field "v" \(string\): not an ISO 8601 date/,
    ],
    [
      { strategy: "number", "bucket.size": "10" },
      "many",
      /cannot apply number to field "v" \(string\): not a number/,
    ],
    [
      { strategy: "fpe", key: FPE_KEY },
      "12-34",
      /it has 4 characters of the digits alphabet; FF1 needs at least 6/,
    ],
    [
      { strategy: "date" },
      Number.NaN,
      /cannot apply date to field "v" \(number\): not a finite number of epoch milliseconds/,
    ],
    [
      { strategy: "number", "bucket.size": "10" },
      Number.POSITIVE_INFINITY,
      /cannot apply number to field "v" \(number\): not a finite number/,
    ],
    [{ strategy: "number", "bucket.size": "10" }, Number.NaN, /not a finite number/],
    [{ strategy: "fpe", key: FPE_KEY }, true, /\(boolean\): expected a string or a finite number/],
    // Their JSON or byte text would come out as masked debris of its syntax.
    [
      { strategy: "partial", "keep.first": "2" },
      { street: "Storgatan 1", city: "Umeå" },
      /cannot apply partial to field "v" \(object\): it works on text \(or an array of text\); mask JSON or binary values with hmac, hash, redact or null/,
    ],
    [{ strategy: "email" }, [{ to: "anna@example.org" }], /cannot apply email to field "v"/],
    [{ strategy: "truncate", length: "3" }, new Uint8Array([1, 2, 3, 4]), /it works on text/],
    [
      { strategy: "fpe", key: FPE_KEY },
      new Date("1985-06-14T10:00:00Z"),
      /expected a string or a finite number/,
    ],
  ];
  for (const [options, value, message] of cases) {
    const transform = await make(mask, { fields: "v", ...options });
    await assertRejects(async () => await apply(transform, rowRecord({ v: value })), message);
  }
});

Deno.test("mask never writes the clear value of a value it cannot transform", async () => {
  // A value with no digits (or an empty one) has nothing FF1 can encrypt; it
  // must fail the record, not reach the sink as it was.
  const cases: [Record<string, unknown>, unknown][] = [
    [{ strategy: "fpe", key: FPE_KEY }, "not-an-email"],
    [{ strategy: "fpe", key: FPE_KEY }, ""],
    [{ strategy: "fpe", key: FPE_KEY }, "12345"],
    [{ strategy: "fpe", key: FPE_KEY, "fpe.alphabet": "alphanumeric" }, "---"],
    [{ strategy: "number", "bucket.size": "10" }, Number.NaN],
    [{ strategy: "date" }, Number.POSITIVE_INFINITY],
  ];
  for (const [options, value] of cases) {
    const transform = await make(mask, { fields: "v", ...options });
    const error = await assertRejects(
      async () => await apply(transform, rowRecord({ v: value })),
      Error,
      `cannot apply ${options.strategy} to field "v"`,
    );
    if (typeof value === "string" && value !== "") assert(!error.message.includes(value));
  }
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["no fields", {}, "fields", /is required/],
  ["an empty field list", { fields: "" }, "fields", /at least one field/],
  ["a field listed twice", { fields: "a,a" }, "fields", /lists "a" twice/],
  [
    "hmac without a key",
    { fields: "a", strategy: "hmac" },
    "key",
    /is required for the hmac strategy; .*no default key\) \(field "a"\)$/,
  ],
  [
    "an hmac key shorter than 32 bytes",
    { fields: "a", strategy: "hmac", key: "short-secret" },
    "key",
    /at least 32 bytes .*: the key given has 12 \(field "a"\)$/,
  ],
  [
    "a short key for several fields once",
    { fields: "a,b", strategy: "hmac", key: "x" },
    "key",
    /has 1 \(fields "a", "b"\)$/,
  ],
  [
    "a short per-field hmac key",
    { fields: "a", "fields.a.strategy": "hmac", "fields.a.key": "x" },
    "fields.a.key",
    /at least 32 bytes/,
  ],
  [
    "an fpe key that is not hex AES",
    { fields: "a", strategy: "fpe", key: "z".repeat(32) },
    "key",
    /32, 48 or 64 hex digits .* and is not hex/,
  ],
  [
    "a bad fpe tweak",
    { fields: "a", strategy: "fpe", key: FPE_KEY, "fpe.tweak": "abc" },
    "fpe.tweak",
    /hex digits/,
  ],
  [
    "hash without a salt",
    { fields: "a", strategy: "hash" },
    "salt",
    /is required for the hash strategy/,
  ],
  ["truncate without a length", { fields: "a", strategy: "truncate" }, "length", /is required/],
  [
    "number without a bucket size",
    { fields: "a", strategy: "number" },
    "bucket.size",
    /is required/,
  ],
  ["an unknown strategy", { fields: "a", strategy: "scramble" }, "strategy", /must be one of/],
  [
    "an empty replacement (testEmptyStringReplacementValue)",
    { fields: "a", replacement: "" },
    "replacement",
    /must not be empty/,
  ],
  [
    "a mask character of two characters",
    { fields: "a", "mask.char": "**" },
    "mask.char",
    /one character/,
  ],
  [
    "a negative keep.first",
    { fields: "a", "fields.a.keep.first": "-1" },
    "fields.a.keep.first",
    /0 or more/,
  ],
  [
    "an option for a field that is not listed",
    { fields: "a", "fields.b.strategy": "null" },
    "fields.b.strategy",
    /not listed in "fields"/,
  ],
  [
    "a misspelt per-field option",
    { fields: "a", "fields.a.stratgy": "null" },
    "fields.a.stratgy",
    /is not an option/,
  ],
  ["a misspelt option", { fields: "a", strategie: "null" }, "strategie", /is not an option/],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`mask refuses ${what} at validation`, () => {
    const issues = configIssues(mask, options);
    const issue = issues.find((i) => i.path === path);
    assert(issue, `expected an issue at ${path}, got ${JSON.stringify(issues)}`);
    assertMatch(issue.message, message);
  });
}

Deno.test("mask names a strategy's missing option even when another option is bad", () => {
  const issues = configIssues(mask, { fields: "", strategy: "hmac", "keep.first": "x" });
  assertEquals(issues.map((i) => i.path).sort(), ["fields", "keep.first", "key"]);
  assertMatch(issues.find((i) => i.path === "key")!.message, /is required for the hmac strategy/);
  // Named once when only the strategy's option is missing.
  assertEquals(configIssues(mask, { fields: "a", strategy: "hash" }).length, 1);
});

Deno.test("mask never quotes a key or salt in its config errors", () => {
  const secret = "sekret-value-123";
  for (
    const options of [
      { fields: "a", strategy: "hmac", key: secret },
      { fields: "a", strategy: "fpe", key: secret },
      { fields: "a", "fields.a.strategy": "hmac", "fields.a.key": secret },
      { fields: "a", "fields.a.salt": "", salt: secret, strategy: "hash" },
    ]
  ) {
    const text = JSON.stringify(configIssues(mask, options));
    assert(text.length > 2, "expected issues");
    assert(!text.includes(secret), `the secret leaked: ${text}`);
  }
});

Deno.test("mask accepts a valid config and MaskField's class name", () => {
  assertEquals(
    configIssues(mask, {
      fields: "full_name,phone",
      strategy: "hmac",
      key: KEY,
      "fields.phone.strategy": "partial",
      "fields.phone.keep.last": 2,
    }),
    [],
  );
  assertEquals(mask.aliases, ["org.apache.kafka.connect.transforms.MaskField$Value"]);
});

Deno.test("checkMaskFields reports masked fields that are not columns of the source", () => {
  const config = mask.config.parse({ fields: "phone,email,ssn", strategy: "null" });
  assertEquals(checkMaskFields(config, ["id", "phone", "email"]), [{
    path: "fields",
    message: 'names "ssn", which is not a column of the source (columns: email, id, phone)',
  }]);
  assertEquals(checkMaskFields(config, ["phone", "email", "ssn"]), []);
});
