//! `medfm probe --grid`: which configurations the sweep tries.
//!
//! `KEY=V1,V2,...` entries separated by `;`, each replacing its default:
//! `lr` (linear heads' base learning rates, or `none`), `blocks` (1 or 4: the class tokens of
//! the last 1 or 4 blocks, concatenated), `pool` (`cls` or `cls+avgpool`: also the mean of the
//! last block's patch tokens), `C` (logistic regression's inverse L2 strength, or `none`),
//! `fraction` (label fractions of the train split, in (0, 1]) and `seeds` (the subsets' and
//! heads' seeds). Example: `lr=1e-4,1e-3;blocks=1,4;pool=cls,cls+avgpool;C=0.1,1,10`.

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// How the features of a configuration are pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pool {
    #[serde(rename = "cls")]
    Cls,
    #[serde(rename = "cls+avgpool")]
    ClsAvgpool,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Cls => "cls",
            Pool::ClsAvgpool => "cls+avgpool",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    pub lr: Vec<f64>,
    pub blocks: Vec<usize>,
    pub pool: Vec<Pool>,
    #[serde(rename = "C")]
    pub c: Vec<f64>,
    pub fraction: Vec<f64>,
    pub seeds: Vec<u64>,
}

/// DINOv2's learning rates (`dinov2/eval/linear.py`, `--learning-rates` default).
pub const DINOV2_LRS: [f64; 13] = [
    1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1,
];

impl Default for Grid {
    fn default() -> Self {
        Grid {
            lr: DINOV2_LRS.to_vec(),
            blocks: vec![1, 4],
            pool: vec![Pool::Cls, Pool::ClsAvgpool],
            c: vec![1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0],
            fraction: vec![0.01, 0.1, 0.25, 1.0],
            seeds: vec![0, 1, 2],
        }
    }
}

fn numbers(key: &str, values: &[&str]) -> Result<Vec<f64>> {
    values
        .iter()
        .map(|v| {
            let x: f64 = v
                .parse()
                .with_context(|| format!("--grid {key}: \"{v}\" is not a number"))?;
            if !(x > 0.0 && x.is_finite()) {
                bail!("--grid {key}: {v} must be a positive number");
            }
            Ok(x)
        })
        .collect()
}

impl Grid {
    /// Parse `--grid` (see the module documentation); keys not given keep their defaults.
    pub fn parse(text: &str) -> Result<Grid> {
        let mut g = Grid::default();
        let mut seen = vec![];
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((key, list)) = entry.split_once('=') else {
                bail!("--grid: \"{entry}\" is not KEY=V1,V2,... (keys: lr, blocks, pool, C, fraction, seeds)");
            };
            let key = key.trim();
            if seen.contains(&key.to_string()) {
                bail!("--grid: {key} is given twice");
            }
            seen.push(key.to_string());
            let values: Vec<&str> = list.split(',').map(str::trim).collect();
            if values.iter().any(|v| v.is_empty()) {
                bail!("--grid {key}: an empty value in \"{list}\"");
            }
            let none = values == ["none"];
            match key {
                "lr" => g.lr = if none { vec![] } else { numbers(key, &values)? },
                "C" => g.c = if none { vec![] } else { numbers(key, &values)? },
                "blocks" => {
                    g.blocks = values
                        .iter()
                        .map(|v| match *v {
                            "1" => Ok(1),
                            "4" => Ok(4),
                            _ => bail!("--grid blocks: {v}; expected 1 or 4 (DINOv2's protocol)"),
                        })
                        .collect::<Result<_>>()?
                }
                "pool" => {
                    g.pool = values
                        .iter()
                        .map(|v| match *v {
                            "cls" => Ok(Pool::Cls),
                            "cls+avgpool" => Ok(Pool::ClsAvgpool),
                            _ => bail!("--grid pool: {v}; expected cls or cls+avgpool"),
                        })
                        .collect::<Result<_>>()?
                }
                "fraction" => {
                    g.fraction = numbers(key, &values)?;
                    if let Some(f) = g.fraction.iter().find(|f| **f > 1.0) {
                        bail!("--grid fraction: {f} is above 1 (a fraction of the train split)");
                    }
                }
                "seeds" => {
                    g.seeds = values
                        .iter()
                        .map(|v| {
                            v.parse::<u64>().with_context(|| {
                                format!("--grid seeds: \"{v}\" is not a non-negative integer")
                            })
                        })
                        .collect::<Result<_>>()?
                }
                other => bail!(
                    "--grid: unknown key \"{other}\"{}; the keys are lr, blocks, pool, C, fraction, seeds",
                    crate::config::did_you_mean(other, &["lr", "blocks", "pool", "C", "fraction", "seeds"])
                ),
            }
        }
        if g.lr.is_empty() && g.c.is_empty() {
            bail!("--grid: lr=none and C=none leave nothing to train");
        }
        for (key, empty) in [
            ("blocks", g.blocks.is_empty()),
            ("pool", g.pool.is_empty()),
            ("fraction", g.fraction.is_empty()),
            ("seeds", g.seeds.is_empty()),
        ] {
            if empty {
                bail!("--grid {key}: needs at least one value");
            }
        }
        dedup(&mut g.blocks);
        dedup(&mut g.pool);
        dedup(&mut g.seeds);
        Ok(g)
    }
}

fn dedup<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut out: Vec<T> = vec![];
    for x in v.drain(..) {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_replaces_the_keys_it_names() {
        let g = Grid::parse("lr=1e-4,1e-3; blocks=1,4;pool=cls,cls+avgpool;C=0.1,1,10").unwrap();
        assert_eq!(g.lr, [1e-4, 1e-3]);
        assert_eq!(g.blocks, [1, 4]);
        assert_eq!(g.pool, [Pool::Cls, Pool::ClsAvgpool]);
        assert_eq!(g.c, [0.1, 1.0, 10.0]);
        assert_eq!(g.fraction, Grid::default().fraction);
        let g = Grid::parse("C=none;fraction=0.5,1;seeds=3").unwrap();
        assert!(g.c.is_empty() && g.lr == DINOV2_LRS);
        assert_eq!((g.fraction, g.seeds), (vec![0.5, 1.0], vec![3]));
        for (bad, says) in [
            ("lr=x", "not a number"),
            ("blocks=2", "expected 1 or 4"),
            ("pool=mean", "expected cls"),
            ("fraction=1.5", "above 1"),
            ("lr=none;C=none", "nothing to train"),
            ("cc=1", "unknown key"),
            ("lr=1;lr=2", "twice"),
            ("lr", "KEY=V1"),
        ] {
            let e = Grid::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
