#!/usr/bin/env python3
"""Official Python SDKs against hookrouter (used by tests/it/interop.rs).

`sign`: prints, as JSON, sample webhooks signed by the providers' own SDKs.
`verify`: reads, as JSON, the requests a target received through hookrouter and checks each
with the same SDKs; exits 1 if any fails, so the router is shown to pass bytes and headers
through untouched.
"""
import datetime
import json
import sys
import time

import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

# Shared with tests/it/interop.rs.
STRIPE_SECRET = "whsec_interop_stripe_secret"
SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

# Bodies chosen so that any re-serialisation would change them: spacing, key order,
# non-ASCII, escapes and a float with a trailing zero.
BODIES = [
    '{"id": "evt_py_1", "type": "invoice.paid", "amount": 1.50, "note": "caf\u00e9 \u2615"}',
    '{"type":"user.created","data":{"b":2,"a":1},"esc":"\\u001b\\n"}',
]


def sign():
    now = int(time.time())
    when = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    out = []
    for i, body in enumerate(BODIES):
        header = stripe.WebhookSignature._compute_signature(f"{now}.{body}", STRIPE_SECRET)
        out.append({"sdk": "stripe-python", "route": "/hooks/stripe",
                    "headers": {"Stripe-Signature": f"t={now},v1={header}"}, "body": body})
        msg_id = f"msg_py_{i}"
        sig = SvixWebhook(SVIX_SECRET).sign(msg_id, when, body)
        out.append({"sdk": "svix-python", "route": "/hooks/svix",
                    "headers": {"svix-id": msg_id, "svix-timestamp": str(now), "svix-signature": sig},
                    "body": body})
        sig = StandardWebhook(STANDARD_SECRET).sign(msg_id, when, body)
        out.append({"sdk": "standardwebhooks-python", "route": "/hooks/standard",
                    "headers": {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": sig},
                    "body": body})
        sig = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=str(now), body=body)
        out.append({"sdk": "slack-sdk", "route": "/hooks/slack",
                    "headers": {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sig},
                    "body": body})
    json.dump(out, sys.stdout)


def verify():
    received = json.load(sys.stdin)
    failures = []
    checked = 0
    for r in received:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        body = r["body"]
        try:
            if r["route"] == "/hooks/stripe":
                stripe.WebhookSignature.verify_header(body, headers["stripe-signature"], STRIPE_SECRET, 300)
            elif r["route"] == "/hooks/svix":
                SvixWebhook(SVIX_SECRET).verify(body, headers)
            elif r["route"] == "/hooks/standard":
                StandardWebhook(STANDARD_SECRET).verify(body, headers)
            elif r["route"] == "/hooks/slack":
                ok = SignatureVerifier(SLACK_SECRET).is_valid(
                    body, headers["x-slack-request-timestamp"], headers["x-slack-signature"])
                if not ok:
                    raise ValueError("slack-sdk says the signature is not valid")
            else:
                continue
            checked += 1
        except Exception as e:  # noqa: BLE001 - report every SDK failure
            failures.append(f"{r['route']}: {type(e).__name__}: {e}")
    print(f"python SDKs verified {checked} forwarded requests")
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures or checked == 0 else 0)


if __name__ == "__main__":
    {"sign": sign, "verify": verify}[sys.argv[1]]()
