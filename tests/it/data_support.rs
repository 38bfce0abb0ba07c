//! Helpers shared by the data tests: params for a dataset folder, synthetic datasets.

use medfm::config::{self, DatasetName, Params};
use medfm::data::synth::{self, SynthSpec};
use std::path::Path;

/// The reference params file with the dataset, its location and save_dir replaced. For one's
/// own datasets `data_location` is where [`synth`] wrote (`synth::data_location` maps it).
pub fn params(
    dataset: DatasetName,
    data_location: &Path,
    save_dir: &Path,
    extra: &[&str],
) -> Params {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let text = std::fs::read_to_string(&path).expect("configs/reference.json");
    let mut sets = vec![
        format!("dataset_params.dataset={dataset}"),
        format!(
            "dataset_params.data_location={}",
            synth::data_location(dataset, data_location).display()
        ),
        format!("training_params.save_dir={}", save_dir.display()),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    config::parse_with_sets(&text, &path, &sets).expect("params")
}

/// A synthetic dataset under `dir/<Name>/`.
pub fn synth(dataset: DatasetName, dir: &Path, n: usize) {
    let spec = SynthSpec {
        dataset,
        n,
        seed: 7,
        size: None,
    };
    synth::generate(&spec, dir).expect("synth");
}
