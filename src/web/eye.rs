//! The compound eye: every server a cell with five gauges, coloured and marked by its state;
//! per project (`/p/{project}`) and for every project in scope (`/eye`). The page refreshes its
//! cells every 5 s from `…/cells` without reloading.
//!
//! `…/cells` answers `{"v": <fingerprint>, "cells": "<cell>;<cell>;…"}`, the cells in page
//! order, each `<state letter><cpu>,<memory>,<disk>,<rx>,<tx>` (whole percent, rx/tx in kbit/s,
//! empty when unknown): about 20 bytes a server. The fingerprint changes when the set of servers
//! does; the page then reloads itself.
//!
//! Drawn for 10 000 servers in about a second: each cell is a single element whose classes give
//! its gauges' fills (the style sheet draws them as background bars), in blocks of [`BLOCK`]
//! cells that the browser skips while they are off screen; the script repaints a cell only
//! when its numbers change or the traffic max does.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::pages::failed;
use super::words::Words;
use super::{Signed, Viewer, WebState, page};
use crate::api::{self, Cell, CellState};
use crate::config::model::Project;

/// The rx/tx gauges' full scale before the user picks one, bits per second.
const DEFAULT_TRAFFIC_MAX: f64 = 100e6;

/// The traffic-max choices, bits per second.
const TRAFFIC_MAX: &[(u64, &str)] =
    &[(10_000_000, "10 Mb/s"), (100_000_000, "100 Mb/s"), (1_000_000_000, "1 Gb/s"), (10_000_000_000, "10 Gb/s")];

fn letter(state: CellState) -> char {
    match state {
        CellState::Ok => 'o',
        CellState::Warning => 'w',
        CellState::Fatal => 'f',
        CellState::Paused => 'p',
        CellState::NoData => 'n',
    }
}

/// The five gauge values as the page and `…/cells` carry them.
fn values(c: &Cell, out: &mut String) {
    let mut first = true;
    for (value, scale) in [(c.cpu, 1.0), (c.memory, 1.0), (c.disk, 1.0), (c.rx, 1e-3), (c.tx, 1e-3)] {
        if !first {
            out.push(',');
        }
        first = false;
        // Whole numbers, written as integers: thousands of cells a refresh.
        if let Some(v) = value.filter(|v| v.is_finite()) {
            let _ = write!(out, "{}", (v * scale).max(0.0).round() as u64);
        }
    }
}

/// A gauge's fill in tenths: 0 for none, at least 1 for anything above zero.
fn level(value: Option<f64>, full: f64) -> u8 {
    match value {
        Some(v) if v > 0.0 => ((v / full * 10.0).ceil().clamp(1.0, 10.0)) as u8,
        _ => 0,
    }
}

/// The gauges' class letters, in the order of [`values`]: CPU (`u`), memory, disk, in, out.
const GAUGES: [char; 5] = ['u', 'm', 'd', 'i', 'o'];

/// Servers per block of cells. The browser lays out and paints only the blocks on screen
/// (`content-visibility: auto` in the style sheet), and 240 divides into every column count
/// the style sheet picks for the page's width, so the blocks join without a ragged row.
const BLOCK: usize = 240;

/// One element per cell: `class` is `c` and, for each gauge above zero, its letter and fill in
/// tenths (`u7`: CPU at 61–70 %), which the style sheet draws as bars; `data-v` has the numbers.
fn cell(c: &Cell, project: &str, v: &mut String, class: &mut String) -> Markup {
    v.clear();
    values(c, v);
    class.clear();
    class.push('c');
    let gauges = [
        level(c.cpu, 100.0),
        level(c.memory, 100.0),
        level(c.disk, 100.0),
        level(c.rx, DEFAULT_TRAFFIC_MAX),
        level(c.tx, DEFAULT_TRAFFIC_MAX),
    ];
    for (letter, fill) in GAUGES.into_iter().zip(gauges) {
        if fill > 0 {
            let _ = write!(class, " {letter}{fill}");
        }
    }
    html! {
        a class=(class) href={ "/p/" (project) "/s/" (c.server.name) } data-server=(c.server.name) data-state=(c.state.as_str()) data-v=(v) {}
    }
}

/// A fingerprint of which servers are shown, in which order.
fn fingerprint(cells: &[Cell]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    cells.len().hash(&mut h);
    for c in cells {
        c.server.name.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The words of the hover text, for the page's script: `{"memory": …, "states": {"ok": …}}`.
fn tip_words(w: &Words) -> String {
    let states: serde_json::Map<String, serde_json::Value> =
        CellState::ALL.iter().map(|s| (s.as_str().to_string(), w.cell_state(*s).into())).collect();
    serde_json::json!({ "memory": w.memory_word, "disk": w.disk_word, "in": w.in_word, "out": w.out_word, "states": states }).to_string()
}

fn eye(w: &Words, title: &str, src: &str, sections: &[(&Project, &[Cell])], all: &[Cell]) -> Markup {
    let (mut v, mut class) = (String::new(), String::new());
    let count = |s: CellState| all.iter().filter(|c| c.state == s).count();
    html! {
        div.eyehead {
            h1 { (title) }
            p.legend {
                @for s in CellState::ALL {
                    span.key data-state=(s.as_str()) { (w.cell_state(*s)) " " strong { (count(*s)) } }
                }
            }
            label.tmax {
                (w.traffic_max)
                select #tmax {
                    @for (bits, label) in TRAFFIC_MAX {
                        option value=(bits) selected[*bits as f64 == DEFAULT_TRAFFIC_MAX] { (label) }
                    }
                }
            }
        }
        p.hint { (w.eye_hint) }
        div #eye data-src=(src) data-v=(fingerprint(all)) data-words=(tip_words(w)) {
            @for (p, cells) in sections {
                @if sections.len() > 1 { h2 { a href={ "/p/" (p.name) } { (p.name) } } }
                @for block in cells.chunks(BLOCK) {
                    div.cells {
                        @for c in block { (cell(c, &p.name, &mut v, &mut class)) }
                    }
                }
            }
        }
        div #tip role="tooltip" hidden {}
    }
}

/// The cells of `projects`, split per project in the same order.
fn split<'a, 'c>(projects: &[&'a Project], cells: &'c [Cell<'a>]) -> Vec<(&'a Project, &'c [Cell<'a>])> {
    let mut rest = cells;
    projects
        .iter()
        .map(|p| {
            let (mine, others) = rest.split_at(p.servers.len().min(rest.len()));
            rest = others;
            (*p, mine)
        })
        .collect()
}

/// `GET /eye`: every project in scope.
pub async fn all(State(state): State<WebState>, signed: Signed) -> Response {
    let projects: Vec<&Project> = signed.access.projects().map(|(p, _)| p).collect();
    let cells = match api::cells(&state.api, &projects).await {
        Ok(cells) => cells,
        Err(e) => return failed(e, &signed),
    };
    let w = signed.w;
    let body = eye(w, w.all_servers, "/eye/cells", &split(&projects, &cells), &cells);
    page(StatusCode::OK, layout(w, w.all_servers, Some(&signed), Some(&Place::Top("/eye")), body))
}

/// `GET /p/{project}`: one project's servers.
pub async fn project(State(state): State<WebState>, signed: Signed, Path(project): Path<String>) -> Response {
    let Ok((p, _)) = signed.access.project(&project) else { return html::missing(&signed) };
    let cells = match api::cells(&state.api, &[p]).await {
        Ok(cells) => cells,
        Err(e) => return failed(e, &signed),
    };
    let body = eye(signed.w, &p.name, &format!("/p/{}/cells", p.name), &[(p, &cells)], &cells);
    page(StatusCode::OK, layout(signed.w, &p.name, Some(&signed), Some(&Place::Project(p, "")), body))
}

/// The refresh answer; 401 without a session (the page then goes to sign-in), 404 for a
/// project out of scope.
fn cells_answer(cells: &[Cell]) -> Response {
    let mut out = String::with_capacity(32 + cells.len() * 20);
    out.push_str("{\"v\":\"");
    out.push_str(&fingerprint(cells));
    out.push_str("\",\"cells\":\"");
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push(letter(c.state));
        values(c, &mut out);
    }
    out.push_str("\"}");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

pub async fn all_cells(State(state): State<WebState>, Viewer(signed, _): Viewer) -> Response {
    let Some(signed) = signed else { return StatusCode::UNAUTHORIZED.into_response() };
    let projects: Vec<&Project> = signed.access.projects().map(|(p, _)| p).collect();
    match api::cells(&state.api, &projects).await {
        Ok(cells) => cells_answer(&cells),
        Err(e) => e.into_response(),
    }
}

pub async fn project_cells(State(state): State<WebState>, Viewer(signed, _): Viewer, Path(project): Path<String>) -> Response {
    let Some(signed) = signed else { return StatusCode::UNAUTHORIZED.into_response() };
    let Ok((p, _)) = signed.access.project(&project) else { return StatusCode::NOT_FOUND.into_response() };
    match api::cells(&state.api, &[p]).await {
        Ok(cells) => cells_answer(&cells),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_fill_in_tenths_and_show_any_use_at_all() {
        assert_eq!(level(None, 100.0), 0);
        assert_eq!(level(Some(0.0), 100.0), 0);
        assert_eq!(level(Some(0.1), 100.0), 1);
        assert_eq!(level(Some(45.0), 100.0), 5);
        assert_eq!(level(Some(100.0), 100.0), 10);
        assert_eq!(level(Some(3e9), 1e9), 10);
    }
}
