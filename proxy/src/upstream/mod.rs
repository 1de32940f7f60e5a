//! One upstream provider as the proxy uses it: where to connect (with a small DNS cache,
//! since Pingora's own look-up blocks), how to build the peer, and how to turn the client's
//! request head into the provider's (path, host, credential, extra headers).

use std::{
    net::SocketAddr,
    sync::RwLock,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use http::{HeaderName, HeaderValue};
use pingora::{http::RequestHeader, upstreams::peer::HttpPeer};
use tollgate_core::config::{AnthropicOptions, Provider, ProviderKind, Timeouts};
use url::Url;

use crate::downstream::endpoints::Endpoint;

/// How long a DNS answer is used before it is looked up again.
const DNS_TTL: Duration = Duration::from_secs(30);
/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Request bodies up to this size go out with no write timeout: the kernel takes them
/// whole (the connection's send buffer and the peer's receive window are larger), so a
/// write cannot stall, and a timer per write would be pure cost. Larger bodies can stall
/// on an upstream that stops reading, and get `timeouts.idle` per write.
const UNTIMED_WRITE_BYTES: usize = 16 << 10;

/// Client headers that never travel upstream: the client's credentials, cookies, and
/// `expect` (the gateway answered it and already holds the body). Names, not text: a name
/// given as text would be parsed again by every removal.
static CLIENT_ONLY_HEADERS: [HeaderName; 8] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    // Chosen by the operator's key, not by the client: set them in the provider's `headers`.
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    http::header::EXPECT,
];

pub struct Upstream {
    pub name: String,
    pub kind: ProviderKind,
    /// Where requests go (for the in-process mock, its loopback address).
    pub base_url: Url,
    pub timeouts: Timeouts,
    /// Kind `anthropic`: how chat completions are translated for it.
    pub anthropic: Option<AnthropicOptions>,
    tls: bool,
    host: String,
    port: u16,
    host_header: HeaderValue,
    base_path: String,
    auth: Option<(HeaderName, HeaderValue)>,
    api_version: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    address: Address,
}

enum Address {
    Fixed(SocketAddr),
    Dns(RwLock<Option<(Vec<SocketAddr>, Instant)>>),
}

impl Upstream {
    /// `base_url` is the provider's, or the in-process mock's address for `mock`.
    pub fn new(provider: &Provider, base_url: Url) -> anyhow::Result<Self> {
        let tls = base_url.scheme() == "https";
        let host = base_url
            .host_str()
            .ok_or_else(|| anyhow!("provider {}: base_url has no host", provider.name))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = base_url
            .port_or_known_default()
            .ok_or_else(|| anyhow!("provider {}: base_url has no port", provider.name))?;
        let host_header = match base_url.port() {
            Some(port) => format!("{}:{port}", base_url.host_str().unwrap_or(&host)),
            None => base_url.host_str().unwrap_or(&host).to_string(),
        };
        let auth = match (&provider.api_key, provider.kind) {
            (None, _) => None,
            (Some(key), ProviderKind::AzureOpenAi) => Some((
                HeaderName::from_static("api-key"),
                secret_value(key.expose())?,
            )),
            (Some(key), kind) if kind.speaks_anthropic() => Some((
                HeaderName::from_static("x-api-key"),
                secret_value(key.expose())?,
            )),
            (Some(key), _) => Some((
                http::header::AUTHORIZATION,
                secret_value(&format!("Bearer {}", key.expose()))?,
            )),
        };
        let version = provider
            .anthropic
            .as_ref()
            .map(|a| ("anthropic-version".to_owned(), a.version.clone()));
        let headers = version
            .iter()
            .chain(provider.headers.iter())
            .map(|(name, value)| {
                Ok((
                    HeaderName::try_from(name.as_str())?,
                    HeaderValue::try_from(value.as_str())?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("provider {}: headers", provider.name))?;
        let address = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Address::Fixed(SocketAddr::new(ip, port)),
            Err(_) => Address::Dns(RwLock::new(None)),
        };
        Ok(Upstream {
            name: provider.name.clone(),
            kind: provider.kind,
            base_url: base_url.clone(),
            timeouts: provider.timeouts,
            anthropic: provider.anthropic.clone(),
            tls,
            host,
            port,
            host_header: HeaderValue::try_from(host_header)?,
            base_path: base_url.path().trim_end_matches('/').to_string(),
            auth,
            api_version: provider.api_version.clone(),
            headers,
            address,
        })
    }

    /// The peer for one attempt. The read timeout is the wait for a non-streaming answer,
    /// or the longest silence between stream events.
    pub async fn peer(&self, stream: bool, body_len: usize) -> std::io::Result<Box<HttpPeer>> {
        let addr = self.resolve().await?;
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        let options = &mut peer.options;
        options.connection_timeout = Some(self.timeouts.connect);
        options.total_connection_timeout = Some(self.timeouts.connect);
        options.read_timeout = Some(if stream {
            self.timeouts.idle
        } else {
            self.timeouts.first_byte
        });
        options.write_timeout = (body_len > UNTIMED_WRITE_BYTES).then_some(self.timeouts.idle);
        options.idle_timeout = Some(POOL_IDLE);
        Ok(Box::new(peer))
    }

    /// [`Upstream::peer`], failing as a Pingora error (whether another deployment is tried
    /// is the routing's decision).
    pub async fn connect_to(
        &self,
        stream: bool,
        body_len: usize,
    ) -> pingora::Result<Box<HttpPeer>> {
        self.peer(stream, body_len).await.map_err(|e| {
            pingora::Error::because(
                pingora::ErrorType::ConnectNoRoute,
                format!("resolving the address of provider {}", self.name),
                e,
            )
        })
    }

    async fn resolve(&self) -> std::io::Result<SocketAddr> {
        let cache = match &self.address {
            Address::Fixed(addr) => return Ok(*addr),
            Address::Dns(cache) => cache,
        };
        let stale = {
            let guard = cache.read().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some((addrs, at)) if at.elapsed() < DNS_TTL => return pick(addrs),
                other => other.map(|(addrs, _)| addrs.clone()),
            }
        };
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(found) => {
                let addrs: Vec<SocketAddr> = found.collect();
                let addr = pick(&addrs)?;
                *cache.write().unwrap_or_else(|e| e.into_inner()) = Some((addrs, Instant::now()));
                Ok(addr)
            }
            // A failed refresh keeps the last answer for another TTL rather than failing
            // requests or making each of them wait for the resolver again.
            Err(e) => match stale {
                Some(addrs) => {
                    let addr = pick(&addrs)?;
                    *cache.write().unwrap_or_else(|e| e.into_inner()) =
                        Some((addrs, Instant::now()));
                    Ok(addr)
                }
                None => Err(e),
            },
        }
    }

    /// The URL and headers of a health check: the provider's model list, with its auth.
    pub fn health_check(&self) -> (String, Vec<(HeaderName, HeaderValue)>) {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let path = match self.kind {
            ProviderKind::AzureOpenAi => format!(
                "{}/openai/models?api-version={}",
                self.base_path,
                self.api_version.as_deref().unwrap_or_default()
            ),
            kind if kind.speaks_anthropic() => format!("{}/v1/models", self.base_path),
            _ => format!("{}/models", self.base_path),
        };
        let mut headers: Vec<_> = self.auth.iter().cloned().collect();
        headers.extend(self.headers.iter().cloned());
        (format!("{scheme}://{host}:{}{path}", self.port), headers)
    }

    /// The provider's path (and query) for `endpoint`.
    pub fn uri_for(
        &self,
        endpoint: Endpoint,
        upstream_model: &str,
        query: Option<&str>,
    ) -> pingora::Result<http::Uri> {
        let path = self.path_and_query(endpoint, upstream_model, query);
        http::Uri::try_from(path).map_err(|e| {
            pingora::Error::because(
                pingora::ErrorType::InternalError,
                "building upstream URI",
                e,
            )
        })
    }

    /// Rewrites the client's request head into the provider's; `uri` is from
    /// [`Upstream::uri_for`].
    pub fn rewrite_request(
        &self,
        req: &mut RequestHeader,
        endpoint: Endpoint,
        uri: http::Uri,
        body_len: usize,
        request_id: &str,
    ) -> pingora::Result<()> {
        req.set_uri(uri);
        for name in &CLIENT_ONLY_HEADERS {
            req.remove_header(name);
        }
        req.remove_header(&http::header::TRANSFER_ENCODING);
        req.insert_header(http::header::HOST, self.host_header.clone())?;
        req.insert_header(http::header::CONTENT_LENGTH, body_len)?;
        // Identity encoding lets the gateway read usage from the stream it forwards.
        req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        req.insert_header("x-request-id", request_id)?;
        if let Some((name, value)) = &self.auth {
            req.insert_header(name.clone(), value.clone())?;
        }
        for (name, value) in &self.headers {
            // An Anthropic SDK's own `anthropic-version` is kept: it knows what it parses.
            if endpoint.is_anthropic()
                && name == "anthropic-version"
                && req.headers.contains_key(name)
            {
                continue;
            }
            req.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }

    fn path_and_query(
        &self,
        endpoint: Endpoint,
        upstream_model: &str,
        query: Option<&str>,
    ) -> String {
        let base = &self.base_path;
        match (self.kind, endpoint) {
            (ProviderKind::AzureOpenAi, Endpoint::Responses) => {
                format!(
                    "{base}/openai/responses?api-version={}",
                    self.api_version.as_deref().unwrap_or_default()
                )
            }
            (ProviderKind::AzureOpenAi, _) => format!(
                "{base}/openai/deployments/{}{}?api-version={}",
                percent_encode(upstream_model),
                endpoint.suffix(),
                self.api_version.as_deref().unwrap_or_default()
            ),
            // Only chat completions reach an Anthropic deployment (see `admission`).
            (kind, Endpoint::CountTokens) if kind.speaks_anthropic() => {
                format!("{base}/v1/messages/count_tokens")
            }
            (kind, _) if kind.speaks_anthropic() => format!("{base}/v1/messages"),
            (_, _) => match query {
                Some(query) => format!("{base}{}?{query}", endpoint.suffix()),
                None => format!("{base}{}", endpoint.suffix()),
            },
        }
    }
}

/// The resolver's first answer: getaddrinfo already orders addresses by reachability
/// (RFC 6724), so an IPv6 address is not chosen on a host without IPv6.
fn pick(addrs: &[SocketAddr]) -> std::io::Result<SocketAddr> {
    addrs.first().copied().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "DNS returned no addresses")
    })
}

fn secret_value(text: &str) -> anyhow::Result<HeaderValue> {
    let mut value =
        HeaderValue::try_from(text).map_err(|_| anyhow!("api_key is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Encodes a path segment (Azure deployment names are user-chosen).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::config::{Config, Secret};

    fn provider(yaml: &str) -> Provider {
        let text = format!(
            "providers:\n  - {yaml}\nmodels:\n  - {{name: m, deployments: [{{provider: p}}]}}\n"
        );
        Config::from_yaml(&text, "t", &|_| None)
            .unwrap()
            .providers
            .remove(0)
    }

    fn rewritten(upstream: &Upstream, endpoint: Endpoint, model: &str) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions?x=1", None).unwrap();
        req.insert_header("authorization", "Bearer client-key")
            .unwrap();
        req.insert_header("x-api-key", "client-key").unwrap();
        req.insert_header("transfer-encoding", "chunked").unwrap();
        req.insert_header("x-custom", "kept").unwrap();
        let uri = upstream.uri_for(endpoint, model, req.uri.query()).unwrap();
        upstream
            .rewrite_request(&mut req, endpoint, uri, 42, "req_1")
            .unwrap();
        req
    }

    #[test]
    fn openai_requests_carry_the_provider_key_only() {
        let mut p = provider(
            "{name: p, kind: openai, base_url: 'https://api.example.com:8443/v1/', api_key: sk-prov, headers: {OpenAI-Project: proj}}",
        );
        p.api_key = Some(Secret::new("sk-prov"));
        let url = p.base_url.clone().unwrap();
        let upstream = Upstream::new(&p, url).unwrap();
        let req = rewritten(&upstream, Endpoint::ChatCompletions, "gpt");
        assert_eq!(req.uri.to_string(), "/v1/chat/completions?x=1");
        assert_eq!(req.headers["authorization"], "Bearer sk-prov");
        assert!(req.headers.get("x-api-key").is_none());
        assert!(req.headers.get("transfer-encoding").is_none());
        assert_eq!(req.headers["host"], "api.example.com:8443");
        assert_eq!(req.headers["content-length"], "42");
        assert_eq!(req.headers["openai-project"], "proj");
        assert_eq!(req.headers["x-custom"], "kept");
        assert!(format!("{:?}", req.headers["authorization"]).contains("Sensitive"));
    }

    #[test]
    fn azure_requests_use_deployment_paths_and_api_key() {
        let p = provider(
            "{name: p, kind: azure-openai, base_url: 'https://res.openai.azure.com', api_key: az-key, api_version: '2024-10-21'}",
        );
        let upstream = Upstream::new(&p, p.base_url.clone().unwrap()).unwrap();
        let req = rewritten(&upstream, Endpoint::Embeddings, "my deploy");
        assert_eq!(
            req.uri.to_string(),
            "/openai/deployments/my%20deploy/embeddings?api-version=2024-10-21"
        );
        assert_eq!(req.headers["api-key"], "az-key");
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(req.headers["host"], "res.openai.azure.com");
    }
}
