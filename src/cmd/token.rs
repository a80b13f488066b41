//! `voxproxy token`: print `Authorization: Bearer <jwt>` (or the JWT alone with `--raw`) for the
//! configured service account or a child account, exactly the line the documented `token.sh`
//! prints, so `curl -H "$(voxproxy token)" ...` works.

use std::io::Write;

use anyhow::Context as _;

use crate::account::AccountId;
use crate::cli::TokenArgs;
use crate::config::{self, Settings};
use crate::credentials;
use crate::error::{Failure, config_err};
use crate::token::{Claims, Clock as _, Signer as _, SystemClock};

/// Run `token`, writing the line to `out`.
pub fn run(settings: &Settings, args: &TokenArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let account = match &args.account {
        None => None,
        Some(raw) => Some(AccountId::parse(raw).ok_or_else(|| {
            config_err(anyhow::anyhow!(
                "--account {raw}: must be a positive decimal integer"
            ))
        })?),
    };
    let ttl = match &args.ttl {
        None => settings.token_ttl,
        Some(raw) => config::parse_ttl_text(raw)
            .map_err(|reason| config_err(anyhow::anyhow!("--ttl {raw}: {reason}")))?,
    };
    let set = credentials::load_all(&settings.credentials, &settings.origin("credentials"))
        .map_err(|e| config_err(super::out::join_errors(e)))?;
    let account = account.unwrap_or(set.default_account());
    let signer = set
        .list()
        .iter()
        .find(|c| c.account_id == account)
        .unwrap_or(&set.list()[0]);
    let jwt = signer
        .mint(&Claims::new(account, SystemClock.now(), ttl))
        .context("minting the token")?;
    let line = if args.raw {
        format!("{jwt}\n")
    } else {
        format!("Authorization: Bearer {jwt}\n")
    };
    super::out::write_out(out, line.as_bytes())
}
