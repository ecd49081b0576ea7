//! The providers' official SDKs (PyPI: stripe, svix, standardwebhooks, slack-sdk; npm:
//! @octokit/webhooks-methods, svix, standardwebhooks) sign requests into the router, and verify
//! what the target received through it. `./test.sh` installs the pinned SDKs.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::support::{Reply, Router, Target, client, send};

// Shared with tests/interop/sdk.py and sdk.mjs.
const STRIPE_SECRET: &str = "whsec_interop_stripe_secret";
const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const GITHUB_SECRET: &str = "interop-github-secret";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn python() -> PathBuf {
    std::env::var_os("HOOKROUTER_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python")
        })
}

/// Runs an SDK script; `input` goes to its standard input.
fn run(program: &PathBuf, script: &str, mode: &str, input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .arg(interop_dir().join(script))
        .arg(mode)
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {script}: {e} (./test.sh installs the SDKs)",
                program.display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Sample webhooks signed by the Python and JavaScript SDKs (14 in all).
fn sdk_requests() -> Vec<serde_json::Value> {
    let (ok_py, py) = run(&python(), "sdk.py", "sign", "");
    assert!(ok_py, "python SDKs could not sign: {py}");
    let (ok_js, js) = run(&PathBuf::from("node"), "sdk.mjs", "sign", "");
    assert!(ok_js, "JavaScript SDKs could not sign: {js}");
    let mut requests: Vec<serde_json::Value> = serde_json::from_str(&py).expect("python output");
    requests.extend(serde_json::from_str::<Vec<serde_json::Value>>(&js).expect("node output"));
    assert_eq!(requests.len(), 14);
    requests
}

/// A request the target received, as the SDK scripts' `verify` reads it.
fn as_received(route: &serde_json::Value, seen: &crate::support::Seen) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = seen
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::from(v.to_str().expect("ascii header")),
            )
        })
        .collect();
    serde_json::json!({
        "route": route,
        "headers": headers,
        "body": String::from_utf8(seen.body.to_vec()).expect("utf-8 body"),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_sign_into_the_router_and_verify_what_it_forwards() {
    let target = Target::start(Reply::default()).await;
    let route = |name: &str, scheme: &str, env: &str| {
        format!(
            "  - {{ name: {name}, path: /hooks/{name}, mode: sync, verify: {{ scheme: {scheme}, secrets: [\"${{env:{env}}}\"] }}, deliver: [ {{ target: app }} ] }}\n"
        )
    };
    let yaml = format!(
        "version: 1\nlisten: [ {{ addr: \"127.0.0.1:{{port}}\" }} ]\nadmin: {{ addr: \"127.0.0.1:{{admin}}\" }}\ntargets:\n  app: {{ url: \"{}\" }}\nroutes:\n{}{}{}{}{}",
        target.url("/in"),
        route("stripe", "stripe", "S1"),
        route("svix", "svix", "S2"),
        route("standard", "standard-webhooks", "S3"),
        route("github", "github", "S4"),
        route("slack", "slack", "S5"),
    );
    let env = [
        ("S1", STRIPE_SECRET.to_string()),
        ("S2", SVIX_SECRET.to_string()),
        ("S3", STANDARD_SECRET.to_string()),
        ("S4", GITHUB_SECRET.to_string()),
        ("S5", SLACK_SECRET.to_string()),
    ];
    let router = Router::start_with_env(tempfile::tempdir().expect("tempdir"), &yaml, &env);

    let requests = sdk_requests();

    let c = client();
    for r in &requests {
        let sdk = r["sdk"].as_str().expect("sdk");
        let route = r["route"].as_str().expect("route");
        let body: &'static [u8] = Box::leak(
            r["body"]
                .as_str()
                .expect("body")
                .as_bytes()
                .to_vec()
                .into_boxed_slice(),
        );
        let headers: Vec<(String, String)> = r["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_string()))
            .collect();
        let hv: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let a = send(&c, "POST", &router.url(route), &hv, body).await;
        assert_eq!(a.status, 200, "{sdk} → {route} was refused");
        // The same request with one byte more must not pass.
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        let tampered: &'static [u8] = Box::leak(tampered.into_boxed_slice());
        assert_eq!(
            send(&c, "POST", &router.url(route), &hv, tampered)
                .await
                .status,
            401,
            "{sdk}: tampered body passed"
        );
    }
    assert_eq!(
        target.count(),
        14,
        "exactly the signed requests reached the target"
    );

    // What the target received, verified by the SDKs themselves (each language checks every
    // request its SDKs can: Svix and Standard Webhooks ones from both languages).
    let received: Vec<serde_json::Value> = target
        .seen
        .lock()
        .expect("lock")
        .iter()
        .zip(&requests)
        .map(|(seen, sent)| as_received(&sent["route"], seen))
        .collect();
    let received = serde_json::to_string(&received).expect("json");
    let (ok, out) = run(&python(), "sdk.py", "verify", &received);
    assert!(ok, "python SDKs rejected what the router forwarded: {out}");
    assert!(out.contains("verified 12 forwarded requests"), "{out}");
    let (ok, out) = run(&PathBuf::from("node"), "sdk.mjs", "verify", &received);
    assert!(
        ok,
        "JavaScript SDKs rejected what the router forwarded: {out}"
    );
    assert!(out.contains("verified 10 forwarded requests"), "{out}");
}

/// The same SDKs against async routes: what the router stores and delivers later still
/// verifies with the providers' SDKs, and the router's own `sign` signature verifies with the
/// official Standard Webhooks libraries (Python and npm).
#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_verify_async_deliveries_and_the_routers_own_signature() {
    let app = Target::start(Reply::default()).await;
    let signed = Target::start(Reply::default()).await;
    let route = |name: &str, scheme: &str, env: &str| {
        format!(
            "  - {{ name: {name}, path: /hooks/{name}, dedup_window: 0s, verify: {{ scheme: {scheme}, secrets: [\"${{env:{env}}}\"] }}, deliver: [ {{ target: app }} ] }}\n"
        )
    };
    let yaml = format!(
        "listen: [ {{ addr: \"127.0.0.1:{{port}}\" }} ]\nadmin: {{ addr: \"127.0.0.1:{{admin}}\" }}\nqueue: {{ embedded: {{ path: \"{{dir}}/data\" }} }}\ntargets:\n  app: {{ url: \"{}\" }}\n  signer: {{ url: \"{}\", sign: {{ scheme: standard-webhooks, secret: \"${{env:S3}}\" }} }}\nroutes:\n{}{}{}{}{}  - {{ name: internal, path: /internal, deliver: [ {{ target: signer }} ] }}\n",
        app.url("/in"),
        signed.url("/in"),
        route("stripe", "stripe", "S1"),
        route("svix", "svix", "S2"),
        route("standard", "standard-webhooks", "S3"),
        route("github", "github", "S4"),
        route("slack", "slack", "S5"),
    );
    let env = [
        ("S1", STRIPE_SECRET.to_string()),
        ("S2", SVIX_SECRET.to_string()),
        ("S3", STANDARD_SECRET.to_string()),
        ("S4", GITHUB_SECRET.to_string()),
        ("S5", SLACK_SECRET.to_string()),
    ];
    let router = Router::start_with_env(tempfile::tempdir().expect("tempdir"), &yaml, &env);

    let requests = sdk_requests();

    let c = client();
    for r in &requests {
        let sdk = r["sdk"].as_str().expect("sdk");
        let route = r["route"].as_str().expect("route");
        let body = r["body"].as_str().expect("body").as_bytes().to_vec();
        let headers: Vec<(String, String)> = r["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_string()))
            .collect();
        let a = crate::support::send_bytes(&c, &router.url(route), &headers, body.clone()).await;
        assert_eq!(a.status, 202, "{sdk} → {route} was not accepted");
        let mut tampered = body;
        tampered.push(b' ');
        let a = crate::support::send_bytes(&c, &router.url(route), &headers, tampered).await;
        assert_eq!(a.status, 401, "{sdk}: tampered body passed");
    }
    for body in [
        &b"{\"type\":\"internal.a\"}"[..],
        &b"{\"type\":\"internal.b\",\"n\":2.50}"[..],
    ] {
        let a = crate::support::send_bytes(&c, &router.url("/internal"), &[], body.to_vec()).await;
        assert_eq!(a.status, 202);
    }
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(10), || app.count() == 14
            && signed.count() == 2)
        .await,
        "deliveries: app {} of 14, signer {} of 2",
        app.count(),
        signed.count()
    );

    // Deliveries run concurrently: each says which route it came from.
    let as_json = |t: &Target, route: Option<&str>| -> String {
        let received: Vec<serde_json::Value> = t
            .all()
            .iter()
            .map(|seen| {
                let from = seen.headers["hookrouter-route"].to_str().expect("route");
                let route = route.map_or_else(|| format!("/hooks/{from}"), str::to_string);
                as_received(&serde_json::Value::from(route), seen)
            })
            .collect();
        serde_json::to_string(&received).expect("json")
    };
    let received = as_json(&app, None);
    let (ok, out) = run(&python(), "sdk.py", "verify", &received);
    assert!(ok, "python SDKs rejected what the router delivered: {out}");
    assert!(out.contains("verified 12 forwarded requests"), "{out}");
    let (ok, out) = run(&PathBuf::from("node"), "sdk.mjs", "verify", &received);
    assert!(
        ok,
        "JavaScript SDKs rejected what the router delivered: {out}"
    );
    assert!(out.contains("verified 10 forwarded requests"), "{out}");

    // The router's own signature, checked as a Standard Webhooks receiver would.
    let received = as_json(&signed, Some("/hooks/standard"));
    let (ok, out) = run(&python(), "sdk.py", "verify", &received);
    assert!(
        ok,
        "standardwebhooks (PyPI) rejected the router's signature: {out}"
    );
    assert!(out.contains("verified 2 forwarded requests"), "{out}");
    let (ok, out) = run(&PathBuf::from("node"), "sdk.mjs", "verify", &received);
    assert!(
        ok,
        "standardwebhooks (npm) rejected the router's signature: {out}"
    );
    assert!(out.contains("verified 2 forwarded requests"), "{out}");
}
