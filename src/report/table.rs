//! The cross-run results table of `medfm report`: one row per (dataset, backbone, head) with
//! its state, trunk parameter count, the dataset's target metric and every test metric, as
//! markdown (one section per dataset) and CSV. Missing and failed runs keep their rows.

use super::runs::{RunId, RunState};
use crate::config::DatasetName;
use crate::datasets::TargetMetric;
use crate::models::registry;

/// The metric that picks the best model and that the paper reports, per dataset (from its
/// row of `crate::datasets::DATASETS`).
pub fn target_metric(dataset: DatasetName) -> &'static str {
    dataset.facts().target_metric.as_str()
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
}

impl Row {
    pub fn new(id: RunId, state: RunState) -> Row {
        let spec = id.backbone.as_deref().and_then(|b| registry::get(b).ok());
        let metric = id.dataset.map(|d| d.facts().target_metric);
        let mut row = Row {
            family: spec.map(|s| s.family().as_str()),
            params: spec.map(|s| s.param_count).filter(|&n| n > 0),
            id,
            state,
            metric: None,
            target: None,
            random_trunk: None,
        };
        row.set_metric(metric);
        row
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
    /// not those of the pretrained model).
    fn backbone_cell(&self) -> String {
        let name = self.id.backbone.as_deref().unwrap_or(&self.id.model_name);
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

/// All runs as CSV (one header; empty cells where a run has no value).
pub fn to_csv(rows: &[Row]) -> anyhow::Result<String> {
    let cols = metric_columns(rows.iter());
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
    w.write_record(&header)?;
    for r in rows {
        let mut rec = vec![
            r.id.dataset.map_or("", |d| d.as_str()).to_string(),
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
        let m = match &r.state {
            RunState::Done(m) => Some(m),
            _ => None,
        };
        rec.extend(cols.iter().map(|c| csv_value(m.and_then(|m| m.get(c)))));
        w.write_record(&rec)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Markdown: a summary line, then one table per dataset (its own metric columns, target
/// metric first and in bold for the best finished run).
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
    // One table per dataset and target metric (runs of one's own data may pick different
    // metrics; a best value is only marked among runs that share one).
    type Key = (Option<DatasetName>, Option<TargetMetric>);
    let mut groups: Vec<(Key, Vec<&Row>)> = Vec::new();
    for r in rows {
        let key = (r.id.dataset, r.metric);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    for ((dataset, _), group) in groups {
        let target = dataset
            .and(group.iter().find_map(|r| r.metric))
            .map(|m| m.as_str());
        let target_key = target.map(|t| format!("test_{t}"));
        let cols: Vec<String> = metric_columns(group.iter().copied())
            .into_iter()
            .filter(|c| Some(c) != target_key.as_ref())
            .collect();
        let best = group
            .iter()
            .filter_map(|r| r.target)
            .filter(|v| !v.is_nan())
            .fold(f64::NAN, f64::max);
        match (dataset, target) {
            (Some(d), Some(t)) => md.push_str(&format!("\n## {d} (target metric: {t})\n\n")),
            _ => md.push_str("\n## Other runs (no resolved params)\n\n"),
        }
        let mut header: Vec<String> = ["backbone", "family", "head", "trunk params", "status"]
            .map(String::from)
            .into();
        header.push(target_key.clone().unwrap_or_else(|| "target".into()));
        header.extend(cols.iter().map(|c| md_cell(c)));
        md.push_str(&format!("| {} |\n", header.join(" | ")));
        md.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
        for r in group {
            let m = match &r.state {
                RunState::Done(m) => Some(m),
                _ => None,
            };
            let target = match r.target {
                Some(v) if v == best => format!("**{}**", fmt_number(v)),
                v => fmt_value(v),
            };
            let mut cells = vec![
                md_cell(&r.backbone_cell()),
                r.family.unwrap_or("?").to_string(),
                head_name(&r.id).to_string(),
                fmt_params(r.params),
                md_cell(&r.status()),
                target,
            ];
            cells.extend(cols.iter().map(|c| fmt_value(m.and_then(|m| m.get(c)))));
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }
    let folds = fold_groups(rows);
    if !folds.is_empty() {
        md.push_str("\n## Cross-validation (mean ± sd over the finished folds; sd with n - 1)\n\n");
        for g in &folds {
            md.push_str(&format!(
                "- {} {} ({} folds: {}): {}\n",
                g.dataset.map_or("?", |d| d.as_str()),
                md_cell(&g.base),
                g.n,
                g.folds.join(", "),
                g.metrics
                    .iter()
                    .map(|(k, mean, sd)| format!("{k} {} ± {}", fmt_number(*mean), fmt_number(*sd)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    md
}

/// The finished folds of one config: runs named `<base>_fold<i>` (`--fold i`) of one dataset,
/// backbone and head.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldGroup {
    pub dataset: Option<DatasetName>,
    pub base: String,
    pub n: usize,
    /// The folds' run names, in fold order.
    pub folds: Vec<String>,
    /// (metric, mean, sample sd) for every test metric all folds have.
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

/// Groups of at least two finished folds, in order of first appearance.
pub fn fold_groups(rows: &[Row]) -> Vec<FoldGroup> {
    /// (dataset, base name, the folds with their index)
    type Group<'a> = (Option<DatasetName>, String, Vec<(u32, &'a Row)>);
    let mut groups: Vec<Group> = vec![];
    for r in rows {
        let (Some((base, i)), RunState::Done(_)) = (fold_of(&r.id.model_name), &r.state) else {
            continue;
        };
        let key = |g: &Group| {
            g.0 == r.id.dataset
                && g.1 == base
                && g.2
                    .first()
                    .is_some_and(|(_, f)| f.id.backbone == r.id.backbone && f.id.head == r.id.head)
        };
        match groups.iter_mut().find(|g| key(g)) {
            Some(g) => g.2.push((i, r)),
            None => groups.push((r.id.dataset, base.to_string(), vec![(i, r)])),
        }
    }
    groups
        .into_iter()
        .filter(|g| g.2.len() >= 2)
        .map(|(dataset, base, mut runs)| {
            runs.sort_by_key(|(i, _)| *i);
            let rows: Vec<&Row> = runs.iter().map(|(_, r)| *r).collect();
            let metrics = metric_columns(rows.iter().copied())
                .into_iter()
                .filter_map(|c| {
                    let v: Vec<f64> = rows
                        .iter()
                        .filter_map(|r| match &r.state {
                            RunState::Done(m) => m.get(&c),
                            _ => None,
                        })
                        .collect();
                    (v.len() == rows.len()).then(|| {
                        let (mean, sd) = mean_sd(&v);
                        (c, mean, sd)
                    })
                })
                .collect();
            FoldGroup {
                dataset,
                base,
                n: rows.len(),
                folds: rows.iter().map(|r| r.id.model_name.clone()).collect(),
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
        DatasetName::all()
            .find(|d| d.facts().target_metric == crate::datasets::TargetMetric::RocAuc)
            .unwrap()
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
        let g = fold_groups(&rows);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].base, "cv");
        assert_eq!(g[0].folds, ["cv_fold0", "cv_fold1", "cv_fold2"]);
        let (k, mean, sd) = &g[0].metrics[0];
        assert_eq!(k, "test_roc_auc");
        // Three float additions and a division: within a few ulps of the decimal result.
        assert!(
            (mean - 0.8).abs() < 1e-12 && (sd - 0.1).abs() < 1e-12,
            "{mean} {sd}"
        );
        assert!(to_markdown(&rows, "out")
            .contains("cv (3 folds: cv_fold0, cv_fold1, cv_fold2): test_roc_auc 0.8 ± 0.1"));
        assert_eq!(fold_of("a_fold12"), Some(("a", 12)));
        assert_eq!(fold_of("a_fold"), None);
        assert_eq!(fold_of("_fold1"), None);
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
        assert!(md.contains("| **0.912** | 0.8 |"), "{md}");
        assert!(md.contains("failed (exit code 1)") && md.contains("| missing |"));
        let csv = to_csv(&rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].ends_with("target_metric,target_value,test_accuracy,test_roc_auc"));
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
        assert!(table[2].ends_with("| **0.5** | 1e300 |"), "{md}");
        let unescaped_pipes = |l: &str| l.matches('|').count() - l.matches("\\|").count();
        assert_eq!(unescaped_pipes(table[0]), unescaped_pipes(table[2]));
    }
}
