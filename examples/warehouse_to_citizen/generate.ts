/**
 * Deterministic synthetic data for the `smart_warehouse` side of the
 * warehouse_to_citizen example.
 *
 * The output is a pure function of `(rows, seed, asOf)`: the same arguments
 * give byte-identical tables. Timestamps fall in the 30 days before `asOf`
 * (default: the most recent UTC midnight, so runs on the same day agree; pass
 * `asOf` / `--as-of` to pin it).
 *
 * ```sh
 * deno run -A examples/warehouse_to_citizen/generate.ts --url postgres://…/smart_warehouse --rows 100000 [--seed 42]
 * ```
 *
 * @module
 */
import postgres from "postgres";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";

/** Options of {@linkcode generateWarehouse}. */
export interface GenerateOptions {
  /** Number of citizens: rows of `public.profile_360` and `public.golden_records`. */
  rows: number;
  /** PRNG seed (any safe integer, reduced to 32 bits). Default 42. */
  seed?: number;
  /**
   * End of the 30-day window the timestamps fall in (truncated to the minute).
   * Default: the most recent UTC midnight.
   */
  asOf?: Date | string;
  /** How many tables are loaded at the same time (one connection each). Default 3. */
  concurrency?: number;
  /** Called when a table is loaded, with its row count and the milliseconds it took. */
  onTable?: (table: string, rows: number, ms: number) => void;
}

/** The tables {@linkcode generateWarehouse} fills, in the order it starts them. */
export const WAREHOUSE_TABLES = [
  "analytics.page_views",
  "public.profile_360",
  "public.golden_records",
  "analytics.sessions",
  "eligibility.eligibility_snapshots",
  "decision.applications",
  "public.documents",
  "public.feedback",
  "eligibility.scheme_master",
] as const;

/** A fully qualified warehouse table name. */
export type WarehouseTable = typeof WAREHOUSE_TABLES[number];

/** Rows per table for `rows` citizens. */
export function expectedCounts(rows: number): Record<WarehouseTable, number> {
  return {
    "analytics.page_views": 3 * rows,
    "public.profile_360": rows,
    "public.golden_records": rows,
    "analytics.sessions": rows,
    "eligibility.eligibility_snapshots": rows,
    "decision.applications": Math.floor(rows / 2),
    "public.documents": Math.floor(rows / 2),
    "public.feedback": Math.floor(rows / 5),
    "eligibility.scheme_master": SCHEMES.length,
  };
}

// ---------------------------------------------------------------------------
// PRNG

/** The mulberry32 PRNG: returns floats in [0, 1) that are multiples of 2^-32. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes two 32-bit values into one (murmur3 finaliser). */
function mix(a: number, b: number): number {
  let h = (a ^ Math.imul(b >>> 0, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

type Rand = () => number;

const int = (rand: Rand, n: number): number => Math.floor(rand() * n);
const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)];
const u32 = (rand: Rand): number => rand() * 4294967296; // exact: rand() is k / 2^32
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** 8 hex digits (lookup table: Number#toString(16) is slow). */
function hex8(rand: Rand): string {
  const x = u32(rand);
  return HEX[x >>> 24] + HEX[(x >>> 16) & 255] + HEX[(x >>> 8) & 255] + HEX[x & 255];
}

/** A deterministic version-4 UUID. */
function uuid(rand: Rand): string {
  const a = hex8(rand), b = hex8(rand), c = hex8(rand), d = hex8(rand);
  const variant = "89ab"[int(rand, 4)];
  return `${a}-${b.slice(0, 4)}-4${b.slice(5)}-${variant}${c.slice(1, 4)}-${c.slice(4)}${d}`;
}

/** Picks `k` distinct items (in list order). */
function subset(rand: Rand, items: readonly string[], k: number): string[] {
  const chosen: string[] = [];
  let need = Math.min(k, items.length);
  for (let i = 0; i < items.length && need > 0; i++) {
    if (rand() * (items.length - i) < need) {
      chosen.push(items[i]);
      need--;
    }
  }
  return chosen;
}

// ---------------------------------------------------------------------------
// COPY text format

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
};

/** Escapes one field for COPY text format; `null` becomes `\N`. */
export function copyField(value: string | null): string {
  if (value === null) return "\\N";
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : value;
}

/**
 * A PostgreSQL array literal of lower-case identifiers such as TAGS, which
 * need no quoting (and are never the word NULL).
 */
const identifierArray = (items: readonly string[]): string => `{${items.join(",")}}`;

/**
 * One COPY text-format line (with its newline). `null` becomes `\N`; other
 * fields are written as they are: pass free text through {@linkcode copyField}
 * (values built from this module's constant lists, numbers and timestamps
 * never contain a backslash, tab, newline or carriage return).
 */
function line(fields: (string | null)[]): string {
  let out = fields[0] ?? "\\N";
  for (let i = 1; i < fields.length; i++) out += "\t" + (fields[i] ?? "\\N");
  return out + "\n";
}

// ---------------------------------------------------------------------------
// Time

const DAY_MINUTES = 24 * 60;
const MINUTES = 30 * DAY_MINUTES;
const MINUTE_US = 60_000_000;
/** Minutes (from the window start) at which bulk jobs touched many rows at once. */
const BULK_MINUTES = [1 * DAY_MINUTES, 15 * DAY_MINUTES + 120, 28 * DAY_MINUTES + 30];

const TWO_DIGITS = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, "0"));

/** Formats timestamps in the 30-day window ending at `asOf`. */
class Clock {
  readonly startMs: number;
  #prefixes: string[] = [];

  constructor(asOfMs: number) {
    this.startMs = asOfMs - MINUTES * 60_000;
  }

  /** "YYYY-MM-DDTHH:MM:" of minute `m` of the window. */
  prefix(m: number): string {
    return this.#prefixes[m] ??= new Date(this.startMs + m * 60_000).toISOString().slice(0, 17);
  }

  /** The whole minute `m` ("…:00Z"). */
  minute(m: number): string {
    return this.prefix(m) + "00Z";
  }

  /** A microsecond-precision instant, `us` microseconds after the window start. */
  micros(us: number): string {
    const m = Math.floor(us / MINUTE_US);
    const rest = us - m * MINUTE_US;
    const sec = Math.floor(rest / 1_000_000);
    // 1_000_000 + µs has 7 digits; drop the leading "1" to zero-pad to 6.
    return `${this.prefix(m)}${TWO_DIGITS[sec]}.${
      String(1_000_000 + (rest - sec * 1_000_000)).slice(1)
    }Z`;
  }
}

/** A random instant (µs from the window start) inside minute `m`. */
const inMinute = (rand: Rand, m: number): number => m * MINUTE_US + int(rand, MINUTE_US);

/** An updated_at minute for a row with no other timestamp. */
function updatedAny(rand: Rand): number {
  if (rand() < 0.05) return pick(rand, BULK_MINUTES);
  return int(rand, MINUTES);
}

/** An updated_at minute strictly after minute `m` (which must be < MINUTES - 1). */
function updatedAfter(rand: Rand, m: number): number {
  if (rand() < 0.05) {
    const bulk = pick(rand, BULK_MINUTES);
    if (bulk > m) return bulk;
  }
  if (rand() < 0.8) return m + 1;
  return m + 1 + int(rand, MINUTES - 1 - m);
}

const DOB_START_MS = Date.UTC(1940, 0, 1);
const DOB_DAYS = Math.round((Date.UTC(2007, 11, 31) - DOB_START_MS) / 86_400_000);
const dobCache: string[] = [];
const dateOfDay = (day: number): string =>
  dobCache[day] ??= new Date(DOB_START_MS + day * 86_400_000).toISOString().slice(0, 10);

// ---------------------------------------------------------------------------
// Reference lists

/** [Latin, Devanagari or ""] */
const FEMALE_FIRST: readonly (readonly [string, string])[] = [
  ["Priya", "प्रिया"],
  ["Sunita", "सुनीता"],
  ["Anjali", "अंजलि"],
  ["Pooja", "पूजा"],
  ["Neha", "नेहा"],
  ["Lakshmi", "लक्ष्मी"],
  ["Kavita", "कविता"],
  ["Meena", "मीना"],
  ["Divya", ""],
  ["Fatima", ""],
  ["Aisha", ""],
  ["Sneha", ""],
  ["Deepa", ""],
  ["Revathi", ""],
  ["Shreya", ""],
  ["Manpreet", ""],
  ["Swati", ""],
  ["Nandini", ""],
  ["Geeta", "गीता"],
  ["Mary", ""],
];
const MALE_FIRST: readonly (readonly [string, string])[] = [
  ["Rahul", "राहुल"],
  ["Amit", "अमित"],
  ["Vijay", "विजय"],
  ["Suresh", "सुरेश"],
  ["Ravi", "रवि"],
  ["Arjun", "अर्जुन"],
  ["Manoj", "मनोज"],
  ["Rajesh", "राजेश"],
  ["Imran", ""],
  ["Karthik", ""],
  ["Venkatesh", ""],
  ["Harpreet", ""],
  ["Sanjay", "संजय"],
  ["Arun", ""],
  ["Mohammed", ""],
  ["Prakash", ""],
  ["Joseph", ""],
  ["Aditya", ""],
  ["Ganesh", ""],
  ["Naveen", ""],
];
const LAST: readonly (readonly [string, string])[] = [
  ["Sharma", "शर्मा"],
  ["Verma", "वर्मा"],
  ["Gupta", "गुप्ता"],
  ["Singh", "सिंह"],
  ["Yadav", "यादव"],
  ["Patel", "पटेल"],
  ["Kumar", "कुमार"],
  ["Mishra", "मिश्रा"],
  ["Reddy", ""],
  ["Nair", ""],
  ["Iyer", ""],
  ["Khan", ""],
  ["Das", ""],
  ["Banerjee", ""],
  ["Chatterjee", ""],
  ["Pillai", ""],
  ["Menon", ""],
  ["Deshmukh", ""],
  ["Kulkarni", ""],
  ["Joshi", "जोशी"],
  ["D'Souza", ""],
  ["Fernandes", ""],
  ["Sheikh", ""],
  ["Gill", ""],
  ["Rao", ""],
];
const DEVA_FEMALE = FEMALE_FIRST.filter(([, d]) => d);
const DEVA_MALE = MALE_FIRST.filter(([, d]) => d);
const DEVA_LAST = LAST.filter(([, d]) => d);

/** [district, state, first three digits of its PIN codes] */
const PLACES: readonly (readonly [string, string, string])[] = [
  ["Pune", "Maharashtra", "411"],
  ["Nagpur", "Maharashtra", "440"],
  ["Lucknow", "Uttar Pradesh", "226"],
  ["Varanasi", "Uttar Pradesh", "221"],
  ["Patna", "Bihar", "800"],
  ["Gaya", "Bihar", "823"],
  ["Jaipur", "Rajasthan", "302"],
  ["Jodhpur", "Rajasthan", "342"],
  ["Bengaluru Urban", "Karnataka", "560"],
  ["Mysuru", "Karnataka", "570"],
  ["Chennai", "Tamil Nadu", "600"],
  ["Madurai", "Tamil Nadu", "625"],
  ["Kolkata", "West Bengal", "700"],
  ["Howrah", "West Bengal", "711"],
  ["Ahmedabad", "Gujarat", "380"],
  ["Surat", "Gujarat", "395"],
  ["Hyderabad", "Telangana", "500"],
  ["Bhopal", "Madhya Pradesh", "462"],
  ["Indore", "Madhya Pradesh", "452"],
  ["Ernakulam", "Kerala", "682"],
  ["Thiruvananthapuram", "Kerala", "695"],
  ["Khordha", "Odisha", "751"],
  ["Kamrup Metropolitan", "Assam", "781"],
  ["Ludhiana", "Punjab", "141"],
];
const STATES = [...new Set(PLACES.map(([, state]) => state))];
/** District and state lists {@linkcode touchProfiles} moves citizens to. */
const TOUCH_DISTRICTS = PLACES.map(([d]) => d);
const TOUCH_STATES = PLACES.map(([, s]) => s);

const STREETS = [
  "MG Road",
  "Station Road",
  "Gandhi Nagar",
  "Nehru Street",
  "Temple Street",
  "Market Road",
  "Shivaji Nagar",
  "Ambedkar Colony",
  "Lake View Road",
  "Church Road",
  "Sector 12",
  "Old Bazaar Lane",
];
const LANDMARKS = ["Bus Stand", "Post Office", "Government School", "Hanuman Temple", "Water Tank"];
const EMAIL_DOMAINS = ["example.com", "example.in", "example.org", "mail.example.net"];
const TAGS = [
  "farmer",
  "bpl",
  "senior_citizen",
  "student",
  "widow",
  "disabled",
  "rural",
  "urban",
  "sc_st",
  "minority",
  "migrant_worker",
];
const SOURCE_SYSTEMS = [
  "ration_card",
  "voter_roll",
  "pension_db",
  "land_records",
  "health_registry",
  "school_registry",
];

/** [code prefix, department, scheme names] — 8 × 5 = 40 schemes. */
const DEPARTMENTS: readonly (readonly [string, string, readonly string[]])[] = [
  ["AGRI", "Agriculture & Farmers Welfare", [
    "Kisan Income Support",
    "Crop Insurance Premium Subsidy",
    "Soil Health Card",
    "Micro Irrigation Grant",
    "Farm Mechanisation Subsidy",
  ]],
  ["HLTH", "Health & Family Welfare", [
    "Family Health Insurance Cover",
    "Maternity Nutrition Support",
    "Free Dialysis Programme",
    "Senior Citizen Health Card",
    "Tuberculosis Nutrition Allowance",
  ]],
  ["EDU", "School & Higher Education", [
    "Post-Matric Scholarship",
    "Pre-Matric Scholarship",
    "Girl Child Bicycle Scheme",
    "Merit-cum-Means Scholarship",
    "Free Coaching for Competitive Exams",
  ]],
  ["WCD", "Women & Child Development", [
    "Widow Pension",
    "Girl Child Savings Bond",
    "Working Women Hostel Grant",
    "Anganwadi Nutrition Kit",
    "Single Mother Support",
  ]],
  ["SJE", "Social Justice & Empowerment", [
    "Disability Pension",
    "Inter-caste Marriage Incentive",
    "Assistive Devices Grant",
    "Old Age Pension",
    "Scheduled Caste Entrepreneur Loan",
  ]],
  ["RD", "Rural Development", [
    "Rural Employment Guarantee",
    "Rural Housing Grant",
    "Self-Help Group Revolving Fund",
    "Village Road Connectivity",
    "Rural Drinking Water Connection",
  ]],
  ["HUA", "Housing & Urban Affairs", [
    "Urban Housing Interest Subsidy",
    "Street Vendor Micro Credit",
    "Slum Redevelopment Allotment",
    "Rental Housing for Migrants",
    "Solar Rooftop Subsidy",
  ]],
  ["LAB", "Labour & Employment", [
    "Unorganised Worker Pension",
    "Construction Worker Welfare",
    "Skill Training Stipend",
    "Apprenticeship Wage Support",
    "Unemployment Allowance",
  ]],
];

interface Scheme {
  code: string;
  name: string;
  department: string;
}
const SCHEMES: readonly Scheme[] = DEPARTMENTS.flatMap(([prefix, department, names]) =>
  names.map((name, i) => ({
    code: `${prefix}-${String(i + 1).padStart(3, "0")}`,
    name,
    department,
  }))
);
const SCHEME_CODES = SCHEMES.map((s) => s.code);

/** Skewed pick of a scheme code: the first schemes are the popular ones. */
const popularScheme = (rand: Rand): string => SCHEME_CODES[Math.floor(rand() * rand() * 40)];

const PAGES = [
  "/",
  "/dashboard",
  "/profile",
  "/profile/edit",
  "/applications",
  "/applications/new",
  "/documents",
  "/documents/upload",
  "/eligibility",
  "/help/faq",
  "/search?q=pension&lang=en",
  "/search?q=पेंशन&lang=hi",
];
const DEVICES = ["android", "ios", "web-desktop", "web-mobile", "kiosk"];
/** Feedback comments, chosen to exercise COPY escaping and Unicode. */
const COMMENTS = [
  "Very helpful scheme, got the benefit within two weeks.",
  "Application portal was slow.\nHad to retry three times.",
  "Documents list unclear:\tincome certificate vs. salary slip",
  "Uploaded C:\\Users\\ravi\\income.pdf but the portal rejected it",
  'The officer said "come back tomorrow" three times',
  "योजना बहुत अच्छी है, धन्यवाद!",
  "Good 👍",
  "Status page shows approved but no money yet\r\nPlease check",
  "",
  "\\N is what the SMS said instead of my name",
  "Helpline number never picks up",
  "Easy process. Thanks to the CSC operator.",
  "Please add Tamil language support — எளிதாக இருக்கும்",
  "  leading and trailing spaces  ",
];
const DECISION_REASONS: Record<string, readonly (string | null)[]> = {
  approved: ["All eligibility criteria met", "Approved after field verification", null],
  rejected: [
    "Annual income above the scheme limit",
    "Document mismatch: name on income certificate differs from Aadhaar",
    "Duplicate application for the same household",
    "Age outside the eligible range",
    null,
  ],
};
const DOC_TYPES = [
  "aadhaar_card",
  "income_certificate",
  "caste_certificate",
  "bank_passbook",
  "ration_card",
  "photo",
  "land_record",
];
const REASON_RULES = [
  "income_below_limit",
  "age_in_range",
  "resident_of_state",
  "category_matches",
  "not_already_enrolled",
  "documents_verified",
];

// ---------------------------------------------------------------------------
// People

interface Person {
  gender: string | null;
  firstLatin: string;
  lastLatin: string;
  /** The name as recorded (Devanagari for about 1% of people). */
  name: string;
  nationalId: string;
  phone: string;
  email: string;
  dob: string;
  place: readonly [string, string, string];
}

const ID_SPACE = 900_000_000_000;

/**
 * National IDs are `(id * 982451653 + salt) mod 9e11 + 1e11`: a bijection of
 * citizen IDs onto 12-digit numbers, so they are unique. The multiplication is
 * split (982451653 = 982451 * 1000 + 653) to stay exact in doubles.
 */
function nationalId(id: number, salt: number): string {
  const hi = ((id * 982_451) % ID_SPACE) * 1000 % ID_SPACE;
  const n = (hi + id * 653 + salt) % ID_SPACE + 100_000_000_000;
  const s = String(n);
  return `${s.slice(0, 4)} ${s.slice(4, 8)} ${s.slice(8)}`;
}

function phoneNumber(rand: Rand): string {
  const digits = String(6 + int(rand, 4)) + String(int(rand, 1e9)).padStart(9, "0");
  return `+91 ${digits.slice(0, 5)} ${digits.slice(5)}`;
}

/** Lower-case ASCII form of a Latin name, for e-mail addresses. */
const emailPart = new Map(
  [...FEMALE_FIRST, ...MALE_FIRST, ...LAST].map(([latin]) => [
    latin,
    latin.toLowerCase().replace(/[^a-z]/g, ""),
  ]),
);
const ANY_FIRST = FEMALE_FIRST.concat(MALE_FIRST);
const DEVA_ANY_FIRST = DEVA_FEMALE.concat(DEVA_MALE);

/** Person attributes as a function of the citizen ID (and the seed). */
class People {
  readonly #seed: number;
  readonly #idSalt: number;
  #state = 0;
  /** mulberry32 over #state, reseeded for each person (no allocation per person). */
  readonly #rand: Rand = () => {
    const a = this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  constructor(seed: number) {
    this.#seed = mix(seed, 0x5045_4f50); // "PEOP"
    this.#idSalt = mix(seed, 0x4e49_4400) % 1_000_000_000;
  }

  get(id: number): Person {
    this.#state = mix(this.#seed, id);
    const rand = this.#rand;
    const g = rand();
    const gender = g < 0.485 ? "female" : g < 0.97 ? "male" : g < 0.98 ? "other" : null;
    const deva = rand() < 0.01;
    const firsts = gender === "female"
      ? (deva ? DEVA_FEMALE : FEMALE_FIRST)
      : gender === "male"
      ? (deva ? DEVA_MALE : MALE_FIRST)
      : (deva ? DEVA_ANY_FIRST : ANY_FIRST);
    const first = pick(rand, firsts);
    const last = pick(rand, deva ? DEVA_LAST : LAST);
    const name = deva ? `${first[1]} ${last[1]}` : `${first[0]} ${last[0]}`;
    const f = emailPart.get(first[0]), l = emailPart.get(last[0]);
    const local = rand() < 0.5 ? `${f}.${l}` : `${f}${l}`;
    const email = `${local}${int(rand, 1000)}@${pick(rand, EMAIL_DOMAINS)}`;
    return {
      gender,
      firstLatin: first[0],
      lastLatin: last[0],
      name,
      nationalId: nationalId(id, this.#idSalt),
      phone: phoneNumber(rand),
      email,
      dob: dateOfDay(int(rand, DOB_DAYS)),
      place: pick(rand, PLACES),
    };
  }
}

// ---------------------------------------------------------------------------
// Tables

interface TableSpec {
  table: WarehouseTable;
  columns: string[];
  count: number;
  /** Returns the COPY line of row `i` (0-based); called for i = 0, 1, … in order. */
  row: (i: number) => string;
}

interface Context {
  rows: number;
  seed: number;
  clock: Clock;
  people: People;
  /** The citizen who filed application `id` (used by applications and documents). */
  applicant: (applicationId: number) => number;
}

const tableRand = (ctx: Context, salt: number): Rand => mulberry32(mix(ctx.seed, salt));
const num = (n: number, digits: number): string => n.toFixed(digits);
const orNull = <T>(rand: Rand, pNull: number, value: () => T): T | null =>
  rand() < pNull ? null : value();

function schemeMaster(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 1);
  return {
    table: "eligibility.scheme_master",
    columns: [
      "scheme_code",
      "name",
      "description",
      "department",
      "benefit_amount",
      "eligibility_rules",
      "is_active",
      "launched_on",
      "created_at",
      "updated_at",
    ],
    count: SCHEMES.length,
    row: (i) => {
      const s = SCHEMES[i];
      const description = i === 5
        ? "Nutrition support for pregnant women.\nहिंदी विवरण: गर्भवती महिलाओं के लिए पोषण सहायता।"
        : rand() < 0.1
        ? null
        : `${s.name} under the ${s.department} department.`;
      const benefit = rand() < 0.15
        ? null
        : num(int(rand, 200) * 500 + (rand() < 0.3 ? 0.5 : 0), 2);
      const minAge = pick(rand, [0, 14, 18, 21, 60]);
      const rules = {
        max_annual_income: rand() < 0.2 ? null : (1 + int(rand, 10)) * 50_000,
        min_age: minAge,
        max_age: rand() < 0.6 ? null : minAge + pick(rand, [4, 11, 22, 40]),
        states: subset(rand, STATES, int(rand, 4)),
        required_documents: subset(rand, DOC_TYPES, 1 + int(rand, 3)),
        categories: subset(rand, TAGS, int(rand, 3)),
      };
      const launched = new Date(Date.UTC(2005 + int(rand, 20), int(rand, 12), 1 + int(rand, 28)))
        .toISOString().slice(0, 10);
      return line([
        s.code,
        s.name,
        copyField(description),
        s.department,
        benefit,
        copyField(JSON.stringify(rules)),
        rand() < 0.85 ? "t" : "f",
        launched,
        `${launched}T04:30:00Z`,
        ctx.clock.minute(updatedAny(rand)),
      ]);
    },
  };
}

function profile360(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 2);
  return {
    table: "public.profile_360",
    columns: [
      "citizen_id",
      "full_name",
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
      "updated_at",
    ],
    count: ctx.rows,
    row: (i) => {
      const id = i + 1;
      const p = ctx.people.get(id);
      const moved = rand() < 0.05; // the warehouse knows a newer address than the golden record
      const place = moved ? pick(rand, PLACES) : p.place;
      const r = rand();
      const income = rand() < 0.05 ? null : num(Math.floor(r * r * r * 5_000_000_00) / 100, 2);
      return line([
        String(id),
        p.name,
        rand() < 0.02 ? null : p.nationalId,
        rand() < 0.03 ? null : p.phone,
        rand() < 0.1 ? null : p.email,
        rand() < 0.01 ? null : p.dob,
        p.gender,
        rand() < 0.01 ? null : place[0],
        place[1],
        income,
        orNull(rand, 0.03, () => String(1 + int(rand, 8))),
        orNull(rand, 0.02, () => num(int(rand, 10_001) / 10_000, 4)),
        identifierArray(rand() < 0.3 ? [] : subset(rand, TAGS, 1 + int(rand, 3))),
        ctx.clock.minute(updatedAny(rand)),
      ]);
    },
  };
}

function goldenRecords(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 3);
  return {
    table: "public.golden_records",
    columns: [
      "citizen_id",
      "full_name",
      "national_id",
      "phone",
      "email",
      "address_line",
      "pincode",
      "date_of_birth",
      "source_systems",
      "match_confidence",
      "merged_at",
      "updated_at",
    ],
    count: ctx.rows,
    row: (i) => {
      const id = i + 1;
      const p = ctx.people.get(id);
      const name = rand() < 0.1 && p.name === `${p.firstLatin} ${p.lastLatin}`
        ? `${p.firstLatin} ${String.fromCharCode(65 + int(rand, 26))}. ${p.lastLatin}`
        : p.name;
      const ph = rand();
      const phone = ph < 0.85 ? p.phone : ph < 0.95 ? phoneNumber(rand) : null;
      const house = `${1 + int(rand, 400)}${
        rand() < 0.2 ? "/" + String.fromCharCode(65 + int(rand, 4)) : ""
      }`;
      const a = rand();
      const address = a < 0.03
        ? null
        : a < 0.08
        ? `${house}, ${pick(rand, STREETS)}\nNear ${pick(rand, LANDMARKS)}, ${p.place[0]}`
        : `${house}, ${pick(rand, STREETS)}, ${p.place[0]}`;
      const updated = updatedAny(rand);
      // merged_at: up to a minute before updated_at, or (half the time) further back.
      const mergedUs = updated * MINUTE_US - 1 - int(rand, MINUTE_US) -
        (rand() < 0.5 ? 0 : int(rand, updated) * MINUTE_US);
      const merged = rand() < 0.02 ? null : ctx.clock.micros(Math.max(0, mergedUs));
      return line([
        String(id),
        name,
        rand() < 0.01 ? null : p.nationalId,
        phone,
        rand() < 0.1 ? null : p.email,
        copyField(address),
        rand() < 0.03 ? null : p.place[2] + String(int(rand, 1000)).padStart(3, "0"),
        rand() < 0.02 ? null : p.dob,
        identifierArray(rand() < 0.03 ? [] : subset(rand, SOURCE_SYSTEMS, 1 + int(rand, 4))),
        orNull(rand, 0.01, () => num((5000 + int(rand, 5001)) / 10_000, 4)),
        merged,
        ctx.clock.minute(updated),
      ]);
    },
  };
}

function pageViews(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 4);
  return {
    table: "analytics.page_views",
    columns: ["view_id", "citizen_id", "page", "viewed_at", "duration_ms", "updated_at"],
    count: 3 * ctx.rows,
    row: (i) => {
      const r = rand();
      const m = int(rand, MINUTES - 1);
      const page = rand() < 0.3 ? `/schemes/${popularScheme(rand)}` : pick(rand, PAGES);
      return line([
        String(i + 1),
        String(1 + Math.floor(r * r * ctx.rows)), // a few citizens browse a lot
        page,
        ctx.clock.micros(inMinute(rand, m)),
        rand() < 0.04 ? null : String(int(rand, 300_000)),
        ctx.clock.minute(updatedAfter(rand, m)),
      ]);
    },
  };
}

function sessions(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 5);
  return {
    table: "analytics.sessions",
    columns: ["session_id", "citizen_id", "started_at", "ended_at", "device", "updated_at"],
    count: ctx.rows,
    row: () => {
      const r = rand();
      const start = inMinute(rand, int(rand, MINUTES - 62));
      const open = rand() < 0.03;
      const end = start + 5_000_000 + int(rand, 3_595_000_000); // 5 s .. 1 h
      const lastMinute = Math.floor((open ? start : end) / MINUTE_US);
      return line([
        uuid(rand),
        String(1 + Math.floor(r * r * ctx.rows)),
        ctx.clock.micros(start),
        open ? null : ctx.clock.micros(end),
        rand() < 0.05 ? null : pick(rand, DEVICES),
        ctx.clock.minute(updatedAfter(rand, lastMinute)),
      ]);
    },
  };
}

function feedback(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 6);
  const ratings = ["1", "2", "2", "3", "3", "3", "3", "4", "4", "4", "4", "4", "4", "4"]
    .concat(Array(6).fill("5"));
  return {
    table: "public.feedback",
    columns: [
      "feedback_id",
      "citizen_id",
      "scheme_code",
      "rating",
      "comment",
      "submitted_at",
      "updated_at",
    ],
    count: Math.floor(ctx.rows / 5),
    row: (i) => {
      const m = int(rand, MINUTES - 1);
      return line([
        String(i + 1),
        String(1 + int(rand, ctx.rows)),
        popularScheme(rand),
        pick(rand, ratings),
        rand() < 0.4 ? null : copyField(pick(rand, COMMENTS)),
        ctx.clock.micros(inMinute(rand, m)),
        ctx.clock.minute(updatedAfter(rand, m)),
      ]);
    },
  };
}

function eligibilitySnapshots(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 7);
  return {
    table: "eligibility.eligibility_snapshots",
    columns: [
      "snapshot_id",
      "citizen_id",
      "scheme_code",
      "eligibility_score",
      "is_eligible",
      "reasons",
      "computed_at",
      "updated_at",
    ],
    count: ctx.rows,
    row: (i) => {
      const score = int(rand, 10_001);
      const eligible = rand() < 0.02 ? score < 6000 : score >= 6000; // 2% manual overrides
      const reasons = rand() < 0.05 ? [] : subset(rand, REASON_RULES, 1 + int(rand, 3)).map(
        (rule) => ({
          rule,
          passed: rand() < 0.7,
          weight: int(rand, 101) / 100,
          ...(rand() < 0.1
            ? { note: pick(rand, ['income "verified"\nvia PFMS', "आय सीमा पार", "path\\to\\rule"]) }
            : {}),
        }),
      );
      const m = int(rand, MINUTES - 1);
      return line([
        String(i + 1),
        String(1 + int(rand, ctx.rows)),
        popularScheme(rand),
        num(score / 10_000, 4),
        eligible ? "t" : "f",
        copyField(JSON.stringify(reasons)),
        ctx.clock.micros(inMinute(rand, m)),
        ctx.clock.minute(updatedAfter(rand, m)),
      ]);
    },
  };
}

function applications(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 8);
  const statuses = [
    ...Array(2).fill("draft"),
    ...Array(4).fill("submitted"),
    ...Array(4).fill("under_review"),
    ...Array(6).fill("approved"),
    ...Array(3).fill("rejected"),
    "withdrawn",
  ];
  return {
    table: "decision.applications",
    columns: [
      "application_id",
      "citizen_id",
      "scheme_code",
      "status",
      "decision_reason",
      "submitted_at",
      "decided_at",
      "updated_at",
    ],
    count: Math.floor(ctx.rows / 2),
    row: (i) => {
      const id = i + 1;
      const status: string = pick(rand, statuses);
      const decided = status === "approved" || status === "rejected";
      const submittedMinute = int(rand, MINUTES - 2);
      const decidedMinute = submittedMinute + 1 + int(rand, MINUTES - 2 - submittedMinute);
      const last = decided ? decidedMinute : submittedMinute;
      return line([
        String(id),
        String(ctx.applicant(id)),
        popularScheme(rand),
        status,
        decided ? pick(rand, DECISION_REASONS[status]) : null,
        status === "draft" ? null : ctx.clock.micros(inMinute(rand, submittedMinute)),
        decided ? ctx.clock.micros(inMinute(rand, decidedMinute)) : null,
        ctx.clock.minute(updatedAfter(rand, last)),
      ]);
    },
  };
}

function documents(ctx: Context): TableSpec {
  const rand = tableRand(ctx, 9);
  const applicationCount = Math.floor(ctx.rows / 2);
  return {
    table: "public.documents",
    columns: [
      "document_id",
      "citizen_id",
      "application_id",
      "doc_type",
      "file_name",
      "sha256",
      "size_bytes",
      "uploaded_at",
      "updated_at",
    ],
    count: Math.floor(ctx.rows / 2),
    row: () => {
      const id = uuid(rand);
      const applicationId = applicationCount > 0 && rand() < 0.8
        ? 1 + int(rand, applicationCount)
        : null;
      const citizen = applicationId === null
        ? 1 + int(rand, ctx.rows)
        : ctx.applicant(applicationId);
      const docType = pick(rand, DOC_TYPES);
      const f = rand();
      const fileName = f < 0.6
        ? `${docType}_${2018 + int(rand, 7)}.pdf`
        : f < 0.9
        ? `Scan ${String(1 + int(rand, 28)).padStart(2, "0")}-0${1 + int(rand, 9)}-2024 (${
          1 + int(rand, 3)
        }).jpg`
        : f < 0.97
        ? "आय प्रमाण पत्र.pdf"
        : "IMG_" + String(int(rand, 10_000)).padStart(4, "0") + ".HEIC";
      let sha = "";
      for (let k = 0; k < 8; k++) sha += hex8(rand);
      const r = rand();
      const m = int(rand, MINUTES - 1);
      return line([
        id,
        String(citizen),
        applicationId === null ? null : String(applicationId),
        docType,
        fileName,
        sha,
        String(20_000 + Math.floor(r * r * r * 15_000_000)),
        ctx.clock.micros(inMinute(rand, m)),
        ctx.clock.minute(updatedAfter(rand, m)),
      ]);
    },
  };
}

function* copyText(spec: TableSpec): Generator<string> {
  const CHUNK = 256 * 1024;
  let buffer = "";
  for (let i = 0; i < spec.count; i++) {
    buffer += spec.row(i);
    if (buffer.length >= CHUNK) {
      yield buffer;
      buffer = "";
    }
  }
  if (buffer) yield buffer;
}

/**
 * Replaces the contents of one table, in one transaction: drop its indexes
 * (and primary key / unique constraints no foreign key depends on), TRUNCATE,
 * COPY ... FREEZE, rebuild the indexes, ANALYZE. Building an index once over
 * the loaded rows is several times faster than maintaining it row by row, and
 * if anything fails the transaction rolls back, indexes included.
 */
async function loadTable(sql: postgres.Sql, spec: TableSpec): Promise<void> {
  await sql.begin(async (tx) => {
    const indexes = await tx<{ drop: string; create: string }[]>`
      SELECT CASE WHEN c.oid IS NULL
               THEN format('DROP INDEX %s', i.indexrelid::regclass)
               ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, c.conname)
             END AS drop,
             CASE WHEN c.oid IS NULL
               THEN pg_get_indexdef(i.indexrelid)
               ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s',
                           i.indrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
             END AS create
      FROM pg_index i
      LEFT JOIN pg_constraint c
        ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')
      WHERE i.indrelid = ${spec.table}::regclass
        AND NOT i.indisreplident
        AND NOT EXISTS (
          SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid
        )
      ORDER BY c.oid IS NULL, i.indexrelid`;
    // Table and column names are constants of this module.
    await tx.unsafe(`TRUNCATE ${spec.table}`);
    for (const index of indexes) await tx.unsafe(index.drop);
    const writable = await tx.unsafe(
      `COPY ${spec.table} (${spec.columns.join(", ")}) FROM STDIN (FREEZE)`,
    ).writable();
    await pipeline(Readable.from(copyText(spec)), writable);
    for (const index of indexes) await tx.unsafe(index.create);
    await tx.unsafe(`ANALYZE ${spec.table}`);
  });
}

/** The most recent UTC midnight. */
function lastMidnight(): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

const quiet = { onnotice: () => {} };

/**
 * Replaces the contents of the warehouse tables (created by `warehouse.sql`)
 * with deterministic synthetic data. Each table is loaded in its own
 * transaction (TRUNCATE, COPY FREEZE, index rebuild, ANALYZE); `concurrency`
 * tables at a time. Returns the row count per table ("schema.table").
 */
export async function generateWarehouse(
  url: string,
  options: GenerateOptions,
): Promise<Record<string, number>> {
  const { rows } = options;
  if (!Number.isSafeInteger(rows) || rows < 1) {
    throw new RangeError(`rows must be a positive integer, got ${rows}`);
  }
  const seed = options.seed ?? 42;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const asOfMs = new Date(options.asOf ?? lastMidnight()).getTime();
  if (Number.isNaN(asOfMs)) throw new RangeError(`asOf is not a valid date: ${options.asOf}`);
  const concurrency = Math.max(1, options.concurrency ?? 3);

  const seed32 = Number(BigInt.asUintN(32, BigInt(seed)));
  const applicantSalt = mix(seed32, 0x4150_5053); // "APPS"
  const ctx: Context = {
    rows,
    seed: seed32,
    clock: new Clock(Math.floor(asOfMs / 60_000) * 60_000),
    people: new People(seed32),
    applicant: (applicationId) => 1 + (mix(applicantSalt, applicationId) % rows),
  };
  const specs = [
    pageViews,
    profile360,
    goldenRecords,
    sessions,
    eligibilitySnapshots,
    applications,
    documents,
    feedback,
    schemeMaster,
  ].map((make) => make(ctx));

  const sql = postgres(url, { max: concurrency, ...quiet });
  try {
    const queue = [...specs];
    const worker = async () => {
      for (let spec = queue.shift(); spec; spec = queue.shift()) {
        const started = performance.now();
        await loadTable(sql, spec);
        options.onTable?.(spec.table, spec.count, performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    await sql.end();
  }
  return Object.fromEntries(specs.map((s) => [s.table, s.count]));
}

/** Runs `warehouse.sql` or `citizen.sql` (next to this module) against `url`. */
export async function applySchema(
  url: string,
  file: "warehouse.sql" | "citizen.sql",
): Promise<void> {
  const text = await Deno.readTextFile(new URL(`./${file}`, import.meta.url));
  const sql = postgres(url, { max: 1, ...quiet });
  try {
    await sql.unsafe(text); // no parameters: simple protocol, several statements allowed
  } finally {
    await sql.end();
  }
}

/**
 * Changes phone, district/state and confidence_score of `fraction` (0..1) of
 * the `public.profile_360` rows in one UPDATE (one transaction, so the trigger
 * gives them all the same `updated_at`). Which rows, and their new values,
 * depend only on `seed`. Returns the number of rows updated.
 */
export async function touchProfiles(url: string, fraction: number, seed = 1): Promise<number> {
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new RangeError(`fraction must be between 0 and 1, got ${fraction}`);
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const sql = postgres(url, { max: 1, ...quiet });
  try {
    const result = await sql`
      WITH picked AS (
        SELECT citizen_id,
               hashint8extended(citizen_id, ${seed + 1}::bigint) & 9223372036854775807 AS h
        FROM public.profile_360
        ORDER BY hashint8extended(citizen_id, ${seed}::bigint), citizen_id
        LIMIT (SELECT round(count(*) * ${fraction}::float8)::bigint FROM public.profile_360)
      )
      UPDATE public.profile_360 p SET
        phone = '+91 ' || (6 + x.h % 4)::text || lpad((x.h / 4 % 10000)::text, 4, '0')
                || ' ' || lpad((x.h / 40000 % 100000)::text, 5, '0'),
        district = (${TOUCH_DISTRICTS}::text[])[1 + (x.h / 4000000000 % ${TOUCH_DISTRICTS.length})::int],
        state = (${TOUCH_STATES}::text[])[1 + (x.h / 4000000000 % ${TOUCH_STATES.length})::int],
        confidence_score = (x.h / 7 % 10001) / 10000.0
      FROM picked x
      WHERE p.citizen_id = x.citizen_id`;
    return result.count;
  } finally {
    await sql.end();
  }
}

// ---------------------------------------------------------------------------
// CLI

const USAGE =
  `Usage: deno run -A examples/warehouse_to_citizen/generate.ts --url URL --rows N [options]

Applies warehouse.sql to URL (idempotent), then replaces the warehouse tables'
contents with N citizens of deterministic synthetic data.

  --url URL           the smart_warehouse database (required)
  --rows N            number of citizens (required unless --touch)
  --seed S            PRNG seed (default 42)
  --as-of ISO         end of the 30-day timestamp window (default: last UTC midnight)
  --concurrency C     tables loaded at the same time (default 3)
  --citizen-url URL   also apply citizen.sql to this (smart_citizen) database
  --skip-schema       do not apply warehouse.sql first
  --touch FRACTION    instead of generating, update FRACTION (0..1) of profile_360
                      rows in one transaction (uses --seed, default 1)
`;

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: "string" },
      rows: { type: "string" },
      seed: { type: "string" },
      "as-of": { type: "string" },
      concurrency: { type: "string" },
      "citizen-url": { type: "string" },
      "skip-schema": { type: "boolean", default: false },
      touch: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const integer = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isSafeInteger(n)) throw new Error(`--${name} must be an integer, got "${text}"`);
    return n;
  };
  const url = values.url;
  if (!url) {
    console.error(`--url is required\n\n${USAGE}`);
    return 2;
  }
  const seed = integer("seed", values.seed);
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(2)} s`;

  if (values.touch !== undefined) {
    const fraction = Number(values.touch);
    const count = await touchProfiles(url, fraction, seed ?? 1);
    console.log(`touched ${count} public.profile_360 rows in ${elapsed()}`);
    return 0;
  }
  const rows = integer("rows", values.rows);
  if (rows === undefined) {
    console.error(`--rows is required\n\n${USAGE}`);
    return 2;
  }
  if (!values["skip-schema"]) await applySchema(url, "warehouse.sql");
  if (values["citizen-url"]) await applySchema(values["citizen-url"], "citizen.sql");
  const asOf = values["as-of"] ?? lastMidnight().toISOString();
  const counts = await generateWarehouse(url, {
    rows,
    seed: seed ?? 42,
    asOf,
    concurrency: integer("concurrency", values.concurrency),
    onTable: (table, count, ms) =>
      console.log(
        `${table.padEnd(36)} ${String(count).padStart(10)} rows ${
          (ms / 1000).toFixed(2).padStart(7)
        } s`,
      ),
  });
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(
    `generated ${total} rows (${rows} citizens, seed ${seed ?? 42}, as of ${asOf}) in ${elapsed()}`,
  );
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}
