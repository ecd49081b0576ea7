//! Signature verification: one module per scheme behind one [`Verifier`], run on the exact
//! bytes received, before anything is forwarded or stored.
//!
//! A [`Verifier`] is built once per config generation (secrets decoded and checked then, so a
//! bad secret is a config error) and is pure afterwards: `verify(req, now)` reads no clock and
//! does no I/O. Every failure is a [`Failure`] whose label goes to the log line and metrics;
//! the sender only ever sees a generic 401.
//!
//! Rules every scheme follows: several secrets (any match passes, for rotation); constant-time
//! comparison of the computed MAC (`hmac::Mac::verify_slice`, or `subtle` for tokens); strict
//! parsing (integer timestamps, known prefixes, an empty signature never matches); raw body
//! bytes only. Tests: per-scheme unit tests, and `tests/vectors.rs` runs every case of
//! `../shared/vectors/signatures.json` through this same code.

use std::{fmt, time::Duration};

use hmac::{Hmac, Mac};
use http::HeaderMap;

mod discord;
mod generic_hmac;
mod github;
mod gitlab;
mod intercom;
mod lemonsqueezy;
mod linear;
mod logto;
mod mac;
mod mailgun;
mod paddle;
mod pagerduty;
mod sendgrid;
mod shopify;
mod sign;
mod slack;
mod square;
mod standard;
mod stripe;
#[cfg(test)]
mod testing;
mod token;
mod twilio;
mod twitch;
mod typeform;
mod zoom;

pub use generic_hmac::{GenericHmac, HmacAlgorithm, SignatureEncoding};
pub use gitlab::GitlabMode;

/// What a verifier checks: the request as received.
pub struct Request<'a> {
    /// The URL the provider called, as it signed it (only some schemes sign it).
    pub url: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The raw body, byte for byte.
    pub body: &'a [u8],
}

/// Why a request failed verification. A fixed set: these are log and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A header the scheme needs is absent.
    MissingHeader,
    /// A signature header could not be parsed (bad prefix, encoding, list syntax, duplicates).
    MalformedHeader,
    /// The timestamp is not an integer (or not in the scheme's format).
    BadTimestamp,
    /// The timestamp is older than the tolerance.
    Expired,
    /// The timestamp is further in the future than the tolerance.
    FromFuture,
    /// No signature matched any configured secret.
    SignatureMismatch,
    /// The body lacks a field the scheme signs or reads (e.g. a timestamp in the body).
    MalformedBody,
}

impl Failure {
    /// The label used in logs and metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Failure::MissingHeader => "missing_header",
            Failure::MalformedHeader => "malformed_header",
            Failure::BadTimestamp => "bad_timestamp",
            Failure::Expired => "expired",
            Failure::FromFuture => "from_future",
            Failure::SignatureMismatch => "signature_mismatch",
            Failure::MalformedBody => "malformed_body",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

/// The schemes, by their `verify.scheme` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeName {
    /// Stripe.
    Stripe,
    /// Svix (Clerk, Resend, …): `svix-*` headers, `webhook-*` accepted.
    Svix,
    /// Standard Webhooks: `webhook-*` headers.
    StandardWebhooks,
    /// GitHub.
    Github,
    /// Slack.
    Slack,
    /// Shopify: `X-Shopify-Hmac-Sha256`, or `shopify-hmac-sha256` (Events webhooks).
    Shopify,
    /// Logto.
    Logto,
    /// PagerDuty (v3 webhooks).
    Pagerduty,
    /// Typeform.
    Typeform,
    /// Lemon Squeezy.
    LemonSqueezy,
    /// Intercom.
    Intercom,
    /// Zoom.
    Zoom,
    /// Twitch EventSub.
    Twitch,
    /// Paddle Billing.
    Paddle,
    /// Linear (timestamp inside the signed body).
    Linear,
    /// Mailgun (signature object inside the body; the event data is not signed).
    Mailgun,
    /// Square (signs the notification URL, `Request::url`).
    Square,
    /// Twilio (signs the URL, `Request::url`, and the form parameters or the body hash).
    Twilio,
    /// Discord interactions: Ed25519, the secret is the application's hex public key.
    Discord,
    /// SendGrid Event Webhook: ECDSA P-256, the secret is the base64 DER verification key.
    Sendgrid,
    /// GitLab: `X-Gitlab-Token`, or the signing token ([`Options::gitlab`]).
    Gitlab,
    /// A shared token in a configured header ([`Options::header`]).
    Token,
    /// HMAC over a configured template ([`Options::header`], [`Options::generic`]).
    GenericHmac,
}

impl SchemeName {
    /// Every scheme, for messages.
    pub const ALL: &'static [(&'static str, SchemeName)] = &[
        ("stripe", SchemeName::Stripe),
        ("svix", SchemeName::Svix),
        ("standard-webhooks", SchemeName::StandardWebhooks),
        ("github", SchemeName::Github),
        ("slack", SchemeName::Slack),
        ("shopify", SchemeName::Shopify),
        ("logto", SchemeName::Logto),
        ("pagerduty", SchemeName::Pagerduty),
        ("typeform", SchemeName::Typeform),
        ("lemonsqueezy", SchemeName::LemonSqueezy),
        ("intercom", SchemeName::Intercom),
        ("zoom", SchemeName::Zoom),
        ("twitch", SchemeName::Twitch),
        ("paddle", SchemeName::Paddle),
        ("linear", SchemeName::Linear),
        ("mailgun", SchemeName::Mailgun),
        ("square", SchemeName::Square),
        ("twilio", SchemeName::Twilio),
        ("discord", SchemeName::Discord),
        ("sendgrid", SchemeName::Sendgrid),
        ("gitlab", SchemeName::Gitlab),
        ("token", SchemeName::Token),
        ("generic-hmac", SchemeName::GenericHmac),
    ];

    /// Looks a scheme up by its config name.
    pub fn from_name(name: &str) -> Option<SchemeName> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }

    /// The provider's own default tolerance, or `None` when it signs no timestamp (or, like
    /// Discord and SendGrid, signs one but its libraries check no window). For `gitlab` and
    /// `generic-hmac` it depends on the options: see [`SchemeName::default_tolerance_for`].
    pub fn default_tolerance(self) -> Option<Duration> {
        match self {
            SchemeName::Stripe => Some(stripe::TOLERANCE),
            SchemeName::Svix | SchemeName::StandardWebhooks => Some(standard::TOLERANCE),
            SchemeName::Github => None,
            SchemeName::Slack => Some(slack::TOLERANCE),
            SchemeName::Shopify => None,
            SchemeName::Logto => None,
            SchemeName::Pagerduty => None,
            SchemeName::Typeform => None,
            SchemeName::LemonSqueezy => None,
            SchemeName::Intercom => None,
            // Signs a timestamp but publishes no window (see zoom.rs): only a route's own applies.
            SchemeName::Zoom => None,
            SchemeName::Twitch => Some(twitch::TOLERANCE),
            SchemeName::Paddle => Some(paddle::TOLERANCE),
            SchemeName::Linear => Some(linear::TOLERANCE),
            SchemeName::Mailgun => Some(mailgun::TOLERANCE),
            SchemeName::Square | SchemeName::Twilio => None,
            SchemeName::Discord
            | SchemeName::Sendgrid
            | SchemeName::Gitlab
            | SchemeName::Token
            | SchemeName::GenericHmac => None,
        }
    }

    /// The default tolerance for a route with these options: the GitLab signing token is
    /// Standard Webhooks (5 minutes), and `generic-hmac` with a `timestamp_header` gets 5 minutes.
    pub fn default_tolerance_for(self, options: &Options) -> Option<Duration> {
        match self {
            SchemeName::Gitlab => gitlab::default_tolerance(options.gitlab),
            SchemeName::GenericHmac => options.generic.as_ref().and_then(GenericHmac::tolerance),
            _ => self.default_tolerance(),
        }
    }
}

/// Scheme options beyond the secrets, from the route's `verify` block. An option set for a
/// scheme that does not read it is refused by [`Verifier::new`] rather than ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// GitHub: also accept the legacy `X-Hub-Signature: sha1=` when no sha256 header is sent.
    pub legacy_sha1: bool,
    /// GitLab: the plain `X-Gitlab-Token` (default) or the Standard Webhooks signing token.
    pub gitlab: GitlabMode,
    /// `token` and `generic-hmac` (required there): the header carrying the token or signature.
    pub header: Option<String>,
    /// `generic-hmac` (required there): algorithm, encoding, prefix and signed-content template.
    pub generic: Option<GenericHmac>,
}

/// Refuses options the scheme does not read (a typo'd scheme must not silently drop a check).
fn unused_options(scheme: SchemeName, options: &Options) -> Vec<BadOption> {
    let set: [(&'static str, bool, &[SchemeName]); 4] = [
        ("legacy_sha1", options.legacy_sha1, &[SchemeName::Github]),
        (
            "gitlab",
            options.gitlab != GitlabMode::default(),
            &[SchemeName::Gitlab],
        ),
        (
            "header",
            options.header.is_some(),
            &[SchemeName::Token, SchemeName::GenericHmac],
        ),
        (
            "generic",
            options.generic.is_some(),
            &[SchemeName::GenericHmac],
        ),
    ];
    set.into_iter()
        .filter(|(_, is_set, readers)| *is_set && !readers.contains(&scheme))
        .map(|(option, _, _)| BadOption {
            option,
            message: format!("is not read by the `{}` scheme: remove it", scheme.name()),
        })
        .collect()
}

/// A verifier for one route: its scheme, decoded keys and tolerance.
pub struct Verifier {
    scheme: Scheme,
    tolerance: Option<Duration>,
}

enum Scheme {
    Stripe(stripe::Keys),
    Standard(standard::Keys, standard::Headers),
    Github(github::Keys),
    Slack(slack::Keys),
    Shopify(shopify::Keys),
    Logto(logto::Keys),
    Pagerduty(pagerduty::Keys),
    Typeform(typeform::Keys),
    LemonSqueezy(lemonsqueezy::Keys),
    Intercom(intercom::Keys),
    Zoom(zoom::Keys),
    Twitch(twitch::Keys),
    Paddle(paddle::Keys),
    Linear(linear::Keys),
    Mailgun(mailgun::Keys),
    Square(square::Keys),
    Twilio(twilio::Keys),
    Discord(discord::Keys),
    Sendgrid(sendgrid::Keys),
    Gitlab(gitlab::Keys),
    Token(token::Keys),
    GenericHmac(generic_hmac::Keys),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are secrets: show only the scheme.
        let name = match &self.scheme {
            Scheme::Stripe(_) => "stripe",
            Scheme::Standard(..) => "standard-webhooks",
            Scheme::Github(_) => "github",
            Scheme::Slack(_) => "slack",
            Scheme::Shopify(_) => "shopify",
            Scheme::Logto(_) => "logto",
            Scheme::Pagerduty(_) => "pagerduty",
            Scheme::Typeform(_) => "typeform",
            Scheme::LemonSqueezy(_) => "lemonsqueezy",
            Scheme::Intercom(_) => "intercom",
            Scheme::Zoom(_) => "zoom",
            Scheme::Twitch(_) => "twitch",
            Scheme::Paddle(_) => "paddle",
            Scheme::Linear(_) => "linear",
            Scheme::Mailgun(_) => "mailgun",
            Scheme::Square(_) => "square",
            Scheme::Twilio(_) => "twilio",
            Scheme::Discord(_) => "discord",
            Scheme::Sendgrid(_) => "sendgrid",
            Scheme::Gitlab(_) => "gitlab",
            Scheme::Token(_) => "token",
            Scheme::GenericHmac(_) => "generic-hmac",
        };
        f.debug_struct("Verifier")
            .field("scheme", &name)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// A secret that cannot be used for the scheme; the message names the secret by position only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSecret {
    /// Index in `secrets`.
    pub index: usize,
    /// What is wrong and what to change (never the secret itself).
    pub message: String,
}

/// An option that is missing, invalid or not read by the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOption {
    /// The option's name: an [`Options`] field, or a [`GenericHmac`] field for `generic-hmac`.
    pub option: &'static str,
    /// What is wrong and what to change.
    pub message: String,
}

/// Why [`Verifier::new`] refused a route's `verify` settings: every problem found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadConfig {
    /// Secrets that cannot be used, by position.
    pub secrets: Vec<BadSecret>,
    /// Options that are missing, invalid, or not read by the scheme.
    pub options: Vec<BadOption>,
}

impl From<Vec<BadSecret>> for BadConfig {
    fn from(secrets: Vec<BadSecret>) -> BadConfig {
        BadConfig {
            secrets,
            options: Vec::new(),
        }
    }
}

impl Verifier {
    /// Builds a verifier; `tolerance` `None` means the scheme's default.
    pub fn new(
        scheme: SchemeName,
        secrets: &[&str],
        tolerance: Option<Duration>,
        options: &Options,
    ) -> Result<Verifier, BadConfig> {
        let mut bad = Vec::new();
        for (index, s) in secrets.iter().enumerate() {
            if s.is_empty() {
                bad.push(BadSecret {
                    index,
                    message: "is empty".to_string(),
                });
            }
        }
        if secrets.is_empty() {
            bad.push(BadSecret {
                index: 0,
                message: "no secrets: give at least one".to_string(),
            });
        }
        let unused = unused_options(scheme, options);
        if !bad.is_empty() || !unused.is_empty() {
            return Err(BadConfig {
                secrets: bad,
                options: unused,
            });
        }
        let default_tolerance = scheme.default_tolerance_for(options);
        let scheme = match scheme {
            SchemeName::Stripe => Scheme::Stripe(stripe::Keys::new(secrets)),
            SchemeName::Svix => {
                Scheme::Standard(standard::Keys::new(secrets)?, standard::Headers::Svix)
            }
            SchemeName::StandardWebhooks => {
                Scheme::Standard(standard::Keys::new(secrets)?, standard::Headers::Webhook)
            }
            SchemeName::Github => Scheme::Github(github::Keys::new(secrets, options.legacy_sha1)),
            SchemeName::Slack => Scheme::Slack(slack::Keys::new(secrets)),
            SchemeName::Shopify => Scheme::Shopify(shopify::Keys::new(secrets)),
            SchemeName::Logto => Scheme::Logto(logto::Keys::new(secrets)),
            SchemeName::Pagerduty => Scheme::Pagerduty(pagerduty::Keys::new(secrets)),
            SchemeName::Typeform => Scheme::Typeform(typeform::Keys::new(secrets)),
            SchemeName::LemonSqueezy => Scheme::LemonSqueezy(lemonsqueezy::Keys::new(secrets)),
            SchemeName::Intercom => Scheme::Intercom(intercom::Keys::new(secrets)),
            SchemeName::Zoom => Scheme::Zoom(zoom::Keys::new(secrets)),
            SchemeName::Twitch => Scheme::Twitch(twitch::Keys::new(secrets)),
            SchemeName::Paddle => Scheme::Paddle(paddle::Keys::new(secrets)),
            SchemeName::Linear => Scheme::Linear(linear::Keys::new(secrets)),
            SchemeName::Mailgun => Scheme::Mailgun(mailgun::Keys::new(secrets)),
            SchemeName::Square => Scheme::Square(square::Keys::new(secrets)),
            SchemeName::Twilio => Scheme::Twilio(twilio::Keys::new(secrets)),
            SchemeName::Discord => Scheme::Discord(discord::Keys::new(secrets)?),
            SchemeName::Sendgrid => Scheme::Sendgrid(sendgrid::Keys::new(secrets)?),
            SchemeName::Gitlab => Scheme::Gitlab(gitlab::Keys::new(secrets, options.gitlab)?),
            SchemeName::Token => Scheme::Token(token::Keys::new(secrets, options)?),
            SchemeName::GenericHmac => {
                Scheme::GenericHmac(generic_hmac::Keys::new(secrets, options)?)
            }
        };
        Ok(Verifier {
            scheme,
            tolerance: tolerance.or(default_tolerance),
        })
    }

    /// Checks `req` at time `now` (unix seconds).
    pub fn verify(&self, req: &Request<'_>, now: i64) -> Result<(), Failure> {
        match &self.scheme {
            Scheme::Stripe(k) => stripe::verify(k, req, now, self.tolerance),
            Scheme::Standard(k, h) => standard::verify(k, *h, req, now, self.tolerance),
            Scheme::Github(k) => github::verify(k, req),
            Scheme::Slack(k) => slack::verify(k, req, now, self.tolerance),
            Scheme::Shopify(k) => shopify::verify(k, req),
            Scheme::Logto(k) => logto::verify(k, req),
            Scheme::Pagerduty(k) => pagerduty::verify(k, req),
            Scheme::Typeform(k) => typeform::verify(k, req),
            Scheme::LemonSqueezy(k) => lemonsqueezy::verify(k, req),
            Scheme::Intercom(k) => intercom::verify(k, req),
            Scheme::Zoom(k) => zoom::verify(k, req, now, self.tolerance),
            Scheme::Twitch(k) => twitch::verify(k, req, now, self.tolerance),
            Scheme::Paddle(k) => paddle::verify(k, req, now, self.tolerance),
            Scheme::Linear(k) => linear::verify(k, req, now, self.tolerance),
            Scheme::Mailgun(k) => mailgun::verify(k, req, now, self.tolerance),
            Scheme::Square(k) => square::verify(k, req),
            Scheme::Twilio(k) => twilio::verify(k, req),
            Scheme::Discord(k) => discord::verify(k, req, now, self.tolerance),
            Scheme::Sendgrid(k) => sendgrid::verify(k, req, now, self.tolerance),
            Scheme::Gitlab(k) => gitlab::verify(k, req, now, self.tolerance),
            Scheme::Token(k) => token::verify(k, req),
            Scheme::GenericHmac(k) => generic_hmac::verify(k, req, now, self.tolerance),
        }
    }
}

/// The headers `scheme`'s provider would send with `body` at time `now` to `url`, signed
/// with `secret`; `id` is used where the scheme signs a message id. For `hookrouter send`.
pub fn sign(
    scheme: SchemeName,
    secret: &str,
    body: &[u8],
    now: i64,
    id: &str,
    url: &str,
    options: &Options,
) -> Result<Vec<(String, String)>, String> {
    match scheme {
        SchemeName::Stripe => Ok(stripe::sign(secret, body, now)),
        SchemeName::Svix => standard::sign(standard::Headers::Svix, secret, id, body, now),
        SchemeName::StandardWebhooks => {
            standard::sign(standard::Headers::Webhook, secret, id, body, now)
        }
        SchemeName::Github => Ok(github::sign(secret, body)),
        SchemeName::Slack => Ok(sign::slack(secret, body, now)),
        SchemeName::Shopify => Ok(sign::shopify(secret, body)),
        SchemeName::Logto => Ok(sign::logto(secret, body)),
        SchemeName::Pagerduty => Ok(sign::pagerduty(secret, body)),
        SchemeName::Typeform => Ok(sign::typeform(secret, body)),
        SchemeName::LemonSqueezy => Ok(sign::lemonsqueezy(secret, body)),
        SchemeName::Intercom => Ok(sign::intercom(secret, body)),
        SchemeName::Zoom => Ok(sign::zoom(secret, body, now)),
        SchemeName::Paddle => Ok(sign::paddle(secret, body, now)),
        SchemeName::Linear => Ok(sign::linear(secret, body)),
        SchemeName::Square => Ok(sign::square(secret, url, body)),
        SchemeName::Gitlab => match options.gitlab {
            GitlabMode::Token => Ok(vec![("X-Gitlab-Token".into(), secret.to_string())]),
            GitlabMode::SigningToken => {
                standard::sign(standard::Headers::Webhook, secret, id, body, now)
            }
        },
        SchemeName::Token => match &options.header {
            Some(h) => Ok(vec![(h.clone(), secret.to_string())]),
            None => Err("the token scheme needs its header".to_string()),
        },
        SchemeName::Discord | SchemeName::Sendgrid => Err(format!(
            "{} signs with the provider's private key, which only the provider has: `send` cannot sign for it",
            scheme.name()
        )),
        SchemeName::Twitch | SchemeName::Mailgun | SchemeName::Twilio | SchemeName::GenericHmac => {
            Err(format!(
                "`send` cannot sign for {} yet: use the provider's own test tool",
                scheme.name()
            ))
        }
    }
}

// === helpers shared by the schemes ===

type HmacSha256 = Hmac<sha2::Sha256>;

/// HMAC-SHA256 of the concatenated `parts` with `key`, ready to compare.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of every length (long ones are hashed), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// Parses every secret with `parse`; each failure names its secret by position only.
fn parse_secrets<K>(
    secrets: &[&str],
    parse: impl Fn(&str) -> Result<K, &'static str>,
) -> Result<Vec<K>, Vec<BadSecret>> {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (index, s) in secrets.iter().enumerate() {
        match parse(s) {
            Ok(k) => keys.push(k),
            Err(message) => bad.push(BadSecret {
                index,
                message: message.to_string(),
            }),
        }
    }
    if bad.is_empty() { Ok(keys) } else { Err(bad) }
}

/// The single value of header `name`; several values are malformed (a sender has one).
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Failure> {
    let mut all = headers.get_all(name).iter();
    let first = all.next().ok_or(Failure::MissingHeader)?;
    if all.next().is_some() {
        return Err(Failure::MalformedHeader);
    }
    first.to_str().map_err(|_| Failure::MalformedHeader)
}

/// A strict unix-seconds timestamp: ASCII digits only, optional leading `-` refused.
fn parse_timestamp(s: &str) -> Result<i64, Failure> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::BadTimestamp);
    }
    s.parse::<i64>().map_err(|_| Failure::BadTimestamp)
}

/// Which sides of the window a scheme enforces.
#[derive(Clone, Copy)]
enum Window {
    /// Too old and too new are both refused.
    Both,
    /// Only too old is refused (the provider's own libraries accept future timestamps).
    PastOnly,
}

fn check_window(
    ts: i64,
    now: i64,
    tolerance: Option<Duration>,
    window: Window,
) -> Result<(), Failure> {
    let Some(tol) = tolerance else { return Ok(()) };
    let tol = i64::try_from(tol.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(ts) > tol {
        return Err(Failure::Expired);
    }
    if matches!(window, Window::Both) && ts.saturating_sub(now) > tol {
        return Err(Failure::FromFuture);
    }
    Ok(())
}

/// A header name given as an option; its value is configuration, not a secret, so the
/// message shows it.
fn header_option(option: &'static str, value: &str) -> Result<http::HeaderName, BadOption> {
    http::HeaderName::from_bytes(value.as_bytes()).map_err(|_| BadOption {
        option,
        message: format!("`{value}` is not an HTTP header name"),
    })
}
