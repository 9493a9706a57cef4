//! The write path shared by both backends: dedupe, run the incident engine over the
//! new events, then write incidents, events and rejects in the caller's transaction.
//! The backends only supply the SQL primitives.

use super::{BatchOutcome, EventOutcome, NewReject, Result, SweepReport, WriteBatch};
use crate::event::NewEvent;
use crate::incidents::{Engine, Incident, Timeline};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

#[async_trait]
pub(crate) trait WriteTx: Send {
    /// Serialises writers across app instances sharing one database.
    async fn lock_writer(&mut self) -> Result<()>;
    async fn existing_keys(&mut self, keys: &[&str]) -> Result<HashSet<String>>;
    /// The newest incident of each destination.
    async fn latest_incidents(&mut self, destinations: &[&str]) -> Result<Vec<Incident>>;
    async fn insert_incident(&mut self, row: &IncidentRowData<'_>) -> Result<i64>;
    async fn update_incident(&mut self, row: &IncidentRowData<'_>) -> Result<()>;
    async fn insert_events(&mut self, events: &[(&NewEvent, Option<i64>)]) -> Result<()>;
    async fn insert_rejects(&mut self, rejects: &[&NewReject]) -> Result<()>;
    async fn touch_sources(&mut self, source_ids: &[i64], now_ms: i64) -> Result<()>;
    /// (ip, earliest event ms, latest event ms, latest HELO) per distinct sending IP.
    async fn touch_ips(&mut self, ips: &[(&str, i64, i64, Option<&str>)]) -> Result<()>;
    async fn due_incidents(&mut self, now_ms: i64) -> Result<Vec<Incident>>;
    async fn incident_for_update(&mut self, id: i64) -> Result<Option<Incident>>;
    async fn classification_page(&mut self, after: i64, limit: i64) -> Result<Vec<ClassRow>>;
    async fn set_classification(
        &mut self,
        id: i64,
        cause: &str,
        action: &str,
        json: &str,
    ) -> Result<()>;
    async fn commit(self) -> Result<()>;
}

/// What reclassification needs of a stored event.
#[derive(sqlx::FromRow)]
pub(crate) struct ClassRow {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub incident_id: Option<i64>,
    pub response: Option<String>,
    pub code: Option<i32>,
    pub enhanced: Option<String>,
    pub stage: String,
    pub mx_host: Option<String>,
    pub cause: Option<String>,
    pub classification: Option<String>,
}

/// One page of `deferwatch reclassify`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReclassifyPage {
    /// The last event id examined; None when there was nothing left.
    pub last_id: Option<i64>,
    pub examined: usize,
    pub changed: usize,
    pub cause_changed: usize,
}

pub(crate) async fn reclassify_page<T: WriteTx>(
    mut tx: T,
    after: i64,
    limit: i64,
    classifier: &crate::smtp::Classifier,
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<ReclassifyPage> {
    use crate::ingest::json::reclassify_stored;
    tx.lock_writer().await?;
    let rows = tx.classification_page(after, limit).await?;
    let mut page = ReclassifyPage {
        last_id: rows.last().map(|r| r.id),
        examined: rows.len(),
        ..ReclassifyPage::default()
    };
    let mut moves: HashMap<i64, Vec<(String, String, String)>> = HashMap::new();
    for row in &rows {
        if row.kind == "delivered" {
            continue;
        }
        let code = row.code.and_then(|c| u16::try_from(c).ok());
        let stage = row.stage.parse().unwrap_or(crate::smtp::Stage::Unknown);
        let c = reclassify_stored(
            classifier,
            row.response.as_deref(),
            code,
            row.enhanced.as_deref(),
            stage,
            row.mx_host.as_deref(),
        );
        let json = serde_json::to_string(&c)
            .map_err(|e| super::StoreError::Corrupt(format!("event {}: {e}", row.id)))?;
        if row.classification.as_deref() == Some(json.as_str()) {
            continue;
        }
        page.changed += 1;
        tx.set_classification(row.id, c.cause.as_str(), c.action.as_str(), &json)
            .await?;
        let new_cause = c.cause.as_str();
        let old_cause = row.cause.as_deref().unwrap_or("unclassified");
        if old_cause != new_cause {
            page.cause_changed += 1;
            if let (Some(inc), "deferred") = (row.incident_id, row.kind.as_str()) {
                let key = crate::incidents::engine::reply_key(
                    code,
                    row.response.as_deref().unwrap_or(""),
                );
                moves.entry(inc).or_default().push((
                    old_cause.to_string(),
                    new_cause.to_string(),
                    key,
                ));
            }
        }
    }
    for (id, list) in moves {
        if let Some(mut inc) = tx.incident_for_update(id).await? {
            for (old, new, key) in &list {
                inc.reassign_cause(old, new, key);
            }
            tx.update_incident(&row(engine, &inc, now)?).await?;
        }
    }
    tx.commit().await?;
    Ok(page)
}

/// An incident with the columns derived from it, ready to write.
pub(crate) struct IncidentRowData<'a> {
    pub inc: &'a Incident,
    pub state: String,
    pub due_at: Option<i64>,
    pub now_ms: i64,
}

fn row<'a>(engine: &Engine, inc: &'a Incident, now: DateTime<Utc>) -> Result<IncidentRowData<'a>> {
    let state = serde_json::to_string(inc)
        .map_err(|e| super::StoreError::Corrupt(format!("incident {}: {e}", inc.id)))?;
    Ok(IncidentRowData {
        inc,
        state,
        due_at: engine.due_at(inc).map(super::ms),
        now_ms: super::ms(now),
    })
}

pub(crate) async fn record<T: WriteTx>(
    mut tx: T,
    batches: &[WriteBatch],
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<Vec<BatchOutcome>> {
    tx.lock_writer().await?;

    let all: Vec<(usize, usize, &NewEvent)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| {
            batch
                .events
                .iter()
                .enumerate()
                .map(move |(e, ev)| (b, e, ev))
        })
        .collect();
    let keys: Vec<&str> = all
        .iter()
        .map(|(_, _, ev)| ev.dedupe_key.as_str())
        .collect();
    let existing = if keys.is_empty() {
        HashSet::new()
    } else {
        tx.existing_keys(&keys).await?
    };

    let mut outcomes: Vec<BatchOutcome> = batches
        .iter()
        .map(|b| BatchOutcome {
            events: vec![EventOutcome::Duplicate; b.events.len()],
            opened: Vec::new(),
        })
        .collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(all.len());
    let mut fresh: Vec<(usize, usize, &NewEvent)> = Vec::with_capacity(all.len());
    for &(b, e, ev) in &all {
        if !existing.contains(&ev.dedupe_key) && seen.insert(ev.dedupe_key.as_str()) {
            fresh.push((b, e, ev));
        }
    }

    // Event time drives the engine, so feed each destination its events in time order
    // whatever order they arrived in.
    let mut by_time: Vec<usize> = (0..fresh.len()).collect();
    by_time.sort_by_key(|&i| fresh[i].2.time);
    let mut destinations: Vec<&str> = fresh
        .iter()
        .map(|(_, _, ev)| ev.destination.as_str())
        .collect();
    destinations.sort_unstable();
    destinations.dedup();
    let mut latest: HashMap<String, Incident> = if destinations.is_empty() {
        HashMap::new()
    } else {
        tx.latest_incidents(&destinations)
            .await?
            .into_iter()
            .map(|inc| (inc.destination.clone(), inc))
            .collect()
    };
    let mut timelines: HashMap<&str, Timeline> = HashMap::new();
    let mut slot: Vec<Option<usize>> = vec![None; fresh.len()];
    for i in by_time {
        let ev = fresh[i].2;
        let tl = timelines
            .entry(ev.destination.as_str())
            .or_insert_with(|| Timeline::new(latest.remove(&ev.destination)));
        slot[i] = engine.apply(tl, ev);
    }

    // Write the incidents first so that new ones have ids for their events.
    let mut ids: HashMap<(&str, usize), i64> = HashMap::new();
    let mut opened = Vec::new();
    for (dest, tl) in &timelines {
        for (idx, inc) in tl.changed() {
            let data = row(engine, inc, now)?;
            let id = if inc.id == 0 {
                let id = tx.insert_incident(&data).await?;
                opened.push(id);
                id
            } else {
                tx.update_incident(&data).await?;
                inc.id
            };
            ids.insert((dest, idx), id);
        }
        for (idx, inc) in tl.incidents.iter().enumerate() {
            ids.entry((dest, idx)).or_insert(inc.id);
        }
    }

    let mut rows: Vec<(&NewEvent, Option<i64>)> = Vec::with_capacity(fresh.len());
    for (i, &(b, e, ev)) in fresh.iter().enumerate() {
        let incident_id = slot[i].and_then(|s| ids.get(&(ev.destination.as_str(), s)).copied());
        outcomes[b].events[e] = EventOutcome::Stored { incident_id };
        rows.push((ev, incident_id));
    }
    if !rows.is_empty() {
        tx.insert_events(&rows).await?;
    }
    let rejects: Vec<&NewReject> = batches.iter().flat_map(|b| b.rejects.iter()).collect();
    if !rejects.is_empty() {
        tx.insert_rejects(&rejects).await?;
    }
    let mut sources: Vec<i64> = fresh.iter().map(|(_, _, ev)| ev.source_id).collect();
    sources.sort_unstable();
    sources.dedup();
    if !sources.is_empty() {
        tx.touch_sources(&sources, super::ms(now)).await?;
    }
    let mut ips: HashMap<&str, (i64, i64, Option<&str>)> = HashMap::new();
    for (_, _, ev) in &fresh {
        if let Some(ip) = ev.source_ip.as_deref() {
            let t = super::ms(ev.time);
            let e = ips.entry(ip).or_insert((t, t, None));
            e.0 = e.0.min(t);
            if t >= e.1 {
                e.1 = t;
                e.2 = ev.helo.as_deref().or(e.2);
            }
        }
    }
    if !ips.is_empty() {
        let mut list: Vec<_> = ips
            .into_iter()
            .map(|(ip, (a, b, h))| (ip, a, b, h))
            .collect();
        // A fixed order keeps concurrent writers from deadlocking on the rows.
        list.sort_unstable_by_key(|r| r.0);
        tx.touch_ips(&list).await?;
    }
    tx.commit().await?;
    if let Some(first) = outcomes.first_mut() {
        first.opened = opened;
    }
    Ok(outcomes)
}

pub(crate) async fn sweep<T: WriteTx>(
    mut tx: T,
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<SweepReport> {
    tx.lock_writer().await?;
    let due = tx.due_incidents(super::ms(now)).await?;
    let mut report = SweepReport {
        examined: due.len(),
        ..SweepReport::default()
    };
    for mut inc in due {
        if engine.settle(&mut inc, now) {
            match inc.status {
                crate::incidents::Status::Recovered => report.recovered += 1,
                crate::incidents::Status::Stale => report.stale += 1,
                crate::incidents::Status::Open => {}
            }
        }
        // Rewrite even when unchanged: due_at is recomputed from the engine's view.
        tx.update_incident(&row(engine, &inc, now)?).await?;
    }
    tx.commit().await?;
    Ok(report)
}
