/**
 * Kafka Connect's Avro converters (Confluent's `AvroConverter`, Apicurio's)
 * on Sluice's side: Connect schemas registered under Kafka Connect's subject
 * names (TopicNameStrategy: `<topic>-key`, `<topic>-value`), values in the
 * registry's wire format, and back.
 *
 * Registering and fetching are asynchronous and happen once per schema:
 * callers `prepare` a batch, then encode or decode its messages
 * synchronously from the caches.
 *
 * @module
 */
import type avro from "avsc";
import { Buffer } from "node:buffer";
import type { ConnectSchema } from "../api/schema.ts";
import {
  avroDatum,
  type AvroSchema,
  avroSchemaOf,
  avroType,
  connectSchemaOfAvro,
  valueOfDatum,
} from "./connect_avro.ts";
import {
  frame,
  type RegisteredSchema,
  type SchemaReference,
  type SchemaRegistry,
  unframe,
} from "./schema_registry.ts";

/** Kafka Connect's JSON converter, the default. */
export const JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter";

/** The Avro converters' class names (Confluent's, Apicurio's); both mean the same here. */
export const AVRO_CONVERTERS: readonly string[] = [
  "io.confluent.connect.avro.AvroConverter",
  "io.apicurio.registry.utils.converter.AvroConverter",
];

/** Which part of a message a schema describes; names the subject's suffix. */
export type Side = "key" | "value";

interface Compiled {
  readonly text: string;
  readonly type: avro.Type;
}

/** Writes values as Avro under their Connect schemas, registering the schemas. */
export class AvroWriter {
  readonly #registry: SchemaRegistry;
  readonly #compiled = new WeakMap<ConnectSchema, Compiled>();
  readonly #ids = new WeakMap<ConnectSchema, Map<string, number>>();

  /** A writer registering with `registry`. */
  constructor(registry: SchemaRegistry) {
    this.#registry = registry;
  }

  /**
   * Registers `schema` for `topic`'s key or value unless done already.
   * Throws a `RetriableError` when the registry is unreachable, and another
   * error when the schema has no Avro form or the registry refuses it.
   */
  async prepare(topic: string, side: Side, schema: ConnectSchema): Promise<void> {
    const subject = `${topic}-${side}`;
    let ids = this.#ids.get(schema);
    if (ids?.has(subject)) return;
    const { text } = this.#compile(schema);
    const id = await this.#registry.register(subject, text);
    if (!ids) this.#ids.set(schema, ids = new Map());
    ids.set(subject, id);
  }

  /** Whether `prepare` already registered this schema for `topic`'s key or value. */
  ready(topic: string, side: Side, schema: ConnectSchema): boolean {
    return this.#ids.get(schema)?.has(`${topic}-${side}`) ?? false;
  }

  /** The framed Avro bytes of `value`; `prepare` must have run for this schema and topic. */
  encode(topic: string, side: Side, schema: ConnectSchema, value: unknown): Uint8Array {
    const id = this.#ids.get(schema)?.get(`${topic}-${side}`);
    if (id === undefined) throw new Error(`no registered schema for ${topic}-${side}`);
    const { type } = this.#compile(schema);
    const datum = avroDatum(schema, value);
    try {
      return frame(id, type.toBuffer(datum));
    } catch {
      // avsc's own message dumps the whole schema; name the fields instead.
      const paths: string[] = [];
      type.isValid(datum, { errorHook: (path) => paths.push(path.join(".")) });
      throw new Error(`the value does not fit its Avro schema at ${paths.join(", ") || "the top"}`);
    }
  }

  #compile(schema: ConnectSchema): Compiled {
    let compiled = this.#compiled.get(schema);
    if (!compiled) {
      const avroSchema = avroSchemaOf(schema);
      compiled = { text: JSON.stringify(avroSchema), type: avroType(avroSchema) };
      this.#compiled.set(schema, compiled);
    }
    return compiled;
  }
}

type Readable =
  | { readonly type: avro.Type; readonly connect: ConnectSchema; readonly error?: undefined }
  | { readonly error: string };

/** Reads framed Avro messages, fetching their writer schemas by id. */
export class AvroReader {
  readonly #registry: SchemaRegistry;
  readonly #schemas = new Map<number, Readable>();

  /** A reader fetching schemas from `registry`. */
  constructor(registry: SchemaRegistry) {
    this.#registry = registry;
  }

  /**
   * Fetches the schemas of these messages that are not cached yet. Bytes not
   * in the wire format, and ids the registry does not know, are left for
   * `decode` to report per message; an unreachable registry throws.
   */
  async prepare(messages: Iterable<Uint8Array | null>): Promise<void> {
    const wanted = new Set<number>();
    for (const bytes of messages) {
      if (bytes === null || bytes.length < 5 || bytes[0] !== 0) continue;
      const id = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
      if (!this.#schemas.has(id)) wanted.add(id);
    }
    for (const id of wanted) {
      let registered: RegisteredSchema;
      try {
        registered = await this.#registry.schemaById(id);
      } catch (error) {
        if ((error as Error).name === "RegistryRefusal") continue;
        throw error;
      }
      // Referenced schemas first, each once, so their names are defined.
      const referenced: AvroSchema[] = [];
      const seen = new Set<string>();
      const resolve = async (references: readonly SchemaReference[]) => {
        for (const { subject, version } of references) {
          if (seen.has(`${subject}/${version}`)) continue;
          seen.add(`${subject}/${version}`);
          const reference = await this.#registry.schemaByVersion(subject, version);
          await resolve(reference.references);
          referenced.push(JSON.parse(reference.schema));
        }
      };
      try {
        await resolve(registered.references);
      } catch (error) {
        // Left for decode to report per message, as an unknown id is.
        if ((error as Error).name === "RegistryRefusal") continue;
        throw error;
      }
      try {
        const avroSchema = JSON.parse(registered.schema);
        const types = {};
        for (const reference of referenced) avroType(reference, types);
        this.#schemas.set(id, {
          type: avroType(avroSchema, types),
          connect: connectSchemaOfAvro(avroSchema, referenced),
        });
      } catch (error) {
        // A schema that cannot be read fails its messages, not the pipeline.
        this.#schemas.set(id, { error: (error as Error).message });
      }
    }
  }

  /** The Sluice value of framed Avro bytes; throws a message-level error. */
  decode(bytes: Uint8Array): unknown {
    const { id, payload } = unframe(bytes);
    const schema = this.#schemas.get(id);
    if (!schema) throw new Error(`the schema registry has no schema with id ${id}`);
    if (schema.error !== undefined) {
      throw new Error(`the writer schema ${id} cannot be read: ${schema.error}`);
    }
    return valueOfDatum(
      schema.connect,
      schema.type.fromBuffer(Buffer.from(payload.buffer, payload.byteOffset, payload.length)),
    );
  }
}
