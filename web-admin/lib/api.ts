// The admin API client: one axios instance with the session's token, every response parsed
// with zod (a mismatch is an error the page shows, never a blank page), and errors mapped
// to the API's own shape ({error: {message, type, code, param}}).
import axios, { AxiosError } from "axios";
import { z } from "zod";

import { useSession } from "./session";

export const ErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    code: z.string().nullable().optional(),
    param: z.string().nullable().optional(),
  }),
});

/** A failed call: the HTTP status (0 when no answer came), the message and the field. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string | null,
    readonly param?: string | null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const http = axios.create({ baseURL: "/", timeout: 30_000 });

http.interceptors.request.use((config) => {
  const token = useSession.getState().token;
  if (token) config.headers.set("Authorization", `Bearer ${token}`);
  return config;
});

/** Maps a failed request to an ApiError; a 401 ends the session. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof AxiosError) {
    const status = e.response?.status ?? 0;
    const parsed = ErrorBody.safeParse(e.response?.data);
    if (status === 401) useSession.getState().expire();
    if (parsed.success) {
      const { message, code, param } = parsed.data.error;
      return new ApiError(message, status, code, param);
    }
    return new ApiError(status ? `The server answered ${status}.` : "The server did not answer.", status);
  }
  return new ApiError(e instanceof Error ? e.message : String(e), 0);
}

/** Calls the API and parses the answer with `schema`. */
export async function call<T>(
  schema: z.ZodType<T>,
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE",
  url: string,
  data?: unknown,
): Promise<T> {
  let body: unknown;
  try {
    body = (await http.request({ method, url, data })).data;
  } catch (e) {
    throw toApiError(e);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new ApiError(`The server's answer to ${method} ${url} has an unexpected shape: ${parsed.error.message}`, 200);
  }
  return parsed.data;
}

/** A query string from the set values of `params` (`?a=1&b=x`, or "" when none is set). */
export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
