"""The admin API as an operator uses it (the README's curl walk-through), and its OpenAPI
document checked by an independent OpenAPI 3 validator."""

import json
import urllib.error
import urllib.request

from openapi_spec_validator import validate


def call(gateway, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(gateway["admin_url"] + path, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
            return resp.status, (json.loads(text) if text else None), text
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        return err.code, json.loads(text), text


def test_operator_creates_a_member_and_a_key(gateway):
    status, login, _ = call(
        gateway,
        "POST",
        "/api/auth/login",
        body={"email": gateway["admin_email"], "password": gateway["admin_password"]},
    )
    assert status == 200, login
    token = login["token"]
    assert login["user"]["role"] == "admin"

    status, member, _ = call(
        gateway,
        "POST",
        "/api/users",
        token,
        {"email": "ada@example.com", "password": "a-long-member-password", "role": "member"},
    )
    assert status == 201, member

    status, key, _ = call(
        gateway, "POST", "/api/keys", token, {"name": "ada laptop", "user_id": member["id"]}
    )
    assert status == 201, key
    secret = key["secret"]
    assert secret.startswith("tg_") and key["prefix"] == secret[:11]

    status, listed, text = call(gateway, "GET", f"/api/keys?user_id={member['id']}", token)
    assert status == 200
    assert [k["id"] for k in listed["data"]] == [key["id"]]
    assert secret not in text and "secret" not in listed["data"][0]

    # The member logs in and sees that key, and only their own.
    status, session, _ = call(
        gateway,
        "POST",
        "/api/auth/login",
        body={"email": "ada@example.com", "password": "a-long-member-password"},
    )
    assert status == 200
    status, own, text = call(gateway, "GET", "/api/keys", session["token"])
    assert status == 200 and [k["id"] for k in own["data"]] == [key["id"]]
    assert secret not in text
    status, err, _ = call(gateway, "GET", "/api/users", session["token"])
    assert status == 403 and err["error"]["type"] == "permission_error"


def test_login_failures_are_openai_shaped(gateway):
    status, err, _ = call(
        gateway, "POST", "/api/auth/login", body={"email": gateway["admin_email"], "password": "wrong password!"}
    )
    assert status == 401 and err["error"]["type"] == "authentication_error"
    status, err, _ = call(gateway, "POST", "/api/auth/login", body={"email": "x@example.com"})
    assert status == 422 and err["error"]["param"] == "password"


def test_openapi_document_is_valid_openapi_3(gateway):
    with urllib.request.urlopen(gateway["admin_url"] + "/api/openapi.json", timeout=30) as resp:
        spec = json.load(resp)
    assert spec["openapi"].startswith("3.")
    validate(spec)
    for path in ["/api/auth/login", "/api/keys/{id}/rotate", "/api/usage/export", "/api/audit"]:
        assert path in spec["paths"]


def test_docs_page_is_served(gateway):
    with urllib.request.urlopen(gateway["admin_url"] + "/api/docs/", timeout=30) as resp:
        assert resp.status == 200
        assert "swagger" in resp.read().decode().lower()
