"""Drive a vphone from pytest: the phone approves (or denies) a challenge your backend pushed.

Start the phones first (the built-in sandbox is the bank):

    vphone serve                      # http://127.0.0.1:8090
    pip install pytest requests
    pytest examples/python/test_vphone.py

Settings (environment):
    VPHONE_URL            the control API (default http://127.0.0.1:8090)
    VPHONE_CLIENT_ID      the partner credentials of "the backend" at the bank
    VPHONE_CLIENT_SECRET  (default: the built-in sandbox's demo partner)

"The backend" here is this test calling the bank's API directly, as your service would:
it takes a partner token and creates a device-signing challenge. The phone is driven only
through vphone's control API.
"""

import os
import uuid

import pytest
import requests

CONTROL = os.environ.get("VPHONE_URL", "http://127.0.0.1:8090").rstrip("/")
# The built-in sandbox's demo partner; a real bank's sandbox needs your own.
CLIENT_ID = os.environ.get("VPHONE_CLIENT_ID", "vphone-demo")
CLIENT_SECRET = os.environ.get("VPHONE_CLIENT_SECRET", "vphone-demo-secret")
TIMEOUT = 30  # seconds, for every HTTP call


def control(method, path, expect=200, **kwargs):
    """Calls the control API; fails the test with its error message on another status."""
    resp = requests.request(method, CONTROL + path, timeout=TIMEOUT, **kwargs)
    assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json()


class Backend:
    """The bank's API as a partner backend sees it."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        resp = requests.post(
            self.base + "/oauth2/token",
            auth=(CLIENT_ID, CLIENT_SECRET),
            data={"grant_type": "client_credentials"},
            timeout=TIMEOUT,
        )
        assert resp.status_code == 200, f"token: {resp.status_code} {resp.text}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + resp.json()["access_token"]

    def call(self, method, path, expect, **kwargs):
        resp = self.session.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    def create_challenge(self, device_id):
        """A device-signing challenge, as a backend creates one before a payment or login."""
        return self.call("POST", "/v1/mfa/challenges/devices", 201, json={"device_id": device_id})

    def key_used_at(self, device_id, purpose="unrestricted"):
        """When the bank last accepted a signature of the device's key (None: never)."""
        keys = self.call("GET", f"/v1/mfa/devices/{device_id}/keys", 200)
        return next(k["used_at"] for k in keys["keys"] if k["key_purpose"] == purpose)


@pytest.fixture(scope="module")
def backend():
    info = control("GET", "/info")
    return Backend(info["api_base"])


@pytest.fixture
def phone():
    """A new phone (person with a verified number), bound, waiting for a person to decide."""
    name = "py-" + uuid.uuid4().hex[:10]
    created = control("POST", "/phones", expect=201, json={"name": name})
    assert created["phone"]["number_verified"] is True
    bound = control("POST", f"/phones/{name}/bind", json={})
    control("PUT", f"/phones/{name}/policy", json={"prompt": "manual"})
    yield {"name": name, "device_id": bound["device_id"]}
    control("DELETE", f"/phones/{name}")


def push(name, challenge_id):
    """Delivers the challenge to the phone, as a push service would."""
    return control("POST", f"/phones/{name}/push", expect=202, json={"challenge_id": challenge_id})


def pending_approval(name):
    """The approval sheet the push opened (long-polls, bounded)."""
    for _ in range(10):
        pending = control("GET", f"/phones/{name}/approvals", params={"wait_ms": 3000})
        if pending:
            return pending[0]
    pytest.fail(f"no approval became pending on {name}")


def finished(name, push_id):
    """The push once the phone is done with it (long-polls, bounded)."""
    for _ in range(10):
        record = control("GET", f"/phones/{name}/pushes/{push_id}", params={"wait_ms": 3000})
        if record["state"] == "done":
            return record
    pytest.fail(f"push {push_id} of {name} did not finish")


def test_approved_challenge_is_completed_at_the_bank(backend, phone):
    name, device = phone["name"], phone["device_id"]
    assert backend.key_used_at(device) is None
    challenge = backend.create_challenge(device)

    pushed = push(name, challenge["id"])
    approval = pending_approval(name)
    assert approval["challenge_id"] == challenge["id"]
    decided = control("POST", f"/phones/{name}/approvals/{approval['id']}/approve")
    assert decided["decision"] == "approved"

    record = finished(name, pushed["id"])
    assert record["outcome"] == "answered", record
    assert [a["ok"] for a in record["answers"]] == [True]
    assert record["answers"][0]["sent"] == "signature"
    # The bank accepted the signature: it marks the key as used.
    assert backend.key_used_at(device) is not None


def test_denied_challenge_is_not_answered(backend, phone):
    name, device = phone["name"], phone["device_id"]
    challenge = backend.create_challenge(device)

    pushed = push(name, challenge["id"])
    approval = pending_approval(name)
    decided = control("POST", f"/phones/{name}/approvals/{approval['id']}/deny")
    assert decided["decision"] == "denied"

    record = finished(name, pushed["id"])
    assert record["outcome"] == "denied", record
    assert record["answers"] == []
    # Nothing reached the bank: the key is unused and the challenge is still open.
    assert backend.key_used_at(device) is None
    still = backend.call("GET", f"/v1/mfa/challenges/devices/{challenge['id']}", 200)
    assert still["id"] == challenge["id"]


def test_errors_have_one_shape():
    resp = requests.get(CONTROL + "/phones/no-such-phone", timeout=TIMEOUT)
    assert resp.status_code == 404
    error = resp.json()["error"]
    # "state": the phone does not exist here; the CLI would exit with 4.
    assert (error["kind"], error["exit_code"]) == ("state", 4)
    assert "POST /phones" in error["message"]
