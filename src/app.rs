//! The binary's body: parse, dispatch to a command, print errors as one line with the whole cause
//! chain, and map the outcome to the contract's exit codes (0 success, 1 runtime failure,
//! 2 usage or configuration error).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::cli::{self, Cli, Command, TokenArgs};
use crate::config::{self, Env, LogFormat, ProcessEnv, Settings};
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::proxy::{ConnInfo, CredentialSet, Proxy};
use crate::token::{self, CacheConfig, Claims, Signer, SystemClock, TokenCache};

/// Most child-account tokens cached at once.
const MAX_CHILD_TOKENS: usize = 10_000;

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Usage or configuration error: exit 2.
    Config(anyhow::Error),
    /// Runtime failure: exit 1.
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Runtime(e.into())
    }
}

/// Shorthand for configuration errors.
pub fn config_err(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Config(e.into())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match cli::try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli, Arc::new(ProcessEnv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("voxproxy: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("voxproxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run a parsed command line; `env` is kept for reloading the settings.
pub fn run(cli: Cli, env: Arc<dyn Env>) -> Result<(), Failure> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = cli::command();
            clap_complete::generate(*shell, &mut cmd, "voxproxy", &mut std::io::stdout());
            Ok(())
        }
        Command::Token(args) => {
            let settings = Settings::resolve(&cli.settings, &*env).map_err(config_err)?;
            init_logging(&settings);
            token_command(&settings, args)
        }
        // The bodies of these land with the command modules; refuse rather than pretend.
        Command::Check(args) if args.online || args.print_config => Err(config_err(
            anyhow::anyhow!("check --online and --print-config are not in this build yet"),
        )),
        Command::Probe(_) => Err(Failure::Runtime(anyhow::anyhow!(
            "probe is not in this build yet"
        ))),
        Command::Check(_) => {
            // `check` reports every problem, including each bad setting.
            let settings = Settings::resolve(&cli.settings, &*env);
            if let Ok(s) = &settings {
                init_logging(s);
            }
            crate::check::run(settings, &mut std::io::stdout())
        }
        Command::Serve => {
            let settings = Settings::resolve(&cli.settings, &*env).map_err(config_err)?;
            init_logging(&settings);
            serve(settings, cli.settings.clone(), env)
        }
        Command::Client(cmd) => {
            let settings = Settings::resolve(&cli.settings, &*env).map_err(config_err)?;
            crate::gateway::admin::run(&settings, cmd, &mut std::io::stdout())
        }
        Command::Tls(crate::cli::TlsCommand::Init { dir, names, force }) => crate::tls::init(
            std::path::Path::new(dir),
            names,
            *force,
            &mut std::io::stdout(),
        ),
    }
}

/// Set up tracing on stderr: JSON lines or text, filtered by `log_level`.
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = settings
        .log_format
        .unwrap_or(if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Load every credentials file, warning about loose permissions.
pub fn load_credentials(settings: &Settings) -> Result<Vec<Credentials>, Vec<anyhow::Error>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in &settings.credentials {
        match Credentials::load(path) {
            Ok((creds, loose)) => {
                if loose {
                    tracing::warn!(
                        path = %path.display(),
                        "credentials file is readable by group or others; chmod 600 it"
                    );
                }
                out.push(creds);
            }
            Err(e) => errors.push(anyhow::Error::new(e).context(format!(
                "credentials (from {})",
                settings.origin("credentials")
            ))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn join_errors(errors: Vec<anyhow::Error>) -> anyhow::Error {
    let text: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
    anyhow::anyhow!(text.join("; "))
}

fn token_command(settings: &Settings, args: &TokenArgs) -> Result<(), Failure> {
    let account = match &args.account {
        None => None,
        Some(raw) => Some(config::parse_account_id(raw).ok_or_else(|| {
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
    let creds = load_credentials(settings).map_err(|e| config_err(join_errors(e)))?;
    let account = account.unwrap_or(creds[0].account_id);
    let signer = creds
        .iter()
        .find(|c| c.account_id == account)
        .unwrap_or(&creds[0]);
    let now = token::Clock::now(&SystemClock);
    let jwt = signer
        .mint(&Claims::new(account, now, ttl))
        .context("minting the token")?;
    let mut out = std::io::stdout().lock();
    if args.raw {
        writeln!(out, "{jwt}")?;
    } else {
        writeln!(out, "Authorization: Bearer {jwt}")?;
    }
    out.flush()?;
    Ok(())
}

/// The signers the token cache uses, from loaded credentials.
pub fn signers(creds: &[Credentials]) -> Vec<(u64, Arc<dyn Signer>)> {
    creds
        .iter()
        .map(|c| (c.account_id, Arc::new(c.clone()) as Arc<dyn Signer>))
        .collect()
}

fn serve(
    settings: Settings,
    flags: config::SettingsArgs,
    env: Arc<dyn Env>,
) -> Result<(), Failure> {
    // Everything is validated before any socket is bound.
    settings
        .check_listen_rule(&settings.listen)
        .map_err(config_err)?;
    let creds = load_credentials(&settings).map_err(|e| config_err(join_errors(e)))?;
    let client = crate::upstream::client(&settings).map_err(config_err)?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            crate::tls::Inbound::with_client_certs(
                crate::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: settings.tls_client_ca.clone(),
                },
                // In gateway mode a certificate is one of three ways in; without clients it is
                // the only thing that tells who a client is.
                if settings.clients.is_some() {
                    crate::tls::ClientCerts::Optional
                } else {
                    crate::tls::ClientCerts::Required
                },
            )
            .map_err(config_err)?,
        )),
        _ => None,
    };
    let gateway = match &settings.clients {
        None => None,
        Some(path) => Some(Arc::new(
            crate::gateway::Gateway::load(path, creds[0].account_id).map_err(config_err)?,
        )),
    };

    // One worker: a current-thread runtime. Every task then runs on the thread that polls the
    // sockets, with no work-stealing queues or cross-thread wake-ups to pay for.
    let mut rt = match settings.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let hup = crate::reload::hangup_signal();
        let metrics = Arc::new(Metrics::new());
        let tokens = TokenCache::new(
            CacheConfig {
                ttl: settings.token_ttl,
                refresh_before: settings.token_refresh_before,
                max_children: MAX_CHILD_TOKENS,
            },
            signers(&creds),
            Arc::new(SystemClock),
            Some(metrics.clone() as Arc<dyn token::CacheObserver>),
        );
        crate::reload::record_credentials(&metrics, &creds);
        let credentials = Arc::new(ArcSwap::from_pointee(CredentialSet { list: creds }));
        let proxy = Arc::new(Proxy::new(
            &settings,
            client,
            credentials,
            tokens.clone(),
            metrics,
            gateway,
        ));

        let main = crate::server::bind(&settings.listen)
            .with_context(|| format!("listen {} (from {})", settings.listen, settings.origin("listen")))
            .map_err(|e| {
                if settings.listen == config::ListenAddr::Systemd {
                    config_err(e)
                } else {
                    Failure::Runtime(e)
                }
            })?;
        for l in &main {
            settings.check_listen_rule(&l.addr()).map_err(config_err)?;
            if settings.listen_is_open(&l.addr()) {
                tracing::warn!(listen = %l.describe(), "serving a non-loopback address without gateway clients (allow_unauthenticated_network): anyone who can reach it acts with your key");
            } else if !l.addr().is_loopback() && tls.is_none() {
                tracing::warn!(listen = %l.describe(), "plain HTTP on a non-loopback address: client keys travel in clear; consider tls_cert/tls_key");
            }
        }
        // Admin paths on a non-loopback main listener with gateway clients would be reachable by
        // every app; they need admin_listen there.
        let main_admin = settings.admin_listen.is_none()
            && !(proxy.gateway.is_some() && main.iter().any(|l| !l.addr().is_loopback()));
        let mut endpoints: Vec<crate::server::Endpoint> = main
            .into_iter()
            .map(|listener| crate::server::Endpoint {
                listener,
                info: ConnInfo {
                    admin: main_admin,
                    proxy: true,
                    peer_cert: None,
                },
                tls: tls.clone(),
            })
            .collect();
        if let Some(addr) = &settings.admin_listen {
            for listener in crate::server::bind(addr)
                .with_context(|| format!("admin_listen {addr} (from {})", settings.origin("admin_listen")))?
            {
                endpoints.push(crate::server::Endpoint {
                    listener,
                    info: ConnInfo {
                        admin: true,
                        proxy: false,
                        peer_cert: None,
                    },
                    tls: None,
                });
            }
        }
        for ep in &endpoints {
            tracing::info!(
                listen = %ep.listener.describe(),
                admin = ep.info.admin,
                proxy = ep.info.proxy,
                tls = ep.tls.is_some(),
                upstream = %settings.upstream,
                "listening"
            );
        }

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let refresher = tokio::spawn(tokens.clone().run_refresher(wait_stop(stop_rx.clone())));
        let reloader = tokio::spawn(crate::reload::run(
            proxy.clone(),
            settings.clone(),
            flags,
            env,
            tls.clone(),
            hup,
            wait_stop(stop_rx.clone()),
        ));
        // Readiness: every credentials file has minted. Until then, retry in the background.
        let warm_proxy = proxy.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(200);
            loop {
                let errors = warm_proxy.tokens.warm().await;
                if errors.is_empty() {
                    tracing::info!("every credentials file has minted a token; ready");
                    crate::reload::notify_systemd(&[sd_notify::NotifyState::Ready]);
                    return;
                }
                for e in errors {
                    tracing::error!(error = %anyhow::Error::new(e).chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": "), "cannot mint a token; not ready");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        });

        let stopping_proxy = proxy.clone();
        let shutdown = async move {
            shutdown_signal().await;
            stopping_proxy.shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
            crate::reload::notify_systemd(&[sd_notify::NotifyState::Stopping]);
            tracing::info!("shutdown signal received");
        };
        crate::server::run(proxy, endpoints, shutdown, settings.shutdown_grace).await;
        let _ = stop_tx.send(true);
        let _ = refresher.await;
        let _ = reloader.await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_stop(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
