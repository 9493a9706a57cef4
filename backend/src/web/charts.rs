//! Server-rendered SVG charts: Rust computes the geometry with every number already
//! formatted, and the askama partials (`templates/partials/sparkline.html`,
//! `templates/partials/timeline.html`) only place it, so escaping stays automatic and
//! no chart needs JavaScript.

use crate::incidents::model::{Bucket, PhaseChange};
use crate::incidents::{Phase, Thresholds};
use crate::store::StoredCheckChange;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Deferrals per hour over the last 24 hours, one bar per hour.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparkline {
    pub width: u32,
    pub height: u32,
    /// Every bar is one vertical stroke of this width, so a whole chart is one `<path>`
    /// of a few hundred bytes: the incidents list shows a hundred of them.
    pub bar_width: String,
    /// Empty when there was no deferral in the 24 hours.
    pub d: String,
    pub max: u64,
    pub total: u64,
    /// The accessible name (`aria-label`), e.g. `deferrals per hour, last 24 h: max
    /// 312/h, 1,204 in all`.
    pub title: String,
}

const SPARK_HOURS: i64 = 24;

/// `hourly` is keyed by the unix second of each hour's start, as `Incident::hourly`;
/// the last bar is the hour containing `now`, still filling up.
pub fn sparkline(
    hourly: &BTreeMap<i64, Bucket>,
    now: DateTime<Utc>,
    width: u32,
    height: u32,
) -> Sparkline {
    let last_hour = now.timestamp().div_euclid(3600) * 3600;
    let first_hour = last_hour - (SPARK_HOURS - 1) * 3600;
    let values: Vec<u64> = (0..SPARK_HOURS)
        .map(|i| {
            hourly
                .get(&(first_hour + i * 3600))
                .map_or(0, |b| u64::from(b.d))
        })
        .collect();
    let max = values.iter().copied().max().unwrap_or(0);
    let total: u64 = values.iter().sum();
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let pitch = w / SPARK_HOURS as f64;
    let mut d = String::new();
    if max > 0 {
        for (i, v) in values.iter().enumerate().filter(|(_, v)| **v > 0) {
            // Whole units: at the intended size one unit is one pixel, and the path
            // stays short. One unit at least, so a single deferral beside a peak shows.
            let bar = (*v as f64 / max as f64 * h).round().max(1.0);
            let x = pitch * (i as f64 + 0.5);
            let _ = write!(d, "M{} {}V{}", num(x), num(h), num(h - bar));
        }
    }
    let title = if total == 0 {
        "deferrals per hour, last 24 h: none".to_string()
    } else {
        format!(
            "deferrals per hour, last 24 h: max {}/h, {} in all",
            thousands(max),
            thousands(total)
        )
    };
    Sparkline {
        width,
        height,
        bar_width: num(pitch * 0.75),
        d,
        max,
        total,
        title,
    }
}

/// Attempts in one interval of the timeline, aggregated by the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineBin {
    pub start: DateTime<Utc>,
    pub deferred_by_cause: Vec<(String, u64)>,
    pub delivered: u64,
    pub bounced: u64,
}

pub struct TimelineInput<'a> {
    pub bins: &'a [TimelineBin],
    pub bin_width: TimeDelta,
    pub first_seen: DateTime<Utc>,
    /// The incident's last event, or now while it is open.
    pub end: DateTime<Utc>,
    pub thresholds: &'a Thresholds,
    pub phase_changes: &'a [PhaseChange],
    pub check_changes: &'a [(DateTime<Utc>, String)],
}

#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    pub width: u32,
    pub height: u32,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_top: String,
    /// The zero line: deferrals stack upwards from it, deliveries and bounces downwards.
    pub baseline: String,
    pub plot_bottom: String,
    /// Height of the bands and of the per-bin hover areas (top to bottom of the plot).
    pub plot_height: String,
    pub band_label_y: String,
    pub x_label_y: String,
    pub x_date_y: String,
    pub aria_label: String,
    /// No attempt in any bin: the template says so instead of drawing empty axes only.
    pub empty: bool,
    pub bands: Vec<Band>,
    /// Deferral causes (upwards) first, then `delivered` and `bounced` (downwards).
    pub series: Vec<Series>,
    pub y_ticks: Vec<YTick>,
    pub x_ticks: Vec<XTick>,
    pub hits: Vec<Hit>,
    pub markers: Vec<Marker>,
    pub legend: Vec<LegendItem>,
}

/// A retry-threshold window behind the bars.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// `band band-persistent`: one class per window so the stylesheet colours it.
    pub css: String,
    pub x: String,
    pub width: String,
    /// Empty when the band is too narrow to hold it.
    pub label: String,
    pub label_x: String,
}

/// One colour of the chart: a single `<path>` holding all of its bars.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub css: String,
    pub label: String,
    pub count: u64,
    pub d: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct YTick {
    pub y: String,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct XTick {
    pub x: String,
    /// `HH:MM` UTC.
    pub label: String,
    /// `Nov 20` on the first tick and wherever the day changes, else empty.
    pub date: String,
}

/// A transparent hover area over one bin, carrying its numbers as a tooltip.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub x: String,
    pub width: String,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// `marker phase-cooling` or `marker check`.
    pub css: String,
    pub x: String,
    /// Where the line starts: just under its label, or the plot top without one.
    pub y1: String,
    /// Empty when no label row had room; the tooltip still tells.
    pub label: String,
    pub label_x: String,
    pub label_y: String,
    /// `start` or `end`: labels near the right edge read leftwards.
    pub anchor: &'static str,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LegendItem {
    pub css: String,
    pub label: String,
    pub count: String,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = WIDTH - 18.0;
const LABEL_ROWS: [f64; 2] = [10.0, 22.0];
const TOP: f64 = 30.0;
/// The tallest bar stops short of the plot top, leaving a strip for the band labels.
const BAR_TOP: f64 = TOP + 14.0;
const BASE: f64 = 146.0;
const BOTTOM: f64 = 180.0;
/// Cause colours the palette holds; the rarer causes share `other`.
const CAUSE_CLASSES: usize = 8;
/// Rough advance of one character at the chart's font size, to decide whether a label
/// fits without measuring text.
const CHAR_W: f64 = 5.6;
const MAX_MARKER_LABEL: usize = 26;
/// Band labels are set in spaced capitals (static/charts.css), wider per character.
const BAND_CHAR_W: f64 = 6.4;

/// A bin width giving at most ~150 bins over `span`, in steps an operator reads easily.
pub fn bin_width_for(span: TimeDelta) -> TimeDelta {
    let ladder = [
        (TimeDelta::hours(3), TimeDelta::minutes(5)),
        (TimeDelta::hours(12), TimeDelta::minutes(15)),
        (TimeDelta::days(3), TimeDelta::hours(1)),
        (TimeDelta::days(18), TimeDelta::hours(3)),
        (TimeDelta::days(36), TimeDelta::hours(6)),
        (TimeDelta::days(72), TimeDelta::hours(12)),
    ];
    if let Some((_, w)) = ladder.iter().find(|(limit, _)| span < *limit) {
        return *w;
    }
    let days = span.num_seconds().div_euclid(86_400 * 150) + 1;
    TimeDelta::days(days)
}

/// Check changes as timeline markers: the subject (IP, HELO name, domain) in front of
/// the one-line description the checks already write.
pub fn check_markers(changes: &[StoredCheckChange]) -> Vec<(DateTime<Utc>, String)> {
    changes
        .iter()
        .map(|c| (c.at, format!("{} {}", c.subject, c.description)))
        .collect()
}

pub fn timeline(input: &TimelineInput<'_>) -> Timeline {
    let width = input.bin_width.max(TimeDelta::minutes(1));
    let marker_times = input
        .phase_changes
        .iter()
        .filter(|c| c.from.is_some())
        .map(|c| c.at)
        .chain(input.check_changes.iter().map(|(t, _)| *t));
    let mut start = input.first_seen;
    let mut end = input.end.max(input.first_seen);
    for b in input.bins {
        start = start.min(b.start);
        end = end.max(b.start + width);
    }
    for t in marker_times {
        start = start.min(t);
        end = end.max(t);
    }
    if end - start < width {
        end = start + width;
    }
    let span_ms = (end - start).num_milliseconds() as f64;
    let x_of =
        |t: DateTime<Utc>| LEFT + (t - start).num_milliseconds() as f64 / span_ms * (RIGHT - LEFT);

    // Causes ranked by count over the whole chart, so c0 is the dominant one.
    let mut cause_totals: BTreeMap<&str, u64> = BTreeMap::new();
    for b in input.bins {
        for (c, n) in &b.deferred_by_cause {
            *cause_totals.entry(c.as_str()).or_default() += n;
        }
    }
    let mut ranked: Vec<(&str, u64)> = cause_totals.into_iter().filter(|(_, n)| *n > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let slot_of = |cause: &str| -> usize {
        ranked
            .iter()
            .position(|(c, _)| *c == cause)
            .map_or(CAUSE_CLASSES, |i| i.min(CAUSE_CLASSES))
    };
    let slot_count = ranked.len().min(CAUSE_CLASSES + 1);
    let mut slot_labels: Vec<String> = ranked
        .iter()
        .take(CAUSE_CLASSES)
        .map(|(c, _)| label_of_cause(c))
        .collect();
    if ranked.len() > CAUSE_CLASSES {
        slot_labels.push("other".into());
    }
    let mut slot_totals = vec![0u64; slot_count];
    for (c, n) in &ranked {
        slot_totals[slot_of(c)] += n;
    }

    let per_bin: Vec<Vec<u64>> = input
        .bins
        .iter()
        .map(|b| {
            let mut v = vec![0u64; slot_count];
            for (c, n) in &b.deferred_by_cause {
                if *n > 0 {
                    v[slot_of(c)] += n;
                }
            }
            v
        })
        .collect();
    let max_up = per_bin
        .iter()
        .map(|v| v.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let max_down = input
        .bins
        .iter()
        .map(|b| b.delivered + b.bounced)
        .max()
        .unwrap_or(0);
    let (up_ticks, up_top) = nice_ticks(max_up, 3);
    let (_, down_top) = nice_ticks(max_down, 1);
    let up_scale = (BASE - BAR_TOP) / up_top as f64;
    let down_scale = (BOTTOM - BASE) / down_top as f64;

    let mut up_paths = vec![String::new(); slot_count];
    let (mut delivered_path, mut bounced_path) = (String::new(), String::new());
    let mut hits = Vec::new();
    for (b, slots) in input.bins.iter().zip(&per_bin) {
        let x0 = x_of(b.start);
        let full = x_of(b.start + width) - x0;
        let gap = if full > 2.0 {
            (full * 0.15).min(1.0)
        } else {
            0.0
        };
        let (x, w) = (x0 + gap / 2.0, full - gap);
        let mut y = BASE;
        for (slot, n) in slots.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = bar_height(*n, up_scale);
            y -= h;
            rect(&mut up_paths[slot], x, y, w, h);
        }
        let mut y = BASE;
        for (n, path) in [
            (b.delivered, &mut delivered_path),
            (b.bounced, &mut bounced_path),
        ] {
            if n > 0 {
                let h = bar_height(n, down_scale);
                rect(path, x, y, w, h);
                y += h;
            }
        }
        let deferred: u64 = slots.iter().sum();
        if deferred + b.delivered + b.bounced > 0 {
            hits.push(Hit {
                x: num(x0),
                width: num(full),
                title: bin_title(b, width, &per_bin_causes(b)),
            });
        }
    }

    let mut series: Vec<Series> = up_paths
        .into_iter()
        .enumerate()
        .map(|(i, d)| Series {
            css: slot_class(i),
            label: slot_labels[i].clone(),
            count: slot_totals[i],
            d,
        })
        .collect();
    let delivered: u64 = input.bins.iter().map(|b| b.delivered).sum();
    let bounced: u64 = input.bins.iter().map(|b| b.bounced).sum();
    for (css, label, count, d) in [
        ("delivered", "delivered", delivered, delivered_path),
        ("bounced", "bounced", bounced, bounced_path),
    ] {
        if count > 0 {
            series.push(Series {
                css: css.into(),
                label: label.into(),
                count,
                d,
            });
        }
    }
    let legend = series
        .iter()
        .map(|s| LegendItem {
            css: s.css.clone(),
            label: s.label.clone(),
            count: thousands(s.count),
        })
        .collect();

    let mut y_ticks: Vec<YTick> = up_ticks
        .iter()
        .map(|v| YTick {
            y: num(BASE - *v as f64 * up_scale),
            label: compact(*v),
        })
        .collect();
    if max_down > 0 {
        y_ticks.push(YTick {
            y: num(BOTTOM),
            label: compact(down_top),
        });
    }

    let bands = bands(input, start, end, &x_of);
    let markers = markers(input, &x_of);
    let x_ticks = x_ticks(start, end, &x_of);
    let deferred_total: u64 = ranked.iter().map(|(_, n)| n).sum();
    let causes: Vec<String> = series
        .iter()
        .filter(|s| s.css != "delivered" && s.css != "bounced")
        .map(|s| format!("{} {}", s.label, thousands(s.count)))
        .collect();
    let aria_label = format!(
        "Attempts per {} from {} to {}: {} deferred{}, {} delivered, {} bounced",
        crate::incidents::engine::human(width),
        stamp(start),
        stamp(end),
        thousands(deferred_total),
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        },
        thousands(delivered),
        thousands(bounced),
    );

    Timeline {
        width: WIDTH as u32,
        height: HEIGHT as u32,
        plot_left: num(LEFT),
        plot_right: num(RIGHT),
        plot_top: num(TOP),
        baseline: num(BASE),
        plot_bottom: num(BOTTOM),
        plot_height: num(BOTTOM - TOP),
        band_label_y: num(TOP + 10.0),
        x_label_y: num(BOTTOM + 14.0),
        x_date_y: num(BOTTOM + 26.0),
        aria_label,
        empty: deferred_total + delivered + bounced == 0,
        bands,
        series,
        y_ticks,
        x_ticks,
        hits,
        markers,
        legend,
    }
}

fn per_bin_causes(b: &TimelineBin) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = b
        .deferred_by_cause
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (label_of_cause(c), *n))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn bin_title(b: &TimelineBin, width: TimeDelta, causes: &[(String, u64)]) -> String {
    let deferred: u64 = causes.iter().map(|(_, n)| n).sum();
    let mut s = format!(
        "{}–{} UTC: {} deferred",
        b.start.format("%Y-%m-%d %H:%M"),
        (b.start + width).format("%H:%M"),
        thousands(deferred)
    );
    if !causes.is_empty() {
        let parts: Vec<String> = causes
            .iter()
            .map(|(c, n)| format!("{c} {}", thousands(*n)))
            .collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    let _ = write!(
        s,
        ", {} delivered, {} bounced",
        thousands(b.delivered),
        thousands(b.bounced)
    );
    s
}

/// At least half a unit, so that one attempt beside a peak of thousands is visible.
fn bar_height(n: u64, scale: f64) -> f64 {
    (n as f64 * scale).max(0.5)
}

fn rect(path: &mut String, x: f64, y: f64, w: f64, h: f64) {
    let _ = write!(
        path,
        "M{} {}h{}v{}h-{}z",
        num(x),
        num(y),
        num(w),
        num(h),
        num(w)
    );
}

fn slot_class(i: usize) -> String {
    if i < CAUSE_CLASSES {
        format!("c{i}")
    } else {
        "other".into()
    }
}

fn label_of_cause(cause: &str) -> String {
    cause.replace('_', " ")
}

fn band_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Deferred => "deferred",
        Phase::NormalRetry => "normal",
        Phase::Persistent => "persistent",
        Phase::Cooling => "cooling",
        Phase::CoolingExtended => "cooling ext.",
        Phase::Escalate => "escalate",
        Phase::Recovered => "recovered",
        Phase::Stale => "stale",
    }
}

fn bands(
    input: &TimelineInput<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    x_of: &impl Fn(DateTime<Utc>) -> f64,
) -> Vec<Band> {
    let th = input.thresholds;
    let f = input.first_seen;
    let windows = [
        (Phase::Deferred, f, f + th.normal_retry),
        (Phase::NormalRetry, f + th.normal_retry, f + th.persistent),
        (Phase::Persistent, f + th.persistent, f + th.cooling),
        (Phase::Cooling, f + th.cooling, f + th.cooling_extended),
        (
            Phase::CoolingExtended,
            f + th.cooling_extended,
            f + th.escalate,
        ),
        (Phase::Escalate, f + th.escalate, end.max(f + th.escalate)),
    ];
    windows
        .into_iter()
        .filter_map(|(phase, from, to)| {
            let (from, to) = (from.max(start), to.min(end));
            if from >= to {
                return None;
            }
            let (x, w) = (x_of(from), x_of(to) - x_of(from));
            let label = band_label(phase);
            let fits = w >= label.len() as f64 * BAND_CHAR_W + 10.0;
            Some(Band {
                css: format!("band band-{}", phase.as_str()),
                x: num(x),
                width: num(w),
                label: if fits { label.into() } else { String::new() },
                label_x: num(x + 6.0),
            })
        })
        .collect()
}

fn markers(input: &TimelineInput<'_>, x_of: &impl Fn(DateTime<Utc>) -> f64) -> Vec<Marker> {
    let mut raw: Vec<(DateTime<Utc>, String, String, String)> = Vec::new();
    for c in input.phase_changes {
        let Some(from) = c.from else {
            // The first deferral is the chart's left edge, not an event on it.
            continue;
        };
        raw.push((
            c.at,
            format!("marker phase-{}", c.to.as_str()),
            band_label(c.to).to_string(),
            format!(
                "{}: {} → {} ({})",
                stamp(c.at),
                from.as_str(),
                c.to.as_str(),
                c.reason
            ),
        ));
    }
    for (at, text) in input.check_changes {
        raw.push((
            *at,
            "marker check".into(),
            shorten(text, MAX_MARKER_LABEL),
            format!("{}: {text}", stamp(*at)),
        ));
    }
    raw.sort_by_key(|m| m.0);
    // Greedy row placement: a label goes in the first row whose last label ends left of
    // it; with no room anywhere it is dropped and the tooltip carries it.
    let mut row_end = [f64::NEG_INFINITY; LABEL_ROWS.len()];
    raw.into_iter()
        .map(|(at, css, label, title)| {
            let x = x_of(at);
            let w = label.chars().count() as f64 * CHAR_W;
            let leftwards = x + 3.0 + w > WIDTH - 2.0;
            let (from, to) = if leftwards {
                (x - 3.0 - w, x - 3.0)
            } else {
                (x + 3.0, x + 3.0 + w)
            };
            let row = row_end.iter().position(|e| *e + 4.0 <= from);
            let (label, label_y, y1) = match row {
                Some(r) => {
                    row_end[r] = to;
                    (label, LABEL_ROWS[r], LABEL_ROWS[r] + 3.0)
                }
                None => (String::new(), TOP, TOP),
            };
            Marker {
                css,
                x: num(x),
                y1: num(y1),
                label,
                label_x: num(if leftwards { x - 3.0 } else { x + 3.0 }),
                label_y: num(label_y),
                anchor: if leftwards { "end" } else { "start" },
                title,
            }
        })
        .collect()
}

/// UTC-aligned ticks, at most eight, with the date on the first and on day changes.
fn x_ticks(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    x_of: &impl Fn(DateTime<Utc>) -> f64,
) -> Vec<XTick> {
    const STEPS_MIN: [i64; 14] = [
        1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10_080, 43_200,
    ];
    let span = (end - start).num_seconds().max(1);
    let step = STEPS_MIN
        .iter()
        .map(|m| m * 60)
        .find(|s| span / s <= 8)
        .unwrap_or_else(|| (span / 8 / 86_400 + 1) * 86_400);
    let mut t = start.timestamp().div_euclid(step) * step;
    if t < start.timestamp() {
        t += step;
    }
    let mut ticks = Vec::new();
    let mut last_day = None;
    while t <= end.timestamp() {
        let Some(at) = DateTime::<Utc>::from_timestamp(t, 0) else {
            break;
        };
        let day = at.date_naive();
        let date = if last_day != Some(day) {
            at.format("%b %-d").to_string()
        } else {
            String::new()
        };
        last_day = Some(day);
        ticks.push(XTick {
            x: num(x_of(at)),
            label: at.format("%H:%M").to_string(),
            date,
        });
        t += step;
    }
    ticks
}

/// Ticks 0, step, 2·step… up to a round top at or above `max`, with a 1-2-5 step so
/// that there are at most `target` steps. Returns the ticks and the top.
fn nice_ticks(max: u64, target: u64) -> (Vec<u64>, u64) {
    if max == 0 {
        return (vec![0], 1);
    }
    let rough = max.div_ceil(target.max(1));
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) <= rough {
        magnitude *= 10;
    }
    let step = [1u64, 2, 5, 10]
        .into_iter()
        .map(|m| magnitude.saturating_mul(m))
        .find(|s| *s >= rough)
        .unwrap_or(u64::MAX);
    let top = max.div_ceil(step).saturating_mul(step);
    let mut ticks = vec![0];
    let mut v = step;
    while v <= top && ticks.len() <= target as usize {
        ticks.push(v);
        if v == top {
            break;
        }
        v = v.saturating_add(step);
    }
    (ticks, top)
}

/// 950, 1.2k, 15k, 2.5M: axis labels stay four characters wide.
fn compact(n: u64) -> String {
    let units = [
        (1_000_000_000_000u64, "T"),
        (1_000_000_000, "B"),
        (1_000_000, "M"),
        (1_000, "k"),
    ];
    for (size, suffix) in units {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v < 10.0 && !n.is_multiple_of(size) {
                format!("{}{suffix}", trim_zero(format!("{v:.1}")))
            } else {
                format!("{}{suffix}", (v.round() as u64))
            };
        }
    }
    n.to_string()
}

fn trim_zero(s: String) -> String {
    match s.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => s,
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One decimal at most, no trailing `.0`: coordinates stay short in the markup.
fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    let r = if r == 0.0 { 0.0 } else { r };
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// The `M x y h w v h h -w z` rectangles of a series path.
    fn rects(d: &str) -> Vec<[f64; 4]> {
        d.split('M')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let r = r.trim_end_matches('z');
                let (xy, rest) = r.split_once('h').unwrap();
                let (x, y) = xy.split_once(' ').unwrap();
                let (w, rest) = rest.split_once('v').unwrap();
                let (h, _) = rest.split_once('h').unwrap();
                [x, y, w, h].map(|v| v.parse::<f64>().unwrap())
            })
            .collect()
    }

    fn bin(start: &str, causes: &[(&str, u64)], delivered: u64) -> TimelineBin {
        TimelineBin {
            start: t(start),
            deferred_by_cause: causes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            delivered,
            bounced: 0,
        }
    }

    fn input<'a>(
        bins: &'a [TimelineBin],
        first_seen: &str,
        end: &str,
        th: &'a Thresholds,
        phases: &'a [PhaseChange],
        checks: &'a [(DateTime<Utc>, String)],
    ) -> TimelineInput<'a> {
        TimelineInput {
            bins,
            bin_width: TimeDelta::hours(1),
            first_seen: t(first_seen),
            end: t(end),
            thresholds: th,
            phase_changes: phases,
            check_changes: checks,
        }
    }

    fn x_at(tl_start: &str, tl_end: &str, at: &str) -> f64 {
        let (s, e, a) = (t(tl_start), t(tl_end), t(at));
        LEFT + (a - s).num_seconds() as f64 / (e - s).num_seconds() as f64 * (RIGHT - LEFT)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 0.11
    }

    #[test]
    fn sparkline_bars_are_proportional_and_the_path_stays_small() {
        let now = t("2026-11-20T12:30:00Z");
        let last = now.timestamp().div_euclid(3600) * 3600;
        let mut hourly = BTreeMap::new();
        for i in 0..24 {
            hourly.insert(
                last - i * 3600,
                Bucket {
                    d: 1000 + i as u32 * 13,
                    s: 5,
                    b: 0,
                },
            );
        }
        // Outside the 24 hours: not drawn.
        hourly.insert(
            last - 24 * 3600,
            Bucket {
                d: 99_999,
                s: 0,
                b: 0,
            },
        );
        let s = sparkline(&hourly, now, 96, 20);
        assert_eq!(s.max, 1000 + 23 * 13);
        assert_eq!(s.d.matches('M').count(), 24);
        assert!(s.d.len() < 600, "{} bytes: {}", s.d.len(), s.d);
        assert_eq!(
            s.title,
            "deferrals per hour, last 24 h: max 1,299/h, 27,588 in all"
        );
        // The oldest hour has the peak and fills the height; the current one is last.
        assert!(s.d.starts_with("M2 20V0"), "{}", s.d);
        let last_bar = s.d.rsplit('M').next().unwrap();
        // 1000/1299 of 20 units rounds to 15.
        assert_eq!(last_bar, "94 20V5");
    }

    #[test]
    fn sparkline_of_sparse_and_empty_hours() {
        let now = t("2026-11-20T12:30:00Z");
        let last = now.timestamp().div_euclid(3600) * 3600;
        let hourly = BTreeMap::from([
            (last - 5 * 3600, Bucket { d: 300, s: 0, b: 0 }),
            (last - 3 * 3600, Bucket { d: 1, s: 0, b: 0 }),
            (last - 2 * 3600, Bucket { d: 0, s: 40, b: 0 }),
        ]);
        let s = sparkline(&hourly, now, 96, 20);
        // The lone deferral keeps a visible height of one unit.
        assert_eq!(s.d, "M74 20V0M82 20V19");
        assert_eq!(s.bar_width, "3");

        let none = sparkline(&BTreeMap::new(), now, 96, 20);
        assert_eq!(none.d, "");
        assert_eq!(none.max, 0);
        assert_eq!(none.title, "deferrals per hour, last 24 h: none");
    }

    #[test]
    fn stacked_bars_are_proportional_and_ranked_by_cause() {
        let th = Thresholds::default();
        let bins = [
            bin(
                "2026-11-20T08:00:00Z",
                &[("rate_limit", 100), ("reputation", 50)],
                10,
            ),
            bin("2026-11-20T09:00:00Z", &[("rate_limit", 20)], 0),
            bin("2026-11-20T10:00:00Z", &[("reputation", 60)], 30),
        ];
        let tl = timeline(&input(
            &bins,
            "2026-11-20T08:00:00Z",
            "2026-11-20T11:00:00Z",
            &th,
            &[],
            &[],
        ));
        assert!(!tl.empty);
        let names: Vec<(&str, &str, u64)> = tl
            .series
            .iter()
            .map(|s| (s.css.as_str(), s.label.as_str(), s.count))
            .collect();
        assert_eq!(
            names,
            vec![
                ("c0", "rate limit", 120),
                ("c1", "reputation", 110),
                ("delivered", "delivered", 40)
            ]
        );
        // Max stack 150 → round top 150 with ticks every 50.
        let ticks: Vec<&str> = tl.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(ticks, vec!["0", "50", "100", "150", "50"]);
        let scale = (BASE - BAR_TOP) / 150.0;
        let c0 = rects(&tl.series[0].d);
        let c1 = rects(&tl.series[1].d);
        assert_eq!((c0.len(), c1.len()), (2, 2));
        assert!(close(c0[0][3], 100.0 * scale) && close(c0[1][3], 20.0 * scale));
        assert!(close(c1[0][3], 50.0 * scale) && close(c1[1][3], 60.0 * scale));
        // Stacked: reputation sits on top of rate limit in the first bin.
        assert!(close(c0[0][1], BASE - 100.0 * scale));
        assert!(close(c1[0][1] + c1[0][3], c0[0][1]));
        // Three bins over three hours fill the plot width, in order.
        let pitch = (RIGHT - LEFT) / 3.0;
        assert!(close(c0[1][0] - c0[0][0], pitch));
        assert!(c0[0][2] < pitch && c0[0][2] > pitch - 1.1);
        // Deliveries hang below the zero line on their own scale (round top 50).
        let del = rects(&tl.series[2].d);
        let down = (BOTTOM - BASE) / 50.0;
        assert!(close(del[0][1], BASE));
        assert!(close(del[0][3], 10.0 * down) && close(del[1][3], 30.0 * down));
        assert_eq!(tl.hits.len(), 3);
        assert!(tl.hits[0].title.starts_with(
            "2026-11-20 08:00–09:00 UTC: 150 deferred (rate limit 100, reputation 50), 10 delivered"
        ));
        let legend: Vec<(&str, &str)> = tl
            .legend
            .iter()
            .map(|l| (l.css.as_str(), l.count.as_str()))
            .collect();
        assert_eq!(
            legend,
            vec![("c0", "120"), ("c1", "110"), ("delivered", "40")]
        );
    }

    #[test]
    fn causes_beyond_the_palette_share_other() {
        let th = Thresholds::default();
        let causes: Vec<(String, u64)> =
            (0..11).map(|i| (format!("cause{i:02}"), 100 - i)).collect();
        let bins = [TimelineBin {
            start: t("2026-11-20T08:00:00Z"),
            deferred_by_cause: causes,
            delivered: 0,
            bounced: 0,
        }];
        let tl = timeline(&input(
            &bins,
            "2026-11-20T08:00:00Z",
            "2026-11-20T09:00:00Z",
            &th,
            &[],
            &[],
        ));
        let css: Vec<&str> = tl.series.iter().map(|s| s.css.as_str()).collect();
        assert_eq!(
            css,
            vec!["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "other"]
        );
        assert_eq!(tl.series[8].count, 92 + 91 + 90);
        assert_eq!(tl.series[8].label, "other");
    }

    #[test]
    fn bands_sit_at_the_threshold_offsets_from_first_seen() {
        let th = Thresholds::default();
        let (f, e) = ("2026-11-20T08:00:00Z", "2026-11-21T10:00:00Z");
        let tl = timeline(&input(&[], f, e, &th, &[], &[]));
        let got: Vec<(&str, f64, f64)> = tl
            .bands
            .iter()
            .map(|b| {
                (
                    b.css.as_str(),
                    b.x.parse().unwrap(),
                    b.width.parse().unwrap(),
                )
            })
            .collect();
        let want = [
            ("band band-deferred", f, "2026-11-20T08:15:00Z"),
            (
                "band band-normal_retry",
                "2026-11-20T08:15:00Z",
                "2026-11-20T09:00:00Z",
            ),
            (
                "band band-persistent",
                "2026-11-20T09:00:00Z",
                "2026-11-20T14:00:00Z",
            ),
            (
                "band band-cooling",
                "2026-11-20T14:00:00Z",
                "2026-11-20T20:00:00Z",
            ),
            (
                "band band-cooling_extended",
                "2026-11-20T20:00:00Z",
                "2026-11-21T08:00:00Z",
            ),
            ("band band-escalate", "2026-11-21T08:00:00Z", e),
        ];
        assert_eq!(got.len(), want.len());
        for ((css, x, w), (wcss, from, to)) in got.iter().zip(want) {
            assert_eq!(*css, wcss);
            assert!(close(*x, x_at(f, e, from)), "{css} x {x}");
            assert!(close(x + w, x_at(f, e, to)), "{css} end {}", x + w);
        }
        let labels: Vec<&str> = tl.bands.iter().map(|b| b.label.as_str()).collect();
        // The 15-minute deferred window is too narrow for its label on a 26 h chart.
        assert_eq!(
            labels,
            vec!["", "", "persistent", "cooling", "cooling ext.", "escalate"]
        );
    }

    #[test]
    fn custom_thresholds_move_the_bands() {
        let th = Thresholds {
            normal_retry: TimeDelta::minutes(30),
            persistent: TimeDelta::hours(2),
            cooling: TimeDelta::hours(4),
            cooling_extended: TimeDelta::hours(8),
            escalate: TimeDelta::hours(10),
            ..Thresholds::default()
        };
        let (f, e) = ("2026-11-20T08:00:00Z", "2026-11-20T13:00:00Z");
        let tl = timeline(&input(&[], f, e, &th, &[], &[]));
        // Cooling would start at 12:00, cut at the end of the chart at 13:00; later
        // windows are not drawn at all.
        let last = tl.bands.last().unwrap();
        assert_eq!(last.css, "band band-cooling");
        assert!(close(
            last.x.parse().unwrap(),
            x_at(f, e, "2026-11-20T12:00:00Z")
        ));
        assert!(close(
            last.x.parse::<f64>().unwrap() + last.width.parse::<f64>().unwrap(),
            RIGHT
        ));
    }

    #[test]
    fn markers_land_at_their_instants_with_tooltips() {
        let th = Thresholds::default();
        let (f, e) = ("2026-11-20T08:00:00Z", "2026-11-20T16:00:00Z");
        let phases = [
            PhaseChange {
                at: t(f),
                from: None,
                to: Phase::Deferred,
                reason: "first deferral".into(),
            },
            PhaseChange {
                at: t("2026-11-20T09:00:00Z"),
                from: Some(Phase::NormalRetry),
                to: Phase::Persistent,
                reason: "deferring for 1h".into(),
            },
        ];
        // A listing an hour before the first deferral widens the chart to show it.
        let checks = [(
            t("2026-11-20T07:00:00Z"),
            "198.51.100.25 dnsbl:zen.spamhaus.org: pass → fail; added 127.0.0.2".to_string(),
        )];
        let tl = timeline(&input(&[], f, e, &th, &phases, &checks));
        assert_eq!(tl.markers.len(), 2);
        let (check, phase) = (&tl.markers[0], &tl.markers[1]);
        assert_eq!(check.css, "marker check");
        assert!(close(check.x.parse().unwrap(), LEFT));
        assert_eq!(check.label, "198.51.100.25 dnsbl:zen.s…");
        assert_eq!(
            check.title,
            "2026-11-20 07:00 UTC: 198.51.100.25 dnsbl:zen.spamhaus.org: pass → fail; added 127.0.0.2"
        );
        assert_eq!(phase.css, "marker phase-persistent");
        let start = "2026-11-20T07:00:00Z";
        assert!(close(
            phase.x.parse().unwrap(),
            x_at(start, e, "2026-11-20T09:00:00Z")
        ));
        assert_eq!(
            phase.title,
            "2026-11-20 09:00 UTC: normal_retry → persistent (deferring for 1h)"
        );
        // Bands start at first_seen, not at the widened left edge.
        assert!(close(tl.bands[0].x.parse().unwrap(), x_at(start, e, f)));
        // Far enough apart to share the first label row.
        assert_eq!(
            (check.label_y.as_str(), phase.label_y.as_str()),
            ("10", "10")
        );
    }

    #[test]
    fn crowded_markers_drop_their_labels_but_keep_tooltips() {
        let th = Thresholds::default();
        let checks: Vec<(DateTime<Utc>, String)> = (0..5)
            .map(|i| {
                (
                    t("2026-11-20T09:00:00Z") + TimeDelta::minutes(i),
                    format!("check {i}"),
                )
            })
            .collect();
        let tl = timeline(&input(
            &[],
            "2026-11-20T08:00:00Z",
            "2026-11-20T20:00:00Z",
            &th,
            &[],
            &checks,
        ));
        let labelled = tl.markers.iter().filter(|m| !m.label.is_empty()).count();
        assert_eq!(labelled, LABEL_ROWS.len());
        assert!(tl.markers.iter().all(|m| m.title.contains("check")));
        // A marker at the right edge reads leftwards so its label stays inside.
        let edge = [(t("2026-11-20T20:00:00Z"), "dnsbl listed".to_string())];
        let tl = timeline(&input(
            &[],
            "2026-11-20T08:00:00Z",
            "2026-11-20T20:00:00Z",
            &th,
            &[],
            &edge,
        ));
        assert_eq!(tl.markers[0].anchor, "end");
    }

    #[test]
    fn empty_and_single_bin_charts_are_valid() {
        let th = Thresholds::default();
        let f = "2026-11-20T08:00:00Z";
        let tl = timeline(&input(&[], f, f, &th, &[], &[]));
        assert!(tl.empty);
        assert!(tl.series.is_empty() && tl.hits.is_empty() && tl.legend.is_empty());
        assert_eq!(tl.y_ticks.len(), 1);
        assert!(!tl.x_ticks.is_empty());
        assert_eq!(tl.x_ticks[0].date, "Nov 20");
        assert!(tl.aria_label.contains("0 deferred"));

        let one = [bin("2026-11-20T08:00:00Z", &[("greylisting", 1)], 0)];
        let tl = timeline(&input(&one, f, "2026-11-20T08:05:00Z", &th, &[], &[]));
        assert!(!tl.empty);
        let r = rects(&tl.series[0].d);
        assert_eq!(r.len(), 1);
        assert!(close(r[0][3], BASE - BAR_TOP));
        for v in [&tl.plot_left, &tl.baseline, &tl.series[0].d] {
            assert!(!v.contains("NaN") && !v.contains("inf"), "{v}");
        }
    }

    #[test]
    fn long_incidents_with_huge_counts_stay_finite_and_labelled() {
        let th = Thresholds::default();
        let start = t("2026-11-18T00:00:00Z");
        let width = bin_width_for(TimeDelta::days(8));
        let bins: Vec<TimelineBin> = (0..64)
            .map(|i| TimelineBin {
                start: start + width * i,
                deferred_by_cause: vec![("rate_limit".into(), 4_000_000_000 + i as u64)],
                delivered: u64::from(i % 3 == 0) * 7_000_000_000,
                bounced: 12,
            })
            .collect();
        let tl = timeline(&TimelineInput {
            bins: &bins,
            bin_width: width,
            first_seen: start,
            end: start + TimeDelta::days(8),
            thresholds: &th,
            phase_changes: &[],
            check_changes: &[],
        });
        assert_eq!(width, TimeDelta::hours(3));
        let labels: Vec<&str> = tl.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, vec!["0", "2B", "4B", "6B", "10B"]);
        assert_eq!(rects(&tl.series[0].d).len(), 64);
        assert!(tl.x_ticks.len() <= 9 && tl.x_ticks.len() >= 4);
        // Eight days: one tick a day, each with its date.
        assert!(
            tl.x_ticks
                .iter()
                .all(|t| !t.date.is_empty() && t.label == "00:00")
        );
        let all = format!("{:?}", tl);
        assert!(!all.contains("NaN") && !all.contains("inf"));
    }

    #[test]
    fn x_ticks_are_utc_aligned_and_name_the_day_when_it_changes() {
        let th = Thresholds::default();
        let tl = timeline(&input(
            &[],
            "2026-11-20T20:10:00Z",
            "2026-11-21T04:00:00Z",
            &th,
            &[],
            &[],
        ));
        let got: Vec<(&str, &str)> = tl
            .x_ticks
            .iter()
            .map(|t| (t.label.as_str(), t.date.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("21:00", "Nov 20"),
                ("22:00", ""),
                ("23:00", ""),
                ("00:00", "Nov 21"),
                ("01:00", ""),
                ("02:00", ""),
                ("03:00", ""),
                ("04:00", ""),
            ]
        );
    }

    #[test]
    fn bin_width_keeps_bins_under_150() {
        let cases = [
            (TimeDelta::minutes(10), TimeDelta::minutes(5)),
            (TimeDelta::hours(2), TimeDelta::minutes(5)),
            (TimeDelta::hours(8), TimeDelta::minutes(15)),
            (TimeDelta::hours(27), TimeDelta::hours(1)),
            (TimeDelta::days(5), TimeDelta::hours(3)),
            (TimeDelta::days(30), TimeDelta::hours(6)),
            (TimeDelta::days(60), TimeDelta::hours(12)),
            (TimeDelta::days(200), TimeDelta::days(2)),
        ];
        for (span, want) in cases {
            let w = bin_width_for(span);
            assert_eq!(w, want, "{span}");
            assert!(span.num_seconds() / w.num_seconds() <= 150, "{span}");
        }
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(12.04), "12");
        assert_eq!(num(-0.04), "0");
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1_200), "1.2k");
        assert_eq!(compact(15_000), "15k");
        assert_eq!(compact(2_000_000), "2M");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(nice_ticks(7, 3), (vec![0, 5, 10], 10));
        let (ticks, top) = nice_ticks(u64::MAX, 3);
        assert_eq!((ticks.len(), top), (3, u64::MAX));
    }
}
