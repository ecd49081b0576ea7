//! Bad input: signatures, paths, hosts, allowlists and configs that must be refused, with nothing reaching a target.
//!
//! Every table runs against one real router whose routes are async (so a leak would show both
//! at the recording target and in the store): each case asserts its status, every request
//! carries its case name in `x-bad-input-case`, and after a settle wait each table checks that
//! the target received exactly its positive controls (a leaked case is named) and that
//! `GET /api/v1/events` lists exactly as many events. Each table has positive controls (202)
//! so the refusals prove something. Config cases run `hookrouter check`. Each table prints its
//! case count (`cargo test --test it -- bad_input --nocapture` shows them).
//!
//! Behaviour that contradicts the README or the HTTP RFCs is asserted as it should be, in
//! `#[ignore = "BUG: …"]` tests at the bottom.

use std::{path::Path, process::Command, time::Duration};

use base64::Engine;
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::support::{Router, Target, client, eventually, raw, send, send_bytes};

const ADMIN_TOKEN: &str = "bad-input-admin-token";
const CASE_HEADER: &str = "x-bad-input-case";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

// === Tables: run, and check that nothing leaked ===

/// One request and the status it must get.
struct Case {
    name: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    want: u16,
}

/// What a table did: mismatches, and the names of the cases that were meant to be accepted.
#[derive(Default)]
struct Outcome {
    failures: Vec<String>,
    accepted: Vec<String>,
    cases: usize,
}

impl Outcome {
    fn record(&mut self, name: &str, want: u16, got: Option<u16>, detail: &str) {
        self.cases += 1;
        if (200..300).contains(&want) {
            self.accepted.push(name.to_string());
        }
        if got != Some(want) {
            self.failures
                .push(format!("{name}: want {want}, got {got:?} {detail}"));
        }
    }

    fn negatives(&self) -> usize {
        self.cases - self.accepted.len()
    }
}

/// Sends every case with the hyper client (headers may repeat: each pair is its own line).
async fn run_http(router: &Router, cases: &[Case], out: &mut Outcome) {
    let c = client();
    for case in cases {
        let mut headers = case.headers.clone();
        headers.push((CASE_HEADER.into(), case.name.clone()));
        let a = send_bytes(&c, &router.url(&case.path), &headers, case.body.clone()).await;
        let body = String::from_utf8_lossy(&a.body).into_owned();
        out.record(&case.name, case.want, Some(a.status), &body);
    }
}

/// A raw HTTP/1.1 case: the request bytes are sent as they are.
struct RawCase {
    name: String,
    request: Vec<u8>,
    want: u16,
}

async fn run_raw(router: &Router, cases: &[RawCase], out: &mut Outcome) {
    for case in cases {
        let answer = raw(router.addr(), &case.request, Duration::from_secs(3)).await;
        let first = answer
            .lines()
            .next()
            .unwrap_or("<connection closed, no answer>");
        out.record(&case.name, case.want, status_of(&answer), first);
    }
}

/// The status of the first response in a raw answer, for HTTP/1.0 and 1.1 (`None`: no answer).
fn status_of(answer: &str) -> Option<u16> {
    let rest = answer
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| answer.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

/// After a table: the target got exactly the accepted cases (any other one is named), and the
/// store holds exactly that many events.
async fn assert_nothing_leaked(group: &str, router: &Router, target: &Target, out: &Outcome) {
    let expected = out.accepted.len();
    eventually(Duration::from_secs(15), || target.count() >= expected).await;
    // Settle: a refused request that was stored anyway would be delivered within this.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut seen: Vec<String> = target
        .all()
        .iter()
        .map(|s| {
            s.headers
                .get(CASE_HEADER)
                .map_or("<no case header>".to_string(), |v| {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                })
        })
        .collect();
    seen.sort();
    let mut want = out.accepted.clone();
    want.sort();
    let leaked: Vec<&String> = seen.iter().filter(|s| !want.contains(s)).collect();
    let missing: Vec<&String> = want.iter().filter(|s| !seen.contains(s)).collect();
    assert!(
        leaked.is_empty() && seen.len() == want.len(),
        "{group}: refused cases reached the target: {leaked:#?} (seen {} requests, {} accepted cases)",
        seen.len(),
        want.len()
    );
    assert!(
        missing.is_empty(),
        "{group}: positive controls never delivered: {missing:#?}"
    );
    let a = send(
        &client(),
        "GET",
        &format!(
            "http://127.0.0.1:{}/api/v1/events?limit=1000",
            router.admin_port
        ),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(a.status, 200, "{group}: events API");
    let events: Value = serde_json::from_slice(&a.body).expect("events JSON");
    let stored = events["events"].as_array().map_or(0, Vec::len);
    assert_eq!(
        stored, expected,
        "{group}: the store holds {stored} events for {expected} accepted cases: a refused request was stored"
    );
}

fn report(group: &str, out: &Outcome) {
    println!(
        "bad_input {group}: {} cases ({} refusals + {} positive controls)",
        out.cases,
        out.negatives(),
        out.accepted.len()
    );
    assert!(
        out.failures.is_empty(),
        "{group}: {} of {} cases failed:\n{:#?}",
        out.failures.len(),
        out.cases,
        out.failures
    );
}

/// A router with async `routes` (YAML list items, indented by 2) delivering to `target`.
fn async_router(target: &Target, trusted: &str, routes: &str) -> Router {
    let yaml = format!(
        r#"version: 1
listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}", token: "{ADMIN_TOKEN}" }}
queue: {{ embedded: {{ path: "{{dir}}/queue" }} }}
{trusted}
defaults: {{ dedup_window: 0s }}
targets:
  t: {{ url: "{}", timeout: 2s, retry: {{ max_attempts: 1 }} }}
routes:
{routes}"#,
        target.url("/in")
    );
    Router::start(&yaml)
}

// === Signatures ===

type Mangle<'a> = &'a dyn Fn(&mut [u8]);

/// What a sender signs: the message id and timestamp (as sent) where the scheme uses them.
struct Msg {
    id: String,
    ts: String,
    body: Vec<u8>,
}

/// How a scheme carries its timestamp.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// None signed (or no window applies).
    None,
    /// Unix seconds; `future_refused` when the window applies both ways.
    Unix { future_refused: bool },
    /// RFC 3339 (Twitch), old side only.
    Rfc3339,
    /// `webhookTimestamp` in milliseconds inside the signed JSON body (Linear).
    BodyMs,
}

struct Scheme {
    /// Route name; the route is `/hooks/{name}`.
    name: &'static str,
    /// The route's `verify` block.
    verify: String,
    /// What the sender signs with.
    secret: String,
    /// Another route's secret, of the same shape.
    other: String,
    /// The header carrying the signature (or token).
    sig_header: &'static str,
    /// The signature header with its prefix only (`{ts}` is replaced by the timestamp).
    prefix_only: Option<&'static str>,
    /// Version markers to swap for unknown ones: (in the valid header, replacement).
    unknown_versions: &'static [(&'static str, &'static str)],
    clock: Clock,
    /// Whether the body is signed (not for plain tokens).
    body_signed: bool,
    sign: fn(&str, &Msg, Mangle<'_>) -> Vec<(String, String)>,
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("hmac key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha512> as Mac>::new_from_slice(key).expect("hmac key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("hmac key");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn mangled(mut v: Vec<u8>, m: Mangle<'_>) -> Vec<u8> {
    m(&mut v);
    v
}

fn h(name: &str, value: String) -> (String, String) {
    (name.to_string(), value)
}

fn svix_key(secret: &str) -> Vec<u8> {
    B64.decode(secret.trim_start_matches("whsec_"))
        .expect("whsec key")
}

fn sign_std(prefix: &str, secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(
        &svix_key(secret),
        &[m.id.as_bytes(), b".", m.ts.as_bytes(), b".", &m.body],
    );
    vec![
        h(&format!("{prefix}-id"), m.id.clone()),
        h(&format!("{prefix}-timestamp"), m.ts.clone()),
        h(
            &format!("{prefix}-signature"),
            format!("v1,{}", B64.encode(mangled(mac, mg))),
        ),
    ]
}

fn sign_stripe(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[m.ts.as_bytes(), b".", &m.body]);
    vec![h(
        "stripe-signature",
        format!("t={},v1={}", m.ts, hex::encode(mangled(mac, mg))),
    )]
}

fn sign_svix(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    sign_std("svix", secret, m, mg)
}

fn sign_standard(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    sign_std("webhook", secret, m, mg)
}

fn sign_github(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h(
        "x-hub-signature-256",
        format!("sha256={}", hex::encode(mangled(mac, mg))),
    )]
}

fn sign_v0(sig: &str, ts: &str, secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[b"v0:", m.ts.as_bytes(), b":", &m.body]);
    vec![
        h(ts, m.ts.clone()),
        h(sig, format!("v0={}", hex::encode(mangled(mac, mg)))),
    ]
}

fn sign_slack(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    sign_v0(
        "x-slack-signature",
        "x-slack-request-timestamp",
        secret,
        m,
        mg,
    )
}

fn sign_zoom(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    sign_v0("x-zm-signature", "x-zm-request-timestamp", secret, m, mg)
}

fn sign_shopify(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h("x-shopify-hmac-sha256", B64.encode(mangled(mac, mg)))]
}

fn sign_logto(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h("logto-signature-sha-256", hex::encode(mangled(mac, mg)))]
}

fn sign_pagerduty(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h(
        "x-pagerduty-signature",
        format!("v1={}", hex::encode(mangled(mac, mg))),
    )]
}

fn sign_typeform(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h(
        "typeform-signature",
        format!("sha256={}", B64.encode(mangled(mac, mg))),
    )]
}

fn sign_lemonsqueezy(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h("x-signature", hex::encode(mangled(mac, mg)))]
}

fn sign_intercom(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac1(secret.as_bytes(), &m.body);
    vec![h(
        "x-hub-signature",
        format!("sha1={}", hex::encode(mangled(mac, mg))),
    )]
}

fn sign_twitch(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(
        secret.as_bytes(),
        &[m.id.as_bytes(), m.ts.as_bytes(), &m.body],
    );
    vec![
        h("twitch-eventsub-message-id", m.id.clone()),
        h("twitch-eventsub-message-timestamp", m.ts.clone()),
        h(
            "twitch-eventsub-message-signature",
            format!("sha256={}", hex::encode(mangled(mac, mg))),
        ),
    ]
}

fn sign_paddle(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[m.ts.as_bytes(), b":", &m.body]);
    vec![h(
        "paddle-signature",
        format!("ts={};h1={}", m.ts, hex::encode(mangled(mac, mg))),
    )]
}

fn sign_linear(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[&m.body]);
    vec![h("linear-signature", hex::encode(mangled(mac, mg)))]
}

const SQUARE_URL: &str = "https://hooks.example.com/hooks/square";

fn sign_square(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac256(secret.as_bytes(), &[SQUARE_URL.as_bytes(), &m.body]);
    vec![h(
        "x-square-hmacsha256-signature",
        B64.encode(mangled(mac, mg)),
    )]
}

/// Discord: `secret` is the hex Ed25519 seed (the route is configured with its public key).
fn sign_discord(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let key = discord_key(secret);
    let sig = key
        .sign(&[m.ts.as_bytes(), &m.body].concat())
        .to_bytes()
        .to_vec();
    vec![
        h("x-signature-timestamp", m.ts.clone()),
        h("x-signature-ed25519", hex::encode(mangled(sig, mg))),
    ]
}

fn discord_key(seed_hex: &str) -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(seed_hex, &mut seed).expect("seed");
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

fn sign_generic(secret: &str, m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let mac = hmac512(secret.as_bytes(), &[m.ts.as_bytes(), b".", &m.body]);
    vec![
        h("x-bad-input-ts", m.ts.clone()),
        h(
            "x-bad-input-sig",
            format!("sha512={}", B64.encode(mangled(mac, mg))),
        ),
    ]
}

fn sign_token(secret: &str, _m: &Msg, mg: Mangle<'_>) -> Vec<(String, String)> {
    let token = mangled(secret.as_bytes().to_vec(), mg);
    vec![h(
        "x-webhook-token",
        String::from_utf8(token).expect("ASCII token"),
    )]
}

/// Unix seconds as RFC 3339 with nanoseconds, the way Twitch writes timestamps.
fn rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.123456789Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn schemes() -> Vec<Scheme> {
    let svix_secret = format!("whsec_{}", B64.encode(b"bad-input svix key, 32 bytes!!!"));
    let std_secret = format!("whsec_{}", B64.encode(b"bad-input standard key, 32 bytes"));
    let discord_seed = hex::encode([0x42u8; 32]);
    let discord_other = hex::encode([0x24u8; 32]);
    let discord_public = hex::encode(discord_key(&discord_seed).verifying_key().to_bytes());
    let plain =
        |name: &'static str,
         secret: &str,
         other: &str,
         sig_header: &'static str,
         prefix_only: Option<&'static str>,
         unknown_versions: &'static [(&'static str, &'static str)],
         clock: Clock,
         sign: fn(&str, &Msg, Mangle<'_>) -> Vec<(String, String)>| Scheme {
            name,
            verify: format!("{{ scheme: {name}, secrets: [\"{secret}\"] }}"),
            secret: secret.to_string(),
            other: other.to_string(),
            sig_header,
            prefix_only,
            unknown_versions,
            clock,
            body_signed: true,
            sign,
        };
    let both = Clock::Unix {
        future_refused: true,
    };
    let mut list = vec![
        plain(
            "stripe",
            "whsec_bad_input_stripe",
            "bad-input-github-secret",
            "stripe-signature",
            Some("t={ts},v1="),
            &[(",v1=", ",v0="), (",v1=", ",v2=")],
            Clock::Unix {
                future_refused: false,
            },
            sign_stripe,
        ),
        plain(
            "svix",
            &svix_secret,
            &std_secret,
            "svix-signature",
            Some("v1,"),
            &[("v1,", "v2,"), ("v1,", "v1a,")],
            both,
            sign_svix,
        ),
        plain(
            "standard-webhooks",
            &std_secret,
            &svix_secret,
            "webhook-signature",
            Some("v1,"),
            &[("v1,", "v2,"), ("v1,", "v1a,")],
            both,
            sign_standard,
        ),
        plain(
            "github",
            "bad-input-github-secret",
            "bad-input-slack-secret",
            "x-hub-signature-256",
            Some("sha256="),
            &[("sha256=", "sha512=")],
            Clock::None,
            sign_github,
        ),
        plain(
            "slack",
            "bad-input-slack-secret",
            "bad-input-shopify-secret",
            "x-slack-signature",
            Some("v0="),
            &[("v0=", "v1=")],
            both,
            sign_slack,
        ),
        plain(
            "shopify",
            "bad-input-shopify-secret",
            "bad-input-logto-secret",
            "x-shopify-hmac-sha256",
            None,
            &[],
            Clock::None,
            sign_shopify,
        ),
        plain(
            "logto",
            "bad-input-logto-secret",
            "bad-input-pagerduty-secret",
            "logto-signature-sha-256",
            None,
            &[],
            Clock::None,
            sign_logto,
        ),
        plain(
            "pagerduty",
            "bad-input-pagerduty-secret",
            "bad-input-typeform-secret",
            "x-pagerduty-signature",
            Some("v1="),
            &[("v1=", "v2=")],
            Clock::None,
            sign_pagerduty,
        ),
        plain(
            "typeform",
            "bad-input-typeform-secret",
            "bad-input-lemonsqueezy-secret",
            "typeform-signature",
            Some("sha256="),
            &[("sha256=", "sha1=")],
            Clock::None,
            sign_typeform,
        ),
        plain(
            "lemonsqueezy",
            "bad-input-lemonsqueezy-secret",
            "bad-input-intercom-secret",
            "x-signature",
            None,
            &[],
            Clock::None,
            sign_lemonsqueezy,
        ),
        plain(
            "intercom",
            "bad-input-intercom-secret",
            "bad-input-github-secret",
            "x-hub-signature",
            Some("sha1="),
            &[("sha1=", "sha256=")],
            Clock::None,
            sign_intercom,
        ),
        plain(
            "zoom",
            "bad-input-zoom-secret",
            "bad-input-slack-secret",
            "x-zm-signature",
            Some("v0="),
            &[("v0=", "v1=")],
            both,
            sign_zoom,
        ),
        plain(
            "twitch",
            "bad-input-twitch-secret",
            "bad-input-zoom-secret",
            "twitch-eventsub-message-signature",
            Some("sha256="),
            &[("sha256=", "sha512=")],
            Clock::Rfc3339,
            sign_twitch,
        ),
        plain(
            "paddle",
            "pdl_ntfset_bad_input_paddle",
            "bad-input-twitch-secret",
            "paddle-signature",
            Some("ts={ts};h1="),
            &[(";h1=", ";h2=")],
            both,
            sign_paddle,
        ),
        plain(
            "linear",
            "bad-input-linear-secret",
            "bad-input-paddle-secret",
            "linear-signature",
            None,
            &[],
            Clock::BodyMs,
            sign_linear,
        ),
    ];
    // Zoom publishes no window: the route sets one so that the window is tested.
    list[11].verify =
        "{ scheme: zoom, secrets: [\"bad-input-zoom-secret\"], tolerance: 5m }".into();
    list.push(Scheme {
        name: "square",
        verify: format!(
            "{{ scheme: square, secrets: [\"bad-input-square-key\"], url: \"{SQUARE_URL}\" }}"
        ),
        secret: "bad-input-square-key".into(),
        other: "bad-input-linear-secret".into(),
        sig_header: "x-square-hmacsha256-signature",
        prefix_only: None,
        unknown_versions: &[],
        clock: Clock::None,
        body_signed: true,
        sign: sign_square,
    });
    list.push(Scheme {
        name: "discord",
        verify: format!("{{ scheme: discord, secrets: [\"{discord_public}\"], tolerance: 5m }}"),
        secret: discord_seed,
        other: discord_other,
        sig_header: "x-signature-ed25519",
        prefix_only: None,
        unknown_versions: &[],
        clock: both,
        body_signed: true,
        sign: sign_discord,
    });
    list.push(Scheme {
        name: "generic-hmac",
        verify: "{ scheme: generic-hmac, header: X-Bad-Input-Sig, algorithm: sha512, encoding: base64, prefix: \"sha512=\", template: \"{timestamp}.{body}\", timestamp_header: X-Bad-Input-Ts, secrets: [\"bad-input-generic-secret\"] }".into(),
        secret: "bad-input-generic-secret".into(),
        other: "bad-input-square-key".into(),
        sig_header: "x-bad-input-sig",
        prefix_only: Some("sha512="),
        unknown_versions: &[("sha512=", "sha256=")],
        clock: both,
        body_signed: true,
        sign: sign_generic,
    });
    list.push(Scheme {
        name: "token",
        verify: "{ scheme: token, header: X-Webhook-Token, secrets: [\"bad-input-token-value\"] }"
            .into(),
        secret: "bad-input-token-value".into(),
        other: "bad-input-other-token".into(),
        sig_header: "x-webhook-token",
        prefix_only: None,
        unknown_versions: &[],
        clock: Clock::None,
        // A token authenticates the sender, not the body (README): no body tampering cases.
        body_signed: false,
        sign: sign_token,
    });
    list
}

/// The JSON body every scheme signs: keys deliberately unsorted and compact, so that a
/// re-serialisation changes the bytes. Linear carries its timestamp inside (`ts_ms` as JSON).
fn event_body(clock: Clock, ts_ms: Option<&str>) -> Vec<u8> {
    let extra = match (clock, ts_ms) {
        (Clock::BodyMs, Some(ms)) => format!(r#","webhookTimestamp":{ms}"#),
        _ => String::new(),
    };
    format!(r#"{{"type":"invoice.paid","id":"evt_bad_input","data":{{"b":2,"a":1}}{extra}}}"#)
        .into_bytes()
}

fn with_value(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if k == name {
                (k.clone(), value.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

fn without(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
    headers.iter().filter(|(k, _)| k != name).cloned().collect()
}

fn value_of(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .expect("signed header")
}

/// `headers` with an extra `name: value` line just before (`first`) or after the existing one.
fn duplicated(
    headers: &[(String, String)],
    name: &str,
    value: &str,
    first: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in headers {
        if k == name && first {
            out.push((k.clone(), value.to_string()));
        }
        out.push((k.clone(), v.clone()));
        if k == name && !first {
            out.push((k.clone(), value.to_string()));
        }
    }
    out
}

fn flip_first(v: &mut [u8]) {
    v[0] ^= 0x01;
}

fn flip_last(v: &mut [u8]) {
    let i = v.len() - 1;
    v[i] ^= 0x01;
}

fn noop(_: &mut [u8]) {}

/// Every case for one scheme, the positive control first.
fn scheme_cases(s: &Scheme, now: i64) -> Vec<Case> {
    let path = format!("/hooks/{}", s.name);
    let ts_of = |t: i64| match s.clock {
        Clock::Rfc3339 => rfc3339(t),
        _ => t.to_string(),
    };
    let now_ms = (now * 1000).to_string();
    let body = event_body(s.clock, Some(&now_ms));
    let msg = |ts: String, body: Vec<u8>| Msg {
        id: "msg_bad_input".into(),
        ts,
        body,
    };
    let m = msg(ts_of(now), body.clone());
    let good = (s.sign)(&s.secret, &m, &noop);
    let sig = s.sig_header;
    let mut cases = Vec::new();
    let mut push = |what: &str, headers: Vec<(String, String)>, body: &[u8], want: u16| {
        cases.push(Case {
            name: format!("{}: {what}", s.name),
            path: path.clone(),
            headers,
            body: body.to_vec(),
            want,
        });
    };
    push(
        "valid signature (positive control)",
        good.clone(),
        &body,
        202,
    );
    push("missing signature header", without(&good, sig), &body, 401);
    push(
        "empty signature header",
        with_value(&good, sig, ""),
        &body,
        401,
    );
    if let Some(p) = s.prefix_only {
        let value = p.replace("{ts}", &m.ts);
        push(
            &format!("prefix only `{value}`"),
            with_value(&good, sig, &value),
            &body,
            401,
        );
    }
    let other = (s.sign)(&s.other, &m, &noop);
    push(
        "signed with another route's secret",
        other.clone(),
        &body,
        401,
    );
    let flipped_first = (s.sign)(&s.secret, &m, &flip_first);
    let flipped_last = (s.sign)(&s.secret, &m, &flip_last);
    push(
        "signature with its first byte's low bit flipped",
        flipped_first.clone(),
        &body,
        401,
    );
    push(
        "signature with its last byte's low bit flipped",
        flipped_last.clone(),
        &body,
        401,
    );
    // Duplicated signature header lines: a sender has one, so any repetition is malformed
    // (src/verify.rs `header`: "several values are malformed"; Failure::MalformedHeader covers
    // "duplicates") and answered 401, even when one of them is valid.
    let good_value = value_of(&good, sig);
    let bad_value = value_of(&other, sig);
    let flipped_value = value_of(&flipped_first, sig);
    push(
        "duplicated signature header, bad line then good line",
        duplicated(&good, sig, &bad_value, true),
        &body,
        401,
    );
    push(
        "duplicated signature header, good line then bad line",
        duplicated(&good, sig, &bad_value, false),
        &body,
        401,
    );
    push(
        "duplicated signature header, both bad",
        duplicated(&other, sig, &flipped_value, false),
        &body,
        401,
    );
    push(
        "duplicated signature header, the valid line twice",
        duplicated(&good, sig, &good_value, false),
        &body,
        401,
    );
    for (from, to) in s.unknown_versions {
        assert!(
            good_value.contains(from),
            "{}: {from} in {good_value}",
            s.name
        );
        push(
            &format!("unknown signature version `{to}` (valid MAC)"),
            with_value(&good, sig, &good_value.replacen(from, to, 1)),
            &body,
            401,
        );
    }
    if s.body_signed {
        let v: Value = serde_json::from_slice(&body).expect("JSON body");
        let reserialised = serde_json::to_vec_pretty(&v).expect("JSON");
        assert_ne!(reserialised, body);
        push(
            "body re-serialised (same JSON, other key order and whitespace)",
            good.clone(),
            &reserialised,
            401,
        );
        for (at, what) in [
            (0, "first"),
            (body.len() / 2, "middle"),
            (body.len() - 1, "last"),
        ] {
            let mut b = body.clone();
            b[at] ^= 0x01;
            push(
                &format!("body with a bit flipped in its {what} byte"),
                good.clone(),
                &b,
                401,
            );
        }
    }
    // Timestamps, each signed correctly over the timestamp text as sent, so only the timestamp
    // check can refuse them.
    let signed_at = |ts: String, body: &[u8]| (s.sign)(&s.secret, &msg(ts, body.to_vec()), &noop);
    match s.clock {
        Clock::None => {}
        Clock::Unix { future_refused } => {
            push(
                "timestamp an hour old",
                signed_at(ts_of(now - 3600), &body),
                &body,
                401,
            );
            // Stripe checks the old side only (README: "±tolerance on the old side"; the SDKs
            // accept future timestamps): documented behaviour, asserted as accepted.
            push(
                if future_refused {
                    "timestamp an hour in the future"
                } else {
                    "timestamp an hour in the future (accepted: old side only, README)"
                },
                signed_at(ts_of(now + 3600), &body),
                &body,
                if future_refused { 401 } else { 202 },
            );
            for ts in [
                "abc".to_string(),
                "1e9".into(),
                "-5".into(),
                String::new(),
                "9".repeat(40),
                format!("+{now}"),
                format!("{now}.0"),
                format!("{now}abc"),
                format!("0x{now:x}"),
            ] {
                push(
                    &format!("timestamp `{ts}`"),
                    signed_at(ts.clone(), &body),
                    &body,
                    401,
                );
            }
        }
        Clock::Rfc3339 => {
            push(
                "timestamp an hour old",
                signed_at(ts_of(now - 3600), &body),
                &body,
                401,
            );
            // Twitch refuses messages older than 10 minutes and applies no future rule
            // (src/verify/twitch.rs, README): documented, asserted as accepted.
            push(
                "timestamp an hour in the future (accepted: old side only)",
                signed_at(ts_of(now + 3600), &body),
                &body,
                202,
            );
            for ts in [
                "abc".to_string(),
                "1e9".into(),
                "-5".into(),
                String::new(),
                "9".repeat(40),
                now.to_string(),
                "2030-13-01T00:00:00Z".into(),
                ts_of(now).to_lowercase(),
            ] {
                push(
                    &format!("timestamp `{ts}`"),
                    signed_at(ts.clone(), &body),
                    &body,
                    401,
                );
            }
        }
        Clock::BodyMs => {
            let ts = ts_of(now);
            for (what, ms) in [
                ("an hour old", Some(((now - 3600) * 1000).to_string())),
                (
                    "an hour in the future",
                    Some(((now + 3600) * 1000).to_string()),
                ),
                ("a string", Some(format!("\"{now_ms}\""))),
                ("`\"abc\"`", Some("\"abc\"".into())),
                ("`1e9`", Some("1e9".into())),
                ("`-5`", Some("-5".into())),
                ("empty string", Some("\"\"".into())),
                ("40 digits", Some("9".repeat(40))),
                ("a float", Some(format!("{now_ms}.5"))),
                ("null", Some("null".into())),
                ("missing", None),
            ] {
                let b = match &ms {
                    Some(ms) => event_body(Clock::BodyMs, Some(ms)),
                    None => event_body(Clock::None, None),
                };
                push(
                    &format!("body webhookTimestamp {what}"),
                    signed_at(ts.clone(), &b),
                    &b,
                    401,
                );
            }
        }
    }
    // Scheme-specific shapes.
    match s.name {
        "stripe" => {
            push(
                "uppercase hex",
                {
                    let (t, v1) = good_value.split_once(",v1=").expect("stripe header");
                    with_value(&good, sig, &format!("{t},v1={}", v1.to_uppercase()))
                },
                &body,
                401,
            );
            push(
                "space after the comma (` v1` is another key)",
                with_value(&good, sig, &good_value.replacen(",v1=", ", v1=", 1)),
                &body,
                401,
            );
            push(
                "a second `t=` entry",
                with_value(&good, sig, &format!("{good_value},t={}", now - 3600)),
                &body,
                401,
            );
        }
        "svix" => {
            // svix-* is read first; the webhook-* fallback applies only when svix-* is absent.
            let fallback = sign_standard(&s.secret, &m, &noop);
            let mut mixed = other.clone();
            mixed.push(h(
                "webhook-signature",
                value_of(&fallback, "webhook-signature"),
            ));
            push(
                "bad svix-signature beside a valid webhook-signature",
                mixed,
                &body,
                401,
            );
            push(
                "valid signature for another svix-id",
                with_value(&good, "svix-id", "msg_other"),
                &body,
                401,
            );
        }
        "github" => {
            let sha1 = hmac1(s.secret.as_bytes(), &body);
            push(
                "only the legacy sha1 header (legacy_sha1 off)",
                vec![h("x-hub-signature", format!("sha1={}", hex::encode(sha1)))],
                &body,
                401,
            );
            push(
                "bare hex without `sha256=`",
                with_value(&good, sig, good_value.trim_start_matches("sha256=")),
                &body,
                401,
            );
        }
        "shopify" => {
            let mut both = with_value(&good, sig, &value_of(&other, sig));
            both.push(h("shopify-hmac-sha256", good_value.clone()));
            push(
                "bad X-Shopify-Hmac-Sha256 beside a valid shopify-hmac-sha256",
                both,
                &body,
                401,
            );
            push(
                "empty body signed as such",
                (s.sign)(&s.secret, &msg(m.ts.clone(), Vec::new()), &noop),
                b"",
                401,
            );
        }
        "square" => {
            let mac = hmac256(
                s.secret.as_bytes(),
                &[b"https://hooks.example.com/hooks/square/", &body],
            );
            push(
                "signed for another URL (trailing slash)",
                vec![h(sig, B64.encode(mac))],
                &body,
                401,
            );
        }
        "token" => {
            push(
                "token in other case",
                with_value(&good, sig, &s.secret.to_uppercase()),
                &body,
                401,
            );
            push(
                "token prefix",
                with_value(&good, sig, &s.secret[..s.secret.len() / 2]),
                &body,
                401,
            );
            push(
                "token with a suffix",
                with_value(&good, sig, &format!("{}x", s.secret)),
                &body,
                401,
            );
        }
        _ => {}
    }
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_refused_and_nothing_is_forwarded_or_stored() {
    let target = Target::start(crate::support::Reply::default()).await;
    let schemes = schemes();
    let routes: String = schemes
        .iter()
        .map(|s| {
            format!(
                "  - {{ name: {0}, path: /hooks/{0}, verify: {1}, deliver: [ {{ target: t }} ] }}\n",
                s.name, s.verify
            )
        })
        .collect();
    let router = async_router(&target, "", &routes);
    let mut out = Outcome::default();
    for s in &schemes {
        // Signed just before sending: Paddle's window is 5 seconds.
        run_http(&router, &scheme_cases(s, now()), &mut out).await;
    }
    println!(
        "bad_input signatures: {} schemes: {}",
        schemes.len(),
        schemes
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    report("signatures", &out);
    assert_nothing_leaked("signatures", &router, &target, &out).await;
}

// === Paths and hosts ===

/// A raw HTTP/1.1 POST of `{}` to `target` with the given header lines (each ending `\r\n`).
fn raw_post(target: &[u8], header_lines: &str, case: &str) -> Vec<u8> {
    [
        b"POST ".as_slice(),
        target,
        format!(
            " HTTP/1.1\r\n{header_lines}{CASE_HEADER}: {case}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
        .as_bytes(),
    ]
    .concat()
}

fn path_and_host_routes() -> &'static str {
    "  - { name: stripe, path: /hooks/stripe, deliver: [ { target: t } ] }
  - { name: hosted, path: /hooks/hosted, host: hooks.example.com, deliver: [ { target: t } ] }
"
}

/// Request targets against the route `/hooks/stripe` (README "Routing and paths": a
/// non-canonical path is 400 and never matched loosely; another spelling is another path, 404).
fn path_cases() -> Vec<RawCase> {
    let cases: &[(&str, &[u8], u16)] = &[
        ("canonical path (positive control)", b"/hooks/stripe", 202),
        (
            "absolute-form with the canonical path (RFC 9112 3.2.2: must be accepted)",
            b"http://127.0.0.1/hooks/stripe",
            202,
        ),
        ("`..` segment", b"/hooks/../hooks/stripe", 400),
        ("`..` at the end", b"/hooks/stripe/..", 400),
        ("`.` at the end", b"/hooks/stripe/.", 400),
        ("`%2e%2e` segment", b"/hooks/%2e%2e/hooks/stripe", 400),
        ("`%2E%2e` segment", b"/hooks/%2E%2e/hooks/stripe", 400),
        ("`%2E%2E` segment", b"/hooks/%2E%2E/hooks/stripe", 400),
        ("`.%2E` segment", b"/hooks/.%2E/hooks/stripe", 400),
        ("`%2e` segment", b"/hooks/%2e/stripe", 400),
        ("`%2e` appended", b"/hooks/stripe%2e", 400),
        ("`%2f` for the slash", b"/hooks%2fstripe", 400),
        ("`%2F` for the slash", b"/hooks%2Fstripe", 400),
        ("trailing `%2F`", b"/hooks/stripe%2F", 400),
        ("`//` inside", b"/hooks//stripe", 400),
        ("`//` leading", b"//hooks/stripe", 400),
        ("`/./` leading", b"/./hooks/stripe", 400),
        ("`/./` inside", b"/hooks/./stripe", 400),
        ("trailing slash (another path)", b"/hooks/stripe/", 404),
        ("upper case path", b"/HOOKS/STRIPE", 404),
        ("capitalised segment", b"/Hooks/stripe", 404),
        ("capitalised last segment", b"/hooks/Stripe", 404),
        ("`%73` for a letter", b"/hooks/%73tripe", 400),
        ("`%68` for a letter", b"/%68ooks/stripe", 400),
        ("`%00` appended", b"/hooks/stripe%00", 400),
        ("`%00` inside", b"/hooks/%00stripe", 400),
        ("`%7F` appended", b"/hooks/stripe%7F", 400),
        ("`;param` appended", b"/hooks/stripe;param", 404),
        ("`;param` on a segment", b"/hooks;x/stripe", 404),
        ("`..;/` appended", b"/hooks/stripe/..;/", 404),
        (
            "overlong UTF-8 `..` escaped in capitals (not decoded: another path)",
            b"/hooks/%C0%AE%C0%AE/hooks/stripe",
            404,
        ),
        (
            "overlong UTF-8 `.` escaped in capitals",
            b"/hooks/%C0%AEstripe",
            404,
        ),
        (
            "three-byte overlong `..` escaped",
            b"/hooks/%E0%80%AE%E0%80%AE/hooks/stripe",
            404,
        ),
        (
            "overlong UTF-8 `..` in lowercase escapes",
            b"/hooks/%c0%ae%c0%ae/hooks/stripe",
            400,
        ),
        (
            "overlong UTF-8 `..` as raw bytes",
            b"/hooks/\xc0\xae\xc0\xae/stripe",
            400,
        ),
        ("escaped `#` (another path)", b"/hooks/stripe%23frag", 404),
        ("escaped `?` (another path)", b"/hooks/stripe%3F", 404),
        ("`%20` appended (another path)", b"/hooks/stripe%20", 404),
        ("backslash", b"/hooks\\stripe", 400),
        ("`%5C` backslash", b"/hooks/stripe%5C", 400),
        ("lone `%`", b"/hooks/stripe%", 400),
        ("`%zz`", b"/hooks/stripe%zz", 400),
        ("raw tab", b"/hooks/stripe\t", 400),
        ("raw space", b"/hooks/st ripe", 400),
        ("relative target", b"hooks/stripe", 400),
        ("asterisk-form", b"*", 400),
        ("authority-form", b"127.0.0.1:80", 400),
        (
            "absolute-form with `..`",
            b"http://127.0.0.1/hooks/../hooks/stripe",
            400,
        ),
        (
            "absolute-form with `%2e%2e`",
            b"http://127.0.0.1/hooks/%2e%2e/hooks/stripe",
            400,
        ),
        (
            "absolute-form with `//`",
            b"http://127.0.0.1//hooks/stripe",
            400,
        ),
        (
            "absolute-form, upper case path",
            b"http://127.0.0.1/HOOKS/STRIPE",
            404,
        ),
        (
            "absolute-form, trailing slash",
            b"https://127.0.0.1/hooks/stripe/",
            404,
        ),
        ("absolute-form without a path", b"http://127.0.0.1", 404),
    ];
    let mut out: Vec<RawCase> = cases
        .iter()
        .map(|(what, target, want)| {
            let name = format!("path: {what}");
            RawCase {
                request: raw_post(target, "Host: x\r\n", &name),
                name,
                want: *want,
            }
        })
        .collect();
    let name = "path: OPTIONS asterisk-form".to_string();
    out.push(RawCase {
        request: format!(
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n{CASE_HEADER}: {name}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        name,
        want: 400,
    });
    out
}

/// Host tricks against `/hooks/hosted` (`host: hooks.example.com`; README: case-insensitive,
/// port ignored, a route with a host matches only that host).
fn host_cases() -> Vec<RawCase> {
    let hosted: &[u8] = b"/hooks/hosted";
    let cases: &[(&str, &[u8], &str, u16)] = &[
        (
            "the route's host (positive control)",
            hosted,
            "Host: hooks.example.com\r\n",
            202,
        ),
        (
            "upper case host (case-insensitive)",
            hosted,
            "Host: HOOKS.EXAMPLE.COM\r\n",
            202,
        ),
        (
            "host with a port (port ignored)",
            hosted,
            "Host: hooks.example.com:8443\r\n",
            202,
        ),
        (
            "absolute-form for the route's host, other Host header (RFC 9112 3.2.2: the target wins)",
            b"http://hooks.example.com/hooks/hosted",
            "Host: evil.example\r\n",
            202,
        ),
        ("wrong host", hosted, "Host: evil.example\r\n", 404),
        (
            "host with a suffix",
            hosted,
            "Host: hooks.example.com.evil.example\r\n",
            404,
        ),
        (
            "subdomain of the host",
            hosted,
            "Host: evil.hooks.example.com\r\n",
            404,
        ),
        (
            "host missing its last letter",
            hosted,
            "Host: hooks.example.co\r\n",
            404,
        ),
        ("IPv6 literal host", hosted, "Host: [::1]\r\n", 404),
        ("loopback address host", hosted, "Host: 127.0.0.1\r\n", 404),
        (
            "duplicate Host, right then wrong",
            hosted,
            "Host: hooks.example.com\r\nHost: evil.example\r\n",
            400,
        ),
        (
            "duplicate Host, wrong then right",
            hosted,
            "Host: evil.example\r\nHost: hooks.example.com\r\n",
            400,
        ),
        (
            "duplicate Host, same value twice",
            hosted,
            "Host: hooks.example.com\r\nHost: hooks.example.com\r\n",
            400,
        ),
        (
            "Host with a comma list",
            hosted,
            "Host: hooks.example.com, evil.example\r\n",
            400,
        ),
        ("empty Host", hosted, "Host: \r\n", 400),
        (
            "Host with a path",
            hosted,
            "Host: hooks.example.com/x\r\n",
            400,
        ),
        (
            "Host with a percent-escape",
            hosted,
            "Host: hooks%2eexample.com\r\n",
            400,
        ),
        (
            "Host with two ports",
            hosted,
            "Host: hooks.example.com:8443:1\r\n",
            400,
        ),
        (
            "Host with a query",
            hosted,
            "Host: hooks.example.com?x\r\n",
            400,
        ),
        (
            "Host with a fragment",
            hosted,
            "Host: hooks.example.com#x\r\n",
            400,
        ),
        (
            "Host with a backslash",
            hosted,
            "Host: hooks.example.com\\\r\n",
            400,
        ),
        (
            "absolute-form for another host, Host header of the route",
            b"http://evil.example/hooks/hosted",
            "Host: hooks.example.com\r\n",
            404,
        ),
        (
            "absolute-form for another host, no Host header (HTTP/1.1 needs Host: RFC 9112 3.2)",
            b"http://evil.example/hooks/hosted",
            "",
            400,
        ),
    ];
    let mut out: Vec<RawCase> = cases
        .iter()
        .map(|(what, target, host, want)| {
            let name = format!("host: {what}");
            RawCase {
                request: raw_post(target, host, &name),
                name,
                want: *want,
            }
        })
        .collect();
    // HTTP/1.0 may omit Host: then no host is known and a host route does not match.
    let name = "host: HTTP/1.0 without Host".to_string();
    out.push(RawCase {
        request: format!(
            "POST /hooks/hosted HTTP/1.0\r\n{CASE_HEADER}: {name}\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .into_bytes(),
        name,
        want: 404,
    });
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_and_hosts_never_reach_a_route_loosely() {
    let target = Target::start(crate::support::Reply::default()).await;
    let router = async_router(&target, "", path_and_host_routes());
    let mut paths = Outcome::default();
    run_raw(&router, &path_cases(), &mut paths).await;
    let mut hosts = Outcome::default();
    run_raw(&router, &host_cases(), &mut hosts).await;
    report("paths", &paths);
    report("hosts", &hosts);
    let mut all = paths;
    all.cases += hosts.cases;
    all.accepted.extend(hosts.accepted);
    assert_nothing_leaked("paths and hosts", &router, &target, &all).await;
}

// === Allowlists and client addresses ===

fn xff(v: &str) -> Vec<(String, String)> {
    vec![h("x-forwarded-for", v.to_string())]
}

fn fwd(v: &str) -> Vec<(String, String)> {
    vec![h("forwarded", v.to_string())]
}

fn allow_case(
    group: &str,
    path: &str,
    what: &str,
    headers: Vec<(String, String)>,
    want: u16,
) -> Case {
    Case {
        name: format!("{group}: {what}"),
        path: path.to_string(),
        headers,
        body: br#"{"type":"ping"}"#.to_vec(),
        want,
    }
}

/// From a peer that is not a trusted proxy, every header claiming an allowed address
/// (192.0.2.1 / 2001:db8::1) is ignored: `/hooks/locked` stays 403. `/hooks/open` (which
/// allows 127.0.0.1) is the positive control, also with garbage forwarding headers, which an
/// untrusted peer's request never has read.
fn forged_cases(group: &str) -> Vec<Case> {
    let claims: Vec<(&str, Vec<(String, String)>)> = vec![
        ("no forwarding header", vec![]),
        ("X-Forwarded-For: allowed", xff("192.0.2.1")),
        ("X-Forwarded-For: two allowed", xff("192.0.2.1, 192.0.2.2")),
        (
            "X-Forwarded-For: allowed v4-mapped",
            xff("::ffff:192.0.2.1"),
        ),
        ("X-Forwarded-For: allowed IPv6", xff("2001:db8::1")),
        ("X-Forwarded-For: allowed with port", xff("192.0.2.1:443")),
        (
            "X-Forwarded-For: allowed then loopback",
            xff("192.0.2.1, 127.0.0.1"),
        ),
        (
            "two X-Forwarded-For lines",
            vec![
                h("x-forwarded-for", "192.0.2.1".into()),
                h("x-forwarded-for", "192.0.2.2".into()),
            ],
        ),
        ("Forwarded: for=allowed", fwd("for=192.0.2.1")),
        ("Forwarded: quoted IPv6", fwd(r#"for="[2001:db8::1]:443""#)),
        (
            "Forwarded: with proto and by",
            fwd("for=192.0.2.1;proto=https;by=127.0.0.1"),
        ),
        (
            "X-Forwarded-For and Forwarded both allowed",
            vec![
                h("x-forwarded-for", "192.0.2.1".into()),
                h("forwarded", "for=192.0.2.1".into()),
            ],
        ),
        ("X-Real-IP", vec![h("x-real-ip", "192.0.2.1".into())]),
        (
            "True-Client-IP",
            vec![h("true-client-ip", "192.0.2.1".into())],
        ),
        (
            "CF-Connecting-IP",
            vec![h("cf-connecting-ip", "192.0.2.1".into())],
        ),
        ("X-Client-IP", vec![h("x-client-ip", "192.0.2.1".into())]),
        ("Client-IP", vec![h("client-ip", "192.0.2.1".into())]),
        (
            "X-Originating-IP",
            vec![h("x-originating-ip", "192.0.2.1".into())],
        ),
        (
            "X-Cluster-Client-IP",
            vec![h("x-cluster-client-ip", "192.0.2.1".into())],
        ),
        (
            "Fastly-Client-IP",
            vec![h("fastly-client-ip", "192.0.2.1".into())],
        ),
        (
            "X-Forwarded",
            vec![h("x-forwarded", "for=192.0.2.1".into())],
        ),
        (
            "X-ProxyUser-Ip",
            vec![h("x-proxyuser-ip", "192.0.2.1".into())],
        ),
        ("garbage X-Forwarded-For", xff("not-an-ip")),
    ];
    let mut out: Vec<Case> = claims
        .into_iter()
        .map(|(what, headers)| {
            allow_case(
                group,
                "/hooks/locked",
                &format!("forged {what}"),
                headers,
                403,
            )
        })
        .collect();
    out.push(allow_case(
        group,
        "/hooks/open",
        "allowed peer (positive control)",
        vec![],
        202,
    ));
    out.push(allow_case(
        group,
        "/hooks/open",
        "allowed peer with garbage X-Forwarded-For (not read from an untrusted peer)",
        xff("garbage"),
        202,
    ));
    out
}

const FORGED_ROUTES: &str = r#"  - { name: open, path: /hooks/open, allow_ips: ["127.0.0.1/32"], deliver: [ { target: t } ] }
  - { name: locked, path: /hooks/locked, allow_ips: ["192.0.2.0/24", "2001:db8::/32"], deliver: [ { target: t } ] }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn forged_forwarding_headers_without_trusted_proxies() {
    let target = Target::start(crate::support::Reply::default()).await;
    let router = async_router(&target, "", FORGED_ROUTES);
    let mut out = Outcome::default();
    run_http(
        &router,
        &forged_cases("allowlist, no trusted_proxies"),
        &mut out,
    )
    .await;
    report("allowlist, no trusted_proxies", &out);
    assert_nothing_leaked("allowlist, no trusted_proxies", &router, &target, &out).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_forwarding_headers_from_an_untrusted_peer() {
    let target = Target::start(crate::support::Reply::default()).await;
    // 127.0.0.1 is not in trusted_proxies.
    let router = async_router(
        &target,
        r#"trusted_proxies: ["10.0.0.0/8", "192.0.2.0/24"]"#,
        FORGED_ROUTES,
    );
    let mut out = Outcome::default();
    run_http(
        &router,
        &forged_cases("allowlist, untrusted peer"),
        &mut out,
    )
    .await;
    report("allowlist, untrusted peer", &out);
    assert_nothing_leaked("allowlist, untrusted peer", &router, &target, &out).await;
}

/// From a trusted proxy (127.0.0.0/8): the client is the rightmost address that is not a
/// trusted proxy; IPv4-mapped addresses match IPv4 networks; an unreadable header is 400
/// (README "Client address"). Allowed: 198.51.100.0/24.
fn trusted_proxy_cases() -> Vec<Case> {
    let g = "allowlist, trusted proxy";
    let path = "/hooks/locked";
    let mut out = Vec::new();
    let allowed: &[(&str, Vec<(String, String)>)] = &[
        ("allowed client (positive control)", xff("198.51.100.7")),
        ("allowed client v4-mapped", xff("::ffff:198.51.100.7")),
        ("allowed client v4-mapped in hex", xff("::ffff:c633:6407")),
        ("allowed client with a port", xff("198.51.100.7:4711")),
        (
            "allowed client behind more trusted proxies",
            xff("203.0.113.9, 198.51.100.7, 127.0.0.2"),
        ),
        (
            "garbage left of the allowed client (never read)",
            xff("garbage, 198.51.100.7"),
        ),
        ("Forwarded: for=allowed", fwd("for=198.51.100.7")),
        (
            "Forwarded: quoted with port",
            fwd(r#"for="198.51.100.7:4711""#),
        ),
    ];
    for (what, headers) in allowed {
        out.push(allow_case(g, path, what, headers.clone(), 202));
    }
    let denied: Vec<(&str, Vec<(String, String)>)> = vec![
        ("no forwarding header (the proxy itself)", vec![]),
        ("other client", xff("203.0.113.9")),
        (
            "allowed address forged left of the real client",
            xff("198.51.100.7, 203.0.113.9"),
        ),
        ("other client v4-mapped", xff("::ffff:203.0.113.9")),
        (
            "other client v4-mapped, long form",
            xff("0:0:0:0:0:ffff:cb00:7109"),
        ),
        (
            "allowed address v4-compatible (`::a.b.c.d` is not v4-mapped)",
            xff("::198.51.100.7"),
        ),
        (
            "allowed address in NAT64 form",
            xff("64:ff9b::198.51.100.7"),
        ),
        (
            "only trusted proxies (the leftmost is the client)",
            xff("127.0.0.9, 127.0.0.8"),
        ),
        ("IPv6 client in brackets with port", xff("[2001:db8::1]:80")),
        ("Forwarded: IPv6 client", fwd(r#"for="[2001:db8::1]""#)),
        (
            "Forwarded: allowed forged left of the client",
            fwd("for=198.51.100.7, for=203.0.113.9"),
        ),
        (
            "X-Forwarded-For wins over Forwarded",
            vec![
                h("x-forwarded-for", "203.0.113.9".into()),
                h("forwarded", "for=198.51.100.7".into()),
            ],
        ),
        (
            "two X-Forwarded-For lines, the last one other",
            vec![
                h("x-forwarded-for", "198.51.100.7".into()),
                h("x-forwarded-for", "203.0.113.9".into()),
            ],
        ),
        (
            "X-Real-IP of the allowed client (not read)",
            vec![h("x-real-ip", "198.51.100.7".into())],
        ),
    ];
    for (what, headers) in denied {
        out.push(allow_case(g, path, what, headers, 403));
    }
    let many_commas = format!("198.51.100.7{}", ",".repeat(1000));
    let unreadable: Vec<(&str, Vec<(String, String)>)> = vec![
        ("X-Forwarded-For: garbage", xff("garbage")),
        ("X-Forwarded-For: `unknown`", xff("unknown")),
        ("X-Forwarded-For: empty", xff("")),
        ("X-Forwarded-For: only commas", xff(",,,,")),
        ("X-Forwarded-For: trailing commas", xff("198.51.100.7,,,")),
        ("X-Forwarded-For: 1000 commas", xff(&many_commas)),
        (
            "X-Forwarded-For: IPv6 in brackets without port",
            xff("[2001:db8::1]"),
        ),
        (
            "X-Forwarded-For: port out of range",
            xff("198.51.100.7:99999"),
        ),
        ("X-Forwarded-For: empty port", xff("198.51.100.7:")),
        ("X-Forwarded-For: leading zeros", xff("198.51.100.007")),
        ("X-Forwarded-For: octal-looking", xff("0306.51.100.7")),
        ("X-Forwarded-For: hex octet", xff("0xc6.51.100.7")),
        ("X-Forwarded-For: integer form", xff("3325256711")),
        ("X-Forwarded-For: three octets", xff("198.51.100")),
        ("X-Forwarded-For: CIDR", xff("198.51.100.7/32")),
        ("X-Forwarded-For: zone id", xff("fe80::1%eth0")),
        (
            "X-Forwarded-For: space separated",
            xff("198.51.100.7 203.0.113.9"),
        ),
        ("X-Forwarded-For: non-ASCII", xff("198.51.100.7\u{e9}")),
        ("Forwarded: for=unknown", fwd("for=unknown")),
        ("Forwarded: obfuscated identifier", fwd("for=_hidden")),
        ("Forwarded: no for", fwd("proto=https")),
        ("Forwarded: unclosed bracket", fwd(r#"for="[2001:db8::1""#)),
        ("Forwarded: empty", fwd("")),
    ];
    for (what, headers) in unreadable {
        out.push(allow_case(g, path, what, headers, 400));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_from_a_trusted_proxy() {
    let target = Target::start(crate::support::Reply::default()).await;
    let router = async_router(
        &target,
        r#"trusted_proxies: ["127.0.0.0/8"]"#,
        r#"  - { name: locked, path: /hooks/locked, allow_ips: ["198.51.100.0/24"], deliver: [ { target: t } ] }
"#,
    );
    let mut out = Outcome::default();
    run_http(&router, &trusted_proxy_cases(), &mut out).await;
    report("allowlist, trusted proxy", &out);
    assert_nothing_leaked("allowlist, trusted proxy", &router, &target, &out).await;
}

// === Config: `hookrouter check` exits 2 with a message at the right path ===

struct ConfigCase {
    name: String,
    /// Spliced into the route (a flow mapping entry, ending with `, `).
    route_extra: String,
    /// Top-level lines before `targets:`.
    top: String,
    env: Vec<(&'static str, &'static str)>,
    /// The YAML path the message must name, and a phrase it must contain.
    path: &'static str,
    phrase: &'static str,
}

fn config_cases() -> Vec<ConfigCase> {
    let mut out = Vec::new();
    let ips: &[(&str, &str)] = &[
        ("010.0.0.1", "leading zero"),
        ("10.0.0.01/32", "leading zero"),
        ("0177.0.0.1", "leading zero"),
        ("0x7f.0.0.1", "hexadecimal octet"),
        ("127.1", "shortened IPv4 address"),
        ("2130706433", "bare number"),
        ("1.2.3.4.5", "is not an IP address"),
        ("::ffff:010.0.0.1", "is not an IP address"),
        ("10.0.0.0/08", "prefix length that is not a number"),
        ("10.0.0.0/33", "prefix length longer"),
        ("10.1.2.3/16", "bits set after the prefix"),
        ("10.0.0.0/8/8", "prefix length that is not a number"),
    ];
    for (ip, phrase) in ips {
        out.push(ConfigCase {
            name: format!("allow_ips `{ip}`"),
            route_extra: format!("allow_ips: [\"{ip}\"], "),
            top: String::new(),
            env: vec![],
            path: "routes[0].allow_ips[0]",
            phrase,
        });
        out.push(ConfigCase {
            name: format!("trusted_proxies `{ip}`"),
            route_extra: String::new(),
            top: format!("trusted_proxies: [\"{ip}\"]\n"),
            env: vec![],
            path: "trusted_proxies[0]",
            phrase,
        });
    }
    let secret = |name: &str,
                  verify: &str,
                  env: Vec<(&'static str, &'static str)>,
                  path: &'static str,
                  phrase: &'static str| ConfigCase {
        name: name.to_string(),
        route_extra: format!("verify: {verify}, "),
        top: String::new(),
        env,
        path,
        phrase,
    };
    let s0 = "routes[0].verify.secrets[0]";
    out.extend([
        secret(
            "empty secret",
            r#"{ scheme: stripe, secrets: [""] }"#,
            vec![],
            s0,
            "must not be empty",
        ),
        secret(
            "whitespace-only secret",
            r#"{ scheme: github, secrets: ["   "] }"#,
            vec![],
            s0,
            "must not be empty",
        ),
        secret(
            "tab-only secret",
            r#"{ scheme: slack, secrets: ["\t"] }"#,
            vec![],
            s0,
            "must not be empty",
        ),
        secret(
            "secret from an empty variable",
            r#"{ scheme: shopify, secrets: ["${env:BAD_INPUT_EMPTY}"] }"#,
            vec![("BAD_INPUT_EMPTY", "")],
            s0,
            "is empty",
        ),
        secret(
            "secret from a whitespace-only variable",
            r#"{ scheme: svix, secrets: ["${env:BAD_INPUT_BLANK}"] }"#,
            vec![("BAD_INPUT_BLANK", "   ")],
            s0,
            "is empty",
        ),
        secret(
            "secret from an unset variable",
            r#"{ scheme: stripe, secrets: ["${env:BAD_INPUT_SURELY_UNSET}"] }"#,
            vec![],
            s0,
            "is not set",
        ),
        secret(
            "secret from an empty file",
            r#"{ scheme: logto, secrets: ["${file:empty_secret}"] }"#,
            vec![],
            s0,
            "is empty",
        ),
        secret(
            "second secret empty",
            r#"{ scheme: github, secrets: ["good-secret", ""] }"#,
            vec![],
            "routes[0].verify.secrets[1]",
            "must not be empty",
        ),
        secret(
            "no secrets",
            r#"{ scheme: github, secrets: [] }"#,
            vec![],
            "routes[0].verify.secrets",
            "give at least one secret",
        ),
        secret(
            "svix whsec_ with invalid base64",
            r#"{ scheme: svix, secrets: ["whsec_not*base64!"] }"#,
            vec![],
            s0,
            "followed by base64",
        ),
        secret(
            "standard-webhooks whsec_ with extra padding",
            r#"{ scheme: standard-webhooks, secrets: ["whsec_YWJj=="] }"#,
            vec![],
            s0,
            "followed by base64",
        ),
        secret(
            "standard-webhooks whsec_ with a space inside",
            r#"{ scheme: standard-webhooks, secrets: ["whsec_YWJj ZGVm"] }"#,
            vec![],
            s0,
            "followed by base64",
        ),
        secret(
            "svix whsec_ with nothing after it",
            r#"{ scheme: svix, secrets: ["whsec_"] }"#,
            vec![],
            s0,
            "empty key",
        ),
        secret(
            "svix whsec_ invalid base64 from a variable (value never echoed)",
            r#"{ scheme: svix, secrets: ["${env:BAD_INPUT_NOT_B64}"] }"#,
            vec![("BAD_INPUT_NOT_B64", "whsec_SeCrEt!!not%base64")],
            s0,
            "followed by base64",
        ),
        secret(
            "gitlab signing token with invalid base64",
            r#"{ scheme: gitlab, gitlab: signing-token, secrets: ["whsec_%%%"] }"#,
            vec![],
            s0,
            "base64",
        ),
        secret(
            "standard-webhooks private key",
            r#"{ scheme: standard-webhooks, secrets: ["whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="] }"#,
            vec![],
            s0,
            "private",
        ),
        secret(
            "token with surrounding whitespace",
            r#"{ scheme: token, header: X-Token, secrets: [" padded-token "] }"#,
            vec![],
            s0,
            "whitespace",
        ),
        secret(
            "discord key that is not hex",
            r#"{ scheme: discord, secrets: ["not-a-public-key"] }"#,
            vec![],
            s0,
            "64 hex digits",
        ),
    ]);
    out
}

#[test]
fn bad_configs_are_refused_by_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty_secret"), "\n").expect("write");
    let config = dir.path().join("router.yaml");
    let cases = config_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let yaml = format!(
            r#"version: 1
listen: [ {{ addr: "127.0.0.1:8080" }} ]
{}targets:
  t: {{ url: "http://127.0.0.1:7001/in" }}
routes:
  - {{ name: r, path: /hooks/r, mode: sync, {}deliver: [ {{ target: t }} ] }}
"#,
            case.top, case.route_extra
        );
        std::fs::write(&config, &yaml).expect("write config");
        let out = check(&config, &case.env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit {:?}, want 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            problems.push(format!("stdout: {}", String::from_utf8_lossy(&out.stdout)));
        }
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!(": {}: ", case.path)));
        match line {
            None => problems.push(format!("no message at `{}`", case.path)),
            Some(l) if !l.contains(case.phrase) => {
                problems.push(format!("message lacks {:?}", case.phrase));
            }
            Some(_) => {}
        }
        for (_, value) in &case.env {
            if value.trim().len() > 3 && stderr.contains(value) {
                problems.push("the referenced value is echoed".to_string());
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "config: {}: {}\n{yaml}stderr:\n{stderr}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    println!(
        "bad_input config: {} cases (hookrouter check exits 2)",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} config cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn check(config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrouter"));
    cmd.args(["check", "-c"])
        .arg(config)
        .env_remove("BAD_INPUT_SURELY_UNSET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hookrouter check")
}

// === Behaviour that contradicts the README or the RFCs ===

/// Sends `cases` (name, raw request) to a router with the path/host routes; each must get 400
/// and nothing may be delivered or stored.
async fn assert_all_400(group: &str, cases: Vec<(String, Vec<u8>)>) {
    let target = Target::start(crate::support::Reply::default()).await;
    let router = async_router(&target, "", path_and_host_routes());
    let cases: Vec<RawCase> = cases
        .into_iter()
        .map(|(name, request)| RawCase {
            name,
            request,
            want: 400,
        })
        .collect();
    let mut out = Outcome::default();
    run_raw(&router, &cases, &mut out).await;
    report(group, &out);
    assert_nothing_leaked(group, &router, &target, &out).await;
}

/// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
/// request message that lacks a Host header field"; README: a malformed request is 400.
#[tokio::test(flavor = "multi_thread")]
async fn http11_request_without_host_is_400() {
    let cases = ["/hooks/stripe", "/hooks/hosted"]
        .iter()
        .map(|path| {
            let name = format!("missing Host: HTTP/1.1 POST {path}");
            (name.clone(), raw_post(path.as_bytes(), "", &name))
        })
        .collect();
    assert_all_400("missing Host", cases).await;
}

/// RFC 9112 3.2: a server MUST answer 400 to a request whose Host field has an invalid value;
/// RFC 9110 7.2: Host = uri-host [ ":" port ], port = *DIGIT (no userinfo, no sign, no
/// letters): `Host: evil.example@hooks.example.com` must not reach the `hooks.example.com`
/// route.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_host_values_are_400() {
    let cases = [
        "evil.example@hooks.example.com",
        "hooks.example.com:abc",
        "hooks.example.com:-1",
    ]
    .iter()
    .map(|host| {
        let name = format!("invalid Host `{host}`");
        (
            name.clone(),
            raw_post(b"/hooks/hosted", &format!("Host: {host}\r\n"), &name),
        )
    })
    .collect();
    assert_all_400("invalid Host", cases).await;
}

/// A `#` is not allowed in a request target (RFC 9112 3.2), but hyper's URI parser (the `http`
/// crate) drops everything from it before the router sees the path, so the router cannot refuse
/// it; what it guarantees instead (README "Routing and paths", SECURITY.md) is that the part
/// after `#` never decides the route: the path before it is checked and matched as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_fragment_never_decides_the_route() {
    let target = Target::start(crate::support::Reply::default()).await;
    let router = async_router(&target, "", path_and_host_routes());
    let cases: Vec<RawCase> = [
        (b"/hooks/stripe#frag".as_slice(), 202),
        (b"/hooks/stripe#/../hooks/hosted", 202),
        (b"/nope#/hooks/stripe", 404),
        (b"/hooks/%2e%2e/stripe#x", 400),
        (b"/hooks//stripe#/hooks/stripe", 400),
    ]
    .iter()
    .map(|(t, want)| {
        let name = format!("fragment `{}`", String::from_utf8_lossy(t));
        RawCase {
            request: raw_post(t, "Host: x\r\n", &name),
            name,
            want: *want,
        }
    })
    .collect();
    let mut out = Outcome::default();
    run_raw(&router, &cases, &mut out).await;
    report("fragment", &out);
    assert_nothing_leaked("fragment", &router, &target, &out).await;
    for seen in target.all() {
        assert_eq!(
            seen.headers.get("hookrouter-route").map(|v| v.as_bytes()),
            Some(b"stripe".as_slice()),
            "a fragment must not route to another route"
        );
    }
}
