"use client";

import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { z } from "zod";

import { TextField } from "@/components/TextField";
import { Button } from "@/components/ui";
import { ApiError, call } from "@/lib/api";
import { TokenResponse } from "@/lib/schemas";
import { useSession } from "@/lib/session";

const Credentials = z.object({
  email: z.string().trim().min(1, "Enter your email").email("Enter an email address"),
  password: z.string().min(1, "Enter your password"),
});

type Field = "email" | "password";

/** Where to go after logging in: the page the user was sent here from, if it is ours. */
function nextPage(): string {
  if (typeof window === "undefined") return "/";
  const next = new URLSearchParams(window.location.search).get("next") ?? "/";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export default function LoginPage() {
  const router = useRouter();
  const signIn = useSession((s) => s.signIn);
  const expired = useSession((s) => s.expired);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setFailure(null);
    const checked = Credentials.safeParse({ email, password });
    if (!checked.success) {
      const found: Partial<Record<Field, string>> = {};
      for (const issue of checked.error.issues) {
        const field = issue.path[0] as Field;
        found[field] ??= issue.message;
      }
      setErrors(found);
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const session = await call(TokenResponse, "POST", "/api/auth/login", checked.data);
      signIn(session.token, session.user, session.expires_at);
      router.replace(nextPage());
    } catch (e) {
      const error = e instanceof ApiError ? e : new ApiError(String(e), 0);
      if (error.param === "email" || error.param === "password") {
        setErrors({ [error.param]: error.message });
      } else {
        setFailure(error.message);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="flex min-h-screen items-center justify-center bg-slate-50 px-4 dark:bg-slate-950">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
        <div className="mb-6 flex items-center gap-2">
          <span
            aria-hidden="true"
            className="grid h-8 w-8 place-items-center rounded-md bg-indigo-600 font-semibold text-white"
          >
            T
          </span>
          <h1 className="text-xl font-semibold">Sign in to Tollgate</h1>
        </div>
        {expired && (
          <p
            role="status"
            className="mb-4 rounded border border-amber-400 bg-amber-50 p-3 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-100"
          >
            Your session has ended. Sign in again to go on.
          </p>
        )}
        <form onSubmit={submit} noValidate className="space-y-4" aria-label="Sign in">
          <TextField
            id="email"
            label="Email"
            type="email"
            autoComplete="username"
            value={email}
            onChange={setEmail}
            error={errors.email}
          />
          <TextField
            id="password"
            label="Password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={setPassword}
            error={errors.password}
          />
          {failure && (
            <p
              role="alert"
              className="rounded border border-red-400 bg-red-50 p-3 text-sm text-red-800 dark:bg-red-950 dark:text-red-100"
            >
              {failure}
            </p>
          )}
          <Button tone="primary" type="submit" disabled={busy} className="w-full">
            {busy ? "Signing in…" : "Sign in"}
          </Button>
        </form>
      </div>
    </main>
  );
}
