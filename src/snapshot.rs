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
                Some(r) => runtime.push(r),
                None => errors.push(ConfigError {
                    location: None,
                    path: format!("routes[{i}].deliver"),
                    message: "names no defined target".to_string(),
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
            config,
            routes,
            runtime,
            tls: tls_configs,
        })
    }
}

fn route_runtime(config: &Config, route: &Route) -> Option<RouteRuntime> {
    let target = config.targets.get(&route.deliver.first()?.target)?.clone();
    let allow = route
        .methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // Methods are validated tokens, so this is a valid header value.
    let allow = HeaderValue::from_str(&allow).unwrap_or_else(|_| HeaderValue::from_static("POST"));
    Some(RouteRuntime { allow, target })
}
