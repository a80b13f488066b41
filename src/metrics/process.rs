//! The standard `process_` series, named as the Prometheus client libraries name them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read from `/proc/self`
//! through the `procfs` crate when `/metrics` is scraped. Scrapes come every few seconds, never
//! on a request's path, so the crate's parsing costs nothing that matters.

use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` at each scrape; a series whose file cannot be read is left out.
#[derive(Debug)]
pub struct ProcessCollector {
    /// When the process started, unix seconds.
    start_time: f64,
}

impl ProcessCollector {
    /// A collector for this process.
    pub fn new() -> Self {
        ProcessCollector {
            start_time: start_time().unwrap_or_else(|| {
                // `/proc/stat` (the boot time) is hidden under systemd's `ProcSubset=pid`: the
                // registry is made moments after the process starts, so its clock stands in.
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            }),
        }
    }
}

/// The process's start time: boot time plus its start in clock ticks since boot.
fn start_time() -> Option<f64> {
    let stat = Process::myself().ok()?.stat().ok()?;
    let boot = procfs::boot_time_secs().ok()?;
    Some(boot as f64 + stat.starttime as f64 / procfs::ticks_per_second() as f64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = Process::myself() else {
            return Ok(());
        };
        let mut gauges: Vec<(&str, &str, f64)> = Vec::with_capacity(5);
        if let Ok(stat) = me.stat() {
            let cpu = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
            let counter = ConstCounter::new(cpu);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?)?;
            gauges.push((
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize as f64,
            ));
            gauges.push((
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                (stat.rss * procfs::page_size()) as f64,
            ));
        }
        gauges.push((
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time,
        ));
        if let Ok(open) = me.fd_count() {
            gauges.push((
                "process_open_fds",
                "Number of open file descriptors.",
                open as f64,
            ));
        }
        if let Ok(limits) = me.limits() {
            // An unlimited soft limit is reported as the largest value a client library would.
            let max = match limits.max_open_files.soft_limit {
                LimitValue::Value(n) => n as f64,
                LimitValue::Unlimited => f64::from(u32::MAX),
            };
            gauges.push((
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            ));
        }
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_series_is_read_from_proc() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_virtual_memory_bytes ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            let line = text.lines().find(|l| l.starts_with(name));
            let value: f64 = line
                .and_then(|l| l[name.len()..].parse().ok())
                .unwrap_or_else(|| panic!("no {name}in\n{text}"));
            // CPU time may still round to 0 ticks in a fresh process.
            assert!(
                value > 0.0 || name.starts_with("process_cpu"),
                "{name}{value}"
            );
        }
        let start = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
