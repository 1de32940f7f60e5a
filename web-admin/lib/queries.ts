// Lists several pages share (owners, teams, models), cached by React Query so a page and
// its dialogs ask once.
import { useQuery } from "@tanstack/react-query";

import { call } from "./api";
import { readsAll, useRole } from "./role";
import { Routes, Team, User, pageOf } from "./schemas";

const Users = pageOf(User);
const Teams = pageOf(Team);

/** Every user (admins and viewers; members get none). */
export function useAllUsers() {
  const role = useRole();
  return useQuery({
    queryKey: ["users", "all"],
    queryFn: () => call(Users, "GET", "/api/users?per_page=500"),
    enabled: readsAll(role),
    staleTime: 30_000,
  });
}

/** Every team (admins and viewers; members get none). */
export function useAllTeams() {
  const role = useRole();
  return useQuery({
    queryKey: ["teams", "all"],
    queryFn: () => call(Teams, "GET", "/api/teams?per_page=500"),
    enabled: readsAll(role),
    staleTime: 30_000,
  });
}

/** The models the gateway serves (deployments and health for admins and viewers). */
export function useRoutes() {
  return useQuery({
    queryKey: ["routes"],
    queryFn: () => call(Routes, "GET", "/api/routes"),
    staleTime: 30_000,
  });
}
