//! The machine a run was made on, as RESULTS.md asks for it: CPU model, cores, memory,
//! kernel, compiler and tool versions.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub load_tool: String,
    pub nginx: Option<String>,
    /// The binaries measured: their directory and the git revision of the tree.
    pub bin_dir: String,
    pub git_revision: String,
}

impl Machine {
    pub fn describe(load_tool: String, nginx: Option<String>, bin_dir: &Path) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown")
            .to_string();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let memory_gib = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |s| s.trim().to_string());
        Self {
            cpu,
            cores,
            memory_gib,
            kernel,
            rustc: first_line("rustc", &["--version"]),
            load_tool,
            nginx,
            bin_dir: bin_dir.display().to_string(),
            git_revision: first_line("git", &["describe", "--always", "--dirty", "--tags"]),
        }
    }

    /// `key: value` lines, for the terminal and the Markdown report.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CPU", self.cpu.clone()),
            ("cores", self.cores.to_string()),
            ("memory", format!("{} GiB", self.memory_gib)),
            ("kernel", self.kernel.clone()),
            ("rustc", self.rustc.clone()),
            ("load generator", self.load_tool.clone()),
            (
                "nginx",
                self.nginx.clone().unwrap_or_else(|| "not run".into()),
            ),
            ("binaries", self.bin_dir.clone()),
            ("git revision", self.git_revision.clone()),
        ]
    }
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
