import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { AxiosError, type AxiosAdapter } from "axios";

import { http } from "@/lib/api";
import { useSession } from "@/lib/session";

import LoginPage from "./page";

const replace = jest.fn();
jest.mock("next/navigation", () => ({
  useRouter: () => ({ replace, push: jest.fn(), back: jest.fn(), refresh: jest.fn(), prefetch: jest.fn() }),
}));

const originalAdapter = http.defaults.adapter;
let requests: { url?: string; data?: unknown }[] = [];

/** Every request gets `status` and `data`; the ones sent are kept in `requests`. */
function answer(status: number, data: unknown): AxiosAdapter {
  return async (config) => {
    requests.push({ url: config.url, data: typeof config.data === "string" ? JSON.parse(config.data) : config.data });
    const response = { data, status, statusText: String(status), headers: {}, config, request: {} };
    if (status < 300) return response;
    throw new AxiosError(`Request failed with status code ${status}`, AxiosError.ERR_BAD_REQUEST, config, {}, response);
  };
}

beforeEach(() => {
  requests = [];
  replace.mockClear();
  useSession.setState({ token: null, user: null, expiresAt: null, expired: false });
});

afterEach(() => {
  http.defaults.adapter = originalAdapter;
});

describe("LoginPage", () => {
  it("shows 'Enter your email' next to the Email field when submitted empty, and sends nothing", async () => {
    http.defaults.adapter = answer(500, {});
    render(<LoginPage />);
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
    const email = screen.getByLabelText("Email");
    expect(email).toBeInvalid();
    expect(email).toHaveAccessibleDescription("Enter your email");
    expect(screen.getByLabelText("Password")).toHaveAccessibleDescription("Enter your password");
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(requests).toEqual([]);
  });

  it("shows the server's 401 message in an alert and keeps the typed email", async () => {
    http.defaults.adapter = answer(401, {
      error: { message: "Incorrect email or password.", type: "authentication_error", code: "invalid_credentials" },
    });
    render(<LoginPage />);
    await userEvent.type(screen.getByLabelText("Email"), "ops@example.com");
    await userEvent.type(screen.getByLabelText("Password"), "wrong password");
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));

    expect(await screen.findByRole("alert")).toHaveTextContent("Incorrect email or password.");
    expect(screen.getByLabelText("Email")).toHaveValue("ops@example.com");
    expect(screen.getByLabelText("Email")).not.toBeInvalid();
    expect(screen.getByRole("button", { name: "Sign in" })).toBeEnabled();
    expect(requests).toEqual([
      { url: "/api/auth/login", data: { email: "ops@example.com", password: "wrong password" } },
    ]);
    expect(replace).not.toHaveBeenCalled();
    expect(useSession.getState().token).toBeNull();
  });

  it("signs in and leaves for the home page", async () => {
    http.defaults.adapter = answer(200, {
      token: "tok-123",
      token_type: "Bearer",
      expires_at: "2030-01-01T00:00:00Z",
      user: { id: 1, email: "ops@example.com", role: "admin", disabled: false },
    });
    render(<LoginPage />);
    await userEvent.type(screen.getByLabelText("Email"), "ops@example.com");
    await userEvent.type(screen.getByLabelText("Password"), "right password");
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));

    await waitFor(() => expect(replace).toHaveBeenCalledWith("/"));
    expect(useSession.getState().token).toBe("tok-123");
    expect(useSession.getState().user).toMatchObject({ email: "ops@example.com", role: "admin" });
  });

  it("says when the session ended by itself", () => {
    useSession.setState({ expired: true });
    render(<LoginPage />);
    expect(screen.getByRole("status")).toHaveTextContent("Your session has ended.");
  });
});
