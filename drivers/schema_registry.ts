/**
 * A client of a schema registry's Confluent-compatible REST API (Confluent
 * Schema Registry, Apicurio's `/apis/ccompat/v7`, …) and the Confluent wire
 * format around Avro: magic byte 0, the schema id as a 4-byte big-endian
 * integer, then the Avro binary.
 *
 * Ids are cached for the life of the client: a registered schema's id never
 * changes, so each schema is registered once per subject and each id fetched
 * once. A registry that cannot be reached is a retriable error; one that
 * refuses a schema (incompatible, invalid) is a permanent one whose message
 * quotes the registry's.
 *
 * @module
 */
import { RetriableError } from "../api/errors.ts";

const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

/** Thrown when the registry answers with an error (not when it cannot be reached). */
export class RegistryRefusal extends Error {
  /** The HTTP status of the answer. */
  readonly status: number;

  /** Builds the error from the registry's answer. */
  constructor(message: string, status: number) {
    super(message);
    this.name = "RegistryRefusal";
    this.status = status;
  }
}

/** A schema by name in another subject, which a registered schema refers to. */
export interface SchemaReference {
  readonly name: string;
  readonly subject: string;
  readonly version: number;
}

/** A registered schema: its text and the schemas it refers to by name. */
export interface RegisteredSchema {
  readonly schema: string;
  readonly references: readonly SchemaReference[];
}

/** A schema registry's Confluent-compatible API at `url`, with caches. */
export class SchemaRegistry {
  readonly #url: string;
  readonly #ids = new Map<string, Promise<number>>();
  readonly #schemas = new Map<string, Promise<RegisteredSchema>>();

  /** A client of the API at `url` (for Apicurio: `http://host:port/apis/ccompat/v7`). */
  constructor(url: string) {
    this.#url = url.replace(/\/+$/, "");
  }

  /**
   * The id of `schema` (Avro schema JSON text) under `subject`, registering
   * it when it is new there (a new version, if the subject's compatibility
   * rule accepts it).
   */
  register(subject: string, schema: string): Promise<number> {
    const key = `${subject}\u0000${schema}`;
    let id = this.#ids.get(key);
    if (!id) {
      id = this.#call(`/subjects/${encodeURIComponent(subject)}/versions`, {
        method: "POST",
        body: JSON.stringify({ schema }),
      }).then((body) => (body as { id: number }).id);
      // A failure is not cached: the next record asks again.
      id.catch(() => this.#ids.delete(key));
      this.#ids.set(key, id);
    }
    return id;
  }

  /** The schema registered under `id`, with its references. */
  schemaById(id: number): Promise<RegisteredSchema> {
    return this.#fetch(`/schemas/ids/${id}`);
  }

  /** A subject's version of a schema, with its references. */
  schemaByVersion(subject: string, version: number): Promise<RegisteredSchema> {
    return this.#fetch(`/subjects/${encodeURIComponent(subject)}/versions/${version}`);
  }

  #fetch(path: string): Promise<RegisteredSchema> {
    let schema = this.#schemas.get(path);
    if (!schema) {
      schema = this.#call(path, { method: "GET" }).then((body) => {
        const { schema, references } = body as { schema: string; references?: SchemaReference[] };
        return { schema, references: references ?? [] };
      });
      schema.catch(() => this.#schemas.delete(path));
      this.#schemas.set(path, schema);
    }
    return schema;
  }

  /** Sets a subject's compatibility rule (`BACKWARD`, `NONE`, …). */
  async setCompatibility(subject: string, compatibility: string): Promise<void> {
    await this.#call(`/config/${encodeURIComponent(subject)}`, {
      method: "PUT",
      body: JSON.stringify({ compatibility }),
    });
  }

  /** The versions registered under a subject. */
  async versions(subject: string): Promise<number[]> {
    return await this.#call(`/subjects/${encodeURIComponent(subject)}/versions`, {
      method: "GET",
    }) as number[];
  }

  async #call(path: string, init: RequestInit): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.#url}${path}`, {
        ...init,
        headers: { "Content-Type": CONTENT_TYPE, Accept: CONTENT_TYPE },
      });
    } catch (error) {
      throw new RetriableError(
        `Cannot reach the schema registry at ${this.#url}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const text = await response.text();
    if (response.ok) return JSON.parse(text);
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch { /* not JSON: keep the text */ }
    const refusal = new RegistryRefusal(
      `The schema registry refused ${init.method} ${path} (HTTP ${response.status}): ${message}`,
      response.status,
    );
    // Overload and outages heal; a refused schema does not.
    if (response.status >= 500 || response.status === 429) {
      throw new RetriableError(refusal.message, { cause: refusal });
    }
    throw refusal;
  }
}

/** The Confluent wire format: magic byte 0, the 4-byte big-endian schema id, the payload. */
export function frame(id: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, id);
  out.set(payload, 5);
  return out;
}

/** The schema id and payload of a framed message; throws when the magic byte is not 0. */
export function unframe(bytes: Uint8Array): { id: number; payload: Uint8Array } {
  if (bytes.length < 5 || bytes[0] !== 0) {
    throw new Error(
      `not in the schema registry's wire format (magic byte ${
        bytes[0]
      } instead of 0, ${bytes.length} bytes)`,
    );
  }
  const id = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
  return { id, payload: bytes.subarray(5) };
}
