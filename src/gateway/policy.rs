//! Per-client policy: the accounts a client may act for, its API-method rules (`*` globs compared
//! ignoring letter case, `deny_methods`, `read_only`). [`authorize`] is the pipeline's policy
//! stage; refusals are 403 `client_forbidden`, counted in
//! `voxproxy_client_policy_refusals_total`. (A client's `rate` is [`crate::limits`]'.)

use http::request::Parts;

use super::clients::Client;
use super::identity::Identity;
use super::method;
use crate::account::AccountId;
use crate::body::Body;
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::Metrics;
use crate::target::is_method_name;

/// The policy stage: may this client act for `account` (`fallback` is the first credentials
/// file's account, the only one a client without `accounts` may use), and call the request's API
/// method? With method rules in force the method is looked for in the path (`path_method`), the
/// query and the body (`body` is then replaced by one that replays what was read). Returns the
/// method found, for the access log.
pub async fn authorize(
    id: &Identity,
    account: AccountId,
    fallback: AccountId,
    path_method: Option<&str>,
    parts: &Parts,
    body: &mut Body,
    metrics: &Metrics,
) -> Result<Option<String>, ProxyError> {
    let client = &id.client;
    let refused = |reason: &'static str, e: ProxyError| {
        metrics.policy_refusal(reason, &client.name);
        e
    };
    client
        .check_account(account, fallback)
        .map_err(|e| refused("account", e))?;
    if !client.has_method_rules() {
        return Ok(None);
    }
    let detected = method::detect(
        parts,
        path_method,
        std::mem::replace(body, crate::body::empty()),
    )
    .await;
    *body = detected.body;
    // Two places naming different methods is a method refusal too.
    let found = detected.method.map_err(|e| refused("method", e))?;
    client
        .check_method(found.as_deref())
        .map_err(|e| refused("method", e))?;
    Ok(found)
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
    /// 403 `client_forbidden` unless the client may act for `account`. A client without
    /// `accounts` may act for the first credentials file's account only.
    pub fn check_account(
        &self,
        account: AccountId,
        first_credentials_account: AccountId,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::glob::Glob;

    fn client(read_only: bool, methods: &[&str], deny: &[&str], _rate: Option<&str>) -> Client {
        Client {
            name: "app".into(),
            accounts: vec![acct(5), acct(6)],
            methods: methods.iter().map(|m| Glob::parse(m).unwrap()).collect(),
            deny_methods: deny.iter().map(|m| Glob::parse(m).unwrap()).collect(),
            read_only,
            limit: None,
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

    fn acct(n: u64) -> AccountId {
        AccountId::new(n).unwrap()
    }

    #[test]
    fn accounts() {
        let c = client(false, &[], &[], None);
        assert!(c.check_account(acct(6), acct(1)).is_ok());
        let e = c.check_account(acct(1), acct(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientForbidden);
        assert!(e.msg.contains("account 1"), "{}", e.msg);
        let mut d = client(false, &[], &[], None);
        d.accounts.clear();
        assert!(d.check_account(acct(9), acct(9)).is_ok());
        assert!(d.check_account(acct(5), acct(9)).is_err());
    }
}
