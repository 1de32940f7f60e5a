//! The deployment of each attempt, chosen together with its quota. The first attempt's
//! deployment is reserved on with the client's scopes in one call; one at its own limits
//! is passed over for the next, and the client is refused only when every deployment is.
//! A later attempt (a fallback) reserves on its deployment's limits alone.

use std::sync::Arc;

use pingora::{Error, ErrorType};

use crate::{
    error::GatewayError,
    metrics::Metrics,
    quota::{
        Owner, Scoped,
        holds::Holds,
        limiter::{Claim, Limiter},
    },
    routing::{Route, Tried, attempts::Attempts},
};

/// Reserves the client's `scopes` and the first deployment's own limits; returns that
/// deployment, and whether it is its half-open probe.
pub async fn first(
    limiter: &Arc<Limiter>,
    metrics: &Metrics,
    route: &Route,
    scopes: Vec<Scoped>,
    claim: &Claim<'_>,
    holds: &mut Holds,
) -> Result<(Option<usize>, bool), GatewayError> {
    // Every deployment cooling down: the fallback models take it, if there are any.
    if let Some(retry_after) = route.all_cooling()
        && route.fallbacks.is_empty()
    {
        return Err(GatewayError::NoHealthyDeployment {
            model: route.model.clone(),
            retry_after,
        });
    }
    let mut passed_over = Tried::default();
    loop {
        let mut scoped = scopes.clone();
        let pick = route.pick(passed_over);
        // Claims the probe of a deployment whose cooldown just ended; one that another
        // request is probing is passed over.
        let mut probing = false;
        if let Some(i) = pick {
            match route.claim(i) {
                None => {
                    passed_over.mark(i);
                    continue;
                }
                Some(probe) => probing = probe,
            }
        }
        // A refused reservation gives the probe back: nothing will report on it.
        let give_back = |route: &Route| {
            if let Some(i) = pick.filter(|_| probing) {
                route.release(i);
            }
        };
        let deployment_scope = pick.and_then(|i| route.deployments[i].quota_scope());
        let limited = deployment_scope.is_some();
        scoped.extend(deployment_scope);
        let Some(reservation) = limiter.reservation(scoped, claim) else {
            return Ok((pick, probing));
        };
        match limiter.admit(reservation, metrics).await {
            Ok(admitted) => {
                holds.admitted = Some(admitted);
                holds.reserved_deployment =
                    pick.filter(|_| limited).map(|i| route.deployments[i].id);
                return Ok((pick, probing));
            }
            // At its own limit: the next deployment, or the fallback models after the last.
            Err(GatewayError::RateLimited(r))
                if r.owner == Owner::Deployment
                    && let Some(i) = pick
                    && (route.pick(passed_over.with(i)).is_some()
                        || !route.fallbacks.is_empty()) =>
            {
                give_back(route);
                passed_over.mark(i);
            }
            Err(e) => {
                give_back(route);
                return Err(e);
            }
        }
    }
}

/// The deployment of the next attempt: the one reserved on for the first, else an untried
/// one. One with limits of its own is reserved on first (a second quota call, on the
/// fallback path only); one at its limit is passed over like an unreachable one.
pub async fn next(
    limiter: &Arc<Limiter>,
    metrics: &Metrics,
    attempts: &mut Attempts,
    holds: &mut Holds,
    claim: &Claim<'_>,
) -> pingora::Result<usize> {
    if let Some(index) = attempts
        .preselected
        .take()
        .filter(|i| !attempts.tried.contains(*i))
    {
        return Ok(index);
    }
    let mut route = attempts
        .route
        .clone()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
    loop {
        let Some(index) = route.pick(attempts.tried) else {
            // This model has nothing left: its fallback models in turn.
            if attempts.fall_back()
                && let Some(next) = attempts.route.clone()
            {
                route = next;
                continue;
            }
            return Err(Error::explain(
                ErrorType::ConnectError,
                "every deployment of the model failed, is cooling down or is at its limit",
            ));
        };
        let Some(probing) = route.claim(index) else {
            attempts.tried.mark(index);
            continue;
        };
        // The probe, if this attempt is one, is the attempt's to report on (or give back).
        let take = |attempts: &mut Attempts| {
            if probing {
                attempts.pending_probe = Some(route.deployments[index].health.clone());
            }
            index
        };
        let Some(scope) = route.deployments[index]
            .quota_scope()
            .filter(|_| !holds.holds_deployment(route.deployments[index].id))
        else {
            return Ok(take(attempts));
        };
        let Some(reservation) = limiter.reservation(vec![scope], claim) else {
            return Ok(take(attempts));
        };
        match limiter.admit(reservation, metrics).await {
            Ok(admitted) => {
                holds
                    .fallbacks
                    .push((route.deployments[index].id, admitted));
                holds.fallback_refusal = None;
                return Ok(take(attempts));
            }
            // Answered as the 429 it is if no deployment is left (see fail_to_proxy).
            Err(e @ GatewayError::RateLimited(_)) => {
                if probing {
                    route.release(index);
                }
                attempts.tried.mark(index);
                holds.fallback_refusal = Some(e);
            }
            // The client is admitted already; a store failure here does not undo that.
            Err(e) => {
                tracing::warn!("reserving on a fallback deployment failed: {e}");
                return Ok(take(attempts));
            }
        }
    }
}
