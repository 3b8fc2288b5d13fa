//! The serving edge alone: signet's own [`Server`] (rustls, hyper-util, one single-threaded
//! runtime per core as on the webhook's admission port) answering every request with a fixed
//! body after reading the request's body whole, as `/validate` does (before any router), and
//! nothing else. `scripts/bench-vs-nginx.sh` runs it next to the webhook and
//! nginx: the gap between it and nginx is what the HTTP and TLS stack costs before any admission
//! work, the gap between it and the webhook what admission itself costs.
//!
//! ```text
//! cargo run --release --example edge_floor -- LISTEN CERT KEY ANSWER_FILE
//! ```
// A measuring tool, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use signet::serve::{CertificateExpiry, Routes, Server, TlsSource, serving_threads};

/// Every request: its body read whole, then the fixed answer.
#[derive(Clone)]
struct FixedAnswer(Bytes);

impl Routes for FixedAnswer {
    fn answer(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + use<> {
        let answer = self.0.clone();
        async move {
            // Read the body whole, as the webhook does before it parses.
            let mut body = request.into_body();
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
            }
            std::hint::black_box(seen);
            let mut response = Response::new(Body::from(answer));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

/// The webhook's allocator (`src/main.rs`): the edge's allocations cost what they cost there
/// (glibc's `malloc` and `free` took about 5,500 instructions per request here, mimalloc about
/// 3,100 in the webhook).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, cert, key, answer] = args.as_slice() else {
        panic!("usage: edge_floor LISTEN CERT KEY ANSWER_FILE");
    };
    let answer = FixedAnswer(Bytes::from(std::fs::read(answer).expect("the answer file")));
    let tls = TlsSource::Files {
        cert: cert.into(),
        key: key.into(),
        reload_interval: Duration::from_secs(3600),
        client_ca: None,
    };
    // Served as the webhook serves its admission port: one single-threaded runtime per core.
    let threads = serving_threads(0);
    let listener = std::net::TcpListener::bind(
        listen
            .parse::<std::net::SocketAddr>()
            .expect("LISTEN as ip:port"),
    )
    .expect("bind");
    let server = Server::start_routes(
        "edge_floor",
        listener,
        answer,
        Some(&tls),
        &CertificateExpiry::default(),
        threads,
    )
    .expect("start");
    println!("listening on {}", server.local_addr());
    std::future::pending::<()>().await;
}
