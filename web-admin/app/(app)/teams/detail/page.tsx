// One team: its name, limits, key policy and members. Admins change all of it; viewers
// read it, with no controls at all. The static export has one page for every team, so the
// team comes from `?id=`.
"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState, type FormEvent, type ReactNode } from "react";
import { z } from "zod";

import { Dialog } from "@/components/Dialog";
import {
  LIMIT_FIELDS,
  LimitsFields,
  inputsOf,
  limitsFromInputs,
  type LimitInputs,
  changedLimits,
  type LimitsPatch,
} from "@/components/LimitsFields";
import { Table, Td, Th } from "@/components/Table";
import { SelectField, TextField } from "@/components/TextField";
import { Badge, Button, Card, Empty, ErrorPanel, Loading, Notice, PageHeader, Section } from "@/components/ui";
import { call } from "@/lib/api";
import { formatLimit, formatTime, formatUsd } from "@/lib/format";
import { issuesByField, placeError, type FieldErrors } from "@/lib/forms";
import { modelsFromText, sameModels } from "@/lib/limits";
import { isAdmin, readsAll, useRole } from "@/lib/role";
import { NoContent, Team, TeamDetail, type Limits, type User } from "@/lib/schemas";
import { useAllUsers } from "@/lib/queries";

const ROLE_TONE = { admin: "indigo", member: "slate", viewer: "amber" } as const;

const detailKey = (id: number) => ["teams", "detail", id] as const;

function budgetText(limits: Limits): string {
  if (limits.budget_micro_usd == null) return "unlimited";
  const period = { day: "per day", month: "per month", total: "in total" }[limits.budget_period ?? "total"];
  return `${formatUsd(limits.budget_micro_usd)} ${period}`;
}

function modelsText(models: readonly string[] | null | undefined): string {
  if (models == null) return "all models";
  return models.length ? models.join(", ") : "none";
}

const LIMITS_HELP = "Shared by all of the team's keys together.";
const POLICY_HELP = "The most each key its members create for themselves may have.";

// ---------------------------------------------------------------------------------------
// The page.

export default function TeamDetailPage() {
  // useSearchParams needs a Suspense boundary for the static export to build.
  return (
    <Suspense fallback={<Loading label="Loading the team…" />}>
      <TeamFromQuery />
    </Suspense>
  );
}

function TeamFromQuery() {
  const role = useRole();
  const raw = useSearchParams().get("id") ?? "";
  const id = /^\d+$/.test(raw) ? Number(raw) : null;
  if (!readsAll(role)) {
    return (
      <>
        <PageHeader title="Team" />
        <Empty title="Only admins and viewers see teams." />
      </>
    );
  }
  if (id === null) {
    return (
      <>
        <PageHeader title="Team" />
        <Empty title="No team chosen.">
          <Link href="/teams" className="underline">
            Choose one from the teams
          </Link>
        </Empty>
      </>
    );
  }
  return <TeamView id={id} admin={isAdmin(role)} />;
}

function BackLink() {
  return (
    <Link href="/teams" className="mb-2 inline-block text-sm text-indigo-700 hover:underline dark:text-indigo-300">
      ← All teams
    </Link>
  );
}

function TeamView({ id, admin }: { id: number; admin: boolean }) {
  const [notice, setNotice] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [gone, setGone] = useState(false);
  const team = useQuery({
    queryKey: detailKey(id),
    queryFn: () => call(TeamDetail, "GET", `/api/teams/${id}`),
    // Once deleted, asking again would only fail while the teams page opens.
    enabled: !gone,
  });

  if (gone) {
    return (
      <p role="status" className="text-sm">
        Team deleted. Back to the teams…
      </p>
    );
  }
  if (team.isPending) {
    return (
      <>
        <BackLink />
        <Loading label="Loading the team…" />
      </>
    );
  }
  if (team.isError) {
    return (
      <>
        <BackLink />
        <ErrorPanel error={team.error} title="Could not load the team" onRetry={() => void team.refetch()} />
      </>
    );
  }

  const data = team.data;
  return (
    <>
      <BackLink />
      <PageHeader
        title={data.name}
        description={`Team #${data.id} · created ${formatTime(data.created_at)}`}
        actions={
          admin && (
            <Button tone="danger" onClick={() => setDeleting(true)}>
              Delete team
            </Button>
          )
        }
      />
      {notice && (
        <div className="mb-4">
          <Notice>{notice}</Notice>
        </div>
      )}
      <div className="space-y-6">
        {admin ? (
          // Keyed by the last change, so the form starts again from what the server kept.
          <TeamSettingsForm key={data.updated_at} team={data} onSaved={() => setNotice("Saved changes.")} />
        ) : (
          <TeamSettingsView team={data} />
        )}
        <Members team={data} admin={admin} onNotice={setNotice} />
      </div>
      {deleting && <DeleteTeamDialog team={data} onClose={() => setDeleting(false)} onDeleted={() => setGone(true)} />}
    </>
  );
}

// ---------------------------------------------------------------------------------------
// Settings: read-only for viewers.

function Item({ term, children }: { term: string; children: ReactNode }) {
  return (
    <div className="min-w-0">
      <dt className="text-xs text-slate-600 dark:text-slate-400">{term}</dt>
      <dd className="break-words font-medium">{children}</dd>
    </div>
  );
}

function LimitsList({ limits }: { limits: Limits }) {
  return (
    <>
      <Item term="Requests per minute">{formatLimit(limits.rpm_limit)}</Item>
      <Item term="Tokens per minute">{formatLimit(limits.tpm_limit)}</Item>
      <Item term="Concurrent requests">{formatLimit(limits.concurrency_limit)}</Item>
      <Item term="Budget">{budgetText(limits)}</Item>
    </>
  );
}

function TeamSettingsView({ team }: { team: TeamDetail }) {
  return (
    <div className="grid grid-cols-1 gap-6 lg:grid-cols-2">
      <Card title="Team limits">
        <p className="mb-3 text-xs text-slate-600 dark:text-slate-400">{LIMITS_HELP}</p>
        <dl className="grid grid-cols-1 gap-3 text-sm sm:grid-cols-2">
          <LimitsList limits={team.limits} />
        </dl>
      </Card>
      <Card title="Key policy">
        <p className="mb-3 text-xs text-slate-600 dark:text-slate-400">{POLICY_HELP}</p>
        <dl className="grid grid-cols-1 gap-3 text-sm sm:grid-cols-2">
          <div className="sm:col-span-2">
            <Item term="Allowed models">{modelsText(team.key_policy.allowed_models)}</Item>
          </div>
          <LimitsList limits={team.key_policy.key_limits} />
        </dl>
      </Card>
    </div>
  );
}

// ---------------------------------------------------------------------------------------
// Settings: the admin's form (name, limits, key policy).

interface TeamPatch {
  name?: string;
  limits?: LimitsPatch;
  key_policy?: { allowed_models?: string[] | null; key_limits?: LimitsPatch };
}

const TeamName = z.string().trim().min(1, "Enter a name").max(128, "At most 128 characters");
const SETTINGS_FIELDS = ["name", "allowed_models"] as const;

function TeamSettingsForm({ team, onSaved }: { team: TeamDetail; onSaved: () => void }) {
  const client = useQueryClient();
  const [name, setName] = useState(team.name);
  const [limits, setLimits] = useState<LimitInputs>(() => inputsOf(team.limits));
  const [keyLimits, setKeyLimits] = useState<LimitInputs>(() => inputsOf(team.key_policy.key_limits));
  const [models, setModels] = useState(team.key_policy.allowed_models?.join(", ") ?? "");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [limitErrors, setLimitErrors] = useState<FieldErrors>({});
  const [keyLimitErrors, setKeyLimitErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [unchanged, setUnchanged] = useState(false);

  const save = useMutation({
    mutationFn: (patch: TeamPatch) => call(Team, "PATCH", `/api/teams/${team.id}`, patch),
    onSuccess: (saved) => {
      // The answer has no members: keep the ones we have until the list comes back.
      client.setQueryData<TeamDetail>(detailKey(team.id), (old) => (old ? { ...old, ...saved } : old));
      void client.invalidateQueries({ queryKey: ["teams"] });
      onSaved();
    },
    onError: (error, patch) => {
      // The API names a limit by its bare name for both sets; it can be placed only when
      // one set was sent.
      const sentLimits = patch.limits !== undefined;
      const sentKeyLimits = patch.key_policy?.key_limits !== undefined;
      const limitsTarget = sentLimits !== sentKeyLimits ? (sentLimits ? setLimitErrors : setKeyLimitErrors) : null;
      const placed = placeError(error, limitsTarget ? [...SETTINGS_FIELDS, ...LIMIT_FIELDS] : SETTINGS_FIELDS);
      const [field] = Object.keys(placed.field ?? {});
      if (placed.field && field && limitsTarget && (LIMIT_FIELDS as readonly string[]).includes(field)) {
        limitsTarget(placed.field);
      } else {
        setErrors(placed.field ?? {});
      }
      setFailure(placed.form ?? null);
    },
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    setFailure(null);
    setUnchanged(false);
    const checkedName = TeamName.safeParse(name);
    const checkedLimits = limitsFromInputs(limits);
    const checkedKeyLimits = limitsFromInputs(keyLimits);
    setErrors(checkedName.success ? {} : { name: issuesByField(checkedName.error).form ?? "Enter a name" });
    setLimitErrors(checkedLimits.errors ?? {});
    setKeyLimitErrors(checkedKeyLimits.errors ?? {});
    if (!checkedName.success || !checkedLimits.values || !checkedKeyLimits.values) return;

    const patch: TeamPatch = {};
    if (checkedName.data !== team.name) patch.name = checkedName.data;
    patch.limits = changedLimits(team.limits, checkedLimits.values);
    const allowed = modelsFromText(models);
    const keyPolicy: NonNullable<TeamPatch["key_policy"]> = {};
    if (!sameModels(team.key_policy.allowed_models, allowed)) keyPolicy.allowed_models = allowed;
    keyPolicy.key_limits = changedLimits(team.key_policy.key_limits, checkedKeyLimits.values);
    if (keyPolicy.allowed_models !== undefined || keyPolicy.key_limits) patch.key_policy = keyPolicy;

    // undefined members vanish in JSON; nothing left means nothing to send.
    if (JSON.stringify(patch) === "{}") {
      setUnchanged(true);
      return;
    }
    save.mutate(patch);
  }

  return (
    <Card title="Settings">
      <form onSubmit={submit} noValidate aria-label="Team settings" className="space-y-4">
        <div className="max-w-md">
          <TextField
            id="team-name"
            label="Team name"
            autoComplete="off"
            value={name}
            onChange={setName}
            error={errors.name}
          />
        </div>
        <div className="grid grid-cols-1 gap-4 xl:grid-cols-2">
          <Section title="Team limits" description={LIMITS_HELP}>
            <LimitsFields idPrefix="team-limits" inputs={limits} onChange={setLimits} errors={limitErrors} />
          </Section>
          <Section title="Key policy" description={POLICY_HELP}>
            <div className="space-y-3">
              <TextField
                id="team-allowed-models"
                label="Allowed models"
                placeholder="gpt-4o-mini, claude-sonnet"
                value={models}
                onChange={setModels}
                error={errors.allowed_models}
                hint="Comma-separated model names. Empty allows every model."
              />
              <LimitsFields
                idPrefix="team-key-limits"
                inputs={keyLimits}
                onChange={setKeyLimits}
                errors={keyLimitErrors}
              />
            </div>
          </Section>
        </div>
        {failure && <ErrorPanel error={failure} title="Could not save the changes" />}
        {unchanged && (
          <p role="status" className="text-sm text-slate-600 dark:text-slate-400">
            Nothing changed, so nothing was saved.
          </p>
        )}
        <div className="flex justify-end">
          <Button type="submit" tone="primary" disabled={save.isPending}>
            Save changes
          </Button>
        </div>
      </form>
    </Card>
  );
}

// ---------------------------------------------------------------------------------------
// Members.

function Members({ team, admin, onNotice }: { team: TeamDetail; admin: boolean; onNotice: (message: string) => void }) {
  const client = useQueryClient();
  const remove = useMutation({
    mutationFn: (user: User) => call(NoContent, "DELETE", `/api/teams/${team.id}/members/${user.id}`),
    onSuccess: (_, user) => {
      void client.invalidateQueries({ queryKey: detailKey(team.id) });
      onNotice(`Removed ${user.email} from the team.`);
    },
  });

  return (
    <Card title="Members">
      {admin && <AddMember team={team} onAdded={(user) => onNotice(`Added ${user.email} to the team.`)} />}
      {remove.isError && (
        <div className="mb-3">
          <ErrorPanel error={remove.error} title="Could not remove the member" />
        </div>
      )}
      {team.members.length === 0 ? (
        <Empty title="No members yet.">{admin ? "Add one above." : null}</Empty>
      ) : (
        <Table
          caption={`Members of ${team.name}`}
          head={
            <>
              <Th>Email</Th>
              <Th>Role</Th>
              <Th>Status</Th>
              {admin && (
                <Th right>
                  <span className="sr-only">Actions</span>
                </Th>
              )}
            </>
          }
        >
          {team.members.map((member) => (
            <tr key={member.id}>
              <Td className="font-medium">{member.email}</Td>
              <Td>
                <Badge tone={ROLE_TONE[member.role]}>{member.role}</Badge>
              </Td>
              <Td>{member.disabled ? <Badge tone="red">disabled</Badge> : <Badge tone="green">active</Badge>}</Td>
              {admin && (
                <Td right>
                  <Button
                    small
                    aria-label={`Remove ${member.email}`}
                    disabled={remove.isPending && remove.variables?.id === member.id}
                    onClick={() => remove.mutate(member)}
                  >
                    Remove
                  </Button>
                </Td>
              )}
            </tr>
          ))}
        </Table>
      )}
    </Card>
  );
}

function AddMember({ team, onAdded }: { team: TeamDetail; onAdded: (user: User) => void }) {
  const client = useQueryClient();
  const users = useAllUsers();
  const [chosen, setChosen] = useState("");
  const [error, setError] = useState<string | undefined>();

  const add = useMutation({
    mutationFn: (user: User) => call(NoContent, "PUT", `/api/teams/${team.id}/members/${user.id}`),
    onSuccess: (_, user) => {
      setChosen("");
      void client.invalidateQueries({ queryKey: detailKey(team.id) });
      onAdded(user);
    },
    onError: (e) => setError(e.message),
  });

  if (users.isPending) return <Loading label="Loading users…" rows={1} />;
  if (users.isError)
    return <ErrorPanel error={users.error} title="Could not load users to add" onRetry={() => void users.refetch()} />;

  const members = new Set(team.members.map((m) => m.id));
  const candidates = users.data.data.filter((u) => !members.has(u.id));

  function submit(event: FormEvent) {
    event.preventDefault();
    const user = candidates.find((u) => String(u.id) === chosen);
    if (!user) {
      setError("Choose a user to add");
      return;
    }
    setError(undefined);
    add.mutate(user);
  }

  return (
    <form
      onSubmit={submit}
      noValidate
      aria-label="Add member"
      className="mb-4 flex flex-col gap-2 sm:flex-row sm:items-start"
    >
      <div className="min-w-0 sm:w-80">
        <SelectField
          id="team-add-member"
          label="User to add"
          value={chosen}
          onChange={(value) => {
            setChosen(value);
            setError(undefined);
          }}
          error={error}
          disabled={candidates.length === 0}
          hint={candidates.length === 0 ? "Every user is already a member." : undefined}
          options={[
            { value: "", label: "Choose a user…" },
            ...candidates.map((u) => ({ value: String(u.id), label: u.email })),
          ]}
        />
      </div>
      {/* Lines the button up with the select, below the label. */}
      <Button type="submit" tone="primary" className="sm:mt-6" disabled={add.isPending || candidates.length === 0}>
        Add member
      </Button>
    </form>
  );
}

// ---------------------------------------------------------------------------------------
// Delete team.

function DeleteTeamDialog({
  team,
  onClose,
  onDeleted,
}: {
  team: TeamDetail;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const client = useQueryClient();
  const router = useRouter();
  const remove = useMutation({
    mutationFn: () => call(NoContent, "DELETE", `/api/teams/${team.id}`),
    onSuccess: () => {
      onDeleted();
      // Dropped rather than refetched: asking again for a deleted team would only fail.
      client.removeQueries({ queryKey: detailKey(team.id) });
      for (const key of [["teams"], ["keys"]]) void client.invalidateQueries({ queryKey: key });
      router.push("/teams");
    },
  });

  return (
    <Dialog title={`Delete ${team.name}?`} onClose={onClose}>
      <p className="text-sm">
        Delete the team <strong className="break-all">{team.name}</strong>? Its keys are deleted with it and stop
        working at once; its members keep their accounts. This cannot be undone.
      </p>
      {remove.isError && (
        <div className="mt-3">
          <ErrorPanel error={remove.error} title="Could not delete the team" />
        </div>
      )}
      <div className="mt-5 flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">
        <Button onClick={onClose}>Cancel</Button>
        <Button tone="danger" disabled={remove.isPending} onClick={() => remove.mutate()}>
          Delete team
        </Button>
      </div>
    </Dialog>
  );
}
