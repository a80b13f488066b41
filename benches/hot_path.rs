//! Micro-benchmarks of the work voxproxy does per request, apart from the network: the token
//! cache hit (the issue's target: at most 100 ns), the request rewrite (header stripping, query
//! scrubbing, the upstream URI), account selection (path prefix, account header, the client's
//! bearer `iss`), request ids, and the cost of one mint (an RSA-2048 signature), which the steady
//! state never pays on a request.
//!
//! ```text
//! cargo bench --bench hot_path            # all
//! cargo bench --bench hot_path -- token   # a filter
//! ```
//!
//! A fresh RSA-2048 key is generated at start; nothing touches the network or the disk.

use std::future::Future as _;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

use divan::{Bencher, black_box};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use voxproxy::account::{AccountId, Requester, Rules, bearer_iss};
use voxproxy::config::{Upstream, parse_upstream};
use voxproxy::credentials::{Credentials, pem_encode};
use voxproxy::target::{self, method_from_path, split_account_prefix};
use voxproxy::token::{CacheConfig, Claims, Clock as _, SystemClock, TokenCache};
use voxproxy::{headers, token};

fn main() {
    divan::main();
}

/// The account of the credentials file.
const ACCOUNT: u64 = 1_234_567;

fn id(n: u64) -> AccountId {
    AccountId::new(n).expect("a positive account id")
}
/// Child accounts warmed in the cache, so a lookup happens in a realistically full map.
const CHILDREN: u64 = 1_000;
/// A realistic request target with a query.
const PATH: &str = "/platform_api/GetAccountInfo/";
const QUERY: &str = "account_id=1234567&with_subusers=true&return_live_balance=false";
const QUERY_LEGACY: &str = "account_id=1234567&api_key=0123456789abcdef&return_live_balance=false";

struct Fixture {
    creds: Credentials,
    cache: TokenCache,
    upstream: Upstream,
    rules: Rules,
    account_header: HeaderName,
    /// What an official client sends (its own JWT in `Authorization`, no account header).
    client_headers: HeaderMap,
    /// The same plus the account header, `Connection: keep-alive` and a request id.
    proxied_headers: HeaderMap,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(fixture);

fn credentials() -> Credentials {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("generating an RSA key");
    let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
        .expect("encoding the key");
    let pem = pem_encode("PRIVATE KEY", der.as_ref());
    let json = serde_json::json!({
        "account_id": ACCOUNT,
        "key_id": "2b9e5e38-5a1c-4f0e-9a57-3d1c0a9f6e11",
        "private_key": pem,
    });
    Credentials::parse(
        Path::new("bench-credentials.json"),
        json.to_string().as_bytes(),
    )
    .expect("parsing the generated credentials")
}

fn fixture() -> Fixture {
    let creds = credentials();
    let cfg = CacheConfig {
        ttl: 3600,
        refresh_before: 300,
        max_children: 10_000,
    };
    let cache = TokenCache::new(
        cfg,
        token::signers(std::slice::from_ref(&creds)),
        Arc::new(SystemClock),
        None,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        assert!(cache.warm().await.is_empty(), "warming the cache failed");
        for child in 1..=CHILDREN {
            cache
                .get(id(ACCOUNT + child))
                .await
                .expect("minting a child token");
        }
    });

    let upstream = parse_upstream("https://127.0.0.1:8443").expect("a loopback upstream");
    let account_header = HeaderName::from_static("x-voximplant-account-id");
    let rules = Rules {
        header: account_header.clone(),
        allowed: None,
    };

    // The official clients send a JWT signed with the account's own key: mint one like it.
    let now = SystemClock.now();
    let client_jwt =
        token::mint(&creds, &Claims::new(id(ACCOUNT), now, 3600)).expect("minting the client JWT");
    let mut client_headers = HeaderMap::new();
    for (name, value) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "python-requests/2.32.3"),
        ("accept-encoding", "gzip, deflate"),
        ("accept", "*/*"),
        ("connection", "keep-alive"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-length", "64"),
    ] {
        client_headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    client_headers.insert(
        header::AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {client_jwt}")).expect("a JWT is a header value"),
    );
    let mut proxied_headers = client_headers.clone();
    proxied_headers.insert(&account_header, HeaderValue::from_static("1234567"));
    proxied_headers.insert(
        headers::REQUEST_ID,
        HeaderValue::from_static("5f0c6f4e-2b7e-4a53-9d1a-0c3e8b7d2f61"),
    );

    Fixture {
        creds,
        cache,
        upstream,
        rules,
        account_header,
        client_headers,
        proxied_headers,
    }
}

/// Poll `cache.get(account)` once with a no-op waker: a hit never waits, so this measures the
/// hit itself and no runtime.
fn get_now(cache: &TokenCache, account: u64) -> Arc<token::Token> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(cache.get(id(account)));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(token)) => token,
        Poll::Ready(Err(e)) => panic!("token cache miss failed: {e}"),
        Poll::Pending => panic!("a warm token cache hit must not wait"),
    }
}

mod token_cache {
    use super::*;

    /// The steady state: the default account's token, warm.
    #[divan::bench]
    fn hit_primary(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| get_now(&f.cache, black_box(ACCOUNT)));
    }

    /// A child account's token among `CHILDREN` warm ones.
    #[divan::bench]
    fn hit_child(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| get_now(&f.cache, black_box(ACCOUNT + CHILDREN / 2)));
    }

    /// The same hit through `Runtime::block_on`, to show what a runtime round adds.
    #[divan::bench]
    fn hit_block_on(bencher: Bencher) {
        let f = &*FIXTURE;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        bencher.bench_local(|| runtime.block_on(f.cache.get(black_box(id(ACCOUNT)))));
    }

    /// Both threads hitting the same account at once (read lock and `Arc` counts contended).
    #[divan::bench(threads = [2])]
    fn hit_contended(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| get_now(&f.cache, black_box(ACCOUNT)));
    }
}

mod rewrite {
    use super::*;

    /// `headers::strip_request` on what a client sends (the clone is not measured).
    #[divan::bench]
    fn strip_request(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher
            .with_inputs(|| f.proxied_headers.clone())
            .bench_local_refs(|h| headers::strip_request(h, &f.account_header));
    }

    /// The whole header rewrite: strip, then set the token and the request id.
    #[divan::bench]
    fn headers_total(bencher: Bencher) {
        let f = &*FIXTURE;
        let token = get_now(&f.cache, ACCOUNT);
        let request_id = HeaderValue::from_static("5f0c6f4e-2b7e-4a53-9d1a-0c3e8b7d2f61");
        bencher
            .with_inputs(|| f.proxied_headers.clone())
            .bench_local_refs(|h| {
                headers::strip_request(h, &f.account_header);
                h.insert(header::AUTHORIZATION, token.authorization().clone());
                h.insert(headers::REQUEST_ID, request_id.clone());
            });
    }

    /// `headers::scrub_query` on a query with nothing to remove (the common case).
    #[divan::bench]
    fn scrub_query_clean() -> Option<String> {
        headers::scrub_query(black_box(QUERY))
    }

    /// `headers::scrub_query` on a query holding a legacy `api_key`.
    #[divan::bench]
    fn scrub_query_legacy() -> Option<String> {
        headers::scrub_query(black_box(QUERY_LEGACY))
    }

    /// `target::upstream_uri` for a target with a query (nothing to scrub: reused as it came).
    #[divan::bench]
    fn upstream_uri(bencher: Bencher) {
        let f = &*FIXTURE;
        let inbound: http::Uri = format!("{PATH}?{QUERY}").parse().expect("a valid target");
        bencher.bench(|| target::upstream_uri(black_box(&inbound), 0, &f.upstream));
    }

    /// `target::upstream_uri` when an `api_key` must be scrubbed (the target is rebuilt).
    #[divan::bench]
    fn upstream_uri_scrubbed(bencher: Bencher) {
        let f = &*FIXTURE;
        let inbound: http::Uri = format!("{PATH}?{QUERY_LEGACY}")
            .parse()
            .expect("a valid target");
        bencher.bench(|| target::upstream_uri(black_box(&inbound), 0, &f.upstream));
    }

    /// `target::upstream_uri` with no query (`GET /platform_api/GetAccountInfo/`).
    #[divan::bench]
    fn upstream_uri_no_query(bencher: Bencher) {
        let f = &*FIXTURE;
        let inbound: http::Uri = PATH.parse().expect("a valid target");
        bencher.bench(|| target::upstream_uri(black_box(&inbound), 0, &f.upstream));
    }
}

mod account {
    use super::*;

    /// The `/accounts/<id>/` prefix split and the id parse.
    #[divan::bench]
    fn path_prefix() -> Option<AccountId> {
        let (account, _rest) =
            split_account_prefix(black_box("/accounts/1234567/platform_api/GetAccountInfo/"))?;
        AccountId::parse(account?)
    }

    /// The path check on a plain `/platform_api/...` path (every request pays this).
    #[divan::bench]
    fn path_plain() -> Option<usize> {
        split_account_prefix(black_box(PATH)).map(|(_, rest)| rest.len())
    }

    /// The one pass over a request's headers, the account header found (any spelling) and parsed.
    #[divan::bench]
    fn header(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| {
            headers::scan(black_box(&f.proxied_headers), &f.account_header)
                .account
                .and_then(|v| v.to_str().ok().and_then(|raw| AccountId::parse(raw.trim())))
        });
    }

    /// The pass over what an official client sends: no account header.
    #[divan::bench]
    fn header_absent(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| {
            headers::scan(black_box(&f.client_headers), &f.account_header)
                .account
                .is_some()
        });
    }

    /// `iss` read from the client's own RS256 JWT (base64 and JSON, no verification).
    #[divan::bench]
    fn bearer_iss_read(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| bearer_iss(black_box(&f.client_headers)));
    }

    /// The API method from the path, for logs and metrics (every request pays this).
    #[divan::bench]
    fn api_method_from_path() -> Option<usize> {
        method_from_path(black_box(PATH)).map(|m| m.len())
    }

    /// The whole account rule for a request with no prefix, no header and the client's JWT.
    #[divan::bench]
    fn choose_from_client_jwt(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| {
            f.rules.choose(
                None,
                black_box(&f.client_headers),
                Requester::ANONYMOUS,
                id(ACCOUNT),
            )
        });
    }
}

mod request_id {
    use super::*;

    /// A request with no `X-Request-Id`: a fresh v4 UUID.
    #[divan::bench]
    fn generated(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| headers::request_id(black_box(&f.client_headers)));
    }

    /// A request carrying a sane `X-Request-Id`: kept.
    #[divan::bench]
    fn kept(bencher: Bencher) {
        let f = &*FIXTURE;
        bencher.bench(|| headers::request_id(black_box(&f.proxied_headers)));
    }
}

mod mint {
    use super::*;

    /// One RS256 JWT with an RSA-2048 key (the cold path; the refresher pays it in the background).
    #[divan::bench(sample_count = 50)]
    fn rs256_2048(bencher: Bencher) {
        let f = &*FIXTURE;
        let now = SystemClock.now();
        bencher.bench(|| {
            token::mint(&f.creds, &Claims::new(black_box(id(ACCOUNT)), now, 3600))
                .expect("minting a token")
        });
    }
}
