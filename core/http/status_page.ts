/**
 * The status page at `/`: what `sluice status` prints, in a browser, with a
 * lag chart per stream. The page is plain HTML, CSS and JavaScript that
 * polls the JSON API every few seconds; the chart is drawn by uPlot (MIT),
 * whose minified file is read from the npm package at module load
 * (`import … with { type: "text" }`), so it is served by this process, works
 * without internet, and lands inside `deno compile` output with the rest of
 * the module graph.
 *
 * The page, its script and the chart library carry no data, so they are
 * served without the token; every piece of data comes from the JSON routes,
 * which require it. With a token set, the page asks for it once and keeps it
 * in `sessionStorage` (this tab only, gone when the tab closes) and sends it
 * as a bearer header. A `?token=` URL was not chosen: it would land in the
 * browser's history, in proxy and access logs, and in `Referer` headers.
 *
 * Lag history: {@linkcode LagHistory} samples every stream's lag into a
 * bounded ring (by default every 5 s for 10 minutes), served as JSON at
 * `/status/lag`, so the chart has history on first load.
 *
 * @module
 */
import { Hono } from "hono";
import uplotScript from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotStyle from "uplot/dist/uPlot.min.css" with { type: "text" };
import uplotLicense from "uplot/LICENSE" with { type: "text" };
import pageHtml from "./status_page/index.html" with { type: "text" };
import pageScript from "./status_page/page.js" with { type: "text" };
import pageStyle from "./status_page/page.css" with { type: "text" };
import type { SluiceMetrics } from "../metrics.ts";

/** One lag sample: Unix time in seconds, lag in seconds. */
export type LagSample = readonly [at: number, lagSeconds: number];

/** Settings of {@linkcode LagHistory}. */
export interface LagHistoryOptions {
  /** How often to sample, in ms (default 5000). */
  readonly intervalMs?: number;
  /** How much history to keep, in ms (default 10 minutes). */
  readonly windowMs?: number;
  /** The clock (tests). */
  readonly now?: () => number;
}

/** A bounded ring of lag samples per stream, read from the process's metrics. */
export class LagHistory implements Disposable {
  readonly intervalMs: number;
  readonly windowMs: number;
  readonly #metrics: SluiceMetrics;
  readonly #now: () => number;
  readonly #samples = new Map<string, LagSample[]>();
  #timer?: ReturnType<typeof setInterval>;

  constructor(metrics: SluiceMetrics, options: LagHistoryOptions = {}) {
    this.#metrics = metrics;
    this.intervalMs = options.intervalMs ?? 5000;
    this.windowMs = options.windowMs ?? 10 * 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** Samples now, then every `intervalMs` until disposed. */
  start(): this {
    this.sample();
    this.#timer ??= setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  /** Records every stream's lag now, dropping samples older than the window. */
  sample(): void {
    const now = this.#now();
    const figures = this.#metrics.figures;
    // A pipeline that is gone (deleted over the REST API) keeps no history.
    for (const pipeline of this.#samples.keys()) {
      if (!figures.has(pipeline)) this.#samples.delete(pipeline);
    }
    for (const [pipeline, { mode }] of figures) {
      if (mode !== "stream") continue;
      let ring = this.#samples.get(pipeline);
      if (!ring) this.#samples.set(pipeline, ring = []);
      ring.push([now / 1000, this.#metrics.lagSeconds(pipeline)]);
      const oldest = (now - this.windowMs) / 1000;
      let drop = 0;
      while (drop < ring.length && ring[drop][0] < oldest) drop++;
      if (drop > 0) ring.splice(0, drop);
    }
  }

  /** The samples of every stream, oldest first, plus the lag right now as the last point. */
  snapshot(): Record<string, LagSample[]> {
    const now = this.#now() / 1000;
    const out: Record<string, LagSample[]> = {};
    for (const [pipeline, figures] of this.#metrics.figures) {
      if (figures.mode !== "stream") continue;
      const ring = this.#samples.get(pipeline) ?? [];
      out[pipeline] = [...ring, [now, this.#metrics.lagSeconds(pipeline)]];
    }
    return out;
  }

  [Symbol.dispose](): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** The paths served without the token: the page and its static files, none holding data. */
export const STATUS_PAGE_PUBLIC_PATHS: readonly string[] = [
  "/",
  "/status/page.js",
  "/status/page.css",
  "/status/uPlot.min.js",
  "/status/uPlot.min.css",
];

// The library ships as published, its licence kept in front of it.
const uplotBundle = `/*!\n${uplotLicense.trim()}\n*/\n${uplotScript}`;
const uplotStyleBundle = `/*!\n${uplotLicense.trim()}\n*/\n${uplotStyle}`;

/**
 * The page's security headers: scripts and styles only from this origin (no
 * inline script can run, so an injected string cannot read the token), no
 * framing, no referrer.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/** The page and its static files (mount before the token check). */
export function statusPageAssets(): Hono {
  const app = new Hono();
  const serve = (path: string, type: string, body: string) =>
    app.get(path, (c) => {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
      c.header("content-type", type);
      return c.body(body);
    });
  serve("/", "text/html; charset=utf-8", pageHtml);
  serve("/status/page.js", "text/javascript; charset=utf-8", pageScript);
  serve("/status/page.css", "text/css; charset=utf-8", pageStyle);
  serve("/status/uPlot.min.js", "text/javascript; charset=utf-8", uplotBundle);
  serve("/status/uPlot.min.css", "text/css; charset=utf-8", uplotStyleBundle);
  return app;
}

/** `GET /status/lag`: the lag history of every stream (mount behind the token check). */
export function statusPageData(history?: LagHistory): Hono {
  const app = new Hono();
  app.get("/status/lag", (c) =>
    c.json({
      interval_ms: history?.intervalMs ?? null,
      window_ms: history?.windowMs ?? null,
      streams: history?.snapshot() ?? {},
    }));
  return app;
}
