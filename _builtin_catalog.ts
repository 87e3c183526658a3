/**
 * The built-in plugins by name, each imported only when first asked for
 * (see {@linkcode LazyPlugin}): `sluice run` with one CDC pipeline loads
 * the CDC source and its sink, not the Kafka client, the CEL interpreter or
 * the reconciliation job. The imports are string literals, so `deno compile`
 * and the permissions check still see every module.
 *
 * Names, kinds and aliases are repeated here from the plugin definitions;
 * the registry refuses a loaded plugin whose kind or name differs, and
 * tests/core/registry_test.ts compares every entry with its plugin.
 *
 * @module
 */
import { type LazyPlugin, Registry } from "./core/registry.ts";

/** An entry maker for one kind: `source("kafka", aliases, load)`. */
const of =
  (kind: LazyPlugin["kind"]) =>
  (name: string, aliases: string[], load: LazyPlugin["load"]): LazyPlugin => ({
    kind,
    name,
    aliases,
    load,
  });
const source = of("source");
const sink = of("sink");
const transform = of("transform");
const predicate = of("predicate");
const connect = "org.apache.kafka.connect.transforms";

/** Every built-in plugin, in the order `sluice plugins` groups them: sources, jobs, sinks, transforms, predicates. */
export const builtinCatalog: readonly LazyPlugin[] = [
  source("kafka", ["kafka_source"], async () => (await import("./connectors/kafka.ts")).default),
  source(
    "postgres_query",
    ["io.confluent.connect.jdbc.JdbcSourceConnector"],
    async () => (await import("./connectors/postgres_query.ts")).default,
  ),
  source(
    "postgres_cdc",
    ["io.debezium.connector.postgresql.PostgresConnector"],
    async () => (await import("./connectors/postgres_cdc/mod.ts")).default,
  ),
  source("reconcile", [], async () => (await import("./jobs/reconcile/mod.ts")).default),
  sink("kafka", ["kafka_sink"], async () => (await import("./sinks/kafka.ts")).default),
  sink(
    "postgres",
    ["io.debezium.connector.jdbc.JdbcSinkConnector", "io.confluent.connect.jdbc.JdbcSinkConnector"],
    async () => (await import("./sinks/postgres/mod.ts")).default,
  ),
  transform(
    "mask",
    [`${connect}.MaskField$Value`],
    async () => (await import("./transforms/mask/mod.ts")).mask,
  ),
  transform("filter", [], async () => (await import("./transforms/filter.ts")).filter),
  transform("dedup", [], async () => (await import("./transforms/dedup/mod.ts")).dedup),
  transform(
    "route",
    [`${connect}.RegexRouter`],
    async () => (await import("./transforms/route.ts")).route,
  ),
  transform(
    "unwrap",
    ["io.debezium.transforms.ExtractNewRecordState"],
    async () => (await import("./transforms/unwrap.ts")).unwrap,
  ),
  transform(
    "replace_field",
    [`${connect}.ReplaceField$Value`],
    async () => (await import("./transforms/replace_field.ts")).replaceField,
  ),
  transform(
    "insert_field",
    [`${connect}.InsertField$Value`],
    async () => (await import("./transforms/insert_field.ts")).insertField,
  ),
  transform(
    "cast",
    [`${connect}.Cast$Value`],
    async () => (await import("./transforms/cast.ts")).cast,
  ),
  transform(
    "timestamp_converter",
    [`${connect}.TimestampConverter$Value`],
    async () => (await import("./transforms/timestamp_converter.ts")).timestampConverter,
  ),
  transform(
    "value_to_key",
    [`${connect}.ValueToKey`],
    async () => (await import("./transforms/value_to_key.ts")).valueToKey,
  ),
  predicate(
    "topic_name_matches",
    [`${connect}.predicates.TopicNameMatches`],
    async () => (await import("./transforms/topic_name_matches.ts")).topicNameMatches,
  ),
  predicate(
    "has_header_key",
    [`${connect}.predicates.HasHeaderKey`],
    async () => (await import("./transforms/has_header_key.ts")).hasHeaderKey,
  ),
  predicate(
    "record_is_tombstone",
    [`${connect}.predicates.RecordIsTombstone`],
    async () => (await import("./transforms/record_is_tombstone.ts")).recordIsTombstone,
  ),
];

/** A registry of the built-ins that imports each one when a config first names it. */
export function lazyBuiltinRegistry(): Registry {
  return new Registry(builtinCatalog);
}
