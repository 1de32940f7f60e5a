// Usage over time and how requests ended, for any scope (the whole gateway, a key, a user):
// the key page, the dashboard and the usage explorer show the same figures the same way.
"use client";

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";

import { call, query } from "@/lib/api";
import { formatCount, formatPercent, formatTime, formatUsd } from "@/lib/format";
import { Outcomes, UsageSeries } from "@/lib/schemas";
import { RANGES, fillBuckets, metricOf, rangeOf, type Metric, type RangeName } from "@/lib/series";

import { TimeBars } from "./Charts";
import { SelectField } from "./TextField";
import { Table, Td, Th } from "./Table";
import { Badge, Card, Empty, ErrorPanel, Loading, Stat } from "./ui";

export type Scope = Partial<Record<"key_id" | "user_id" | "team_id" | "model", string | number>>;

const METRICS: { value: Metric; label: string; format: (n: number) => string }[] = [
  { value: "requests", label: "Requests", format: formatCount },
  { value: "tokens", label: "Tokens", format: formatCount },
  { value: "cost", label: "Spend", format: formatUsd },
];

export function RangeSelect({
  value,
  onChange,
  id = "range",
}: {
  value: RangeName;
  onChange: (r: RangeName) => void;
  id?: string;
}) {
  return (
    <SelectField
      id={id}
      label="Time range"
      value={value}
      onChange={(v) => onChange(v as RangeName)}
      options={Object.entries(RANGES).map(([name, r]) => ({ value: name, label: r.label }))}
    />
  );
}

/** The series of a scope over a named range (refetched every minute while shown). */
export function useSeries(scope: Scope, range: RangeName) {
  const { from, to, bucket } = rangeOf(range);
  const params = { ...scope, from, to, bucket, group_by: "model" };
  return useQuery({
    queryKey: ["usage", "series", params],
    queryFn: () => call(UsageSeries, "GET", `/api/usage/series${query(params)}`),
    placeholderData: keepPreviousData,
    refetchInterval: 60_000,
  });
}

export function useOutcomes(scope: Scope, range: RangeName, limit = 20) {
  const { from, to } = rangeOf(range);
  const params = { ...scope, from, to, limit };
  return useQuery({
    queryKey: ["usage", "outcomes", params],
    queryFn: () => call(Outcomes, "GET", `/api/usage/outcomes${query(params)}`),
    placeholderData: keepPreviousData,
    refetchInterval: 60_000,
  });
}

/** Requests, tokens and spend as tiles, and one of them as a chart over the range. */
export function UsageOverTime({
  scope,
  range,
  title = "Usage",
  tiles = true,
}: {
  scope: Scope;
  range: RangeName;
  title?: string;
  /** Whether to show the totals as tiles above the chart (the dashboard has its own). */
  tiles?: boolean;
}) {
  const series = useSeries(scope, range);
  const [metric, setMetric] = useState<Metric>("requests");
  if (series.isPending)
    return (
      <Card title={title}>
        <Loading label="Loading usage…" />
      </Card>
    );
  if (series.isError)
    return (
      <Card title={title}>
        <ErrorPanel title="Could not load usage" error={series.error} onRetry={() => series.refetch()} />
      </Card>
    );
  const data = series.data;
  const totals = data.points.reduce(
    (t, p) => ({
      requests: t.requests + p.requests,
      tokens: t.tokens + metricOf(p, "tokens"),
      cost: t.cost + p.cost_micro_usd,
    }),
    { requests: 0, tokens: 0, cost: 0 },
  );
  const chosen = METRICS.find((m) => m.value === metric) ?? METRICS[0]!;
  return (
    <Card
      title={title}
      actions={
        <div
          role="tablist"
          aria-label="Chart shows"
          className="flex gap-1 rounded-md bg-slate-100 p-0.5 dark:bg-slate-800"
        >
          {METRICS.map((m) => (
            <button
              key={m.value}
              type="button"
              role="tab"
              aria-selected={metric === m.value}
              onClick={() => setMetric(m.value)}
              className={`rounded px-2 py-1 text-xs font-medium ${metric === m.value ? "bg-white shadow-sm dark:bg-slate-950" : "text-slate-600 dark:text-slate-300"}`}
            >
              {m.label}
            </button>
          ))}
        </div>
      }
    >
      {tiles && (
        <dl className="mb-4 grid grid-cols-3 gap-2 sm:gap-3">
          <Stat label="Requests" value={formatCount(totals.requests)} />
          <Stat label="Tokens" value={formatCount(totals.tokens)} />
          <Stat label="Spend" value={formatUsd(totals.cost)} />
        </dl>
      )}
      {totals.requests === 0 ? (
        <Empty title="No requests in this range" />
      ) : (
        <TimeBars
          label={`${chosen.label} per ${data.bucket}`}
          data={fillBuckets(data.points, data.from, data.to, data.bucket, metric)}
          format={chosen.format}
          bucket={data.bucket}
        />
      )}
    </Card>
  );
}

/** What a code means, in a few words. */
export function describeCode(code: string): string {
  const known: Record<string, string> = {
    rate_limit_requests: "requests per minute",
    rate_limit_tokens: "tokens per minute",
    concurrency_limit: "concurrent requests",
    budget_exceeded: "budget used up",
    model_not_allowed: "model not allowed",
    model_not_found: "unknown model",
    api_key_revoked: "key revoked",
    api_key_expired: "key expired",
    api_key_rotated: "old secret after rotation",
    invalid_api_key: "invalid key",
  };
  return known[code] ?? code.replaceAll("_", " ");
}

function statusTone(status: number): "amber" | "red" | "slate" {
  if (status === 429) return "amber";
  return status >= 500 ? "red" : "slate";
}

/** Refusals and failures of a scope: counts per reason and the latest ones. */
export function Refusals({
  scope,
  range,
  title = "Refusals and errors",
}: {
  scope: Scope;
  range: RangeName;
  title?: string;
}) {
  const outcomes = useOutcomes(scope, range);
  if (outcomes.isPending)
    return (
      <Card title={title}>
        <Loading label="Loading refusals…" />
      </Card>
    );
  if (outcomes.isError)
    return (
      <Card title={title}>
        <ErrorPanel title="Could not load refusals" error={outcomes.error} onRetry={() => outcomes.refetch()} />
      </Card>
    );
  const o = outcomes.data;
  return (
    <Card title={title}>
      <p className="mb-3 text-sm text-slate-600 dark:text-slate-300">
        {formatCount(o.errors)} of {formatCount(o.requests)} requests answered with an error (
        {formatPercent(o.errors, o.requests)}).
      </p>
      {o.by_code.length > 0 && (
        <ul aria-label="By reason" className="mb-4 flex flex-wrap gap-2">
          {o.by_code.map((c) => (
            <li key={c.code} className="rounded-md border border-slate-200 px-2 py-1 text-sm dark:border-slate-700">
              <span className="font-medium">{describeCode(c.code)}</span>{" "}
              <span className="tabular-nums text-slate-600 dark:text-slate-300">{formatCount(c.requests)}</span>
            </li>
          ))}
        </ul>
      )}
      {o.recent.length === 0 ? (
        <Empty title="No refused or failed requests in this range" />
      ) : (
        <Table
          caption="Latest refused or failed requests"
          head={
            <>
              <Th>Time</Th>
              <Th>Status</Th>
              <Th>Reason</Th>
              <Th>Key</Th>
              <Th>Model</Th>
              <Th>Message</Th>
            </>
          }
        >
          {o.recent.map((r) => (
            <tr key={r.request_id}>
              <Td>{formatTime(r.occurred_at)}</Td>
              <Td>
                <Badge tone={statusTone(r.status)}>{r.status}</Badge>
              </Td>
              <Td>{r.code ? describeCode(r.code) : "upstream error"}</Td>
              <Td>{r.key_name ?? "—"}</Td>
              <Td>{r.model || "—"}</Td>
              <Td className="max-w-md truncate whitespace-normal text-slate-600 dark:text-slate-300">
                {r.message ?? "—"}
              </Td>
            </tr>
          ))}
        </Table>
      )}
    </Card>
  );
}
