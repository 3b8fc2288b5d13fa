//! The drain's `/readyz` override as a plain tower layer: while draining, `GET /readyz` answers
//! 503 whatever the app would say; every other request goes straight to the app.
//!
//! Written by hand rather than with `axum::middleware::from_fn`: that one boxes the inner
//! service and the future of every request (about 1,000 instructions per cached admission,
//! measured with `scripts/bench-vs-nginx.sh` `COST=`), where this adds one atomic load and, when
//! not draining, nothing else.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::Either;

use super::drain::Drain;

/// Wraps every route of a router in [`Gated`].
#[derive(Clone, Debug)]
pub(super) struct ReadinessGate {
    drain: Drain,
}

impl ReadinessGate {
    pub(super) fn new(drain: Drain) -> Self {
        ReadinessGate { drain }
    }
}

impl<S> tower::Layer<S> for ReadinessGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            drain: self.drain.clone(),
        }
    }
}

/// A route behind the gate.
#[derive(Clone, Debug)]
pub(super) struct Gated<S> {
    inner: S,
    drain: Drain,
}

impl<S> tower::Service<Request> for Gated<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.drain.is_draining() && request.uri().path() == "/readyz" {
            let draining = (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
            return Either::Left(ready(Ok(draining)));
        }
        Either::Right(self.inner.call(request))
    }
}
