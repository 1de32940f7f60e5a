// The admin API's answers, parsed with zod: a field the page relies on that is missing or
// of another type becomes an error panel, never a blank page. Written by hand and checked
// against the API's recorded OpenAPI document by lib/schemas.test.ts.
import { z } from "zod";

const id = z.number().int();
const time = z.string();
const count = z.number().int();
const optionalCount = z.number().int().nullable().optional();

export const Role = z.enum(["admin", "member", "viewer"]);
export type Role = z.infer<typeof Role>;

export const Period = z.enum(["day", "month", "total"]);
export type Period = z.infer<typeof Period>;

export const Limits = z.object({
  rpm_limit: optionalCount,
  tpm_limit: optionalCount,
  concurrency_limit: optionalCount,
  budget_micro_usd: optionalCount,
  budget_period: Period.nullable().optional(),
});
export type Limits = z.infer<typeof Limits>;

export const KeyPolicy = z.object({
  allowed_models: z.array(z.string()).nullable().optional(),
  key_limits: Limits,
});

export const User = z.object({
  id,
  email: z.string(),
  role: Role,
  disabled: z.boolean(),
  limits: Limits,
  key_policy: KeyPolicy,
  created_at: time,
  updated_at: time,
});
export type User = z.infer<typeof User>;

/** The user inside a login answer: only what the session keeps is required. */
export const SessionUser = z.object({ id, email: z.string(), role: Role, disabled: z.boolean() });

export const TokenResponse = z.object({
  token: z.string(),
  token_type: z.literal("Bearer"),
  expires_at: time,
  user: SessionUser,
});

export const Me = z.object({
  principal: z.enum(["user", "master_key"]),
  role: Role,
  user: SessionUser.nullable().optional(),
});
export type Me = z.infer<typeof Me>;

export const Team = z.object({
  id,
  name: z.string(),
  limits: Limits,
  key_policy: KeyPolicy,
  created_at: time,
  updated_at: time,
});
export type Team = z.infer<typeof Team>;

export const TeamDetail = Team.extend({ members: z.array(User) });
export type TeamDetail = z.infer<typeof TeamDetail>;

export const Key = Limits.extend({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  user_id: id.nullable().optional(),
  team_id: id.nullable().optional(),
  allowed_models: z.array(z.string()).nullable().optional(),
  expires_at: time.nullable().optional(),
  revoked_at: time.nullable().optional(),
  last_used_at: time.nullable().optional(),
  previous_secret_valid_until: time.nullable().optional(),
  created_at: time,
  updated_at: time,
  cache_enabled: z.boolean(),
});
export type Key = z.infer<typeof Key>;

export const ModelCacheStats = z.object({
  model: z.string(),
  entries: count,
  bytes: count,
  hits: count,
  misses: count,
  bypasses: count,
  hit_ratio: z.number().nullable().optional(),
  tokens_saved: count,
});
export type ModelCacheStats = z.infer<typeof ModelCacheStats>;

export const CacheStats = z.object({
  store: z.string().nullable().optional(),
  entries: count,
  bytes: count,
  window_hours: count,
  models: z.array(ModelCacheStats),
});
export type CacheStats = z.infer<typeof CacheStats>;

export const Purged = z.object({ purged: count });

export const IssuedKey = Key.extend({ secret: z.string() });
export type IssuedKey = z.infer<typeof IssuedKey>;

export const Provider = z.object({
  id,
  name: z.string(),
  kind: z.string(),
  base_url: z.string().nullable().optional(),
  api_key: z.string(),
  created_at: time,
  updated_at: time,
});
export type Provider = z.infer<typeof Provider>;

export const AuditEntry = z.object({
  id,
  occurred_at: time,
  actor: z.string(),
  action: z.string(),
  target_type: z.string(),
  target_id: z.string().nullable().optional(),
  // `null` when a stored summary could not be read back.
  summary: z.record(z.string(), z.unknown()).nullable(),
  request_ip: z.string().nullable().optional(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;

/** `{data, page, per_page, total}` of any list. */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), page: count, per_page: count, total: count });
}
export type Page<T> = { data: T[]; page: number; per_page: number; total: number };

export const GroupBy = z.enum(["key", "user", "team", "model"]);
export type GroupBy = z.infer<typeof GroupBy>;
export const Bucket = z.enum(["hour", "day"]);
export type Bucket = z.infer<typeof Bucket>;

export const Figures = z.object({
  requests: count,
  prompt_tokens: count,
  completion_tokens: count,
  cost_micro_usd: count,
});
export type Figures = z.infer<typeof Figures>;

export const GroupRow = Figures.extend({
  group: z.string().nullable().optional(),
  label: z.string().nullable().optional(),
});
export type GroupRow = z.infer<typeof GroupRow>;

export const UsageTotals = z.object({
  from: time,
  to: time,
  group_by: GroupBy,
  totals: Figures,
  groups: z.array(GroupRow),
});
export type UsageTotals = z.infer<typeof UsageTotals>;

export const SeriesPoint = GroupRow.extend({ bucket: z.string() });
export type SeriesPoint = z.infer<typeof SeriesPoint>;

export const UsageSeries = z.object({
  from: time,
  to: time,
  group_by: GroupBy,
  bucket: Bucket,
  points: z.array(SeriesPoint),
});
export type UsageSeries = z.infer<typeof UsageSeries>;

export const FailedRequest = z.object({
  occurred_at: time,
  request_id: z.string(),
  key_id: z.string().nullable().optional(),
  key_name: z.string().nullable().optional(),
  model: z.string(),
  status: count,
  code: z.string().nullable().optional(),
  message: z.string().nullable().optional(),
});
export type FailedRequest = z.infer<typeof FailedRequest>;

export const Outcomes = z.object({
  from: time,
  to: time,
  requests: count,
  errors: count,
  by_status: z.array(z.object({ status: count, requests: count })),
  by_code: z.array(z.object({ code: z.string(), requests: count })),
  recent: z.array(FailedRequest),
});
export type Outcomes = z.infer<typeof Outcomes>;

export const DeploymentRoute = z.object({
  provider: z.string(),
  kind: z.string(),
  base_url: z.string().nullable().optional(),
  upstream_model: z.string(),
  weight: count,
  rpm: optionalCount,
  tpm: optionalCount,
  /** On the replica that answered: healthy, cooling_down or probing; null when not known. */
  state: z.string().nullable().optional(),
  in_flight: optionalCount,
  ttfb_ms: z.number().nullable().optional(),
  last_error: z.string().nullable().optional(),
});

export const ModelRoute = z.object({
  name: z.string(),
  aliases: z.array(z.string()),
  strategy: z.string(),
  retries: count,
  fallbacks: z.array(z.string()),
  input_micro_usd_per_million: optionalCount,
  output_micro_usd_per_million: optionalCount,
  deployments: z.array(DeploymentRoute),
});
export type ModelRoute = z.infer<typeof ModelRoute>;

export const ProviderHealth = z.object({
  provider: z.string(),
  requests: count,
  failures: count,
  mean_latency_ms: optionalCount,
});

export const Routes = z.object({
  models: z.array(ModelRoute),
  health_window_minutes: count,
  health: z.array(ProviderHealth),
});
export type Routes = z.infer<typeof Routes>;

/** An answer with no body (204). */
export const NoContent = z.unknown();
