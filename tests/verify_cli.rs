//! `hookrouter verify`: the operator's "why does my provider's request fail?" tool.

use std::process::Command;

fn verify(args: &[&str], body: &[u8]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body).expect("write body");
    let out = Command::new(env!("CARGO_BIN_EXE_hookrouter"))
        .arg("verify")
        .args(args)
        .arg("--body-file")
        .arg(&body_file)
        .output()
        .expect("run hookrouter verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GH_SIG: &str =
    "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn valid_invalid_and_usage_exit_codes() {
    let secret = "It's a Secret to Everybody";
    let (code, out, _) = verify(
        &["--scheme", "github", "--secret", secret, "-H", GH_SIG],
        b"Hello, World!",
    );
    assert_eq!((code, out.as_str()), (Some(0), "valid\n"));

    let (code, out, _) = verify(
        &["--scheme", "github", "--secret", secret, "-H", GH_SIG],
        b"Hello, World?",
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(1), "invalid: signature_mismatch\n")
    );

    // Rotation: the second secret matches.
    let (code, out, _) = verify(
        &[
            "--scheme", "github", "--secret", "old", "--secret", secret, "-H", GH_SIG,
        ],
        b"Hello, World!",
    );
    assert_eq!((code, out.as_str()), (Some(0), "valid\n"));

    let (code, out, _) = verify(
        &["--scheme", "github", "--secret", secret],
        b"Hello, World!",
    );
    assert_eq!((code, out.as_str()), (Some(1), "invalid: missing_header\n"));

    let (code, _, err) = verify(&["--scheme", "gihtub", "--secret", secret], b"x");
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown scheme `gihtub`"), "{err}");

    let (code, _, err) = verify(&["--scheme", "svix", "--secret", "whsec_***"], b"x");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--secret #1") && !err.contains("whsec_***"),
        "{err}"
    );

    let (code, _, _) = verify(
        &["--scheme", "github", "--secret", secret, "-H", "no colon"],
        b"x",
    );
    assert_eq!(code, Some(2));
}

#[test]
fn time_is_taken_from_now_and_tolerance() {
    // The official Svix vector, checked at its own time and an hour later.
    let args = |now: &'static str| {
        vec![
            "--scheme",
            "svix",
            "--secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "-H",
            "svix-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
            "-H",
            "svix-timestamp: 1614265330",
            "-H",
            "svix-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "--now",
            now,
        ]
    };
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(verify(&args("1614265330"), body).1, "valid\n");
    assert_eq!(verify(&args("1614268930"), body).1, "invalid: expired\n");
    assert_eq!(
        verify(&args("1614261730"), body).1,
        "invalid: from_future\n"
    );
    let mut wide = args("1614268930");
    wide.extend(["--tolerance", "2h"]);
    assert_eq!(verify(&wide, body).1, "valid\n");
}
