// What the signed-in role may see and change. Only for showing the right controls: the
// API checks every call itself.
import type { Role } from "./schemas";
import { useSession } from "./session";

export function useRole(): Role | null {
  return useSession((s) => s.user?.role ?? null);
}

/** Admins and viewers read everything; members only their own. */
export function readsAll(role: Role | null): boolean {
  return role === "admin" || role === "viewer";
}

/** Admins change anything; members their own keys; viewers nothing. */
export function writesKeys(role: Role | null): boolean {
  return role === "admin" || role === "member";
}

export function isAdmin(role: Role | null): boolean {
  return role === "admin";
}
