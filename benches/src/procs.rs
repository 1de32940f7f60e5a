//! Child processes that die with the harness: a guard kills and reaps its child on drop,
//! and SIGINT/SIGTERM only set a flag, so an interrupted run unwinds through every guard.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Turns SIGINT, SIGTERM and SIGHUP into a flag checked by every wait loop.
pub fn install_signal_flag() -> anyhow::Result<()> {
    let flag = INTERRUPTED.get_or_init(Arc::default);
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Fails once the harness has been told to stop.
pub fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps in small steps so that an interrupt is noticed promptly.
pub fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    Ok(())
}

/// A running child process, killed and reaped when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// Reads the first stdout line (the process's "listening" report) within `timeout`;
    /// the rest of stdout is drained in the background so the child never blocks on it.
    pub fn first_stdout_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let stdout = self
            .child
            .stdout
            .take()
            .with_context(|| format!("{}: stdout is not piped", self.name))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let end = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(line)) if !line.is_empty() => return Ok(line),
                Ok(Ok(_)) => {
                    let note = self.exit_note();
                    bail!(
                        "{} closed stdout without reporting its address{note}",
                        self.name
                    )
                }
                Ok(Err(e)) => {
                    return Err(e).with_context(|| format!("reading the stdout of {}", self.name));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < end => {}
                Err(_) => {
                    let note = self.exit_note();
                    bail!(
                        "{} did not report its address within {timeout:?}{note}",
                        self.name
                    )
                }
            }
        }
    }

    /// Fails if the child has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited unexpectedly ({status})", self.name);
        }
        Ok(())
    }

    /// Waits for the child to exit, killing it if it outlives `deadline` or an interrupt.
    pub fn wait(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            check_interrupted()?;
            if Instant::now() > end {
                bail!("{} did not finish within {deadline:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exit_note(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!(" (it exited: {status})"),
            _ => String::new(),
        }
    }
}

impl Drop for ChildGuard {
    /// SIGTERM first (nginx's master then stops its workers; SIGKILL would orphan them),
    /// SIGKILL if the child is still there after a short grace.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a command whose stdin is closed and whose stdout/stderr go where asked.
pub fn command(program: &std::path::Path, stdout: Stdio, stderr: Stdio) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    cmd
}
