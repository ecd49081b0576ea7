//! Loading the configuration: one YAML file → a validated [`Config`], or every error in it.
//!
//! Flow: read file → `yaml::parse` (syntax, with position) → `parse::config` walks the tree with
//! the YAML path in hand, resolving `${env:NAME}` / `${file:PATH}` in every string and checking
//! each value where it is read → cross-field checks (target references, route conflicts, listen
//! addresses). `hookrouter check`, `hookrouter run` and every reload use this same function.
//!
//! Precedence of values: a route's own setting > `defaults:` > the built-in default (see the
//! `DEFAULT_*` constants in `parse.rs`). Relative file paths (`tls.cert`, `${file:...}`) are taken
//! from the config file's folder.

mod error;
pub mod model;
mod parse;
mod yaml;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors, Location};
pub use model::*;
pub use yaml::parse_duration;

/// Largest config file read: far above any real one, small enough that a wrong path
/// (a log file, a device) fails fast.
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Reads and validates the file at `path`, resolving `${env:}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// [`load`] with an explicit environment, for tests.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let fail = |message: String| {
        ConfigErrors::new(
            path.to_path_buf(),
            vec![ConfigError {
                location: None,
                path: String::new(),
                message,
            }],
        )
    };
    let source = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_CONFIG_BYTES => {
            return Err(fail(format!(
                "the file is larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        Ok(_) => std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?,
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    from_str(&source, path, &base_dir, env)
}

/// Validates YAML text as if it were read from `path`.
pub fn from_str(
    source: &str,
    path: &Path,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let errors = |errors| ConfigErrors::new(path.to_path_buf(), errors);
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(errors(vec![ConfigError {
                location: None,
                path: String::new(),
                message: "the file is empty: start from router.example.yaml".to_string(),
            }]));
        }
        Err(e) => return Err(errors(vec![e])),
    };
    let mut reader = yaml::Reader::new(env, base_dir.to_path_buf());
    match parse::config(&mut reader, &root, path.to_path_buf()) {
        Some(config) if reader.errors.is_empty() => Ok(config),
        _ => Err(errors(reader.errors)),
    }
}
