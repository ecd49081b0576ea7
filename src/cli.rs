//! Operator commands beyond `run` and `check`: `verify` answers "why does my provider's
//! request fail?" with the same verifier code and defaults the server uses.

use std::{path::PathBuf, process::ExitCode};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::verify::{Options, Request, SchemeName, Verifier};

/// Exit code for a usage error (bad arguments, unreadable file, unusable secret).
const EXIT_USAGE: u8 = 2;

/// Arguments of `hookrouter verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Signature scheme (as in `verify.scheme`).
    #[arg(long)]
    scheme: String,
    /// Secret (or public key for discord, sendgrid, standard-webhooks v1a); repeat for several.
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    /// The URL the provider called (schemes that sign it).
    #[arg(long, default_value = "https://localhost/")]
    url: String,
    /// The request method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// A request header, `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// File holding the exact request body (`-` for standard input).
    #[arg(long)]
    body_file: PathBuf,
    /// The time to check against, unix seconds (default: now).
    #[arg(long)]
    now: Option<i64>,
    /// Timestamp tolerance, like `5m` (default: the scheme's own).
    #[arg(long)]
    tolerance: Option<String>,
    /// GitHub: also accept the legacy sha1 signature.
    #[arg(long)]
    legacy_sha1: bool,
}

/// Runs `hookrouter verify`.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    match run_verify(args) {
        Ok(Ok(())) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Ok(Err(reason)) => {
            println!("invalid: {reason}");
            ExitCode::from(1)
        }
        Err(usage) => {
            eprintln!("hookrouter verify: {usage}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `Ok(verdict)`, or `Err(usage problem)`.
fn run_verify(args: &VerifyArgs) -> Result<Result<(), &'static str>, String> {
    let scheme = SchemeName::from_name(&args.scheme).ok_or_else(|| {
        let names: Vec<&str> = SchemeName::ALL.iter().map(|(n, _)| *n).collect();
        format!(
            "unknown scheme `{}`: use one of {}",
            args.scheme,
            names.join(", ")
        )
    })?;
    http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", args.method))?;
    let tolerance = match &args.tolerance {
        None => None,
        Some(t) => Some(
            crate::config::parse_duration(t)
                .ok_or_else(|| format!("`{t}` is not a duration: write e.g. `5m` or `300s`"))?,
        ),
    };
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("`{h}` is not `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
        headers.append(name, value);
    }
    let body = if args.body_file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        buf
    } else {
        std::fs::read(&args.body_file)
            .map_err(|e| format!("cannot read `{}`: {e}", args.body_file.display()))?
    };
    let options = Options {
        legacy_sha1: args.legacy_sha1,
    };
    let secrets: Vec<&str> = args.secrets.iter().map(String::as_str).collect();
    let verifier = Verifier::new(scheme, &secrets, tolerance, &options).map_err(|bad| {
        bad.iter()
            .map(|b| format!("--secret #{}: {}", b.index + 1, b.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let now = args.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    });
    let req = Request {
        url: &args.url,
        headers: &headers,
        body: &body,
    };
    Ok(verifier.verify(&req, now).map_err(|f| f.as_label()))
}
