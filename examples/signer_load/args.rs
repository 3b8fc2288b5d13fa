//! The load generator's flags and their defaults (main.rs says what each does).

use anyhow::{Context, bail};
use signet::signer;

use crate::push::IMAGE_SHAPE;

/// What a run measures and how (the flags, with their defaults below).
pub struct Args {
    pub key: String,
    pub images: usize,
    pub concurrency: usize,
    pub sequential: usize,
    pub storage: String,
    pub direct: bool,
    pub formats: Vec<signet::signature::SignatureFormat>,
    pub recheck: signer::Recheck,
    pub acknowledge: signer::Acknowledge,
    pub burst_repositories: usize,
}

pub fn args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        key: "file".into(),
        images: 400,
        concurrency: 16,
        sequential: 50,
        storage: "inmemory".into(),
        direct: false,
        formats: signet::signature::SignatureFormat::ALL.to_vec(),
        recheck: signer::Recheck::Events,
        acknowledge: signer::Acknowledge::Signed,
        burst_repositories: 0,
    };
    let (mut layers, mut layer_bytes) = (1usize, 72usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--key" => parsed.key = value()?,
            "--images" => parsed.images = value()?.parse()?,
            "--concurrency" => parsed.concurrency = value()?.parse()?,
            "--sequential" => parsed.sequential = value()?.parse()?,
            "--storage" => parsed.storage = value()?,
            "--deliver" => parsed.direct = value()? == "direct",
            "--layers" => layers = value()?.parse()?,
            "--burst-repositories" => parsed.burst_repositories = value()?.parse()?,
            "--layer-bytes" => layer_bytes = value()?.parse()?,
            "--recheck" => {
                parsed.recheck = match value()?.as_str() {
                    "events" => signer::Recheck::Events,
                    other => signer::Recheck::After(signet::serve::parse_duration(other)?),
                }
            }
            "--acknowledge" => {
                parsed.acknowledge = value()?.parse().map_err(anyhow::Error::msg)?;
            }
            "--formats" => {
                parsed.formats = match value()?.as_str() {
                    "both" => signet::signature::SignatureFormat::ALL.to_vec(),
                    one => vec![one.parse()?],
                }
            }
            // `cargo bench`/`cargo run` may pass this through.
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    if layers == 0 {
        bail!("--layers must be at least 1");
    }
    let _ = IMAGE_SHAPE.set((layers, layer_bytes.max(16)));
    if parsed.burst_repositories > parsed.sequential {
        bail!(
            "--burst-repositories must be at most --sequential: the burst goes into repositories signed before"
        );
    }
    Ok(parsed)
}
