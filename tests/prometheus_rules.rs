//! The monitoring examples: `examples/prometheus/alerts.yaml` passes `promtool check rules`
//! and its unit tests (`promtool test rules`), and the rules and the Grafana dashboard
//! (`examples/grafana/hookrouter.json`) only use metrics the router exports.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

/// Every metric the router exports on `/metrics`.
const METRICS: &[&str] = &[
    "hookrouter_build_info",
    "hookrouter_requests_total",
    "hookrouter_request_duration_seconds",
    "hookrouter_request_body_bytes",
    "hookrouter_verification_failures_total",
    "hookrouter_ip_denied_total",
    "hookrouter_deliveries_total",
    "hookrouter_delivery_retries_total",
    "hookrouter_delivery_attempt_duration_seconds",
    "hookrouter_dead_letters_added_total",
    "hookrouter_dead_letters",
    "hookrouter_queue_depth",
    "hookrouter_queue_oldest_pending_age_seconds",
    "hookrouter_circuit_breaker_state",
    "hookrouter_config_reloads_total",
    "hookrouter_config_generation",
    "hookrouter_config_last_reload_success",
    "hookrouter_tls_handshake_failures_total",
    "hookrouter_certificate_expiry_timestamp_seconds",
    "hookrouter_queue_disk_bytes",
    "hookrouter_queue_degraded",
    "hookrouter_alerts_firing",
    "hookrouter_cluster_instances",
    "hookrouter_cluster_config_versions",
];

/// The histograms among [`METRICS`]: they are also queried as `_bucket`, `_sum` and `_count`.
const HISTOGRAMS: &[&str] = &[
    "hookrouter_request_duration_seconds",
    "hookrouter_request_body_bytes",
    "hookrouter_delivery_attempt_duration_seconds",
];

/// The alerts alerts.yaml defines, each with cases in alerts.test.yaml.
const ALERTS: &[&str] = &[
    "HookrouterDeliveryFailureRatio",
    "HookrouterVerificationFailureSpike",
    "HookrouterDeadLettersAdded",
    "HookrouterOldestPendingAge",
    "HookrouterTrafficDrop",
    "HookrouterTrafficSpike",
    "HookrouterCertificateExpiringSoon",
    "HookrouterConfigReloadFailed",
    "HookrouterConfigDrift",
    "HookrouterQueueDegraded",
    "HookrouterCircuitBreakerOpen",
    "HookrouterDown",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Runs `promtool ARGS` in the repository root; fails (never skips) when promtool is missing.
fn promtool(args: &[&str]) {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: ./test.sh installs it (Debian package `prometheus`), \
             or run `apt-get install prometheus`"
        ),
        Err(e) => panic!("run promtool {}: {e}", args.join(" ")),
    };
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `hookrouter_…` identifier in `text`, as written (a letter, digit, `_` or `:` run
/// after the prefix, so a misspelt name is seen whole).
fn metric_names(text: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("hookrouter_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        if !before.is_some_and(ident) {
            names.push(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// The metric a queried series name belongs to: itself, or a histogram's `_bucket`, `_sum`
/// or `_count` series.
fn is_exported(name: &str) -> bool {
    METRICS.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| HISTOGRAMS.contains(&base))
        })
}

fn assert_all_exported(names: &[String], file: &str) {
    let unknown: Vec<&String> = names.iter().filter(|n| !is_exported(n)).collect();
    assert!(
        unknown.is_empty(),
        "{file} uses metrics the router does not export: {unknown:?}"
    );
}

#[test]
fn promtool_checks_the_rules() {
    promtool(&["check", "rules", "examples/prometheus/alerts.yaml"]);
}

#[test]
fn promtool_unit_tests_pass() {
    promtool(&["test", "rules", "examples/prometheus/alerts.test.yaml"]);
}

#[test]
fn rules_use_only_exported_metrics_and_every_alert_is_tested() {
    let rules = read("examples/prometheus/alerts.yaml");
    let names = metric_names(&rules);
    assert!(
        names.len() >= 10,
        "alerts.yaml: only {} metric references",
        names.len()
    );
    assert_all_exported(&names, "examples/prometheus/alerts.yaml");

    let defined: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    let mut sorted = defined.clone();
    sorted.sort_unstable();
    let mut expected = ALERTS.to_vec();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "alerts defined in alerts.yaml");

    let tests = read("examples/prometheus/alerts.test.yaml");
    for alert in ALERTS {
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(&format!("{alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "alerts.test.yaml has no case where {alert} must not fire"
        );
        assert!(
            cases
                .iter()
                .any(|c| c.contains("exp_labels:") && c.contains("exp_annotations:")),
            "alerts.test.yaml has no case where {alert} fires, with labels and annotations"
        );
    }
}

/// Every panel, rows' nested panels included.
fn collect_panels<'a>(panels: &'a [Value], out: &mut Vec<&'a Value>) {
    for panel in panels {
        out.push(panel);
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            collect_panels(nested, out);
        }
    }
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    let path = "examples/grafana/hookrouter.json";
    let dashboard: Value = serde_json::from_str(&read(path)).expect("dashboard is JSON");
    let top = dashboard["panels"]
        .as_array()
        .expect("dashboard has panels");
    let mut panels = Vec::new();
    collect_panels(top, &mut panels);
    let graphs: Vec<&Value> = panels
        .iter()
        .copied()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(
        graphs.len() >= 12,
        "{path}: {} panels, want at least 12",
        graphs.len()
    );

    let mut exprs = Vec::new();
    for panel in &graphs {
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: panel {} has no targets", panel["title"]));
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: a target of {} has no expr", panel["title"]));
            exprs.push(expr.to_owned());
        }
    }
    // Annotation queries and template variables query the same datasource.
    if let Some(list) = dashboard["annotations"]["list"].as_array() {
        exprs.extend(
            list.iter()
                .filter_map(|a| a["expr"].as_str().map(str::to_owned)),
        );
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("dashboard has template variables");
    exprs.extend(
        variables
            .iter()
            .filter(|v| v["type"] == "query")
            .filter_map(|v| v["query"].as_str().map(str::to_owned)),
    );
    for name in ["route", "target"] {
        assert!(
            variables.iter().any(|v| v["name"] == name
                && v["query"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("label_values("))),
            "{path}: no `{name}` variable from label_values"
        );
    }
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"),
        "{path}: no datasource variable"
    );

    let names: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert_all_exported(&names, path);
    // Every exported metric has a panel.
    let missing: Vec<&&str> = METRICS
        .iter()
        .filter(|m| {
            !names
                .iter()
                .any(|n| n == *m || n.strip_prefix(**m).is_some_and(|s| s == "_bucket"))
        })
        .collect();
    assert!(missing.is_empty(), "{path}: no panel shows {missing:?}");
}

#[test]
fn metric_names_finds_whole_identifiers() {
    assert_eq!(
        metric_names(
            "sum(rate(hookrouter_requests_total{route=\"a\"}[5m])) / my_hookrouter_x + hookrouter_Bad2"
        ),
        ["hookrouter_requests_total", "hookrouter_Bad2"]
    );
    assert!(is_exported("hookrouter_request_duration_seconds_bucket"));
    assert!(!is_exported("hookrouter_requests_total_count"));
    assert!(!is_exported("hookrouter_request_duration"));
}
