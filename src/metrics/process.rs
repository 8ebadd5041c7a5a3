//! The standard process metrics every Prometheus client exports
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`), read
//! from `/proc` at each scrape. Elsewhere than Linux there is no `/proc`, and nothing is
//! exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads this process's figures at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc` says of this process now.
struct Figures {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

fn read() -> Option<Figures> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    Some(Figures {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: (stat.rss * procfs::page_size()) as i64,
        open_fds: me.fd_count().ok()? as i64,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(figures) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(figures.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let resident = ConstGauge::new(figures.resident_bytes);
        resident.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            resident.metric_type(),
        )?)?;
        let fds = ConstGauge::new(figures.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}
