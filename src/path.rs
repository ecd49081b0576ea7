//! Canonical request paths. Routes match exact paths only, so anything a server or framework
//! could normalise into a different path (`..`, `%2e`, encoded `/`, `//`, lowercase escapes) is
//! refused with 400 instead of being matched loosely. Route paths in the config pass the same
//! check. Pure; tests at the bottom.

use std::fmt;

/// Why a path is not canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    NotAbsolute,
    /// Has an empty segment (`//`).
    EmptySegment,
    /// Has a `.` or `..` segment.
    DotSegment,
    /// Has a `\`.
    Backslash,
    /// Has a `%` not followed by two hex digits.
    BadEscape,
    /// Percent-encodes a character that must appear literally (unreserved, `/`, `\`) or a
    /// control character, or uses lowercase hex.
    NeedlessEscape,
}

impl PathError {
    /// A short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::EmptySegment => "path_empty_segment",
            PathError::DotSegment => "path_dot_segment",
            PathError::Backslash => "path_backslash",
            PathError::BadEscape => "path_bad_escape",
            PathError::NeedlessEscape => "path_needless_escape",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "must start with `/`",
            PathError::EmptySegment => "must not contain `//`",
            PathError::DotSegment => "must not contain `.` or `..` segments",
            PathError::Backslash => "must not contain `\\`",
            PathError::BadEscape => "has a `%` not followed by two hex digits",
            PathError::NeedlessEscape => {
                "has a needless or ambiguous percent-escape (an escaped `.`, `/`, `\\`, letter, digit, `-`, `_`, `~` or control character, or lowercase hex)"
            }
        })
    }
}

/// Checks that `path` (without query) is in canonical form.
pub fn check(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if path == "/" {
        return Ok(());
    }
    // A final empty segment (a trailing `/`) is canonical: `/a/` is simply another path.
    let inner = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    for segment in inner.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathError::BadEscape);
                };
                let (Some(hv), Some(lv)) = (hex(h), hex(l)) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = hv << 4 | lv;
                let needless = decoded.is_ascii_alphanumeric()
                    || matches!(decoded, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\')
                    || decoded < 0x20
                    || decoded == 0x7f
                    || h.is_ascii_lowercase()
                    || l.is_ascii_lowercase();
                if needless {
                    return Err(PathError::NeedlessEscape);
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &[(&str, Result<(), PathError>)] = &[
        ("/", Ok(())),
        ("/hooks/stripe", Ok(())),
        ("/hooks/stripe/", Ok(())),
        ("/hooks/stripe//", Err(PathError::EmptySegment)),
        ("/hooks//stripe", Err(PathError::EmptySegment)),
        ("//hooks", Err(PathError::EmptySegment)),
        ("/hooks/../admin", Err(PathError::DotSegment)),
        ("/hooks/./stripe", Err(PathError::DotSegment)),
        ("/hooks/..", Err(PathError::DotSegment)),
        ("/hooks/%2e%2e/x", Err(PathError::NeedlessEscape)),
        ("/hooks/%2E%2E/x", Err(PathError::NeedlessEscape)),
        ("/hooks%2fstripe", Err(PathError::NeedlessEscape)),
        ("/hooks%2Fstripe", Err(PathError::NeedlessEscape)),
        ("/hooks/%73tripe", Err(PathError::NeedlessEscape)),
        ("/hooks/%5c", Err(PathError::NeedlessEscape)),
        ("/hooks/%00", Err(PathError::NeedlessEscape)),
        ("/hooks/a%20b", Ok(())),
        ("/hooks/a%2", Err(PathError::BadEscape)),
        ("/hooks/a%zz", Err(PathError::BadEscape)),
        ("/hooks/a\\b", Err(PathError::Backslash)),
        ("hooks", Err(PathError::NotAbsolute)),
        ("", Err(PathError::NotAbsolute)),
        ("*", Err(PathError::NotAbsolute)),
    ];

    #[test]
    fn table() {
        for (path, want) in CASES {
            assert_eq!(check(path), *want, "{path:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = check(&s);
        }

        #[test]
        fn canonical_paths_have_no_dot_segments(s in "(/[a-z.%2E]{0,4}){1,4}") {
            if check(&s).is_ok() {
                proptest::prop_assert!(!s.split('/').any(|seg| seg == "." || seg == ".."));
                proptest::prop_assert!(!s.contains("%2E") && !s.contains("//"));
            }
        }
    }
}
