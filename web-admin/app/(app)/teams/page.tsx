// Teams: groups of users sharing limits and keys. Everything about one team (members,
// limits, key policy) is on its detail page; here admins create them.
"use client";

import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState, type FormEvent } from "react";
import { z } from "zod";

import { Dialog } from "@/components/Dialog";
import { Pagination, Table, Td, Th } from "@/components/Table";
import { TextField } from "@/components/TextField";
import { Button, Empty, ErrorPanel, Loading, Notice, PageHeader } from "@/components/ui";
import { call, query } from "@/lib/api";
import { formatTime } from "@/lib/format";
import { issuesByField, placeError, type FieldErrors } from "@/lib/forms";
import { limitsSummary } from "@/lib/limits";
import { isAdmin, readsAll, useRole } from "@/lib/role";
import { Team, pageOf } from "@/lib/schemas";

const PER_PAGE = 25;
const Teams = pageOf(Team);

function detailHref(team: Team): string {
  // A static export has no per-team pages: one detail page reads the id from the query.
  return `/teams/detail?id=${team.id}`;
}

export default function TeamsPage() {
  const role = useRole();
  if (!readsAll(role)) {
    return (
      <>
        <PageHeader title="Teams" />
        <Empty title="Only admins and viewers see teams." />
      </>
    );
  }
  return <TeamsDirectory admin={isAdmin(role)} />;
}

function TeamsDirectory({ admin }: { admin: boolean }) {
  const [page, setPage] = useState(1);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<Team | null>(null);

  const teams = useQuery({
    queryKey: ["teams", { page }],
    queryFn: () => call(Teams, "GET", `/api/teams${query({ page, per_page: PER_PAGE })}`),
    placeholderData: keepPreviousData,
  });

  return (
    <>
      <PageHeader
        title="Teams"
        description="Groups of users that share limits and keys."
        actions={
          admin && (
            <Button tone="primary" onClick={() => setCreating(true)}>
              New team
            </Button>
          )
        }
      />

      {created && (
        <div className="mb-4">
          <Notice>
            Created team {created.name}.{" "}
            <Link href={detailHref(created)} className="font-medium underline">
              Add members and limits
            </Link>
          </Notice>
        </div>
      )}

      {teams.isPending ? (
        <Loading label="Loading teams…" />
      ) : teams.isError ? (
        <ErrorPanel error={teams.error} title="Could not load teams" onRetry={() => void teams.refetch()} />
      ) : teams.data.data.length === 0 ? (
        <Empty title="No teams yet.">{admin ? "Create one with “New team”." : null}</Empty>
      ) : (
        <>
          <TeamsTable teams={teams.data.data} />
          <Pagination page={page} perPage={PER_PAGE} total={teams.data.total} onPage={setPage} label="Team pages" />
        </>
      )}

      {creating && (
        <NewTeamDialog
          onClose={() => setCreating(false)}
          onCreated={(team) => {
            setCreating(false);
            setCreated(team);
          }}
        />
      )}
    </>
  );
}

function TeamsTable({ teams }: { teams: Team[] }) {
  return (
    <Table
      caption="Teams"
      head={
        <>
          <Th>Name</Th>
          <Th>Limits</Th>
          <Th>Allowed models</Th>
          <Th>Created</Th>
        </>
      }
    >
      {teams.map((team) => (
        <tr key={team.id}>
          <Td className="font-medium">
            <Link href={detailHref(team)} className="text-indigo-700 hover:underline dark:text-indigo-300">
              {team.name}
            </Link>
          </Td>
          <Td className="text-slate-600 dark:text-slate-300">{limitsSummary(team.limits)}</Td>
          <Td className="text-slate-600 dark:text-slate-300">
            {team.key_policy.allowed_models == null ? "all" : team.key_policy.allowed_models.join(", ") || "none"}
          </Td>
          <Td className="text-slate-600 dark:text-slate-300">{formatTime(team.created_at)}</Td>
        </tr>
      ))}
    </Table>
  );
}

const NewTeamForm = z.object({
  name: z.string().trim().min(1, "Enter a name").max(128, "At most 128 characters"),
});
type NewTeamForm = z.infer<typeof NewTeamForm>;

function NewTeamDialog({ onClose, onCreated }: { onClose: () => void; onCreated: (team: Team) => void }) {
  const client = useQueryClient();
  const [name, setName] = useState("");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);

  const create = useMutation({
    mutationFn: (body: NewTeamForm) => call(Team, "POST", "/api/teams", body),
    onSuccess: (team) => {
      void client.invalidateQueries({ queryKey: ["teams"] });
      onCreated(team);
    },
    onError: (error) => {
      const placed = placeError(error, ["name"]);
      setErrors(placed.field ?? {});
      setFailure(placed.form ?? null);
    },
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    setFailure(null);
    const checked = NewTeamForm.safeParse({ name });
    if (!checked.success) {
      setErrors(issuesByField(checked.error));
      return;
    }
    setErrors({});
    create.mutate(checked.data);
  }

  return (
    <Dialog title="New team" onClose={onClose}>
      <form onSubmit={submit} noValidate aria-label="New team" className="space-y-4">
        <TextField
          id="new-team-name"
          label="Team name"
          autoComplete="off"
          value={name}
          onChange={setName}
          error={errors.name}
        />
        {failure && <ErrorPanel error={failure} title="Could not create the team" />}
        <div className="flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" tone="primary" disabled={create.isPending}>
            Create team
          </Button>
        </div>
      </form>
    </Dialog>
  );
}
