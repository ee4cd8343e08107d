//! Charts as SVG, drawn on the server, on one time axis in the project's timezone: line charts
//! (a value axis from zero, one polyline per series, broken where points are missing, and
//! labelled marks at given times such as an alert's start) and timelines (coloured spans, such as
//! a port's up and down time).

use std::fmt::Write as _;

use maud::{Markup, PreEscaped, html};

use crate::store::SeriesPoint;

const W: f64 = 640.0;
const H: f64 = 170.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// One line: its label, CSS class (colour) and points.
pub struct Line<'a> {
    pub label: &'a str,
    pub class: &'a str,
    pub points: &'a [SeriesPoint],
}

/// A chart of `lines` over `[from_ms, to_ms)`. `fixed_max` pins the value axis (100 for
/// percentages); otherwise it fits the largest value. `gap_ms`: points further apart than this
/// are not joined. `format` writes an axis value.
pub struct Chart<'a> {
    pub title: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub fixed_max: Option<f64>,
    pub gap_ms: i64,
    pub lines: &'a [Line<'a>],
    /// Vertical lines across the chart: (time, CSS class, label).
    pub marks: &'a [(i64, &'a str, &'a str)],
    pub tz: &'a jiff::tz::TimeZone,
    pub format: fn(f64) -> String,
    /// What an empty chart says, in the page's language.
    pub no_data: &'a str,
    /// Where its title leads (a closer look at what it shows), if anywhere.
    pub href: Option<&'a str>,
}

/// The x of `at_ms` on an axis over [from, to).
fn x_of(from_ms: i64, to_ms: i64, at_ms: i64) -> f64 {
    let span = (to_ms - from_ms).max(1) as f64;
    LEFT + (at_ms.clamp(from_ms, to_ms) - from_ms) as f64 / span * (W - LEFT - RIGHT)
}

/// The labelled times under an axis.
fn time_axis(from_ms: i64, to_ms: i64, tz: &jiff::tz::TimeZone, y: f64) -> Markup {
    html! {
        @for (at, label) in time_ticks(from_ms, to_ms, tz) {
            text.axis x=(x_of(from_ms, to_ms, at)) y=(y) text-anchor="middle" { (label) }
        }
    }
}

impl Chart<'_> {
    fn x(&self, at_ms: i64) -> f64 {
        x_of(self.from_ms, self.to_ms, at_ms)
    }

    pub fn render(&self) -> Markup {
        let largest = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.avg)).filter(|v| v.is_finite()).fold(0.0, f64::max);
        let max = self.fixed_max.unwrap_or_else(|| nice(largest));
        let y = |v: f64| TOP + (1.0 - (v / max).clamp(0.0, 1.0)) * (H - TOP - BOTTOM);
        let points: usize = self.lines.iter().map(|l| l.points.len()).sum();
        let mut paths = Vec::with_capacity(self.lines.len());
        for line in self.lines {
            let mut d = String::with_capacity(line.points.len() * 14);
            let mut last: Option<i64> = None;
            for p in line.points.iter().filter(|p| p.avg.is_finite()) {
                let verb = if last.is_some_and(|t| p.at_ms - t <= self.gap_ms) { 'L' } else { 'M' };
                let _ = write!(d, "{verb}{:.1} {:.1}", self.x(p.at_ms), y(p.avg));
                last = Some(p.at_ms);
            }
            paths.push(d);
        }
        let title = self.title;
        html! {
            figure.chart {
                figcaption {
                    @if let Some(href) = self.href { a href=(href) { (title) } } @else { (title) }
                    @for line in self.lines { " " span class={ "key " (line.class) } { (line.label) } }
                }
                svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) data-points=(points) {
                    @for frac in [0.0, 0.5, 1.0] {
                        line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y(max * frac)) y2=(y(max * frac)) {}
                        text.axis x=(LEFT - 4.0) y=(y(max * frac) + 4.0) text-anchor="end" { ((self.format)(max * frac)) }
                    }
                    (time_axis(self.from_ms, self.to_ms, self.tz, H - 6.0))
                    @for (at, class, label) in self.marks {
                        @if (self.from_ms..=self.to_ms).contains(at) {
                            line class={ "mark " (class) } x1=(self.x(*at)) x2=(self.x(*at)) y1=(TOP) y2=(H - BOTTOM) {}
                            text class={ "mark " (class) } x=(self.x(*at) + 4.0) y=(TOP + 10.0) { (label) }
                        }
                    }
                    @for (line, d) in self.lines.iter().zip(&paths) {
                        path class={ "line " (line.class) } d=(PreEscaped(d)) {}
                    }
                    @if points == 0 {
                        text.axis x=(W / 2.0) y=(H / 2.0) text-anchor="middle" { (self.no_data) }
                    }
                }
            }
        }
    }
}

/// One span of a timeline: [from, to), its CSS class (colour) and the tooltip it shows.
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
    pub class: &'static str,
    pub title: String,
}

/// A timeline over [from, to): one bar, coloured where `spans` say, blank elsewhere; `now` (when
/// inside the range) is marked, so the time still to come reads as such rather than as no data.
pub struct Timeline<'a> {
    pub label: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub spans: &'a [Span],
    pub now_ms: i64,
    pub tz: &'a jiff::tz::TimeZone,
}

const BAR_TOP: f64 = 4.0;
const BAR_H: f64 = 22.0;
const TIMELINE_H: f64 = BAR_TOP + BAR_H + 16.0;

impl Timeline<'_> {
    pub fn render(&self) -> Markup {
        let x = |at: i64| x_of(self.from_ms, self.to_ms, at);
        html! {
            svg.timeline viewBox={ "0 0 " (W) " " (TIMELINE_H) } role="img" aria-label=(self.label) data-spans=(self.spans.len()) {
                rect.bar x=(LEFT) y=(BAR_TOP) width=(W - LEFT - RIGHT) height=(BAR_H) {}
                @for s in self.spans {
                    @if s.to_ms > self.from_ms && s.from_ms < self.to_ms {
                        // At least half a unit wide, so a single short bucket in a month stays visible.
                        rect class={ "span " (s.class) } x=(x(s.from_ms)) y=(BAR_TOP) width=((x(s.to_ms) - x(s.from_ms)).max(0.5)) height=(BAR_H) {
                            title { (s.title) }
                        }
                    }
                }
                @if self.from_ms < self.now_ms && self.now_ms < self.to_ms {
                    line.now x1=(x(self.now_ms)) x2=(x(self.now_ms)) y1=(BAR_TOP - 2.0) y2=(BAR_TOP + BAR_H + 2.0) {}
                }
                (time_axis(self.from_ms, self.to_ms, self.tz, TIMELINE_H - 3.0))
            }
        }
    }
}

/// A round axis maximum at or above `v`: 1, 2 or 5 times a power of ten.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|m| *m >= v).unwrap_or(10.0 * magnitude)
}

/// About five labelled times across the range, on whole minutes, hours or days.
fn time_ticks(from_ms: i64, to_ms: i64, tz: &jiff::tz::TimeZone) -> Vec<(i64, String)> {
    const MIN: i64 = 60_000;
    let span = to_ms - from_ms;
    let step = [
        5 * MIN,
        10 * MIN,
        15 * MIN,
        30 * MIN,
        60 * MIN,
        120 * MIN,
        180 * MIN,
        360 * MIN,
        720 * MIN,
        1440 * MIN,
        2 * 1440 * MIN,
        7 * 1440 * MIN,
    ]
    .into_iter()
    .find(|s| span / s <= 6)
    .unwrap_or(7 * 1440 * MIN);
    let format = if step >= 1440 * MIN { "%m-%d" } else { "%H:%M" };
    // Align to the step in local time: shift by the zone's offset at the start.
    let offset = crate::api::zoned(from_ms, tz).map_or(0, |z| i64::from(z.offset().seconds()) * 1000);
    let mut at = (from_ms + offset).div_euclid(step) * step - offset;
    let mut ticks = Vec::new();
    while at <= to_ms {
        if at >= from_ms {
            ticks.push((at, crate::api::zoned(at, tz).map(|z| z.strftime(format).to_string()).unwrap_or_default()));
        }
        at += step;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_round_up_and_ticks_fall_on_local_boundaries() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(37.0), 50.0);
        assert_eq!(nice(1.2e6), 2e6);
        let seoul = jiff::tz::TimeZone::get("Asia/Seoul").unwrap();
        // 2026-01-05T00:07:00+09:00 for one hour: ticks every 10 minutes at :10, :20, …
        let from = jiff::Timestamp::from_second(1_767_539_220).unwrap().as_millisecond();
        let ticks = time_ticks(from, from + 3_600_000, &seoul);
        assert_eq!(ticks.first().map(|t| t.1.as_str()), Some("00:10"));
        assert_eq!(ticks.len(), 6);
    }

    #[test]
    fn a_gap_breaks_the_line() {
        let p = |at_ms, avg| SeriesPoint { at_ms, avg, min: avg, max: avg };
        let points = [p(0, 10.0), p(5_000, 20.0), p(60_000, 30.0)];
        let chart = Chart {
            title: "CPU",
            from_ms: 0,
            to_ms: 60_000,
            fixed_max: Some(100.0),
            gap_ms: 15_000,
            lines: &[Line { label: "usage", class: "a", points: &points }],
            marks: &[],
            tz: &jiff::tz::TimeZone::UTC,
            format: |v| format!("{v:.0}"),
            no_data: "no data in this range",
            href: None,
        };
        let svg = chart.render().into_string();
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        let d = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
    }
}
