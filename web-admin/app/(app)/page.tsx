"use client";

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";

import { BarList } from "@/components/Charts";
import { RangeSelect, Refusals, UsageOverTime, describeCode, useOutcomes } from "@/components/UsagePanels";
import { Card, Empty, ErrorPanel, Loading, PageHeader, Stat } from "@/components/ui";
import { call, query } from "@/lib/api";
import { formatCount, formatPercent, formatUsd } from "@/lib/format";
import { readsAll, useRole } from "@/lib/role";
import { UsageTotals, type GroupBy } from "@/lib/schemas";
import { rangeOf, type RangeName } from "@/lib/series";

/** The quota dimensions, by the code a refusal carries. */
const DIMENSIONS = ["rate_limit_requests", "rate_limit_tokens", "concurrency_limit", "budget_exceeded"];

function useTotals(groupBy: GroupBy, range: RangeName) {
  const { from, to } = rangeOf(range);
  const params = { from, to, group_by: groupBy };
  return useQuery({
    queryKey: ["usage", "totals", params],
    queryFn: () => call(UsageTotals, "GET", `/api/usage${query(params)}`),
    placeholderData: keepPreviousData,
    refetchInterval: 60_000,
  });
}

function TopBySpend({ title, groupBy, range }: { title: string; groupBy: GroupBy; range: RangeName }) {
  const totals = useTotals(groupBy, range);
  if (totals.isPending)
    return (
      <Card title={title}>
        <Loading />
      </Card>
    );
  if (totals.isError)
    return (
      <Card title={title}>
        <ErrorPanel error={totals.error} onRetry={() => totals.refetch()} />
      </Card>
    );
  const rows = totals.data.groups
    // Requests refused before their model was read have no model: not a group to rank.
    .filter((g) => g.group)
    .sort((a, b) => b.cost_micro_usd - a.cost_micro_usd || b.requests - a.requests)
    .slice(0, 5)
    .map((g) => ({
      name: g.label ?? g.group ?? "",
      value: g.cost_micro_usd,
      href: groupBy === "key" && g.group ? `/keys/detail?id=${encodeURIComponent(g.group)}` : undefined,
    }));
  return (
    <Card title={title}>
      {rows.length === 0 ? (
        <Empty title="Nothing spent in this range" />
      ) : (
        <BarList label={title} rows={rows} format={formatUsd} />
      )}
    </Card>
  );
}

function Headline({ range }: { range: RangeName }) {
  const totals = useTotals("model", range);
  const outcomes = useOutcomes({}, range, 1);
  if (totals.isPending || outcomes.isPending) return <Loading label="Loading figures…" rows={2} />;
  if (totals.isError) return <ErrorPanel error={totals.error} onRetry={() => totals.refetch()} />;
  if (outcomes.isError) return <ErrorPanel error={outcomes.error} onRetry={() => outcomes.refetch()} />;
  const t = totals.data.totals;
  const o = outcomes.data;
  const refused = o.by_code.filter((c) => DIMENSIONS.includes(c.code)).reduce((n, c) => n + c.requests, 0);
  return (
    <dl className="grid grid-cols-2 gap-3 lg:grid-cols-4">
      <Stat label="Requests" value={formatCount(t.requests)} />
      <Stat
        label="Spend"
        value={formatUsd(t.cost_micro_usd)}
        hint={`${formatCount(t.prompt_tokens + t.completion_tokens)} tokens`}
      />
      <Stat
        label="Error rate"
        value={formatPercent(o.errors, o.requests)}
        hint={`${formatCount(o.errors)} answered with an error`}
      />
      <Stat label="Quota refusals" value={formatCount(refused)} />
    </dl>
  );
}

function RefusalsByDimension({ range }: { range: RangeName }) {
  const outcomes = useOutcomes({}, range, 1);
  const title = "Quota refusals by dimension";
  if (outcomes.isPending)
    return (
      <Card title={title}>
        <Loading />
      </Card>
    );
  if (outcomes.isError)
    return (
      <Card title={title}>
        <ErrorPanel error={outcomes.error} onRetry={() => outcomes.refetch()} />
      </Card>
    );
  const counts = new Map(outcomes.data.by_code.map((c) => [c.code, c.requests]));
  const rows = DIMENSIONS.map((code) => ({ name: describeCode(code), value: counts.get(code) ?? 0 }));
  return (
    <Card title={title}>
      {rows.every((r) => r.value === 0) ? (
        <Empty title="No quota refusals in this range" />
      ) : (
        <BarList label={title} rows={rows} format={formatCount} />
      )}
    </Card>
  );
}

export default function Dashboard() {
  const role = useRole();
  const [range, setRange] = useState<RangeName>("24h");
  return (
    <>
      <PageHeader
        title="Dashboard"
        description={
          readsAll(role) ? "Requests, spend and refusals across the gateway." : "Your requests, spend and refusals."
        }
        actions={
          <div className="w-48">
            <RangeSelect value={range} onChange={setRange} />
          </div>
        }
      />
      <div className="space-y-6">
        <Headline range={range} />
        <UsageOverTime scope={{}} range={range} title="Over time" tiles={false} />
        <div className="grid grid-cols-1 gap-6 lg:grid-cols-3">
          <TopBySpend title="Top keys by spend" groupBy="key" range={range} />
          <TopBySpend title="Top models by spend" groupBy="model" range={range} />
          <RefusalsByDimension range={range} />
        </div>
        <Refusals scope={{}} range={range} title="Latest refusals and errors" />
      </div>
    </>
  );
}
