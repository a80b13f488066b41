//! Running the real `voxproxy` binary: start it on port 0, learn its addresses and readiness from
//! its own JSON log lines (no sleeps), capture everything it prints, signal it by PID.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_voxproxy");

/// How long start-up may take before a test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines a process printed, shared with the reader thread.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Lines {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.changed.notify_all();
    }

    /// Everything so far.
    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until some line satisfies `pred`; returns it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.changed.wait_timeout(lines, left).unwrap().0;
        }
    }
}

/// A command line for the binary with a clean environment (no inherited VOX* variables).
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VOXPROXY_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Run to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = command(args, env).output().expect("run voxproxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `voxproxy serve`.
pub struct Voxproxy {
    child: Child,
    /// Its stderr, line by line.
    pub log: Arc<Lines>,
    /// Its stdout, line by line.
    pub out: Arc<Lines>,
    /// The main listener (TCP), if any.
    pub addr: Option<SocketAddr>,
    /// The admin listener, if separate.
    pub admin: Option<SocketAddr>,
}

impl Drop for Voxproxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn reader(stream: impl std::io::Read + Send + 'static, lines: Arc<Lines>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.by_ref().take(1 << 20).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => lines.push(String::from_utf8_lossy(&buf).trim_end().to_owned()),
            }
        }
    });
}

impl Voxproxy {
    /// Start `voxproxy serve ARGS` and wait until it has logged that it listens and is ready.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Voxproxy {
        let mut v = Self::spawn(args, env);
        v.wait_ready();
        v
    }

    /// Start without waiting.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Voxproxy {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let mut child = command(&full, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn voxproxy");
        let log = Arc::new(Lines::default());
        let out = Arc::new(Lines::default());
        reader(child.stderr.take().unwrap(), log.clone());
        reader(child.stdout.take().unwrap(), out.clone());
        Voxproxy {
            child,
            log,
            out,
            addr: None,
            admin: None,
        }
    }

    /// Wait for the "ready" log line and read the listening addresses.
    pub fn wait_ready(&mut self) {
        let ready = self.log.wait_for(START_TIMEOUT, |l| {
            l.contains("\"every credentials file has minted a token; ready\"")
                || l.contains("voxproxy: ")
        });
        match ready {
            Some(l) if l.contains("ready") && !l.starts_with("voxproxy: ") => {}
            other => panic!(
                "voxproxy did not become ready: {other:?}\nlog:\n{}",
                self.log.all().join("\n")
            ),
        }
        for line in self.log.all() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] != "listening" {
                continue;
            }
            let Ok(addr) = v["listen"].as_str().unwrap_or("").parse::<SocketAddr>() else {
                continue;
            };
            if v["proxy"] == true {
                self.addr = Some(addr);
            } else {
                self.admin = Some(addr);
            }
        }
    }

    /// The main listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("voxproxy has no TCP main listener")
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal to this process (and only this one).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Child exit has no async notification in std; a short poll bounded by the deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access line of request `id`, parsed; waits for it up to 30 s (off the async runtime,
    /// which may be serving the mock upstream meanwhile), long enough for a connection cut
    /// after a few idle timeouts.
    pub async fn access_line(&self, id: &str) -> serde_json::Value {
        let log = self.log.clone();
        let is_it = access_line_of(id);
        let line =
            tokio::task::spawn_blocking(move || log.wait_for(Duration::from_secs(30), is_it))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no access line for {id}:\n{}", self.logs()));
        serde_json::from_str(&line).unwrap()
    }

    /// Whether request `id` has an access line yet (it ends when its response does).
    pub fn has_access_line(&self, id: &str) -> bool {
        let is_it = access_line_of(id);
        self.log.all().iter().any(|l| is_it(l))
    }

    /// Everything logged so far, joined.
    pub fn logs(&self) -> String {
        self.log.all().join("\n")
    }
}

/// Whether a log line is request `id`'s access line.
fn access_line_of(id: &str) -> impl Fn(&str) -> bool + Send + 'static {
    let needle = format!("\"request_id\":\"{id}\"");
    move |l| l.contains("\"voxproxy::access\"") && l.contains(&needle)
}
