//! One list of every problem a run would hit before its first step, computed without building
//! the model: what training checks before it starts, what `inspect` reports and what
//! `report --plan` (the sweep) refuses to queue. The three cannot disagree because they call
//! the same function.
//!
//! Checked: the run folder (free of an earlier run unless resuming or `--overwrite`, and
//! writable), the dataset's classes and channels, the trunk's registry row and options (image
//! size against the patch, `drop_cutoff`, ...), the weights files, the transforms' output sizes
//! against the trunk, the optimizer and schedules (for the real number of batches per epoch
//! when the data is known, else for any), that the train split gives a batch, and, once the
//! data is known, that `class_weights` and `balanced_sampler` fit it and that the checkpoint
//! `transfer_learning_params` names is there.

use super::attempt::{self, Target};
use super::RunOptions;
use crate::config::Params;
use crate::data::{DatasetInfo, Splits};
use anyhow::{bail, Result};
use std::path::Path;

/// Every problem found, one message each; empty when the run can start. `splits`, when the
/// data was read, gives the real batch count; `target` is what `attempt::decide` said.
pub fn problems(params: &Params, target: &Result<Target>, splits: Option<&Splits>) -> Vec<String> {
    let mut out = vec![];
    let trains = match target {
        Ok(t) => t.trains(),
        Err(e) => {
            out.push(format!("{e:#}"));
            true
        }
    };
    if trains {
        if let Err(e) = check_writable(Path::new(&params.training_params.save_dir)) {
            out.push(format!("training_params.save_dir: {e:#}"));
        }
    }
    let d = &params.dataset_params;
    let info = match splits {
        Some(s) => s.info.clone(),
        None => match DatasetInfo::new(d.dataset, d.num_classes) {
            Ok(info) => info,
            Err(e) => {
                out.push(format!("{e:#}"));
                return out;
            }
        },
    };
    let f = &params.foundation_params;
    match crate::models::classifier::trunk_input_rule(params, info.channels) {
        Ok(rule) => {
            if let Err(e) = super::check_transform_sizes(params, &info, &rule) {
                out.push(format!("{e:#}"));
            }
        }
        Err(e) => out.push(format!(
            "foundation_params: backbone_type \"{}\" with img_size {} cannot be built for {} \
             channel(s): {e:#}",
            f.backbone_type, f.img_size, info.channels
        )),
    }
    if let Err(e) = crate::models::classifier::check_weights(params) {
        out.push(format!("{e:#}"));
    }
    // With the data read (inspect), not in the sweep's plan: a run of the same sweep may
    // write the model this one starts from.
    // (A resumed run's weights come from its session: the file is not read again.)
    let resumes = matches!(target, Ok(Target::Resume));
    if trains && !resumes && splits.is_some() {
        if let Err(e) = super::session::pretrained_file(
            &params.transfer_learning_params,
            Path::new(&params.training_params.save_dir),
        ) {
            out.push(format!("{e:#}"));
        }
    }
    if let Err(e) = check_schedule(params, splits) {
        out.push(format!("{e:#}"));
    }
    if let Some(s) = splits {
        if let Err(e) = check_labels(params, s) {
            out.push(format!("{e:#}"));
        }
        // Params a resume cannot go on with, and classes other than the run's.
        if resumes {
            if let Err(e) = attempt::check_resume(params, &s.info) {
                out.push(format!("{e:#}"));
            }
        }
    }
    out
}

/// [`problems`] for the command about to run: the target when there are none, else one error
/// listing them all. Writes nothing.
pub fn check(params: &Params, opts: &RunOptions) -> Result<Target> {
    let target = attempt::decide(params, opts);
    let found = problems(params, &target, None);
    match found.as_slice() {
        [] => target,
        [one] => bail!("{one}"),
        all => bail!(
            "{} problems stop this run before it starts:\n  {}",
            all.len(),
            all.join("\n  ")
        ),
    }
}

/// The optimizer and schedules for the train split's batches per epoch (known from `splits`),
/// or, without data, for some number of batches: a schedule is refused only when it fails with
/// one batch per epoch and with 2^20 (far more than the largest dataset gives), since each
/// failure of `Mixer::new` that some size avoids (too few steps for OneCycleLR's phases, a fixed
/// warm-up longer than the run) goes away as the steps grow.
fn check_schedule(params: &Params, splits: Option<&Splits>) -> Result<()> {
    use super::trainer::check_schedule as at;
    let Some(splits) = splits else {
        return match at(params, 1) {
            Err(e) if at(params, 1 << 20).is_err() => Err(e.context(
                "the schedules cannot be built for any number of training batches (numbers shown \
                 for one batch per epoch)",
            )),
            _ => Ok(()),
        };
    };
    let l = &params.dataloader_params.trainloader;
    let n = splits.train.len();
    let batches = crate::data::loader::batches_per_epoch(n, l.batch_size as usize, l.drop_last);
    if batches == 0 {
        bail!("{}", no_batch(n, l.batch_size, l.drop_last));
    }
    at(params, batches)
}

/// The train split's batch count and schedules, once the data is read: what training checks
/// before it writes anything (the resolved params, the run folder), so that a split smaller
/// than one batch is refused as `inspect` refuses it, not after the run took the folder.
pub fn check_data(params: &Params, splits: &Splits) -> Result<()> {
    check_schedule(params, Some(splits))?;
    check_labels(params, splits)
}

/// What the loss and the train loader refuse on this data: `class_weights` that do not fit its
/// classes (or `"balanced"` without an image or positive of each), and `balanced_sampler` on
/// multi-label data.
fn check_labels(params: &Params, splits: &Splits) -> Result<()> {
    let info = &splits.info;
    super::loss::class_weights(params, info.task, &info.label_names, &splits.train)?;
    if params.dataloader_params.trainloader.balanced_sampler {
        crate::data::loader::balanced_weights(&splits.train, info)?;
    }
    Ok(())
}

/// Why a train split of `n` images gives no batch, and the two ways out.
pub fn no_batch(n: usize, batch_size: i64, drop_last: bool) -> String {
    format!(
        "the train split gives no batch ({n} images; batch_size {batch_size}, drop_last \
         {drop_last}): lower dataloader_params.trainloader.batch_size (--batch_size) to at most \
         {n}{}",
        if drop_last {
            ", or set dataloader_params.trainloader.drop_last to false"
        } else {
            ""
        }
    )
}

/// Whether the run's outputs can be written under `save_dir`: it is a folder (or can be made
/// one) and the nearest existing folder on its path is writable.
fn check_writable(save_dir: &Path) -> Result<()> {
    let mut p = save_dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => bail!(
                "{} is not a folder, so the run's outputs cannot be written under {}",
                p.display(),
                save_dir.display()
            ),
            Err(_) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                _ => {
                    p = Path::new(".");
                    break;
                }
            },
        }
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        bail!(
            "{} is not writable, so the run's outputs cannot be written under {}",
            p.display(),
            save_dir.display()
        );
    }
    Ok(())
}
