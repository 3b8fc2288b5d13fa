//! One measured run: the signer in-process behind the registry, warm-up, the one-at-a-time phase,
//! the unsigned and signed bursts, and the figures printed for each.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use signet::controller::PolicyState;
use signet::crd::{SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore};
use signet::signature::SignatureType;
use signet::signer::{self, BearerToken, Signer, SignerOptions};
use tracing::Instrument as _;

use crate::TOKEN;
use crate::args::Args;
use crate::keys::key_reference;
use crate::push::{burst_image, deliver, push_image};
use crate::registry::start_registry;
use crate::watch::{all_answer, signed_tags, wait_signed};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Pushes `repo:v1` (its content from `seed`), sends its event by hand under `--direct`, and
/// waits until it is signed in every format; the time from the end of the push until then.
async fn push_until_signed(
    client: &RegistryClient,
    host: &str,
    events_url: &str,
    args: &Args,
    repo: &str,
    seed: usize,
) -> anyhow::Result<Duration> {
    let digest = push_image(client, host, (repo, "v1"), seed)
        .instrument(tracing::info_span!("loadgen"))
        .await?;
    let pushed = Instant::now();
    if args.direct {
        deliver(events_url, host, (repo, "v1"), &digest).await?;
    }
    let signed = wait_signed(
        client,
        host,
        repo,
        &digest,
        &args.formats,
        Duration::from_millis(2),
    )
    .instrument(tracing::info_span!("loadgen"))
    .await?;
    Ok(signed - pushed)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = key_reference(&args.key, dir.path())?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let events_url = format!("http://{}/events", listener.local_addr()?);
    let (_registry, host) =
        start_registry((!args.direct).then_some(events_url.as_str()), &args.storage)?;
    let rule = SigningRule::new(
        "load",
        SigningRuleSpec {
            scope: vec![format!("{host}/load/**")],
            key: SigningKeyRef {
                reference: key,
                id: None,
                certificate_chain: None,
            },
            algorithm: Algorithm::EcdsaP256Sha256,
            signature_type: SignatureType::Default,
            trigger: Trigger::Automatic,
            formats: args.formats.clone(),
            notation_envelope: Default::default(),
        },
    );
    let compiled = signet::policy::compile(&Default::default(), 1, Default::default());
    let client = RegistryClient::new(&RegistryOptions::default())?;
    // The signer's own client, so that its registry requests can be counted apart.
    let signer_client = RegistryClient::new(&RegistryOptions::default())?;
    let signer = Signer::new(
        SignatureStore::new(signer_client.clone()),
        PolicyState::fixed(compiled.snapshot, vec![rule]),
        SignerOptions {
            recheck: args.recheck,
            acknowledge: args.acknowledge,
            ..SignerOptions::default()
        },
    );
    signer.open_keys().await?;
    let server = signet::serve::Server::start(
        "signer",
        listener,
        signer::router(signer.clone(), BearerToken::new(TOKEN)?),
        None,
        &signet::serve::Drain::new(),
    )?;

    // Warm-up: connections, tokens, the registry's first writes.
    for i in 0..5 {
        let repo = format!("load/warm{i}");
        push_until_signed(&client, &host, &events_url, &args, &repo, 1_000_000 + i).await?;
    }

    // The warm-up images' rechecks (2 s after each with `--recheck 2s`) and own events must not be
    // counted as the measured ones'.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let requests_before = signer_client.requests_sent();
    let mut latencies = Vec::with_capacity(args.sequential);
    for i in 0..args.sequential {
        let repo = format!("load/seq{i}");
        let latency =
            push_until_signed(&client, &host, &events_url, &args, &repo, 2_000_000 + i).await?;
        latencies.push(latency);
    }
    // Settle: a timed recheck (2 s after each signing) is part of what a signed image costs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let signer_requests = signer_client.requests_sent() - requests_before;
    // The same again, each image pushed into a repository signed before (its tag moved to the
    // new image): what the empty config's once-per-repository put saves.
    let requests_before = signer_client.requests_sent();
    for i in 0..args.sequential {
        let repo = format!("load/seq{i}");
        push_until_signed(&client, &host, &events_url, &args, &repo, 4_000_000 + i).await?;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let known_repository_requests = signer_client.requests_sent() - requests_before;
    latencies.sort();
    println!(
        "key {}, registry storage {}: one at a time ({} images): push -> signature readable p50 {}, p95 {}, max {}",
        args.key,
        args.storage,
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.95)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
    );

    let formats: Vec<&str> = args.formats.iter().map(|f| f.as_str()).collect();
    println!(
        "  formats {}: signer registry requests per signed image {:.1} in a new repository, {:.1} in one signed before (recheck {:?}, its requests included)",
        formats.join("+"),
        signer_requests as f64 / latencies.len().max(1) as f64,
        known_repository_requests as f64 / latencies.len().max(1) as f64,
        args.recheck
    );
    let metrics = signer.metrics().encode();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    println!(
        "  signer's own time per event (received -> signed): mean {}",
        ms(Duration::from_secs_f64(
            value("signet_signer_signing_latency_seconds_sum")
                / value("signet_signer_signing_latency_seconds_count").max(1.0)
        ))
    );
    if args.images == 0 {
        server.stop().await?;
        return Ok(());
    }
    // The same number of images pushed out of the rule's scope: push throughput with nothing
    // to sign (the registry still notifies the signer, which finds no rule).
    let unsigned_start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pushers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, host, next) = (client.clone(), host.clone(), Arc::clone(&next));
        let total = args.images;
        let repositories = args.burst_repositories;
        pushers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let (repo, tag) = burst_image("free", i, repositories);
                push_image(&client, &host, (&repo, &tag), 3_000_000 + i).await?;
            }
        }));
    }
    for pusher in pushers {
        pusher.await??;
    }
    let unsigned_rate = args.images as f64 / unsigned_start.elapsed().as_secs_f64();
    println!(
        "  unsigned: burst of {} images by {} pushers, nothing to sign: {:.0} images/s",
        args.images, args.concurrency, unsigned_rate
    );

    let burst_requests_before = signer_client.requests_sent();
    let signed_before = signer.metrics().signed.get();
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (pushed_tx, mut pushed_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut pushers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, host, next, pushed_tx) = (
            client.clone(),
            host.clone(),
            Arc::clone(&next),
            pushed_tx.clone(),
        );
        let direct = args.direct.then(|| events_url.clone());
        let total = args.images;
        let repositories = args.burst_repositories;
        pushers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let (repo, tag) = burst_image("load", i, repositories);
                let digest = push_image(&client, &host, (&repo, &tag), i).await?;
                let pushed = Instant::now();
                if let Some(url) = &direct {
                    deliver(url, &host, (&repo, &tag), &digest).await?;
                }
                let _ = pushed_tx.send((i, repo, digest, pushed));
            }
        }));
    }
    drop(pushed_tx);
    // When the burst is signed: the signer's own count of signatures written (each counted once
    // its manifest PUT was answered), read in-process, so that watching costs the registry
    // nothing. Watching by reading the registry (one request at a time, over every image not
    // yet seen signed) kept the registry busy during the signed burst only, and the unsigned
    // baseline has no such load: it lowered the ratio. Every image is read back from the
    // registry once the burst is over. Push -> signature latencies are measured on every
    // LATENCY_SAMPLE-th image, polled from the registry.
    const LATENCY_SAMPLE: usize = 8;
    let mut outstanding: Vec<(String, String, Instant)> = Vec::new();
    let mut pushed_all: Vec<(String, String)> = Vec::with_capacity(args.images);
    let mut timings: Vec<(Instant, Instant)> = Vec::new();
    let mut pushing = true;
    let mut last_signed: Option<Instant> = None;
    while pushing || !outstanding.is_empty() || last_signed.is_none() {
        loop {
            match pushed_rx.try_recv() {
                Ok((i, repo, digest, pushed)) => {
                    if i % LATENCY_SAMPLE == 0 {
                        outstanding.push((repo.clone(), digest.clone(), pushed));
                    }
                    pushed_all.push((repo, digest));
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    pushing = false;
                    break;
                }
            }
        }
        if last_signed.is_none()
            && signer.metrics().signed.get() - signed_before >= args.images as u64
        {
            last_signed = Some(Instant::now());
        }
        let mut still = Vec::with_capacity(outstanding.len());
        for (repo, digest, pushed) in outstanding {
            let tags = signed_tags(&digest, &args.formats)?;
            if all_answer(&client, &host, &repo, &tags).await {
                timings.push((pushed, Instant::now()));
            } else {
                still.push((repo, digest, pushed));
            }
        }
        outstanding = still;
        if Instant::now() - start > Duration::from_secs(300) {
            bail!(
                "burst not signed after 300 s ({} of {} signatures written)",
                signer.metrics().signed.get() - signed_before,
                args.images
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for pusher in pushers {
        pusher.await??;
    }
    let last_signed = last_signed.unwrap_or(start);
    let elapsed = last_signed - start;
    for (repo, digest) in &pushed_all {
        let tags = signed_tags(digest, &args.formats)?;
        if !all_answer(&client, &host, repo, &tags).await {
            bail!("{repo}@{digest}: counted signed, but its signature tags do not all answer");
        }
    }
    let mut under_load: Vec<Duration> = timings.iter().map(|(p, s)| *s - *p).collect();
    under_load.sort();
    println!(
        "key {}, delivery {}, acknowledge {}: burst of {} images by {} pushers: {:.0} images/s (first push to last signature, {:.2} s); push -> signature (every {LATENCY_SAMPLE}th image) p50 {}, p95 {}",
        args.key,
        if args.direct { "direct" } else { "registry" },
        args.acknowledge,
        args.images,
        args.concurrency,
        args.images as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(percentile(&under_load, 0.5)),
        ms(percentile(&under_load, 0.95)),
    );
    let signed_rate = args.images as f64 / elapsed.as_secs_f64();
    println!(
        "  signed / unsigned push throughput: {:.2} ({signed_rate:.0} / {unsigned_rate:.0} images/s)",
        signed_rate / unsigned_rate
    );
    // Past the last rechecks: the burst's own requests per image, tag polls included (the
    // registry, busy, links tags later than it notifies).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    println!(
        "  signer registry requests per signed image in the burst ({}): {:.1}",
        match args.burst_repositories {
            0 => "new repositories".to_string(),
            n => format!("{n} repositories signed before"),
        },
        (signer_client.requests_sent() - burst_requests_before) as f64 / args.images.max(1) as f64
    );
    let metrics = signer.metrics().encode();
    for line in metrics.lines().filter(|l| {
        l.starts_with("signet_signer_signed_total")
            || l.starts_with("signet_signer_failed_total")
            || l.starts_with("signet_signer_overwritten_total")
            || l.starts_with("signet_signer_bundles_written_total")
            || (l.starts_with("signet_signer_kms_call")
                && l.contains("outcome=\"success\"")
                && !l.contains("_bucket"))
    }) {
        println!("  {line}");
    }
    server.stop().await?;
    Ok(())
}
