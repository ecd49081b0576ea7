//! What an event is: its type and id, read from a header or from the JSON body by pointer.
//!
//! Each scheme knows where its provider puts them ([`defaults`]); a route overrides either with
//! `event: { type: "header:NAME" | "body:/json/pointer", id: … }`. The body is parsed only when
//! a pointer needs it, once. Values are for logs and deliveries, never metric labels.

use std::{borrow::Cow, cell::OnceCell, collections::HashMap};

use http::{HeaderMap, HeaderName};
use serde_json::value::RawValue;

use crate::verify::SchemeName;

/// Longest type or id kept; longer values are cut (they only label logs and deliveries).
const MAX_VALUE: usize = 200;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header.
    Header(HeaderName),
    /// A JSON pointer into the body (RFC 6901), like `/data/object/id`.
    Body(String),
}

impl Source {
    /// Parses `header:NAME` or `body:/pointer`.
    pub fn parse(s: &str) -> Result<Source, &'static str> {
        if let Some(name) = s.strip_prefix("header:") {
            return HeaderName::from_bytes(name.trim().as_bytes())
                .map(Source::Header)
                .map_err(|_| "has an invalid header name after `header:`");
        }
        if let Some(ptr) = s.strip_prefix("body:") {
            if ptr.starts_with('/') {
                return Ok(Source::Body(ptr.to_string()));
            }
            return Err("needs a JSON pointer starting with `/` after `body:` (e.g. `body:/type`)");
        }
        Err("must be `header:NAME` or `body:/json/pointer`")
    }
}

/// Where a route finds its events' type and id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// The event type.
    pub kind: Option<Source>,
    /// The event id.
    pub id: Option<Source>,
}

/// An event's type and id, when found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The event type (e.g. `invoice.paid`).
    pub kind: Option<String>,
    /// The provider's event id.
    pub id: Option<String>,
}

fn header(name: &'static str) -> Option<Source> {
    Some(Source::Header(HeaderName::from_static(name)))
}

fn body(ptr: &str) -> Option<Source> {
    Some(Source::Body(ptr.to_string()))
}

/// Where each provider puts the event type and id.
pub fn defaults(scheme: SchemeName) -> Spec {
    let (kind, id) = match scheme {
        SchemeName::Stripe => (body("/type"), body("/id")),
        SchemeName::Svix => (body("/type"), header("svix-id")),
        SchemeName::StandardWebhooks => (body("/type"), header("webhook-id")),
        SchemeName::Github => (header("x-github-event"), header("x-github-delivery")),
        // Events API callbacks; slash commands and interactivity are forms with neither.
        SchemeName::Slack => (body("/event/type"), body("/event_id")),
        SchemeName::Shopify => (header("x-shopify-topic"), header("x-shopify-event-id")),
        SchemeName::Logto => (body("/event"), None),
        SchemeName::Pagerduty => (body("/event/event_type"), body("/event/id")),
        SchemeName::Typeform => (body("/event_type"), body("/event_id")),
        SchemeName::LemonSqueezy => (header("x-event-name"), None),
        SchemeName::Intercom => (body("/topic"), body("/id")),
        SchemeName::Zoom => (body("/event"), None),
        SchemeName::Paddle => (body("/event_type"), body("/event_id")),
        SchemeName::Linear => (header("linear-event"), header("linear-delivery")),
        SchemeName::Mailgun => (body("/event-data/event"), body("/event-data/id")),
        SchemeName::Square => (body("/type"), body("/event_id")),
        SchemeName::Twilio => (None, header("i-twilio-idempotency-token")),
        SchemeName::Discord => (body("/type"), body("/id")),
        SchemeName::Gitlab => (header("x-gitlab-event"), header("x-gitlab-event-uuid")),
        // SendGrid posts a list of events; token and generic-hmac routes say where with `event`.
        SchemeName::Sendgrid | SchemeName::Token | SchemeName::GenericHmac => (None, None),
        SchemeName::Twitch => (
            header("twitch-eventsub-subscription-type"),
            header("twitch-eventsub-message-id"),
        ),
    };
    Spec { kind, id }
}

/// A request body, parsed as JSON at most once however many values are read from it.
pub struct Body<'a> {
    raw: &'a [u8],
    top: OnceCell<Option<Top<'a>>>,
}

/// A parsed body: an object's members (the usual case, found in one pass), or any other JSON
/// value still unparsed inside.
enum Top<'a> {
    Object(HashMap<Cow<'a, str>, &'a RawValue>),
    Other(&'a RawValue),
}

impl<'a> Body<'a> {
    /// Wraps `raw`; nothing is parsed until a value is read.
    pub fn new(raw: &'a [u8]) -> Self {
        Body {
            raw,
            top: OnceCell::new(),
        }
    }

    fn top(&self) -> Option<&Top<'a>> {
        self.top
            .get_or_init(|| {
                if let Ok(members) = serde_json::from_slice(self.raw) {
                    return Some(Top::Object(members));
                }
                serde_json::from_slice(self.raw).ok().map(Top::Other)
            })
            .as_ref()
    }

    /// The value at `ptr` (RFC 6901), if the body is JSON and has it.
    fn pointer(&self, ptr: &str) -> Option<serde_json::Value> {
        let mut tokens = ptr.split('/').skip(1).map(unescape);
        let mut current: &RawValue = match (self.top()?, tokens.next()) {
            (Top::Object(members), Some(first)) => members.get(first.as_ref()).copied()?,
            (Top::Other(value), Some(first)) => step(value, &first)?,
            (Top::Other(value), None) => value,
            (Top::Object(_), None) => return serde_json::from_slice(self.raw).ok(),
        };
        for token in tokens {
            current = step(current, &token)?;
        }
        serde_json::from_str(current.get()).ok()
    }
}

/// A pointer token with `~1` and `~0` decoded.
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// One step down a JSON value: an object member or an array item.
fn step<'a>(value: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    let text = value.get();
    if text.starts_with('{') {
        let members: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_str(text).ok()?;
        members.get(token).copied()
    } else if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        items.get(token.parse::<usize>().ok()?).copied()
    } else {
        None
    }
}

/// Reads the event's type and id from a request.
pub fn extract(spec: &Spec, headers: &HeaderMap, body: &Body<'_>) -> Event {
    Event {
        kind: spec.kind.as_ref().and_then(|s| read(s, headers, body)),
        id: spec.id.as_ref().and_then(|s| read(s, headers, body)),
    }
}

/// One value from a header or the JSON body; strings, numbers and booleans as text.
pub fn read(source: &Source, headers: &HeaderMap, body: &Body<'_>) -> Option<String> {
    match source {
        Source::Header(name) => headers.get(name).and_then(|v| v.to_str().ok()).map(clip),
        Source::Body(ptr) => match body.pointer(ptr)? {
            serde_json::Value::String(s) => Some(clip(&s)),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        },
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_VALUE) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(body: &[u8], ptr: &str) -> Option<serde_json::Value> {
        Body::new(body).pointer(ptr)
    }

    fn extract(spec: &Spec, headers: &HeaderMap, body: &[u8]) -> Event {
        super::extract(spec, headers, &Body::new(body))
    }

    #[test]
    fn defaults_and_overrides() {
        let mut h = HeaderMap::new();
        h.insert("svix-id", "msg_1".parse().expect("header"));
        h.insert("x-github-event", "push".parse().expect("header"));
        let body = br#"{"id":"evt_1","type":"invoice.paid","data":{"n":7}}"#;
        assert_eq!(
            extract(&defaults(SchemeName::Stripe), &h, body),
            Event {
                kind: Some("invoice.paid".into()),
                id: Some("evt_1".into())
            }
        );
        assert_eq!(
            extract(&defaults(SchemeName::Svix), &h, body).id.as_deref(),
            Some("msg_1")
        );
        let custom = Spec {
            kind: Source::parse("header:X-GitHub-Event").ok(),
            id: Source::parse("body:/data/n").ok(),
        };
        assert_eq!(
            extract(&custom, &h, body),
            Event {
                kind: Some("push".into()),
                id: Some("7".into())
            }
        );
        // Not JSON, or no such field: nothing, and no error.
        assert_eq!(
            extract(&defaults(SchemeName::Stripe), &h, b"a=1"),
            Event::default()
        );
    }

    #[test]
    fn pointers_walk_objects_arrays_and_escapes() {
        let body = br#"{"a":{"b/c":[{"x":1},{"x":"two","y~z":true}]},"s":"caf\u00e9"}"#;
        assert_eq!(pointer(body, "/a/b~1c/1/x"), Some(serde_json::json!("two")));
        assert_eq!(
            pointer(body, "/a/b~1c/1/y~0z"),
            Some(serde_json::json!(true))
        );
        assert_eq!(pointer(body, "/a/b~1c/0/x"), Some(serde_json::json!(1)));
        assert_eq!(pointer(body, "/s"), Some(serde_json::json!("café")));
        for missing in ["/a/b~1c/2", "/a/b~1c/x", "/nope", "/s/0"] {
            assert_eq!(pointer(body, missing), None, "{missing}");
        }
        assert_eq!(pointer(b"{not json", "/a"), None);
        assert_eq!(pointer(br#"{"a":1} trailing"#, "/a"), None);
        // Top-level arrays and scalars, and the whole document.
        assert_eq!(
            pointer(br#"[{"t":"x"}]"#, "/0/t"),
            Some(serde_json::json!("x"))
        );
        assert_eq!(pointer(b"7", ""), Some(serde_json::json!(7)));
        assert_eq!(pointer(br#"{"a":1}"#, ""), Some(serde_json::json!({"a":1})));
        // One body, many reads: each finds its own value.
        let one = Body::new(body);
        assert_eq!(one.pointer("/s"), Some(serde_json::json!("café")));
        assert_eq!(one.pointer("/a/b~1c/0/x"), Some(serde_json::json!(1)));
        assert_eq!(one.pointer("/nope"), None);
    }

    #[test]
    fn sources_parse_strictly() {
        assert!(Source::parse("body:type").is_err());
        assert!(Source::parse("query:x").is_err());
        assert!(Source::parse("header:bad name").is_err());
        assert_eq!(Source::parse("body:/a/b"), Ok(Source::Body("/a/b".into())));
    }

    #[test]
    fn long_values_are_clipped() {
        let body = format!(r#"{{"type":"{}"}}"#, "é".repeat(500));
        let e = extract(
            &defaults(SchemeName::Stripe),
            &HeaderMap::new(),
            body.as_bytes(),
        );
        assert_eq!(e.kind.map(|k| k.chars().count()), Some(MAX_VALUE));
    }
}
