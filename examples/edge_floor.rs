//! The serving edge alone: signet's own [`Server`] (axum-server, rustls, hyper, the readiness
//! layer, one single-threaded runtime per core as on the webhook's admission port) answering
//! every `POST` with a fixed body after reading the request's body whole, as
//! `/validate` does, and nothing else. `scripts/bench-vs-nginx.sh` runs it next to the webhook and
//! nginx: the gap between it and nginx is what the HTTP and TLS stack costs before any admission
//! work, the gap between it and the webhook what admission itself costs.
//!
//! ```text
//! cargo run --release --example edge_floor -- LISTEN CERT KEY ANSWER_FILE
//! ```
// A measuring tool, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use futures::StreamExt as _;
use signet::serve::{CertificateExpiry, Drain, Server, TlsSource, serving_threads};

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
    let answer = Bytes::from(std::fs::read(answer).expect("the answer file"));
    let app = Router::new().fallback(post(move |body: Body| {
        let answer = answer.clone();
        async move {
            // Read the body whole, as the webhook does before it parses.
            let mut stream = body.into_data_stream();
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
            }
            std::hint::black_box(seen);
            ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
        }
    }));
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
    let server = Server::start_per_core(
        "edge_floor",
        listener,
        app,
        &tls,
        &Drain::new(),
        &CertificateExpiry::default(),
        threads,
    )
    .expect("start");
    println!("listening on {}", server.local_addr());
    std::future::pending::<()>().await;
}
