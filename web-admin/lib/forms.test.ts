import { z } from "zod";

import { ApiError } from "./api";
import { issuesByField, optionalInt, placeError } from "./forms";

describe("issuesByField", () => {
  const Form = z
    .object({
      name: z.string().min(1, "Enter a name").max(3, "At most 3 characters"),
      owner: z.object({ id: z.number({ error: "Pick an owner" }) }),
      a: z.string(),
      b: z.string(),
    })
    .refine((v) => v.a === v.b, { message: "a and b must match" });

  it("keeps the first message per field and joins nested paths", () => {
    const parsed = Form.safeParse({ name: "", owner: {}, a: "x", b: "x" });
    expect(parsed.success).toBe(false);
    expect(issuesByField(parsed.error!)).toEqual({ name: "Enter a name", "owner.id": "Pick an owner" });
  });

  it("puts an issue with no path on the form", () => {
    const parsed = Form.safeParse({ name: "ok", owner: { id: 1 }, a: "x", b: "y" });
    expect(issuesByField(parsed.error!)).toEqual({ form: "a and b must match" });
  });
});

describe("placeError", () => {
  const fields = ["name", "expires_at"] as const;

  it("puts an error whose param is a field of the form next to that field", () => {
    const error = new ApiError("name: must not be empty", 422, "invalid_value", "name");
    expect(placeError(error, fields)).toEqual({ field: { name: "must not be empty" } });
  });

  it("keeps a message that does not start with the field's name as it is", () => {
    const error = new ApiError("A key with that name exists.", 409, "conflict", "name");
    expect(placeError(error, fields)).toEqual({ field: { name: "A key with that name exists." } });
  });

  it("strips only the field's own name", () => {
    const error = new ApiError("name: must not be empty", 422, "invalid_value", "expires_at");
    expect(placeError(error, fields)).toEqual({ field: { expires_at: "name: must not be empty" } });
  });

  it("puts an error whose param is not a field of the form on the form, whole", () => {
    const error = new ApiError("team_id: no such team", 422, "invalid_value", "team_id");
    expect(placeError(error, fields)).toEqual({ form: "team_id: no such team" });
  });

  it("puts an error without param on the form", () => {
    expect(placeError(new ApiError("Admins only.", 403), fields)).toEqual({ form: "Admins only." });
    expect(placeError(new Error("boom"), fields)).toEqual({ form: "boom" });
    expect(placeError("text", fields)).toEqual({ form: "text" });
  });
});

describe("optionalInt", () => {
  it("is null for empty text", () => {
    expect(optionalInt("")).toBeNull();
    expect(optionalInt("   ")).toBeNull();
  });

  it("is the whole number typed", () => {
    expect(optionalInt("42")).toBe(42);
    expect(optionalInt(" 7 ")).toBe(7);
    expect(optionalInt("0")).toBe(0);
  });

  it("is NaN for anything else", () => {
    expect(optionalInt("abc")).toBeNaN();
    expect(optionalInt("4.5")).toBeNaN();
    expect(optionalInt("-1")).toBeNaN();
    expect(optionalInt("1e3")).toBeNaN();
  });
});
