//! A real Redis for the tests: Debian's `redis-server`, found on PATH, started as a child process
//! on a free port of 127.0.0.1 with no persistence (never the system's service), ready once it
//! answers `PING` (a bounded poll, no fixed sleep), and stopped, paused or resumed by its PID.
//! Optionally TLS only (`rediss://`), with a certificate from a test PKI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::certs::Pki;

/// How long a Redis may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A port on 127.0.0.1 that nothing listened on a moment ago (bind port 0, read it, close).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `redis-server`; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    password: Option<String>,
    /// TLS only: the certificate and key it serves are in `dir`.
    tls: bool,
    dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Redis {
    /// Start one on a free port, with `requirepass` if `password` is given.
    pub fn start(password: Option<&str>) -> Redis {
        Self::start_on(free_port(), password)
    }

    /// Start one on `port`.
    pub fn start_on(port: u16, password: Option<&str>) -> Redis {
        let mut r = Redis {
            child: None,
            port,
            password: password.map(str::to_owned),
            tls: false,
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        r
    }

    /// Start one that speaks TLS only, serving `pki`'s certificate (for `localhost`).
    pub fn start_tls(pki: &Pki) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            password: None,
            tls: true,
            dir: tempfile::tempdir().unwrap(),
        };
        pki.write(r.dir.path());
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let file = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
        let (cert, key, ca) = (file("cert.pem"), file("key.pem"), file("ca.pem"));
        let mut args = if self.tls {
            vec![
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ]
        } else {
            vec!["--port", &port]
        };
        args.extend([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--loglevel",
            "warning",
        ]);
        if let Some(p) = &self.password {
            args.extend(["--requirepass", p]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server from PATH ({e}): apt-get install redis-server")
            });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Poll with `PING` until it answers (`+PONG`, or `-NOAUTH` when it wants a password).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            // A TLS one is ready once it listens: it loads its certificates before that.
            if self.tls && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(reply) = self.raw(&["PING"], false)
                && (reply.starts_with("+PONG") || reply.starts_with("-NOAUTH"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING",
                self.port
            );
            // Process start-up has no notification to wait on; a short poll, bounded above.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://[:password@]127.0.0.1:PORT`, or `rediss://localhost:PORT` for a TLS one.
    pub fn url(&self) -> String {
        if self.tls {
            return format!("rediss://localhost:{}", self.port);
        }
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("redis is not running").id() as i32)
    }

    /// Kill it (SIGKILL by PID) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port (after [`Redis::kill`]); its data is gone.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn();
    }

    /// Freeze it (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP).unwrap();
    }

    /// Let it run again (SIGCONT).
    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).unwrap();
    }

    /// Run one command (authenticated when it has a password; plain Redis only) and return the
    /// reply's first line, or a bulk string's content.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.raw(args, true).unwrap()
    }

    fn raw(&self, args: &[&str], auth: bool) -> std::io::Result<String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut w = &tcp;
        let mut r = BufReader::new(&tcp);
        let mut line = String::new();
        if let (true, Some(p)) = (auth, &self.password) {
            w.write_all(&resp(&["AUTH", p]))?;
            r.read_line(&mut line)?;
            assert!(line.starts_with("+OK"), "AUTH: {line}");
            line.clear();
        }
        w.write_all(&resp(args))?;
        r.read_line(&mut line)?;
        if line.starts_with('$') && !line.starts_with("$-1") {
            line.clear();
            r.read_line(&mut line)?;
        }
        Ok(line.trim_end().to_owned())
    }
}

/// A command in RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}
