//! `medfm features --backbone NAME [--weights W] --input IN --output OUT [--in-chans C]
//! [--device cpu|cuda|cuda:N]`: the exact tensors that feed the heads, for parity checks.
//!
//! IN holds "pixels" f32 [B, C, H, W] (already normalised); OUT gets "pooled" f32 [B, D] and
//! "tokens" f32 [B, N, D'] (docs/reference.md, What feeds the heads). The trunk is built for
//! the input's size (H = W; DINOv2 also takes H != W) and channels (C = 1: the first convolution
//! from the RGB kernel's first channel, as in training), and randomly initialised without
//! `--weights`. OUT is written atomically: a failed run leaves no file; an existing OUT is
//! replaced only when it is an earlier output of this command (or empty).

use crate::models::classifier::build_trunk;
use crate::models::registry::{self, BuildOptions};
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Images per forward pass (bounds memory for large inputs).
const CHUNK: i64 = 16;

/// What `--input` must be, for its help and its errors.
const INPUT_FORMAT: &str = "a safetensors file holding a tensor \"pixels\": f32 [B, C, H, W], \
     already normalised (the transforms' output; e.g. torch: \
     safetensors.torch.save_file({\"pixels\": x.float().contiguous()}, \"in.safetensors\"))";

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The trunk, by its registry name (e.g. dinov2_vitb14); `medfm backbones` lists them.
    #[arg(long, value_name = "NAME")]
    pub backbone: String,
    /// Official checkpoint; without it the trunk is randomly initialised (and says so).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// A safetensors file holding "pixels" f32 [B, C, H, W], already normalised (not an
    /// image file).
    #[arg(long)]
    pub input: PathBuf,
    /// safetensors to write: "pooled" f32 [B, D], "tokens" f32 [B, N, D].
    #[arg(long)]
    pub output: PathBuf,
    /// Input channels the trunk is built for (1: grayscale first convolution); default: the
    /// channel count of "pixels".
    #[arg(long = "in-chans")]
    pub in_chans: Option<i64>,
    /// Where the trunk runs: cpu, cuda (the first GPU) or cuda:N.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
    pub device: String,
}

pub fn run(args: &Args) -> Result<()> {
    // Before anything is computed: OUT replaces only an earlier output of this command, never
    // another file (its own --input, a checkpoint, a predict CSV).
    super::predict::check_output(
        &args.output,
        "a features file written by medfm features",
        is_features_file,
    )?;
    let device = parse_device(&args.device)?;
    let row = registry::get(&args.backbone)?;
    let pixels = read_pixels(&args.input, args.in_chans)?;
    let size = pixels.size();
    let opts = BuildOptions::new(size[2], size[1]);
    if args.weights.is_none() {
        crate::messages::notice(format_args!(
            "no --weights: the {} trunk is randomly initialised, so these features come from \
             random weights (pass --weights with its checkpoint for the pretrained features)",
            row.name
        ));
    }
    let (_vs, trunk) = build_trunk(row, &opts, args.weights.as_deref(), device)?;
    trunk
        .check_input(&pixels)
        .with_context(|| format!("{}: \"pixels\" of shape {size:?}", args.input.display()))?;
    let (mut pooled, mut tokens) = (vec![], vec![]);
    tch::no_grad(|| {
        for chunk in pixels.split(CHUNK, 0) {
            let f = trunk.forward(&chunk.to_device(device), false);
            pooled.push(f.pooled.to_device(Device::Cpu).to_kind(Kind::Float));
            tokens.push(f.tokens.to_device(Device::Cpu).to_kind(Kind::Float));
        }
    });
    let pooled = Tensor::cat(&pooled, 0).contiguous();
    let tokens = Tensor::cat(&tokens, 0).contiguous();
    write_safetensors_atomic(&args.output, &[("pooled", &pooled), ("tokens", &tokens)])?;
    crate::messages::info(format_args!(
        "{}: pooled {:?}, tokens {:?} -> {}",
        row.name,
        pooled.size(),
        tokens.size(),
        args.output.display()
    ));
    Ok(())
}

/// "cpu", "cuda" (= cuda:0) or "cuda:N".
pub fn parse_device(s: &str) -> Result<Device> {
    let idx = match s {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => bail!(
                "--device: expected cpu, cuda (the first GPU) or cuda:N (N = 0, 1, ...), got \"{s}\""
            ),
        },
    };
    if !tch::Cuda::is_available() {
        bail!("--device {s}: CUDA is not available on this machine (use --device cpu)");
    }
    let count = tch::Cuda::device_count() as usize;
    if idx >= count {
        bail!("--device {s}: only {count} CUDA device(s) are visible");
    }
    Ok(Device::Cuda(idx))
}

/// The "pixels" tensor of a safetensors file, checked: f32, [B, C, H, W], C = `in_chans` when
/// given.
fn read_pixels(path: &Path, in_chans: Option<i64>) -> Result<Tensor> {
    let bytes =
        std::fs::read(path).with_context(|| format!("--input: cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        let what = match image::guess_format(&bytes) {
            Ok(f) => format!("a {} image", format!("{f:?}").to_uppercase()),
            Err(_) => format!("not a safetensors file ({})", safetensors_problem(&e)),
        };
        anyhow::anyhow!(
            "--input {} is {what}; it must be {INPUT_FORMAT}",
            path.display()
        )
    })?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let t = Tensor::try_from(view)
            .with_context(|| format!("{}: tensor \"{name}\"", path.display()))?;
        tensors.push((name, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let Some((_, pixels)) = tensors.iter().find(|(n, _)| n == "pixels") else {
        bail!(
            "{}: no tensor named \"pixels\" (found: {}); expected f32 [B, C, H, W]",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let size = pixels.size();
    if pixels.kind() != Kind::Float {
        bail!(
            "{}: \"pixels\" is {:?}, expected f32",
            path.display(),
            pixels.kind()
        );
    }
    if size.len() != 4 || size[0] == 0 {
        bail!(
            "{}: \"pixels\" has shape {size:?}, expected [B, C, H, W] with B > 0",
            path.display()
        );
    }
    if let Some(c) = in_chans.filter(|&c| c != size[1]) {
        bail!(
            "{}: \"pixels\" has {} channel(s) but --in-chans is {c}",
            path.display(),
            size[1]
        );
    }
    Ok(pixels.shallow_clone())
}

/// Whether `path` is a safetensors file holding exactly the tensors this command writes,
/// "pooled" and "tokens" (reads the header only).
fn is_features_file(path: &Path) -> bool {
    crate::weights::safetensors_header(path).is_some_and(|h| {
        let mut names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names == ["pooled", "tokens"]
    })
}

/// Write tensors to a temporary sibling, then rename over `path`.
fn write_safetensors_atomic(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("features");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = Tensor::write_safetensors(tensors, &tmp)
        .map_err(anyhow::Error::from)
        .and_then(|_| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Why bytes are not a safetensors file, in words (the enum's name, e.g. "HeaderTooLarge",
/// says nothing to someone who passed a PNG).
fn safetensors_problem(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooLarge | E::HeaderTooSmall | E::InvalidHeaderLength => {
            "it does not start with a safetensors header length".into()
        }
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization => {
            "its header is not the JSON of a safetensors file".into()
        }
        E::MetadataIncompleteBuffer => {
            "it is truncated or padded: its size does not match the tensors its header lists".into()
        }
        other => format!("{other:?}"),
    }
}
