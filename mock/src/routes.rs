//! Maps method + path to what answers it: the OpenAI endpoints, their Azure twins, the
//! `/_mock/*` control endpoints, or a 404 / 405.

use axum::http::Method;

use crate::stats::Endpoint;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api<'a> {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Models,
    Model(&'a str),
    /// Anthropic's `/v1/messages`.
    Messages,
    /// Anthropic's `/v1/messages/count_tokens`.
    CountTokens,
}

impl Api<'_> {
    pub fn endpoint(self) -> Endpoint {
        match self {
            Api::Chat => Endpoint::ChatCompletions,
            Api::Completions => Endpoint::Completions,
            Api::Embeddings => Endpoint::Embeddings,
            Api::Responses => Endpoint::Responses,
            Api::Models | Api::Model(_) => Endpoint::Models,
            Api::Messages | Api::CountTokens => Endpoint::Messages,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Stats,
    Reset,
    Requests,
    Health,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `azure` is the deployment name on `/openai/deployments/{deployment}/…`.
    Api {
        api: Api<'a>,
        azure: Option<&'a str>,
    },
    Control(Control),
    WrongMethod {
        allow: &'static str,
    },
    NotFound,
}

enum Target<'a> {
    Api(Api<'a>, Option<&'a str>),
    Control(Control),
}

pub fn resolve<'a>(method: &Method, path: &'a str) -> Route<'a> {
    use Target as T;
    let (target, allowed) = match path {
        "/v1/chat/completions" => (T::Api(Api::Chat, None), Method::POST),
        "/v1/completions" => (T::Api(Api::Completions, None), Method::POST),
        "/v1/embeddings" => (T::Api(Api::Embeddings, None), Method::POST),
        "/v1/responses" => (T::Api(Api::Responses, None), Method::POST),
        "/v1/models" => (T::Api(Api::Models, None), Method::GET),
        "/v1/messages" => (T::Api(Api::Messages, None), Method::POST),
        "/v1/messages/count_tokens" => (T::Api(Api::CountTokens, None), Method::POST),
        "/_mock/stats" => (T::Control(Control::Stats), Method::GET),
        "/_mock/reset" => (T::Control(Control::Reset), Method::POST),
        "/_mock/requests" => (T::Control(Control::Requests), Method::GET),
        "/_mock/health" => (T::Control(Control::Health), Method::GET),
        _ => match dynamic(path) {
            Some(found) => found,
            None => return Route::NotFound,
        },
    };
    if *method != allowed {
        let allow = if allowed == Method::GET {
            "GET"
        } else {
            "POST"
        };
        return Route::WrongMethod { allow };
    }
    match target {
        T::Api(api, azure) => Route::Api { api, azure },
        T::Control(c) => Route::Control(c),
    }
}

fn dynamic(path: &str) -> Option<(Target<'_>, Method)> {
    if let Some(id) = path.strip_prefix("/v1/models/").filter(|id| !id.is_empty()) {
        return Some((Target::Api(Api::Model(id), None), Method::GET));
    }
    let (deployment, op) = path.strip_prefix("/openai/deployments/")?.split_once('/')?;
    if deployment.is_empty() {
        return None;
    }
    let api = match op {
        "chat/completions" => Api::Chat,
        "completions" => Api::Completions,
        "embeddings" => Api::Embeddings,
        _ => return None,
    };
    Some((Target::Api(api, Some(deployment)), Method::POST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves() {
        assert_eq!(
            resolve(&Method::POST, "/v1/chat/completions"),
            Route::Api {
                api: Api::Chat,
                azure: None
            }
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/chat/completions"),
            Route::WrongMethod { allow: "POST" }
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/models/gpt-4o"),
            Route::Api {
                api: Api::Model("gpt-4o"),
                azure: None
            }
        );
        assert_eq!(
            resolve(
                &Method::POST,
                "/openai/deployments/prod-4o/chat/completions"
            ),
            Route::Api {
                api: Api::Chat,
                azure: Some("prod-4o")
            }
        );
        assert_eq!(
            resolve(&Method::POST, "/openai/deployments/prod-4o/images"),
            Route::NotFound
        );
        assert_eq!(resolve(&Method::POST, "/v1/nope"), Route::NotFound);
        assert_eq!(
            resolve(&Method::POST, "/_mock/reset"),
            Route::Control(Control::Reset)
        );
    }
}
