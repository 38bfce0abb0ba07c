//! The file `medfm export` writes and `medfm predict --model` reads: one safetensors file
//! holding every tensor of a classifier under its var-store name (`trunk.<name in the
//! trunk's official checkpoint>`, `head.<...>`), with everything else a prediction needs as
//! JSON strings in the header's metadata (the key layout is documented in docs/outputs.md,
//! "Exported models"):
//!
//! - `format`: `medfm-model-v1`; `medfm_version`;
//! - `model`: [`ModelSpec`] (backbone name and configuration, head, image size, channels...);
//! - `preprocessing`: [`Preprocessing`] (the test transforms, mean, std, channels...);
//! - `classes`: [`Classes`] (task and class names);
//! - `source`: [`Source`] (run, dataset, checkpoint, iteration);
//! - `params`: the run's resolved params (for the record; predict does not read them);
//! - `crc32`: each tensor's CRC32 (as in checkpoints), `meta_crc32`: the CRC32 of the other
//!   metadata, both checked on reading.

use super::{Classes, ModelCard, ModelSpec, Preprocessing, Source};
use crate::config::Params;
use crate::train::checkpoint;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::SafeTensors;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

/// The `format` of an exported model.
pub const FORMAT: &str = "medfm-model-v1";
/// The training checkpoints' `format` (`train::checkpoint`), named in a refusal.
const CHECKPOINT_FORMAT: &str = "medfm-checkpoint-v1";
const META_CRC_KEY: &str = "meta_crc32";
/// Keys the checksum of the metadata does not cover: itself and the tensors' checksums
/// (which the tensors' bytes check).
const UNCOVERED: [&str; 2] = ["crc32", META_CRC_KEY];

/// CRC32 of the metadata entries other than [`UNCOVERED`], in key order, each as
/// `key NUL value NUL`.
fn meta_crc(meta: &BTreeMap<String, String>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (k, v) in meta {
        if UNCOVERED.contains(&k.as_str()) {
            continue;
        }
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    h.finalize()
}

/// Whether `path` is a file [`write`] wrote (its header names [`FORMAT`]); reads the header
/// only.
pub fn is_export(path: &Path) -> bool {
    crate::weights::safetensors_header(path)
        .is_some_and(|h| h.metadata.iter().any(|(k, v)| k == "format" && v == FORMAT))
}

/// Write `tensors` (every variable of the model, by var-store name) and `card` to `path`,
/// atomically; `params` are the run's, kept for the record.
pub fn write(
    path: &Path,
    card: &ModelCard,
    params: Option<&Params>,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("medfm_version".into(), card.medfm_version.clone());
    meta.insert("model".into(), serde_json::to_string(&card.model)?);
    meta.insert(
        "preprocessing".into(),
        serde_json::to_string(&card.preprocessing)?,
    );
    meta.insert("classes".into(), serde_json::to_string(&card.classes)?);
    meta.insert("source".into(), serde_json::to_string(&card.source)?);
    if let Some(p) = params {
        meta.insert("params".into(), serde_json::to_string(p)?);
    }
    let crc = format!("{:08x}", meta_crc(&meta));
    meta.insert(META_CRC_KEY.into(), crc);
    let meta: Vec<(&str, String)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    checkpoint::write_file(path, tensors, &meta)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Read a file written by [`write`]: the card and every tensor (on the CPU), checked against
/// their checksums. A file that is not one (a training checkpoint, a published trunk
/// checkpoint, any other safetensors file) is refused with what it is and what to do.
pub fn read(path: &Path) -> Result<(ModelCard, Vec<(String, Tensor)>)> {
    crate::util::require_regular_file(path)?;
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the model file {}", path.display()))?;
    let not_a_model = |what: &str| {
        anyhow!(
            "{} is not a model file written by `medfm export`: {what}. Export a trained run with \
             `medfm export --params_path <save_dir>/configs/<name>/params.json --output \
             model.safetensors`, or predict with the run itself (--params_path)",
            path.display()
        )
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        use safetensors::SafeTensorError as E;
        not_a_model(&format!(
            "it is not a safetensors file ({})",
            match e {
                E::MetadataIncompleteBuffer => {
                    "its size does not match its header: truncated?".to_string()
                }
                E::HeaderTooSmall | E::InvalidHeaderLength => format!(
                    "it ends before its header does ({} bytes): empty or truncated?",
                    bytes.len()
                ),
                E::HeaderTooLarge | E::InvalidHeader | E::InvalidHeaderStart => {
                    "it does not start with a safetensors header".to_string()
                }
                e => format!("{e:?}"),
            }
        ))
    })?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| not_a_model("it has no medfm metadata (no header __metadata__)"))?;
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(CHECKPOINT_FORMAT) => bail!(
            "{} is a medfm training checkpoint, not an exported model: predict with its run \
             (--params_path <save_dir>/configs/<name>/params.json --checkpoint {}), or export \
             the run (`medfm export --params_path ... --checkpoint {} --output model.safetensors`)",
            path.display(),
            path.display(),
            path.display()
        ),
        Some(other) => bail!(
            "{}: unknown model format \"{other}\" (this medfm {} reads \"{FORMAT}\"; the file \
             says it was made by medfm {})",
            path.display(),
            env!("CARGO_PKG_VERSION"),
            meta.get("medfm_version").map_or("?", String::as_str)
        ),
        None => {
            return Err(not_a_model(
                "it has no medfm metadata (no \"format\" key in its header's __metadata__)",
            ))
        }
    }
    let corrupt = |what: String| anyhow!("{} is corrupt: {what}", path.display());
    let sorted: BTreeMap<String, String> =
        meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let stored = meta
        .get(META_CRC_KEY)
        .ok_or_else(|| corrupt(format!("its metadata has no \"{META_CRC_KEY}\"")))?;
    let computed = format!("{:08x}", meta_crc(&sorted));
    if *stored != computed {
        return Err(corrupt(format!(
            "its metadata fails its checksum (stored crc32 {stored}, computed {computed})"
        )));
    }
    let card = ModelCard {
        medfm_version: meta
            .get("medfm_version")
            .cloned()
            .ok_or_else(|| corrupt("its metadata has no \"medfm_version\"".into()))?,
        model: field::<ModelSpec>(meta, "model", path)?,
        preprocessing: field::<Preprocessing>(meta, "preprocessing", path)?,
        classes: field::<Classes>(meta, "classes", path)?,
        source: field::<Source>(meta, "source", path)?,
    };
    let (_, tensors) = checkpoint::read_file(&bytes, path, corrupt)?;
    Ok((card, tensors))
}

/// The JSON metadata value `key`, parsed.
fn field<T: DeserializeOwned>(meta: &HashMap<String, String>, key: &str, path: &Path) -> Result<T> {
    let text = meta
        .get(key)
        .ok_or_else(|| anyhow!("{}: its metadata has no \"{key}\"", path.display()))?;
    serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "{}: metadata \"{key}\" is not what this medfm ({}) expects: {e}",
            path.display(),
            env!("CARGO_PKG_VERSION")
        )
    })
}
