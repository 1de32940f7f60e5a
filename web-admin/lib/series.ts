// Usage series as charts need them: one value per bucket over the whole range, with the
// buckets the API left out (nothing happened) as zero.
import type { Bucket, Figures, SeriesPoint } from "./schemas";

export type Metric = "requests" | "tokens" | "cost";

export function metricOf(f: Figures, metric: Metric): number {
  switch (metric) {
    case "requests":
      return f.requests;
    case "tokens":
      return f.prompt_tokens + f.completion_tokens;
    case "cost":
      return f.cost_micro_usd;
  }
}

/** The start of the UTC hour or day holding `t`. */
export function bucketStart(t: Date, bucket: Bucket): Date {
  const d = new Date(t);
  d.setUTCMinutes(0, 0, 0);
  if (bucket === "day") d.setUTCHours(0);
  return d;
}

/** Every bucket from the one holding `from` up to `to`, each with the sum of its points. */
export function fillBuckets(
  points: readonly SeriesPoint[],
  from: string,
  to: string,
  bucket: Bucket,
  metric: Metric,
): { bucket: string; value: number }[] {
  const step = bucket === "hour" ? 3_600_000 : 86_400_000;
  const sums = new Map<number, number>();
  for (const p of points) {
    const at = Date.parse(p.bucket);
    sums.set(at, (sums.get(at) ?? 0) + metricOf(p, metric));
  }
  const out: { bucket: string; value: number }[] = [];
  const end = Date.parse(to);
  // A bound on the buckets drawn, whatever the range asked.
  for (let at = bucketStart(new Date(from), bucket).getTime(); at < end && out.length < 2000; at += step) {
    out.push({ bucket: new Date(at).toISOString(), value: sums.get(at) ?? 0 });
  }
  return out;
}

/** The named time ranges the pages offer, as [from, to] ISO strings and their bucket. */
export const RANGES = {
  "24h": { label: "Last 24 hours", hours: 24, bucket: "hour" as Bucket },
  "7d": { label: "Last 7 days", hours: 24 * 7, bucket: "hour" as Bucket },
  "30d": { label: "Last 30 days", hours: 24 * 30, bucket: "day" as Bucket },
  "90d": { label: "Last 90 days", hours: 24 * 90, bucket: "day" as Bucket },
} as const;
export type RangeName = keyof typeof RANGES;

export function rangeOf(name: RangeName, now: Date = new Date()): { from: string; to: string; bucket: Bucket } {
  const r = RANGES[name];
  // To the next whole minute, so that refetches within a minute share a cache entry.
  const to = new Date(Math.ceil(now.getTime() / 60_000) * 60_000);
  const from = new Date(to.getTime() - r.hours * 3_600_000);
  return { from: from.toISOString(), to: to.toISOString(), bucket: r.bucket };
}
