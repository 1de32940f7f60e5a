// Users: everyone who signs in, with their role, state and limits. Admins create, edit
// and delete; viewers read. The API checks every call itself; hiding the controls only
// spares viewers buttons that would be refused.
"use client";

import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent, type ReactNode } from "react";
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
import { Pagination, Table, Td, Th } from "@/components/Table";
import { SelectField, TextField } from "@/components/TextField";
import { Badge, Button, Empty, ErrorPanel, Loading, Notice, PageHeader, Section } from "@/components/ui";
import { call, query } from "@/lib/api";
import { formatTime } from "@/lib/format";
import { issuesByField, placeError, type FieldErrors } from "@/lib/forms";
import { modelsFromText, sameModels, limitsSummary } from "@/lib/limits";
import { isAdmin, readsAll, useRole } from "@/lib/role";
import { NoContent, Role, User, pageOf } from "@/lib/schemas";
import { useSession } from "@/lib/session";

const PER_PAGE = 25;
const Users = pageOf(User);

const ROLE_OPTIONS = [
  { value: "admin", label: "Admin" },
  { value: "member", label: "Member" },
  { value: "viewer", label: "Viewer" },
] as const;

const ROLE_TONE = { admin: "indigo", member: "slate", viewer: "amber" } as const;

/** Debounced, so typing in a search box asks once per pause, not once per key. */
function useDebounced<T>(value: T, ms = 300): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

function FormActions({ children }: { children: ReactNode }) {
  return <div className="mt-5 flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">{children}</div>;
}

// ---------------------------------------------------------------------------------------
// The page.

type Status = "" | "active" | "disabled";
type Open = { kind: "new" } | { kind: "edit"; user: User } | { kind: "delete"; user: User } | null;

export default function UsersPage() {
  const role = useRole();
  if (!readsAll(role)) {
    return (
      <>
        <PageHeader title="Users" />
        <Empty title="Only admins and viewers see users." />
      </>
    );
  }
  return <UsersDirectory admin={isAdmin(role)} />;
}

function UsersDirectory({ admin }: { admin: boolean }) {
  const [emailText, setEmailText] = useState("");
  const email = useDebounced(emailText.trim());
  const [roleFilter, setRoleFilter] = useState("");
  const [status, setStatus] = useState<Status>("");
  const [page, setPage] = useState(1);
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const filters = { email, role: roleFilter, status, page };
  const users = useQuery({
    queryKey: ["users", filters],
    queryFn: () =>
      call(
        Users,
        "GET",
        `/api/users${query({
          page,
          per_page: PER_PAGE,
          role: roleFilter || undefined,
          disabled: status === "" ? undefined : status === "disabled",
          email: email || undefined,
        })}`,
      ),
    // Keep the rows on screen while the next page or filter loads.
    placeholderData: keepPreviousData,
  });

  const filtered = email !== "" || roleFilter !== "" || status !== "";
  const done = (message: string) => {
    setOpen(null);
    setNotice(message);
  };

  return (
    <>
      <PageHeader
        title="Users"
        description="Everyone who signs in to Tollgate, with their role and the limits on all their keys."
        actions={
          admin && (
            <Button tone="primary" onClick={() => setOpen({ kind: "new" })}>
              New user
            </Button>
          )
        }
      />

      {notice && (
        <div className="mb-4">
          <Notice>{notice}</Notice>
        </div>
      )}

      <form
        role="search"
        aria-label="Filter users"
        onSubmit={(e) => e.preventDefault()}
        className="mb-4 grid grid-cols-1 gap-3 sm:grid-cols-3"
      >
        <TextField
          id="users-email"
          label="Search by email"
          type="search"
          placeholder="ada@example.com"
          value={emailText}
          onChange={(value) => {
            setEmailText(value);
            setPage(1);
          }}
        />
        <SelectField
          id="users-role"
          label="Filter by role"
          value={roleFilter}
          onChange={(value) => {
            setRoleFilter(value);
            setPage(1);
          }}
          options={[{ value: "", label: "All roles" }, ...ROLE_OPTIONS]}
        />
        <SelectField
          id="users-status"
          label="Filter by status"
          value={status}
          onChange={(value) => {
            setStatus(value === "active" || value === "disabled" ? value : "");
            setPage(1);
          }}
          options={[
            { value: "", label: "Any status" },
            { value: "active", label: "Active" },
            { value: "disabled", label: "Disabled" },
          ]}
        />
      </form>

      {users.isPending ? (
        <Loading label="Loading users…" />
      ) : users.isError ? (
        <ErrorPanel error={users.error} title="Could not load users" onRetry={() => void users.refetch()} />
      ) : users.data.data.length === 0 ? (
        <Empty title={filtered ? "No users match these filters." : "No users yet."}>
          {filtered ? "Change or clear the filters to see more." : admin ? "Create one with “New user”." : null}
        </Empty>
      ) : (
        <>
          <UsersTable
            users={users.data.data}
            admin={admin}
            onEdit={(user) => setOpen({ kind: "edit", user })}
            onDelete={(user) => setOpen({ kind: "delete", user })}
          />
          <Pagination page={page} perPage={PER_PAGE} total={users.data.total} onPage={setPage} label="User pages" />
        </>
      )}

      {open?.kind === "new" && (
        <NewUserDialog onClose={() => setOpen(null)} onCreated={(user) => done(`Created user ${user.email}.`)} />
      )}
      {open?.kind === "edit" && (
        <EditUserDialog
          key={open.user.id}
          user={open.user}
          onClose={() => setOpen(null)}
          onSaved={(user) => done(`Saved changes to ${user.email}.`)}
        />
      )}
      {open?.kind === "delete" && (
        <DeleteUserDialog
          user={open.user}
          onClose={() => setOpen(null)}
          onDeleted={() => {
            // Deleting the last row of a page would leave it empty: step back one.
            if (page > 1 && users.data?.data.length === 1) setPage(page - 1);
            done(`Deleted user ${open.user.email}.`);
          }}
        />
      )}
    </>
  );
}

function UsersTable({
  users,
  admin,
  onEdit,
  onDelete,
}: {
  users: User[];
  admin: boolean;
  onEdit: (user: User) => void;
  onDelete: (user: User) => void;
}) {
  return (
    <Table
      caption="Users"
      head={
        <>
          <Th>Email</Th>
          <Th>Role</Th>
          <Th>Status</Th>
          <Th>Limits</Th>
          <Th>Created</Th>
          {admin && (
            <Th right>
              <span className="sr-only">Actions</span>
            </Th>
          )}
        </>
      }
    >
      {users.map((user) => (
        <tr key={user.id}>
          <Td className="font-medium">{user.email}</Td>
          <Td>
            <Badge tone={ROLE_TONE[user.role]}>{user.role}</Badge>
          </Td>
          <Td>{user.disabled ? <Badge tone="red">disabled</Badge> : <Badge tone="green">active</Badge>}</Td>
          <Td className="text-slate-600 dark:text-slate-300">{limitsSummary(user.limits)}</Td>
          <Td className="text-slate-600 dark:text-slate-300">{formatTime(user.created_at)}</Td>
          {admin && (
            <Td right>
              <div className="flex justify-end gap-2">
                <Button small aria-label={`Edit ${user.email}`} onClick={() => onEdit(user)}>
                  Edit
                </Button>
                <Button small aria-label={`Delete ${user.email}`} onClick={() => onDelete(user)}>
                  Delete
                </Button>
              </div>
            </Td>
          )}
        </tr>
      ))}
    </Table>
  );
}

// ---------------------------------------------------------------------------------------
// New user.

// Only presence and shape here: the password rules live on the server, which names the
// field in its 422 and the message shows under it.
const NewUserForm = z.object({
  email: z.string().trim().min(1, "Enter an email address").email("Enter an email address"),
  password: z.string().min(1, "Enter a password"),
  role: Role,
});
type NewUserForm = z.infer<typeof NewUserForm>;
const NEW_USER_FIELDS = ["email", "password", "role"] as const;

function NewUserDialog({ onClose, onCreated }: { onClose: () => void; onCreated: (user: User) => void }) {
  const client = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState("member");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);

  const create = useMutation({
    mutationFn: (body: NewUserForm) => call(User, "POST", "/api/users", body),
    onSuccess: (user) => {
      void client.invalidateQueries({ queryKey: ["users"] });
      onCreated(user);
    },
    onError: (error) => {
      const placed = placeError(error, NEW_USER_FIELDS);
      setErrors(placed.field ?? {});
      setFailure(placed.form ?? null);
    },
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    setFailure(null);
    const checked = NewUserForm.safeParse({ email, password, role });
    if (!checked.success) {
      setErrors(issuesByField(checked.error));
      return;
    }
    setErrors({});
    create.mutate(checked.data);
  }

  return (
    <Dialog title="New user" onClose={onClose}>
      <form onSubmit={submit} noValidate aria-label="New user">
        <div className="grid grid-cols-1 gap-4">
          <TextField
            id="new-user-email"
            label="Email"
            type="email"
            autoComplete="off"
            value={email}
            onChange={setEmail}
            error={errors.email}
          />
          <TextField
            id="new-user-password"
            label="Password"
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={setPassword}
            error={errors.password}
            hint="At least 12 characters."
          />
          <SelectField
            id="new-user-role"
            label="Role"
            value={role}
            onChange={setRole}
            options={ROLE_OPTIONS}
            error={errors.role}
          />
          {failure && <ErrorPanel error={failure} title="Could not create the user" />}
        </div>
        <FormActions>
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" tone="primary" disabled={create.isPending}>
            Create user
          </Button>
        </FormActions>
      </form>
    </Dialog>
  );
}

// ---------------------------------------------------------------------------------------
// Edit user.

interface UserPatch {
  role?: Role;
  disabled?: boolean;
  password?: string;
  current_password?: string;
  limits?: LimitsPatch;
  key_policy?: { allowed_models?: string[] | null; key_limits?: LimitsPatch };
}

const EDIT_FIELDS = ["role", "disabled", "password", "current_password", "allowed_models"] as const;

function EditUserDialog({
  user,
  onClose,
  onSaved,
}: {
  user: User;
  onClose: () => void;
  onSaved: (user: User) => void;
}) {
  const client = useQueryClient();
  // Changing one's own password needs the current one (a stolen session must not suffice).
  const self = useSession((s) => s.user?.id) === user.id;
  const [role, setRole] = useState<string>(user.role);
  const [status, setStatus] = useState(user.disabled ? "disabled" : "active");
  const [password, setPassword] = useState("");
  const [currentPassword, setCurrentPassword] = useState("");
  const [limits, setLimits] = useState<LimitInputs>(() => inputsOf(user.limits));
  const [keyLimits, setKeyLimits] = useState<LimitInputs>(() => inputsOf(user.key_policy.key_limits));
  const [models, setModels] = useState(user.key_policy.allowed_models?.join(", ") ?? "");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [limitErrors, setLimitErrors] = useState<FieldErrors>({});
  const [keyLimitErrors, setKeyLimitErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);

  const save = useMutation({
    mutationFn: (patch: UserPatch) => call(User, "PATCH", `/api/users/${user.id}`, patch),
    onSuccess: (saved) => {
      void client.invalidateQueries({ queryKey: ["users"] });
      // Team pages list members with their state.
      void client.invalidateQueries({ queryKey: ["teams"] });
      onSaved(saved);
    },
    onError: (error, patch) => {
      // The API names a limit by its bare name for both sets; it can be placed only when
      // one set was sent.
      const sentLimits = patch.limits !== undefined;
      const sentKeyLimits = patch.key_policy?.key_limits !== undefined;
      const limitsTarget = sentLimits !== sentKeyLimits ? (sentLimits ? setLimitErrors : setKeyLimitErrors) : null;
      const placed = placeError(error, limitsTarget ? [...EDIT_FIELDS, ...LIMIT_FIELDS] : EDIT_FIELDS);
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
    const checkedLimits = limitsFromInputs(limits);
    const checkedKeyLimits = limitsFromInputs(keyLimits);
    const found: FieldErrors = {};
    if (self && password !== "" && currentPassword === "")
      found.current_password = "Enter your current password to change your own";
    setErrors(found);
    setLimitErrors(checkedLimits.errors ?? {});
    setKeyLimitErrors(checkedKeyLimits.errors ?? {});
    if (!checkedLimits.values || !checkedKeyLimits.values || Object.keys(found).length) return;

    const patch: UserPatch = {};
    if (role !== user.role) patch.role = Role.parse(role);
    if ((status === "disabled") !== user.disabled) patch.disabled = status === "disabled";
    if (password !== "") {
      patch.password = password;
      if (self) patch.current_password = currentPassword;
    }
    patch.limits = changedLimits(user.limits, checkedLimits.values);
    const allowed = modelsFromText(models);
    const keyPolicy: NonNullable<UserPatch["key_policy"]> = {};
    if (!sameModels(user.key_policy.allowed_models, allowed)) keyPolicy.allowed_models = allowed;
    keyPolicy.key_limits = changedLimits(user.key_policy.key_limits, checkedKeyLimits.values);
    if (keyPolicy.allowed_models !== undefined || keyPolicy.key_limits) patch.key_policy = keyPolicy;

    // undefined members vanish in JSON; nothing left means nothing to send.
    if (JSON.stringify(patch) === "{}") {
      onClose();
      return;
    }
    save.mutate(patch);
  }

  return (
    <Dialog title={`Edit ${user.email}`} onClose={onClose} wide>
      <form onSubmit={submit} noValidate aria-label={`Edit ${user.email}`}>
        {/* Scrolls inside the dialog, so the buttons stay in reach on short screens. */}
        <div className="space-y-4">
          <div className="grid grid-cols-1 gap-4 sm:grid-cols-2">
            <SelectField
              id="edit-user-role"
              label="Role"
              value={role}
              onChange={setRole}
              options={ROLE_OPTIONS}
              error={errors.role}
            />
            <SelectField
              id="edit-user-status"
              label="Account status"
              value={status}
              onChange={setStatus}
              error={errors.disabled}
              hint="A disabled user cannot sign in, and their keys stop working."
              options={[
                { value: "active", label: "Active" },
                { value: "disabled", label: "Disabled" },
              ]}
            />
            <TextField
              id="edit-user-password"
              label="New password"
              type="password"
              autoComplete="new-password"
              value={password}
              onChange={setPassword}
              error={errors.password}
              hint="Leave empty to keep the current password."
            />
            {self && password !== "" && (
              <TextField
                id="edit-user-current-password"
                label="Your current password"
                type="password"
                autoComplete="current-password"
                value={currentPassword}
                onChange={setCurrentPassword}
                error={errors.current_password}
              />
            )}
          </div>
          <Section title="User limits" description="Shared by all of this user's keys together.">
            <LimitsFields idPrefix="edit-user-limits" inputs={limits} onChange={setLimits} errors={limitErrors} />
          </Section>
          <Section title="Key policy" description="The most each key this user creates for themselves may have.">
            <div className="space-y-3">
              <TextField
                id="edit-user-allowed-models"
                label="Allowed models"
                placeholder="gpt-4o-mini, claude-sonnet"
                value={models}
                onChange={setModels}
                error={errors.allowed_models}
                hint="Comma-separated model names. Empty allows every model."
              />
              <LimitsFields
                idPrefix="edit-user-key-limits"
                inputs={keyLimits}
                onChange={setKeyLimits}
                errors={keyLimitErrors}
              />
            </div>
          </Section>
          {failure && <ErrorPanel error={failure} title="Could not save the changes" />}
        </div>
        <FormActions>
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" tone="primary" disabled={save.isPending}>
            Save changes
          </Button>
        </FormActions>
      </form>
    </Dialog>
  );
}

// ---------------------------------------------------------------------------------------
// Delete user.

function DeleteUserDialog({ user, onClose, onDeleted }: { user: User; onClose: () => void; onDeleted: () => void }) {
  const client = useQueryClient();
  const remove = useMutation({
    mutationFn: () => call(NoContent, "DELETE", `/api/users/${user.id}`),
    onSuccess: () => {
      // Their keys and team memberships go with them.
      for (const key of [["users"], ["keys"], ["teams"]]) void client.invalidateQueries({ queryKey: key });
      onDeleted();
    },
  });

  return (
    <Dialog title={`Delete ${user.email}?`} onClose={onClose}>
      <p className="text-sm">
        Delete the user <strong className="break-all">{user.email}</strong>? Their keys are deleted with them and stop
        working at once. This cannot be undone.
      </p>
      {remove.isError && (
        <div className="mt-3">
          <ErrorPanel error={remove.error} title="Could not delete the user" />
        </div>
      )}
      <FormActions>
        <Button onClick={onClose}>Cancel</Button>
        <Button tone="danger" disabled={remove.isPending} onClick={() => remove.mutate()}>
          Delete user
        </Button>
      </FormActions>
    </Dialog>
  );
}
