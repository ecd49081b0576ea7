//! `hookrouter check` against fixture files, through the real binary.
//!
//! * `tests/fixtures/bad/NAME.yaml` must fail with exit code 2 and print exactly
//!   `tests/fixtures/bad/NAME.expected` on stderr, where the config path is written as `FILE`.
//!   Run with `UPDATE_EXPECTED=1` to rewrite the `.expected` files from the binary's output,
//!   then read the diff: every message must name the YAML path and line and say what to change.
//! * `router.example.yaml`, the YAML files under `examples/` and `tests/fixtures/good/*.yaml`
//!   must pass.
//! * `${env:}` / `${file:}` references resolve, and their values never appear in messages.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Referenced by the bad fixtures; removed from the child's environment so it is surely unset.
const UNSET_VAR: &str = "HOOKROUTER_TEST_SURELY_UNSET";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `hookrouter check -c <config>` from the crate root, with `env` set for the child only.
fn check(config: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrouter"));
    cmd.current_dir(manifest_dir())
        .args(["check", "-c", config])
        .env_remove(UNSET_VAR);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run hookrouter for {config}: {e}"))
}

/// The files directly in `dir` whose names end in `.{ext}`, sorted.
fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("cannot read a directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn file_stem(p: &Path) -> String {
    p.file_stem()
        .expect("a fixture has a name")
        .to_string_lossy()
        .into_owned()
}

/// A line diff of `expected` → `actual` (`-` expected only, `+` actual only), by longest
/// common subsequence; the files are a few lines long.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("    {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("  + {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[test]
fn bad_fixtures_report_the_expected_errors() {
    let update = std::env::var_os("UPDATE_EXPECTED").is_some_and(|v| v == "1");
    let dir = manifest_dir().join("tests/fixtures/bad");
    let fixtures = files_with_ext(&dir, "yaml");
    assert!(
        fixtures.len() >= 20,
        "expected the bad-config fixtures in {}, found {}",
        dir.display(),
        fixtures.len()
    );

    let mut failures = Vec::new();
    for fixture in &fixtures {
        let name = file_stem(fixture);
        // Relative and with `/`, so the output is the same on every machine.
        let rel = format!("tests/fixtures/bad/{name}.yaml");
        let expected_path = dir.join(format!("{name}.expected"));
        let out = check(&rel, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).replace(&rel, "FILE");
        let stdout = String::from_utf8_lossy(&out.stdout);

        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit status {} (expected 2)", out.status));
        }
        if !stdout.is_empty() {
            problems.push(format!("unexpected stdout:\n{stdout}"));
        }
        if update {
            fs::write(&expected_path, stderr.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
        } else {
            match fs::read_to_string(&expected_path) {
                Ok(expected) if expected == stderr => {}
                Ok(expected) => problems.push(format!(
                    "stderr differs from {name}.expected (- expected, + actual):\n{}",
                    diff(&expected, &stderr)
                )),
                Err(e) => problems.push(format!(
                    "cannot read {name}.expected ({e}); actual stderr:\n{stderr}"
                )),
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{rel}:\n  {}", problems.join("\n  ")));
        }
    }

    // An `.expected` whose fixture was renamed or deleted would silently stop being checked.
    for expected in files_with_ext(&dir, "expected") {
        let name = file_stem(&expected);
        if !dir.join(format!("{name}.yaml")).is_file() {
            failures.push(format!(
                "tests/fixtures/bad/{name}.expected has no {name}.yaml"
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} fixtures disagree (rerun with UPDATE_EXPECTED=1 to accept the new output, \
         then review the diff):\n\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n")
    );
}

/// YAML files under `dir`, recursively, skipping `skip` folders (dashboards and the like).
fn yaml_files_under(dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("cannot read a directory entry").path();
        if path.is_dir() {
            let skipped = path
                .file_name()
                .is_some_and(|n| skip.iter().any(|s| n == *s));
            if !skipped {
                yaml_files_under(&path, skip, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn shipped_examples_and_good_fixtures_are_valid() {
    let root = manifest_dir();
    let mut configs = vec![root.join("router.example.yaml")];
    let mut examples = Vec::new();
    yaml_files_under(
        &root.join("examples"),
        &["prometheus", "grafana"],
        &mut examples,
    );
    examples.sort();
    configs.extend(examples);
    configs.extend(files_with_ext(&root.join("tests/fixtures/good"), "yaml"));

    let mut failures = Vec::new();
    for config in &configs {
        let rel = config
            .strip_prefix(root)
            .expect("under the crate root")
            .to_string_lossy()
            .replace('\\', "/");
        let out = check(&rel, EXAMPLE_ENV);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(0) || !stdout.starts_with(&format!("{rel}: valid (")) {
            failures.push(format!(
                "{rel}: exit status {}\nstdout:\n{stdout}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "configs that should be valid are not:\n\n{}",
        failures.join("\n\n")
    );
}

/// The variables the shipped examples read, with values of the right shape.
const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("STRIPE_WEBHOOK_SECRET", "whsec_example"),
    (
        "CLERK_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    ("GITHUB_WEBHOOK_SECRET", "example"),
    ("LOGTO_SIGNING_KEY", "example"),
    ("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5"),
    ("SHOPIFY_API_SECRET", "example"),
];

const SECRET: &str = "supersecret-123";

/// Writes `config` as `router.yaml` into `dir` and returns its path.
fn write_config(dir: &Path, config: &str) -> String {
    let path = dir.join("router.yaml");
    fs::write(&path, config).expect("cannot write the config");
    path.to_str().expect("the temp dir is UTF-8").to_string()
}

fn assert_no_secret(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{what}: the referenced value leaked into the output:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn references_resolve_and_their_values_are_never_printed() {
    let dir = tempfile::TempDir::new().expect("cannot create a temp dir");
    // Secret files usually end with a newline, which is not part of the value.
    fs::write(dir.path().join("admin_token"), format!("{SECRET}\n")).expect("write");
    fs::write(
        dir.path().join("billing_url"),
        "http://127.0.0.1:7001/hooks\n",
    )
    .expect("write");
    fs::write(dir.path().join("secret"), SECRET).expect("write");

    // Both kinds of reference, for both the admin token and a target URL.
    let valid = [
        (
            "token from env, url from file",
            r#"
version: 1
listen: [{ addr: "127.0.0.1:8080" }]
admin: { addr: "127.0.0.1:9090", token: "${env:HOOKROUTER_TEST_ADMIN_TOKEN}" }
targets:
  billing: { url: "${file:billing_url}" }
routes:
  - { name: stripe, path: /hooks/stripe, mode: sync, deliver: [{ target: billing }] }
"#,
        ),
        (
            "token from file, url from env",
            r#"
version: 1
listen: [{ addr: "127.0.0.1:8080" }]
admin: { addr: "127.0.0.1:9090", token: "${file:admin_token}" }
targets:
  billing: { url: "http://${env:HOOKROUTER_TEST_TARGET_HOST}/hooks" }
routes:
  - { name: stripe, path: /hooks/stripe, mode: sync, deliver: [{ target: billing }] }
"#,
        ),
    ];
    let env = [
        ("HOOKROUTER_TEST_ADMIN_TOKEN", SECRET),
        ("HOOKROUTER_TEST_TARGET_HOST", "127.0.0.1:7001"),
    ];
    for (what, config) in valid {
        let path = write_config(dir.path(), config);
        let out = check(&path, &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: expected a valid config\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with(&format!("{path}: valid (1 ")),
            "{what}: {stdout}"
        );
        assert_no_secret(what, &out);
    }

    // The same configs without the variable set: the error names the reference, not a value.
    let path = write_config(dir.path(), valid[0].1);
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`HOOKROUTER_TEST_ADMIN_TOKEN` is not set"),
        "{stderr}"
    );

    // A secret-looking value lands in fields where it is invalid: the message must name the
    // reference (`${env:...}` / `${file:...}`), never the value.
    let invalid = [
        (
            "targets.billing.timeout",
            r#"timeout: "${env:HOOKROUTER_TEST_SECRET}""#,
            "",
        ),
        (
            "targets.billing.timeout",
            r#"timeout: "${file:secret}""#,
            "",
        ),
        (
            "targets.billing.url",
            r#"url: "${env:HOOKROUTER_TEST_SECRET}""#,
            "",
        ),
        (
            "routes[0].path",
            "",
            r#"path: "${env:HOOKROUTER_TEST_SECRET}""#,
        ),
        (
            "routes[0].allow_ips[0]",
            "",
            r#"allow_ips: ["${env:HOOKROUTER_TEST_SECRET}"]"#,
        ),
        (
            "routes[0].methods[0]",
            "",
            r#"methods: ["${env:HOOKROUTER_TEST_SECRET}"]"#,
        ),
        ("routes[0].max_body", "", r#"max_body: "${file:secret}""#),
        (
            "routes[0].host",
            "",
            r#"host: "${env:HOOKROUTER_TEST_SECRET}/x""#,
        ),
    ];
    for (field, target_extra, route_extra) in invalid {
        let target = if target_extra.starts_with("url:") {
            format!("{{ {target_extra} }}")
        } else {
            format!("{{ url: \"http://127.0.0.1:7001/hooks\", {target_extra} }}")
        };
        let route = if route_extra.starts_with("path:") {
            format!(
                "{{ name: stripe, mode: sync, {route_extra}, deliver: [{{ target: billing }}] }}"
            )
        } else if route_extra.is_empty() {
            "{ name: stripe, path: /hooks/stripe, mode: sync, deliver: [{ target: billing }] }"
                .to_string()
        } else {
            format!(
                "{{ name: stripe, path: /hooks/stripe, mode: sync, {route_extra}, deliver: [{{ target: billing }}] }}"
            )
        };
        let config = format!(
            "version: 1\nlisten: [{{ addr: \"127.0.0.1:8080\" }}]\ntargets:\n  billing: {target}\nroutes:\n  - {route}\n"
        );
        let path = write_config(dir.path(), &config);
        let out = check(&path, &[("HOOKROUTER_TEST_SECRET", SECRET)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{field}: expected an invalid config\n{config}\nstderr:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("{field}: the value of `${{")),
            "{field}: the error should name the reference\n{config}\nstderr:\n{stderr}"
        );
        assert_no_secret(field, &out);
    }
}

/// A target's signing secret that the Standard Webhooks signer cannot use is reported at its
/// path, and neither a referenced nor an inline value appears in the message.
#[test]
fn signing_secrets_are_never_printed() {
    let dir = tempfile::TempDir::new().expect("cannot create a temp dir");
    for secret in ["${env:HOOKROUTER_TEST_SECRET}", SECRET] {
        let config = format!(
            "version: 1\nlisten: [{{ addr: \"127.0.0.1:8080\" }}]\ntargets:\n  billing: {{ url: \"http://127.0.0.1:7001/hooks\", sign: {{ scheme: standard-webhooks, secret: \"{secret}\" }} }}\nroutes:\n  - {{ name: a, path: /a, deliver: [{{ target: billing }}] }}\n"
        );
        let path = write_config(dir.path(), &config);
        let out = check(&path, &[("HOOKROUTER_TEST_SECRET", SECRET)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{secret}: {stderr}");
        assert!(
            stderr.contains(":4:93: targets.billing.sign.secret: "),
            "{secret}: {stderr}"
        );
        assert_no_secret(secret, &out);
    }
}

/// Values that reach messages without going through the reference-hiding formatting.
/// Ignored until fixed in src/config/parse.rs (the mode check, and the cross-field checks on
/// target references, route names and listen addresses print the resolved value); run with
/// `cargo test --test config_errors -- --ignored`.
#[test]

fn referenced_values_are_not_echoed_by_cross_field_checks() {
    let dir = tempfile::TempDir::new().expect("cannot create a temp dir");
    let target = r#"{ url: "http://127.0.0.1:7001/hooks" }"#;
    let cases = [
        (
            "routes[0].mode",
            r#"[{ addr: "127.0.0.1:8080" }]"#,
            r#"{ name: a, path: /a, mode: "${env:HOOKROUTER_TEST_SECRET}", deliver: [{ target: billing }] }"#,
        ),
        (
            "routes[0].deliver[0].target",
            r#"[{ addr: "127.0.0.1:8080" }]"#,
            r#"{ name: a, path: /a, mode: sync, deliver: [{ target: "${env:HOOKROUTER_TEST_SECRET}" }] }"#,
        ),
        (
            "routes[1].name",
            r#"[{ addr: "127.0.0.1:8080" }]"#,
            r#"{ name: "${env:HOOKROUTER_TEST_SECRET}", path: /a, mode: sync, deliver: [{ target: billing }] }
  - { name: "${env:HOOKROUTER_TEST_SECRET}", path: /b, mode: sync, deliver: [{ target: billing }] }"#,
        ),
        (
            "routes[1] (same path)",
            r#"[{ addr: "127.0.0.1:8080" }]"#,
            r#"{ name: a, path: "/${env:HOOKROUTER_TEST_SECRET}", mode: sync, deliver: [{ target: billing }] }
  - { name: b, path: "/${env:HOOKROUTER_TEST_SECRET}", mode: sync, deliver: [{ target: billing }] }"#,
        ),
        (
            "listen[1].addr",
            r#"[{ addr: "${env:HOOKROUTER_TEST_ADDR}" }, { addr: "${env:HOOKROUTER_TEST_ADDR}" }]"#,
            r#"{ name: a, path: /a, mode: sync, deliver: [{ target: billing }] }"#,
        ),
    ];
    let mut leaks = Vec::new();
    for (field, listen, route) in cases {
        let config = format!(
            "version: 1\nlisten: {listen}\ntargets:\n  billing: {target}\nroutes:\n  - {route}\n"
        );
        let path = write_config(dir.path(), &config);
        let out = check(
            &path,
            &[
                ("HOOKROUTER_TEST_SECRET", SECRET),
                ("HOOKROUTER_TEST_ADDR", "127.0.0.123:8080"),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        if stderr.contains(SECRET) || stderr.contains("127.0.0.123") {
            leaks.push(format!("{field}:\n{stderr}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "referenced values leaked:\n\n{}",
        leaks.join("\n")
    );
}

/// Cross-field checks (duplicate names, conflicting routes, shared listen addresses) run over
/// the items that parsed, and number them by their position in that filtered list, not in the
/// file: with `routes[0]` broken, a clash between `routes[1]` and `routes[2]` is reported as
/// `routes[1]` vs `routes[0]`. Ignored until fixed in src/config/parse.rs.
#[test]

fn cross_field_checks_name_the_items_by_their_yaml_index() {
    let dir = tempfile::TempDir::new().expect("cannot create a temp dir");
    let config = r#"version: 1
listen:
  - addr: "not-an-address"
  - addr: "127.0.0.1:8080"
  - addr: "127.0.0.1:8080"
targets:
  billing: { url: "http://127.0.0.1:7001/hooks" }
routes:
  - { name: broken, path: relative, mode: sync, deliver: [{ target: billing }] }
  - { name: a, path: /a, mode: sync, deliver: [{ target: billing }] }
  - { name: a, path: /a, mode: sync, deliver: [{ target: billing }] }
"#;
    let path = write_config(dir.path(), config);
    let out = check(&path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        "listen[2].addr: `127.0.0.1:8080` is also used by listen[1]",
        "routes[2].name: route name `a` is also used by routes[1]",
        "routes[2]: `a` takes POST on path `/a` like routes[1]",
    ] {
        assert!(stderr.contains(wanted), "missing {wanted:?} in:\n{stderr}");
    }
}
