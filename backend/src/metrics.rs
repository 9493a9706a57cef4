//! Prometheus metrics, in the text exposition format at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub r#type: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    pub events_ingested: Family<EventLabels, Counter>,
    pub events_duplicate: Family<SourceLabels, Counter>,
    pub events_rejected: Family<SourceLabels, Counter>,
    pub open_incidents: Family<PhaseLabels, Gauge>,
    pub ingest_latency: Histogram,
    pub commit_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deferwatch");
        let events_ingested = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_ingested",
            "Events stored, by type and source",
            events_ingested.clone(),
        );
        let events_duplicate = Family::<SourceLabels, Counter>::default();
        registry.register(
            "events_duplicate",
            "Events received again and not counted twice",
            events_duplicate.clone(),
        );
        let events_rejected = Family::<SourceLabels, Counter>::default();
        registry.register(
            "events_rejected",
            "Items rejected by validation (kept as dead letters)",
            events_rejected.clone(),
        );
        let open_incidents = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "open_incidents",
            "Open incidents by phase",
            open_incidents.clone(),
        );
        let ingest_latency = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        registry.register(
            "ingest_latency_seconds",
            "Time from receiving an ingest request to answering it (after commit)",
            ingest_latency.clone(),
        );
        let commit_errors = Counter::default();
        registry.register(
            "ingest_commit_errors",
            "Ingest requests answered 5xx because the commit failed",
            commit_errors.clone(),
        );
        Metrics {
            registry,
            events_ingested,
            events_duplicate,
            events_rejected,
            open_incidents,
            ingest_latency,
            commit_errors,
        }
    }

    pub fn set_open_incidents(&self, by_phase: &[(String, i64)]) {
        for phase in crate::incidents::Phase::ALL {
            let n = by_phase
                .iter()
                .find(|(p, _)| p == phase.as_str())
                .map_or(0, |(_, n)| *n);
            if matches!(
                phase,
                crate::incidents::Phase::Recovered | crate::incidents::Phase::Stale
            ) {
                continue;
            }
            self.open_incidents
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().into(),
                })
                .set(n);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
