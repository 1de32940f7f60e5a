// Providers & routes: the upstream credentials stored in the database (admins change them,
// viewers read them masked) and the routes from the configuration with each deployment's
// recent health. A secret goes in once and is never shown again, not even in part beyond
// the API's masked last four.
"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { z } from "zod";

import { Dialog } from "@/components/Dialog";
import { Table, Td, Th } from "@/components/Table";
import { SelectField, TextField } from "@/components/TextField";
import { Badge, Button, Card, Empty, ErrorPanel, Loading, Notice, PageHeader } from "@/components/ui";
import { call } from "@/lib/api";
import { formatAgo, formatCount, formatLimit, formatPercent, formatTime, formatUsd } from "@/lib/format";
import { issuesByField, placeError, type FieldErrors } from "@/lib/forms";
import { useRoutes } from "@/lib/queries";
import { isAdmin, readsAll, useRole } from "@/lib/role";
import { NoContent, Provider, pageOf, type ModelRoute, type Routes } from "@/lib/schemas";

const KINDS = ["openai", "openai-compatible", "azure-openai", "anthropic"] as const;
const KIND_LABELS: Record<string, string> = {
  openai: "OpenAI",
  "openai-compatible": "OpenAI-compatible",
  "azure-openai": "Azure OpenAI",
  anthropic: "Anthropic",
};
const KIND_OPTIONS = KINDS.map((kind) => ({ value: kind, label: KIND_LABELS[kind] ?? kind }));
const FIELDS = ["name", "kind", "base_url", "api_key"] as const;

// GET /api/providers answers a plain array today; a page is accepted too so that the list
// keeps working if the API starts paging it.
const ProviderList = z.union([z.array(Provider), pageOf(Provider).transform((page) => page.data)]);

function kindLabel(kind: string): string {
  return KIND_LABELS[kind] ?? kind;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

// The same rules the API applies, so most mistakes are caught before anything is sent.
const nameRule = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, "Use 1 to 64 letters, digits, '-', '_' or '.'");
const baseUrlRule = z
  .string()
  .trim()
  .refine((text) => text === "" || isHttpUrl(text), "Enter an http(s) URL, or leave it empty");
const secretRule = z.string().trim().max(8192, "The key can be at most 8192 characters");

const NewCredential = z.object({
  name: nameRule,
  kind: z.enum(KINDS, { error: "Choose a kind" }),
  base_url: baseUrlRule,
  api_key: secretRule.min(1, "Enter the provider's API key"),
});
const CredentialChanges = z.object({ name: nameRule, base_url: baseUrlRule, api_key: secretRule });

function useProviders(enabled: boolean) {
  return useQuery({
    queryKey: ["providers"],
    queryFn: () => call(ProviderList, "GET", "/api/providers"),
    enabled,
  });
}

/** Refreshes what a credential change affects: the list and the audit log. */
function useAfterChange() {
  const client = useQueryClient();
  return () => {
    void client.invalidateQueries({ queryKey: ["providers"] });
    void client.invalidateQueries({ queryKey: ["audit"] });
  };
}

export default function ProvidersPage() {
  const role = useRole();
  return (
    <>
      <PageHeader
        title="Providers & routes"
        description="Upstream credentials stored by the gateway, and where each model's requests go."
      />
      {readsAll(role) ? (
        <div className="space-y-8">
          <Credentials admin={isAdmin(role)} />
          <RoutesSection />
        </div>
      ) : (
        <Empty title="Admins and viewers only">Providers and routes are the operators&apos; business.</Empty>
      )}
    </>
  );
}

// ---------------------------------------------------------------------------------------
// Stored credentials

type Open = { kind: "add" } | { kind: "edit"; provider: Provider } | { kind: "delete"; provider: Provider } | null;

function Credentials({ admin }: { admin: boolean }) {
  const providers = useProviders(true);
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<string | null>(null);

  function done(message: string) {
    setOpen(null);
    setNotice(message);
  }

  return (
    <section aria-labelledby="credentials-heading" className="space-y-3">
      <div className="flex flex-wrap items-end justify-between gap-2">
        <div>
          <h2 id="credentials-heading" className="text-lg font-semibold">
            Stored credentials
          </h2>
          <p className="text-sm text-slate-600 dark:text-slate-400">
            Keys are encrypted at rest and shown only by their last four characters.
          </p>
        </div>
        {admin && (
          <Button
            tone="primary"
            onClick={() => {
              setNotice(null);
              setOpen({ kind: "add" });
            }}
          >
            Add credential
          </Button>
        )}
      </div>
      {notice && <Notice>{notice}</Notice>}
      {providers.isPending ? (
        <Loading label="Loading credentials…" />
      ) : providers.isError ? (
        <ErrorPanel error={providers.error} onRetry={() => void providers.refetch()} />
      ) : providers.data.length === 0 ? (
        <Empty title="No stored credentials">
          {admin ? "Add one to call a provider with a key kept in the database." : null}
        </Empty>
      ) : (
        <CredentialTable
          providers={providers.data}
          admin={admin}
          onEdit={(provider) => {
            setNotice(null);
            setOpen({ kind: "edit", provider });
          }}
          onDelete={(provider) => {
            setNotice(null);
            setOpen({ kind: "delete", provider });
          }}
        />
      )}
      {admin && open?.kind === "add" && <CredentialDialog onClose={() => setOpen(null)} onDone={done} />}
      {admin && open?.kind === "edit" && (
        <CredentialDialog existing={open.provider} onClose={() => setOpen(null)} onDone={done} />
      )}
      {admin && open?.kind === "delete" && (
        <DeleteDialog provider={open.provider} onClose={() => setOpen(null)} onDone={done} />
      )}
    </section>
  );
}

function CredentialTable({
  providers,
  admin,
  onEdit,
  onDelete,
}: {
  providers: Provider[];
  admin: boolean;
  onEdit: (provider: Provider) => void;
  onDelete: (provider: Provider) => void;
}) {
  return (
    <Table
      caption="Stored provider credentials"
      head={
        <>
          <Th>Name</Th>
          <Th>Kind</Th>
          <Th>Base URL</Th>
          <Th>API key</Th>
          <Th>Updated</Th>
          {admin && <Th right>Actions</Th>}
        </>
      }
    >
      {providers.map((p) => (
        <tr key={p.id}>
          <Td className="font-medium">{p.name}</Td>
          <Td>{kindLabel(p.kind)}</Td>
          <Td>
            {p.base_url ? (
              <span className="block max-w-[16rem] truncate font-mono text-xs" title={p.base_url}>
                {p.base_url}
              </span>
            ) : (
              <span className="text-slate-500 dark:text-slate-400">default</span>
            )}
          </Td>
          <Td className="font-mono text-xs">{p.api_key}</Td>
          <Td>
            <time dateTime={p.updated_at} title={formatTime(p.updated_at)}>
              {formatAgo(p.updated_at)}
            </time>
          </Td>
          {admin && (
            <Td right>
              <div className="flex justify-end gap-2">
                <Button small onClick={() => onEdit(p)} aria-label={`Replace key for ${p.name}`}>
                  Replace key
                </Button>
                <Button
                  small
                  tone="ghost"
                  className="text-red-700 dark:text-red-300"
                  onClick={() => onDelete(p)}
                  aria-label={`Delete ${p.name}`}
                >
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

type CredentialBody = { name?: string; kind?: string; base_url?: string | null; api_key?: string };

/** What the form says to send: the whole credential when adding, only what changed when editing. */
function bodyOf(
  existing: Provider | undefined,
  inputs: { name: string; kind: string; base_url: string; api_key: string },
): { body?: CredentialBody; errors?: FieldErrors } {
  if (!existing) {
    const parsed = NewCredential.safeParse(inputs);
    if (!parsed.success) return { errors: issuesByField(parsed.error) };
    const { base_url, ...rest } = parsed.data;
    return { body: base_url ? { ...rest, base_url } : rest };
  }
  const parsed = CredentialChanges.safeParse(inputs);
  if (!parsed.success) return { errors: issuesByField(parsed.error) };
  const body: CredentialBody = {};
  if (parsed.data.name !== existing.name) body.name = parsed.data.name;
  // An emptied field clears the stored URL; an untouched one is left out.
  const baseUrl = parsed.data.base_url === "" ? null : parsed.data.base_url;
  if (baseUrl !== (existing.base_url ?? null)) body.base_url = baseUrl;
  if (parsed.data.api_key !== "") body.api_key = parsed.data.api_key;
  return { body };
}

function CredentialDialog({
  existing,
  onClose,
  onDone,
}: {
  existing?: Provider;
  onClose: () => void;
  onDone: (message: string) => void;
}) {
  const afterChange = useAfterChange();
  const [name, setName] = useState(existing?.name ?? "");
  const [kind, setKind] = useState<string>(existing?.kind ?? "openai");
  const [baseUrl, setBaseUrl] = useState(existing?.base_url ?? "");
  const [apiKey, setApiKey] = useState("");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [formError, setFormError] = useState<string | null>(null);

  const save = useMutation({
    mutationFn: (body: CredentialBody) =>
      existing
        ? call(Provider, "PATCH", `/api/providers/${existing.id}`, body)
        : call(Provider, "POST", "/api/providers", body),
    onSuccess: (saved) => {
      // The secret leaves the page's state as soon as the server has it.
      setApiKey("");
      afterChange();
      onDone(existing ? `Saved ${saved.name} (key ${saved.api_key}).` : `Stored ${saved.name} (key ${saved.api_key}).`);
    },
    onError: (error) => {
      const placed = placeError(error, FIELDS);
      setErrors(placed.field ?? {});
      setFormError(placed.form ?? null);
    },
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    setFormError(null);
    const { body, errors: found } = bodyOf(existing, { name, kind, base_url: baseUrl, api_key: apiKey });
    if (!body) {
      setErrors(found ?? {});
      return;
    }
    setErrors({});
    if (Object.keys(body).length === 0) {
      setFormError("Nothing changed: enter a new key or edit the name or base URL.");
      return;
    }
    save.mutate(body);
  }

  const title = existing ? `Replace key for ${existing.name}` : "Add credential";
  return (
    <Dialog title={title} onClose={onClose}>
      <form onSubmit={submit} noValidate className="space-y-4" aria-label={title}>
        <TextField
          id="credential-name"
          label="Name"
          value={name}
          onChange={setName}
          error={errors.name}
          autoComplete="off"
          required
        />
        {!existing && (
          <SelectField
            id="credential-kind"
            label="Kind"
            value={kind}
            onChange={setKind}
            options={KIND_OPTIONS}
            error={errors.kind}
          />
        )}
        <TextField
          id="credential-base-url"
          label="Base URL (optional)"
          type="url"
          inputMode="url"
          placeholder="https://api.example.com/v1"
          value={baseUrl}
          onChange={setBaseUrl}
          error={errors.base_url}
          hint={
            existing
              ? "Empty it to use the provider's default endpoint."
              : "Leave empty for the provider's default endpoint."
          }
          autoComplete="off"
        />
        <TextField
          id="credential-api-key"
          label={existing ? "New API key" : "API key"}
          type="password"
          value={apiKey}
          onChange={setApiKey}
          error={errors.api_key}
          hint={
            existing
              ? `Stored key ends ${existing.api_key}. Leave empty to keep it.`
              : "Stored encrypted; only its last four characters are shown afterwards."
          }
          autoComplete="new-password"
          spellCheck={false}
          required={!existing}
        />
        {formError && <ErrorPanel title="Not saved" error={formError} />}
        <div className="flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" tone="primary" disabled={save.isPending}>
            {save.isPending ? "Saving…" : "Save credential"}
          </Button>
        </div>
      </form>
    </Dialog>
  );
}

function DeleteDialog({
  provider,
  onClose,
  onDone,
}: {
  provider: Provider;
  onClose: () => void;
  onDone: (message: string) => void;
}) {
  const afterChange = useAfterChange();
  const remove = useMutation({
    mutationFn: () => call(NoContent, "DELETE", `/api/providers/${provider.id}`),
    onSuccess: () => {
      afterChange();
      onDone(`Deleted ${provider.name}.`);
    },
  });
  return (
    <Dialog title={`Delete ${provider.name}?`} onClose={onClose}>
      <div className="space-y-4">
        <p className="text-sm">
          The credential <strong>{provider.name}</strong> ({kindLabel(provider.kind)}, key {provider.api_key}) will be
          removed. Deployments that use it can no longer call the provider.
        </p>
        {remove.isError && <ErrorPanel title="Not deleted" error={remove.error} />}
        <div className="flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">
          <Button onClick={onClose}>Cancel</Button>
          <Button tone="danger" disabled={remove.isPending} onClick={() => remove.mutate()}>
            {remove.isPending ? "Deleting…" : "Delete credential"}
          </Button>
        </div>
      </div>
    </Dialog>
  );
}

// ---------------------------------------------------------------------------------------
// Routes

type Health = Routes["health"][number];

function RoutesSection() {
  const routes = useRoutes();
  return (
    <section aria-labelledby="routes-heading" className="space-y-3">
      <div>
        <h2 id="routes-heading" className="text-lg font-semibold">
          Routes
        </h2>
        <p className="text-sm text-slate-600 dark:text-slate-400">
          The models clients may ask for, from the gateway&apos;s configuration
          {routes.data ? `; provider health over the last ${routes.data.health_window_minutes} minutes` : ""}.
        </p>
      </div>
      {routes.isPending ? (
        <Loading label="Loading routes…" />
      ) : routes.isError ? (
        <ErrorPanel error={routes.error} onRetry={() => void routes.refetch()} />
      ) : routes.data.models.length === 0 ? (
        <Empty title="No models configured">Add routes to the gateway&apos;s configuration to serve models.</Empty>
      ) : (
        <div className="space-y-4">
          {routes.data.models.map((model) => (
            <ModelCard
              key={model.name}
              model={model}
              health={routes.data.health}
              windowMinutes={routes.data.health_window_minutes}
            />
          ))}
        </div>
      )}
    </section>
  );
}

function price(microUsdPerMillion: number | null | undefined): string {
  return microUsdPerMillion === null || microUsdPerMillion === undefined
    ? "not priced"
    : `${formatUsd(microUsdPerMillion)} per 1M tokens`;
}

function ModelCard({ model, health, windowMinutes }: { model: ModelRoute; health: Health[]; windowMinutes: number }) {
  const totalWeight = model.deployments.reduce((sum, d) => sum + d.weight, 0);
  return (
    <Card title={model.name}>
      <dl className="mb-3 grid gap-x-6 gap-y-2 text-sm sm:grid-cols-3">
        <div>
          <dt className="text-slate-600 dark:text-slate-400">Aliases</dt>
          <dd className="mt-0.5 flex flex-wrap gap-1">
            {model.aliases.length === 0 ? (
              <span className="text-slate-500 dark:text-slate-400">none</span>
            ) : (
              model.aliases.map((a) => <Badge key={a}>{a}</Badge>)
            )}
          </dd>
        </div>
        <div>
          <dt className="text-slate-600 dark:text-slate-400">Input</dt>
          <dd className="mt-0.5 tabular-nums">{price(model.input_micro_usd_per_million)}</dd>
        </div>
        <div>
          <dt className="text-slate-600 dark:text-slate-400">Output</dt>
          <dd className="mt-0.5 tabular-nums">{price(model.output_micro_usd_per_million)}</dd>
        </div>
        <div>
          <dt className="text-slate-600 dark:text-slate-400">Strategy</dt>
          <dd className="mt-0.5">
            {model.strategy}, {model.retries} {model.retries === 1 ? "retry" : "retries"}
          </dd>
        </div>
        <div className="sm:col-span-2">
          <dt className="text-slate-600 dark:text-slate-400">Falls back to</dt>
          <dd className="mt-0.5 flex flex-wrap gap-1">
            {model.fallbacks.length === 0 ? (
              <span className="text-slate-500 dark:text-slate-400">no other model</span>
            ) : (
              model.fallbacks.map((f) => <Badge key={f}>{f}</Badge>)
            )}
          </dd>
        </div>
      </dl>
      {model.deployments.length === 0 ? (
        <Empty title="No deployments shown" />
      ) : (
        <Table
          caption={`Deployments of ${model.name}`}
          head={
            <>
              <Th>Provider</Th>
              <Th>Kind</Th>
              <Th>Upstream model</Th>
              <Th right>Share</Th>
              <Th right>RPM</Th>
              <Th right>TPM</Th>
              <Th>State</Th>
              <Th right>In flight</Th>
              <Th right>First byte</Th>
              <Th>Health ({windowMinutes} min)</Th>
            </>
          }
        >
          {model.deployments.map((d, i) => (
            <tr key={`${d.provider}-${d.upstream_model}-${i}`}>
              <Td className="font-medium">{d.provider}</Td>
              <Td>{kindLabel(d.kind)}</Td>
              <Td className="font-mono text-xs">{d.upstream_model}</Td>
              <Td right>{formatPercent(d.weight, totalWeight)}</Td>
              <Td right>{formatLimit(d.rpm)}</Td>
              <Td right>{formatLimit(d.tpm)}</Td>
              <Td>
                <StateBadge state={d.state} lastError={d.last_error} />
              </Td>
              <Td right>{d.in_flight ?? "—"}</Td>
              <Td right>{d.ttfb_ms == null ? "—" : `${Math.round(d.ttfb_ms)} ms`}</Td>
              <Td>
                <HealthCell health={health.find((h) => h.provider === d.provider)} />
              </Td>
            </tr>
          ))}
        </Table>
      )}
    </Card>
  );
}

function healthTone(failures: number, requests: number): "green" | "amber" | "red" {
  const rate = failures / requests;
  if (rate < 0.05) return "green";
  return rate < 0.25 ? "amber" : "red";
}

const STATE_TONE = { healthy: "green", cooling_down: "red", probing: "amber" } as const;

/** The deployment's circuit on the replica that answered, with its last failure. */
function StateBadge({ state, lastError }: { state?: string | null; lastError?: string | null }) {
  if (!state) return <span className="text-slate-500 dark:text-slate-400">—</span>;
  const tone = STATE_TONE[state as keyof typeof STATE_TONE] ?? "slate";
  return (
    <span className="flex flex-col gap-0.5">
      <Badge tone={tone}>{state.replace("_", " ")}</Badge>
      {lastError && <span className="text-xs text-slate-600 dark:text-slate-400">last: {lastError}</span>}
    </span>
  );
}

function HealthCell({ health }: { health?: Health }) {
  // The API lists only providers that were sent requests in the window.
  if (!health || health.requests === 0) return <Badge>no traffic</Badge>;
  const latency =
    health.mean_latency_ms === null || health.mean_latency_ms === undefined
      ? "—"
      : `${formatCount(health.mean_latency_ms)} ms`;
  return (
    <span className="flex flex-wrap items-center gap-2">
      <Badge tone={healthTone(health.failures, health.requests)}>
        {formatPercent(health.failures, health.requests)} failed
      </Badge>
      <span className="text-xs text-slate-600 dark:text-slate-400">
        {formatCount(health.requests)} requests · mean {latency}
      </span>
    </span>
  );
}
