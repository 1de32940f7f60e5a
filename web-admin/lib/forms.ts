// Form errors: zod issues before sending and the API's 422 `param` after, both as a
// message per field, so each shows next to its input and nothing typed is lost.
import type { z } from "zod";

import { ApiError } from "./api";

export type FieldErrors = Record<string, string>;

/** The first message per field of a failed zod parse. */
export function issuesByField(error: z.ZodError): FieldErrors {
  const found: FieldErrors = {};
  for (const issue of error.issues) {
    const field = issue.path.map(String).join(".") || "form";
    found[field] ??= issue.message;
  }
  return found;
}

/**
 * Splits a failed call into an error next to a field the form has (the API names it in
 * `param`) or one for the whole form.
 */
export function placeError(error: unknown, fields: readonly string[]): { field?: FieldErrors; form?: string } {
  const e = error instanceof ApiError ? error : new ApiError(error instanceof Error ? error.message : String(error), 0);
  const param = e.param ?? undefined;
  if (param && fields.includes(param)) {
    // The message often starts with the field's name ("expires_at: must be…"): the field
    // already says which one it is.
    const message = e.message.startsWith(`${param}: `) ? e.message.slice(param.length + 2) : e.message;
    return { field: { [param]: message } };
  }
  return { form: e.message };
}

/** "" → null, else the whole number typed (NaN for text that is not one, for zod to refuse). */
export function optionalInt(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  return /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
}
