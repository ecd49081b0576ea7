#!/usr/bin/env python3
"""Writes the fuzz seed corpus, fuzz/corpus/<target>/, from the repository's own test data.

Run from anywhere: `python3 fuzz/seeds.py`. It replaces every seed it makes (files named
`seed-*`) and leaves any other file in the corpus folders alone, so a useful input kept by
hand (see fuzz/README.md) survives a regeneration.

- verify_<scheme>: up to SEEDS_PER_SCHEME cases of tests/vectors/signatures.json (the copy
  of ../shared/vectors/signatures.json), in the layout of fuzz_targets/common.rs:
  `signature \\0 timestamp \\0 id \\0 body`, plus a few malformed headers for every scheme.
- verify_generic_hmac: the providers that tests/generic_vectors.rs describes with
  `generic-hmac` options, on their vector cases, in that target's layout.
- config_load: router.example.yaml, examples/*.yaml and some tests/fixtures.
- path_check: paths from README.md's routing section and tests.
"""

import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SEEDS_PER_SCHEME = 6

# Must match fuzz_targets/common.rs.
SIGNATURE_HEADERS = {
    "stripe-signature", "svix-signature", "webhook-signature", "x-hub-signature-256",
    "x-hub-signature", "x-slack-signature", "x-shopify-hmac-sha256", "shopify-hmac-sha256",
    "logto-signature-sha-256", "x-twilio-signature", "paddle-signature", "linear-signature",
    "x-signature-ed25519", "x-twilio-email-event-webhook-signature",
    "x-square-hmacsha256-signature", "x-pagerduty-signature", "x-gitlab-token",
    "typeform-signature", "x-signature", "twitch-eventsub-message-signature", "x-zm-signature",
    "x-webhook-token",
}
TIMESTAMP_HEADERS = {
    "svix-timestamp", "webhook-timestamp", "x-slack-request-timestamp", "x-signature-timestamp",
    "x-twilio-email-event-webhook-timestamp", "twitch-eventsub-message-timestamp",
    "x-zm-request-timestamp", "x-timestamp",
}
ID_HEADERS = {"svix-id", "webhook-id", "twitch-eventsub-message-id", "x-id"}

# Vector provider names that are not the target's scheme name.
PROVIDER_TARGET = {
    "clerk/resend (svix)": "svix",
    "gitlab-signing-token": "gitlab",
}

SCHEMES = [
    "stripe", "svix", "standard_webhooks", "github", "slack", "shopify", "logto", "pagerduty",
    "typeform", "lemonsqueezy", "intercom", "zoom", "twitch", "paddle", "linear", "mailgun",
    "square", "twilio", "discord", "sendgrid", "gitlab", "token",
]

# Malformed inputs every signature target starts from too.
MALFORMED = [
    b"",
    b"v1,\x00\x00\x00{}",
    b"t=,v1=zz,t=99999999999999999999\x00-1\x00\x00{}",
    b"sha256=\xff\xfe\x00 1700000000 \x00msg_\x00\x00\x00",
    b"v0=" + b"a" * 63 + b"\x001700000000\x00id\x00{\"signature\":{}}",
]

# tests/generic_vectors.rs: provider -> (algorithm index, encoding index, prefix, template).
# Algorithms: sha1, sha256, sha512; encodings: hex, base64 (verify_generic_hmac.rs).
GENERIC = {
    "slack": (1, 0, "v0=", "v0:{timestamp}:{body}"),
    "zoom": (1, 0, "v0=", "v0:{timestamp}:{body}"),
    "shopify": (1, 1, "", "{body}"),
    "square": (1, 1, "", "{url}{body}"),
    "typeform": (1, 1, "sha256=", "{body}"),
    "logto": (1, 0, "", "{body}"),
    "lemonsqueezy": (1, 0, "", "{body}"),
    "intercom": (0, 0, "sha1=", "{body}"),
}
GENERIC_EXTRA = [
    (2, 1, "", "{id}.{timestamp}.{body}"),
    (1, 0, "", "{{literal}}{body}"),
    (1, 0, "", "{body"),
    (1, 0, "", "{nope}{body}"),
]

CONFIG_FILES = [
    "router.example.yaml",
    "tests/fixtures/good/minimal.yaml",
    "tests/fixtures/good/async.yaml",
    "tests/fixtures/good/edge_cases.yaml",
    "tests/fixtures/bad/many_errors.yaml",
    "tests/fixtures/bad/yaml_syntax_error.yaml",
    "tests/fixtures/bad/unterminated_reference.yaml",
    "tests/fixtures/bad/version_shape.yaml",
]

PATHS = [
    "/", "/hooks/stripe", "/hooks/stripe/", "/Hooks/Stripe", "/hooks/./stripe",
    "/hooks/../admin", "//hooks", "/hooks/%2e%2e/x", "/hooks%2Fstripe", "/hooks/%73tripe",
    "/hooks/%2f", "/a\\b", "/caf%C3%A9", "/%zz", "hooks", "/a/b/c/%E2%82%AC",
]


def parts(case):
    """The signature, timestamp and id header values of a vector case."""
    found = {"sig": b"", "ts": b"", "id": b""}
    for name, value in case.get("headers", {}).items():
        name = name.lower()
        for key, names in (("sig", SIGNATURE_HEADERS), ("ts", TIMESTAMP_HEADERS), ("id", ID_HEADERS)):
            if name in names and not found[key]:
                found[key] = value.encode()
    return found


def write(target, data, name=None):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    (folder / f"seed-{name}").write_bytes(data)


def main():
    for folder in CORPUS.glob("*"):
        for seed in folder.glob("seed-*"):
            seed.unlink()
    cases = json.loads((ROOT / "tests/vectors/signatures.json").read_text())
    per_target = {}
    for case in cases:
        provider = PROVIDER_TARGET.get(case["provider"], case["provider"])
        target = "verify_" + provider.replace("-", "_")
        if provider.replace("-", "_") not in SCHEMES:
            raise SystemExit(f"vector {case['id']}: no fuzz target for provider {case['provider']}")
        p = parts(case)
        body = case.get("body", "").encode()
        if per_target.get(target, 0) < SEEDS_PER_SCHEME:
            per_target[target] = per_target.get(target, 0) + 1
            write(target, b"\0".join([p["sig"], p["ts"], p["id"], body]), case["id"])
        base = case["provider"]
        if base in GENERIC and per_target.get(("generic", base), 0) < 2:
            per_target[("generic", base)] = per_target.get(("generic", base), 0) + 1
            alg, enc, prefix, template = GENERIC[base]
            data = bytes([alg + 3 * enc]) + b"\0".join(
                [template.encode(), prefix.encode(), p["sig"], p["ts"], p["id"], body]
            )
            write("verify_generic_hmac", data, case["id"])
    for scheme in SCHEMES:
        for data in MALFORMED:
            write(f"verify_{scheme}", data)
    write("verify_token", b"sekret\0\0\0{}", "token")
    for alg, enc, prefix, template in GENERIC_EXTRA:
        data = bytes([alg + 3 * enc]) + b"\0".join(
            [template.encode(), prefix.encode(), b"AAAA", b"1700000000", b"msg_1", b"{}"]
        )
        write("verify_generic_hmac", data)
    for path in CONFIG_FILES + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml")):
        write("config_load", (ROOT / path).read_bytes(), path.replace("/", "_"))
    for path in PATHS:
        write("path_check", path.encode())
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    count = sum(1 for f in CORPUS.rglob("*") if f.is_file())
    print(f"fuzz/corpus: {count} files, {total} bytes")


if __name__ == "__main__":
    main()
