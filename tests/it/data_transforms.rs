//! Transforms and decoding against torchvision-on-PIL outputs (fixtures from
//! scripts/fixtures/gen_transform_fixtures.py): every deterministic operation within 1/255 per pixel.

use crate::common;
use medfm::data::image::{self, Image};
use medfm::data::transforms::resample::{self, Filter};
use medfm::data::transforms::{color, geometry, tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    common::fixture("data/transforms")
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("arg {k}"))
}

fn u(v: &Value, k: &str) -> usize {
    f(v, k) as usize
}

fn points(v: &Value) -> [[i64; 2]; 4] {
    let mut out = [[0; 2]; 4];
    for (i, p) in v.as_array().expect("points").iter().enumerate() {
        out[i] = [p[0].as_i64().expect("x"), p[1].as_i64().expect("y")];
    }
    out
}

/// Our output for one case: an image, or a CHW float tensor.
enum Out {
    Image(Image),
    Float(Vec<f32>),
}

fn run(op: &str, a: &Value, input: &Path, channels: usize) -> Out {
    let img = image::load(input, channels).expect("input");
    let filter = |a: &Value| {
        if a["interp"] == "bicubic" {
            Filter::Bicubic
        } else {
            Filter::Bilinear
        }
    };
    Out::Image(match op {
        "resize" => resample::resize(&img, u(a, "w"), u(a, "h"), Filter::Bilinear),
        "resized_crop" => {
            let c = geometry::crop(
                &img,
                f(a, "top") as i64,
                f(a, "left") as i64,
                u(a, "h"),
                u(a, "w"),
            );
            resample::resize(&c, u(a, "size"), u(a, "size"), filter(a))
        }
        "center_crop" => geometry::center_crop(&img, u(a, "h"), u(a, "w")),
        "hflip" => geometry::hflip(&img),
        "vflip" => geometry::vflip(&img),
        "pad_crop" => {
            let p = u(a, "padding");
            let padded = geometry::pad(&img, p, p, p, p);
            geometry::crop(
                &padded,
                f(a, "top") as i64,
                f(a, "left") as i64,
                u(a, "h"),
                u(a, "w"),
            )
        }
        "to_tensor" => return Out::Float(tensor::to_tensor(&img, None).data),
        "normalize" => {
            let vals = |k: &str| {
                a[k].as_array()
                    .expect(k)
                    .iter()
                    .map(|v| v.as_f64().expect("f") as f32)
                    .collect::<Vec<_>>()
            };
            let (m, s) = (vals("mean"), vals("std"));
            return Out::Float(tensor::to_tensor(&img, Some((&m, &s))).data);
        }
        "brightness" => color::adjust_brightness(&img, f(a, "factor")),
        "contrast" => color::adjust_contrast(&img, f(a, "factor")),
        "saturation" => color::adjust_saturation(&img, f(a, "factor")),
        "hue" => color::adjust_hue(&img, f(a, "factor")),
        "grayscale" => color::grayscale(&img),
        "solarize" => color::solarize(&img, f(a, "threshold")),
        "rotate" => geometry::rotate(&img, f(a, "angle")),
        "affine" => {
            let t = (
                a["translate"][0].as_i64().expect("tx"),
                a["translate"][1].as_i64().expect("ty"),
            );
            let sh = (
                a["shear"][0].as_f64().expect("sx"),
                a["shear"][1].as_f64().expect("sy"),
            );
            let m =
                geometry::affine_matrix(img.width, img.height, f(a, "angle"), t, f(a, "scale"), sh);
            geometry::affine_nearest(&img, &m)
        }
        "perspective" => {
            let k = geometry::perspective_coeffs(&points(&a["start"]), &points(&a["end"]));
            geometry::perspective_bilinear(&img, &k)
        }
        "blur" => color::gaussian_blur(&img, f(a, "radius")),
        "decode" | "decode_jpeg" => img,
        other => panic!("unknown op {other}"),
    })
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("f32 fixture");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn deterministic_transforms_match_torchvision_within_one_level() {
    let manifest: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert!(manifest.len() > 100);
    let mut failures = Vec::new();
    let mut exact = 0;
    for case in &manifest {
        let name = case["name"].as_str().expect("name");
        let op = case["op"].as_str().expect("op");
        let channels = if case["mode"] == "RGB" { 3 } else { 1 };
        let input = dir().join(case["input"].as_str().expect("input"));
        let expected = dir().join(case["output"].as_str().expect("output"));
        // JPEG decodes with PIL's own library (libjpeg-turbo) at its settings: exact (its
        // integer IDCT and upsampling give the same bytes on every CPU, SIMD or not).
        let tolerance = if op == "decode_jpeg" { 0.0 } else { 1.0 };
        let (max, differing, total) = match run(op, &case["args"], &input, channels) {
            Out::Image(got) => {
                let want = image::load(&expected, channels).expect("expected image");
                if (got.width, got.height) != (want.width, want.height) {
                    failures.push(format!(
                        "{name}: size {}x{} vs {}x{}",
                        got.width, got.height, want.width, want.height
                    ));
                    continue;
                }
                let diffs: Vec<f64> = got
                    .data
                    .iter()
                    .zip(&want.data)
                    .map(|(a, b)| (*a as f64 - *b as f64).abs())
                    .collect();
                let max = diffs.iter().cloned().fold(0.0, f64::max);
                (max, diffs.iter().filter(|d| **d > 0.0).count(), diffs.len())
            }
            Out::Float(got) => {
                let want = read_f32(&expected);
                assert_eq!(got.len(), want.len(), "{name}");
                let diffs: Vec<f64> = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as f64 - *b as f64).abs())
                    .collect();
                let max = diffs.iter().cloned().fold(0.0, f64::max);
                // Float outputs: 1e-6 is far below one 8-bit level.
                (
                    if max <= 1e-6 { 0.0 } else { max * 255.0 },
                    diffs.iter().filter(|d| **d > 1e-6).count(),
                    diffs.len(),
                )
            }
        };
        if max > tolerance {
            failures.push(format!(
                "{name}: max diff {max} levels, {differing}/{total} values differ"
            ));
        } else if differing == 0 {
            exact += 1;
        } else {
            eprintln!("{name}: max diff {max} levels, {differing}/{total} values differ");
        }
    }
    eprintln!("{exact} of {} cases bit-exact", manifest.len());
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
