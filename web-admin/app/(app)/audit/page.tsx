// The audit log: who changed what, newest first. Filters are typed into a draft and apply
// only when the form is submitted, so each keystroke does not start a query.
"use client";

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { z } from "zod";

import { Pagination, Table, Td, Th } from "@/components/Table";
import { SelectField, TextField } from "@/components/TextField";
import { Button, Empty, ErrorPanel, Loading, PageHeader } from "@/components/ui";
import { call, query } from "@/lib/api";
import { formatTime } from "@/lib/format";
import { issuesByField, type FieldErrors } from "@/lib/forms";
import { readsAll, useRole } from "@/lib/role";
import { AuditEntry, pageOf } from "@/lib/schemas";

const PER_PAGE = 25;
const AuditPage = pageOf(AuditEntry);

const TARGET_TYPES = [
  { value: "", label: "Any" },
  { value: "user", label: "User" },
  { value: "team", label: "Team" },
  { value: "key", label: "Key" },
  { value: "provider", label: "Provider" },
] as const;

interface Filters {
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  from: string;
  to: string;
}

const NO_FILTERS: Filters = { actor: "", action: "", target_type: "", target_id: "", from: "", to: "" };

const day = z.string().refine((text) => text === "" || /^\d{4}-\d{2}-\d{2}$/.test(text), "Enter a date");
const FilterRules = z
  .object({ actor: z.string(), action: z.string(), target_type: z.string(), target_id: z.string(), from: day, to: day })
  .refine((f) => f.from === "" || f.to === "" || f.from <= f.to, {
    path: ["to"],
    message: "The end date is before the start date",
  });

/** A picked day as the RFC 3339 instant (UTC) it starts at. */
function startOfDay(date: string): string {
  return `${date}T00:00:00Z`;
}

/** The instant after a picked day (UTC): the API's `to` is exclusive, so this keeps the whole day. */
function endOfDay(date: string): string {
  const [y, m, d] = date.split("-").map(Number);
  const next = new Date(Date.UTC(y ?? 1970, (m ?? 1) - 1, (d ?? 1) + 1));
  return next.toISOString().replace(/\.000Z$/, "Z");
}

function auditUrl(filters: Filters, page: number): string {
  return `/api/audit${query({
    page,
    per_page: PER_PAGE,
    actor: filters.actor.trim(),
    action: filters.action.trim(),
    target_type: filters.target_type,
    target_id: filters.target_id.trim(),
    from: filters.from ? startOfDay(filters.from) : undefined,
    to: filters.to ? endOfDay(filters.to) : undefined,
  })}`;
}

export default function AuditLogPage() {
  const role = useRole();
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [page, setPage] = useState(1);
  const entries = useQuery({
    queryKey: ["audit", filters, page],
    queryFn: () => call(AuditPage, "GET", auditUrl(filters, page)),
    enabled: readsAll(role),
    // Paging keeps the current rows on screen until the next ones arrive.
    placeholderData: keepPreviousData,
  });
  const filtered = Object.values(filters).some((v) => v !== "");

  return (
    <>
      <PageHeader
        title="Audit log"
        description="Every change made through the admin API, newest first. Secrets are never recorded."
      />
      {!readsAll(role) ? (
        <Empty title="Admins and viewers only" />
      ) : (
        <div className="space-y-4">
          <FilterForm
            initial={filters}
            onApply={(next) => {
              setFilters(next);
              setPage(1);
            }}
          />
          {entries.isPending ? (
            <Loading label="Loading audit entries…" />
          ) : entries.isError ? (
            <ErrorPanel error={entries.error} onRetry={() => void entries.refetch()} />
          ) : entries.data.data.length === 0 ? (
            <Empty title="No audit entries">{filtered ? "Nothing matches these filters." : null}</Empty>
          ) : (
            <div aria-busy={entries.isFetching}>
              <AuditTable entries={entries.data.data} />
              <Pagination
                page={entries.data.page}
                perPage={PER_PAGE}
                total={entries.data.total}
                onPage={setPage}
                label="Audit log pages"
              />
            </div>
          )}
        </div>
      )}
    </>
  );
}

function FilterForm({ initial, onApply }: { initial: Filters; onApply: (filters: Filters) => void }) {
  const [draft, setDraft] = useState<Filters>(initial);
  const [errors, setErrors] = useState<FieldErrors>({});
  const set = (field: keyof Filters) => (value: string) => setDraft((d) => ({ ...d, [field]: value }));

  function submit(event: FormEvent) {
    event.preventDefault();
    const checked = FilterRules.safeParse(draft);
    if (!checked.success) {
      setErrors(issuesByField(checked.error));
      return;
    }
    setErrors({});
    onApply(draft);
  }

  function clear() {
    setDraft(NO_FILTERS);
    setErrors({});
    onApply(NO_FILTERS);
  }

  return (
    <form
      onSubmit={submit}
      noValidate
      aria-label="Audit log filters"
      className="rounded-lg border border-slate-200 bg-white p-4 shadow-sm dark:border-slate-800 dark:bg-slate-900"
    >
      <div className="grid gap-3 sm:grid-cols-2 lg:grid-cols-3">
        <TextField
          id="audit-actor"
          label="Actor"
          value={draft.actor}
          onChange={set("actor")}
          hint="Exact, e.g. master-key or user:1:ada@example.com"
          autoComplete="off"
        />
        <TextField
          id="audit-action"
          label="Action"
          value={draft.action}
          onChange={set("action")}
          hint="Exact, e.g. key.revoke"
          autoComplete="off"
        />
        <SelectField
          id="audit-target-type"
          label="Target type"
          value={draft.target_type}
          onChange={set("target_type")}
          options={TARGET_TYPES}
        />
        <TextField
          id="audit-target-id"
          label="Target ID"
          value={draft.target_id}
          onChange={set("target_id")}
          autoComplete="off"
        />
        <TextField
          id="audit-from"
          label="From date"
          type="date"
          value={draft.from}
          onChange={set("from")}
          error={errors.from}
          hint="From the start of this day (UTC)"
        />
        <TextField
          id="audit-to"
          label="To date"
          type="date"
          value={draft.to}
          onChange={set("to")}
          error={errors.to}
          hint="Up to the end of this day (UTC)"
        />
      </div>
      <div className="mt-4 flex flex-wrap gap-2">
        <Button type="submit" tone="primary">
          Apply filters
        </Button>
        <Button onClick={clear}>Clear filters</Button>
      </div>
    </form>
  );
}

function AuditTable({ entries }: { entries: AuditEntry[] }) {
  return (
    <Table
      caption="Audit log entries, newest first"
      head={
        <>
          <Th>Time</Th>
          <Th>Actor</Th>
          <Th>Action</Th>
          <Th>Target</Th>
          <Th>IP</Th>
          <Th>
            <span className="sr-only">Details</span>
          </Th>
        </>
      }
    >
      {entries.map((entry) => (
        <AuditRow key={entry.id} entry={entry} />
      ))}
    </Table>
  );
}

const COLUMNS = 6;

function AuditRow({ entry }: { entry: AuditEntry }) {
  const [open, setOpen] = useState(false);
  const detailsId = `audit-details-${entry.id}`;
  return (
    <>
      <tr>
        <Td>
          <time dateTime={entry.occurred_at}>{formatTime(entry.occurred_at)}</time>
        </Td>
        <Td>
          <span className="block max-w-[16rem] truncate" title={entry.actor}>
            {entry.actor}
          </span>
        </Td>
        <Td className="font-mono text-xs">{entry.action}</Td>
        <Td>
          {entry.target_type}
          {entry.target_id ? (
            <span className="ml-1 font-mono text-xs text-slate-600 dark:text-slate-400">{entry.target_id}</span>
          ) : null}
        </Td>
        <Td className="font-mono text-xs">{entry.request_ip ?? "—"}</Td>
        <Td right>
          <Button
            small
            tone="ghost"
            aria-expanded={open}
            aria-controls={open ? detailsId : undefined}
            onClick={() => setOpen((o) => !o)}
          >
            Details
          </Button>
        </Td>
      </tr>
      {open && (
        <tr id={detailsId}>
          <td colSpan={COLUMNS} className="bg-slate-50 px-3 py-2 dark:bg-slate-900">
            <pre className="max-h-80 overflow-auto whitespace-pre-wrap break-all rounded bg-white p-3 font-mono text-xs text-slate-800 dark:bg-slate-950 dark:text-slate-200">
              {JSON.stringify(entry.summary, null, 2)}
            </pre>
          </td>
        </tr>
      )}
    </>
  );
}
