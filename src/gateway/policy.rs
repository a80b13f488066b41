//! Per-client policy: the accounts a client may act for, its API-method rules (`*` globs compared
//! ignoring letter case, `deny_methods`, `read_only`) and its rate limit (governor; the burst is
//! the rate's, N unless `; burst M` says otherwise).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::Client;
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::is_method_name;

/// Longest glob accepted (API method names are at most 64 characters).
const MAX_GLOB_LEN: usize = 64;

/// An API-method pattern: letters, digits, `_` and `*` (any run of characters), matched ignoring
/// ASCII letter case.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob(Box<str>);

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
        Ok(Glob(raw.into()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches, ignoring ASCII letter case.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` matches any run of bytes (including none); everything else matches itself ignoring ASCII
/// case. Greedy with backtracking to the last `*`: linear in practice, never exponential.
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

pub use crate::config::{Per, Rate};

/// governor's quota for a rate: `n` per period, refilled evenly, with the rate's burst.
fn quota(rate: Rate) -> Quota {
    match rate.per {
        Per::Second => Quota::per_second(rate.n),
        Per::Minute => Quota::per_minute(rate.n),
        Per::Hour => Quota::per_hour(rate.n),
    }
    .allow_burst(rate.burst)
}

/// A client's rate limiter. Shared between the client sets before and after a reload when the
/// client's name and rate are unchanged, so a reload does not refill anyone's burst.
pub struct Limiter {
    /// What it enforces.
    pub rate: Rate,
    inner: DefaultDirectRateLimiter,
}

impl Limiter {
    /// A full bucket for `rate`.
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            inner: RateLimiter::direct_with_clock(quota(rate), DefaultClock::default()),
        }
    }

    /// `Ok` when a request may pass now; else how long until one may.
    pub fn check(&self) -> Result<(), Duration> {
        self.inner
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.inner.clock().now()))
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limiter({})", self.rate)
    }
}

/// A method name as it may appear in a message: printable, bounded.
fn shown(method: &str) -> String {
    method
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

fn forbidden(msg: String) -> ProxyError {
    ProxyError::new(ErrorKind::ClientForbidden, msg)
}

impl Client {
    /// The account a request acts for when it names none: the first of `accounts`, else the
    /// first credentials file's account.
    pub fn default_account(&self, first_credentials_account: u64) -> u64 {
        self.accounts
            .first()
            .copied()
            .unwrap_or(first_credentials_account)
    }

    /// 403 `client_forbidden` unless the client may act for `account`. A client without
    /// `accounts` may act for the first credentials file's account only.
    pub fn check_account(
        &self,
        account: u64,
        first_credentials_account: u64,
    ) -> Result<(), ProxyError> {
        let allowed = if self.accounts.is_empty() {
            account == first_credentials_account
        } else {
            self.accounts.contains(&account)
        };
        if allowed {
            Ok(())
        } else {
            Err(forbidden(format!(
                "client {} may not act for account {account}",
                self.name
            )))
        }
    }

    /// Whether any method rule applies; then the method must be found, or the request is refused.
    pub fn has_method_rules(&self) -> bool {
        self.read_only || !self.methods.is_empty() || !self.deny_methods.is_empty()
    }

    /// 403 `client_forbidden` unless the method is allowed: not denied, matching `methods` when
    /// it is set, starting with `Get` when `read_only`. With a rule in force, a request whose
    /// method was not found, or whose method is not an API method name, is refused.
    pub fn check_method(&self, method: Option<&str>) -> Result<(), ProxyError> {
        if !self.has_method_rules() {
            return Ok(());
        }
        let Some(method) = method else {
            return Err(forbidden(format!(
                "client {} may call only some API methods, and the method of this request could not be found: name it in the path (/platform_api/<Method>/) or in a `cmd` parameter",
                self.name
            )));
        };
        // Anything but a plain name could be read differently upstream (a deny rule evaded by
        // " DelUser"): refuse it outright.
        if !is_method_name(method) {
            return Err(forbidden(format!(
                "`{}` is not an API method name",
                shown(method)
            )));
        }
        if self.read_only && !method.as_bytes()[..method.len().min(3)].eq_ignore_ascii_case(b"get")
        {
            return Err(forbidden(format!(
                "client {} is read-only: it may call Get* methods only, not {method}",
                self.name
            )));
        }
        if self.deny_methods.iter().any(|g| g.matches(method)) {
            return Err(forbidden(format!(
                "client {} may not call {method} (deny_methods)",
                self.name
            )));
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|g| g.matches(method)) {
            return Err(forbidden(format!(
                "client {} may not call {method} (not in its methods)",
                self.name
            )));
        }
        Ok(())
    }

    /// 429 `client_rate_limited` with `Retry-After` when over the client's rate.
    pub fn check_rate(&self) -> Result<(), ProxyError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check().map_err(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ProxyError::new(
                ErrorKind::ClientRateLimited,
                format!(
                    "client {} is over its rate of {}; retry after {} s",
                    self.name,
                    limiter.rate,
                    secs.max(1)
                ),
            )
            .with_retry_after(secs.max(1))
        })
    }

    /// The limiter, to carry over a reload.
    pub(crate) fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.limiter.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_ignoring_case() {
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
    fn glob_syntax() {
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("Get?").is_err());
        assert!(Glob::parse("Get Users").is_err());
        assert!(Glob::parse("Get[A]").is_err());
        assert!(Glob::parse(&"a".repeat(65)).is_err());
        assert!(Glob::parse("Get_*_2").is_ok());
    }

    #[test]
    fn rates() {
        let r = Rate::parse("20/s").unwrap();
        assert_eq!((r.n.get(), r.per), (20, Per::Second));
        assert_eq!(r.to_string(), "20/s");
        let r = Rate::parse("100/m").unwrap();
        assert_eq!((r.n.get(), r.per), (100, Per::Minute));
        assert_eq!(Rate::parse(" 5 / s ").unwrap().to_string(), "5/s");
        let r = Rate::parse("7/h").unwrap();
        assert_eq!((r.n.get(), r.per, r.burst.get()), (7, Per::Hour, 7));
        assert_eq!(r.to_string(), "7/h");
        let r = Rate::parse("100/m; burst 20").unwrap();
        assert_eq!((r.n.get(), r.per, r.burst.get()), (100, Per::Minute, 20));
        assert_eq!(r.to_string(), "100/m; burst 20");
        assert_eq!(Rate::parse("20/s;burst 20").unwrap().to_string(), "20/s");
        for bad in [
            "",
            "0/s",
            "-1/s",
            "5",
            "5/d",
            "5/s; burst 0",
            "5/s; burst",
            "5/s; burst5",
            "5/s; bursts 5",
            "5/s;",
            "5/sec",
            "/s",
            "1.5/s",
            "+5/s",
            "x/s",
            "5/S",
            "99999999999/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    fn client(read_only: bool, methods: &[&str], deny: &[&str], rate: Option<&str>) -> Client {
        Client {
            name: "app".into(),
            accounts: vec![5, 6],
            methods: methods.iter().map(|m| Glob::parse(m).unwrap()).collect(),
            deny_methods: deny.iter().map(|m| Glob::parse(m).unwrap()).collect(),
            read_only,
            limiter: rate.map(|r| Arc::new(Limiter::new(Rate::parse(r).unwrap()))),
            auth: Default::default(),
        }
    }

    #[test]
    fn method_rules() {
        let open = client(false, &[], &[], None);
        assert!(!open.has_method_rules());
        assert!(open.check_method(None).is_ok());
        assert!(open.check_method(Some("Any thing")).is_ok());

        let ro = client(true, &[], &[], None);
        assert!(ro.has_method_rules());
        assert!(ro.check_method(Some("GetUsers")).is_ok());
        assert!(ro.check_method(Some("getusers")).is_ok());
        let e = ro.check_method(Some("SetUserInfo")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientForbidden);
        assert!(e.msg.contains("SetUserInfo"), "{}", e.msg);
        let e = ro.check_method(None).unwrap_err();
        assert!(e.msg.contains("could not be found"), "{}", e.msg);
        assert!(ro.check_method(Some(" GetUsers")).is_err());
        assert!(ro.check_method(Some("Ge")).is_err());

        let listed = client(false, &["Get*", "SetUserInfo"], &["GetSecret*"], None);
        assert!(listed.check_method(Some("GETUSERS")).is_ok());
        assert!(listed.check_method(Some("setuserinfo")).is_ok());
        assert!(listed.check_method(Some("DelUser")).is_err());
        let e = listed.check_method(Some("GetSecretThing")).unwrap_err();
        assert!(e.msg.contains("deny_methods"), "{}", e.msg);

        let deny_only = client(false, &[], &["Del*"], None);
        assert!(deny_only.check_method(Some("GetUsers")).is_ok());
        assert!(deny_only.check_method(Some("delUser")).is_err());
        assert!(deny_only.check_method(Some("DelUser\0")).is_err());
        assert!(deny_only.check_method(None).is_err());
    }

    #[test]
    fn accounts() {
        let c = client(false, &[], &[], None);
        assert_eq!(c.default_account(1), 5);
        assert!(c.check_account(6, 1).is_ok());
        let e = c.check_account(1, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientForbidden);
        assert!(e.msg.contains("account 1"), "{}", e.msg);
        let mut d = client(false, &[], &[], None);
        d.accounts.clear();
        assert_eq!(d.default_account(9), 9);
        assert!(d.check_account(9, 9).is_ok());
        assert!(d.check_account(5, 9).is_err());
    }

    #[test]
    fn rate_limit_bursts_then_refuses_with_retry_after() {
        let c = client(false, &[], &[], Some("3/m"));
        for _ in 0..3 {
            assert!(c.check_rate().is_ok());
        }
        let e = c.check_rate().unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientRateLimited);
        let after = e.retry_after.unwrap();
        assert!((1..=20).contains(&after), "{after}");
        assert!(client(false, &[], &[], None).check_rate().is_ok());
    }

    #[test]
    fn rate_per_hour_with_a_burst_of_its_own() {
        // 2 an hour with a burst of 5: five at once, then a refusal asking for half an hour.
        let c = client(false, &[], &[], Some("2/h; burst 5"));
        for _ in 0..5 {
            assert!(c.check_rate().is_ok());
        }
        let e = c.check_rate().unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientRateLimited);
        let after = e.retry_after.unwrap();
        assert!((1790..=1800).contains(&after), "{after}");
        assert!(e.msg.contains("2/h; burst 5"), "{}", e.msg);

        // A burst smaller than the rate: only that many at once.
        let c = client(false, &[], &[], Some("100/s; burst 2"));
        assert!(c.check_rate().is_ok());
        assert!(c.check_rate().is_ok());
        assert!(c.check_rate().is_err());
    }
}
