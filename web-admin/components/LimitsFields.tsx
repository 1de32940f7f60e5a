// The quota limits every owner has (keys, users, teams): requests and tokens per minute,
// concurrency, and a budget with its period. Kept as the text typed, so an error never
// loses input; turned into the API's fields by `limitsFromInputs`.
"use client";

import { z } from "zod";

import { parseUsd, usdInput } from "@/lib/format";
import { optionalInt, type FieldErrors } from "@/lib/forms";
import type { Limits } from "@/lib/schemas";

import { SelectField, TextField } from "./TextField";

export interface LimitInputs {
  rpm_limit: string;
  tpm_limit: string;
  concurrency_limit: string;
  budget_usd: string;
  budget_period: string;
}

export const LIMIT_FIELDS = [
  "rpm_limit",
  "tpm_limit",
  "concurrency_limit",
  "budget_micro_usd",
  "budget_period",
] as const;

export function inputsOf(limits?: Limits | null): LimitInputs {
  const text = (n: number | null | undefined) => (n === null || n === undefined ? "" : String(n));
  return {
    rpm_limit: text(limits?.rpm_limit),
    tpm_limit: text(limits?.tpm_limit),
    concurrency_limit: text(limits?.concurrency_limit),
    budget_usd: usdInput(limits?.budget_micro_usd),
    budget_period: limits?.budget_period ?? "month",
  };
}

const limit = (name: string) =>
  z
    .number({ error: `${name} must be a whole number` })
    .int(`${name} must be a whole number`)
    .positive(`${name} must be at least 1`)
    .nullable();

const LimitValues = z.object({
  rpm_limit: limit("Requests per minute"),
  tpm_limit: limit("Tokens per minute"),
  concurrency_limit: limit("Concurrency"),
  budget_micro_usd: z.number({ error: "Enter an amount in dollars, e.g. 25 or 12.50" }).int().nonnegative().nullable(),
  budget_period: z.enum(["day", "month", "total"]).nullable(),
});

export type LimitValues = z.infer<typeof LimitValues>;

/** The limits typed, checked; an empty field is "no limit" (`null`). */
export function limitsFromInputs(inputs: LimitInputs): { values?: LimitValues; errors?: FieldErrors } {
  const budget = inputs.budget_usd.trim() === "" ? null : (parseUsd(inputs.budget_usd) ?? Number.NaN);
  const parsed = LimitValues.safeParse({
    rpm_limit: optionalInt(inputs.rpm_limit),
    tpm_limit: optionalInt(inputs.tpm_limit),
    concurrency_limit: optionalInt(inputs.concurrency_limit),
    budget_micro_usd: budget,
    budget_period: budget === null ? null : inputs.budget_period,
  });
  if (parsed.success) return { values: parsed.data };
  const errors: FieldErrors = {};
  for (const issue of parsed.error.issues) {
    const field = String(issue.path[0]);
    errors[field] ??= issue.message;
  }
  return { errors };
}

/** The five inputs; `errors` keyed by the API's field names. */
export function LimitsFields({
  idPrefix,
  inputs,
  onChange,
  errors,
  disabled = false,
}: {
  idPrefix: string;
  inputs: LimitInputs;
  onChange: (inputs: LimitInputs) => void;
  errors: FieldErrors;
  disabled?: boolean;
}) {
  const set = (field: keyof LimitInputs) => (value: string) => onChange({ ...inputs, [field]: value });
  return (
    <fieldset className="grid grid-cols-1 gap-3 sm:grid-cols-2" disabled={disabled}>
      <legend className="mb-1 text-sm font-semibold">Limits (empty: no limit)</legend>
      <TextField
        id={`${idPrefix}-rpm`}
        label="Requests per minute"
        inputMode="numeric"
        value={inputs.rpm_limit}
        onChange={set("rpm_limit")}
        error={errors.rpm_limit}
      />
      <TextField
        id={`${idPrefix}-tpm`}
        label="Tokens per minute"
        inputMode="numeric"
        value={inputs.tpm_limit}
        onChange={set("tpm_limit")}
        error={errors.tpm_limit}
      />
      <TextField
        id={`${idPrefix}-concurrency`}
        label="Concurrent requests"
        inputMode="numeric"
        value={inputs.concurrency_limit}
        onChange={set("concurrency_limit")}
        error={errors.concurrency_limit}
      />
      <div className="grid grid-cols-2 gap-2">
        <TextField
          id={`${idPrefix}-budget`}
          label="Budget (USD)"
          inputMode="decimal"
          value={inputs.budget_usd}
          onChange={set("budget_usd")}
          error={errors.budget_micro_usd}
        />
        <SelectField
          id={`${idPrefix}-period`}
          label="Budget period"
          value={inputs.budget_period}
          onChange={set("budget_period")}
          error={errors.budget_period}
          options={[
            { value: "day", label: "per day" },
            { value: "month", label: "per month" },
            { value: "total", label: "in total" },
          ]}
        />
      </div>
    </fieldset>
  );
}

export type LimitsPatch = Partial<LimitValues>;

/** Only the limits that differ from `before`, so a save never rewrites what it did not touch. */
export function changedLimits(before: Limits, after: LimitValues): LimitsPatch | undefined {
  const patch: LimitsPatch = {};
  const copy = <K extends keyof LimitValues>(field: K) => {
    if ((before[field] ?? null) !== after[field]) patch[field] = after[field];
  };
  LIMIT_FIELDS.forEach(copy);
  return Object.keys(patch).length ? patch : undefined;
}
