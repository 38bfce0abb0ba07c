//! open_clip trunk parity (CLIP and CoCa), fixtures from scripts/fixtures/gen_parity_clip.py: whole
//! open_clip state dicts (text towers included, to be ignored), small towers.

use crate::common::{fixture, max_abs, read_st, SMALL_TOWER};
use medfm::models::clip::{self, Clip};
use medfm::models::coca::{Coca, CocaConfig};
use medfm::models::registry::BuildOptions;
use medfm::models::Backbone;
use tch::{nn, Device};

const COCA: CocaConfig = CocaConfig {
    tower: SMALL_TOWER,
    n_queries: 16,
    pool_heads: 4,
};

fn compare(name: &str, model: &dyn Backbone, tag: &str) {
    let io = read_st("parity/clip_small_io.safetensors");
    let x = &io[&format!("pixels_{tag}")];
    model.check_input(x).unwrap();
    let f = tch::no_grad(|| model.forward(x, false));
    let ep = max_abs(&f.pooled, &io[&format!("pooled_{tag}")]);
    let et = max_abs(&f.tokens, &io[&format!("tokens_{tag}")]);
    println!("{name} small {tag}: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{tag}: pooled {ep}, tokens {et}");
}

fn clip_case(tag: &str, img_size: i64, in_chans: i64) {
    let o = BuildOptions::new(img_size, in_chans);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Clip::new(&(vs.root() / "trunk"), SMALL_TOWER, &o).unwrap();
    clip::load(&vs, "trunk.", &fixture("parity/clip_small.safetensors"), &o).unwrap();
    compare("CLIP", &model, tag);
}

#[test]
fn clip_small_matches_open_clip() {
    clip_case("clip32", 32, 3);
}

#[test]
fn clip_small_matches_open_clip_with_forced_image_size() {
    clip_case("clip48", 48, 3);
}

#[test]
fn clip_small_one_channel_uses_the_first_rgb_kernel_channel() {
    clip_case("clipgray32", 32, 1);
}

#[test]
fn coca_small_matches_open_clip() {
    let o = BuildOptions::new(32, 3);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Coca::new(&(vs.root() / "trunk"), COCA, &o).unwrap();
    clip::load(&vs, "trunk.", &fixture("parity/coca_small.bin"), &o).unwrap();
    compare("CoCa", &model, "coca32");
}
