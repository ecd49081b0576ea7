//! Reading the YAML tree with positions, collecting every error instead of stopping at the first.
//!
//! Why saphyr and not a serde YAML crate: serde stops at the first error, and `hookrouter check`
//! must report every problem at once, each with its line and column. saphyr (the maintained,
//! pure-Rust YAML 1.2 library that continues yaml-rust/yaml-rust2) loads a tree in which every
//! node keeps its span; this module walks that tree with the YAML path in hand. saphyr also
//! rejects duplicate keys, bounds alias expansion (billion laughs), contains no `unsafe` C
//! bindings (unlike the libyaml-based serde_yaml forks), and its parser is fuzzed upstream.
//! serde_yaml itself is archived, and serde_yml was abandoned after soundness problems.
//!
//! Strings pass through `${env:NAME}` / `${file:PATH}` interpolation here, so every string
//! field supports it. Values that came from a reference are never echoed in messages: they
//! may be secrets.

use std::{
    borrow::Cow,
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::error::{ConfigError, Location};

/// A node of the loaded YAML tree.
pub(crate) type Node<'y> = MarkedYaml<'y>;

/// Largest file `${file:...}` reads; secrets and tokens are far smaller.
const MAX_REFERENCED_FILE: u64 = 64 * 1024;

/// Parses `source` into its first document. A syntax error becomes one located error.
pub(crate) fn parse(source: &str) -> Result<Option<Node<'_>>, ConfigError> {
    match MarkedYaml::load_from_str(source) {
        Ok(mut docs) => {
            if docs.is_empty() {
                return Ok(None);
            }
            Ok(Some(docs.swap_remove(0)))
        }
        Err(e) => {
            let m = e.marker();
            Err(ConfigError {
                location: Some(Location {
                    line: m.line(),
                    column: m.col() + 1,
                }),
                path: String::new(),
                message: syntax_message(e.info()),
            })
        }
    }
}

fn syntax_message(info: &str) -> String {
    if info.contains("duplicated key") {
        return "a key appears twice in this mapping: keep one".to_string();
    }
    format!("YAML syntax error: {info} (check indentation, quotes and closing brackets)")
}

/// How `${env:NAME}` is resolved; the process environment in production, a table in tests.
pub(crate) type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

/// Walks the tree and collects errors.
pub(crate) struct Reader<'e> {
    pub(crate) errors: Vec<ConfigError>,
    env: EnvLookup<'e>,
    base_dir: PathBuf,
}

/// A string read from the config, remembering whether it came from a reference.
#[derive(Clone)]
pub(crate) struct Text {
    pub(crate) value: String,
    /// `${env:NAME}` or `${file:PATH}` when any part came from a reference.
    reference: Option<String>,
}

impl Text {
    /// Whether any part of the value came from `${env:}` / `${file:}`.
    pub(crate) fn is_referenced(&self) -> bool {
        self.reference.is_some()
    }
}

impl fmt::Display for Text {
    /// How a value is quoted in an error message: never the resolved text of a reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "the value of `{r}`"),
            None => write!(f, "`{}`", self.value),
        }
    }
}

/// The location of a node, if the parser recorded one.
pub(crate) fn location(node: &Node<'_>) -> Option<Location> {
    let m = node.span.start;
    (m.line() > 0).then(|| Location {
        line: m.line(),
        column: m.col() + 1,
    })
}

fn is_null(node: &Node<'_>) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

fn kind(node: &Node<'_>) -> &'static str {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) => "a number",
        YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) => "a string",
        YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(..) => "a tagged value",
        YamlData::Alias(_) | YamlData::BadValue => "an unreadable value",
    }
}

/// Child path of a mapping key.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The keys of one mapping, read one by one; `finish` reports the keys nobody asked for.
pub(crate) struct Map<'y> {
    path: String,
    entries: Vec<(Cow<'y, str>, &'y Node<'y>, &'y Node<'y>)>,
    known: Vec<&'static str>,
}

impl<'y> Map<'y> {
    /// The value under `key`; absent or `null` both mean unset.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'y Node<'y>> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| *v)
            .filter(|v| !is_null(v))
    }

    /// The YAML path of `key` in this mapping.
    pub(crate) fn path(&self, key: &str) -> String {
        key_path(&self.path, key)
    }

    /// Reports every key that was never asked for.
    pub(crate) fn finish(self, r: &mut Reader<'_>) {
        for (key, key_node, _) in &self.entries {
            if self.known.iter().any(|k| k == key) {
                continue;
            }
            let hint = match closest(key, &self.known) {
                Some(k) => format!("; did you mean `{k}`?"),
                None => String::new(),
            };
            let mut known = self.known.clone();
            known.sort_unstable();
            known.dedup();
            r.error_at(
                location(key_node),
                &key_path(&self.path, key),
                format!(
                    "unknown key `{key}`{hint} (this mapping takes: {})",
                    known.join(", ")
                ),
            );
        }
    }
}

/// The known key closest to `key` by edit distance, when it is plausibly a typo.
pub(crate) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl<'e> Reader<'e> {
    pub(crate) fn new(env: EnvLookup<'e>, base_dir: PathBuf) -> Self {
        Reader {
            errors: Vec::new(),
            env,
            base_dir,
        }
    }

    /// Records an error at a node.
    pub(crate) fn error(&mut self, node: &Node<'_>, path: &str, message: impl Into<String>) {
        self.error_at(location(node), path, message);
    }

    /// Records an error at a location.
    pub(crate) fn error_at(
        &mut self,
        location: Option<Location>,
        path: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            location,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Opens a mapping; reports and returns `None` when the node is something else.
    pub(crate) fn map<'y>(&mut self, node: &'y Node<'y>, path: &str) -> Option<Map<'y>> {
        let YamlData::Mapping(m) = &node.data else {
            self.error(
                node,
                path,
                format!(
                    "expected a mapping (`key: value` lines), found {}",
                    kind(node)
                ),
            );
            return None;
        };
        let mut entries = Vec::with_capacity(m.len());
        for (k, v) in m {
            match &k.data {
                YamlData::Value(Scalar::String(s)) => entries.push((s.clone(), k, v)),
                _ => self.error(k, path, format!("keys must be strings, found {}", kind(k))),
            }
        }
        Some(Map {
            path: path.to_string(),
            entries,
            known: Vec::new(),
        })
    }

    /// The items of a list with their paths; reports when the node is not a list.
    pub(crate) fn seq<'y>(
        &mut self,
        node: &'y Node<'y>,
        path: &str,
    ) -> Vec<(&'y Node<'y>, String)> {
        match &node.data {
            YamlData::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (n, format!("{path}[{i}]")))
                .collect(),
            _ => {
                self.error(node, path, format!("expected a list, found {}", kind(node)));
                Vec::new()
            }
        }
    }

    /// A string, after `${env:}` / `${file:}` interpolation. Numbers and booleans are taken as
    /// their text, so `name: 2024` works.
    pub(crate) fn text(&mut self, node: &Node<'_>, path: &str) -> Option<Text> {
        let raw = match &node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            YamlData::Value(Scalar::Integer(i)) => i.to_string(),
            YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
            YamlData::Value(Scalar::FloatingPoint(f)) => f.to_string(),
            _ => {
                self.error(
                    node,
                    path,
                    format!("expected a string, found {}", kind(node)),
                );
                return None;
            }
        };
        self.interpolate(node, path, &raw)
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty(&mut self, node: &Node<'_>, path: &str, what: &str) -> Option<Text> {
        let t = self.text(node, path)?;
        if t.value.trim().is_empty() {
            let msg = if t.is_referenced() {
                format!("{t} is empty; {what} must not be empty")
            } else {
                format!("{what} must not be empty")
            };
            self.error(node, path, msg);
            return None;
        }
        Some(t)
    }

    fn interpolate(&mut self, node: &Node<'_>, path: &str, raw: &str) -> Option<Text> {
        if !raw.contains('$') {
            return Some(Text {
                value: raw.to_string(),
                reference: None,
            });
        }
        let mut out = String::with_capacity(raw.len());
        let mut reference = None;
        let mut rest = raw;
        let mut ok = true;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
                continue;
            }
            let Some(body) = after.strip_prefix("${") else {
                out.push('$');
                rest = &after[1..];
                continue;
            };
            let Some(end) = body.find('}') else {
                self.error(node, path, "unterminated `${`: write `${env:NAME}` or `${file:PATH}` (`$${` for a literal `${`)");
                return None;
            };
            let reference_text = &body[..end];
            rest = &body[end + 1..];
            match self.resolve(reference_text) {
                Ok(v) => out.push_str(&v),
                Err(msg) => {
                    self.error(node, path, msg);
                    ok = false;
                }
            }
            reference.get_or_insert_with(|| format!("${{{reference_text}}}"));
        }
        out.push_str(rest);
        ok.then_some(Text {
            value: out,
            reference,
        })
    }

    fn resolve(&self, reference: &str) -> Result<String, String> {
        if let Some(name) = reference.strip_prefix("env:") {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{env:{name}}}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
                ));
            }
            return (self.env)(name).ok_or_else(|| {
                format!(
                    "environment variable `{name}` is not set (referenced as `${{env:{name}}}`)"
                )
            });
        }
        if let Some(file) = reference.strip_prefix("file:") {
            if file.is_empty() {
                return Err("`${file:}` needs a path: `${file:/run/secrets/NAME}`".to_string());
            }
            let path = self.base_dir.join(file);
            return read_reference_file(&path).map_err(|e| {
                format!(
                    "cannot read `{}` (referenced as `${{file:{file}}}`): {e}",
                    path.display()
                )
            });
        }
        Err(format!(
            "unknown reference `${{{reference}}}`: use `${{env:NAME}}` or `${{file:PATH}}`"
        ))
    }

    /// A duration with a unit: `500ms`, `5s`, `5m`, `1h`, `1d`, or a sum like `1m30s`.
    pub(crate) fn duration(&mut self, node: &Node<'_>, path: &str) -> Option<Duration> {
        if let YamlData::Value(Scalar::Integer(i)) = &node.data {
            self.error(
                node,
                path,
                format!("`{i}` has no unit: write `{i}s`, `{i}ms`, `{i}m` or `{i}h`"),
            );
            return None;
        }
        let t = self.text(node, path)?;
        match parse_duration(t.value.trim()) {
            Some(d) => Some(d),
            None => {
                self.error(
                    node,
                    path,
                    format!("{t} is not a duration: write e.g. `500ms`, `5s`, `5m` or `1h`"),
                );
                None
            }
        }
    }

    /// A size in bytes: `65536`, `256KiB`, `1MiB`, `1GiB` (`KB`/`MB`/`GB` are powers of 1000).
    pub(crate) fn size(&mut self, node: &Node<'_>, path: &str) -> Option<u64> {
        if let YamlData::Value(Scalar::Integer(i)) = &node.data
            && let Ok(v) = u64::try_from(*i)
        {
            return Some(v);
        }
        let t = self.text(node, path)?;
        match parse_size(t.value.trim()) {
            Some(v) => Some(v),
            None => {
                self.error(
                    node,
                    path,
                    format!("{t} is not a size: write e.g. `65536`, `256KiB` or `1MiB`"),
                );
                None
            }
        }
    }

    /// A non-negative integer within `range`.
    pub(crate) fn integer(
        &mut self,
        node: &Node<'_>,
        path: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        let value = match &node.data {
            YamlData::Value(Scalar::Integer(i)) => u64::try_from(*i).ok(),
            _ => self
                .text(node, path)
                .and_then(|t| t.value.trim().parse::<u64>().ok()),
        };
        match value {
            Some(v) if range.contains(&v) => Some(v),
            _ => {
                self.error(
                    node,
                    path,
                    format!(
                        "expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    /// A socket address `IP:PORT` (`[::1]:8443` for IPv6).
    pub(crate) fn socket_addr(&mut self, node: &Node<'_>, path: &str) -> Option<SocketAddr> {
        let t = self.text(node, path)?;
        match t.value.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    node,
                    path,
                    format!(
                        "{t} is not an `IP:PORT` address: write e.g. `0.0.0.0:8443` or `[::]:8443`"
                    ),
                );
                None
            }
        }
    }

    /// A network in CIDR form, or a single address (taken as /32 or /128). Leading zeros
    /// (`010.0.0.1`, read as octal by some tools) are rejected, as are host bits after the prefix.
    pub(crate) fn network(&mut self, node: &Node<'_>, path: &str) -> Option<IpNet> {
        let t = self.text(node, path)?;
        let s = t.value.trim();
        match parse_network(s) {
            Ok(net) => Some(net),
            Err(why) => {
                self.error(node, path, format!("{t} {why}"));
                None
            }
        }
    }

    /// A list of networks.
    pub(crate) fn networks(&mut self, node: &Node<'_>, path: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (item, p) in self.seq(node, path) {
            if let Some(n) = self.network(item, &p) {
                out.push(n);
            }
        }
        out
    }

    /// A list of strings.
    pub(crate) fn texts(
        &mut self,
        node: &Node<'_>,
        path: &str,
    ) -> Vec<(Text, Option<Location>, String)> {
        let mut out = Vec::new();
        for (item, p) in self.seq(node, path) {
            if let Some(t) = self.text(item, &p) {
                out.push((t, location(item), p));
            }
        }
        out
    }

    /// A file path; relative paths are taken from the config file's folder.
    pub(crate) fn file_path(&mut self, node: &Node<'_>, path: &str) -> Option<PathBuf> {
        let t = self.non_empty(node, path, "a file path")?;
        Some(self.relative(t.value.trim()))
    }

    /// `path` taken from the config file's folder when relative (for built-in default paths,
    /// so that leaving a path out means the same as writing its default).
    pub(crate) fn relative(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }
}

fn read_reference_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_REFERENCED_FILE {
        return Err(format!("larger than {MAX_REFERENCED_FILE} bytes"));
    }
    let mut s = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // Secret files usually end with a newline that is not part of the secret.
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

/// Parses `500ms`, `5s`, `5m`, `1h`, `1d` and sums of them like `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86400)?),
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part)?;
    }
    Some(total)
}

/// Parses `65536`, `512B`, `256KiB`, `1MiB`, `1GiB`, `10KB`, `1MB`, `1GB`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let mult: u64 = match s[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a CIDR network or a bare address, strictly.
pub(crate) fn parse_network(s: &str) -> Result<IpNet, &'static str> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    // std's parser already refuses leading zeros in IPv4 octets; say why in the message.
    let ip: IpAddr = addr.parse().map_err(|_| {
        let octets = || addr.split('.');
        if octets().any(|o| o.starts_with("0x") || o.starts_with("0X")) {
            "has a hexadecimal octet (some tools read `0x7f` as 127): write the address in decimal"
        } else if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
            "is a bare number (some tools read `2130706433` as 127.0.0.1): write the address as four octets"
        } else if octets().count() < 4 && octets().all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit())) {
            "is a shortened IPv4 address (some tools read `127.1` as 127.0.0.1): write all four octets"
        } else if octets().any(|o| o.len() > 1 && o.starts_with('0')) {
            "has an octet with a leading zero (some tools read that as octal): write the address without leading zeros"
        } else {
            "is not an IP address or CIDR network: write e.g. `10.0.0.0/8`, `192.0.2.7` or `2001:db8::/32`"
        }
    })?;
    let net = match prefix {
        None => IpNet::from(ip),
        Some(p) => {
            let bits: u8 = p
                .parse()
                .ok()
                .filter(|_| !(p.len() > 1 && p.starts_with('0')))
                .ok_or("has a prefix length that is not a number: write e.g. `/24`")?;
            IpNet::new(ip, bits).map_err(|_| "has a prefix length longer than the address (at most /32 for IPv4, /128 for IPv6)")?
        }
    };
    if net.network() != ip {
        return Err(
            "has bits set after the prefix length: write the network address (e.g. `10.1.0.0/16`, not `10.1.2.3/16`)",
        );
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "1.5s",
            "-1s",
            "5 s",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("256KiB"), Some(256 << 10));
        assert_eq!(parse_size("10KB"), Some(10_000));
        assert_eq!(parse_size("42"), Some(42));
        for bad in ["", "MiB", "1 TiB", "1.5MiB", "-1", "99999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(
            parse_network("10.0.0.0/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_network("192.0.2.7").map(|n| n.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            parse_network("2001:db8::/32").map(|n| n.to_string()),
            Ok("2001:db8::/32".into())
        );
        assert_eq!(
            parse_network("010.0.0.1").map(|n| n.to_string()),
            Err(
                "has an octet with a leading zero (some tools read that as octal): write the address without leading zeros"
            )
        );
        assert_eq!(
            parse_network("0x7f.0.0.1").map(|n| n.to_string()),
            Err(
                "has a hexadecimal octet (some tools read `0x7f` as 127): write the address in decimal"
            )
        );
        for bad in [
            "010.0.0.1",
            "10.0.0.0/33",
            "10.1.2.3/16",
            "10.0.0.0/08",
            "1.2.3",
            "0x7f.0.0.1",
            "10.0.0.0/",
            "",
        ] {
            assert!(parse_network(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn typo_suggestion() {
        assert_eq!(
            closest("alow_ips", &["allow_ips", "path"]),
            Some("allow_ips")
        );
        assert_eq!(closest("zzzzzz", &["allow_ips", "path"]), None);
    }
}
