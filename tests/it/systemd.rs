//! Started the way systemd starts it: a listening socket passed as fd 3 with `LISTEN_FDS=1` and
//! `LISTEN_PID`, and `NOTIFY_SOCKET` pointing at a datagram socket of the test's. It must serve on
//! the passed socket, send `READY=1` only once it can serve, and `STOPPING=1` on SIGTERM.
//!
//! Python plays systemd's part (bind, put the socket on fd 3, set `LISTEN_PID` to its own PID,
//! exec): Rust's std closes inherited descriptors and cannot set the child's PID in its
//! environment without `unsafe`.

use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::certs::Creds;
use crate::support::http::get;
use crate::support::process::BIN;

const LAUNCHER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"#;

fn recv(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn socket_activation_and_readiness_notification() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 7);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let mut child = Command::new("python3")
        .args([
            "-c",
            LAUNCHER,
            BIN,
            "serve",
            "--listen",
            "systemd",
            "--credentials",
        ])
        .arg(&creds.path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("VOXPROXY_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);

    let ready = tokio::task::spawn_blocking(move || {
        let first = recv(&notify);
        (first, notify)
    })
    .await
    .unwrap();
    let (first, notify) = ready;
    assert_eq!(
        first.as_deref().map(str::trim),
        Some("READY=1"),
        "the first notification is READY=1"
    );
    // READY=1 means it serves now, on the passed socket, and is ready.
    let readyz = get(addr, "/readyz").await;
    assert_eq!(readyz.status, 200);
    assert_eq!(get(addr, "/healthz").await.status, 200);

    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let stopping = tokio::task::spawn_blocking(move || recv(&notify))
        .await
        .unwrap();
    assert_eq!(stopping.as_deref().map(str::trim), Some("STOPPING=1"));
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn listen_systemd_without_a_socket_exits_2_naming_listen() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 7);
    let (code, _, err) = crate::support::process::run(
        &[
            "serve",
            "--listen",
            "systemd",
            "--credentials",
            creds.path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("listen systemd"), "{err}");
}
