import { assertEquals } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { buildPipelines, parseConnectors } from "../../core/config.ts";
import { buildPlan, configWarnings, formatPlan, idleMaskProblems } from "../../core/_plan.ts";

/** The connector JSON of the users' plan, exactly as written there. */
const PLAN_CONNECTOR = {
  name: "warehouse-to-citizen-connector",
  config: {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "database.hostname": "warehouse-db-host",
    "database.port": "5432",
    "database.user": "debezium_user",
    "database.password": "secure_password",
    "database.dbname": "smart_warehouse",
    "database.server.name": "warehouse",
    "table.include.list":
      "public.golden_records,public.profile_360,eligibility.eligibility_snapshots,decision.applications",
    "topic.prefix": "warehouse-cdc",
    "slot.name": "warehouse_citizen_slot",
    "publication.name": "warehouse_citizen_publication",
    "plugin.name": "pgoutput",
    "snapshot.mode": "never",
    "transforms": "route",
    "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
    "transforms.route.regex": "warehouse-cdc.public.(.*)",
    "transforms.route.replacement": "warehouse-to-citizen.$1",
  },
};

/** The plan's Spring listener, as a Sluice consumer on the same topic. */
const PLAN_LISTENER = {
  name: "eligibility-listener",
  config: {
    "connector.class": "postgres",
    "topics": "warehouse-to-citizen.eligibility_snapshots",
    "connection.url": "postgres://citizen@127.0.0.1:5432/smart_citizen",
    "table": "public.eligibility_hints",
  },
};

async function planOf(connectors: unknown[]) {
  const specs = await buildPipelines(parseConnectors(connectors), {
    registry: builtinRegistry(),
    pluginDefaults: { "bootstrap.servers": "127.0.0.1:9092" },
    sinkConnectorSource: "kafka",
    defaultSink: "kafka",
  });
  return buildPlan(specs);
}

Deno.test("the plan's connector JSON validates as written and sluice plan shows where each table goes", async () => {
  const plan = await planOf([PLAN_CONNECTOR, PLAN_LISTENER]);
  assertEquals(plan.routes.map((r) => [r.table, r.topic, r.consumers.length]), [
    ["public.golden_records", "warehouse-to-citizen.golden_records", 0],
    ["public.profile_360", "warehouse-to-citizen.profile_360", 0],
    ["eligibility.eligibility_snapshots", "warehouse-cdc.eligibility.eligibility_snapshots", 0],
    ["decision.applications", "warehouse-cdc.decision.applications", 0],
  ]);
});

Deno.test("sluice plan makes the plan's routing mismatch visible: the listener's topic is never produced", async () => {
  const plan = await planOf([PLAN_CONNECTOR, PLAN_LISTENER]);
  assertEquals(plan.orphans, ["eligibility-listener: warehouse-to-citizen.eligibility_snapshots"]);
  const text = formatPlan(plan);
  assertEquals(text.includes("NOBODY CONSUMES THIS TOPIC"), true);
  assertEquals(text.includes("Subscriptions that no pipeline produces:"), true);
});

Deno.test("a consumer on the routed topic is matched to its captured table", async () => {
  const fixed = {
    ...PLAN_LISTENER,
    config: { ...PLAN_LISTENER.config, topics: "warehouse-cdc.eligibility.eligibility_snapshots" },
  };
  const plan = await planOf([PLAN_CONNECTOR, fixed]);
  const route = plan.routes.find((r) => r.table === "eligibility.eligibility_snapshots")!;
  assertEquals(route.consumers, ["eligibility-listener -> postgres public.eligibility_hints"]);
  assertEquals(plan.orphans, []);
});

Deno.test("a sink named by ${topic} shows the table each topic lands in, after the consumer's own routes", async () => {
  const consumer = {
    name: "warehouse-consumer",
    config: {
      "connector.class": "kafka",
      "topics.regex": "warehouse-to-citizen\\..*",
      "sink.class": "postgres",
      "sink.connection.url": "postgres://citizen@127.0.0.1:5432/smart_citizen",
      "sink.table.name.format": "${topic}",
      transforms: "route",
      "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
      "transforms.route.regex": "warehouse-to-citizen\\.(.*)",
      "transforms.route.replacement": "public.$1",
    },
  };
  const direct = {
    name: "direct",
    config: {
      ...PLAN_CONNECTOR.config,
      "slot.name": "direct_slot",
      "transforms.route.regex": "warehouse-cdc\\.(.*)",
      "transforms.route.replacement": "$1",
      "sink.class": "postgres",
      "sink.connection.url": "postgres://citizen@127.0.0.1:5432/smart_citizen",
      "sink.table.name.format": "${topic}",
    },
  };
  const plan = await planOf([PLAN_CONNECTOR, consumer, direct]);
  const consumers = (pipeline: string, table: string) =>
    plan.routes.find((r) => r.pipeline === pipeline && r.table === table)!.consumers;
  assertEquals(consumers("warehouse-to-citizen-connector", "public.profile_360"), [
    "warehouse-consumer -> postgres public.profile_360",
  ]);
  assertEquals(consumers("direct", "decision.applications"), [
    "direct -> postgres decision.applications",
  ]);
});

Deno.test("sluice plan lists batch jobs with their schedule, what they read and write, and what they wait for", async () => {
  const db = "postgres://u@127.0.0.1:5432/";
  const plan = await planOf([
    {
      name: "schemes",
      config: {
        "connector.class": "postgres_query",
        "connection.url": `${db}w`,
        "table": "eligibility.scheme_master",
        "job.schedule": "0 0 * * *",
        "sink.class": "postgres",
        "sink.connection.url": `${db}c`,
        "sink.table": "public.schemes",
      },
    },
    {
      name: "profiles",
      config: {
        "connector.class": "postgres_query",
        "connection.url": `${db}w`,
        "query": "SELECT * FROM public.profile_360",
        "mode": "incremental",
        "timestamp.column.name": "updated_at",
        "key.columns": "citizen_id",
        "job.depends.on": "schemes",
        "sink.class": "postgres",
        "sink.connection.url": `${db}c`,
        "sink.table": "public.profile_summary",
      },
    },
  ]);
  assertEquals(plan.routes, []);
  assertEquals(plan.jobs, [
    {
      pipeline: "schemes",
      schedule: "0 0 * * *",
      reads: "postgres eligibility.scheme_master (full)",
      writes: "postgres public.schemes",
      after: [],
    },
    {
      pipeline: "profiles",
      schedule: null,
      reads: "postgres query (incremental on updated_at)",
      writes: "postgres public.profile_summary",
      after: ["schemes"],
    },
  ]);
  const text = formatPlan(plan);
  assertEquals(text.includes("captured table"), false);
  assertEquals(
    text.split("\n")[2].replace(/\s+/g, " "),
    "schemes 0 0 * * * postgres eligibility.scheme_master (full) postgres public.schemes",
  );
  assertEquals(text.includes("once at start"), true);
});

/** The config warnings of pipeline "p" with `config` and then `extra`. */
function warningsOf(config: Record<string, string>) {
  return async (extra: Record<string, string>) =>
    configWarnings(
      await buildPipelines(parseConnectors({ name: "p", config: { ...config, ...extra } }), {
        registry: builtinRegistry(),
      }),
    );
}

Deno.test("validate warns when a masking pipeline dead-letters its clear records into the sink's database or a topic", async () => {
  const config = {
    "connector.class": "postgres_query",
    "connection.url": "postgres://u@127.0.0.1:5432/w",
    table: "public.people",
    transforms: "hide",
    "transforms.hide.type": "mask",
    "transforms.hide.fields": "email",
    "transforms.hide.strategy": "fpe",
    "transforms.hide.key": "2b7e151628aed2a6abf7158809cf4f3c",
    "sink.class": "postgres",
    "sink.connection.url": "postgres://u@127.0.0.1:5432/c",
    "sink.table": "public.people",
    "errors.tolerance": "all",
  };
  const warnings = warningsOf(config);
  assertEquals(await warnings({ "errors.deadletterqueue.table.name": "public.dlq" }), [
    'p: a record that fails in "hide" (a value it cannot mask) is dead-lettered with its clear values into errors.deadletterqueue.table.name "public.dlq", in the sink\'s database; send dead letters to a file on the source\'s side (errors.deadletterqueue.file.path) if the target must never hold them',
  ]);
  assertEquals(await warnings({ "errors.deadletterqueue.topic.name": "dlq.people" }), [
    'p: a record that fails in "hide" (a value it cannot mask) is dead-lettered with its clear values into errors.deadletterqueue.topic.name "dlq.people", on the Kafka broker; send dead letters to a file on the source\'s side (errors.deadletterqueue.file.path) if the target must never hold them',
  ]);
  assertEquals(await warnings({ "errors.deadletterqueue.file.path": "/tmp/dlq.jsonl" }), []);
});

Deno.test("validate warns when an incremental job masks a key column and keeps its watermark in the sink", async () => {
  const config = {
    "connector.class": "postgres_query",
    "connection.url": "postgres://u@127.0.0.1:5432/w",
    table: "public.people",
    mode: "incremental",
    "key.columns": "email",
    transforms: "hide",
    "transforms.hide.type": "mask",
    "transforms.hide.fields": "email,name",
    "transforms.hide.strategy": "hash",
    "transforms.hide.salt": "pepper",
    "sink.class": "postgres",
    "sink.connection.url": "postgres://u@127.0.0.1:5432/c",
    "sink.table": "public.people",
  };
  const warnings = warningsOf(config);
  const [warning, ...more] = await warnings({});
  assertEquals(more, []);
  assertEquals(
    warning,
    'p: "hide" masks key column "email", and the job\'s watermark stores the last row\'s key as the source has it, in the sink\'s database when offset.storage is auto; set offset.storage to file to keep it on the Sluice host',
  );
  assertEquals(await warnings({ "offset.storage": "file" }), []);
  assertEquals(await warnings({ "transforms.hide.fields": "name" }), []);
});

Deno.test("validate refuses a mask whose predicate holds for none of the pipeline's topics", async () => {
  const config = {
    "connector.class": "postgres_query",
    "connection.url": "postgres://u@127.0.0.1:5432/w",
    table: "public.customers",
    transforms: "hide",
    "transforms.hide.type": "mask",
    "transforms.hide.fields": "email",
    "transforms.hide.strategy": "redact",
    "transforms.hide.predicate": "cust",
    predicates: "cust",
    "predicates.cust.type": "topic_name_matches",
    "sink.class": "postgres",
    "sink.connection.url": "postgres://u@127.0.0.1:5432/c",
    "sink.table": "public.customers",
  };
  const problems = async (extra: Record<string, string>) =>
    idleMaskProblems(
      await buildPipelines(parseConnectors({ name: "p", config: { ...config, ...extra } }), {
        registry: builtinRegistry(),
      }),
    );
  // A typo: "customer" for "customers".
  assertEquals(await problems({ "predicates.cust.pattern": "public\\.customer" }), [{
    path: "p: config.transforms.hide.predicate",
    message:
      "names predicate \"cust\", which holds for none of the pipeline's topics (public.customers, through the steps before it): this mask would hide nothing and its fields would pass in clear; fix the predicate's pattern, or remove the predicate to apply it to every record",
  }]);
  assertEquals(await problems({ "predicates.cust.pattern": "public\\.customers" }), []);
  // Negated, and holding for every topic: it applies nowhere either.
  assertEquals(
    (await problems({
      "predicates.cust.pattern": "public\\.customers",
      "transforms.hide.negate": "true",
    }))
      .map((p) => p.message.slice(0, 60)),
    ['names predicate "cust", which holds for all of the pipeline\''],
  );
  // Matched after a route that comes first: the mask applies.
  assertEquals(
    await problems({
      "predicates.cust.pattern": "crm\\.customers",
      transforms: "route,hide",
      "transforms.route.type": "route",
      "transforms.route.regex": "public\\.(.*)",
      "transforms.route.replacement": "crm.$1",
    }),
    [],
  );
});
