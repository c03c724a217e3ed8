"""One full flow through a client generated from docs/openapi.json by openapi-python-client:
create a subscription, send an event, read the delivery, and check what the receiver got
(its Standard Webhooks signature included). Run by tests/contract/run.sh against the real
server; SWITCHYARD_URL and SWITCHYARD_API_KEY say where and how."""

import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time

from switchyard_client import AuthenticatedClient
from switchyard_client.api.deliveries import v1_delivery_get, v1_delivery_list
from switchyard_client.api.events import v1_event_create, v1_event_get
from switchyard_client.api.subscriptions import (
    v1_subscription_create,
    v1_subscription_get,
    v1_subscription_update,
)
from switchyard_client.models import (
    DeliveryDetailOut,
    DeliveryPage,
    DeliveryStatusOut,
    Error404,
    EventAccepted,
    EventIn,
    EventOut,
    SubscriptionIn,
    SubscriptionInHeaders,
    SubscriptionOut,
    SubscriptionPatch,
)

CHECKS = 0


def check(condition, what):
    global CHECKS
    if not condition:
        print(f"client flow: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    CHECKS += 1


class Receiver(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.received.append((dict((k.lower(), v) for k, v in self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def verify_standard_webhooks(secret, headers, body):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig.split(",", 1)[1], expected)
        for sig in headers["webhook-signature"].split(" ")
    )


def main():
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    client = AuthenticatedClient(
        base_url=os.environ["SWITCHYARD_URL"],
        token=os.environ["SWITCHYARD_API_KEY"],
        raise_on_unexpected_status=True,
        timeout=30.0,
    )

    # Create a subscription: 201 with the secret, header values echoed.
    body = SubscriptionIn(url=hook, events=["order.*"], description="generated client")
    body.headers = SubscriptionInHeaders.from_dict({"X-Team": "blue"})
    created = v1_subscription_create.sync_detailed(client=client, body=body)
    check(created.status_code == 201, f"create answered {created.status_code}")
    sub = created.parsed
    check(isinstance(sub, SubscriptionOut), f"create parsed as {type(sub)}")
    check(sub.id.startswith("sub_"), sub.id)
    check(sub.secret.startswith("whsec_"), "secret shown on create")
    check(sub.headers.to_dict() == {"x-team": "blue"}, sub.headers.to_dict())

    # GET redacts header values; PATCH changes one field and keeps the others.
    got = v1_subscription_get.sync(client=client, id=sub.id)
    check(isinstance(got, SubscriptionOut), f"get parsed as {type(got)}")
    check(got.headers.to_dict() == {"x-team": "••••"}, got.headers.to_dict())
    check(got.secret is None or not isinstance(got.secret, str), "no secret on GET")
    patched = v1_subscription_update.sync(
        client=client, id=sub.id, body=SubscriptionPatch(description="patched")
    )
    check(isinstance(patched, SubscriptionOut), f"patch parsed as {type(patched)}")
    check(patched.description == "patched" and patched.events == ["order.*"], patched.to_dict())

    # Send an event: 202 once stored, one matching subscription.
    event = EventIn(type_="order.created", data={"total": 42, "items": ["a", "b"]}, id="flow-1")
    accepted = v1_event_create.sync_detailed(client=client, body=event)
    check(accepted.status_code == 202, f"event answered {accepted.status_code}")
    check(isinstance(accepted.parsed, EventAccepted), type(accepted.parsed))
    check(accepted.parsed.deliveries == 1, accepted.parsed.to_dict())
    event_id = accepted.parsed.id

    # Read the delivery until it succeeded.
    page = v1_delivery_list.sync(client=client, event_id=event_id)
    check(isinstance(page, DeliveryPage) and len(page.data) == 1, page)
    delivery_id = page.data[0].id
    deadline = time.monotonic() + 30
    while True:
        delivery = v1_delivery_get.sync(client=client, id=delivery_id)
        check(isinstance(delivery, DeliveryDetailOut), type(delivery))
        if delivery.status == DeliveryStatusOut.SUCCEEDED:
            break
        check(time.monotonic() < deadline, f"delivery stuck: {delivery.to_dict()}")
        time.sleep(0.1)
    check(len(delivery.attempts) == 1, delivery.to_dict())
    check(delivery.attempts[0].status_code == 204, delivery.attempts[0].to_dict())
    check(delivery.subscription_id == sub.id and delivery.event_id == event_id, delivery.to_dict())

    # The receiver got the signed envelope with the custom header.
    check(len(Receiver.received) == 1, f"receiver got {len(Receiver.received)}")
    headers, raw = Receiver.received[0]
    check(headers["webhook-id"] == event_id, headers)
    check(headers["x-team"] == "blue", headers)
    check(verify_standard_webhooks(sub.secret, headers, raw), "signature verifies")
    envelope = json.loads(raw)
    check(envelope["type"] == "order.created", envelope)
    check(envelope["data"] == {"total": 42, "items": ["a", "b"]}, envelope)

    # The event shows its delivery; the same idempotency key returns the same event.
    shown = v1_event_get.sync(client=client, id=event_id)
    check(isinstance(shown, EventOut), type(shown))
    check([d.id for d in shown.deliveries] == [delivery_id], shown.to_dict())
    check(shown.deliveries_next_cursor is None, shown.to_dict())
    again = v1_event_create.sync(client=client, body=event)
    check(again.id == event_id, again.to_dict())

    # A documented error parses as its documented model.
    missing = v1_subscription_get.sync_detailed(client=client, id="sub_missing")
    check(missing.status_code == 404, missing.status_code)
    check(isinstance(missing.parsed, Error404), type(missing.parsed))
    check(missing.parsed.error.code.value == "not_found", missing.parsed.to_dict())

    print(f"client flow: {CHECKS} checks passed")


if __name__ == "__main__":
    main()
