// The hand-written zod schemas against the admin API's recorded OpenAPI document
// (admin-api/tests/openapi_shape.json, kept current by the API's own test): a field the API
// adds, removes or stops always sending must show up here, not as a broken page.
import fs from "node:fs";
import path from "node:path";

import type { z } from "zod";

import * as S from "./schemas";

type OpenApiSchema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, OpenApiSchema>;
  required?: string[];
  allOf?: OpenApiSchema[];
  oneOf?: OpenApiSchema[];
  anyOf?: OpenApiSchema[];
};
type Components = Record<string, OpenApiSchema>;

const documentPath = path.resolve(__dirname, "..", "..", "admin-api", "tests", "openapi_shape.json");
const components: Components = JSON.parse(fs.readFileSync(documentPath, "utf8")).components.schemas;

function resolve(schema: OpenApiSchema, all: Components): OpenApiSchema {
  if (!schema.$ref) return schema;
  const name = schema.$ref.replace("#/components/schemas/", "");
  const found = all[name];
  if (!found) throw new Error(`${schema.$ref} is not in the document`);
  return resolve(found, all);
}

/** The properties of an object schema and the ones it requires, through `$ref` and `allOf`. */
function objectOf(
  schema: OpenApiSchema,
  all: Components,
): { properties: Record<string, OpenApiSchema>; required: Set<string> } {
  const resolved = resolve(schema, all);
  const properties: Record<string, OpenApiSchema> = { ...resolved.properties };
  const required = new Set(resolved.required ?? []);
  for (const part of resolved.allOf ?? []) {
    const inner = objectOf(part, all);
    Object.assign(properties, inner.properties);
    inner.required.forEach((name) => required.add(name));
  }
  return { properties, required };
}

function allowsNull(schema: OpenApiSchema, all: Components): boolean {
  const resolved = resolve(schema, all);
  const types = Array.isArray(resolved.type) ? resolved.type : [resolved.type];
  if (types.includes("null")) return true;
  return [...(resolved.oneOf ?? []), ...(resolved.anyOf ?? [])].some((s) => allowsNull(s, all));
}

/** Every way `zodSchema` and the document's `component` disagree, as sentences. */
function differences(zodSchema: z.ZodObject, component: string, all: Components): string[] {
  const { properties, required } = objectOf({ $ref: `#/components/schemas/${component}` }, all);
  const shape: Record<string, z.ZodType> = zodSchema.shape;
  const found: string[] = [];
  for (const name of Object.keys(properties)) {
    if (!(name in shape)) found.push(`${component}.${name} is in the API but not in the zod schema`);
  }
  for (const [name, field] of Object.entries(shape)) {
    const property = properties[name];
    if (!property) {
      found.push(`${name} is in the zod schema but not in the API's ${component}`);
      continue;
    }
    const optional = field.safeParse(undefined).success;
    if (required.has(name) && optional) found.push(`${component}.${name} is required by the API but optional in zod`);
    if (!required.has(name) && !optional)
      found.push(`${component}.${name} may be left out by the API but zod requires it`);
    if (allowsNull(property, all) && !field.safeParse(null).success) {
      found.push(`${component}.${name} may be null in the API but zod refuses null`);
    }
  }
  return found;
}

const pairs: { name: string; schema: z.ZodObject; component: string }[] = [
  { name: "User", schema: S.User, component: "UserView" },
  { name: "Team", schema: S.Team, component: "TeamView" },
  { name: "Key", schema: S.Key, component: "KeyView" },
  { name: "IssuedKey", schema: S.IssuedKey, component: "IssuedKeyView" },
  { name: "Provider", schema: S.Provider, component: "ProviderView" },
  { name: "AuditEntry", schema: S.AuditEntry, component: "AuditEntry" },
  { name: "UsageTotals", schema: S.UsageTotals, component: "UsageTotals" },
  { name: "UsageSeries", schema: S.UsageSeries, component: "UsageSeries" },
  { name: "SeriesPoint", schema: S.SeriesPoint, component: "SeriesPoint" },
  { name: "GroupRow", schema: S.GroupRow, component: "GroupRow" },
  { name: "Figures", schema: S.Figures, component: "Figures" },
  { name: "Outcomes", schema: S.Outcomes, component: "Outcomes" },
  { name: "Outcomes.by_status[]", schema: S.Outcomes.shape.by_status.element, component: "StatusCount" },
  { name: "Outcomes.by_code[]", schema: S.Outcomes.shape.by_code.element, component: "CodeCount" },
  { name: "FailedRequest", schema: S.FailedRequest, component: "FailedRequest" },
  { name: "Routes", schema: S.Routes, component: "Routes" },
  { name: "ModelRoute", schema: S.ModelRoute, component: "ModelRoute" },
  { name: "DeploymentRoute", schema: S.DeploymentRoute, component: "DeploymentRoute" },
  { name: "ProviderHealth", schema: S.ProviderHealth, component: "ProviderHealth" },
  { name: "Limits", schema: S.Limits, component: "LimitsView" },
  { name: "KeyPolicy", schema: S.KeyPolicy, component: "KeyPolicyView" },
  { name: "TeamDetail", schema: S.TeamDetail, component: "TeamDetail" },
  { name: "TokenResponse", schema: S.TokenResponse, component: "TokenResponse" },
  { name: "CacheStats", schema: S.CacheStats, component: "CacheStats" },
  { name: "ModelCacheStats", schema: S.ModelCacheStats, component: "ModelCacheStats" },
  { name: "Purged", schema: S.Purged, component: "Purged" },
  { name: "pageOf(User)", schema: S.pageOf(S.User), component: "Page_UserView" },
  // Only the top level: the session keeps a part of the user (SessionUser), not all of it.
  { name: "Me", schema: S.Me, component: "MeResponse" },
];

describe("zod schemas match the API's OpenAPI document", () => {
  it.each(pairs)("$name matches $component", ({ schema, component }) => {
    expect(differences(schema, component, components)).toEqual([]);
  });

  it("has every component it compares against", () => {
    for (const { component } of pairs) expect(components).toHaveProperty(component);
  });
});

describe("the comparison itself", () => {
  function withKeyView(change: (keyView: OpenApiSchema) => void): Components {
    const copy: Components = JSON.parse(JSON.stringify(components));
    change(copy.KeyView!);
    return copy;
  }

  it("fails when the API adds a field the schema lacks, also through allOf", () => {
    const changed = withKeyView((k) => {
      k.properties!.owner_email = { type: "string" };
    });
    expect(differences(S.Key, "KeyView", changed)).toEqual([
      "KeyView.owner_email is in the API but not in the zod schema",
    ]);
    expect(differences(S.IssuedKey, "IssuedKeyView", changed)).toEqual([
      "IssuedKeyView.owner_email is in the API but not in the zod schema",
    ]);
  });

  it("fails when the API removes a field or requires an optional one", () => {
    const changed = withKeyView((k) => {
      delete k.properties!.prefix;
      k.required!.push("expires_at");
    });
    expect(differences(S.Key, "KeyView", changed)).toEqual([
      "prefix is in the zod schema but not in the API's KeyView",
      "KeyView.expires_at is required by the API but optional in zod",
    ]);
  });
});
