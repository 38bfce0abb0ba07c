//! `results/<model_name>/predictions.csv`: one row per test item — `path`, then `label` (class
//! index, multiclass) or `label_0..label_{n-1}` (0/1, multi-label), then `prob_0..prob_{n-1}`
//! (softmax or sigmoid, as the model produced them in f32).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The true labels of the test items.
#[derive(Debug, Clone, Copy)]
pub enum Truth<'a> {
    /// One class index per item.
    Multiclass(&'a [i64]),
    /// 0/1 per item and label, row-major [n, n_labels].
    Multilabel(&'a [f64]),
}

/// Write the file atomically. `probs` is row-major [items, n_classes].
pub fn write_predictions(
    path: &Path,
    items: &[impl AsRef<Path>],
    truth: Truth<'_>,
    probs: &[f32],
    n_classes: usize,
) -> Result<()> {
    let n = items.len();
    if probs.len() != n * n_classes {
        bail!(
            "{} probabilities for {n} items x {n_classes} classes",
            probs.len()
        );
    }
    let mut header = vec!["path".to_string()];
    match truth {
        Truth::Multiclass(labels) => {
            if labels.len() != n {
                bail!("{} labels for {n} items", labels.len());
            }
            header.push("label".into());
        }
        Truth::Multilabel(targets) => {
            if targets.len() != n * n_classes {
                bail!(
                    "{} targets for {n} items x {n_classes} labels",
                    targets.len()
                );
            }
            header.extend((0..n_classes).map(|j| format!("label_{j}")));
        }
    }
    header.extend((0..n_classes).map(|j| format!("prob_{j}")));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for (i, item) in items.iter().enumerate() {
        let mut rec = vec![item.as_ref().display().to_string()];
        match truth {
            Truth::Multiclass(labels) => rec.push(labels[i].to_string()),
            Truth::Multilabel(targets) => rec.extend(
                targets[i * n_classes..(i + 1) * n_classes]
                    .iter()
                    // An unknown target (NaN) stays unknown: an empty cell.
                    .map(|&t| {
                        if t.is_nan() {
                            String::new()
                        } else {
                            format!("{}", t as i64)
                        }
                    }),
            ),
        }
        // f32 Display is the shortest text that reads back as the same f32.
        rec.extend(
            probs[i * n_classes..(i + 1) * n_classes]
                .iter()
                .map(|p| p.to_string()),
        );
        w.write_record(&rec)?;
    }
    let bytes = w.into_inner().context("cannot format predictions.csv")?;
    crate::util::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiclass_and_multilabel_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        write_predictions(
            &p,
            &["a.png", "b,c.png"],
            Truth::Multiclass(&[2, 0]),
            &[0.1, 0.2, 0.7, 0.5, 0.25, 0.25],
            3,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "path,label,prob_0,prob_1,prob_2\na.png,2,0.1,0.2,0.7\n\"b,c.png\",0,0.5,0.25,0.25\n"
        );
        write_predictions(
            &p,
            &["x.jpg"],
            Truth::Multilabel(&[1.0, 0.0]),
            &[0.9, 0.3],
            2,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "path,label_0,label_1,prob_0,prob_1\nx.jpg,1,0,0.9,0.3\n"
        );
        assert!(write_predictions(&p, &["x.jpg"], Truth::Multiclass(&[1]), &[0.9], 2).is_err());
    }
}
