//! Everything the request path reads, built from one validated config and swapped whole on
//! reload (one `ArcSwap` cell, so a request never sees half of two configs). Building also loads
//! the TLS certificates, so a bad certificate fails `check` and keeps a reload from applying.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use http::HeaderValue;
use rustls::ServerConfig;

use crate::{
    config::{Config, ConfigError, Route, Target},
    listener::tls,
    route::{Entry, RouteTable},
};

/// One generation of the running configuration.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Counts successful loads since start (1 = the startup config).
    pub(crate) generation: u64,
    /// A short digest of the config file it was loaded from: instances sharing a queue
    /// compare it to see whether they run the same config.
    pub(crate) digest: String,
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    /// Per route (same index as `config.routes`): what the request path needs precomputed.
    pub(crate) runtime: Vec<RouteRuntime>,
    /// TLS settings per listener address.
    pub(crate) tls: HashMap<SocketAddr, Arc<ServerConfig>>,
}

/// Precomputed per-route values.
#[derive(Debug)]
pub(crate) struct RouteRuntime {
    /// The `Allow` header for 405 answers.
    pub(crate) allow: HeaderValue,
    /// The sync-mode target.
    pub(crate) target: Target,
    /// The signature check, if the route has one.
    pub(crate) verifier: Option<crate::verify::Verifier>,
}

impl Snapshot {
    /// Builds a snapshot; errors carry the YAML path of what failed (e.g. a certificate).
    pub(crate) fn build(config: Config, generation: u64) -> Result<Snapshot, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut tls_configs = HashMap::new();
        for (i, l) in config.listen.iter().enumerate() {
            if let Some(certs) = &l.tls {
                match tls::server_config(certs, &format!("listen[{i}]")) {
                    Ok(c) => {
                        tls_configs.insert(l.addr, c);
                    }
                    Err(e) => errors.extend(e),
                }
            }
        }
        let mut runtime = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            match route_runtime(&config, route) {
                Ok(r) => runtime.push(r),
                Err((field, message)) => errors.push(ConfigError {
                    location: None,
                    path: format!("routes[{i}].{field}"),
                    message,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let routes = RouteTable::new(config.routes.iter().enumerate().map(|(index, r)| {
            (
                r.path.clone(),
                Entry {
                    host: r.host.clone(),
                    methods: r.methods.clone(),
                    index,
                },
            )
        }));
        Ok(Snapshot {
            generation,
            digest: String::new(),
            config,
            routes,
            runtime,
            tls: tls_configs,
        })
    }
}

/// The first 12 hex digits of the SHA-256 of the file at `path` (empty if it cannot be read).
pub(crate) fn file_digest(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    std::fs::read(path)
        .map(|b| hex::encode(&sha2::Sha256::digest(&b)[..6]))
        .unwrap_or_default()
}

fn route_runtime(config: &Config, route: &Route) -> Result<RouteRuntime, (&'static str, String)> {
    let no_target = || ("deliver", "names no defined target".to_string());
    let first = route.deliver.first().ok_or_else(no_target)?;
    let target = config
        .targets
        .get(&first.target)
        .ok_or_else(no_target)?
        .clone();
    let verifier = match &route.verify {
        None => None,
        Some(v) => {
            let secrets: Vec<&str> = v.secrets.iter().map(|s| s.expose()).collect();
            let built = crate::verify::Verifier::new(v.scheme, &secrets, v.tolerance, &v.options);
            // Validation already built this verifier once; a failure here would be a bug, and
            // still refuses the config rather than running the route unverified.
            Some(built.map_err(|_| {
                (
                    "verify",
                    "the secrets cannot be used with this scheme".to_string(),
                )
            })?)
        }
    };
    let allow = route
        .methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // Methods are validated tokens, so this is a valid header value.
    let allow = HeaderValue::from_str(&allow).unwrap_or_else(|_| HeaderValue::from_static("POST"));
    Ok(RouteRuntime {
        allow,
        target,
        verifier,
    })
}
