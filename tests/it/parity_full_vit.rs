//! Full-size random-weight parity of the ViT-family trunks and the attention head against the
//! reference implementations. The references are generated per name by
//! scripts/parity/full_vit.sh (which runs this test for each); see docs/parity.md.

use crate::common::{max_abs, read_st_at as read, reference_attention_head};
use medfm::config::GrayInit;
use medfm::models::classifier::build_trunk;
use medfm::models::heads::DEIT_BASE;
use medfm::models::registry::{self, BuildOptions};
use medfm::models::Features;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

fn weights_file(dir: &Path) -> PathBuf {
    ["weights.pth", "weights.bin", "weights.safetensors"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no weights file in {}", dir.display()))
}

fn trunk_parity(name: &str, dir: &Path) {
    let row = registry::get(name).unwrap();
    let opts = BuildOptions {
        img_size: 224,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let (_vs, trunk) = build_trunk(row, &opts, Some(&weights_file(dir)), Device::Cpu).unwrap();
    let io = read(&dir.join("io.safetensors"));
    let f = tch::no_grad(|| trunk.forward(&io["pixels"], false));
    let ep = max_abs(&f.pooled, &io["pooled"]);
    let et = max_abs(&f.tokens, &io["tokens"]);
    println!("{name} full size: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{name}: pooled {ep}, tokens {et}");
}

fn head_parity(dir: &Path) {
    let (_vs, head) = reference_attention_head(
        1024,
        DEIT_BASE,
        &dir.join("weights.pth"),
        &dir.join("head.safetensors"),
        true,
    );
    let io = read(&dir.join("io.safetensors"));
    let f = Features {
        pooled: Tensor::zeros([2, 1], (tch::Kind::Float, Device::Cpu)),
        tokens: io["tokens"].shallow_clone(),
    };
    let e = max_abs(&tch::no_grad(|| head.forward(&f)), &io["logits"]);
    println!("deit_base attention head full size (256 tokens): max abs logits {e:.2e}");
    assert!(e <= 1e-4, "attention head: {e}");
}

#[test]
#[ignore = "full size: run scripts/parity/full_vit.sh (generates the references under the heavy lock)"]
fn full_size_parity() {
    let root = PathBuf::from(
        std::env::var("MEDFM_VIT_FULL_DIR").unwrap_or_else(|_| "/tmp/medfm-parity-vit".into()),
    );
    let only = std::env::var("MEDFM_VIT_FULL_NAME").ok();
    let mut ran = 0;
    let mut names: Vec<&str> = registry::names();
    names.push("deit_base");
    for name in names {
        let dir = root.join(name);
        if only.as_deref().is_some_and(|o| o != name) || !dir.is_dir() {
            continue;
        }
        if name == "deit_base" {
            head_parity(&dir);
        } else {
            trunk_parity(name, &dir);
        }
        ran += 1;
    }
    assert!(
        ran > 0,
        "no references under {} (run scripts/parity/full_vit.sh)",
        root.display()
    );
}
