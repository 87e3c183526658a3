/**
 * The warehouse_to_citizen example: its two schemas and its deterministic data
 * generator. Runs against `SLUICE_TEST_PG_URL` (falls back to a local server
 * on 127.0.0.1:5432 when unset) in databases it creates and drops.
 */
import {
  assert,
  assertEquals,
  assertNotStrictEquals,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import postgres from "postgres";
import {
  applySchema,
  copyField,
  expectedCounts,
  generateWarehouse,
  touchProfiles,
  WAREHOUSE_TABLES,
} from "../../examples/warehouse_to_citizen/generate.ts";

const SERVER_URL = Deno.env.get("SLUICE_TEST_PG_URL") ??
  "postgres://postgres@127.0.0.1:5432/postgres";
const ROWS = 2_000;
const AS_OF = "2025-06-01T00:00:00Z";

/** Primary key of every generated table (what the content hash is ordered by). */
const PRIMARY_KEYS: Record<string, string> = {
  "eligibility.scheme_master": "scheme_code",
  "public.profile_360": "citizen_id",
  "public.golden_records": "citizen_id",
  "analytics.page_views": "view_id",
  "analytics.sessions": "session_id",
  "public.feedback": "feedback_id",
  "eligibility.eligibility_snapshots": "snapshot_id",
  "decision.applications": "application_id",
  "public.documents": "document_id",
};

/**
 * Source -> target copies, column for column ([source expression, target
 * column]); the example's README lists the same.
 */
const MAPPINGS: { source: string; target: string; columns: [string, string][] }[] = [
  {
    source: "eligibility.scheme_master",
    target: "public.schemes",
    columns: same(
      "scheme_code",
      "name",
      "description",
      "department",
      "benefit_amount",
      "is_active",
      "launched_on",
    ),
  },
  {
    source: "public.profile_360",
    target: "public.profile_summary",
    columns: [
      ["citizen_id", "citizen_id"],
      ["full_name", "display_name"],
      ...same(
        "national_id",
        "phone",
        "email",
        "date_of_birth",
        "gender",
        "district",
        "state",
        "annual_income",
        "household_size",
        "confidence_score",
        "tags",
      ),
      ["updated_at", "source_updated_at"],
    ],
  },
  {
    source: "public.golden_records",
    target: "public.profile_data",
    columns: [
      ["citizen_id", "citizen_id"],
      ["full_name", "legal_name"],
      ...same("national_id", "phone", "email", "address_line"),
      ["pincode", "postal_code"],
      ...same("date_of_birth", "source_systems", "match_confidence", "merged_at"),
      ["updated_at", "source_updated_at"],
    ],
  },
  {
    source: "public.feedback",
    target: "public.feedback_analytics",
    columns: same("feedback_id", "citizen_id", "scheme_code", "rating", "comment", "submitted_at"),
  },
  {
    source: "eligibility.eligibility_snapshots",
    target: "public.eligibility_hints",
    columns: same(
      "snapshot_id",
      "citizen_id",
      "scheme_code",
      "eligibility_score",
      "is_eligible",
      "reasons",
      "computed_at",
    ),
  },
  {
    source: "decision.applications",
    target: "public.application_status",
    columns: [
      ...same("application_id", "citizen_id", "scheme_code"),
      ["status::text", "status"], // enum decision.application_status -> text
      ...same("decision_reason", "submitted_at", "decided_at"),
    ],
  },
  {
    source: "public.documents",
    target: "public.document_metadata",
    columns: same(
      "document_id",
      "citizen_id",
      "application_id",
      "doc_type",
      "file_name",
      "size_bytes",
      "uploaded_at",
    ),
  },
];

/** The user_behavior aggregation the README gives (all days). */
const USER_BEHAVIOR_SQL = `
  INSERT INTO analytics.user_behavior (citizen_id, activity_date, page_views, total_duration_ms, sessions)
  SELECT citizen_id, activity_date,
         coalesce(v.page_views, 0), coalesce(v.total_duration_ms, 0), coalesce(s.sessions, 0)
  FROM (SELECT citizen_id, (viewed_at AT TIME ZONE 'UTC')::date AS activity_date,
               count(*) AS page_views, coalesce(sum(duration_ms), 0) AS total_duration_ms
        FROM analytics.page_views GROUP BY 1, 2) v
  FULL JOIN (SELECT citizen_id, (started_at AT TIME ZONE 'UTC')::date AS activity_date,
                    count(*) AS sessions
             FROM analytics.sessions GROUP BY 1, 2) s
  USING (citizen_id, activity_date)
  ON CONFLICT (citizen_id, activity_date) DO UPDATE SET
    page_views = excluded.page_views,
    total_duration_ms = excluded.total_duration_ms,
    sessions = excluded.sessions`;

function same(...columns: string[]): [string, string][] {
  return columns.map((c) => [c, c]);
}

/** Connects with a fixed time zone (timestamptz::text depends on it) and no NOTICE output. */
function connect(url: string): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {}, connection: { TimeZone: "UTC" } });
}

/** Creates `count` empty databases, runs `fn` with their URLs, then drops them. */
async function withDatabases(
  count: number,
  fn: (...urls: string[]) => Promise<void>,
): Promise<void> {
  const names = Array.from(
    { length: count },
    (_, i) =>
      `sluice_example_gen_${Date.now().toString(36)}_${crypto.randomUUID().slice(0, 8)}_${i}`,
  );
  const admin = connect(SERVER_URL);
  try {
    for (const name of names) await admin.unsafe(`CREATE DATABASE "${name}"`);
    await fn(...names.map((name) => {
      const url = new URL(SERVER_URL);
      url.pathname = `/${name}`;
      return url.toString();
    }));
  } finally {
    for (const name of names) await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  }
}

/** md5 of every generated table's rows in primary-key order. */
async function contentHashes(url: string): Promise<Record<string, string>> {
  const sql = connect(url);
  try {
    const hashes: Record<string, string> = {};
    for (const table of WAREHOUSE_TABLES) {
      const [row] = await sql.unsafe<{ md5: string }[]>(
        `SELECT md5(string_agg(t::text, ',' ORDER BY ${
          PRIMARY_KEYS[table]
        })) AS md5 FROM ${table} t`,
      );
      hashes[table] = row.md5;
    }
    return hashes;
  } finally {
    await sql.end();
  }
}

async function rowCounts(url: string): Promise<Record<string, number>> {
  const sql = connect(url);
  try {
    const counts: Record<string, number> = {};
    for (const table of WAREHOUSE_TABLES) {
      const [row] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`);
      counts[table] = row.n;
    }
    return counts;
  } finally {
    await sql.end();
  }
}

Deno.test("copyField escapes backslash, tab, newline and carriage return, and writes NULL as \\N", () => {
  assertStrictEquals(copyField(null), "\\N");
  assertStrictEquals(copyField("plain राहुल"), "plain राहुल");
  assertStrictEquals(copyField("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
  assertStrictEquals(copyField("\\N"), "\\\\N");
  assertStrictEquals(copyField(""), "");
});

Deno.test("generateWarehouse and touchProfiles reject bad arguments before connecting", async () => {
  const nowhere = "postgres://postgres@127.0.0.1:1/none";
  await assertRejects(generateWarehouse(nowhere, { rows: 0 }), RangeError);
  await assertRejects(generateWarehouse(nowhere, { rows: 1.5 }), RangeError);
  await assertRejects(generateWarehouse(nowhere, { rows: 10, asOf: "not a date" }), RangeError);
  await assertRejects(touchProfiles(nowhere, 1.5, 1), RangeError);
});

Deno.test("warehouse.sql and citizen.sql create every table on an empty database and can run again", async () => {
  await withDatabases(2, async (warehouse, citizen) => {
    for (let run = 0; run < 2; run++) {
      await applySchema(warehouse, "warehouse.sql");
      await applySchema(citizen, "citizen.sql");
    }
    const tables = async (url: string) => {
      const sql = connect(url);
      try {
        const rows = await sql<{ name: string }[]>`
          SELECT table_schema || '.' || table_name AS name FROM information_schema.tables
          WHERE table_schema IN ('public', 'eligibility', 'decision', 'analytics')
          ORDER BY 1`;
        return rows.map((r) => r.name);
      } finally {
        await sql.end();
      }
    };
    assertEquals(await tables(warehouse), [...WAREHOUSE_TABLES].sort());
    assertEquals(await tables(citizen), [
      "analytics.user_behavior",
      "public.application_status",
      "public.document_metadata",
      "public.eligibility_hints",
      "public.feedback_analytics",
      "public.profile_data",
      "public.profile_summary",
      "public.schemes",
    ]);
  });
});

Deno.test("the same seed generates identical data in two databases, and regenerating replaces the data", async () => {
  await withDatabases(2, async (first, second) => {
    await applySchema(first, "warehouse.sql");
    await applySchema(second, "warehouse.sql");

    const otherSeed = await generateWarehouse(first, { rows: ROWS, seed: 43, asOf: AS_OF });
    const otherHashes = await contentHashes(first);
    const counts = await generateWarehouse(first, { rows: ROWS, seed: 42, asOf: AS_OF });
    const firstHashes = await contentHashes(first);
    await generateWarehouse(second, { rows: ROWS, seed: 42, asOf: AS_OF, concurrency: 1 });
    const secondHashes = await contentHashes(second);

    assertEquals(secondHashes, firstHashes);
    for (const table of WAREHOUSE_TABLES) {
      assert(firstHashes[table], `${table} is empty`);
      assertNotStrictEquals(
        otherHashes[table],
        firstHashes[table],
        `seed 43 gave the same ${table}`,
      );
    }
    const expected = expectedCounts(ROWS);
    assertEquals(counts, expected);
    assertEquals(otherSeed, expected);
    assertEquals(await rowCounts(first), expected);
    assertEquals(await rowCounts(second), expected);
    assertStrictEquals(expected["analytics.page_views"], 6_000);
    assertStrictEquals(expected["public.feedback"], 400);
    assertStrictEquals(expected["decision.applications"], 1_000);
    assertStrictEquals(expected["eligibility.scheme_master"], 40);
  });
});

Deno.test("generated data has NULLs, non-ASCII text, empty arrays, escaped text and shared updated_at values", async () => {
  await withDatabases(1, async (url) => {
    await applySchema(url, "warehouse.sql");
    await generateWarehouse(url, { rows: ROWS, seed: 42, asOf: AS_OF });
    const sql = connect(url);
    try {
      const [p] = await sql<Record<string, number>[]>`
        SELECT count(*) FILTER (WHERE email IS NULL)::int AS null_emails,
               count(*) FILTER (WHERE full_name ~ ${"[\u0900-\u097F]"})::int AS devanagari,
               count(*) FILTER (WHERE tags = '{}')::int AS empty_tags,
               count(*) FILTER (WHERE national_id !~ '^[0-9]{4} [0-9]{4} [0-9]{4}$')::int AS bad_ids,
               count(*) FILTER (WHERE phone !~ '^[+]91 [6-9][0-9]{4} [0-9]{5}$')::int AS bad_phones,
               count(DISTINCT national_id)::int AS distinct_ids,
               count(national_id)::int AS ids
        FROM public.profile_360`;
      assert(p.null_emails > 0, "no NULL emails");
      assert(p.devanagari > 0, "no Devanagari names");
      assert(p.empty_tags > 0, "no empty tag arrays");
      assertStrictEquals(p.bad_ids, 0);
      assertStrictEquals(p.bad_phones, 0);
      assertStrictEquals(p.distinct_ids, p.ids, "national IDs are not unique");

      const [shared] = await sql<{ largest: number }[]>`
        SELECT max(n)::int AS largest
        FROM (SELECT count(*) AS n FROM public.profile_360 GROUP BY updated_at) g`;
      assert(shared.largest >= 20, `largest group of equal updated_at is only ${shared.largest}`);

      const comments = (await sql<{ comment: string | null }[]>`
        SELECT DISTINCT comment FROM public.feedback`).map((r) => r.comment);
      for (
        const expected of [
          null,
          "",
          "Application portal was slow.\nHad to retry three times.",
          "Documents list unclear:\tincome certificate vs. salary slip",
          "Uploaded C:\\Users\\ravi\\income.pdf but the portal rejected it",
          "Status page shows approved but no money yet\r\nPlease check",
          "\\N is what the SMS said instead of my name",
          "Good 👍",
        ]
      ) assert(comments.includes(expected), `no feedback comment ${JSON.stringify(expected)}`);

      const [window] = await sql<{ low: number; high: number; inverted: number }[]>`
        SELECT count(*) FILTER (WHERE updated_at < ${AS_OF}::timestamptz - interval '30 days')::int AS low,
               count(*) FILTER (WHERE updated_at >= ${AS_OF}::timestamptz)::int AS high,
               count(*) FILTER (WHERE updated_at < viewed_at)::int AS inverted
        FROM analytics.page_views`;
      assertEquals(window, { low: 0, high: 0, inverted: 0 });

      const [docs] = await sql<{ mismatched: number }[]>`
        SELECT count(*)::int AS mismatched FROM public.documents d
        JOIN decision.applications a USING (application_id)
        WHERE a.citizen_id <> d.citizen_id`;
      assertStrictEquals(docs.mismatched, 0, "documents belong to their application's citizen");
    } finally {
      await sql.end();
    }
  });
});

Deno.test("every source row fits its citizen target table without loss", async () => {
  await withDatabases(1, async (url) => {
    // The two schemas share no table names, so one database can hold both.
    await applySchema(url, "warehouse.sql");
    await applySchema(url, "citizen.sql");
    await generateWarehouse(url, { rows: ROWS, seed: 7, asOf: AS_OF });
    const sql = connect(url);
    try {
      for (const { source, target, columns } of MAPPINGS) {
        const from = columns.map(([s]) => s).join(", ");
        const to = columns.map(([, t]) => t).join(", ");
        const inserted = await sql.unsafe(
          `INSERT INTO ${target} (${to}) SELECT ${from} FROM ${source}`,
        );
        assert(inserted.count > 0, `nothing copied into ${target}`);
        for (
          const query of [
            `SELECT ${from} FROM ${source} EXCEPT ALL SELECT ${to} FROM ${target}`,
            `SELECT ${to} FROM ${target} EXCEPT ALL SELECT ${from} FROM ${source}`,
          ]
        ) {
          const [{ n }] = await sql.unsafe<{ n: number }[]>(
            `SELECT count(*)::int AS n FROM (${query}) d`,
          );
          assertStrictEquals(n, 0, `${source} -> ${target} changed values: ${query}`);
        }
      }
      await sql.unsafe(USER_BEHAVIOR_SQL);
      const [totals] = await sql<{ views: number; sessions: number; duration: string }[]>`
        SELECT sum(page_views)::int AS views, sum(sessions)::int AS sessions,
               sum(total_duration_ms)::text AS duration
        FROM analytics.user_behavior`;
      const [source] = await sql<{ duration: string }[]>`
        SELECT sum(duration_ms)::text AS duration FROM analytics.page_views`;
      assertEquals(totals, { views: 3 * ROWS, sessions: ROWS, duration: source.duration });
    } finally {
      await sql.end();
    }
  });
});

Deno.test("touchProfiles changes the requested fraction of profiles with one shared updated_at", async () => {
  await withDatabases(1, async (url) => {
    await applySchema(url, "warehouse.sql");
    await generateWarehouse(url, { rows: ROWS, seed: 42, asOf: AS_OF });
    assertStrictEquals(await touchProfiles(url, 0, 5), 0);
    assertStrictEquals(await touchProfiles(url, 0.01, 5), 20);
    const sql = connect(url);
    try {
      const touched = async () =>
        await sql<{ citizen_id: string; updated_at: Date }[]>`
          SELECT citizen_id, updated_at FROM public.profile_360
          WHERE updated_at >= ${AS_OF}::timestamptz ORDER BY citizen_id`;
      const once = await touched();
      assertStrictEquals(once.length, 20);
      assertStrictEquals(new Set(once.map((r) => r.updated_at.getTime())).size, 1);

      // The same seed picks the same rows again; they get a new, later updated_at.
      assertStrictEquals(await touchProfiles(url, 0.01, 5), 20);
      const twice = await touched();
      assertEquals(twice.map((r) => r.citizen_id), once.map((r) => r.citizen_id));
      assert(twice[0].updated_at.getTime() >= once[0].updated_at.getTime());
    } finally {
      await sql.end();
    }
  });
});
