"use client";

import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useSearchParams } from "next/navigation";
import { Suspense, useState } from "react";

import { EditKeyDialog, RevokeKeyDialog, RotateKeyDialog } from "@/components/KeyDialogs";
import { RangeSelect, Refusals, UsageOverTime } from "@/components/UsagePanels";
import { Badge, Button, Card, ErrorPanel, Loading, PageHeader } from "@/components/ui";
import { call } from "@/lib/api";
import { formatAgo, formatLimit, formatTime, formatUsd } from "@/lib/format";
import { keyState, mayChangeKey } from "@/lib/keys";
import { useAllTeams, useAllUsers } from "@/lib/queries";
import { useRole } from "@/lib/role";
import { Key } from "@/lib/schemas";
import type { RangeName } from "@/lib/series";
import { useSession } from "@/lib/session";

type Open = "edit" | "rotate" | "revoke" | null;

function Fact({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div>
      <dt className="text-xs uppercase tracking-wide text-slate-500 dark:text-slate-400">{label}</dt>
      <dd className="mt-0.5 text-sm">{children}</dd>
    </div>
  );
}

function KeyDetail() {
  const id = useSearchParams().get("id") ?? "";
  const role = useRole();
  const me = useSession((s) => s.user);
  const users = useAllUsers();
  const teams = useAllTeams();
  const [open, setOpen] = useState<Open>(null);
  const [range, setRange] = useState<RangeName>("24h");
  const key = useQuery({
    queryKey: ["keys", "one", id],
    queryFn: () => call(Key, "GET", `/api/keys/${encodeURIComponent(id)}`),
    enabled: id !== "",
  });

  if (!id) return <ErrorPanel title="No key chosen" error="Open a key from the list of keys." />;
  if (key.isPending) return <Loading label="Loading the key…" rows={6} />;
  if (key.isError) return <ErrorPanel title="Could not load the key" error={key.error} onRetry={() => key.refetch()} />;

  const k = key.data;
  const state = keyState(k);
  const writable = mayChangeKey(k, role, me?.id) && state !== "revoked";
  const owner =
    k.user_id == null
      ? "—"
      : k.user_id === me?.id
        ? me.email
        : (users.data?.data.find((u) => u.id === k.user_id)?.email ?? `user ${k.user_id}`);
  const team =
    k.team_id == null ? "—" : (teams.data?.data.find((t) => t.id === k.team_id)?.name ?? `team ${k.team_id}`);
  const budget =
    k.budget_micro_usd == null
      ? "unlimited"
      : `${formatUsd(k.budget_micro_usd)} ${k.budget_period === "total" ? "in total" : `per ${k.budget_period ?? "month"}`}`;

  return (
    <>
      <nav aria-label="Breadcrumb" className="mb-2 text-sm">
        <Link href="/keys" className="text-indigo-700 underline dark:text-indigo-300">
          Keys
        </Link>{" "}
        / {k.name}
      </nav>
      <PageHeader
        title={k.name}
        description={
          <>
            <span className="font-mono">{k.prefix}…</span> · {k.id} ·{" "}
            <Badge tone={state === "active" ? "green" : state === "expired" ? "amber" : "red"}>{state}</Badge>
          </>
        }
        actions={
          writable && (
            <>
              <Button onClick={() => setOpen("edit")}>Edit key</Button>
              <Button onClick={() => setOpen("rotate")}>Rotate</Button>
              <Button tone="danger" onClick={() => setOpen("revoke")}>
                Revoke
              </Button>
            </>
          )
        }
      />
      <div className="space-y-6">
        <Card title="Settings">
          <dl className="grid grid-cols-2 gap-4 lg:grid-cols-4">
            <Fact label="Owner">{owner}</Fact>
            <Fact label="Team">{team}</Fact>
            <Fact label="Allowed models">{k.allowed_models?.join(", ") ?? "all"}</Fact>
            <Fact label="Expires">{k.expires_at ? formatTime(k.expires_at) : "never"}</Fact>
            <Fact label="Requests per minute">{formatLimit(k.rpm_limit)}</Fact>
            <Fact label="Tokens per minute">{formatLimit(k.tpm_limit)}</Fact>
            <Fact label="Concurrent requests">{formatLimit(k.concurrency_limit)}</Fact>
            <Fact label="Budget">{budget}</Fact>
            <Fact label="Response cache">{k.cache_enabled ? "used" : "off for this key"}</Fact>
            <Fact label="Last used">{formatAgo(k.last_used_at)}</Fact>
            <Fact label="Created">{formatTime(k.created_at)}</Fact>
            {k.revoked_at && <Fact label="Revoked">{formatTime(k.revoked_at)}</Fact>}
            {k.previous_secret_valid_until && (
              <Fact label="Old secret works until">{formatTime(k.previous_secret_valid_until)}</Fact>
            )}
          </dl>
        </Card>
        <div className="max-w-xs">
          <RangeSelect value={range} onChange={setRange} />
        </div>
        <UsageOverTime scope={{ key_id: k.id }} range={range} title="Usage of this key" />
        <Refusals scope={{ key_id: k.id }} range={range} title="Recent refusals" />
      </div>
      {open === "edit" && <EditKeyDialog keyView={k} onClose={() => setOpen(null)} />}
      {open === "rotate" && <RotateKeyDialog keyView={k} onClose={() => setOpen(null)} />}
      {open === "revoke" && <RevokeKeyDialog keyView={k} onClose={() => setOpen(null)} />}
    </>
  );
}

export default function KeyPage() {
  return (
    <Suspense fallback={<Loading label="Loading the key…" />}>
      <KeyDetail />
    </Suspense>
  );
}
