//! Processes under test: the Aparté server and the raw relay, each in its own
//! process so its CPU time and memory can be read from `/proc` apart from the
//! bots' (which share the bench process).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// CPU seconds (user, system) and resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    pub rss_mb: f64,
}

/// Reads `/proc/PID/stat`.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    Ok(Usage {
        user_s: f[11].parse::<f64>()? / tick,
        sys_s: f[12].parse::<f64>()? / tick,
        rss_mb: f[21].parse::<f64>()? * 4096.0 / 1e6,
    })
}

/// Peak resident memory of a process since it started (`VmHWM`), in MB.
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024.0 / 1e6)
}

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `cmd` and returns it with the first line it prints; later
    /// lines go to our stderr, prefixed, so the child never writes into a
    /// closed pipe and its warnings are seen next to the figures.
    pub fn start(cmd: Command, label: &'static str) -> anyhow::Result<(Proc, String)> {
        Self::start_quiet(cmd, label, |_| true)
    }

    /// [`Proc::start`], passing on only the later lines `show` keeps.
    pub fn start_quiet(
        mut cmd: Command,
        label: &'static str,
        show: fn(&str) -> bool,
    ) -> anyhow::Result<(Proc, String)> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        std::thread::spawn(move || {
            for l in reader.lines().map_while(Result::ok).filter(|l| show(l)) {
                eprintln!("{label}: {l}");
            }
        });
        Ok((Proc { child }, line))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        usage(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Aparté server binary, started on loopback with limits opened for
/// load (participants per room, join rate) and a throw-away data directory.
#[derive(Debug)]
pub struct Server {
    pub proc: Proc,
    pub ws_url: String,
}

impl Server {
    pub fn start(bin: &Path, media_threads: Option<usize>) -> anyhow::Result<Server> {
        let mut cmd = Command::new(bin);
        if let Some(n) = media_threads {
            cmd.args(["--media-threads", &n.to_string()]);
        }
        cmd.args(["--listen", "127.0.0.1:0", "--media-listen", "127.0.0.1:0"])
            .args(["--max-participants", "500", "--max-lobby", "500"])
            .args(["--join-rate", "100000"])
            // Every bot connects from 127.0.0.1: one network, hundreds of
            // connections. (The hostile-load attackers come from networks of
            // their own, each under the default 64 anyway.)
            .args(["--max-connections-per-address", "2000"])
            .args(["--max-connections", "20000"])
            .arg("--data-dir")
            .arg(std::env::temp_dir().join(format!("aparte-bench-{}", std::process::id())))
            // Warnings only, unless BENCH_SERVER_LOG asks for more (an
            // APARTE_LOG filter, e.g. `info,aparte_sfu=warn`).
            .env(
                "APARTE_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let (proc, line) = Proc::start(cmd, "server")
            .with_context(|| format!("{} (build it with cargo build --release)", bin.display()))?;
        let Some(port) = line
            .split("http://localhost:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        else {
            bail!("unexpected server output: {line}");
        };
        Ok(Server {
            proc,
            ws_url: format!("ws://127.0.0.1:{port}/ws"),
        })
    }
}

/// The raw UDP relay: this same binary, `relay-serve` subcommand.
#[derive(Debug)]
pub struct Relay {
    pub proc: Proc,
    pub addr: std::net::SocketAddr,
}

impl Relay {
    pub fn start() -> anyhow::Result<Relay> {
        let me: PathBuf = std::env::current_exe()?;
        let mut cmd = Command::new(me);
        cmd.arg("relay-serve");
        let (proc, line) = Proc::start(cmd, "relay")?;
        let addr = line
            .trim()
            .strip_prefix("relay on ")
            .context("unexpected relay output")?
            .parse()?;
        Ok(Relay { proc, addr })
    }
}
