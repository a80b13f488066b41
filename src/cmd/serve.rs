//! `voxproxy serve`: validate everything, then bind, then serve until SIGTERM or SIGINT. Nothing
//! is bound before the whole configuration has been checked (listen rule, credentials, upstream
//! roots, TLS files, clients file).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::account;
use crate::cli::SettingsArgs;
use crate::config::{Env, ListenAddr, Settings};
use crate::credentials::{self, CredentialSet};
use crate::error::{Failure, config_err};
use crate::gateway::Gateway;
use crate::limits::Limits;
use crate::limits::shared::{self, Shared};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::forward::Forwarder;
use crate::server::{self, Endpoint};
use crate::systemd::{self, NotifyState};
use crate::tls::{ClientCerts, Inbound, TlsFiles};
use crate::token::{self, CacheConfig, SystemClock, TokenCache};
use crate::{reload, upstream};

/// Most child-account tokens cached at once.
const MAX_CHILD_TOKENS: usize = 10_000;

/// What start-up validated, before any socket is bound.
struct Validated {
    credentials: CredentialSet,
    clients: upstream::Clients,
    tls: Option<Arc<Inbound>>,
    gateway: Option<Arc<Gateway>>,
    /// `limits_redis`: how to reach it (nothing is connected before serving).
    redis: Option<shared::Connector>,
}

/// Run `serve`.
pub fn run(
    settings: Settings,
    flags: SettingsArgs,
    env: Arc<dyn Env + Send + Sync>,
) -> Result<(), Failure> {
    let validated = validate(&settings)?;
    let rt = runtime(settings.workers)?;
    rt.block_on(serve(settings, flags, env, validated))
}

/// Everything checked before any socket is bound.
fn validate(settings: &Settings) -> Result<Validated, Failure> {
    settings
        .check_listen_rule(&settings.listen)
        .map_err(config_err)?;
    let credentials = credentials::load_all(&settings.credentials, &settings.origin("credentials"))
        .map_err(|e| config_err(super::out::join_errors(e)))?;
    let clients = upstream::client(settings).map_err(config_err)?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: settings.tls_client_ca.clone(),
            };
            // In gateway mode a certificate is one of three ways in; without clients it is the
            // only thing that tells who a client is.
            let certs = if settings.clients.is_some() {
                ClientCerts::Optional
            } else {
                ClientCerts::Required
            };
            Some(Arc::new(
                Inbound::with_client_certs(files, certs).map_err(config_err)?,
            ))
        }
        _ => None,
    };
    let redis = match &settings.limits_redis {
        None => None,
        Some(url) => {
            // `rediss://` trusts what the upstream trusts: the built-in roots plus upstream_ca.
            let roots = match &settings.upstream_ca {
                Some(path) => upstream::load_ca(path).map_err(config_err)?,
                None => Vec::new(),
            };
            let connector = shared::Connector::new(url, &roots)
                .with_context(|| {
                    format!(
                        "limits_redis {url} (from {})",
                        settings.origin("limits_redis")
                    )
                })
                .map_err(config_err)?;
            Some(connector)
        }
    };
    let gateway = match &settings.clients {
        None => None,
        Some(path) => Some(Arc::new(
            Gateway::load(path, credentials.default_account()).map_err(config_err)?,
        )),
    };
    Ok(Validated {
        credentials,
        clients,
        tls,
        gateway,
        redis,
    })
}

/// One worker: a current-thread runtime, so every task runs on the thread that polls the
/// sockets, with no work-stealing queues or cross-thread wake-ups to pay for.
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, Failure> {
    let mut rt = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(rt
        .enable_all()
        .build()
        .context("starting the async runtime")?)
}

/// The shared request-time state.
fn proxy(
    settings: &Settings,
    v: Validated,
    metrics: Arc<Metrics>,
    shared: Option<Arc<Shared>>,
) -> (Arc<Proxy>, TokenCache) {
    let tokens = TokenCache::new(
        CacheConfig {
            ttl: settings.token_ttl,
            refresh_before: settings.token_refresh_before,
            max_children: MAX_CHILD_TOKENS,
        },
        token::signers(v.credentials.list()),
        Arc::new(SystemClock),
        Some(metrics.clone() as Arc<dyn token::CacheObserver>),
    );
    metrics.record_credentials(v.credentials.list());
    let mut limits = Limits::new(
        settings.account_rate,
        settings.account_rate_wait,
        metrics.clone(),
    );
    if let Some(shared) = shared {
        limits = limits.with_shared(shared);
    }
    let proxy = Arc::new(Proxy {
        forwarder: Forwarder {
            clients: v.clients,
            upstream: settings.upstream.clone(),
            account_header: settings.account_header.clone(),
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.request_timeout,
        },
        accounts: account::Rules {
            header: settings.account_header.clone(),
            allowed: settings.allowed_accounts.as_ref().map(|ids| {
                ids.iter()
                    .copied()
                    .filter_map(account::AccountId::new)
                    .collect()
            }),
        },
        limits,
        credentials: Arc::new(ArcSwap::from_pointee(v.credentials)),
        tokens: tokens.clone(),
        metrics,
        gateway: v.gateway,
        shutting_down: Default::default(),
    });
    (proxy, tokens)
}

/// Bind the main listener(s) and the admin listener, and check the listen rule against each
/// socket's own address (a systemd socket is only known now).
fn endpoints(
    settings: &Settings,
    gateway: bool,
    tls: &Option<Arc<Inbound>>,
) -> Result<Vec<Endpoint>, Failure> {
    let main = server::bind(&settings.listen)
        .with_context(|| {
            format!(
                "listen {} (from {})",
                settings.listen,
                settings.origin("listen")
            )
        })
        .map_err(|e| {
            if settings.listen == ListenAddr::Systemd {
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
        && !(gateway && main.iter().any(|l| !l.addr().is_loopback()));
    let mut endpoints: Vec<Endpoint> = main
        .into_iter()
        .map(|listener| Endpoint {
            listener,
            admin: main_admin,
            proxy: true,
            tls: tls.clone(),
        })
        .collect();
    if let Some(addr) = &settings.admin_listen {
        let admin = server::bind(addr).with_context(|| {
            format!(
                "admin_listen {addr} (from {})",
                settings.origin("admin_listen")
            )
        })?;
        endpoints.extend(admin.into_iter().map(|listener| Endpoint {
            listener,
            admin: true,
            proxy: false,
            tls: None,
        }));
    }
    Ok(endpoints)
}

async fn serve(
    settings: Settings,
    flags: SettingsArgs,
    env: Arc<dyn Env + Send + Sync>,
    mut v: Validated,
) -> Result<(), Failure> {
    let hup = reload::hangup_signal();
    for warning in crate::config::unknown_env_warnings(&*env) {
        tracing::warn!("{warning}");
    }
    let tls = v.tls.clone();
    let metrics = Arc::new(Metrics::new(settings.limits_redis.is_some()));
    let shared = v.redis.take().map(|connector| {
        let gauge = metrics.limits_shared.clone().unwrap_or_default();
        Shared::new(connector, gauge)
    });
    let (proxy, tokens) = proxy(&settings, v, metrics, shared.clone());
    let endpoints = endpoints(&settings, proxy.gateway.is_some(), &tls)?;
    for ep in &endpoints {
        tracing::info!(
            listen = %ep.listener.describe(),
            admin = ep.admin,
            proxy = ep.proxy,
            tls = ep.tls.is_some(),
            upstream = %settings.upstream,
            "listening"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(tokens.clone().run_refresher(wait_stop(stop_rx.clone())));
    let reloader = tokio::spawn(reload::run(
        proxy.clone(),
        settings.clone(),
        flags,
        env,
        tls,
        hup,
        wait_stop(stop_rx.clone()),
    ));
    tokio::spawn(become_ready(tokens));
    // Connects in the background: nothing waits for Redis, /readyz included; until it answers,
    // this replica counts alone.
    let sharer = shared.map(|s| tokio::spawn(s.run()));
    let stopping = proxy.clone();
    let shutdown = async move {
        shutdown_signal().await;
        stopping.shutting_down.store(true, Ordering::Relaxed);
        systemd::notify(&[NotifyState::Stopping]);
        tracing::info!("shutdown signal received");
    };
    let limits = server::Limits {
        client_idle: settings.client_idle_timeout,
        grace: settings.shutdown_grace,
    };
    server::run(proxy, endpoints, shutdown, limits).await;
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    let _ = reloader.await;
    if let Some(sharer) = sharer {
        sharer.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Readiness: every credentials file has minted. Until then, retry with backoff.
async fn become_ready(tokens: TokenCache) {
    let mut delay = Duration::from_millis(200);
    loop {
        let errors = tokens.warm().await;
        if errors.is_empty() {
            tracing::info!("every credentials file has minted a token; ready");
            systemd::notify(&[NotifyState::Ready]);
            return;
        }
        for e in errors {
            tracing::error!(error = %format!("{:#}", anyhow::Error::new(e)), "cannot mint a token; not ready");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
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
