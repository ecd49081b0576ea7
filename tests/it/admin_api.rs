//! The admin API and the `dlq` / `events` commands against a real router: the token rules,
//! listings and details of stored events, dead letters, and replays that deliver once the
//! target is fixed.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;

use crate::{
    support::{Answer, Reply, Router, Target, client, eventually, free_port, send, send_bytes},
    sync_config,
};

const TOKEN: &str = "admin-token-for-tests";
const WAIT: Duration = Duration::from_secs(10);

/// An async route `/hooks/test` (event type and id from the body) delivering to `target_url`
/// with fast retries; the admin block is `admin` (with `{admin}` for the port).
fn async_config(target_url: &str, admin: &str) -> String {
    format!(
        r#"version: 1
listen:
  - addr: "127.0.0.1:{{port}}"
{admin}
queue: {{ embedded: {{ path: "{{dir}}/queue" }} }}
targets:
  t: {{ url: "{target_url}", timeout: 2s, retry: {{ max_attempts: 2, initial: 50ms, max_delay: 100ms }} }}
routes:
  - name: hooks
    path: /hooks/test
    mode: async
    event: {{ type: "body:/type", id: "body:/id" }}
    deliver: [ {{ target: t }} ]
"#
    )
}

fn with_token(target_url: &str) -> String {
    async_config(
        target_url,
        &format!(r#"admin: {{ addr: "127.0.0.1:{{admin}}", token: "{TOKEN}" }}"#),
    )
}

fn admin_url(r: &Router, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", r.admin_port)
}

async fn api(r: &Router, method: &str, path: &str, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    send(&client(), method, &admin_url(r, path), &headers, b"").await
}

fn json(a: &Answer) -> Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&a.body)))
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers.get(name).map_or("", |v| v.to_str().unwrap_or(""))
}

/// Posts one event with its own provider id (so dedup keeps them apart); the router's id.
async fn post_event(r: &Router, n: u32) -> String {
    let body = format!(r#"{{"id":"evt_{n}","type":"invoice.paid","amount":{n}}}"#).into_bytes();
    let a = send_bytes(
        &client(),
        &r.url("/hooks/test"),
        &[("content-type".into(), "application/json".into())],
        body,
    )
    .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    header(&a, "hookrouter-event-id").to_string()
}

/// Runs the CLI (blocking, off the runtime's threads) with `HOOKROUTER_ADMIN_TOKEN` unset.
async fn cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hookrouter"))
            .args(&args)
            .env_remove("HOOKROUTER_ADMIN_TOKEN")
            .output()
            .expect("run hookrouter")
    })
    .await
    .expect("cli task")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config_arg(r: &Router) -> String {
    path_str(&r.config)
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The state of the event's delivery to `t`, as the API shows it.
async fn state_of(r: &Router, id: &str) -> (String, u64) {
    let e = json(&api(r, "GET", &format!("/api/v1/events/{id}"), Some(TOKEN)).await);
    let d = &e["deliveries"][0];
    (
        d["state"].as_str().unwrap_or("").to_string(),
        d["attempts"].as_u64().unwrap_or(0),
    )
}

/// Polls the API until the event's delivery is in `state`.
async fn wait_state(r: &Router, id: &str, state: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (s, _) = state_of(r, id).await;
        if s == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "event {id} stayed `{s}`, expected `{state}`; log:\n{}",
            r.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_needs_the_bearer_token() {
    let target = Target::start(Reply::default()).await;
    let r = Router::start(&with_token(&target.url("/in")));

    for (what, auth) in [
        ("no header", None),
        ("wrong token", Some("Bearer not-the-token")),
        ("token prefix", Some("Bearer admin-token")),
        ("token plus more", Some("Bearer admin-token-for-tests2")),
        ("other scheme", Some("Basic YWRtaW46YWRtaW4=")),
        ("no scheme", Some(TOKEN)),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let a = send(
            &client(),
            "GET",
            &admin_url(&r, "/api/v1/events"),
            &headers,
            b"",
        )
        .await;
        assert_eq!(a.status, 401, "{what}");
        assert_eq!(header(&a, "www-authenticate"), "Bearer", "{what}");
        assert_eq!(header(&a, "content-type"), "application/json", "{what}");
        assert!(json(&a)["error"].is_string(), "{what}");
        assert!(!String::from_utf8_lossy(&a.body).contains(TOKEN), "{what}");
    }
    // Unknown endpoints and replays are refused before anything else.
    assert_eq!(api(&r, "GET", "/api/v1/nope", None).await.status, 401);
    assert_eq!(
        api(&r, "POST", "/api/v1/dlq/replay?all=true", None)
            .await
            .status,
        401
    );
    assert_eq!(
        api(&r, "POST", "/api/v1/dlq/replay?all=true", Some("x"))
            .await
            .status,
        401
    );

    let ok = api(&r, "GET", "/api/v1/events", Some(TOKEN)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(header(&ok, "cache-control"), "no-store");
    assert_eq!(header(&ok, "content-type"), "application/json");
    assert_eq!(json(&ok), serde_json::json!({ "events": [] }));
    // The scheme is case-insensitive.
    let lower = send(
        &client(),
        "GET",
        &admin_url(&r, "/api/v1/queue"),
        &[("authorization", &format!("bearer {TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(lower.status, 200);

    // Probes stay open.
    assert_eq!(api(&r, "GET", "/healthz", None).await.status, 200);
    assert_eq!(api(&r, "GET", "/readyz", None).await.status, 200);

    // With the token: unknown paths 404, wrong methods 405, both as JSON.
    let a = api(&r, "GET", "/api/v1/nope", Some(TOKEN)).await;
    assert_eq!(a.status, 404);
    assert!(json(&a)["error"].is_string());
    let a = api(&r, "DELETE", "/api/v1/events", Some(TOKEN)).await;
    assert_eq!(a.status, 405);
    assert_eq!(header(&a, "allow"), "GET, HEAD");
    let a = api(&r, "GET", "/api/v1/dlq/replay", Some(TOKEN)).await;
    assert_eq!(a.status, 405);
    assert_eq!(header(&a, "allow"), "POST");
    assert!(json(&a)["error"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_token_applies_to_the_next_request() {
    let target = Target::start(Reply::default()).await;
    let r = Router::start(&with_token(&target.url("/in")));
    assert_eq!(
        api(&r, "GET", "/api/v1/queue", Some(TOKEN)).await.status,
        200
    );
    r.write_config(&with_token(&target.url("/in")).replace(TOKEN, "rotated-admin-token"));
    r.signal("HUP");
    let mut switched = false;
    for _ in 0..250 {
        if api(&r, "GET", "/api/v1/queue", Some("rotated-admin-token"))
            .await
            .status
            == 200
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(switched, "new token never accepted; log:\n{}", r.logs());
    assert_eq!(
        api(&r, "GET", "/api/v1/queue", Some(TOKEN)).await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_api_is_off() {
    let target = Target::start(Reply::default()).await;
    let r = Router::start(&async_config(
        &target.url("/in"),
        r#"admin: { addr: "127.0.0.1:{admin}" }"#,
    ));
    for auth in [None, Some(""), Some("anything")] {
        let a = api(&r, "GET", "/api/v1/events", auth).await;
        assert_eq!(a.status, 403);
        let e = json(&a);
        assert!(
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("admin.token")),
            "{e}"
        );
    }
    assert_eq!(
        api(&r, "POST", "/api/v1/dlq/replay?all=true", Some("x"))
            .await
            .status,
        403
    );
    assert_eq!(api(&r, "GET", "/readyz", None).await.status, 200);

    // The CLI says the same, as a configuration problem.
    let o = cli(&["dlq", "list", "-c", &config_arg(&r)]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("admin.token"), "{}", stderr(&o));
    let o = cli(&[
        "dlq",
        "list",
        "--admin",
        &admin_url(&r, ""),
        "--token",
        "anything",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("admin.token"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_only_router_has_no_queue() {
    let target = Target::start(Reply::default()).await;
    let yaml = sync_config(&target.url("/in"), "").replace(
        r#"admin: { addr: "127.0.0.1:{admin}" }"#,
        &format!(r#"admin: {{ addr: "127.0.0.1:{{admin}}", token: "{TOKEN}" }}"#),
    );
    let r = Router::start(&yaml);
    for (method, path) in [
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/events/0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f"),
        (
            "POST",
            "/api/v1/events/0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f/replay",
        ),
        ("GET", "/api/v1/dlq"),
        ("POST", "/api/v1/dlq/replay?all=true"),
        ("GET", "/api/v1/queue"),
    ] {
        let a = api(&r, method, path, Some(TOKEN)).await;
        assert_eq!(a.status, 409, "{method} {path}");
        assert_eq!(
            json(&a),
            serde_json::json!({ "error": "no async routes: the queue is not open" })
        );
    }
    let o = cli(&["events", "list", "-c", &config_arg(&r)]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the queue is not open"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_dead_letters_and_replay() {
    // The target refuses with 400: each delivery dead-letters on its first attempt.
    let target = Target::start(Reply {
        status: 400,
        body: "no",
        ..Reply::default()
    })
    .await;
    let r = Router::start(&with_token(&target.url("/in")));
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(post_event(&r, n).await);
    }
    for id in &ids {
        wait_state(&r, id, "dead").await;
    }
    assert_eq!(target.count(), 3, "one attempt each, no retry after a 400");

    // Listing: newest first, with the delivery's state; no bodies or headers.
    let a = api(&r, "GET", "/api/v1/events", Some(TOKEN)).await;
    assert_eq!(a.status, 200);
    let list = json(&a);
    let events = list["events"].as_array().expect("events");
    let listed: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    let first = &events[0];
    assert_eq!(first["route"], "hooks");
    assert_eq!(first["type"], "invoice.paid");
    assert_eq!(first["provider_id"], "evt_3");
    assert_eq!(first["deliveries"][0]["target"], "t");
    assert_eq!(first["deliveries"][0]["state"], "dead");
    assert_eq!(first["deliveries"][0]["attempts"], 1);
    assert_eq!(first["deliveries"][0]["last_status"], 400);
    assert!(first.get("body").is_none() && first.get("headers").is_none());
    assert!(
        !String::from_utf8_lossy(&a.body).contains("amount"),
        "no body content"
    );

    // Paging and filters.
    let page = json(&api(&r, "GET", "/api/v1/events?limit=2", Some(TOKEN)).await);
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2));
    let next = page["next_before"]
        .as_str()
        .expect("next_before on a full page");
    assert_eq!(next, ids[1]);
    let rest = json(
        &api(
            &r,
            "GET",
            &format!("/api/v1/events?limit=2&before={next}"),
            Some(TOKEN),
        )
        .await,
    );
    assert_eq!(rest["events"][0]["id"].as_str(), Some(ids[0].as_str()));
    assert!(rest.get("next_before").is_none());
    let none = json(&api(&r, "GET", "/api/v1/events?route=other", Some(TOKEN)).await);
    assert_eq!(none, serde_json::json!({ "events": [] }));
    for bad in ["limit=0", "limit=1001", "limit=ten", "rout=hooks", "route="] {
        let a = api(&r, "GET", &format!("/api/v1/events?{bad}"), Some(TOKEN)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert!(json(&a)["error"].is_string());
    }

    // One event, with its attempts.
    let e = json(
        &api(
            &r,
            "GET",
            &format!("/api/v1/events/{}", ids[0]),
            Some(TOKEN),
        )
        .await,
    );
    let attempts = e["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{e}");
    assert_eq!(attempts[0]["target"], "t");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status"], 400);
    let unknown = api(
        &r,
        "GET",
        "/api/v1/events/0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f",
        Some(TOKEN),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        json(&unknown)["error"]
            .as_str()
            .is_some_and(|m| m.contains("no event"))
    );

    // Dead letters and queue counts.
    let dlq = json(&api(&r, "GET", "/api/v1/dlq", Some(TOKEN)).await);
    assert_eq!(
        dlq["dead_letters"].as_array().map(Vec::len),
        Some(3),
        "{dlq}"
    );
    let one = json(
        &api(
            &r,
            "GET",
            "/api/v1/dlq?limit=1&target=t&route=hooks",
            Some(TOKEN),
        )
        .await,
    );
    assert_eq!(one["dead_letters"][0]["id"].as_str(), Some(ids[2].as_str()));
    let stats = json(&api(&r, "GET", "/api/v1/queue", Some(TOKEN)).await);
    assert_eq!(stats["events"], 3, "{stats}");
    assert_eq!(stats["dead"], 3, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");
    assert_eq!(stats["degraded"], false, "{stats}");

    // A replay must say what it replays.
    let a = api(&r, "POST", "/api/v1/dlq/replay", Some(TOKEN)).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        api(&r, "POST", "/api/v1/dlq/replay?all=false", Some(TOKEN))
            .await
            .status,
        400
    );
    assert_eq!(
        api(&r, "POST", "/api/v1/dlq/replay?all=yes", Some(TOKEN))
            .await
            .status,
        400
    );
    let a = api(
        &r,
        "POST",
        "/api/v1/dlq/replay?all=true&target=",
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        a.status, 400,
        "an empty filter must not widen a replay to everything"
    );
    let a = api(
        &r,
        "POST",
        "/api/v1/dlq/replay?event=0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f",
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = api(
        &r,
        "POST",
        "/api/v1/events/0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f/replay",
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = api(
        &r,
        "POST",
        &format!("/api/v1/events/{}/replay?target=other", ids[0]),
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 404);
    // A filter that matches nothing replays nothing.
    let a = api(
        &r,
        "POST",
        "/api/v1/dlq/replay?all=true&route=other",
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(json(&a), serde_json::json!({ "replayed": 0 }));
    assert_eq!(target.count(), 3, "nothing was sent again");

    // The CLI's tables.
    let cfg = config_arg(&r);
    let o = cli(&["events", "list", "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    for h in [
        "RECEIVED", "ROUTE", "TYPE", "TARGET", "STATE", "ATTEMPTS", "LAST",
    ] {
        assert!(lines[0].contains(h), "{out}");
    }
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].starts_with(&ids[2]), "{out}");
    for word in ["hooks", "invoice.paid", "dead", "400"] {
        assert!(lines[1].contains(word), "{word}: {out}");
    }
    let o = cli(&["dlq", "list", "-c", &cfg, "--limit", "1", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("--json prints JSON");
    assert_eq!(v["dead_letters"][0]["id"].as_str(), Some(ids[2].as_str()));
    let o = cli(&["events", "show", &ids[0], "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("event        {}", ids[0])), "{out}");
    assert!(out.contains("provider id  evt_1"), "{out}");
    assert!(out.contains("TIME (UTC)"), "{out}");

    // The target recovers; replay the oldest dead letter from the CLI: delivered once.
    target.set_reply(Reply::default());
    let o = cli(&["dlq", "replay", &ids[0], "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed 1 delivery"), "{}", stdout(&o));
    wait_state(&r, &ids[0], "delivered").await;
    assert!(eventually(WAIT, || target.count() == 4).await);
    let last = target.last();
    assert_eq!(
        &last.body[..],
        br#"{"id":"evt_1","type":"invoice.paid","amount":1}"#
    );
    assert_eq!(
        last.headers
            .get("hookrouter-event-id")
            .and_then(|v| v.to_str().ok()),
        Some(ids[0].as_str())
    );
    assert_eq!(
        last.headers
            .get("hookrouter-attempt")
            .and_then(|v| v.to_str().ok()),
        Some("2"),
        "attempts count over rounds"
    );

    // `events show` lists both attempts with their statuses.
    let o = cli(&["events", "show", &ids[0], "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("TIME (UTC)"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // TIME is two words (date, time): target, attempt and status follow.
    assert_eq!(&cols(rows[0])[2..5], ["t", "1", "400"], "{out}");
    assert_eq!(&cols(rows[1])[2..5], ["t", "2", "200"], "{out}");
    assert!(out.contains("delivered"), "{out}");
    let e = json(
        &api(
            &r,
            "GET",
            &format!("/api/v1/events/{}", ids[0]),
            Some(TOKEN),
        )
        .await,
    );
    let statuses: Vec<u64> = e["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["status"].as_u64())
        .collect();
    assert_eq!(statuses, [400, 200]);

    // Replaying it again as a dead letter matches nothing: it is delivered.
    let o = cli(&["dlq", "replay", &ids[0], "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no dead letters"), "{}", stderr(&o));

    // The rest, with --all; then the dead-letter list is empty.
    let o = cli(&["dlq", "replay", "--all", "--target", "t", "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("replayed 2 deliveries"),
        "{}",
        stdout(&o)
    );
    wait_state(&r, &ids[1], "delivered").await;
    wait_state(&r, &ids[2], "delivered").await;
    assert!(eventually(WAIT, || target.count() == 6).await);
    let o = cli(&["dlq", "list", "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "no dead letters");

    // Any event can be replayed, delivered or not (here through the API, one target).
    let a = api(
        &r,
        "POST",
        &format!("/api/v1/events/{}/replay?target=t", ids[2]),
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(json(&a), serde_json::json!({ "replayed": 1 }));
    assert!(
        eventually(WAIT, || target.count() == 7).await,
        "log:\n{}",
        r.logs()
    );
    wait_state(&r, &ids[2], "delivered").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.count(), 7, "each replay delivers once");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_connection_and_usage_problems() {
    let target = Target::start(Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    let r = Router::start(&with_token(&target.url("/in")));
    let id = post_event(&r, 1).await;
    wait_state(&r, &id, "dead").await;
    let cfg = config_arg(&r);

    // Unknown id: an API error, exit 1.
    let o = cli(&[
        "events",
        "show",
        "0193a4b2-7c1e-7d3a-9f00-5b2c8e1d4a6f",
        "-c",
        &cfg,
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no event"), "{}", stderr(&o));

    // --admin and the token from the environment, no config needed.
    let o = tokio::task::spawn_blocking({
        let url = admin_url(&r, "");
        move || {
            Command::new(env!("CARGO_BIN_EXE_hookrouter"))
                .args([
                    "events",
                    "list",
                    "--admin",
                    &url,
                    "-c",
                    "/nonexistent/router.yaml",
                ])
                .env("HOOKROUTER_ADMIN_TOKEN", TOKEN)
                .output()
                .expect("run")
        }
    })
    .await
    .expect("task");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));

    // A wrong token is a configuration problem: exit 2.
    let o = cli(&[
        "events",
        "list",
        "--admin",
        &admin_url(&r, ""),
        "--token",
        "wrong",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("refused the token"), "{}", stderr(&o));

    // Nothing listening.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let o = cli(&["dlq", "list", "--admin", &nobody, "--token", TOKEN]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot reach the admin API"),
        "{}",
        stderr(&o)
    );

    // A config without an admin listener.
    let dir = tempfile::tempdir().expect("tempdir");
    let no_admin = dir.path().join("router.yaml");
    std::fs::write(
        &no_admin,
        sync_config(&target.url("/in"), "")
            .replace("{port}", &free_port().to_string())
            .replace("admin: { addr: \"127.0.0.1:{admin}\" }\n", ""),
    )
    .expect("write");
    let o = cli(&["dlq", "list", "-c", &path_str(&no_admin)]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no admin listener in")
            && stderr(&o).contains("add `admin: { addr, token }`"),
        "{}",
        stderr(&o)
    );

    // A missing config file.
    let o = cli(&["dlq", "list", "-c", "/nonexistent/router.yaml"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/router.yaml"),
        "{}",
        stderr(&o)
    );

    // `dlq replay` needs an id or --all, not both.
    let o = cli(&["dlq", "replay", "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(2));
    let o = cli(&["dlq", "replay", &id, "--all", "-c", &cfg]).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(target.count(), 1, "no usage error replays anything");
}

/// A replay of a delivery that is waiting for a far-off retry runs now, with a fresh budget.
#[tokio::test(flavor = "multi_thread")]
async fn replaying_a_waiting_delivery_runs_it_now() {
    let target = Target::start(Reply {
        status: 500,
        ..Reply::default()
    })
    .await;
    let yaml = with_token(&target.url("/t")).replace(
        "retry: { max_attempts: 2, initial: 50ms, max_delay: 100ms }",
        "retry: { max_attempts: 3, initial: 10m, max_delay: 10m }",
    );
    let r = Router::start(&yaml);
    let id = post_event(&r, 1).await;
    assert!(eventually(WAIT, || target.count() == 1).await);
    // The retry is minutes away; the target now works.
    target.set_reply(Reply::default());
    let a = api(
        &r,
        "POST",
        &format!("/api/v1/events/{id}/replay"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(
        eventually(Duration::from_secs(3), || target.count() == 2).await,
        "the replay did not run; log:\n{}",
        r.logs()
    );
    wait_state(&r, &id, "delivered").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        target.count(),
        2,
        "the superseded retry does not run as well"
    );
}
