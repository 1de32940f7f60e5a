// Creating and changing keys. One form for both: name, owner and team (admins, on create),
// allowed models, limits and expiry; checked with zod before sending, the API's 422 shown at
// its field, and nothing typed lost on an error.
"use client";

import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { z } from "zod";

import { call } from "@/lib/api";
import { placeError, type FieldErrors } from "@/lib/forms";
import { dateOfExpiry, expiryFromDate } from "@/lib/keys";
import { modelsFromText } from "@/lib/limits";
import { useAllTeams, useAllUsers, useRoutes } from "@/lib/queries";
import { isAdmin, useRole } from "@/lib/role";
import { IssuedKey, Key } from "@/lib/schemas";

import { Dialog } from "./Dialog";
import { LIMIT_FIELDS, LimitsFields, inputsOf, limitsFromInputs, type LimitInputs } from "./LimitsFields";
import { SecretReveal } from "./SecretReveal";
import { SelectField, TextField } from "./TextField";
import { Button, ErrorPanel } from "./ui";

const Name = z.string().trim().min(1, "Give the key a name").max(128, "At most 128 characters");

const FIELDS = ["name", "user_id", "team_id", "allowed_models", "expires_at", ...LIMIT_FIELDS];

interface Inputs {
  name: string;
  userId: string;
  teamId: string;
  models: string;
  expires: string;
  limits: LimitInputs;
  /** Its requests use the response cache of models that have one. */
  cache: boolean;
}

function inputsOfKey(key?: Key): Inputs {
  return {
    name: key?.name ?? "",
    userId: key?.user_id != null ? String(key.user_id) : "",
    teamId: key?.team_id != null ? String(key.team_id) : "",
    models: key?.allowed_models?.join(", ") ?? "",
    expires: dateOfExpiry(key?.expires_at),
    limits: inputsOf(key),
    cache: key?.cache_enabled ?? true,
  };
}

/** Checks the inputs; the body to send, or the errors per field. */
function bodyOf(
  inputs: Inputs,
  creating: boolean,
  admin: boolean,
): { body?: Record<string, unknown>; errors?: FieldErrors } {
  const errors: FieldErrors = {};
  const name = Name.safeParse(inputs.name);
  if (!name.success) errors.name = name.error.issues[0]?.message ?? "Invalid name";
  const limits = limitsFromInputs(inputs.limits);
  Object.assign(errors, limits.errors);
  const expires_at = expiryFromDate(inputs.expires);
  if (expires_at && Date.parse(expires_at) <= Date.now()) errors.expires_at = "Pick a day in the future";
  if (Object.keys(errors).length || !limits.values) return { errors };
  const body: Record<string, unknown> = {
    name: name.data,
    allowed_models: modelsFromText(inputs.models),
    ...limits.values,
    expires_at,
    cache_enabled: inputs.cache,
  };
  if (creating && admin) {
    if (inputs.userId) body.user_id = Number(inputs.userId);
    if (inputs.teamId) body.team_id = Number(inputs.teamId);
  }
  if (creating) {
    // On create, "no limit" is simply left out (a member's key then takes their policy).
    for (const [field, value] of Object.entries(body)) if (value === null) delete body[field];
  }
  return { body };
}

function KeyForm({
  initial,
  creating,
  submitLabel,
  onSubmit,
  onCancel,
  busy,
  serverError,
}: {
  initial: Inputs;
  creating: boolean;
  submitLabel: string;
  onSubmit: (body: Record<string, unknown>) => Promise<FieldErrors | undefined>;
  onCancel: () => void;
  busy: boolean;
  serverError?: string;
}) {
  const role = useRole();
  const admin = isAdmin(role);
  const users = useAllUsers();
  const teams = useAllTeams();
  const routes = useRoutes();
  const [inputs, setInputs] = useState(initial);
  const [errors, setErrors] = useState<FieldErrors>({});
  const set = (field: keyof Inputs) => (value: string) => setInputs((i) => ({ ...i, [field]: value }));

  async function submit(event: FormEvent) {
    event.preventDefault();
    const checked = bodyOf(inputs, creating, admin);
    if (checked.errors) {
      setErrors(checked.errors);
      return;
    }
    setErrors((await onSubmit(checked.body ?? {})) ?? {});
  }

  const modelNames = routes.data?.models.map((m) => m.name) ?? [];
  return (
    <form onSubmit={submit} noValidate className="space-y-4">
      <TextField
        id="key-name"
        label="Name"
        value={inputs.name}
        onChange={set("name")}
        error={errors.name}
        autoComplete="off"
      />
      {creating && admin && (
        <div className="grid grid-cols-1 gap-3 sm:grid-cols-2">
          <SelectField
            id="key-owner"
            label="Owner"
            value={inputs.userId}
            onChange={set("userId")}
            error={errors.user_id}
            options={[
              { value: "", label: "No user" },
              ...(users.data?.data ?? []).map((u) => ({ value: String(u.id), label: u.email })),
            ]}
          />
          <SelectField
            id="key-team"
            label="Team"
            value={inputs.teamId}
            onChange={set("teamId")}
            error={errors.team_id}
            options={[
              { value: "", label: "No team" },
              ...(teams.data?.data ?? []).map((t) => ({ value: String(t.id), label: t.name })),
            ]}
          />
        </div>
      )}
      <TextField
        id="key-models"
        label="Allowed models"
        value={inputs.models}
        onChange={set("models")}
        error={errors.allowed_models}
        placeholder="all models"
        list="key-model-names"
        hint={
          modelNames.length
            ? `Comma-separated; empty allows all. Served here: ${modelNames.join(", ")}`
            : "Comma-separated; empty allows all."
        }
      />
      <datalist id="key-model-names">
        {modelNames.map((m) => (
          <option key={m} value={m} />
        ))}
      </datalist>
      <LimitsFields
        idPrefix="key"
        inputs={inputs.limits}
        onChange={(limits) => setInputs((i) => ({ ...i, limits }))}
        errors={errors}
      />
      <TextField
        id="key-expires"
        label="Expires on (UTC)"
        type="date"
        value={inputs.expires}
        onChange={set("expires")}
        error={errors.expires_at}
        hint="Empty: never. The key stops working at the end of that day."
      />
      <label htmlFor="key-cache" className="flex items-start gap-2 text-sm">
        <input
          id="key-cache"
          type="checkbox"
          className="mt-0.5 h-4 w-4 rounded border-slate-300 accent-indigo-600"
          checked={inputs.cache}
          onChange={(e) => setInputs((i) => ({ ...i, cache: e.target.checked }))}
        />
        <span>
          Use the response cache
          <span className="block text-slate-600 dark:text-slate-400">
            For models with caching on, repeated requests are answered from the cache. Off: every request goes upstream.
          </span>
        </span>
      </label>
      {serverError && <ErrorPanel title="Not saved" error={serverError} />}
      <div className="flex justify-end gap-2">
        <Button onClick={onCancel}>Cancel</Button>
        <Button tone="primary" type="submit" disabled={busy}>
          {busy ? "Saving…" : submitLabel}
        </Button>
      </div>
    </form>
  );
}

/** "New key": the form, then the secret, once. */
export function CreateKeyDialog({ onClose }: { onClose: () => void }) {
  const client = useQueryClient();
  const [issued, setIssued] = useState<{ name: string; secret: string } | null>(null);
  const [serverError, setServerError] = useState<string>();
  const create = useMutation({
    mutationFn: (body: Record<string, unknown>) => call(IssuedKey, "POST", "/api/keys", body),
  });

  if (issued) return <SecretReveal title={`Key “${issued.name}” created`} secret={issued.secret} onClose={onClose} />;
  return (
    <Dialog title="New key" onClose={onClose} wide>
      <KeyForm
        initial={inputsOfKey()}
        creating
        submitLabel="Create key"
        busy={create.isPending}
        serverError={serverError}
        onCancel={onClose}
        onSubmit={async (body) => {
          setServerError(undefined);
          try {
            const key = await create.mutateAsync(body);
            await client.invalidateQueries({ queryKey: ["keys"] });
            setIssued({ name: key.name, secret: key.secret });
          } catch (e) {
            const placed = placeError(e, FIELDS);
            setServerError(placed.form);
            return placed.field;
          }
        }}
      />
    </Dialog>
  );
}

/** "Edit": name, models, limits and expiry of an existing key. */
export function EditKeyDialog({ keyView, onClose }: { keyView: Key; onClose: () => void }) {
  const client = useQueryClient();
  const [serverError, setServerError] = useState<string>();
  const update = useMutation({
    mutationFn: (body: Record<string, unknown>) => call(Key, "PATCH", `/api/keys/${keyView.id}`, body),
  });
  return (
    <Dialog title={`Edit ${keyView.name}`} onClose={onClose} wide>
      <KeyForm
        initial={inputsOfKey(keyView)}
        creating={false}
        submitLabel="Save changes"
        busy={update.isPending}
        serverError={serverError}
        onCancel={onClose}
        onSubmit={async (body) => {
          setServerError(undefined);
          // Only what changed: a member may tighten limits, and resending an unchanged one
          // would count as asking for it again.
          const original: Record<string, unknown> = keyView;
          const changed = Object.fromEntries(
            Object.entries(body).filter(
              ([field, value]) => JSON.stringify(value) !== JSON.stringify(original[field] ?? null),
            ),
          );
          if (Object.keys(changed).length === 0) {
            onClose();
            return;
          }
          try {
            await update.mutateAsync(changed);
            await client.invalidateQueries({ queryKey: ["keys"] });
            onClose();
          } catch (e) {
            const placed = placeError(e, FIELDS);
            setServerError(placed.form);
            return placed.field;
          }
        }}
      />
    </Dialog>
  );
}

const GRACE = [
  { value: "0", label: "End the old secret now" },
  { value: "3600", label: "1 hour" },
  { value: "86400", label: "24 hours" },
  { value: "604800", label: "7 days" },
];

/** "Rotate": a new secret, shown once; the old one works for the grace period chosen. */
export function RotateKeyDialog({ keyView, onClose }: { keyView: Key; onClose: () => void }) {
  const client = useQueryClient();
  const [grace, setGrace] = useState("86400");
  const [secret, setSecret] = useState<string | null>(null);
  const rotate = useMutation({
    mutationFn: () => call(IssuedKey, "POST", `/api/keys/${keyView.id}/rotate`, { grace_seconds: Number(grace) }),
    onSuccess: async (key) => {
      await client.invalidateQueries({ queryKey: ["keys"] });
      setSecret(key.secret);
    },
  });
  if (secret) return <SecretReveal title={`New secret for “${keyView.name}”`} secret={secret} onClose={onClose} />;
  return (
    <Dialog title={`Rotate ${keyView.name}`} onClose={onClose}>
      <p className="mb-3 text-sm text-slate-600 dark:text-slate-300">
        The key gets a new secret. Clients using the old one keep working until the grace period ends.
      </p>
      <SelectField
        id="rotate-grace"
        label="Old secret keeps working for"
        value={grace}
        onChange={setGrace}
        options={GRACE}
      />
      {rotate.isError && (
        <div className="mt-3">
          <ErrorPanel title="Not rotated" error={rotate.error} />
        </div>
      )}
      <div className="mt-4 flex justify-end gap-2">
        <Button onClick={onClose}>Cancel</Button>
        <Button tone="primary" disabled={rotate.isPending} onClick={() => rotate.mutate()}>
          {rotate.isPending ? "Rotating…" : "Rotate key"}
        </Button>
      </div>
    </Dialog>
  );
}

/** "Revoke", confirmed: the key stops working at once. */
export function RevokeKeyDialog({ keyView, onClose }: { keyView: Key; onClose: () => void }) {
  const client = useQueryClient();
  const revoke = useMutation({
    mutationFn: () => call(Key, "POST", `/api/keys/${keyView.id}/revoke`),
    onSuccess: async () => {
      await client.invalidateQueries({ queryKey: ["keys"] });
      onClose();
    },
  });
  return (
    <Dialog title={`Revoke ${keyView.name}?`} onClose={onClose}>
      <p className="text-sm text-slate-700 dark:text-slate-300">
        Requests with this key are refused from now on, on every gateway. This cannot be undone.
      </p>
      {revoke.isError && (
        <div className="mt-3">
          <ErrorPanel title="Not revoked" error={revoke.error} />
        </div>
      )}
      <div className="mt-4 flex justify-end gap-2">
        <Button onClick={onClose}>Cancel</Button>
        <Button tone="danger" disabled={revoke.isPending} onClick={() => revoke.mutate()}>
          {revoke.isPending ? "Revoking…" : "Revoke key"}
        </Button>
      </div>
    </Dialog>
  );
}
