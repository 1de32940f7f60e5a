// The response cache: what it holds, how often it answered instead of the upstream (by
// model, over a chosen window, from the usage events), and purges for admins.
"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";

import { Dialog } from "@/components/Dialog";
import { Table, Td, Th } from "@/components/Table";
import { SelectField } from "@/components/TextField";
import { Button, Empty, ErrorPanel, Loading, Notice, PageHeader, Stat } from "@/components/ui";
import { call, query } from "@/lib/api";
import { formatBytes, formatCount, formatPercent } from "@/lib/format";
import { isAdmin, readsAll, useRole } from "@/lib/role";
import { CacheStats, Purged, type ModelCacheStats } from "@/lib/schemas";

const WINDOWS = [
  { value: "1", label: "Last hour" },
  { value: "24", label: "Last 24 hours" },
  { value: "168", label: "Last 7 days" },
  { value: "720", label: "Last 30 days" },
] as const;

function storeLabel(store: string | null | undefined): string {
  if (store === "redis") return "Redis (shared by every gateway)";
  if (store === "memory") return "In process (this gateway)";
  return "Not reachable from this admin process";
}

export default function CachePage() {
  const role = useRole();
  const [hours, setHours] = useState("24");
  const [purging, setPurging] = useState<{ model: string | null } | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const stats = useQuery({
    queryKey: ["cache-stats", hours],
    queryFn: () => call(CacheStats, "GET", `/api/cache/stats${query({ hours })}`),
    enabled: readsAll(role),
  });

  return (
    <>
      <PageHeader
        title="Response cache"
        description="Answers repeated requests of models with caching on, without asking the upstream. Hits and misses come from the usage events."
        actions={
          isAdmin(role) && stats.data?.store ? (
            <Button tone="danger" onClick={() => setPurging({ model: null })} disabled={stats.data.entries === 0}>
              Purge all
            </Button>
          ) : undefined
        }
      />
      {!readsAll(role) ? (
        <Empty title="Admins and viewers only" />
      ) : stats.isPending ? (
        <Loading label="Loading cache statistics…" />
      ) : stats.isError ? (
        <ErrorPanel error={stats.error} onRetry={() => void stats.refetch()} />
      ) : (
        <div className="space-y-6">
          {done && <Notice>{done}</Notice>}
          <dl className="grid grid-cols-1 gap-3 sm:grid-cols-3">
            <Stat label="Store" value={stats.data.store ?? "—"} hint={storeLabel(stats.data.store)} />
            <Stat label="Entries" value={formatCount(stats.data.entries)} />
            <Stat
              label="Size"
              value={formatBytes(stats.data.bytes)}
              hint={stats.data.store === "redis" ? "As stored in Redis (compressed)" : "Held in memory"}
            />
          </dl>
          <div className="max-w-xs">
            <SelectField
              id="cache-window"
              label="Hits and misses over"
              value={hours}
              onChange={setHours}
              options={WINDOWS.map((w) => ({ value: w.value, label: w.label }))}
            />
          </div>
          {stats.data.models.length === 0 ? (
            <Empty title="Nothing cached yet">
              Turn caching on for a model with <code>cache: {"{enabled: true}"}</code> in the config.
            </Empty>
          ) : (
            <ModelTable
              models={stats.data.models}
              canPurge={isAdmin(role) && !!stats.data.store}
              onPurge={(model) => setPurging({ model })}
            />
          )}
        </div>
      )}
      {purging && (
        <PurgeDialog
          model={purging.model}
          onClose={() => setPurging(null)}
          onDone={(message) => {
            setPurging(null);
            setDone(message);
          }}
        />
      )}
    </>
  );
}

function ModelTable({
  models,
  canPurge,
  onPurge,
}: {
  models: ModelCacheStats[];
  canPurge: boolean;
  onPurge: (model: string) => void;
}) {
  return (
    <Table
      caption="Cache by model"
      head={
        <>
          <Th>Model</Th>
          <Th right>Entries</Th>
          <Th right>Size</Th>
          <Th right>Hits</Th>
          <Th right>Misses</Th>
          <Th right>Bypasses</Th>
          <Th right>Hit ratio</Th>
          <Th right>Tokens saved</Th>
          {canPurge && <Th />}
        </>
      }
    >
      {models.map((m) => (
        <tr key={m.model}>
          <Td>{m.model}</Td>
          <Td right>{formatCount(m.entries)}</Td>
          <Td right>{formatBytes(m.bytes)}</Td>
          <Td right>{formatCount(m.hits)}</Td>
          <Td right>{formatCount(m.misses)}</Td>
          <Td right>{formatCount(m.bypasses)}</Td>
          <Td right>{m.hit_ratio == null ? "—" : formatPercent(m.hits, m.hits + m.misses)}</Td>
          <Td right>{formatCount(m.tokens_saved)}</Td>
          {canPurge && (
            <Td right>
              <Button small onClick={() => onPurge(m.model)} disabled={m.entries === 0}>
                Purge
              </Button>
            </Td>
          )}
        </tr>
      ))}
    </Table>
  );
}

function PurgeDialog({
  model,
  onClose,
  onDone,
}: {
  model: string | null;
  onClose: () => void;
  onDone: (message: string) => void;
}) {
  const client = useQueryClient();
  const purge = useMutation({
    mutationFn: () => call(Purged, "DELETE", `/api/cache${query({ model: model ?? undefined })}`),
    onSuccess: (purged) => {
      void client.invalidateQueries({ queryKey: ["cache-stats"] });
      onDone(
        `Purged ${formatCount(purged.purged)} ${purged.purged === 1 ? "entry" : "entries"}${model ? ` of ${model}` : ""}.`,
      );
    },
  });
  const what = model ? `the cached answers of ${model}` : "every cached answer";
  return (
    <Dialog title={model ? `Purge ${model}?` : "Purge the whole cache?"} onClose={onClose}>
      <div className="space-y-4">
        <p className="text-sm">
          This removes {what}. The next identical requests go upstream (and are paid for) until their answers are stored
          again.
        </p>
        {purge.isError && <ErrorPanel title="Not purged" error={purge.error} />}
        <div className="flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">
          <Button onClick={onClose}>Cancel</Button>
          <Button tone="danger" disabled={purge.isPending} onClick={() => purge.mutate()}>
            {purge.isPending ? "Purging…" : "Purge"}
          </Button>
        </div>
      </div>
    </Dialog>
  );
}
