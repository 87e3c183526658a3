/**
 * `mask`: masks personal fields of every row image (`before`, `after`, batch
 * rows) and of the key where a masked field is a key column, including the
 * old and new keys a key change carries in its `__debezium.oldkey` and
 * `__debezium.newkey` headers.
 *
 * `fields` lists the fields; `strategy` and the other options set defaults,
 * and `fields.<name>.<option>` overrides any of them for one field:
 *
 * | strategy | result |
 * |---|---|
 * | `hmac` | HMAC-SHA256 of the value's text under `key`, as 64 hex digits: a stable pseudonym |
 * | `hash` | SHA-256 of `salt` + the value's text, as 64 hex digits |
 * | `redact` (default) | `replacement`, or without it the empty value of the type ("" , 0, false, …) as Kafka's MaskField does |
 * | `null` | null |
 * | `truncate` | the first `length` characters; a value no longer than that stays whole |
 * | `partial` | keeps `keep.first` / `keep.last` characters, the rest becomes `mask.char` (`mask.length` of them when set, hiding the length); values too short are masked whole |
 * | `email` | masks the local part (keeping `keep.first` characters) and keeps `@domain` |
 * | `date` | the first day of the month or year (`granularity`), same type as the input |
 * | `number` | rounds down to a multiple of `bucket.size` |
 * | `fpe` | FF1 format-preserving encryption under `key` (hex AES key): same length, alphabet characters encrypted in place, others kept in clear (an email under `digits` keeps its letters: pick the alphabet that covers the value); a value with fewer alphabet characters than FF1's minimum (6 digits, 4 alphanumerics), or that is not a string or a number, fails its record; reversible with {@linkcode fpeDecrypt} |
 *
 * `key` is a secret: set it with `${env:…}` or `${file:…}`. `hmac` refuses a
 * key shorter than 32 bytes and there is no default key; `fpe` needs 32, 48
 * or 64 hex digits.
 *
 * A listed field missing from a batch row, an insert or a snapshot read is
 * an error, never a silent no-op (a misspelt field would otherwise pass in
 * clear); {@linkcode checkMaskFields} finds such fields at validation when
 * the source's columns are known. A field that the kind of event leaves out
 * is skipped: a delete's `before` image holds only the key under the
 * default replica identity, an update's `after` leaves unchanged TOAST
 * values out (the sink keeps their stored value), and a row `unwrap`
 * rewrote from a delete is key-only. Tombstones and truncates carry no row;
 * their key is still masked. Debezium's `__debezium_unavailable_value`
 * placeholder is left as it is.
 *
 * Records that carry schemas (postgres_cdc's, for JsonConverter's
 * `schemas.enable` and Avro) keep schemas that fit the masked values: see
 * `_schemas.ts`.
 *
 * A record that fails in this transform (a value its strategy cannot read)
 * is dead-lettered as it entered the transform, with clear values: that is
 * what can be repaired and replayed. A dead-letter destination of a
 * pipeline that masks must therefore sit on the source's side of the trust
 * boundary. A record that fails in a later step or in the sink is
 * dead-lettered as that step received it, masked.
 *
 * ```json
 * {
 *   "transforms": "mask",
 *   "transforms.mask.type": "mask",
 *   "transforms.mask.fields": "full_name,phone,email,national_id,birth_date,income",
 *   "transforms.mask.strategy": "hmac",
 *   "transforms.mask.key": "${env:SLUICE_MASK_KEY}",
 *   "transforms.mask.fields.phone.strategy": "partial",
 *   "transforms.mask.fields.phone.keep.last": "2",
 *   "transforms.mask.fields.email.strategy": "email",
 *   "transforms.mask.fields.national_id.strategy": "fpe",
 *   "transforms.mask.fields.national_id.key": "${file:/run/secrets/fpe_key}",
 *   "transforms.mask.fields.birth_date.strategy": "date",
 *   "transforms.mask.fields.birth_date.granularity": "year",
 *   "transforms.mask.fields.income.strategy": "number",
 *   "transforms.mask.fields.income.bucket.size": "10000"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../../api/plugin.ts";
import { isChangeEvent, type Row, type SluiceRecord } from "../../api/record.ts";
import { integer, list } from "../../api/options.ts";
import { isRow, mapKey, mayLack, UNAVAILABLE_VALUE } from "../_shared.ts";
import { type AlphabetName, ALPHABETS } from "./_ff1.ts";
import { compileRule, type Masker, type MaskRule, STRATEGIES } from "./_strategies.ts";
import { MaskedSchemas } from "./_schemas.ts";

export { fpeDecrypt, fpeEncrypt, type FpeOptions } from "./_ff1.ts";
export type { MaskRule, Strategy } from "./_strategies.ts";

const nonNegative = () => integer().pipe(z.number().min(0, "must be 0 or more"));
const positiveNumber = () =>
  z.union([z.number(), z.string().regex(/^\s*\d+(\.\d+)?\s*$/, "expected a number")])
    .transform(Number).pipe(z.number().positive("must be greater than 0"));

/** The options every field can override, without defaults. */
const OPTIONS = {
  strategy: z.enum(STRATEGIES),
  replacement: z.string().min(1, "must not be empty; omit it to empty the value"),
  // Numbers are accepted (as text) so that no type error can quote a secret.
  key: z.union([z.string(), z.number().transform(String)]),
  salt: z.union([z.string(), z.number().transform(String)]).pipe(
    z.string().min(1, "must not be empty"),
  ),
  "mask.char": z.string().refine((s) => Array.from(s).length === 1, "must be one character"),
  "keep.first": nonNegative(),
  "keep.last": nonNegative(),
  "mask.length": integer().pipe(z.number().positive("must be a positive integer")),
  length: integer().pipe(z.number().positive("must be a positive integer")),
  granularity: z.enum(["month", "year"]),
  "bucket.size": positiveNumber(),
  "fpe.alphabet": z.enum(Object.keys(ALPHABETS) as [AlphabetName, ...AlphabetName[]]),
  "fpe.tweak": z.string().regex(/^(?:[0-9a-fA-F]{2})*$/, "must be hex digits"),
};
type OptionName = keyof typeof OPTIONS;
const OPTION_NAMES = (Object.keys(OPTIONS) as OptionName[]).sort((a, b) => b.length - a.length);
const SECRET: ReadonlySet<string> = new Set(["key", "salt"]);

const shape = {
  fields: list().pipe(z.array(z.string().min(1)).min(1, "must name at least one field")).describe(
    "The fields to mask, comma-separated. Per field, `fields.<name>.<option>` overrides any option below.",
  ),
  strategy: OPTIONS.strategy.default("redact").describe(
    "How to mask: hmac, hash, redact, null, truncate, partial, email, date, number or fpe. truncate, partial and email work on text, and on each element of an array; a JSON object or bytes fails its record (use hmac, hash, redact or null).",
  ),
  replacement: OPTIONS.replacement.optional().describe(
    'redact: the constant that replaces the value; without it the value becomes empty ("", 0, false…).',
  ),
  key: OPTIONS.key.optional().describe(
    "Secret for hmac (at least 32 bytes) and fpe (32, 48 or 64 hex digits). Set it from ${env:…} or ${file:…}.",
  ),
  salt: OPTIONS.salt.optional().describe("hash: the salt hashed before the value; a secret."),
  "mask.char": OPTIONS["mask.char"].default("*").describe(
    "partial and email: the character that replaces masked characters.",
  ),
  "keep.first": OPTIONS["keep.first"].default(0).describe(
    "partial and email: how many leading characters stay in clear.",
  ),
  "keep.last": OPTIONS["keep.last"].default(0).describe(
    "partial: how many trailing characters stay in clear.",
  ),
  "mask.length": OPTIONS["mask.length"].optional().describe(
    "partial and email: write exactly this many mask characters for the hidden part, whatever its length, so the length of a name or mailbox does not leak; default: one per hidden character.",
  ),
  length: OPTIONS.length.optional().describe("truncate: how many characters to keep."),
  granularity: OPTIONS.granularity.default("month").describe(
    "date: generalise to the first day of the month or of the year.",
  ),
  "bucket.size": OPTIONS["bucket.size"].optional().describe(
    "number: values round down to a multiple of this.",
  ),
  "fpe.alphabet": OPTIONS["fpe.alphabet"].default("digits").describe(
    "fpe: digits (radix 10), lowercase (0-9a-z), uppercase (0-9A-Z) or alphanumeric (radix 62); other characters stay in place.",
  ),
  "fpe.tweak": OPTIONS["fpe.tweak"].optional().describe("fpe: optional public tweak, as hex."),
};

type Context = { addIssue(issue: z.core.$ZodRawIssue): void };

/** The option each strategy cannot do without, and what to tell a user who left it out. */
const REQUIRED: Partial<Record<MaskRule["strategy"], [OptionName, string]>> = {
  hmac: ["key", "; set it from ${env:…} or ${file:…} (there is no default key)"],
  fpe: ["key", "; set it from ${env:…} or ${file:…}"],
  hash: ["salt", ""],
  truncate: ["length", ""],
  number: ["bucket.size", ""],
};

/**
 * zod skips the transform below once any option is invalid, and with it the
 * check that the strategy's required option is there. This names it anyway,
 * so that one `validate` lists every problem rather than one more per fix.
 */
const requiredDespiteInvalid = z.superRefine((input: Row, ctx) => {
  const strategy = OPTIONS.strategy.safeParse(input.strategy ?? "redact");
  const required = strategy.success ? REQUIRED[strategy.data] : undefined;
  if (!required) return;
  const [name, hint] = required;
  const perField = Object.keys(input).some((key) =>
    key.startsWith("fields.") && (key.endsWith(`.${name}`) || key.endsWith(".strategy"))
  );
  if (input[name] === undefined && !perField) {
    issue(ctx, name, `is required for the ${strategy.data} strategy${hint}`);
  }
}, { when: (payload) => payload.issues.length > 0 });

const config = z.object(shape).catchall(z.unknown()).check(requiredDespiteInvalid).transform((
  input,
  ctx,
) => {
  const rules = resolveRules(input, ctx);
  return { fields: input.fields, rules };
});

/** The parsed config of `mask`. */
export type MaskConfig = z.output<typeof config>;

function resolveRules(input: z.output<z.ZodObject<typeof shape>> & Row, ctx: Context): MaskRule[] {
  const perField = new Map<string, Partial<Record<OptionName, unknown>>>();
  const listed = new Set<string>();
  for (const field of input.fields) {
    if (listed.has(field)) issue(ctx, "fields", `lists "${field}" twice`);
    listed.add(field);
    perField.set(field, {});
  }
  for (const [key, value] of Object.entries(input)) {
    if (key in shape) continue;
    const option = OPTION_NAMES.find((name) =>
      key.startsWith("fields.") && key.endsWith(`.${name}`)
    );
    const field = option && key.slice("fields.".length, -option.length - 1);
    if (!option || !field) {
      ctx.addIssue({ code: "unrecognized_keys", keys: [key], input: undefined, path: [] });
      continue;
    }
    if (!listed.has(field)) {
      issue(ctx, key, `configures field "${field}", which is not listed in "fields"`);
      continue;
    }
    const parsed = OPTIONS[option].safeParse(value, { reportInput: !SECRET.has(option) });
    if (parsed.success) perField.get(field)![option] = parsed.data;
    else {
      for (const problem of parsed.error.issues) {
        const input = SECRET.has(option) ? undefined : (problem as { input?: unknown }).input;
        ctx.addIssue({ ...problem, input, path: [key, ...problem.path] } as z.core.$ZodRawIssue);
      }
    }
  }
  const rules: MaskRule[] = [];
  // One message per option and problem, naming the fields it concerns.
  const problems = new Map<string, { path: string; message: string; fields: string[] }>();
  for (const [field, own] of perField) {
    const pick = <K extends OptionName>(name: K) =>
      (name in own ? own[name] : input[name]) as z.output<typeof OPTIONS[K]> | undefined;
    const where = (name: OptionName) => name in own ? `fields.${field}.${name}` : name;
    const rule: MaskRule = {
      field,
      strategy: pick("strategy")!,
      replacement: pick("replacement"),
      key: pick("key"),
      salt: pick("salt"),
      maskChar: pick("mask.char")!,
      keepFirst: pick("keep.first")!,
      keepLast: pick("keep.last")!,
      maskLength: pick("mask.length"),
      length: pick("length"),
      granularity: pick("granularity")!,
      bucketSize: pick("bucket.size"),
      alphabet: pick("fpe.alphabet")!,
      tweak: pick("fpe.tweak"),
    };
    checkRule(rule, where, (path, message) => {
      const id = `${path}\u0000${message}`;
      const problem = problems.get(id) ?? { path, message, fields: [] };
      problem.fields.push(field);
      problems.set(id, problem);
    });
    rules.push(rule);
  }
  for (const { path, message, fields } of problems.values()) {
    const names = fields.map((name) => `"${name}"`).join(", ");
    issue(ctx, path, `${message} (field${fields.length > 1 ? "s" : ""} ${names})`);
  }
  return rules;
}

function checkRule(
  rule: MaskRule,
  where: (name: OptionName) => string,
  report: (path: string, message: string) => void,
): void {
  const of = `for the ${rule.strategy} strategy`;
  const required = (value: unknown) => {
    const [name, hint] = REQUIRED[rule.strategy]!;
    if (value === undefined) report(where(name), `is required ${of}${hint}`);
    return value !== undefined;
  };
  switch (rule.strategy) {
    case "hmac": {
      if (!required(rule.key)) return;
      const bytes = new TextEncoder().encode(rule.key).length;
      if (bytes < 32) {
        report(where("key"), `must be at least 32 bytes ${of}: the key given has ${bytes}`);
      }
      return;
    }
    case "fpe": {
      if (!required(rule.key)) return;
      const valid = /^[0-9a-fA-F]*$/.test(rule.key!) && [32, 48, 64].includes(rule.key!.length);
      if (!valid) {
        report(
          where("key"),
          `must be an AES key of 32, 48 or 64 hex digits ${of}: the key given has ${
            rule.key!.length
          } characters${/^[0-9a-fA-F]*$/.test(rule.key!) ? "" : " and is not hex"}`,
        );
      }
      return;
    }
    case "hash":
      required(rule.salt);
      return;
    case "truncate":
      required(rule.length);
      return;
    case "number":
      required(rule.bucketSize);
      return;
  }
}

function issue(ctx: Context, path: string, message: string): void {
  ctx.addIssue({ code: "custom", message, path: [path], input: undefined });
}

/**
 * The configured fields that are not among `knownColumns`, as config issues
 * (path relative to the transform's options). For the runtime to call when a
 * source can tell its columns before anything runs.
 */
export function checkMaskFields(
  config: MaskConfig,
  knownColumns: Iterable<string>,
): { path: string; message: string }[] {
  const known = new Set(knownColumns);
  const names = [...known].sort().join(", ");
  return config.fields.filter((field) => !known.has(field)).map((field) => ({
    path: "fields",
    message: `names "${field}", which is not a column of the source (columns: ${names})`,
  }));
}

/** Masks personal fields with one strategy per field. */
export const mask = defineTransform({
  name: "mask",
  aliases: ["org.apache.kafka.connect.transforms.MaskField$Value"],
  hidesData: true,
  summary:
    "Masks fields: hmac pseudonyms, hash, redact, null, truncate, partial, email, date, number buckets, FF1 fpe.",
  config,
  create(options) {
    const maskers: [string, Masker][] = options.rules.map((
      rule,
    ) => [rule.field, compileRule(rule)]);
    const schemas = new MaskedSchemas(new Map(options.rules.map((r) => [r.field, r.strategy])));
    const maskRow = (record: SluiceRecord, row: Row, image: "before" | "after" | "row"): Row => {
      const out: Row = { ...row };
      let lacks: ((field: string) => boolean) | undefined;
      for (const [field, masker] of maskers) {
        if (!(field in row)) {
          // Absent because the event kind or TOAST left it out: nothing to mask.
          // Absent otherwise (a column renamed at the source): its values may be
          // here under another name, so the record fails.
          if ((lacks ??= mayLack(record, image, row))(field)) continue;
          throw missing(record, field, row);
        }
        // Debezium's stand-in for an unchanged TOAST value is no personal data,
        // and the sink must still recognise it.
        if (row[field] === UNAVAILABLE_VALUE) continue;
        out[field] = masker(row[field]);
      }
      return out;
    };
    const maskKey = (row: Row): Row => {
      let out: Row | undefined;
      for (const [field, masker] of maskers) {
        if (field in row) (out ??= { ...row })[field] = masker(row[field]);
      }
      return out ?? row;
    };
    // The masked copy carries the masked schemas, also where no value changed
    // (a tombstone): a key's fields keep one type in every record of a topic.
    const typed = (record: SluiceRecord, masked: SluiceRecord, changeEvent: boolean) =>
      record.schemas ? { ...masked, schemas: schemas.of(record.schemas, changeEvent) } : masked;
    return {
      apply(record) {
        const value = record.value;
        if (value === null || value === undefined) {
          return mapKey(typed(record, record, false), maskKey);
        }
        if (!isRow(value)) {
          throw new Error(
            `mask: the value of a record on "${record.topic}" is not a row, so its fields cannot be masked`,
          );
        }
        const changeEvent = isChangeEvent(value);
        const masked: SluiceRecord = changeEvent
          ? {
            ...record,
            value: {
              ...value,
              before: value.before && maskRow(record, value.before, "before"),
              after: value.after && maskRow(record, value.after, "after"),
            },
          }
          : { ...record, value: maskRow(record, value, "row") };
        return mapKey(typed(record, masked, changeEvent), maskKey);
      },
    };
  },
});

function missing(record: SluiceRecord, field: string, row: Row): Error {
  const columns = Object.keys(row);
  const shown = columns.slice(0, 20).join(", ") + (columns.length > 20 ? ", …" : "");
  return new Error(
    `mask: field "${field}" is not in a record on "${record.topic}" (its columns: ${shown}); ` +
      `if the column was renamed at the source, mask its new name too; else remove it from ` +
      `"fields" or fix the source`,
  );
}
