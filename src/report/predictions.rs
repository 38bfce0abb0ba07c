//! `results/<model_name>/predictions.csv`: one row per test item — `path`, then `label` (the
//! class name, multiclass) or `label_<name>` per label (0/1, multi-label), then `prob_<name>`
//! per class (softmax or sigmoid, as the model produced them in f32). `medfm predict` writes the
//! same `prob_<name>` columns.

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

/// `prob_<name>` for each class name, in order.
pub fn prob_columns(names: &[String]) -> Vec<String> {
    names.iter().map(|n| format!("prob_{n}")).collect()
}

/// `label_<name>` for each label name, in order (the truth columns of a multi-label run).
pub fn label_columns(names: &[String]) -> Vec<String> {
    names.iter().map(|n| format!("label_{n}")).collect()
}

/// Write the file atomically. `probs` is row-major [items, classes]; `names` names the classes
/// (or labels) in output order.
pub fn write_predictions(
    path: &Path,
    items: &[impl AsRef<Path>],
    truth: Truth<'_>,
    probs: &[f32],
    names: &[String],
) -> Result<()> {
    let n = items.len();
    let n_classes = names.len();
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
            if let Some(&c) = labels.iter().find(|&&c| c < 0 || c as usize >= n_classes) {
                bail!("class index {c} for {n_classes} classes");
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
            header.extend(label_columns(names));
        }
    }
    header.extend(prob_columns(names));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for (i, item) in items.iter().enumerate() {
        let mut rec = vec![item.as_ref().display().to_string()];
        match truth {
            Truth::Multiclass(labels) => rec.push(names[labels[i] as usize].clone()),
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

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn multiclass_and_multilabel_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        write_predictions(
            &p,
            &["a.png", "b,c.png"],
            Truth::Multiclass(&[2, 0]),
            &[0.1, 0.2, 0.7, 0.5, 0.25, 0.25],
            &names(&["No DR", "Mild", "Severe"]),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "path,label,prob_No DR,prob_Mild,prob_Severe\na.png,Severe,0.1,0.2,0.7\n\"b,c.png\",No DR,0.5,0.25,0.25\n"
        );
        write_predictions(
            &p,
            &["x.jpg"],
            Truth::Multilabel(&[1.0, 0.0]),
            &[0.9, 0.3],
            &names(&["Edema", "Pleural Effusion"]),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "path,label_Edema,label_Pleural Effusion,prob_Edema,prob_Pleural Effusion\nx.jpg,1,0,0.9,0.3\n"
        );
        let two = names(&["a", "b"]);
        assert!(write_predictions(&p, &["x.jpg"], Truth::Multiclass(&[1]), &[0.9], &two).is_err());
        assert!(
            write_predictions(&p, &["x.jpg"], Truth::Multiclass(&[2]), &[0.9, 0.1], &two).is_err()
        );
    }
}
