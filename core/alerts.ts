/**
 * Alerts evaluated inside the process: the plan's rules
 * (core/alert_rules.ts) read {@linkcode SluiceMetrics} every
 * `evaluation.interval`, and each alert fires once when its condition has
 * held for its `for` duration and resolves once when it no longer holds.
 * Notifications go to the log and to webhooks; webhook delivery runs in the
 * background with retries, so a webhook that is down never slows a pipeline.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errorMessage } from "../api/errors.ts";
import {
  type AlertRule,
  alertRules,
  type AlertsConfig,
  alertsConfig,
  type Severity,
  type WebhookConfig,
} from "./alert_rules.ts";
import type { SluiceMetrics } from "./metrics.ts";

const logger = getLogger(["sluice", "alerts"]);

/** One alert notification, as the generic JSON webhook receives it. */
export interface AlertNotification {
  readonly alertname: string;
  readonly rule: string;
  readonly state: "firing" | "resolved";
  readonly severity: Severity;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly threshold: number;
  readonly comparison: ">" | "<";
  readonly summary: string;
  /** A sentence for people, also the Slack text. */
  readonly message: string;
  readonly startsAt: string;
  readonly endsAt?: string;
}

/** An alert that is firing now. */
export interface FiringAlert {
  readonly rule: AlertRule;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly since: Date;
}

interface SeriesState {
  pendingSince?: number;
  firing?: FiringAlert;
}

interface Sample {
  readonly at: number;
  readonly read: number;
  readonly failed: number;
}

/** Evaluates the rules and notifies. */
export class AlertManager implements AsyncDisposable {
  readonly rules: readonly AlertRule[];
  readonly #metrics: SluiceMetrics;
  readonly #config: AlertsConfig;
  readonly #webhooks: WebhookSender[];
  readonly #series = new Map<string, SeriesState>();
  readonly #samples = new Map<string, Sample[]>();
  readonly #now: () => number;
  #timer?: ReturnType<typeof setInterval>;
  #evaluations = 0;

  constructor(
    metrics: SluiceMetrics,
    config: AlertsConfig = alertsConfig.parse({}),
    options: { now?: () => number } = {},
  ) {
    this.#metrics = metrics;
    this.#config = config;
    this.rules = alertRules(config);
    this.#webhooks = config.webhooks.map((hook) => new WebhookSender(hook));
    this.#now = options.now ?? Date.now;
  }

  /** Evaluates every `evaluation.interval` until disposed. */
  start(): void {
    this.#timer ??= setInterval(() => this.evaluate(), this.#config["evaluation.interval"]);
  }

  /** The alerts firing now. */
  get firing(): FiringAlert[] {
    return [...this.#series.values()].flatMap((state) => state.firing ? [state.firing] : []);
  }

  /** How many times the rules were evaluated (tests wait on it). */
  get evaluations(): number {
    return this.#evaluations;
  }

  /** Evaluates every rule for every pipeline now. */
  evaluate(): void {
    this.#evaluations++;
    // The dead-letter backlog is read from its destinations at most every
    // 15 s; what this starts is seen by a later evaluation.
    void this.#metrics.refreshDeadLetterSizes();
    const now = this.#now();
    const seen = new Set<string>();
    for (const [pipeline, figures] of this.#metrics.figures) {
      const lagSeconds = this.#metrics.lagSeconds(pipeline);
      for (const rule of this.rules) {
        const past = this.#pastSample(pipeline, now, rule.windowMs);
        const context = {
          pipeline,
          figures,
          lagSeconds,
          streamFailed: this.#metrics.streamFailed(pipeline),
          now,
          windowMs: rule.windowMs,
          past,
        };
        for (const measurement of rule.measure(context)) {
          const key = `${rule.id}|${JSON.stringify(measurement.labels)}`;
          seen.add(key);
          this.#step(key, rule, measurement.labels, measurement.value, now);
        }
      }
      this.#sample(pipeline, now, figures.recordsRead, figures.recordsFailed);
    }
    // A series that no longer exists (its destination emptied) resolves.
    for (const [key, state] of this.#series) {
      if (!seen.has(key) && state.firing) this.#resolve(key, state, state.firing.value, now);
    }
  }

  #step(
    key: string,
    rule: AlertRule,
    labels: Readonly<Record<string, string>>,
    value: number,
    now: number,
  ): void {
    const state = this.#series.get(key) ?? {};
    this.#series.set(key, state);
    const breached = rule.comparison === ">" ? value > rule.threshold : value < rule.threshold;
    if (!breached) {
      state.pendingSince = undefined;
      if (state.firing) this.#resolve(key, state, value, now);
      return;
    }
    state.pendingSince ??= now;
    if (state.firing || now - state.pendingSince < rule.forMs) return;
    state.firing = { rule, labels, value, since: new Date(now) };
    this.#notify(state.firing, "firing", value, now);
  }

  #resolve(key: string, state: SeriesState, value: number, now: number): void {
    const firing = state.firing!;
    state.firing = undefined;
    state.pendingSince = undefined;
    this.#series.delete(key);
    this.#notify(firing, "resolved", value, now);
  }

  #notify(alert: FiringAlert, state: "firing" | "resolved", value: number, now: number): void {
    const { rule, labels } = alert;
    const where = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(" ");
    const message = `[${state.toUpperCase()}] ${rule.alertname} (${rule.severity}) ${where}: ` +
      `${rule.summary}: ${rule.format(value)} (threshold ${rule.comparison} ${
        rule.format(rule.threshold)
      })`;
    const notification: AlertNotification = {
      alertname: rule.alertname,
      rule: rule.id,
      state,
      severity: rule.severity,
      labels,
      value,
      threshold: rule.threshold,
      comparison: rule.comparison,
      summary: rule.summary,
      message,
      startsAt: alert.since.toISOString(),
      endsAt: state === "resolved" ? new Date(now).toISOString() : undefined,
    };
    if (state === "resolved") logger.info("{message}", { message, alert: notification });
    else if (rule.severity === "critical") {
      logger.error("{message}", { message, alert: notification });
    } else logger.warn("{message}", { message, alert: notification });
    for (const hook of this.#webhooks) hook.send(notification);
  }

  /** The counters `windowMs` ago: the newest sample at or before then, else the oldest kept. */
  #pastSample(pipeline: string, now: number, windowMs: number): Sample {
    const samples = this.#samples.get(pipeline) ?? [];
    let chosen = samples[0];
    for (const sample of samples) {
      if (sample.at <= now - windowMs) chosen = sample;
      else break;
    }
    return chosen ?? { at: now, read: 0, failed: 0 };
  }

  #sample(pipeline: string, at: number, read: number, failed: number): void {
    const samples = this.#samples.get(pipeline) ?? [];
    samples.push({ at, read, failed });
    const longest = Math.max(0, ...this.rules.map((rule) => rule.windowMs));
    while (samples.length > 2 && samples[1].at <= at - longest) samples.shift();
    this.#samples.set(pipeline, samples);
  }

  /** Stops evaluating and gives queued webhook deliveries a moment to finish. */
  async [Symbol.asyncDispose](): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all(this.#webhooks.map((hook) => hook.close(2000)));
  }
}

/** The body a webhook receives. */
export function webhookBody(format: WebhookConfig["format"], notification: AlertNotification) {
  return format === "slack" ? { text: notification.message } : notification;
}

/** How many notifications wait per webhook before the oldest are dropped (and logged). */
const WEBHOOK_QUEUE = 1000;

/** Delivers notifications to one webhook in order, in the background, with retries. */
class WebhookSender {
  readonly #config: WebhookConfig;
  readonly #queue: AlertNotification[] = [];
  readonly #closing = new AbortController();
  #draining?: Promise<void>;

  constructor(config: WebhookConfig) {
    this.#config = config;
  }

  /** Queues a notification; never waits. */
  send(notification: AlertNotification): void {
    if (this.#queue.length >= WEBHOOK_QUEUE) {
      const dropped = this.#queue.shift()!;
      logger.error("Webhook {url} is behind; dropped the notification: {message}", {
        url: this.#config.url,
        message: dropped.message,
      });
    }
    this.#queue.push(notification);
    this.#draining ??= this.#drain().finally(() => this.#draining = undefined);
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 && !this.#closing.signal.aborted) {
      await this.#deliver(this.#queue[0]);
      this.#queue.shift();
    }
  }

  async #deliver(notification: AlertNotification): Promise<void> {
    const { url, retries } = this.#config;
    const body = JSON.stringify(webhookBody(this.#config.format, notification));
    for (let attempt = 0; attempt <= retries; attempt++) {
      try {
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          signal: AbortSignal.any([
            AbortSignal.timeout(this.#config["timeout.ms"]),
            this.#closing.signal,
          ]),
        });
        await response.body?.cancel();
        if (response.ok) return;
        throw new Error(`HTTP ${response.status}`);
      } catch (error) {
        if (this.#closing.signal.aborted) return;
        const last = attempt === retries;
        logger.warn("Webhook {url} failed ({error}); {next}", {
          url,
          error: errorMessage(error),
          next: last ? "giving up on this notification" : "retrying",
        });
        if (!last) await this.#wait(this.#config["retry.delay.ms"] * 2 ** attempt);
      }
    }
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#closing.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }

  /** Waits up to `graceMs` for queued deliveries, then abandons them. */
  async close(graceMs: number): Promise<void> {
    if (this.#draining) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
      await Promise.race([this.#draining, grace]);
      clearTimeout(timer);
    }
    this.#closing.abort();
    await this.#draining;
  }
}
