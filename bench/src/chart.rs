//! SVG charts for the comparison report: bars per system, grouped bars (e.g. latency percentiles
//! per system) and lines over an x axis (time, rate).
//!
//! Called by the report code; each function writes one self-contained SVG file. Built on
//! `plotters` with only its SVG backend and no font feature: text becomes SVG `<text>` elements
//! that the viewer renders, so nothing here needs font files or system libraries (headless CI).
//!
//! Invariants: every chart is ~800x400 (bar charts grow with the number of bars), series keep
//! the same colour across charts by position (`PALETTE`), non-finite values (NaN, missing) are
//! skipped rather than drawn, and empty or all-zero input still yields a valid SVG — no panics.

use anyhow::{Context, Result};
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;

/// Width and minimum height of every chart, in pixels.
const WIDTH: u32 = 800;
const HEIGHT: u32 = 400;
/// Pixels per bar row in the horizontal bar chart (it grows beyond `HEIGHT` with many systems).
const ROW_PX: u32 = 36;
const FONT: &str = "sans-serif";
/// Minor grid lines: barely visible, so the bold ones carry the scale.
const LIGHT_GRID: RGBColor = RGBColor(242, 242, 242);
/// Axis units per category slot: categories sit on an integer axis (plotters formats only
/// integer axes with custom key points), slot `i` spans `[i * SLOT, (i + 1) * SLOT)`.
const SLOT: i32 = 1000;

/// The category axis for `n` categories: one labelled key point in the middle of each slot.
fn slots(n: usize) -> WithKeyPoints<RangedCoordi32> {
    let centres = (0..n as i32).map(|i| i * SLOT + SLOT / 2).collect();
    (0..n.max(1) as i32 * SLOT).with_key_points(centres)
}

/// Axis position of `fraction` (0..1) across slot `i`.
fn slot_at(i: usize, fraction: f64) -> i32 {
    i as i32 * SLOT + (fraction * SLOT as f64).round() as i32
}

/// Tableau 10: distinct, colour-blind-friendly; series `i` gets `PALETTE[i % 10]`.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series number `i`.
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Horizontal bar chart: one bar per system, value labels on bars; `unit` in axis label.
pub fn bars_svg(path: &Path, title: &str, unit: &str, values: &[(String, f64)]) -> Result<()> {
    let n = values.len();
    let height = HEIGHT.max(90 + ROW_PX * n as u32);
    let root = open(path, (WIDTH, height))?;
    let finite: Vec<f64> = values
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    let x = padded_range(&finite, 1.18);
    let label_px = values.iter().map(|(s, _)| s.len()).max().unwrap_or(4) as u32 * 8 + 16;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(label_px.clamp(60, 260))
        .build_cartesian_2d(x, slots(n))?;
    // The first system is drawn at the top: row `i` sits in slot `n - 1 - i`.
    let name_of = |y: &i32| category_name(values.iter().rev().map(|(s, _)| s.as_str()), *y);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .max_light_lines(4)
        .light_line_style(LIGHT_GRID)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .x_desc(unit)
        .x_label_formatter(&|v| human(*v))
        .y_label_formatter(&name_of)
        .draw()?;
    for (i, (_, v)) in values.iter().enumerate() {
        let row = n - 1 - i;
        let label = if v.is_finite() {
            human(*v)
        } else {
            "n/a".into()
        };
        let at = if v.is_finite() { *v } else { 0.0 };
        if v.is_finite() {
            let corners = [(0.0, slot_at(row, 0.0)), (at, slot_at(row, 1.0))];
            let mut bar = Rectangle::new(corners, colour(i).filled());
            bar.set_margin(6, 6, 0, 0);
            chart.draw_series(std::iter::once(bar))?;
        }
        let style = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(std::iter::once(Text::new(
            format!(" {label}"),
            (at.max(0.0), slot_at(row, 0.5)),
            style,
        )))?;
    }
    no_data_note(&root, finite.is_empty())?;
    finish(root, path)
}

/// Grouped bars: categories (e.g. percentiles "p50","p90","p99","p99.9") x series (systems).
pub fn grouped_bars_svg(
    path: &Path,
    title: &str,
    unit: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    log_scale: bool,
) -> Result<()> {
    let root = open(path, (WIDTH, HEIGHT))?;
    let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70);
    let names = || categories.iter().map(String::as_str);
    let name_of = |x: &i32| category_name(names(), *x);
    if log_scale {
        let y = log_range(&all);
        let floor = y.start;
        let mut chart = builder.build_cartesian_2d(slots(categories.len()), y.log_scale())?;
        draw_grouped_mesh(&mut chart, unit, &name_of)?;
        draw_groups(&mut chart, series, categories.len(), floor, |v| v > 0.0)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    } else {
        let finite: Vec<f64> = all.iter().copied().filter(|v| v.is_finite()).collect();
        let y = padded_range(&finite, legend_pad(series.len()));
        let mut chart = builder.build_cartesian_2d(slots(categories.len()), y)?;
        draw_grouped_mesh(&mut chart, unit, &name_of)?;
        draw_groups(&mut chart, series, categories.len(), 0.0, |_| true)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    let plotted = |v: &f64| v.is_finite() && (!log_scale || *v > 0.0);
    no_data_note(&root, !all.iter().any(plotted))?;
    finish(root, path)
}

/// Lines over x (e.g. time or rate) per series.
pub fn lines_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let root = open(path, (WIDTH, HEIGHT))?;
    let points = || {
        series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|p| finite_point(p))
    };
    let xs: Vec<f64> = points().map(|p| p.0).collect();
    let ys: Vec<f64> = points().map(|p| p.1).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(span(&xs), padded_range(&ys, legend_pad(series.len())))?;
    chart
        .configure_mesh()
        .max_light_lines(4)
        .light_line_style(LIGHT_GRID)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| human(*v))
        .y_label_formatter(&|v| human(*v))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colour(i);
        for run in finite_runs(pts) {
            chart.draw_series(LineSeries::new(run.iter().copied(), c.stroke_width(2)))?;
        }
        let dots = pts.iter().filter(|p| finite_point(p));
        chart
            .draw_series(dots.map(|p| Circle::new(*p, 3, c.filled())))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    no_data_note(&root, xs.is_empty())?;
    finish(root, path)
}

/// A white drawing area on a new SVG file.
fn open(path: &Path, size: (u32, u32)) -> Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    Ok(root)
}

/// Writes the file (the SVG backend buffers until `present`).
fn finish(root: DrawingArea<SVGBackend<'_>, Shift>, path: &Path) -> Result<()> {
    root.present()
        .with_context(|| format!("writing chart {}", path.display()))
}

/// Centred "no data" text when nothing could be plotted (the axes are still drawn).
fn no_data_note(root: &DrawingArea<SVGBackend<'_>, Shift>, empty: bool) -> Result<()> {
    if empty {
        let (w, h) = root.dim_in_pixel();
        let style = TextStyle::from((FONT, 20)).color(&RGBColor(127, 127, 127));
        root.draw(&Text::new(
            "no data",
            (w as i32 / 2 - 35, h as i32 / 2),
            style,
        ))?;
    }
    Ok(())
}

/// Axes of the grouped chart: category names under the groups, `unit` on y.
fn draw_grouped_mesh<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<WithKeyPoints<RangedCoordi32>, Y>>,
    unit: &str,
    name_of: &dyn Fn(&i32) -> String,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(4)
        .light_line_style(LIGHT_GRID)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .y_desc(unit)
        .x_label_formatter(name_of)
        .y_label_formatter(&|v| human(*v))
        .draw()?;
    Ok(())
}

/// One bar per (category, series) inside the category's slot; `base` is where bars start.
fn draw_groups<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<WithKeyPoints<RangedCoordi32>, Y>>,
    series: &[(String, Vec<f64>)],
    categories: usize,
    base: f64,
    drawable: impl Fn(f64) -> bool,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let width = 0.8 / series.len().max(1) as f64;
    for (j, (name, vals)) in series.iter().enumerate() {
        let c = colour(j);
        let x0 = |i: usize| slot_at(i, 0.1 + j as f64 * width);
        let x1 = |i: usize| slot_at(i, 0.1 + (j + 1) as f64 * width);
        let bars = vals
            .iter()
            .take(categories)
            .enumerate()
            .filter(|(_, v)| v.is_finite() && drawable(**v))
            .map(|(i, v)| {
                let mut r = Rectangle::new([(x0(i), base), (x1(i), *v)], c.filled());
                r.set_margin(0, 0, 1, 1);
                r
            });
        chart
            .draw_series(bars)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        let labels = vals
            .iter()
            .take(categories)
            .enumerate()
            .filter(|(_, v)| v.is_finite() && drawable(**v));
        let style = TextStyle::from((FONT, 11)).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(
            labels.map(|(i, v)| Text::new(human(*v), ((x0(i) + x1(i)) / 2, *v), style.clone())),
        )?;
    }
    Ok(())
}

/// The legend box at `at` (lines: upper left, bars: upper right, where bars are rarely tallest).
fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// The name of the category whose slot contains axis position `at` (empty outside).
fn category_name<'a>(mut names: impl Iterator<Item = &'a str>, at: i32) -> String {
    if at < 0 {
        return String::new();
    }
    names.nth((at / SLOT) as usize).unwrap_or("").to_string()
}

/// An axis range from 0 (or the lowest negative value) to the highest value times `pad`;
/// `0..1` when there is nothing finite or everything is zero.
fn padded_range(values: &[f64], pad: f64) -> Range<f64> {
    let lo = values.iter().copied().fold(0.0, f64::min) * pad;
    let hi = values.iter().copied().fold(0.0, f64::max) * pad;
    if hi > lo {
        lo..hi
    } else {
        0.0..1.0
    }
}

/// A log axis covering the positive finite values, widened to whole powers of ten.
fn log_range(values: &[f64]) -> Range<f64> {
    let pos = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = pos.fold((f64::MAX, 0.0_f64), |(a, b), v| (a.min(v), b.max(v)));
    if hi <= 0.0 {
        return 1.0..10.0;
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf((hi * 3.0).log10().ceil()).max(lo * 10.0);
    lo..hi
}

/// Headroom factor above the highest value so a legend of `series` rows clears the data.
fn legend_pad(series: usize) -> f64 {
    1.1 + 0.08 * series as f64
}

/// The x range of line points: min..max, widened to a unit span when degenerate.
fn span(xs: &[f64]) -> Range<f64> {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        0.0..1.0
    } else if hi > lo {
        lo..hi
    } else {
        lo - 0.5..hi + 0.5
    }
}

fn finite_point(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// The maximal runs of consecutive finite points: a NaN breaks the line instead of bridging it.
fn finite_runs(points: &[(f64, f64)]) -> Vec<&[(f64, f64)]> {
    points
        .split(|p| !finite_point(p))
        .filter(|run| !run.is_empty())
        .collect()
}

/// Short human form of a value: 3 significant digits, k/M/G suffixes from 10,000 up.
pub fn human(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = match a {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let s = scaled.abs();
    let digits = if s == 0.0 || s >= 100.0 {
        0
    } else if s >= 10.0 {
        1
    } else if s >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests;
