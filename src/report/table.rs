//! The cross-run results table of `medfm report`: one row per run with its config (backbone,
//! head, freezing, lr, epochs), state, trunk parameter count, the dataset's target metric and
//! every test metric (with its bootstrap interval from the run's `statistics.json` when there is
//! one), the best run of each table and how the others compare with it
//! ([`super::significance`]), and the runs of one config that differ only in seed or fold
//! summarised as mean ± sd (n); as markdown (one section per dataset) and CSV. Missing and
//! failed runs keep their rows.

use super::runs::{RunId, RunState};
use super::significance::Mark;
use crate::config::DatasetName;
use crate::datasets::TargetMetric;
use crate::models::registry;
use crate::stats::{Estimate, Statistics};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The metric that picks the best model and that the paper reports, per dataset (from its
/// row of `data::DATASETS`); empty for a name the table lacks (runs' ids only hold known
/// names).
pub fn target_metric(dataset: DatasetName) -> &'static str {
    crate::data::datasets::facts(dataset).map_or("", |f| f.target_metric.as_str())
}

/// One run with what the table shows about it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: RunId,
    pub state: RunState,
    pub family: Option<&'static str>,
    /// Trunk parameters from the backbone registry (None when unknown).
    pub params: Option<i64>,
    /// The metric that picked the run's best model: the dataset's, or what the run recorded
    /// in `dataset_info.json` (one's own data, `dataset_params.target_metric`).
    pub metric: Option<TargetMetric>,
    /// `test_<target metric>` of a finished run.
    pub target: Option<f64>,
    /// Whether the trunk started from random weights (None: unknown); see
    /// `runs::random_trunk`.
    pub random_trunk: Option<bool>,
    /// What the resolved params say (None without readable `configs/<name>/params.json`).
    pub config: Option<RunConfig>,
    /// The run's `statistics.json` (None when absent, e.g. an older run, or unreadable).
    pub statistics: Option<Statistics>,
    /// The run's `predictions.csv`, when it exists (for the tests against the best run).
    pub predictions: Option<PathBuf>,
    /// How the run compares with the best of its table ([`super::significance::mark_best`]).
    pub mark: Option<Mark>,
}

/// The settings of a run that the table shows, from its resolved params.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// "frozen", "full" (trunk trained) or "partial (blocks k..)" (`unfreeze_cutoff` k).
    pub freezing: String,
    /// `optimization_params.default.optimizer.params.lr`.
    pub lr: Option<f64>,
    pub epochs: Option<i64>,
    pub seed: u64,
    pub fold: Option<i64>,
    /// `dataset_params.data_location`: one's own datasets get a table per location.
    pub data: Option<String>,
    /// The resolved params without what may differ between repeats of one config (its name,
    /// seed and fold): runs with equal keys are repeats.
    pub key: String,
}

impl RunConfig {
    /// From resolved params (`config::write_resolved`'s JSON); absent keys take the schema's
    /// defaults (seed 42, a frozen trunk).
    pub fn from_params(params: &Value) -> RunConfig {
        let at = |path: &[&str]| path.iter().try_fold(params, |v, k| v.get(*k));
        let frozen = at(&["foundation_params", "freeze_backbone"])
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let cutoff = at(&["foundation_params", "partial", "unfreeze_cutoff"])
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let freezing = match (frozen, cutoff) {
            (false, _) => "full".to_string(),
            (true, k) if k >= 0 => format!("partial (blocks {k}..)"),
            _ => "frozen".to_string(),
        };
        let mut rest = params.clone();
        for (section, key) in [
            ("training_params", "model_name"),
            ("training_params", "seed"),
            ("dataset_params", "fold"),
            ("log_params", "run_name"),
        ] {
            if let Some(Value::Object(m)) = rest.get_mut(section) {
                m.remove(key);
            }
        }
        RunConfig {
            freezing,
            lr: at(&[
                "optimization_params",
                "default",
                "optimizer",
                "params",
                "lr",
            ])
            .and_then(Value::as_f64),
            epochs: at(&["training_params", "epochs"]).and_then(Value::as_i64),
            seed: at(&["training_params", "seed"])
                .and_then(Value::as_u64)
                .unwrap_or(42),
            fold: at(&["dataset_params", "fold"]).and_then(Value::as_i64),
            data: at(&["dataset_params", "data_location"])
                .and_then(Value::as_str)
                .map(str::to_string),
            key: rest.to_string(),
        }
    }

    /// The config of run `model_name` under `save_dir` (None without readable params).
    pub fn read(save_dir: &Path, model_name: &str) -> Option<RunConfig> {
        let file = crate::run_dir::RunDir::new(save_dir, model_name).resolved_params();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
        Some(RunConfig::from_params(&v))
    }
}

impl Row {
    pub fn new(id: RunId, state: RunState) -> Row {
        let spec = id.backbone.as_deref().and_then(|b| registry::get(b).ok());
        let metric = id
            .dataset
            .and_then(|d| crate::data::datasets::facts(d).ok())
            .map(|f| f.target_metric);
        let mut row = Row {
            family: spec.map(|s| s.family().as_str()),
            params: spec.map(|s| s.param_count).filter(|&n| n > 0),
            id,
            state,
            metric: None,
            target: None,
            random_trunk: None,
            config: None,
            statistics: None,
            predictions: None,
            mark: None,
        };
        row.set_metric(metric);
        row
    }

    /// The metrics of a finished run.
    pub fn values(&self) -> Option<&crate::metrics::MetricValues> {
        match &self.state {
            RunState::Done(m) => Some(m),
            _ => None,
        }
    }

    /// The interval of metric `key` from `statistics.json`, when it has a finite one.
    pub fn interval(&self, key: &str) -> Option<(f64, f64)> {
        let e: &Estimate = self.statistics.as_ref()?.metric(key)?;
        (e.ci_low.is_finite() && e.ci_high.is_finite()).then_some((e.ci_low, e.ci_high))
    }

    /// `test_<target metric>`.
    pub fn target_key(&self) -> Option<String> {
        self.metric.map(|m| format!("test_{}", m.as_str()))
    }

    fn freezing(&self) -> &str {
        self.config.as_ref().map_or("", |c| c.freezing.as_str())
    }

    fn lr(&self) -> Option<f64> {
        self.config.as_ref().and_then(|c| c.lr)
    }

    fn epochs(&self) -> String {
        self.config
            .as_ref()
            .and_then(|c| c.epochs)
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    /// The run's target metric, and its test value when the run is done.
    pub fn set_metric(&mut self, metric: Option<TargetMetric>) {
        self.metric = metric;
        self.target = match (&self.state, metric) {
            (RunState::Done(m), Some(t)) => m.get(&format!("test_{}", t.as_str())),
            _ => None,
        };
    }

    /// The backbone cell: its name, marked when the trunk was random (its metrics are then
    /// not those of the pretrained model); "?" when unknown, as family and head (the run's
    /// name has its own column, and a name is no backbone).
    fn backbone_cell(&self) -> String {
        let name = self.id.backbone.as_deref().unwrap_or("?");
        match self.random_trunk {
            Some(true) => format!("{name} (random trunk)"),
            _ => name.to_string(),
        }
    }

    /// The CSV's `trunk_weights`: pretrained, random, or empty when unknown.
    fn trunk_weights(&self) -> &'static str {
        match self.random_trunk {
            Some(true) => "random",
            Some(false) => "pretrained",
            None => "",
        }
    }

    fn status(&self) -> String {
        match &self.state {
            RunState::Failed(why) => format!("failed ({why})"),
            RunState::Incomplete { resumable: true } => "incomplete (resumable)".into(),
            other => other.label().into(),
        }
    }
}

/// Test metric columns: every key of the finished runs, in order of first appearance, with
/// `test_loss` last.
fn metric_columns<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        if let RunState::Done(m) = &r.state {
            for k in m.keys() {
                if !cols.iter().any(|c| c == k) {
                    cols.push(k.to_string());
                }
            }
        }
    }
    if let Some(i) = cols.iter().position(|c| c == "test_loss") {
        let loss = cols.remove(i);
        cols.push(loss);
    }
    cols
}

fn fmt_value(v: Option<f64>) -> String {
    v.map(fmt_number).unwrap_or_default()
}

/// A metric as the table shows it: the shortest form of what the run wrote (the reference
/// rounds metrics to 3 decimals and the loss to 5), but never hundreds of digits: 6
/// significant digits when that form is long, 4 in scientific notation when huge or tiny.
fn fmt_number(x: f64) -> String {
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return format!("{x}");
    }
    if x == 0.0 {
        // Also a negative zero (a kappa of -0.0): "-0" means nothing more than 0.
        return "0".into();
    }
    if (1e-4..1e6).contains(&x.abs()) {
        let shortest = format!("{x}");
        if shortest.len() <= 10 {
            return shortest;
        }
        let decimals = (5 - x.abs().log10().floor() as i32).max(0) as usize;
        return trim(&format!("{x:.decimals$}"));
    }
    let sci = format!("{x:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    format!("{}e{exp}", trim(mantissa))
}

/// A metric in the CSV, which is data for further analysis: every digit of the shortest form
/// that reads back to the same number, in scientific notation when that would be long.
fn csv_value(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_nan() => "NaN".into(),
        // Also a negative zero (the pattern compares with ==): it reads back equal to 0, and
        // "-0" would only puzzle a reader.
        Some(0.0) => "0".into(),
        Some(x) if (1e-4..1e16).contains(&x.abs()) => format!("{x}"),
        Some(x) => format!("{x:e}"),
        None => String::new(),
    }
}

/// A markdown table cell: `|` would end the cell and a line break the row.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r', '\t'], " ")
}

/// "86.6M" style.
pub fn fmt_params(n: Option<i64>) -> String {
    n.map(|n| format!("{:.1}M", n as f64 / 1e6))
        .unwrap_or_else(|| "?".into())
}

fn head_name(id: &RunId) -> &'static str {
    id.head.map_or("?", |h| match h {
        crate::config::HeadType::Linear => "linear",
        crate::config::HeadType::DeitBase => "deit_base",
    })
}

/// A metric with its interval, "0.912 [0.871, 0.950]" (the interval to 3 decimals, as the
/// reference rounds metrics), or the value alone without one.
fn with_interval(value: String, ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) if !value.is_empty() => format!("{value} [{lo:.3}, {hi:.3}]"),
        _ => value,
    }
}

/// A mean or sd of the repeats: 3 decimals (trailing zeros cut) where the metrics have them,
/// the compact form otherwise.
fn fmt_stat(x: f64) -> String {
    if x.is_finite() && x.abs() < 1e3 && (x == 0.0 || x.abs() >= 1e-3) {
        let s = format!("{:.3}", x);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        fmt_number(x)
    }
}

/// "0.8 ± 0.1 (3)".
fn mean_sd_cell(mean: f64, sd: f64, n: usize) -> String {
    format!("{} ± {} ({n})", fmt_stat(mean), fmt_stat(sd))
}

/// All runs as CSV (one header; empty cells where a run has no value). The columns added after
/// the first version come after the metrics, so that readers by position keep working.
pub fn to_csv(rows: &[Row]) -> anyhow::Result<String> {
    let cols = metric_columns(rows.iter());
    let ci_cols: Vec<&String> = cols
        .iter()
        .filter(|c| rows.iter().any(|r| r.interval(c).is_some()))
        .collect();
    let groups = repeat_groups(rows);
    let group_of = |name: &str| {
        groups
            .iter()
            .find(|g| g.runs.iter().any(|r| r == name))
            .map(|g| g.runs[0].clone())
            .unwrap_or_default()
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "dataset",
        "backbone",
        "family",
        "head",
        "model_name",
        "trunk_params",
        "trunk_weights",
        "status",
        "target_metric",
        "target_value",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(cols.iter().cloned());
    header.extend(
        [
            "freezing",
            "lr",
            "epochs",
            "seed",
            "fold",
            "mark",
            "p_vs_best",
            "test_vs_best",
            "repeat_group",
        ]
        .map(String::from),
    );
    for c in &ci_cols {
        header.push(format!("{c}_ci_low"));
        header.push(format!("{c}_ci_high"));
    }
    w.write_record(&header)?;
    for r in rows {
        let mut rec = vec![
            r.id.dataset.as_ref().map_or("", |d| d.as_str()).to_string(),
            r.id.backbone.clone().unwrap_or_default(),
            r.family.unwrap_or("").to_string(),
            head_name(&r.id).to_string(),
            r.id.model_name.clone(),
            r.params.map(|n| n.to_string()).unwrap_or_default(),
            r.trunk_weights().to_string(),
            r.status(),
            r.metric.map_or("", |m| m.as_str()).to_string(),
            csv_value(r.target),
        ];
        let m = r.values();
        rec.extend(cols.iter().map(|c| csv_value(m.and_then(|m| m.get(c)))));
        let config = r.config.as_ref();
        rec.extend([
            r.freezing().to_string(),
            csv_value(r.lr()),
            r.epochs(),
            config.map(|c| c.seed.to_string()).unwrap_or_default(),
            config
                .and_then(|c| c.fold)
                .map(|f| f.to_string())
                .unwrap_or_default(),
            r.mark.as_ref().map_or("", |m| m.label()).to_string(),
            csv_value(r.mark.as_ref().and_then(|m| m.p_value())),
            r.mark
                .as_ref()
                .and_then(|m| m.method())
                .map_or("", |m| m.as_str())
                .to_string(),
            group_of(&r.id.model_name),
        ]);
        for c in &ci_cols {
            let ci = r.interval(c);
            rec.push(csv_value(ci.map(|c| c.0)));
            rec.push(csv_value(ci.map(|c| c.1)));
        }
        w.write_record(&rec)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Markdown: a summary line, then one table per dataset (its own metric columns, target
/// metric first, the best finished run in bold and how the others compare with it), and the
/// repeats of one config as mean ± sd (n).
pub fn to_markdown(rows: &[Row], save_dir: &str) -> String {
    let count = |label: &str| rows.iter().filter(|r| r.state.label() == label).count();
    let mut md = format!(
        "# medfm results: {save_dir}\n\n{} run{}: {} done, {} failed, {} incomplete, {} missing.\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        count("done"),
        count("failed"),
        count("incomplete"),
        count("missing")
    );
    if rows.iter().any(|r| r.random_trunk == Some(true)) {
        md.push_str(
            "\nRuns marked \"(random trunk)\" started from random trunk weights \
             (foundation_params.pretrained false): their metrics are not those of the pretrained \
             model.\n",
        );
    }
    if rows.iter().any(|r| r.statistics.is_some()) {
        md.push_str(
            "\nA metric in brackets is the 95% bootstrap interval from the run's \
             statistics.json; runs without one (e.g. older runs) show the value alone.\n",
        );
    }
    let groups = repeat_groups(rows);
    for (key, group) in sections(rows) {
        let (dataset, data, _) = &key;
        let dataset = *dataset;
        let target = dataset
            .and(group.iter().find_map(|r| r.metric))
            .map(|m| m.as_str());
        let target_key = target.map(|t| format!("test_{t}"));
        let cols: Vec<String> = metric_columns(group.iter().copied())
            .into_iter()
            .filter(|c| Some(c) != target_key.as_ref())
            .collect();
        let best = best_value(&group);
        match (dataset, data, target) {
            (Some(d), Some(data), Some(t)) => {
                md.push_str(&format!("\n## {d}: {data} (target metric: {t})\n\n"))
            }
            (Some(d), None, Some(t)) => md.push_str(&format!("\n## {d} (target metric: {t})\n\n")),
            _ => md.push_str("\n## Other runs (no resolved params)\n\n"),
        }
        if let (Some(t), false) = (&target_key, best.is_nan()) {
            md.push_str(&super::significance::explanation(t, &group));
            md.push_str("\n\n");
        }
        let mut header: Vec<String> = [
            "model_name",
            "backbone",
            "family",
            "head",
            "freezing",
            "lr",
            "epochs",
            "trunk params",
            "status",
        ]
        .map(String::from)
        .into();
        header.push(target_key.clone().unwrap_or_else(|| "target".into()));
        header.push("vs best".into());
        header.extend(cols.iter().map(|c| md_cell(c)));
        md.push_str(&format!("| {} |\n", header.join(" | ")));
        md.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
        for r in &group {
            let m = r.values();
            let ci = |c: &str| r.interval(c);
            let target = match r.target {
                Some(v) if v == best => format!("**{}**", fmt_number(v)),
                v => fmt_value(v),
            };
            let target = with_interval(target, target_key.as_deref().and_then(ci));
            let mark = match (&r.mark, r.target) {
                (Some(mark), _) => mark.cell(),
                (None, Some(v)) if v == best => "best".into(),
                _ => String::new(),
            };
            let mut cells = vec![
                md_cell(&r.id.model_name),
                md_cell(&r.backbone_cell()),
                r.family.unwrap_or("?").to_string(),
                head_name(&r.id).to_string(),
                md_cell(r.freezing()),
                fmt_value(r.lr()),
                r.epochs(),
                fmt_params(r.params),
                md_cell(&r.status()),
                target,
                md_cell(&mark),
            ];
            cells.extend(
                cols.iter()
                    .map(|c| with_interval(fmt_value(m.and_then(|m| m.get(c))), ci(c))),
            );
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        let mine: Vec<&RepeatGroup> = groups.iter().filter(|g| g.section == key).collect();
        if !mine.is_empty() {
            md.push_str(
                "\nRuns of one config that differ only in seed or fold: mean ± sd (n) over the \
                 finished runs (sd with n - 1).\n\n",
            );
            let mut header: Vec<String> = [
                "runs",
                "backbone",
                "head",
                "freezing",
                "lr",
                "epochs",
                "differ in",
            ]
            .map(String::from)
            .into();
            header.push(target_key.clone().unwrap_or_else(|| "target".into()));
            header.extend(cols.iter().map(|c| md_cell(c)));
            md.push_str(&format!("| {} |\n", header.join(" | ")));
            md.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
            for g in mine {
                let first = &rows[g.first];
                let cell = |c: Option<&String>| {
                    c.and_then(|c| g.metrics.iter().find(|m| &m.0 == c))
                        .map(|(_, mean, sd)| mean_sd_cell(*mean, *sd, g.n))
                        .unwrap_or_default()
                };
                let mut cells = vec![
                    md_cell(&g.runs.join(", ")),
                    md_cell(&first.backbone_cell()),
                    head_name(&first.id).to_string(),
                    md_cell(first.freezing()),
                    fmt_value(first.lr()),
                    first.epochs(),
                    g.varies.clone(),
                    cell(target_key.as_ref()),
                ];
                cells.extend(cols.iter().map(|c| cell(Some(c))));
                md.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
    }
    md
}

/// A table of the markdown: a dataset, for one's own data its location (runs on two studies'
/// folders, both "ImageFolder", are not ranked against each other), and a target metric.
pub type Section = (Option<DatasetName>, Option<String>, Option<TargetMetric>);

/// The table `r` belongs to.
pub fn section_of(r: &Row) -> Section {
    let data =
        r.id.dataset
            .filter(|d| crate::data::datasets::is_own(*d))
            .and(r.config.as_ref().and_then(|c| c.data.clone()));
    (r.id.dataset, data, r.metric)
}

/// The rows by table, in order of first appearance: one table per dataset and target metric
/// (runs of one's own data may pick different metrics; a best value is only marked among runs
/// that share one).
pub fn sections(rows: &[Row]) -> Vec<(Section, Vec<&Row>)> {
    let mut groups: Vec<(Section, Vec<&Row>)> = Vec::new();
    for r in rows {
        let key = section_of(r);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups
}

/// The best finite target value of a table (NaN when none).
pub fn best_value(rows: &[&Row]) -> f64 {
    rows.iter()
        .filter_map(|r| r.target)
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, f64::max)
}

/// The finished runs of one config that differ only in seed or fold: the same resolved params
/// but for name, seed and fold (runs without params: named `<base>_fold<i>` with the same
/// dataset, backbone and head).
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatGroup {
    /// The table the runs are in.
    pub section: Section,
    pub n: usize,
    /// The runs' names, by fold, then seed, then name.
    pub runs: Vec<String>,
    /// The index (in the rows given) of the group's first run, for its config's cells.
    pub first: usize,
    /// What differs between the runs: "seed", "fold", "seed, fold" (or "name" when nothing
    /// the table knows of does).
    pub varies: String,
    /// (metric, mean, sample sd) for every test metric all the runs have.
    pub metrics: Vec<(String, f64, f64)>,
}

/// `<base>` and `i` of a run named `<base>_fold<i>`.
pub fn fold_of(model_name: &str) -> Option<(&str, u32)> {
    let (base, i) = model_name.rsplit_once("_fold")?;
    if base.is_empty() || i.is_empty() || !i.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, i.parse().ok()?))
}

/// Groups of at least two finished repeats of one config, in order of first appearance.
pub fn repeat_groups(rows: &[Row]) -> Vec<RepeatGroup> {
    /// What makes runs repeats of one another, and the members' indices.
    type Group = (Section, Option<String>, Option<String>, String, Vec<usize>);
    let mut groups: Vec<Group> = vec![];
    for (i, r) in rows.iter().enumerate() {
        if r.values().is_none() {
            continue;
        }
        let key = match (&r.config, fold_of(&r.id.model_name)) {
            (Some(c), _) => format!("params {}", c.key),
            (None, Some((base, _))) => format!("name {base}"),
            (None, None) => continue,
        };
        let section = section_of(r);
        let found = groups.iter_mut().find(|g| {
            g.0 == section
                && g.1 == r.id.backbone
                && g.2.as_deref() == Some(head_name(&r.id))
                && g.3 == key
        });
        match found {
            Some(g) => g.4.push(i),
            None => groups.push((
                section,
                r.id.backbone.clone(),
                Some(head_name(&r.id).to_string()),
                key,
                vec![i],
            )),
        }
    }
    groups
        .into_iter()
        .filter(|g| g.4.len() >= 2)
        .map(|(section, _, _, _, mut members)| {
            let order = |i: &usize| {
                let r = &rows[*i];
                let fold = r
                    .config
                    .as_ref()
                    .and_then(|c| c.fold)
                    .or_else(|| fold_of(&r.id.model_name).map(|f| i64::from(f.1)));
                let seed = r.config.as_ref().map(|c| c.seed);
                (fold, seed, r.id.model_name.clone())
            };
            members.sort_by_key(order);
            let members_rows: Vec<&Row> = members.iter().map(|&i| &rows[i]).collect();
            let distinct = |f: &dyn Fn(&Row) -> Option<i64>| {
                let mut v: Vec<Option<i64>> = members_rows.iter().map(|r| f(r)).collect();
                v.sort();
                v.dedup();
                v.len() > 1
            };
            let seeds = distinct(&|r| r.config.as_ref().map(|c| c.seed as i64));
            let folds = distinct(&|r| {
                r.config
                    .as_ref()
                    .and_then(|c| c.fold)
                    .or_else(|| fold_of(&r.id.model_name).map(|f| i64::from(f.1)))
            });
            let varies = match (seeds, folds) {
                (true, true) => "seed, fold",
                (true, false) => "seed",
                (false, true) => "fold",
                (false, false) => "name",
            }
            .to_string();
            let metrics = metric_columns(members_rows.iter().copied())
                .into_iter()
                .filter_map(|c| {
                    let v: Vec<f64> = members_rows
                        .iter()
                        .filter_map(|r| r.values().and_then(|m| m.get(&c)))
                        .collect();
                    (v.len() == members_rows.len()).then(|| {
                        let (mean, sd) = mean_sd(&v);
                        (c, mean, sd)
                    })
                })
                .collect();
            RepeatGroup {
                section,
                n: members.len(),
                runs: members_rows
                    .iter()
                    .map(|r| r.id.model_name.clone())
                    .collect(),
                first: members[0],
                varies,
                metrics,
            }
        })
        .collect()
}

/// Mean and sample standard deviation (n - 1; numpy's `std(ddof=1)`).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeadType;
    use crate::metrics::MetricValues;

    /// A dataset whose target metric is ROC AUC (the rows below report it).
    fn roc_auc_dataset() -> DatasetName {
        crate::data::DATASETS
            .iter()
            .find(|s| s.facts.target_metric == crate::datasets::TargetMetric::RocAuc)
            .unwrap()
            .facts
            .name()
    }

    // Registry order sorts the table, so the first and last backbones keep their rows' order.
    fn first_backbone() -> &'static str {
        registry::names()[0]
    }

    fn last_backbone() -> &'static str {
        registry::names().into_iter().last().unwrap()
    }

    fn row(backbone: &str, head: HeadType, state: RunState) -> Row {
        let id = RunId {
            model_name: format!("{backbone}_{}", head.as_str()),
            dataset: Some(roc_auc_dataset()),
            backbone: Some(backbone.into()),
            head: Some(head),
            config: None,
        };
        Row::new(id, state)
    }

    /// Folds of one config are summarised as mean ± sample sd (numpy: mean([0.8, 0.9, 0.7])
    /// = 0.8, std(ddof=1) = 0.1); other runs and single folds are not.
    #[test]
    fn folds_of_one_config_are_aggregated() {
        let done = |name: &str, auc: f64| {
            let mut m = MetricValues::default();
            m.push("test_roc_auc", auc);
            let mut r = row(first_backbone(), HeadType::Linear, RunState::Done(m));
            r.id.model_name = name.into();
            r
        };
        let rows = vec![
            done("cv_fold0", 0.8),
            done("cv_fold2", 0.7),
            done("cv_fold1", 0.9),
            done("other_fold0", 0.5),
            done("plain", 0.6),
        ];
        let g = repeat_groups(&rows);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].runs, ["cv_fold0", "cv_fold1", "cv_fold2"]);
        assert_eq!(g[0].varies, "fold");
        let (k, mean, sd) = &g[0].metrics[0];
        assert_eq!(k, "test_roc_auc");
        // Three float additions and a division: within a few ulps of the decimal result.
        assert!(
            (mean - 0.8).abs() < 1e-12 && (sd - 0.1).abs() < 1e-12,
            "{mean} {sd}"
        );
        let md = to_markdown(&rows, "out");
        assert!(
            md.contains("| cv_fold0, cv_fold1, cv_fold2 | ")
                && md.contains("| fold | 0.8 ± 0.1 (3) |"),
            "{md}"
        );
        assert_eq!(fold_of("a_fold12"), Some(("a", 12)));
        assert_eq!(fold_of("a_fold"), None);
        assert_eq!(fold_of("_fold1"), None);
    }

    /// Runs on two studies' own folders (both "ImageFolder") get a table each, with its own
    /// best; folds of one config stay together; the paper's datasets keep one table each.
    #[test]
    fn own_data_gets_a_table_per_data_location() {
        let own = crate::data::DATASETS
            .iter()
            .map(|s| s.facts.name())
            .find(|d| crate::data::datasets::is_own(*d))
            .unwrap();
        let done = |name: &str, data: &str, auc: f64| {
            let mut m = MetricValues::default();
            m.push("test_roc_auc", auc);
            let mut r = row(first_backbone(), HeadType::Linear, RunState::Done(m));
            r.id.model_name = name.into();
            r.id.dataset = Some(own);
            r.metric = Some(TargetMetric::RocAuc);
            let mut params = serde_json::json!({
                "training_params": {"model_name": name},
                "dataset_params": {"data_location": data}
            });
            if let Some((_, i)) = fold_of(name) {
                params["dataset_params"]["fold"] = i.into();
            }
            r.config = Some(RunConfig::from_params(&params));
            r
        };
        let mut rows = vec![
            done("knee_fold0", "studies/knee", 0.7),
            done("knee_fold1", "studies/knee", 0.8),
            done("eye", "studies/eye", 0.6),
        ];
        let keys: Vec<Section> = sections(&rows).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                (
                    Some(own),
                    Some("studies/knee".into()),
                    Some(TargetMetric::RocAuc)
                ),
                (
                    Some(own),
                    Some("studies/eye".into()),
                    Some(TargetMetric::RocAuc)
                ),
            ]
        );
        super::super::significance::mark_best(&mut rows);
        // "eye" is the best of its own table, not "not comparable" under knee's best.
        assert!(
            matches!(rows[2].mark, Some(Mark::Best)),
            "{:?}",
            rows[2].mark
        );
        let md = to_markdown(&rows, "out");
        for heading in [
            format!("## {own}: studies/knee (target metric: roc_auc)"),
            format!("## {own}: studies/eye (target metric: roc_auc)"),
        ] {
            assert!(md.contains(&heading), "{md}");
        }
        let g = repeat_groups(&rows);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].runs, ["knee_fold0", "knee_fold1"]);
        // A paper dataset's runs are one table whatever their data_location.
        let mut paper = row(first_backbone(), HeadType::Linear, RunState::Missing);
        paper.config = Some(RunConfig::from_params(
            &serde_json::json!({"dataset_params": {"data_location": "elsewhere"}}),
        ));
        assert_eq!(section_of(&paper).1, None);
    }

    #[test]
    fn missing_and_failed_runs_keep_their_rows() {
        let mut m = MetricValues::default();
        m.push("test_accuracy", 0.8);
        m.push("test_roc_auc", 0.912);
        let rows = vec![
            row(first_backbone(), HeadType::Linear, RunState::Done(m)),
            row(
                first_backbone(),
                HeadType::DeitBase,
                RunState::Failed("exit code 1".into()),
            ),
            row(last_backbone(), HeadType::Linear, RunState::Missing),
        ];
        let md = to_markdown(&rows, "out");
        assert!(md.contains("3 runs: 1 done, 1 failed, 0 incomplete, 1 missing"));
        let section = format!("## {} (target metric: roc_auc)", roc_auc_dataset());
        assert!(md.contains(&section), "{md}");
        assert!(md.contains("| **0.912** | best | 0.8 |"), "{md}");
        assert!(md.contains("failed (exit code 1)") && md.contains("| missing |"));
        let csv = to_csv(&rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].contains("target_metric,target_value,test_accuracy,test_roc_auc,freezing,")
        );
        assert!(
            lines[1].contains(",done,roc_auc,0.912,0.8,0.912"),
            "{}",
            lines[1]
        );
        assert!(lines[3].contains(",missing,roc_auc,,,"), "{}", lines[3]);
    }

    #[test]
    fn random_trunks_are_marked() {
        let mut m = MetricValues::default();
        m.push("test_roc_auc", 0.6);
        let mut rows = vec![
            row("dinov2_vitb14", HeadType::Linear, RunState::Done(m.clone())),
            row("dinov2_vitb14", HeadType::DeitBase, RunState::Done(m)),
            row("sam2_b", HeadType::Linear, RunState::Missing),
        ];
        rows[0].random_trunk = Some(true);
        rows[1].random_trunk = Some(false);
        let md = to_markdown(&rows, "out");
        assert!(
            md.contains("| dinov2_vitb14 (random trunk) | DINOv2 | linear |"),
            "{md}"
        );
        assert!(
            md.contains("| dinov2_vitb14 | DINOv2 | deit_base |"),
            "{md}"
        );
        let csv = to_csv(&rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[0].contains(",trunk_params,trunk_weights,status,"),
            "{csv}"
        );
        assert!(lines[1].contains(",random,done,"), "{csv}");
        assert!(lines[2].contains(",pretrained,done,"), "{csv}");
        assert!(lines[3].contains(",,missing,"), "{csv}");
    }

    #[test]
    fn numbers_are_compact() {
        for (x, want) in [
            (0.912, "0.912"),
            (0.8, "0.8"),
            (0.12346, "0.12346"),
            (12.34567, "12.34567"),
            (0.0, "0"),
            (-0.0, "0"),
            (0.1 + 0.2, "0.3"),
            (1e300, "1e300"),
            (-1.23456e-300, "-1.235e-300"),
            (2.5e-5, "2.5e-5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(fmt_number(x), want, "{x}");
        }
    }

    #[test]
    fn csv_numbers_keep_every_digit() {
        for (x, want) in [
            (0.912, "0.912"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e300, "1e300"),
            (-1.23456e-300, "-1.23456e-300"),
            (0.0, "0"),
            (-0.0, "0"),
        ] {
            assert_eq!(csv_value(Some(x)), want, "{x}");
            assert_eq!(csv_value(Some(x)).parse::<f64>().unwrap(), x);
        }
        assert_eq!(csv_value(Some(f64::NAN)), "NaN");
        assert_eq!(csv_value(None), "");
    }

    #[test]
    fn markdown_cells_are_escaped() {
        let mut m = MetricValues::default();
        m.push("test_roc_auc", 0.5);
        m.push("test_a|b\tc\nd", 1e300);
        let rows = vec![row(first_backbone(), HeadType::Linear, RunState::Done(m))];
        let md = to_markdown(&rows, "out");
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 3, "{md}");
        assert!(table[0].ends_with("| test_a\\|b c d |"), "{md}");
        assert!(table[2].ends_with("| **0.5** | best | 1e300 |"), "{md}");
        let unescaped_pipes = |l: &str| l.matches('|').count() - l.matches("\\|").count();
        assert_eq!(unescaped_pipes(table[0]), unescaped_pipes(table[2]));
    }
}
