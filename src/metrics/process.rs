//! `process_*` series from `/proc/self`, under the names of Prometheus' process collector
//! (client_golang's), so that existing dashboards and alerts on them work for signet too.
//!
//! Read at each scrape (a few small files; a scrape is rare). Where `/proc` is missing (not
//! Linux) or a file cannot be read, that series is left out rather than reported as zero.
//! Clock ticks are USER_HZ, which Linux fixes at 100 for user space on every architecture it
//! exports `/proc` times for (procfs readers such as Prometheus' assume the same).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;

/// What one read of `/proc/self` found.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessSample {
    /// User and system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
}

impl ProcessSample {
    /// Reads the current process's figures.
    pub fn read() -> ProcessSample {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        // Field N of proc(5) is fields[N - 3]: the list starts after "pid (comm)".
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) / USER_HZ),
            _ => None,
        };
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let resident_bytes = status
            .as_deref()
            .and_then(|s| status_kib(s, "VmRSS:"))
            .map(|kib| kib * 1024.0);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| open_files_limit(&limits));
        ProcessSample {
            cpu_seconds,
            resident_bytes,
            virtual_bytes: field(23),
            open_fds,
            max_fds,
        }
    }
}

/// The fields after `pid (comm) ` (the command name may hold spaces and parentheses: the last
/// `)` ends it).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|end| stat[end + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn open_files_limit(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// When this process started, in seconds since the epoch: boot time (`btime` of `/proc/stat`)
/// plus the start tick of `/proc/self/stat`.
fn start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let started_ticks: f64 = stat_fields(&stat).get(22 - 3)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + started_ticks / USER_HZ)
}

/// The `process_*` collector; register it once per registry.
#[derive(Debug)]
pub struct ProcessCollector {
    start_time: Option<f64>,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessCollector {
    /// Reads the start time once (it never changes).
    pub fn new() -> Self {
        ProcessCollector {
            start_time: start_time_seconds(),
        }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<f64>,
) -> std::fmt::Result {
    let Some(value) = value else {
        return Ok(());
    };
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sample = ProcessSample::read();
        if let Some(cpu) = sample.cpu_seconds {
            let metric = ConstCounter::new(cpu);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                metric.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            sample.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            sample.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            sample.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            sample.max_fds,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            self.start_time,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_name_may_hold_parentheses() {
        let fields = stat_fields("42 (a (b) c) S 1 2 3");
        assert_eq!(fields, ["S", "1", "2", "3"]);
    }

    #[test]
    fn this_process_is_measured() {
        let sample = ProcessSample::read();
        assert!(
            sample.resident_bytes.is_some_and(|b| b > 1_000_000.0),
            "{sample:?}"
        );
        assert!(sample.open_fds.is_some_and(|n| n >= 3.0), "{sample:?}");
        assert!(sample.max_fds.is_some_and(|n| n >= 64.0), "{sample:?}");
        assert!(sample.cpu_seconds.is_some(), "{sample:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let started = start_time_seconds().unwrap_or_default();
        assert!(
            started > now - 86_400.0 && started <= now + 1.0,
            "{started} vs {now}"
        );
    }
}
