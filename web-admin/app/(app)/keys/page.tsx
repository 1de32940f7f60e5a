"use client";

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useEffect, useMemo, useState } from "react";

import { CreateKeyDialog } from "@/components/KeyDialogs";
import { SelectField, TextField } from "@/components/TextField";
import { Pagination, Table, Td, Th } from "@/components/Table";
import { Badge, Button, Empty, ErrorPanel, Loading, PageHeader } from "@/components/ui";
import { call, query } from "@/lib/api";
import { formatAgo, formatTime } from "@/lib/format";
import { keyState, type KeyState } from "@/lib/keys";
import { limitsSummary } from "@/lib/limits";
import { useAllTeams, useAllUsers } from "@/lib/queries";
import { readsAll, useRole, writesKeys } from "@/lib/role";
import { Key, pageOf } from "@/lib/schemas";
import { useSession } from "@/lib/session";

const Keys = pageOf(Key);
const PER_PAGE = 25;

const STATE_TONE: Record<KeyState, "green" | "amber" | "red"> = { active: "green", expired: "amber", revoked: "red" };

export default function KeysPage() {
  const role = useRole();
  const me = useSession((s) => s.user);
  const users = useAllUsers();
  const teams = useAllTeams();
  const [typed, setTyped] = useState("");
  const [search, setSearch] = useState("");
  const [owner, setOwner] = useState("");
  const [team, setTeam] = useState("");
  const [status, setStatus] = useState("active");
  const [page, setPage] = useState(1);
  const [creating, setCreating] = useState(false);

  // Search as one types, without a request per keystroke.
  useEffect(() => {
    const t = setTimeout(() => {
      setSearch(typed.trim());
      setPage(1);
    }, 250);
    return () => clearTimeout(t);
  }, [typed]);

  const filters = {
    page,
    per_page: PER_PAGE,
    search,
    user_id: owner,
    team_id: team,
    status: status === "all" ? undefined : status,
    include_revoked: status === "all" ? true : undefined,
  };
  const keys = useQuery({
    queryKey: ["keys", "list", filters],
    queryFn: () => call(Keys, "GET", `/api/keys${query(filters)}`),
    placeholderData: keepPreviousData,
  });

  const emails = useMemo(() => new Map((users.data?.data ?? []).map((u) => [u.id, u.email])), [users.data]);
  const teamNames = useMemo(() => new Map((teams.data?.data ?? []).map((t) => [t.id, t.name])), [teams.data]);
  const ownerOf = (k: Key) =>
    k.user_id == null
      ? "—"
      : k.user_id === me?.id
        ? (me?.email ?? "you")
        : (emails.get(k.user_id) ?? `user ${k.user_id}`);

  const filtered = search || owner || team || status !== "active";
  return (
    <>
      <PageHeader
        title="Keys"
        description={
          readsAll(role)
            ? "Every API key of this gateway. Secrets are never shown after creation."
            : "Your API keys. Secrets are never shown after creation."
        }
        actions={
          writesKeys(role) && (
            <Button tone="primary" onClick={() => setCreating(true)}>
              New key
            </Button>
          )
        }
      />
      <form
        role="search"
        aria-label="Filter keys"
        className="mb-4 grid grid-cols-1 gap-3 sm:grid-cols-2 lg:grid-cols-4"
        onSubmit={(e) => e.preventDefault()}
      >
        <TextField
          id="key-search"
          label="Search"
          type="search"
          placeholder="name, id or prefix"
          value={typed}
          onChange={setTyped}
        />
        {readsAll(role) && (
          <>
            <SelectField
              id="key-owner-filter"
              label="Owner"
              value={owner}
              onChange={(v) => {
                setOwner(v);
                setPage(1);
              }}
              options={[
                { value: "", label: "Anyone" },
                ...(users.data?.data ?? []).map((u) => ({ value: String(u.id), label: u.email })),
              ]}
            />
            <SelectField
              id="key-team-filter"
              label="Team"
              value={team}
              onChange={(v) => {
                setTeam(v);
                setPage(1);
              }}
              options={[
                { value: "", label: "Any team" },
                ...(teams.data?.data ?? []).map((t) => ({ value: String(t.id), label: t.name })),
              ]}
            />
          </>
        )}
        <SelectField
          id="key-status-filter"
          label="Status"
          value={status}
          onChange={(v) => {
            setStatus(v);
            setPage(1);
          }}
          options={[
            { value: "active", label: "Active" },
            { value: "expired", label: "Expired" },
            { value: "revoked", label: "Revoked" },
            { value: "all", label: "All" },
          ]}
        />
      </form>
      {keys.isPending ? (
        <Loading label="Loading keys…" rows={5} />
      ) : keys.isError ? (
        <ErrorPanel title="Could not load keys" error={keys.error} onRetry={() => keys.refetch()} />
      ) : keys.data.data.length === 0 ? (
        <Empty title={filtered ? "No key matches these filters" : "No keys yet"}>
          {filtered
            ? "Change the search or the filters."
            : writesKeys(role)
              ? "Create one with “New key”."
              : "Nothing to show."}
        </Empty>
      ) : (
        <>
          <Table
            caption="API keys"
            head={
              <>
                <Th>Name</Th>
                <Th>Prefix</Th>
                <Th>Owner</Th>
                <Th>Team</Th>
                <Th>Limits</Th>
                <Th>Status</Th>
                <Th>Last used</Th>
                <Th>Created</Th>
              </>
            }
          >
            {keys.data.data.map((k) => {
              const state = keyState(k);
              return (
                <tr key={k.id}>
                  <Td>
                    <Link
                      href={`/keys/detail?id=${encodeURIComponent(k.id)}`}
                      className="font-medium text-indigo-700 hover:underline dark:text-indigo-300"
                    >
                      {k.name}
                    </Link>
                  </Td>
                  <Td className="font-mono text-xs">{k.prefix}…</Td>
                  <Td>{ownerOf(k)}</Td>
                  <Td>{k.team_id == null ? "—" : (teamNames.get(k.team_id) ?? `team ${k.team_id}`)}</Td>
                  <Td className="text-slate-600 dark:text-slate-300">{limitsSummary(k)}</Td>
                  <Td>
                    <Badge tone={STATE_TONE[state]}>{state}</Badge>
                  </Td>
                  <Td>
                    <span title={formatTime(k.last_used_at)}>{formatAgo(k.last_used_at)}</span>
                  </Td>
                  <Td>{formatTime(k.created_at)}</Td>
                </tr>
              );
            })}
          </Table>
          <Pagination page={page} perPage={PER_PAGE} total={keys.data.total} onPage={setPage} label="Key pages" />
        </>
      )}
      {creating && <CreateKeyDialog onClose={() => setCreating(false)} />}
    </>
  );
}
