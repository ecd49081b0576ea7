//! Operator commands beyond `run` and `check`: `verify` answers "why does my provider's
//! request fail?" with the same verifier code and defaults the server uses.

use std::{path::PathBuf, process::ExitCode};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::verify::{Options, Request, SchemeName, Verifier};

mod ops;
pub use ops::{DlqArgs, EventsArgs, dlq, events};

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
    /// GitLab: `token` (default) or `signing-token`.
    #[arg(long)]
    gitlab: Option<String>,
    /// token / generic-hmac: the header carrying the token or signature.
    #[arg(long)]
    signature_header: Option<String>,
    /// generic-hmac: sha1, sha256 or sha512.
    #[arg(long)]
    algorithm: Option<String>,
    /// generic-hmac: hex or base64.
    #[arg(long)]
    encoding: Option<String>,
    /// generic-hmac: the signature's prefix, like `sha256=`.
    #[arg(long)]
    prefix: Option<String>,
    /// generic-hmac: the signed content, over `{id}`, `{timestamp}`, `{body}`, `{url}`.
    #[arg(long)]
    template: Option<String>,
    /// generic-hmac: the header `{id}` comes from.
    #[arg(long)]
    id_header: Option<String>,
    /// generic-hmac: the header `{timestamp}` comes from.
    #[arg(long)]
    timestamp_header: Option<String>,
}

/// The scheme options given on the command line.
fn cli_options(args: &VerifyArgs) -> Result<Options, String> {
    use crate::verify::{GenericHmac, GitlabMode, HmacAlgorithm, SignatureEncoding};
    let mut options = Options {
        legacy_sha1: args.legacy_sha1,
        header: args.signature_header.clone(),
        ..Options::default()
    };
    if let Some(g) = &args.gitlab {
        options.gitlab = GitlabMode::from_name(g)
            .ok_or_else(|| format!("`{g}` is not a GitLab mode: use token or signing-token"))?;
    }
    if args.scheme == "generic-hmac" {
        let alg = args
            .algorithm
            .as_deref()
            .ok_or("generic-hmac needs --algorithm")?;
        let alg = HmacAlgorithm::from_name(alg)
            .ok_or_else(|| format!("`{alg}` is not sha1, sha256 or sha512"))?;
        let enc = args
            .encoding
            .as_deref()
            .ok_or("generic-hmac needs --encoding")?;
        let enc = SignatureEncoding::from_name(enc)
            .ok_or_else(|| format!("`{enc}` is not hex or base64"))?;
        let mut g = GenericHmac::new(alg, enc);
        if let Some(p) = &args.prefix {
            g.prefix = p.clone();
        }
        if let Some(t) = &args.template {
            g.template = t.clone();
        }
        g.id_header = args.id_header.clone();
        g.timestamp_header = args.timestamp_header.clone();
        options.generic = Some(g);
    }
    Ok(options)
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
    let options = cli_options(args)?;
    let secrets: Vec<&str> = args.secrets.iter().map(String::as_str).collect();
    let verifier = Verifier::new(scheme, &secrets, tolerance, &options).map_err(|bad| {
        let options = bad
            .options
            .iter()
            .map(|o| format!("{}: {}", o.option, o.message));
        bad.secrets
            .iter()
            .map(|b| format!("--secret #{}: {}", b.index + 1, b.message))
            .chain(options)
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

/// Arguments of `hookrouter send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Send as this route of the config file (its scheme and first secret).
    #[arg(long, requires = "config", conflicts_with_all = ["scheme", "secret"])]
    route: Option<String>,
    /// Config file, with `--route`.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Signature scheme (without `--route`).
    #[arg(long, required_unless_present = "route")]
    scheme: Option<String>,
    /// Signing secret (without `--route`).
    #[arg(long, required_unless_present = "route")]
    secret: Option<String>,
    /// Where to send (with `--route`: default the route on the config's first listener).
    #[arg(long, required_unless_present = "route")]
    to: Option<String>,
    /// Event type for the sample payload (default: a typical one for the provider).
    #[arg(long)]
    event: Option<String>,
    /// Send this file's bytes instead of the sample payload.
    #[arg(long)]
    body_file: Option<PathBuf>,
}

/// Runs `hookrouter send`: prints the answer's status line, headers and body.
pub fn send(args: &SendArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookrouter send: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_send(args)) {
        Ok(status) if status < 400 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(usage) => {
            eprintln!("hookrouter send: {usage}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn run_send(args: &SendArgs) -> Result<u16, String> {
    let (scheme, secret, to, options) = match &args.route {
        Some(name) => from_route(name, args)?,
        None => {
            let name = args.scheme.as_deref().unwrap_or_default();
            let scheme =
                SchemeName::from_name(name).ok_or_else(|| format!("unknown scheme `{name}`"))?;
            (
                scheme,
                args.secret.clone().unwrap_or_default(),
                args.to.clone().unwrap_or_default(),
                Options::default(),
            )
        }
    };
    let uri: http::Uri = to.parse().map_err(|_| format!("`{to}` is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(format!(
            "`{to}` must be an absolute http:// or https:// URL"
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let id = format!("msg_hookrouter_{now:x}{:x}", std::process::id());
    let (body, mut headers) = match &args.body_file {
        Some(f) => (
            std::fs::read(f).map_err(|e| format!("cannot read `{}`: {e}", f.display()))?,
            Vec::new(),
        ),
        None => sample(scheme, args.event.as_deref(), now, &id),
    };
    headers.extend(crate::verify::sign(
        scheme, &secret, &body, now, &id, &to, &options,
    )?);
    headers.push(("content-type".into(), "application/json".into()));
    headers.push((
        "user-agent".into(),
        format!("hookrouter-send/{}", env!("CARGO_PKG_VERSION")),
    ));

    let mut req = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str())).header(
        http::header::HOST,
        uri.authority().map_or("", |a| a.as_str()),
    );
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let tls = crate::forward::pool::client_tls()
        .map_err(|e| format!("cannot load root certificates: {e}"))?;
    let pool = crate::forward::pool::Pool::new(tls);
    let (resp, _) = pool
        .send(&uri, req)
        .await
        .map_err(|e| format!("cannot send to {to}: {e}"))?;
    let status = resp.status();
    println!("{:?} {status}", resp.version());
    for (k, v) in resp.headers() {
        println!("{k}: {}", String::from_utf8_lossy(v.as_bytes()));
    }
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    println!();
    println!("{}", String::from_utf8_lossy(&body));
    Ok(status.as_u16())
}

/// Scheme, secret and URL of a configured route.
fn from_route(
    name: &str,
    args: &SendArgs,
) -> Result<(SchemeName, String, String, Options), String> {
    let path = args.config.as_ref().ok_or("`--route` needs `-c FILE`")?;
    let config =
        crate::config::load(path).map_err(|e| format!("the config does not validate:\n{e}"))?;
    let route = config
        .routes
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
            format!(
                "no route `{name}` in {} (routes: {})",
                path.display(),
                names.join(", ")
            )
        })?;
    let verify = route
        .verify
        .as_ref()
        .ok_or_else(|| format!("route `{name}` has no `verify` block: nothing to sign"))?;
    let secret = verify
        .secrets
        .first()
        .map(|s| s.expose().to_string())
        .ok_or("the route has no secret")?;
    let to = match &args.to {
        Some(t) => t.clone(),
        None => {
            let l = config
                .listen
                .iter()
                .find(|l| l.tls.is_none())
                .or(config.listen.first())
                .ok_or("no listener")?;
            let proto = if l.tls.is_some() { "https" } else { "http" };
            let host = match l.addr.ip() {
                ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
                ip if ip.is_unspecified() => "[::1]".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            format!("{proto}://{host}:{}{}", l.addr.port(), route.path)
        }
    };
    Ok((verify.scheme, secret, to, verify.options.clone()))
}

/// A sample payload in the provider's shape, and the extra headers it sends.
fn sample(
    scheme: SchemeName,
    event: Option<&str>,
    now: i64,
    id: &str,
) -> (Vec<u8>, Vec<(String, String)>) {
    let (body, headers) = match scheme {
        SchemeName::Stripe => (
            serde_json::json!({
                "id": format!("evt_{id}"), "object": "event", "api_version": "2024-06-20", "created": now,
                "type": event.unwrap_or("payment_intent.succeeded"), "livemode": false,
                "data": { "object": { "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent",
                                      "amount": 2000, "currency": "usd", "status": "succeeded" } }
            }),
            vec![],
        ),
        SchemeName::Svix => (
            serde_json::json!({
                "type": event.unwrap_or("user.created"), "object": "event", "timestamp": now * 1000,
                "data": { "id": "user_29w83sxmDNGwOuEthce5gg56FcC", "object": "user", "first_name": "Example",
                          "email_addresses": [ { "email_address": "example@example.org" } ] }
            }),
            vec![],
        ),
        SchemeName::StandardWebhooks => (
            serde_json::json!({ "type": event.unwrap_or("contact.created"), "timestamp": now,
                                "data": { "id": "contact_1", "email": "example@example.org" } }),
            vec![],
        ),
        SchemeName::Github => (
            serde_json::json!({ "zen": "Keep it logically awesome.", "hook_id": 12345678,
                                "repository": { "full_name": "octo-org/octo-repo" } }),
            vec![
                (
                    "X-GitHub-Event".to_string(),
                    event.unwrap_or("ping").to_string(),
                ),
                ("X-GitHub-Delivery".to_string(), id.to_string()),
            ],
        ),
        SchemeName::Slack => (
            serde_json::json!({ "type": "event_callback", "event_id": id, "event_time": now,
                                "event": { "type": event.unwrap_or("app_mention"), "text": "hello", "channel": "C0LAN2Q65" } }),
            vec![],
        ),
        SchemeName::Shopify => (
            serde_json::json!({ "id": 820982911946154508_u64, "email": "jon@example.com", "total_price": "199.00",
                                "currency": "USD", "financial_status": "paid" }),
            vec![
                (
                    "X-Shopify-Topic".to_string(),
                    event.unwrap_or("orders/create").to_string(),
                ),
                ("X-Shopify-Event-Id".to_string(), id.to_string()),
                (
                    "X-Shopify-Shop-Domain".to_string(),
                    "example.myshopify.com".to_string(),
                ),
            ],
        ),
        SchemeName::Logto => (
            serde_json::json!({ "hookId": "hook_1", "event": event.unwrap_or("PostRegister"),
                                "createdAt": now, "user": { "id": "user_1", "primaryEmail": "example@example.org" } }),
            vec![],
        ),
        SchemeName::Linear => (
            serde_json::json!({ "action": "create", "type": event.unwrap_or("Issue"), "webhookTimestamp": now * 1000,
                                "data": { "id": "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9", "title": "Example" } }),
            vec![
                (
                    "Linear-Event".to_string(),
                    event.unwrap_or("Issue").to_string(),
                ),
                ("Linear-Delivery".to_string(), id.to_string()),
            ],
        ),
        SchemeName::Paddle => (
            serde_json::json!({ "event_id": format!("evt_{id}"), "event_type": event.unwrap_or("transaction.completed"),
                                "occurred_at": now, "data": { "id": "txn_01", "status": "completed" } }),
            vec![],
        ),
        SchemeName::Square => (
            serde_json::json!({ "merchant_id": "6SSW7HV8K2ST5", "type": event.unwrap_or("payment.created"),
                                "event_id": id, "created_at": now, "data": { "type": "payment", "id": "KkAkhdMs" } }),
            vec![],
        ),
        _ => (
            serde_json::json!({ "type": event.unwrap_or("example.event"), "id": id, "created": now }),
            vec![],
        ),
    };
    (body.to_string().into_bytes(), headers)
}
