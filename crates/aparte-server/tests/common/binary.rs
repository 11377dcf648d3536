//! The real server binary, started as an operator would, for tests that
//! read its logs or its memory from /proc.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: std::process::Child,
    /// `127.0.0.1:port` of HTTP and signaling.
    pub http_addr: std::net::SocketAddr,
    pub ws_url: String,
    pub logs: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// A line of /proc/PID/status, in kB (VmRSS: now; VmHWM: the peak).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server runs");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Resident memory now, in MB.
    pub fn rss_mb(&self) -> f64 {
        self.status_kb("VmRSS") as f64 / 1024.0
    }

    /// Peak resident memory since start, in MB.
    pub fn peak_mb(&self) -> f64 {
        self.status_kb("VmHWM") as f64 / 1024.0
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

/// Starts the binary on loopback ports chosen by the system, with `data_dir`
/// and `extra` flags; everything else (log level and format, address logging,
/// limits) is the default. Waits until it says it is ready.
pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aparte-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--media-listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("APARTE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    for mut pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                logs.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        let text = logs.lock().unwrap().clone();
        let url = text
            .split("http://localhost:")
            .nth(1)
            .or_else(|| text.split("https://localhost:").nth(1));
        if let Some(rest) = url {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "server did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    Server {
        child,
        http_addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ws_url: format!("ws://127.0.0.1:{port}/ws"),
        logs,
    }
}

/// A data directory of its own for one test.
pub fn data_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aparte-{name}-{}", std::process::id()))
}
