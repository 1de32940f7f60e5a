"use client";

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { TimeBars } from "@/components/Charts";
import { SelectField, TextField } from "@/components/TextField";
import { Table, Td, Th } from "@/components/Table";
import { Button, Card, Empty, ErrorPanel, Loading, PageHeader } from "@/components/ui";
import { call, http, query, toApiError } from "@/lib/api";
import { formatCount, formatPercent, formatUsd } from "@/lib/format";
import { readsAll, useRole } from "@/lib/role";
import { GroupBy, UsageSeries, UsageTotals, type Bucket } from "@/lib/schemas";
import { fillBuckets, type Metric } from "@/lib/series";

const DAY = 86_400_000;

function isoDay(t: number): string {
  return new Date(t).toISOString().slice(0, 10);
}

interface Filters {
  group_by: GroupBy;
  from: string; // YYYY-MM-DD, UTC, inclusive
  to: string; // YYYY-MM-DD, UTC, inclusive
  bucket: Bucket;
}

/** The API's range: from the start of the first day to the end of the last, UTC. */
function apiParams(f: Filters) {
  return {
    group_by: f.group_by,
    bucket: f.bucket,
    from: `${f.from}T00:00:00Z`,
    to: new Date(Date.parse(`${f.to}T00:00:00Z`) + DAY).toISOString(),
  };
}

function checkRange(f: Filters): string | undefined {
  if (!f.from || !f.to) return "Pick both days";
  if (f.from > f.to) return "The first day must not be after the last";
  if (f.bucket === "hour" && Date.parse(f.to) - Date.parse(f.from) > 30 * DAY)
    return "Hourly buckets cover at most 31 days; pick days";
  return undefined;
}

/** The last 30 days, by day. */
function lastDays(): Filters {
  const now = Date.now();
  return { group_by: "model", from: isoDay(now - 29 * DAY), to: isoDay(now), bucket: "day" };
}

export default function UsagePage() {
  const role = useRole();
  const [inputs, setInputs] = useState<Filters>(lastDays);
  const [applied, setApplied] = useState<Filters>(inputs);
  const [rangeError, setRangeError] = useState<string>();
  const [metric, setMetric] = useState<Metric>("cost");
  const [download, setDownload] = useState<{ busy: boolean; error?: unknown }>({ busy: false });
  const params = apiParams(applied);

  const totals = useQuery({
    queryKey: ["usage", "totals", params],
    queryFn: () => call(UsageTotals, "GET", `/api/usage${query(params)}`),
    placeholderData: keepPreviousData,
  });
  const series = useQuery({
    queryKey: ["usage", "series", params],
    queryFn: () => call(UsageSeries, "GET", `/api/usage/series${query(params)}`),
    placeholderData: keepPreviousData,
  });

  function apply(event: FormEvent) {
    event.preventDefault();
    const problem = checkRange(inputs);
    setRangeError(problem);
    if (!problem) setApplied(inputs);
  }

  async function downloadCsv() {
    setDownload({ busy: true });
    try {
      // The export needs the session's token, so it is fetched and saved from memory
      // rather than linked.
      const answer = await http.get<Blob>(`/api/usage/export${query(params)}`, { responseType: "blob" });
      const url = URL.createObjectURL(answer.data);
      const link = document.createElement("a");
      link.href = url;
      link.download = `tollgate-usage-${applied.from}-${applied.to}.csv`;
      link.click();
      URL.revokeObjectURL(url);
      setDownload({ busy: false });
    } catch (e) {
      setDownload({ busy: false, error: toApiError(e) });
    }
  }

  const groupOptions = (readsAll(role) ? GroupBy.options : (["key", "model"] as const)).map((g) => ({
    value: g,
    label: `by ${g}`,
  }));
  const formatMetric = metric === "cost" ? formatUsd : formatCount;
  return (
    <>
      <PageHeader
        title="Usage"
        description={
          readsAll(role) ? "Requests, tokens and spend, grouped as you choose." : "Your requests, tokens and spend."
        }
        actions={
          <Button onClick={downloadCsv} disabled={download.busy}>
            {download.busy ? "Preparing…" : "Download CSV"}
          </Button>
        }
      />
      {download.error !== undefined && (
        <div className="mb-4">
          <ErrorPanel title="Could not download" error={download.error} />
        </div>
      )}
      <form
        onSubmit={apply}
        aria-label="Usage filters"
        className="mb-6 grid grid-cols-1 items-end gap-3 sm:grid-cols-2 lg:grid-cols-5"
      >
        <SelectField
          id="usage-group"
          label="Group"
          value={inputs.group_by}
          onChange={(v) => setInputs({ ...inputs, group_by: v as GroupBy })}
          options={groupOptions}
        />
        <TextField
          id="usage-from"
          label="From (UTC day)"
          type="date"
          value={inputs.from}
          onChange={(v) => setInputs({ ...inputs, from: v })}
          error={rangeError}
        />
        <TextField
          id="usage-to"
          label="To (UTC day)"
          type="date"
          value={inputs.to}
          onChange={(v) => setInputs({ ...inputs, to: v })}
        />
        <SelectField
          id="usage-bucket"
          label="Chart by"
          value={inputs.bucket}
          onChange={(v) => setInputs({ ...inputs, bucket: v as Bucket })}
          options={[
            { value: "day", label: "day" },
            { value: "hour", label: "hour" },
          ]}
        />
        <Button tone="primary" type="submit">
          Show
        </Button>
      </form>
      <div className="space-y-6">
        <Card
          title="Over time"
          actions={
            <SelectField
              id="usage-metric"
              label="Chart shows"
              value={metric}
              onChange={(v) => setMetric(v as Metric)}
              options={[
                { value: "cost", label: "Spend" },
                { value: "requests", label: "Requests" },
                { value: "tokens", label: "Tokens" },
              ]}
            />
          }
        >
          {series.isPending ? (
            <Loading label="Loading the chart…" />
          ) : series.isError ? (
            <ErrorPanel error={series.error} onRetry={() => series.refetch()} />
          ) : series.data.points.length === 0 ? (
            <Empty title="No requests in this range" />
          ) : (
            <TimeBars
              label={`${metric === "cost" ? "Spend" : metric === "requests" ? "Requests" : "Tokens"} per ${series.data.bucket}`}
              data={fillBuckets(series.data.points, series.data.from, series.data.to, series.data.bucket, metric)}
              format={formatMetric}
              axisFormat={metric === "cost" ? formatUsd : undefined}
              bucket={series.data.bucket}
            />
          )}
        </Card>
        {totals.isPending ? (
          <Loading label="Loading totals…" rows={5} />
        ) : totals.isError ? (
          <ErrorPanel title="Could not load usage" error={totals.error} onRetry={() => totals.refetch()} />
        ) : totals.data.groups.length === 0 ? (
          <Empty title="No requests in this range" />
        ) : (
          <Table
            caption={`Usage by ${totals.data.group_by}`}
            head={
              <>
                <Th>{totals.data.group_by}</Th>
                <Th right>Requests</Th>
                <Th right>Prompt tokens</Th>
                <Th right>Completion tokens</Th>
                <Th right>Spend</Th>
                <Th right>Share of spend</Th>
              </>
            }
          >
            {[...totals.data.groups]
              .sort((a, b) => b.cost_micro_usd - a.cost_micro_usd || b.requests - a.requests)
              .map((g) => (
                <tr key={g.group ?? "none"}>
                  <Td>
                    {g.label ?? g.group ?? <span className="text-slate-500">none (master key or unattributed)</span>}
                  </Td>
                  <Td right>{formatCount(g.requests)}</Td>
                  <Td right>{formatCount(g.prompt_tokens)}</Td>
                  <Td right>{formatCount(g.completion_tokens)}</Td>
                  <Td right>{formatUsd(g.cost_micro_usd)}</Td>
                  <Td right>{formatPercent(g.cost_micro_usd, totals.data.totals.cost_micro_usd)}</Td>
                </tr>
              ))}
            <tr className="font-semibold">
              <Td>Total</Td>
              <Td right>{formatCount(totals.data.totals.requests)}</Td>
              <Td right>{formatCount(totals.data.totals.prompt_tokens)}</Td>
              <Td right>{formatCount(totals.data.totals.completion_tokens)}</Td>
              <Td right>{formatUsd(totals.data.totals.cost_micro_usd)}</Td>
              <Td right>100%</Td>
            </tr>
          </Table>
        )}
      </div>
    </>
  );
}
