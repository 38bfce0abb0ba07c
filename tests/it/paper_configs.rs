//! configs/paper/: the paper's whole matrix (4 datasets x 14 backbones x 2 heads), each file
//! loading and validating with medfm's config loader (no data access) with transform sizes the
//! trunk takes, unique model names, and every file equal to base.json except the keys
//! scripts/fixtures/gen_paper_configs.py sets.

use medfm::config::{self, CliOverrides, HeadType};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every dataset of the table is one of the paper's.
/// The paper's datasets: the table's rows but one's own (ImageFolder, CSV).
fn datasets() -> Vec<&'static str> {
    medfm::data::DATASETS
        .iter()
        .filter(|s| !s.facts.is_own())
        .map(|s| s.facts.id)
        .collect()
}
/// The paper's backbones (scripts/fixtures/gen_paper_configs.py): 14 of the registry's rows.
pub const BACKBONES: [&str; 14] = [
    "vit_base_patch16",
    "vit_large_patch16",
    "vit_huge_patch14",
    "dinov2_vitb14",
    "dinov2_vitl14",
    "aimv2-large-patch14-224",
    "aimv2-huge-patch14-224",
    "coca_ViT-B-32",
    "coca_ViT-L-14",
    "sam2_b",
    "sam2_l",
    "vmamba_s",
    "vmamba_b",
    "clip_vitb16",
];

fn paper_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper")
}

fn config_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(paper_dir()).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "json") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
}

fn set(v: &mut Value, path: &[&str], new: Value) {
    let mut cur = v;
    for key in &path[..path.len() - 1] {
        cur = cur.get_mut(*key).unwrap();
    }
    cur[path[path.len() - 1]] = new;
}

#[test]
fn every_paper_config_loads_and_the_matrix_is_complete() {
    let files = config_files();
    assert_eq!(
        files.len(),
        datasets().len() * BACKBONES.len() * 2,
        "files in configs/paper/*/"
    );
    let mut names = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for file in &files {
        let p = config::load(
            file,
            &[],
            &CliOverrides::default(),
            medfm::data::datasets::catalog(),
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        let dataset = p.dataset_params.dataset.as_str().to_string();
        let backbone = p.foundation_params.backbone_type.clone();
        medfm::models::registry::get(&backbone).unwrap();
        // The trunk takes what the transforms give (what `report --plan` checks for sweeps).
        let d = &p.dataset_params;
        let info = medfm::data::DatasetInfo::new(d.dataset, d.num_classes).unwrap();
        let trunk = medfm::models::classifier::trunk_input_rule(&p, info.channels).unwrap();
        medfm::train::check_transform_sizes(&p, &info, &trunk)
            .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        assert_eq!(
            file.parent().unwrap().file_name().unwrap().to_str(),
            Some(dataset.as_str())
        );
        let head = p.model_params.backbone_type;
        assert!(
            names.insert(p.training_params.model_name.clone()),
            "duplicate model_name in {}",
            file.display()
        );
        assert!(
            cells.insert((dataset, backbone, head.as_str())),
            "duplicate cell {}",
            file.display()
        );
    }
    for d in datasets() {
        for b in BACKBONES {
            for h in [HeadType::Linear, HeadType::DeitBase] {
                assert!(
                    cells.contains(&(d.to_string(), b.to_string(), h.as_str())),
                    "missing {d} {b} {}",
                    h.as_str()
                );
            }
        }
    }
}

#[test]
fn paper_configs_differ_from_base_only_in_the_matrix_keys() {
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(paper_dir().join("base.json")).unwrap())
            .unwrap();
    for file in config_files() {
        let got: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut want = base.clone();
        for path in [
            &["dataset_params", "dataset"][..],
            &["foundation_params", "backbone_type"],
            &["foundation_params", "img_size"],
            &["model_params", "backbone_type"],
            &["training_params", "model_name"],
        ] {
            let mut cur = &got;
            for key in path {
                cur = &cur[*key];
            }
            set(&mut want, path, cur.clone());
        }
        assert_eq!(
            got,
            want,
            "{} differs from base.json outside the matrix keys",
            file.display()
        );
    }
}
