//! Every case of `tests/vectors/signatures.json` through the router's verifier.

use std::{path::Path, time::Duration};

use hookrouter::verify::{GitlabMode, Options, Request, SchemeName, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The scheme and options a vector's provider label means.
fn scheme_for(provider: &str) -> Option<(SchemeName, Options)> {
    let plain = |s| Some((s, Options::default()));
    match provider {
        "stripe" => plain(SchemeName::Stripe),
        "svix" | "clerk/resend (svix)" => plain(SchemeName::Svix),
        "standard-webhooks" => plain(SchemeName::StandardWebhooks),
        "github" => Some((
            SchemeName::Github,
            Options {
                legacy_sha1: true,
                ..Options::default()
            },
        )),
        "slack" => plain(SchemeName::Slack),
        "shopify" => plain(SchemeName::Shopify),
        "logto" => plain(SchemeName::Logto),
        "pagerduty" => plain(SchemeName::Pagerduty),
        "typeform" => plain(SchemeName::Typeform),
        "lemonsqueezy" => plain(SchemeName::LemonSqueezy),
        "intercom" => plain(SchemeName::Intercom),
        "zoom" => plain(SchemeName::Zoom),
        "twitch" => plain(SchemeName::Twitch),
        "paddle" => plain(SchemeName::Paddle),
        "linear" => plain(SchemeName::Linear),
        "mailgun" => plain(SchemeName::Mailgun),
        "square" => plain(SchemeName::Square),
        "twilio" => plain(SchemeName::Twilio),
        "discord" => plain(SchemeName::Discord),
        "sendgrid" => plain(SchemeName::Sendgrid),
        "gitlab" => plain(SchemeName::Gitlab),
        "gitlab-signing-token" => Some((
            SchemeName::Gitlab,
            Options {
                gitlab: GitlabMode::SigningToken,
                ..Options::default()
            },
        )),
        _ => None,
    }
}

#[test]
fn every_vector_gives_its_expected_result() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(dir.join("tests/vectors/signatures.json")).expect("vectors file");
    if let Ok(shared) = std::fs::read_to_string(dir.join("../shared/vectors/signatures.json")) {
        assert_eq!(
            shared, text,
            "tests/vectors/signatures.json differs from ../shared/vectors: copy it again"
        );
    }
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("vectors JSON");
    let mut disagree = Vec::new();
    let mut not_run = std::collections::BTreeMap::<String, usize>::new();
    let mut ran = 0;
    for case in &cases {
        let s = |k: &str| case[k].as_str().unwrap_or_default().to_string();
        let provider = s("provider");
        let Some((scheme, options)) = scheme_for(&provider) else {
            *not_run.entry(provider).or_default() += 1;
            continue;
        };
        let mut secrets = vec![s("secret")];
        if let Some(more) = case["additional_secrets"].as_array() {
            secrets.extend(more.iter().filter_map(|v| v.as_str()).map(str::to_string));
        }
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let tolerance = case["tolerance_s"].as_u64().map(Duration::from_secs);
        let mut headers = HeaderMap::new();
        let mut bad_header = false;
        for (k, v) in case["headers"].as_object().into_iter().flatten() {
            let values: Vec<&str> = match v {
                serde_json::Value::Array(items) => {
                    items.iter().filter_map(|i| i.as_str()).collect()
                }
                other => other.as_str().into_iter().collect(),
            };
            for value in values {
                match (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    (Ok(n), Ok(v)) => {
                        headers.append(n, v);
                    }
                    _ => bad_header = true,
                }
            }
        }
        let id = s("id");
        let want_valid = s("expect") == "valid";
        let got = if bad_header {
            // A header that HTTP itself cannot carry never reaches a verifier.
            Err("unrepresentable header".to_string())
        } else {
            match Verifier::new(scheme, &secret_refs, tolerance, &options) {
                Err(e) => Err(format!("secret refused: {e:?}")),
                Ok(v) => {
                    let body = s("body");
                    let url = s("url");
                    let req = Request {
                        url: &url,
                        headers: &headers,
                        body: body.as_bytes(),
                    };
                    v.verify(&req, case["now"].as_i64().unwrap_or_default())
                        .map_err(|f| f.as_label().to_string())
                }
            }
        };
        ran += 1;
        if got.is_ok() != want_valid {
            disagree.push(format!(
                "{id}: expected {}, got {got:?} ({})",
                s("expect"),
                s("reason")
            ));
        }
    }
    println!("ran {ran} cases; not run (scheme not implemented yet): {not_run:?}");
    assert!(ran > 0);
    assert!(
        disagree.is_empty(),
        "{} case(s) disagree:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
