//! The four load scenarios, their request bodies, and the one-request check that every
//! target answers a scenario's request correctly before it is measured.

use std::net::SocketAddr;

use anyhow::bail;
use clap::ValueEnum;
use serde::Serialize;

use crate::http;

pub const PATH: &str = "/v1/chat/completions";

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// As many non-stream chat completions as the target serves.
    Throughput,
    /// As many streamed chat completions (16 token chunks + usage + [DONE]) as it serves.
    ThroughputStream,
    /// Non-stream chat at a fixed rate: the latency a proxy adds under moderate load.
    Latency,
    /// Streamed chat at a fixed rate.
    LatencyStream,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Throughput,
        Scenario::ThroughputStream,
        Scenario::Latency,
        Scenario::LatencyStream,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::ThroughputStream => "throughput-stream",
            Scenario::Latency => "latency",
            Scenario::LatencyStream => "latency-stream",
        }
    }

    pub fn stream(self) -> bool {
        matches!(self, Scenario::ThroughputStream | Scenario::LatencyStream)
    }

    pub fn fixed_rate(self) -> bool {
        matches!(self, Scenario::Latency | Scenario::LatencyStream)
    }

    pub fn body(self) -> &'static str {
        if self.stream() { CHAT_STREAM } else { CHAT }
    }

    /// One line for the report headings.
    pub fn title(self, connections: usize, rate: u32) -> String {
        let kind = if self.stream() {
            "stream chat (16 tokens, include_usage)"
        } else {
            "non-stream chat"
        };
        if self.fixed_rate() {
            format!("fixed rate {rate} req/s, {kind}, {connections} connections")
        } else {
            format!("max throughput, {kind}, {connections} connections")
        }
    }

    /// Sends the scenario's request once and checks that a complete answer comes back.
    pub fn verify(self, target: &str, addr: SocketAddr, auth: &str) -> anyhow::Result<()> {
        let resp = http::post_json(addr, PATH, &[("authorization", auth)], self.body())?;
        let complete = if self.stream() {
            resp.body.contains("data: [DONE]") && resp.body.contains("\"usage\":{")
        } else {
            resp.body.contains("\"choices\"") && resp.body.contains("\"usage\"")
        };
        if resp.status != 200 || !complete {
            bail!(
                "{target}: the {} check request got {} and {} body: {}",
                self.name(),
                resp.status,
                if complete {
                    "a complete"
                } else {
                    "an incomplete"
                },
                resp.snippet(400)
            );
        }
        Ok(())
    }
}
