import {
  AxiosError,
  AxiosHeaders,
  type AxiosAdapter,
  type AxiosResponse,
  type InternalAxiosRequestConfig,
} from "axios";
import { z } from "zod";

import { ApiError, call, http, query, toApiError } from "./api";
import { useSession } from "./session";

const user = { id: 1, email: "ops@example.com", role: "admin" as const };

/** An adapter answering every request with `status` and `data`, as axios's own would. */
function answer(status: number, data: unknown): AxiosAdapter {
  return async (config) => {
    const response = responseOf(config, status, data);
    if (status >= 200 && status < 300) return response;
    throw new AxiosError(
      `Request failed with status code ${status}`,
      AxiosError.ERR_BAD_RESPONSE,
      config,
      {},
      response,
    );
  };
}

function responseOf(config: InternalAxiosRequestConfig, status: number, data: unknown): AxiosResponse {
  return { data, status, statusText: String(status), headers: {}, config, request: {} };
}

function axiosError(status: number, data: unknown): AxiosError {
  const config = { headers: new AxiosHeaders() } as InternalAxiosRequestConfig;
  return new AxiosError("Request failed", AxiosError.ERR_BAD_RESPONSE, config, {}, responseOf(config, status, data));
}

const originalAdapter = http.defaults.adapter;

afterEach(() => {
  http.defaults.adapter = originalAdapter;
  useSession.setState({ token: null, user: null, expiresAt: null, expired: false });
});

describe("call", () => {
  const Thing = z.object({ id: z.number(), name: z.string() });

  it("returns the parsed answer", async () => {
    http.defaults.adapter = answer(200, { id: 7, name: "seven", extra: true });
    await expect(call(Thing, "GET", "/api/things/7")).resolves.toEqual({ id: 7, name: "seven" });
  });

  it("sends the session's token", async () => {
    useSession.getState().signIn("tok-123", user, "2030-01-01T00:00:00Z");
    let sent: string | undefined;
    http.defaults.adapter = async (config) => {
      sent = String(config.headers.get("Authorization"));
      return responseOf(config, 200, { id: 1, name: "one" });
    };
    await call(Thing, "GET", "/api/things/1");
    expect(sent).toBe("Bearer tok-123");
  });

  it("turns an answer of the wrong shape into an ApiError", async () => {
    http.defaults.adapter = answer(200, { id: "seven" });
    const failure = call(Thing, "GET", "/api/things/7");
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(failure).rejects.toThrow(/GET \/api\/things\/7 has an unexpected shape/);
  });

  it("maps the API's error body", async () => {
    http.defaults.adapter = answer(422, {
      error: {
        message: "name: must not be empty",
        type: "invalid_request_error",
        code: "invalid_value",
        param: "name",
      },
    });
    const error = await call(Thing, "POST", "/api/things", { name: "" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({
      status: 422,
      param: "name",
      code: "invalid_value",
      message: "name: must not be empty",
    });
  });

  it("says when the server did not answer", async () => {
    http.defaults.adapter = async (config) => {
      throw new AxiosError("Network Error", AxiosError.ERR_NETWORK, config, {});
    };
    const error = await call(Thing, "GET", "/api/things").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 0, message: "The server did not answer." });
  });
});

describe("toApiError", () => {
  it("maps {error: {message, param, code}} to ApiError(status, param, code)", () => {
    const error = toApiError(
      axiosError(409, {
        error: { message: "That email is taken.", type: "conflict", code: "email_taken", param: "email" },
      }),
    );
    expect(error).toBeInstanceOf(ApiError);
    expect(error.message).toBe("That email is taken.");
    expect(error.status).toBe(409);
    expect(error.param).toBe("email");
    expect(error.code).toBe("email_taken");
  });

  it("names the status when the body is not the API's error", () => {
    const error = toApiError(axiosError(502, "<html>Bad gateway</html>"));
    expect(error).toMatchObject({ status: 502, message: "The server answered 502." });
  });

  it("ends the session on a 401", () => {
    useSession.getState().signIn("tok-123", user, "2030-01-01T00:00:00Z");
    const error = toApiError(
      axiosError(401, { error: { message: "The session has expired.", type: "authentication_error" } }),
    );
    expect(error.status).toBe(401);
    expect(useSession.getState().token).toBeNull();
    expect(useSession.getState().user).toBeNull();
    expect(useSession.getState().expired).toBe(true);
  });

  it("keeps the session on a 403", () => {
    useSession.getState().signIn("tok-123", user, "2030-01-01T00:00:00Z");
    toApiError(axiosError(403, { error: { message: "Admins only.", type: "permission_error" } }));
    expect(useSession.getState().token).toBe("tok-123");
    expect(useSession.getState().expired).toBe(false);
  });

  it("gives status 0 and 'The server did not answer.' when no response came", () => {
    const error = toApiError(new AxiosError("timeout of 30000ms exceeded", AxiosError.ECONNABORTED));
    expect(error).toMatchObject({ status: 0, message: "The server did not answer." });
  });

  it("passes an ApiError through and wraps anything else", () => {
    const original = new ApiError("no", 404);
    expect(toApiError(original)).toBe(original);
    expect(toApiError(new Error("boom"))).toMatchObject({ status: 0, message: "boom" });
    expect(toApiError("text")).toMatchObject({ status: 0, message: "text" });
  });
});

describe("query", () => {
  it("builds a query string from the set values only", () => {
    expect(query({ page: 2, q: "", actor: null, action: undefined, active: false, email: "a b&c" })).toBe(
      "?page=2&active=false&email=a+b%26c",
    );
  });

  it("is empty when nothing is set", () => {
    expect(query({})).toBe("");
    expect(query({ q: "", page: undefined, team: null })).toBe("");
  });

  it("keeps zero", () => {
    expect(query({ page: 0 })).toBe("?page=0");
  });
});
