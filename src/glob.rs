//! Event-type and version globs: literal text where `*` matches any run of characters
//! (dots included), so `invoice.*` matches `invoice.paid` and `invoice.payment.failed`.

/// Whether `text` matches `pattern`.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    // split always yields at least one part.
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text must be the literal.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether `text` matches any of `patterns`; an empty list matches everything, and a missing
/// value matches only an empty list.
pub(crate) fn any(patterns: &[String], text: Option<&str>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    text.is_some_and(|t| patterns.iter().any(|p| matches(p, t)))
}

#[cfg(test)]
mod tests {
    use super::{any, matches};
    use proptest::prelude::{prop_assert, proptest};

    #[test]
    fn literal_and_wildcards() {
        let cases = [
            ("invoice.paid", "invoice.paid", true),
            ("invoice.paid", "invoice.paid2", false),
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.payment.failed", true),
            ("invoice.*", "invoice", false),
            ("invoice.*", "customer.invoice.paid", false),
            ("*", "", true),
            ("*", "anything", true),
            ("*.created", "user.created", true),
            ("*.created", "user.created.late", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("2024-*", "2024-06-20", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(matches(p, t), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn lists() {
        assert!(any(&[], None));
        assert!(any(&[], Some("x")));
        let l = vec!["user.*".to_string(), "session.ended".to_string()];
        assert!(any(&l, Some("user.created")));
        assert!(any(&l, Some("session.ended")));
        assert!(!any(&l, Some("session.created")));
        assert!(!any(&l, None));
    }

    proptest! {
        #[test]
        fn a_star_matches_every_text(t in "\\PC{0,40}") {
            prop_assert!(matches("*", &t));
            prop_assert!(matches(&t.replace('*', ""), &t.replace('*', "")));
        }

        #[test]
        fn prefix_star_matches_its_extensions(p in "[a-z.]{0,10}", s in "\\PC{0,20}") {
            let (pattern, text) = (format!("{p}*"), format!("{p}{s}"));
            prop_assert!(matches(&pattern, &text));
        }
    }
}
