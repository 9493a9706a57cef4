//! The incident engine: events in, incidents and phase changes out. Pure and
//! deterministic in event time, so a replayed log yields the same incidents; the only
//! wall-clock input is the `now` a sweep passes in.

use super::model::{
    Bucket, Counts, Incident, PhaseChange, ReopenRecord, ReplySample, Status, Tally, UNKNOWN_IP,
};
use super::phase::{Phase, Thresholds};
use crate::event::{EventType, NewEvent};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;

/// Per-incident caps, so that an incident towards a huge provider stays a few KiB.
const MAX_RECIPIENT_DOMAINS: usize = 500;
const MAX_ROUTES: usize = 256;
const MAX_SENDER_DOMAINS: usize = 50;
const MAX_SELECTORS_PER_DOMAIN: usize = 8;
const MAX_MX_HOSTS: usize = 128;
const MAX_REPLIES: usize = 40;
const MAX_HELOS_PER_ROUTE: usize = 4;
/// 60 days of hourly buckets.
const MAX_HOURLY: usize = 24 * 60;
const SLOT_SECS: i64 = 15 * 60;

/// The incidents of one destination that a batch of events can touch: the latest stored
/// one (if any) first, then any the batch opens.
#[derive(Debug, Default)]
pub struct Timeline {
    pub incidents: Vec<Incident>,
    dirty: Vec<bool>,
}

impl Timeline {
    pub fn new(latest: Option<Incident>) -> Self {
        let incidents: Vec<Incident> = latest.into_iter().collect();
        let dirty = vec![false; incidents.len()];
        Timeline { incidents, dirty }
    }

    /// Incidents changed by `apply`, with their index in the timeline.
    pub fn changed(&self) -> impl Iterator<Item = (usize, &Incident)> {
        self.incidents
            .iter()
            .enumerate()
            .filter(|(i, _)| self.dirty[*i])
    }
}

/// The engine in use, replaced as a whole when an admin saves new window thresholds:
/// a commit in flight finishes with the thresholds it started with.
#[derive(Clone, Debug)]
pub struct EngineHandle(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Engine>>>);

impl EngineHandle {
    pub fn new(engine: Engine) -> Self {
        EngineHandle(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(engine),
        )))
    }

    pub fn get(&self) -> std::sync::Arc<Engine> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, engine: Engine) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(engine);
    }
}

#[derive(Clone, Debug)]
pub struct Engine {
    pub thresholds: Thresholds,
}

impl Engine {
    pub fn new(thresholds: Thresholds) -> Self {
        Engine { thresholds }
    }

    /// Feed one event of the timeline's destination. Returns the index of the incident
    /// it was attached to, if any (deliveries with no incident around are not attached).
    pub fn apply(&self, tl: &mut Timeline, ev: &NewEvent) -> Option<usize> {
        let t = ev.time;
        if let Some(i) = tl.incidents.len().checked_sub(1) {
            let inc = &mut tl.incidents[i];
            if self.settle(inc, t) {
                tl.dirty[i] = true;
            }
            let attach = match (inc.status, inc.closed_at) {
                (Status::Open, _) => Attach::Open,
                // An event from before the closing instant shows the closure was
                // premature for a deferral (or any event, for a stale close). Judging
                // it this way keeps the result independent of when the sweep ran.
                (Status::Stale, Some(c)) if t < c => Attach::Unclose,
                (Status::Recovered, Some(c)) if t < c => {
                    if ev.kind == EventType::Deferred {
                        Attach::Unclose
                    } else {
                        Attach::CountOnly
                    }
                }
                (Status::Recovered, Some(c))
                    if ev.kind == EventType::Deferred && t <= c + self.thresholds.reopen_window =>
                {
                    Attach::Reopen(c)
                }
                _ => Attach::No,
            };
            match attach {
                Attach::Open => {}
                Attach::Unclose => unclose(inc),
                Attach::Reopen(recovered_at) => {
                    inc.status = Status::Open;
                    inc.closed_at = None;
                    inc.recovering_since = None;
                    inc.reopens.push(ReopenRecord {
                        at: t,
                        recovered_at,
                    });
                }
                Attach::CountOnly => {
                    self.add(inc, ev);
                    tl.dirty[i] = true;
                    return Some(i);
                }
                Attach::No => {
                    if ev.kind != EventType::Deferred {
                        return None;
                    }
                }
            }
            if !matches!(attach, Attach::No) {
                let reason = matches!(attach, Attach::Reopen(_)).then(|| {
                    format!(
                        "reopened: deferral within {} of recovery",
                        human(self.thresholds.reopen_window)
                    )
                });
                self.add(inc, ev);
                self.evaluate(inc, reason);
                tl.dirty[i] = true;
                return Some(i);
            }
        } else if ev.kind != EventType::Deferred {
            return None;
        }
        // A deferral with no incident to join opens a new one.
        let mut inc = self.open(ev);
        self.add(&mut inc, ev);
        self.evaluate(&mut inc, None);
        tl.incidents.push(inc);
        tl.dirty.push(true);
        Some(tl.incidents.len() - 1)
    }

    /// Let time pass up to `now`: recovered after a quiet period, stale after a day
    /// without events. Returns whether the incident changed.
    pub fn settle(&self, inc: &mut Incident, now: DateTime<Utc>) -> bool {
        if inc.status != Status::Open {
            return false;
        }
        let th = &self.thresholds;
        let recover_at = inc
            .recovering_since
            .filter(|r| *r > inc.last_deferral)
            .map(|r| r + th.quiet_period);
        let stale_at = inc.last_seen + th.stale_after;
        let (status, phase, at, reason) = match recover_at {
            Some(r) if r <= now && r <= stale_at => (
                Status::Recovered,
                Phase::Recovered,
                r,
                format!(
                    "affected routes delivered for {} without a deferral",
                    human(th.quiet_period)
                ),
            ),
            _ if stale_at <= now => (
                Status::Stale,
                Phase::Stale,
                stale_at,
                format!("no event for {}", human(th.stale_after)),
            ),
            _ => return false,
        };
        inc.phase_history.push(PhaseChange {
            at,
            from: Some(inc.phase),
            to: phase,
            reason,
        });
        inc.status = status;
        inc.phase = phase;
        inc.closed_at = Some(at);
        true
    }

    fn open(&self, ev: &NewEvent) -> Incident {
        Incident {
            id: 0,
            destination: ev.destination.clone(),
            status: Status::Open,
            phase: Phase::Deferred,
            first_seen: ev.time,
            last_seen: ev.time,
            last_deferral: ev.time,
            closed_at: None,
            counts: Counts::default(),
            routes: BTreeMap::new(),
            mx_hosts: BTreeMap::new(),
            recipient_domains: Tally::default(),
            sender_domains: Tally::default(),
            dkim_selectors: BTreeMap::new(),
            causes: BTreeMap::new(),
            origins: BTreeMap::new(),
            stages: BTreeMap::new(),
            replies: Vec::new(),
            replies_other: 0,
            hourly: BTreeMap::new(),
            recent: BTreeMap::new(),
            recovering_since: None,
            last_affected_delivery: None,
            recovery_trend: false,
            phase_history: vec![PhaseChange {
                at: ev.time,
                from: None,
                to: Phase::Deferred,
                reason: "first deferral".into(),
            }],
            reopens: Vec::new(),
        }
    }

    fn add(&self, inc: &mut Incident, ev: &NewEvent) {
        let t = ev.time;
        let ip = ev.source_ip.as_deref().unwrap_or(UNKNOWN_IP);
        if t > inc.last_seen {
            inc.last_seen = t;
        }
        let route_known = inc.routes.contains_key(ip);
        if !route_known && inc.routes.len() >= MAX_ROUTES {
            // Beyond the cap the event still counts in the totals below.
        } else {
            let route = inc.routes.entry(ip.to_string()).or_default();
            if let Some(h) = &ev.helo
                && !route.helos.contains(h)
                && route.helos.len() < MAX_HELOS_PER_ROUTE
            {
                route.helos.push(h.clone());
            }
        }
        if let (Some(sel), Some((_, domain))) = (
            &ev.dkim_selector,
            ev.sender.as_deref().and_then(|s| s.rsplit_once('@')),
        ) {
            let domain = domain.to_ascii_lowercase();
            if inc.dkim_selectors.contains_key(&domain)
                || inc.dkim_selectors.len() < MAX_SENDER_DOMAINS
            {
                let list = inc.dkim_selectors.entry(domain).or_default();
                if !list.contains(sel) && list.len() < MAX_SELECTORS_PER_DOMAIN {
                    list.push(sel.clone());
                }
            }
        }
        let hour = t.timestamp().div_euclid(3600) * 3600;
        let slot = t.timestamp().div_euclid(SLOT_SECS) * SLOT_SECS;
        let mx = ev.mx_host.as_deref();
        match ev.kind {
            EventType::Deferred => {
                inc.counts.deferred += 1;
                if let Some(r) = inc.routes.get_mut(ip) {
                    r.counts.deferred += 1;
                    r.first_deferral = Some(r.first_deferral.map_or(t, |f| f.min(t)));
                    r.last_deferral = Some(r.last_deferral.map_or(t, |l| l.max(t)));
                }
                if t < inc.first_seen {
                    inc.first_seen = t;
                }
                if t > inc.last_deferral {
                    inc.last_deferral = t;
                    // A deferral after recovery began breaks the quiet period; the
                    // latest affected delivery, if it came later still, restarts it.
                    inc.recovering_since = inc.last_affected_delivery.filter(|d| *d > t);
                }
                if let Some(mx) = mx {
                    bump_mx(&mut inc.mx_hosts, mx, |c| c.deferred += 1);
                }
                inc.recipient_domains
                    .add(&ev.recipient_domain, MAX_RECIPIENT_DOMAINS);
                if let Some(domain) = ev.sender.as_deref().and_then(|s| s.rsplit_once('@')) {
                    inc.sender_domains
                        .add(&domain.1.to_ascii_lowercase(), MAX_SENDER_DOMAINS);
                }
                let cause = ev.cause().map(|c| c.as_str()).unwrap_or("unclassified");
                *inc.causes.entry(cause.to_string()).or_default() += 1;
                if let Some(c) = &ev.classification {
                    *inc.origins
                        .entry(c.origin.as_str().to_string())
                        .or_default() += 1;
                }
                *inc.stages.entry(ev.stage.as_str().to_string()).or_default() += 1;
                record_reply(inc, ev);
                bucket(&mut inc.hourly, hour).d += 1;
                slot_bucket(inc, slot, ip).d += 1;
            }
            EventType::Delivered => {
                inc.counts.delivered += 1;
                let mut affected = false;
                if let Some(r) = inc.routes.get_mut(ip) {
                    r.counts.delivered += 1;
                    r.last_delivery = Some(r.last_delivery.map_or(t, |l| l.max(t)));
                    affected = r.counts.deferred > 0;
                }
                if let Some(mx) = mx {
                    bump_mx(&mut inc.mx_hosts, mx, |c| c.delivered += 1);
                }
                // Only the routes that were deferred can recover; a healthy IP
                // delivering to the same destination says nothing about them.
                if affected && t > inc.last_deferral {
                    inc.last_affected_delivery =
                        Some(inc.last_affected_delivery.map_or(t, |l| l.max(t)));
                    inc.recovering_since = Some(inc.recovering_since.map_or(t, |r| r.min(t)));
                }
                bucket(&mut inc.hourly, hour).s += 1;
                slot_bucket(inc, slot, ip).s += 1;
            }
            EventType::Bounced => {
                inc.counts.bounced += 1;
                if let Some(r) = inc.routes.get_mut(ip) {
                    r.counts.bounced += 1;
                }
                if let Some(mx) = mx {
                    bump_mx(&mut inc.mx_hosts, mx, |c| c.bounced += 1);
                }
                bucket(&mut inc.hourly, hour).b += 1;
            }
        }
        while inc.hourly.len() > MAX_HOURLY {
            inc.hourly.pop_first();
        }
        let keep_from = inc.last_seen.timestamp().div_euclid(SLOT_SECS) * SLOT_SECS
            - 2 * self.thresholds.trend_window.num_seconds();
        inc.recent.retain(|s, _| *s >= keep_from);
    }

    /// Recompute the phase at the latest event time; record a change.
    fn evaluate(&self, inc: &mut Incident, reason: Option<String>) {
        if inc.status != Status::Open {
            return;
        }
        let th = &self.thresholds;
        let age = inc.age();
        let by_age = th.phase_for_age(age);
        inc.recovery_trend = self.recovery_trend(inc);
        let (phase, why) = if by_age == Phase::Escalate && inc.recovery_trend {
            (
                Phase::CoolingExtended,
                "recovery trend on the affected routes: held back from escalate".to_string(),
            )
        } else {
            (by_age, format!("deferring for {}", human(age)))
        };
        if phase != inc.phase || reason.is_some() {
            inc.phase_history.push(PhaseChange {
                at: inc.last_seen,
                from: Some(inc.phase),
                to: phase,
                reason: reason.unwrap_or(why),
            });
            inc.phase = phase;
        }
    }

    /// A recovery trend on the affected routes: their deferrals in the latest trend
    /// window at most half of the window before, or their deliveries outnumbering
    /// their deferrals again with a better success ratio than before.
    pub fn recovery_trend(&self, inc: &Incident) -> bool {
        let w = self.thresholds.trend_window.num_seconds().max(SLOT_SECS);
        let now_slot = inc.last_seen.timestamp().div_euclid(SLOT_SECS) * SLOT_SECS;
        let (mut recent, mut prior) = (Bucket::default(), Bucket::default());
        for (slot, routes) in &inc.recent {
            let age = now_slot - slot;
            let target = if age < w {
                &mut recent
            } else if age < 2 * w {
                &mut prior
            } else {
                continue;
            };
            for (ip, b) in routes {
                if inc.routes.get(ip).is_some_and(|r| r.counts.deferred > 0) {
                    target.d += b.d;
                    target.s += b.s;
                }
            }
        }
        let falling = prior.d > 0 && recent.d * 2 <= prior.d;
        let ratio = |b: &Bucket| {
            if b.d + b.s == 0 {
                0.0
            } else {
                f64::from(b.s) / f64::from(b.d + b.s)
            }
        };
        let succeeding = recent.s > 0 && recent.s >= recent.d && ratio(&recent) > ratio(&prior);
        falling || succeeding
    }
}

#[derive(Clone, Copy)]
enum Attach {
    Open,
    Unclose,
    Reopen(DateTime<Utc>),
    CountOnly,
    No,
}

fn unclose(inc: &mut Incident) {
    if let Some(last) = inc.phase_history.last()
        && matches!(last.to, Phase::Recovered | Phase::Stale)
    {
        inc.phase = last.from.unwrap_or(Phase::Deferred);
        inc.phase_history.pop();
    }
    inc.status = Status::Open;
    inc.closed_at = None;
}

fn bump_mx(map: &mut BTreeMap<String, Counts>, mx: &str, f: impl FnOnce(&mut Counts)) {
    if let Some(c) = map.get_mut(mx) {
        f(c);
    } else if map.len() < MAX_MX_HOSTS {
        let mut c = Counts::default();
        f(&mut c);
        map.insert(mx.to_string(), c);
    }
}

fn bucket(map: &mut BTreeMap<i64, Bucket>, key: i64) -> &mut Bucket {
    map.entry(key).or_default()
}

fn slot_bucket<'a>(inc: &'a mut Incident, slot: i64, ip: &str) -> &'a mut Bucket {
    let routes = inc.recent.entry(slot).or_default();
    if !routes.contains_key(ip) {
        routes.insert(ip.to_string(), Bucket::default());
    }
    routes.get_mut(ip).expect("inserted above")
}

fn record_reply(inc: &mut Incident, ev: &NewEvent) {
    let text = ev.response.as_deref().unwrap_or("");
    let key = reply_key(ev.code, text);
    if let Some(r) = inc.replies.iter_mut().find(|r| r.key == key) {
        r.count += 1;
        r.first_seen = r.first_seen.min(ev.time);
        r.last_seen = r.last_seen.max(ev.time);
        return;
    }
    if inc.replies.len() >= MAX_REPLIES {
        inc.replies_other += 1;
        return;
    }
    inc.replies.push(ReplySample {
        key,
        text: truncate(text, 2000).to_string(),
        code: ev.code,
        enhanced: ev.enhanced.clone(),
        cause: ev.cause().map(|c| c.as_str().to_string()),
        stage: ev.stage.as_str().to_string(),
        count: 1,
        first_seen: ev.time,
        last_seen: ev.time,
        example_event: ev.dedupe_key.clone(),
    });
}

/// Replies that differ only in variable parts (queue ids, IPs, addresses, counters,
/// timestamps) are the same reply for the operator.
pub fn reply_key(code: Option<u16>, text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(160) + 4);
    if let Some(c) = code {
        out.push_str(&c.to_string());
        out.push(' ');
    }
    let mut last_space = true;
    for word in text.split_whitespace() {
        if out.len() >= 160 {
            break;
        }
        let variable = word.contains('@')
            || word.bytes().filter(u8::is_ascii_digit).count() * 3 >= word.len().max(1)
            || (word.len() >= 12
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && word.bytes().any(|b| b.is_ascii_digit()));
        if !last_space {
            out.push(' ');
        }
        if variable {
            out.push('#');
        } else {
            out.extend(word.chars().flat_map(char::to_lowercase));
        }
        last_space = false;
    }
    out
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// "2h", "45m", "1d 3h": durations as an operator reads them.
pub fn human(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

impl Engine {
    /// When time alone will next change this open incident (recovery or stale), so the
    /// sweep only loads incidents that are due.
    pub fn due_at(&self, inc: &Incident) -> Option<DateTime<Utc>> {
        if inc.status != Status::Open {
            return None;
        }
        let stale_at = inc.last_seen + self.thresholds.stale_after;
        let recover_at = inc
            .recovering_since
            .filter(|r| *r > inc.last_deferral)
            .map(|r| r + self.thresholds.quiet_period);
        Some(recover_at.map_or(stale_at, |r| r.min(stale_at)))
    }
}
