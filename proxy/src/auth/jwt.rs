//! Client authentication with JWTs from configured issuers (`auth.jwt_issuers`): the
//! signature is checked with josekit against the issuer's keys (inline JWKs, a JWKS file
//! or URL read again in the background), the algorithm against an allow-list (`none`
//! never passes), and `iss`, `aud`, `exp` and `nbf` with a small leeway. A claim names the
//! user (by email) or team (by name) whose limits the request then counts against.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use base64::Engine;
use josekit::{
    jwk::{Jwk, JwkSet},
    jws::{self, JwsVerifier},
    jwt,
};
use sea_orm_migration::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tollgate_core::{
    config::{JwtIssuer, SubjectKind},
    limits::QuotaLimits,
    store::{entity::team, users},
};

use crate::{backend::Backend, error::GatewayError};

const SUBJECT_TTL: Duration = Duration::from_secs(60);

/// The user or team a verified token names.
#[derive(Debug)]
pub struct Subject {
    pub kind: SubjectKind,
    pub id: i64,
    pub name: String,
    pub limits: QuotaLimits,
}

/// A look-up result (`None`: no such active user or team) and when it was made.
type CachedSubject = (Option<Arc<Subject>>, Instant);

struct Issuer {
    config: JwtIssuer,
    keys: RwLock<Vec<Jwk>>,
}

pub struct JwtAuth {
    /// Replaced whole by a config reload.
    issuers: ArcSwap<Vec<Arc<Issuer>>>,
    backend: Arc<Backend>,
    subjects: Mutex<HashMap<(bool, String), CachedSubject>>,
}

/// Each issuer with its keys loaded, refreshing those from files and URLs until the issuer is
/// dropped (a reload that removes it).
async fn issuers(configs: &[JwtIssuer]) -> anyhow::Result<Vec<Arc<Issuer>>> {
    let mut issuers = Vec::new();
    for config in configs {
        let keys = load_keys(config)
            .await
            .map_err(|e| anyhow::anyhow!("JWT issuer {}: {e}", config.issuer))?;
        let issuer = Arc::new(Issuer {
            config: config.clone(),
            keys: RwLock::new(keys),
        });
        if config.jwks_file.is_some() || config.jwks_url.is_some() {
            let refreshing = Arc::downgrade(&issuer);
            let every = config.refresh;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(issuer) = refreshing.upgrade() else {
                        return;
                    };
                    match load_keys(&issuer.config).await {
                        Ok(keys) => {
                            if let Ok(mut slot) = issuer.keys.write() {
                                *slot = keys;
                            }
                        }
                        // Keep the keys we have: a passing outage must not lock users out.
                        Err(e) => tracing::warn!(
                            "refreshing the keys of JWT issuer {} failed: {e}",
                            issuer.config.issuer
                        ),
                    }
                }
            });
        }
        issuers.push(issuer);
    }
    Ok(issuers)
}

/// Whether a bearer credential looks like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

fn invalid(reason: impl Into<String>) -> GatewayError {
    GatewayError::InvalidToken(reason.into())
}

impl JwtAuth {
    /// Loads each issuer's keys and starts refreshing those from files and URLs.
    pub fn start(configs: &[JwtIssuer], backend: Arc<Backend>) -> anyhow::Result<Arc<Self>> {
        let issuers = backend.handle().block_on(issuers(configs))?;
        Ok(Arc::new(JwtAuth {
            issuers: ArcSwap::from_pointee(issuers),
            backend,
            subjects: Mutex::new(HashMap::new()),
        }))
    }

    /// A config reload: new issuers (their keys loaded first) replace the old ones, unless
    /// nothing changed. On an error the old ones stay.
    pub async fn reload(&self, configs: &[JwtIssuer]) -> anyhow::Result<()> {
        let current: Vec<JwtIssuer> = self
            .issuers
            .load()
            .iter()
            .map(|i| i.config.clone())
            .collect();
        if current == configs {
            return Ok(());
        }
        let configs = configs.to_vec();
        let loaded = self
            .backend
            .handle()
            .spawn(async move { issuers(&configs).await })
            .await
            .map_err(|e| anyhow::anyhow!("loading JWT issuer keys: {e}"))??;
        self.issuers.store(Arc::new(loaded));
        self.evict_all();
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.load().is_empty()
    }

    pub async fn authenticate(&self, token: &str) -> Result<Arc<Subject>, GatewayError> {
        let (issuer, claim) = self.verify(token)?;
        self.subject(issuer.config.subject, &claim).await
    }

    /// Checks the token; returns its issuer and the value of the subject claim.
    fn verify(&self, token: &str) -> Result<(Arc<Issuer>, String), GatewayError> {
        let header = jwt::decode_header(token).map_err(|_| invalid("the token is malformed"))?;
        let alg = header
            .claim("alg")
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid("the token has no algorithm"))?
            .to_string();
        let kid = header
            .claim("kid")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let iss = unverified_issuer(token).ok_or_else(|| invalid("the token has no issuer"))?;
        let issuer = self
            .issuers
            .load()
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| invalid(format!("issuer {iss:?} is not trusted")))?
            .clone();
        if !issuer.config.algorithms.contains(&alg) {
            return Err(invalid(format!("algorithm {alg} is not accepted")));
        }
        let payload = {
            let keys = issuer.keys.read().map_err(|_| GatewayError::Internal)?;
            let mut verified = None;
            for jwk in keys
                .iter()
                .filter(|k| kid.is_none() || k.key_id() == kid.as_deref())
            {
                let Some(verifier) = verifier(&alg, jwk) else {
                    continue;
                };
                if let Ok((payload, _)) = jwt::decode_with_verifier(token, verifier.as_ref()) {
                    verified = Some(payload);
                    break;
                }
            }
            verified.ok_or_else(|| invalid("the signature does not verify"))?
        };
        let leeway = issuer.config.leeway;
        let now = SystemTime::now();
        let expires = payload
            .expires_at()
            .ok_or_else(|| invalid("the token has no expiry (exp)"))?;
        if expires + leeway <= now {
            return Err(invalid("the token has expired"));
        }
        if payload.not_before().is_some_and(|nbf| nbf > now + leeway) {
            return Err(invalid("the token is not valid yet (nbf)"));
        }
        if payload.issuer() != Some(issuer.config.issuer.as_str()) {
            return Err(invalid("the token's issuer does not match"));
        }
        let audience_ok = payload
            .audience()
            .is_some_and(|aud| aud.contains(&issuer.config.audience.as_str()));
        if !audience_ok {
            return Err(invalid(format!(
                "the token is not for this audience ({})",
                issuer.config.audience
            )));
        }
        if issuer.config.claim == "email"
            && payload.claim("email_verified").and_then(|v| v.as_bool()) == Some(false)
        {
            return Err(invalid("the token's email is not verified"));
        }
        let claim = payload
            .claim(&issuer.config.claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid(format!("the token has no {} claim", issuer.config.claim)))?
            .to_string();
        Ok((issuer, claim))
    }

    /// The user or team a claim names, from a short-lived cache in front of the store.
    async fn subject(&self, kind: SubjectKind, name: &str) -> Result<Arc<Subject>, GatewayError> {
        let key = (kind == SubjectKind::User, name.to_string());
        if let Ok(cache) = self.subjects.lock()
            && let Some((subject, at)) = cache.get(&key)
            && at.elapsed() < SUBJECT_TTL
        {
            return subject.clone().ok_or_else(|| unknown(kind, name));
        }
        let db = self.backend.db.clone();
        let lookup = name.to_string();
        let found = self
            .backend
            .run(async move {
                match kind {
                    SubjectKind::User => users::find_by_email(&db, &lookup).await.map(|u| {
                        u.filter(|u| !u.disabled).map(|u| Subject {
                            kind,
                            id: u.id,
                            name: u.email.clone(),
                            limits: u.limits(),
                        })
                    }),
                    SubjectKind::Team => team::Entity::find()
                        .filter(team::Column::Name.eq(lookup))
                        .one(&db)
                        .await
                        .map_err(Into::into)
                        .map(|t| {
                            t.map(|t| Subject {
                                kind,
                                id: t.id,
                                name: t.name.clone(),
                                limits: t.limits(),
                            })
                        }),
                }
            })
            .await
            .ok_or(GatewayError::KeyStoreUnavailable)?
            .map_err(|e| {
                tracing::error!("JWT subject look-up failed: {e}");
                GatewayError::KeyStoreUnavailable
            })?
            .map(Arc::new);
        if let Ok(mut cache) = self.subjects.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (found.clone(), Instant::now()));
        }
        found.ok_or_else(|| unknown(kind, name))
    }

    /// Forgets cached subjects (their limits or disabled flag changed).
    pub fn evict_all(&self) {
        if let Ok(mut cache) = self.subjects.lock() {
            cache.clear();
        }
    }
}

fn unknown(kind: SubjectKind, name: &str) -> GatewayError {
    match kind {
        SubjectKind::User => invalid(format!("no active user {name:?}")),
        SubjectKind::Team => invalid(format!("no team {name:?}")),
    }
}

/// The `iss` of a token before its signature is checked, only to pick the issuer's keys.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_string)
}

fn verifier(alg: &str, jwk: &Jwk) -> Option<Box<dyn JwsVerifier>> {
    fn boxed<V: JwsVerifier + 'static>(
        v: Result<V, josekit::JoseError>,
    ) -> Option<Box<dyn JwsVerifier>> {
        v.ok().map(|v| Box::new(v) as Box<dyn JwsVerifier>)
    }
    match alg {
        "RS256" => boxed(jws::RS256.verifier_from_jwk(jwk)),
        "RS384" => boxed(jws::RS384.verifier_from_jwk(jwk)),
        "RS512" => boxed(jws::RS512.verifier_from_jwk(jwk)),
        "PS256" => boxed(jws::PS256.verifier_from_jwk(jwk)),
        "PS384" => boxed(jws::PS384.verifier_from_jwk(jwk)),
        "PS512" => boxed(jws::PS512.verifier_from_jwk(jwk)),
        "ES256" => boxed(jws::ES256.verifier_from_jwk(jwk)),
        "ES384" => boxed(jws::ES384.verifier_from_jwk(jwk)),
        "ES512" => boxed(jws::ES512.verifier_from_jwk(jwk)),
        "EdDSA" => boxed(jws::EdDSA.verifier_from_jwk(jwk)),
        "HS256" => boxed(jws::HS256.verifier_from_jwk(jwk)),
        "HS384" => boxed(jws::HS384.verifier_from_jwk(jwk)),
        _ => None,
    }
}

/// The issuer's keys: inline JWKs, plus the JWKS file and URL.
async fn load_keys(config: &JwtIssuer) -> anyhow::Result<Vec<Jwk>> {
    let mut keys = Vec::new();
    for text in &config.jwks {
        keys.push(Jwk::from_bytes(text.as_bytes())?);
    }
    if let Some(path) = &config.jwks_file {
        let text = tokio::fs::read(path)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        keys.extend(JwkSet::from_bytes(&text)?.keys().into_iter().cloned());
    }
    if let Some(url) = &config.jwks_url {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let text = client
            .get(url.clone())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        keys.extend(JwkSet::from_bytes(&text)?.keys().into_iter().cloned());
    }
    Ok(keys)
}
