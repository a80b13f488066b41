//! API-method patterns: letters, digits, `_` and `*` (any run of characters), matched ignoring
//! ASCII letter case. The syntax is checked here, so a pattern says exactly what the contract
//! allows; globset does the matching.

use std::fmt;

/// Longest pattern accepted (API method names are at most 64 characters).
const MAX_GLOB_LEN: usize = 64;

/// A method pattern such as `Get*` or `SetUserInfo`.
#[derive(Clone, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Glob {
    text: Box<str>,
    matcher: globset::GlobMatcher,
}

impl TryFrom<String> for Glob {
    type Error = String;
    fn try_from(raw: String) -> Result<Glob, String> {
        Glob::parse(&raw)
    }
}

impl Glob {
    /// Parse a pattern such as `Get*` or `SetUserInfo`.
    pub fn parse(raw: &str) -> Result<Glob, String> {
        if raw.is_empty() {
            return Err("an empty pattern matches no method".to_owned());
        }
        if raw.len() > MAX_GLOB_LEN {
            return Err(format!("is longer than {MAX_GLOB_LEN} characters"));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '*'))
        {
            return Err(format!(
                "`{raw}` holds {bad:?}: a pattern is letters, digits, `_` and `*`"
            ));
        }
        let glob = globset::GlobBuilder::new(raw)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("`{raw}`: {e}"))?;
        Ok(Glob {
            text: raw.into(),
            matcher: glob.compile_matcher(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches, ignoring ASCII letter case.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.text == other.text
    }
}

impl Eq for Glob {}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ignoring_case() {
        let g = |p: &str| Glob::parse(p).unwrap();
        assert!(g("Get*").matches("GetUsers"));
        assert!(g("Get*").matches("getusers"));
        assert!(g("Get*").matches("Get"));
        assert!(!g("Get*").matches("SetUserInfo"));
        assert!(!g("Get*").matches("AGetX"));
        assert!(g("*User*").matches("SetUserInfo"));
        assert!(g("*user*").matches("DelUser"));
        assert!(g("*Info").matches("SetUserInfo"));
        assert!(!g("*Info").matches("SetUserInfos"));
        assert!(g("SetUserInfo").matches("setuserinfo"));
        assert!(!g("SetUserInfo").matches("SetUserInfo2"));
        assert!(g("*").matches("Anything"));
        assert!(g("**").matches(""));
        assert!(g("A*B*C").matches("AxxBxxC"));
        assert!(g("A*B*C").matches("ABC"));
        assert!(!g("A*B*C").matches("AxxCxxB"));
        assert!(g("a*a*a*b").matches("aaaaaaaaaaaaaaaab"));
        assert!(!g("a*a*a*b").matches("aaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn syntax() {
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("Get?").is_err());
        assert!(Glob::parse("Get Users").is_err());
        assert!(Glob::parse("Get[A]").is_err());
        assert!(Glob::parse("Get{A,B}").is_err());
        assert!(Glob::parse(&"a".repeat(65)).is_err());
        assert!(Glob::parse("Get_*_2").is_ok());
    }
}
