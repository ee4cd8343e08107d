//! A server's detail views, `?detail=cpu|memory|network|disk` on its page: every series of a
//! kind in a chart of its own — the CPU split and the load averages; memory, swap and page
//! faults; each network interface's traffic, packets, errors and drops; each mount's space and
//! each block device's IO — over the page's range, read from the samples store in one pass and
//! drawn by the same chart code as the page's own charts.

use maud::{Markup, html};

use super::html;
use super::server::Span;
use super::svg::{Chart, Line};
use super::words::{Words, fill};
use crate::catalog::{self, Per, Unit};
use crate::store::{SeriesPoint, SubjectSeries};

/// One detail view of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Cpu,
    Memory,
    Network,
    Disk,
}

impl Detail {
    pub const ALL: [Detail; 4] = [Detail::Cpu, Detail::Memory, Detail::Network, Detail::Disk];

    /// Its word in `?detail=`.
    pub fn word(self) -> &'static str {
        match self {
            Detail::Cpu => "cpu",
            Detail::Memory => "memory",
            Detail::Network => "network",
            Detail::Disk => "disk",
        }
    }

    pub fn parse(word: &str) -> Option<Detail> {
        Detail::ALL.into_iter().find(|d| d.word() == word)
    }

    /// Its name in the page's language.
    pub fn label(self, w: &Words) -> &'static str {
        match self {
            Detail::Cpu => w.cpu,
            Detail::Memory => w.memory,
            Detail::Network => w.network,
            Detail::Disk => w.disk,
        }
    }

    /// Its charts, by what they have one of.
    fn groups(self) -> &'static [Group] {
        match self {
            Detail::Cpu => CPU,
            Detail::Memory => MEMORY,
            Detail::Network => NETWORK,
            Detail::Disk => DISK,
        }
    }

    /// Every metric its charts draw: what it reads from the store.
    pub fn metrics(self) -> Vec<&'static str> {
        self.groups().iter().flat_map(|g| g.charts).flat_map(|c| c.lines).map(|(name, _)| *name).collect()
    }
}

type Phrase = fn(&Words) -> &'static str;

/// One chart: its title, its lines (metric and label), and whether its axis is 0–100 %
/// (usage-like percentages) rather than fitted to the values (small percentages such as steal,
/// rates, bytes).
struct Spec {
    title: Phrase,
    lines: &'static [(&'static str, Phrase)],
    full_scale: bool,
}

/// The charts of one kind of instance: the host, or each interface, mount or device.
struct Group {
    per: Per,
    charts: &'static [Spec],
}

const fn spec(title: Phrase, lines: &'static [(&'static str, Phrase)], full_scale: bool) -> Spec {
    Spec { title, lines, full_scale }
}

const CPU: &[Group] = &[Group {
    per: Per::Host,
    charts: &[
        spec(|w| w.chart_cpu, &[("cpu.usage", |w| w.line_usage)], true),
        spec(
            |w| w.chart_cpu_split,
            &[("cpu.user", |w| w.line_user), ("cpu.system", |w| w.line_system), ("cpu.nice", |w| w.line_nice)],
            false,
        ),
        spec(|w| w.chart_cpu_idle, &[("cpu.idle", |w| w.line_free)], true),
        spec(|w| w.chart_iowait, &[("cpu.iowait", |w| w.line_usage)], false),
        spec(|w| w.chart_steal, &[("cpu.steal", |w| w.line_usage)], false),
        spec(|w| w.chart_irq, &[("cpu.irq", |w| w.line_usage)], false),
        spec(|w| w.chart_softirq, &[("cpu.softirq", |w| w.line_usage)], false),
        spec(|w| w.chart_load, &[("load.1", |w| w.line_1m), ("load.5", |w| w.line_5m), ("load.15", |w| w.line_15m)], false),
    ],
}];

const MEMORY: &[Group] = &[Group {
    per: Per::Host,
    charts: &[
        spec(|w| w.chart_memory, &[("memory.usage", |w| w.line_usage)], true),
        spec(|w| w.chart_memory_free, &[("memory.free", |w| w.line_free)], true),
        spec(|w| w.chart_memory_available, &[("memory.available", |w| w.line_available)], true),
        spec(|w| w.chart_swap, &[("swap.usage", |w| w.line_usage)], true),
        spec(|w| w.chart_page_faults, &[("memory.page_faults", |w| w.line_faults)], false),
    ],
}];

const NETWORK: &[Group] = &[Group {
    per: Per::Interface,
    charts: &[
        spec(|w| w.chart_traffic, &[("network.in_bps", |w| w.in_word), ("network.out_bps", |w| w.out_word)], false),
        spec(|w| w.chart_packets, &[("network.in_pps", |w| w.in_word), ("network.out_pps", |w| w.out_word)], false),
        spec(|w| w.chart_errors, &[("network.in_errors", |w| w.in_word), ("network.out_errors", |w| w.out_word)], false),
        spec(|w| w.chart_drops, &[("network.in_drops", |w| w.in_word), ("network.out_drops", |w| w.out_word)], false),
    ],
}];

const DISK: &[Group] = &[
    Group {
        per: Per::Mount,
        charts: &[
            spec(|w| w.chart_space, &[("disk.usage", |w| w.line_used)], true),
            spec(|w| w.chart_bytes, &[("disk.used_bytes", |w| w.line_used), ("disk.free_bytes", |w| w.line_free)], false),
        ],
    },
    Group {
        per: Per::Device,
        charts: &[
            spec(|w| w.chart_io_busy, &[("disk.io", |w| w.line_busy)], true),
            spec(|w| w.chart_iops, &[("disk.iops", |w| w.line_iops)], false),
            spec(|w| w.chart_throughput, &[("disk.read_bps", |w| w.line_read), ("disk.write_bps", |w| w.line_write)], false),
            spec(|w| w.chart_queue, &[("disk.queue", |w| w.line_queue)], false),
        ],
    },
];

/// The CSS classes (colours) of a chart's lines, in order.
const LINE_CLASSES: [&str; 3] = ["a", "b", "c"];

/// How an axis writes a value of `unit`.
fn axis_format(unit: Unit) -> fn(f64) -> String {
    match unit {
        // Fitted axes of small percentages read 0.5 %, not 0 %.
        Unit::Percent => |v| html::num(Some(v), "%"),
        Unit::Tasks => |v| html::num(Some(v), ""),
        Unit::PerSecond => |v| format!("{}/s", html::count(v)),
        Unit::BitsPerSecond => |v| html::bps(Some(v)),
        // Decimal, as the axis's round values are, and short enough for its margin.
        Unit::BytesPerSecond => |v| format!("{}B/s", html::count(v)),
        Unit::Bytes => |v| format!("{}B", html::count(v)),
    }
}

/// The charts of `detail` from `series` (every series of its metrics over `span`): the host's
/// charts in a grid, or a heading and a grid per interface, mount or device found in the range,
/// each chart titled with its instance. Each chart's cell names its metrics in `data-metrics`
/// and each instance's section its subject in `data-instance`, for scripts of your own.
pub fn render(w: &Words, detail: Detail, series: &[SubjectSeries], span: Span, tz: &jiff::tz::TimeZone) -> Markup {
    let points = |name: &str, subject: Option<&str>| -> &[SeriesPoint] {
        series.iter().find(|s| s.name == name && s.subject.as_deref() == subject).map_or(&[], |s| &s.points)
    };
    let chart = |spec: &Spec, subject: Option<&str>| {
        let title = match subject {
            Some(instance) => fill(w.detail_title, &[&instance, &(spec.title)(w)]),
            None => (spec.title)(w).to_string(),
        };
        let unit = catalog::lookup(spec.lines[0].0).map_or(Unit::Tasks, |m| m.unit);
        let lines: Vec<Line> = spec
            .lines
            .iter()
            .zip(LINE_CLASSES)
            .map(|((name, label), class)| Line { label: label(w), class, points: points(name, subject) })
            .collect();
        let chart = Chart {
            title: &title,
            from_ms: span.from_ms,
            to_ms: span.to_ms,
            fixed_max: spec.full_scale.then_some(100.0),
            gap_ms: span.resolution.step_ms() * 3,
            lines: &lines,
            marks: &[],
            tz,
            format: axis_format(unit),
            no_data: w.no_data_in_range,
            href: None,
        }
        .render();
        html! { div.cell data-metrics=(spec.lines.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(" ")) { (chart) } }
    };
    html! {
        @for group in detail.groups() {
            @if group.per == Per::Host {
                div.grid data-detail=(detail.word()) { @for spec in group.charts { (chart(spec, None)) } }
            } @else {
                @let instances = instances(group, series);
                @if instances.is_empty() {
                    p.meta data-none=(per_word(group.per)) { (none_phrase(w, group.per)) }
                }
                @for instance in &instances {
                    section.instance data-per=(per_word(group.per)) data-instance=(instance) {
                        h2 { (fill(heading_phrase(w, group.per), &[instance])) }
                        div.grid { @for spec in group.charts { (chart(spec, Some(instance))) } }
                    }
                }
            }
        }
    }
}

/// The subjects with data for any chart of `group`, in order.
fn instances<'s>(group: &Group, series: &'s [SubjectSeries]) -> Vec<&'s str> {
    let mut found: Vec<&str> = series
        .iter()
        .filter(|s| group.charts.iter().any(|c| c.lines.iter().any(|(name, _)| *name == s.name)))
        .filter_map(|s| s.subject.as_deref())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// The `data-per` word of an instance: `interface`, `mount`, `device`.
fn per_word(per: Per) -> &'static str {
    match per {
        Per::Host => "host",
        Per::Mount => "mount",
        Per::Device => "device",
        Per::Interface => "interface",
    }
}

fn heading_phrase(w: &Words, per: Per) -> &'static str {
    match per {
        Per::Mount => w.mount_n,
        Per::Device => w.device_n,
        Per::Interface | Per::Host => w.interface_n,
    }
}

fn none_phrase(w: &Words, per: Per) -> &'static str {
    match per {
        Per::Mount => w.no_mounts,
        Per::Device => w.no_devices,
        Per::Interface | Per::Host => w.no_interfaces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_draws_known_metrics_of_its_instance_kind_in_one_unit() {
        for detail in Detail::ALL {
            assert_eq!(Detail::parse(detail.word()), Some(detail));
            for group in detail.groups() {
                for spec in group.charts {
                    assert!(spec.lines.len() <= LINE_CLASSES.len(), "{detail:?}: a class for every line");
                    let metrics: Vec<&catalog::Metric> =
                        spec.lines.iter().map(|(name, _)| catalog::lookup(name).unwrap_or_else(|| panic!("{name}"))).collect();
                    assert!(metrics.iter().all(|m| m.per == group.per && m.unit == metrics[0].unit), "{detail:?} {metrics:?}");
                    assert!(!spec.full_scale || metrics[0].unit == Unit::Percent, "{detail:?}: only percentages on 0–100");
                }
            }
        }
        assert_eq!(Detail::parse("gpu"), None);
        // Every metric the catalog knows has a chart in one view.
        let drawn: Vec<&str> = Detail::ALL.into_iter().flat_map(Detail::metrics).collect();
        for metric in catalog::METRICS {
            assert_eq!(drawn.iter().filter(|name| **name == metric.name).count(), 1, "{}", metric.name);
        }
    }
}
