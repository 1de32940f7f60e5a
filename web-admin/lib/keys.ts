// What a key's row says at a glance: its state now, its limits in a line, who may change it.
import type { Key, Role } from "./schemas";

export type KeyState = "active" | "expired" | "revoked";

export function keyState(key: Key, now: Date = new Date()): KeyState {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && Date.parse(key.expires_at) <= now.getTime()) return "expired";
  return "active";
}

/** Admins change any key; members keys they own alone (not team keys); viewers none. */
export function mayChangeKey(key: Key, role: Role | null, userId: number | null | undefined): boolean {
  if (role === "admin") return true;
  return role === "member" && key.team_id == null && key.user_id != null && key.user_id === userId;
}

/** A date typed in a date input as the end of that day, UTC; "" → null. */
export function expiryFromDate(date: string): string | null {
  return date ? `${date}T23:59:59Z` : null;
}

/** A stored expiry as the date input shows it. */
export function dateOfExpiry(iso: string | null | undefined): string {
  return iso ? iso.slice(0, 10) : "";
}
