//! The random transforms' defining properties: probabilities, parameter ranges (crop scale and
//! ratio with torchvision's fallback, jitter bounds and its random order, erasing area and
//! ratio, rotation/affine/perspective ranges, blur radius), MultiCrop shapes, the reference's
//! order, and reproducibility.

use medfm::config::{DatasetName, Transforms};
use medfm::data::image::Image;
use medfm::data::rng::Rng;
use medfm::data::transforms::{geometry, tensor, Op, Pipeline, Step};
use medfm::data::DatasetInfo;
use std::collections::HashMap;

const DRAWS: usize = 20_000;

fn info() -> DatasetInfo {
    DatasetInfo::new(DatasetName::new("APTOS2019"), None).unwrap()
}

fn transforms(json: &str) -> Transforms {
    serde_json::from_str(json).unwrap()
}

/// How often `step` does something other than nothing, over DRAWS draws.
fn rate(step: &Step) -> f64 {
    let mut rng = Rng::seeded(&[1]);
    let hits = (0..DRAWS)
        .filter(|_| step.draw(64, 48, &mut rng).unwrap() != Op::Identity)
        .count();
    hits as f64 / DRAWS as f64
}

fn assert_rate(step: Step, p: f64) {
    let r = rate(&step);
    // 5 standard deviations of a binomial proportion.
    let tol = 5.0 * (p * (1.0 - p) / DRAWS as f64).sqrt() + 1e-9;
    assert!((r - p).abs() <= tol, "{step:?}: rate {r}, expected {p}");
}

#[test]
fn probabilities_are_honoured() {
    for p in [0.0, 0.2, 0.5, 1.0] {
        assert_rate(Step::HorizontalFlip { p }, p);
        assert_rate(Step::VerticalFlip { p }, p);
        assert_rate(Step::Grayscale { p }, p);
        assert_rate(
            Step::Solarize {
                threshold: 128.0,
                p,
            },
            p,
        );
        assert_rate(Step::Perspective { distortion: 0.5, p }, p);
        assert_rate(Step::Rotation { degrees: 5.0, p }, p);
        assert_rate(
            Step::GaussianBlur {
                radius: [0.1, 2.0],
                p,
            },
            p,
        );
        assert_rate(
            Step::Affine {
                degrees: 5.0,
                translate: None,
                scale: None,
                shear: None,
                p,
            },
            p,
        );
        let ranges = [Some([0.8, 1.2]), None, None, None];
        assert_rate(Step::ColorJitter { ranges, p }, p);
    }
}

#[test]
fn flips_flip() {
    let img = Image::new(3, 2, 1, vec![1, 2, 3, 4, 5, 6]);
    let mut rng = Rng::seeded(&[2]);
    let out = Step::HorizontalFlip { p: 1.0 }
        .apply(img.clone(), &mut rng)
        .unwrap();
    assert_eq!(out.data, vec![3, 2, 1, 6, 5, 4]);
    let out = Step::VerticalFlip { p: 1.0 }
        .apply(img.clone(), &mut rng)
        .unwrap();
    assert_eq!(out.data, vec![4, 5, 6, 1, 2, 3]);
    assert_eq!(
        Step::HorizontalFlip { p: 0.0 }
            .apply(img.clone(), &mut rng)
            .unwrap(),
        img
    );
}

#[test]
fn random_resized_crop_respects_scale_and_ratio() {
    let mut rng = Rng::seeded(&[3]);
    let (w, h) = (200usize, 150usize);
    let area = (w * h) as f64;
    let (mut min_s, mut max_s) = (f64::MAX, 0f64);
    for _ in 0..DRAWS {
        let (top, left, ch, cw) =
            geometry::rrc_params(w, h, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng);
        assert!(top + ch <= h && left + cw <= w && ch > 0 && cw > 0);
        // w and h are rounded, so the area and ratio hold up to half a pixel per side.
        let (lo, hi) = (
            (cw as f64 - 0.5) * (ch as f64 - 0.5),
            (cw as f64 + 0.5) * (ch as f64 + 0.5),
        );
        if (cw, ch) != (w, h) {
            assert!(hi >= 0.08 * area && lo <= 1.0 * area, "area {cw}x{ch}");
            let (rlo, rhi) = (
                (cw as f64 - 0.5) / (ch as f64 + 0.5),
                (cw as f64 + 0.5) / (ch as f64 - 0.5),
            );
            assert!(rhi >= 0.75 && rlo <= 4.0 / 3.0, "ratio {cw}x{ch}");
        }
        let s = (cw * ch) as f64 / area;
        min_s = min_s.min(s);
        max_s = max_s.max(s);
    }
    assert!(
        min_s < 0.1 && max_s > 0.9,
        "scale range covered: {min_s}..{max_s}"
    );
}

#[test]
fn random_resized_crop_falls_back_to_a_central_crop() {
    let mut rng = Rng::seeded(&[4]);
    // Areas above the image's can never fit: torchvision's fallback after 10 tries.
    let scale = [1.5, 2.0];
    let ratio = [0.75, 4.0 / 3.0];
    assert_eq!(
        geometry::rrc_params(100, 20, scale, ratio, &mut rng),
        (0, 36, 20, 27)
    );
    assert_eq!(
        geometry::rrc_params(20, 100, scale, ratio, &mut rng),
        (36, 0, 27, 20)
    );
    assert_eq!(
        geometry::rrc_params(50, 40, scale, ratio, &mut rng),
        (0, 0, 40, 50)
    );
    // The reference's default scale [0.8, 1.2] mixes real crops and fallbacks.
    let full = (0..2000)
        .filter(|_| geometry::rrc_params(256, 256, [0.8, 1.2], ratio, &mut rng) == (0, 0, 256, 256))
        .count();
    assert!(full > 0 && full < 2000, "{full}");
}

#[test]
fn color_jitter_factors_stay_in_bounds_and_order_is_random() {
    let t = transforms(
        r#"{"ColorJitter": {"apply": true, "brightness": 0.2, "contrast": 0.2, "saturation": 0.1, "hue": 0.1, "p": 1.0}}"#,
    );
    let pipeline = Pipeline::new(&t, &info()).unwrap();
    let step = &pipeline.steps[0];
    let mut rng = Rng::seeded(&[5]);
    let mut orders: HashMap<[usize; 4], usize> = HashMap::new();
    let bounds = [[0.8, 1.2], [0.8, 1.2], [0.9, 1.1], [-0.1, 0.1]];
    let n = 24_000;
    for _ in 0..n {
        let Op::Jitter { order, factors } = step.draw(10, 10, &mut rng).unwrap() else {
            panic!("p = 1")
        };
        for (f, [lo, hi]) in factors.iter().zip(bounds) {
            let f = f.expect("all four are on");
            assert!((lo..hi).contains(&f), "{f} not in [{lo}, {hi})");
        }
        *orders.entry(order).or_default() += 1;
    }
    assert_eq!(
        orders.len(),
        24,
        "every order of the four adjustments occurs"
    );
    for (order, count) in orders {
        assert!((count as f64 - 1000.0).abs() < 200.0, "{order:?}: {count}");
    }
    // A zero strength is off, as torchvision's None.
    let t = transforms(r#"{"ColorJitter": {"apply": true, "brightness": 0.3, "p": 1.0}}"#);
    let step = &Pipeline::new(&t, &info()).unwrap().steps[0];
    let Op::Jitter { factors, .. } = step.draw(4, 4, &mut rng).unwrap() else {
        panic!()
    };
    assert!(factors[0].is_some() && factors[1..].iter().all(|f| f.is_none()));
    // Brightness 1.0 may reach 0 but never below (torchvision clips the range at 0).
    let t = transforms(r#"{"ColorJitter": {"apply": true, "brightness": 1.5, "p": 1.0}}"#);
    let Step::ColorJitter { ranges, .. } = &Pipeline::new(&t, &info()).unwrap().steps[0] else {
        panic!()
    };
    assert_eq!(ranges[0], Some([0.0, 2.5]));
}

#[test]
fn random_erasing_area_ratio_and_value() {
    let mut rng = Rng::seeded(&[6]);
    let (h, w) = (60usize, 80usize);
    let area = (h * w) as f64;
    for _ in 0..2000 {
        let mut t = tensor::FloatImage {
            channels: 3,
            height: h,
            width: w,
            data: vec![1.0; 3 * h * w],
        };
        tensor::random_erasing(&mut t, [0.02, 0.33], [0.3, 3.3], -0.5, &mut rng);
        let erased: Vec<usize> = (0..h * w).filter(|&i| t.data[i] == -0.5).collect();
        if erased.is_empty() {
            continue; // 10 misses: unchanged, as torchvision
        }
        // A rectangle, the same in every channel.
        let ys: Vec<usize> = erased.iter().map(|i| i / w).collect();
        let xs: Vec<usize> = erased.iter().map(|i| i % w).collect();
        let (eh, ew) = (
            ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1,
            xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1,
        );
        assert_eq!(eh * ew, erased.len());
        for c in 1..3 {
            assert!(erased.iter().all(|&i| t.data[c * h * w + i] == -0.5));
        }
        let (lo, hi) = (
            (eh as f64 - 0.5) * (ew as f64 - 0.5),
            (eh as f64 + 0.5) * (ew as f64 + 0.5),
        );
        assert!(hi >= 0.02 * area && lo <= 0.33 * area, "{eh}x{ew}");
        let r = eh as f64 / ew as f64;
        assert!(r > 0.3 * 0.8 && r < 3.3 * 1.25, "ratio {r}");
        assert!(eh < h && ew < w);
    }
}

#[test]
fn rotation_affine_perspective_and_blur_ranges() {
    let mut rng = Rng::seeded(&[7]);
    let (w, h) = (64usize, 48usize);
    let rot = Step::Rotation {
        degrees: 5.0,
        p: 1.0,
    };
    let affine = Step::Affine {
        degrees: 5.0,
        translate: Some([0.1, 0.3]),
        scale: Some([0.1, 3.3]),
        shear: Some(0.2),
        p: 1.0,
    };
    let persp = Step::Perspective {
        distortion: 0.2,
        p: 1.0,
    };
    let blur = Step::GaussianBlur {
        radius: [0.1, 2.0],
        p: 1.0,
    };
    let (mut angle_sum, mut max_tx) = (0.0, 0i64);
    for _ in 0..5000 {
        let Op::Rotate { angle } = rot.draw(w, h, &mut rng).unwrap() else {
            panic!()
        };
        assert!((-5.0..5.0).contains(&angle));
        angle_sum += angle;
        let Op::Affine {
            angle,
            translate,
            scale,
            shear,
        } = affine.draw(w, h, &mut rng).unwrap()
        else {
            panic!()
        };
        assert!((-5.0..5.0).contains(&angle));
        assert!(
            translate.0.abs() <= 6 && translate.1.abs() <= 14,
            "{translate:?}"
        ); // round(0.1*64), round(0.3*48)
        max_tx = max_tx.max(translate.0.abs());
        assert!((0.1..3.3).contains(&scale));
        assert!((-0.2..0.2).contains(&shear.0) && shear.1 == 0.0);
        let Op::Perspective { end } = persp.draw(w, h, &mut rng).unwrap() else {
            panic!()
        };
        let (dw, dh) = ((0.2 * 32.0) as i64, (0.2 * 24.0) as i64);
        let (wi, hi) = (w as i64, h as i64);
        assert!((0..=dw).contains(&end[0][0]) && (0..=dh).contains(&end[0][1]));
        assert!((wi - dw - 1..wi).contains(&end[1][0]) && (0..=dh).contains(&end[1][1]));
        assert!((wi - dw - 1..wi).contains(&end[2][0]) && (hi - dh - 1..hi).contains(&end[2][1]));
        assert!((0..=dw).contains(&end[3][0]) && (hi - dh - 1..hi).contains(&end[3][1]));
        let Op::Blur { radius } = blur.draw(w, h, &mut rng).unwrap() else {
            panic!()
        };
        assert!((0.1..2.0).contains(&radius));
    }
    assert!((angle_sum / 5000.0).abs() < 0.2, "angles centred on 0");
    assert_eq!(max_tx, 6);
}

#[test]
fn solarize_uses_the_threshold() {
    let img = Image::new(4, 1, 1, vec![0, 100, 128, 255]);
    let out = Op::Solarize { threshold: 128.0 }.apply(img);
    assert_eq!(out.data, vec![0, 100, 127, 0]);
}

#[test]
fn random_crop_pads_and_refuses_crops_larger_than_the_image() {
    let step = Step::RandomCrop {
        h: 32,
        w: 32,
        padding: 4,
    };
    let mut rng = Rng::seeded(&[8]);
    for _ in 0..500 {
        let Op::PadCrop { top, left, .. } = step.draw(32, 32, &mut rng).unwrap() else {
            panic!()
        };
        assert!((0..=8).contains(&top) && (0..=8).contains(&left));
    }
    let err = Step::RandomCrop {
        h: 40,
        w: 40,
        padding: 0,
    }
    .draw(32, 32, &mut rng)
    .unwrap_err();
    assert!(
        err.to_string().contains("larger than the 32x32 image"),
        "{err}"
    );
}

#[test]
fn multicrop_makes_the_views_it_lists() {
    let t = transforms(
        r#"{"Resize": {"apply": true, "height": 40, "width": 50},
            "RandomResizedCrop": {"apply": true, "size": 24, "scale": [0.8, 1.0]},
            "HorizontalFlip": {"apply": true, "p": 0.5}, "Normalize": true,
            "MultiCrop": {"apply": true, "n_crops": [2, 3], "sizes": [32, 16], "scales": [[0.4, 1.0], [0.05, 0.4]]}}"#,
    );
    let p = Pipeline::new(&t, &info()).unwrap();
    assert!(
        p.steps
            .iter()
            .all(|s| !matches!(s, Step::RandomResizedCrop { .. })),
        "MultiCrop replaces it"
    );
    let img = p.resize(Image::new(
        60,
        50,
        3,
        (0..60 * 50 * 3).map(|v| (v % 251) as u8).collect(),
    ));
    let views = p.apply(img, &mut Rng::seeded(&[9])).unwrap();
    let sizes: Vec<(usize, usize, usize)> = views
        .iter()
        .map(|v| (v.channels, v.height, v.width))
        .collect();
    assert_eq!(
        sizes,
        vec![
            (3, 32, 32),
            (3, 32, 32),
            (3, 16, 16),
            (3, 16, 16),
            (3, 16, 16)
        ]
    );
}

#[test]
fn steps_follow_the_reference_order() {
    let t = transforms(
        r#"{"RandomSolarize": {"apply": true}, "RandomPerspective": {"apply": true},
            "RandomAffine": {"apply": true, "degrees": 3}, "RandomGaussianBlur": {"apply": true},
            "RandomGrayscale": {"apply": true}, "ColorJitter": {"apply": true, "brightness": 0.1},
            "RandomRotation": {"apply": true, "angle": 5}, "HorizontalFlip": {"apply": true},
            "VerticalFlip": {"apply": true}, "RandomResizedCrop": {"apply": true, "size": 8},
            "RandomCrop": {"apply": true, "height": 9, "width": 9}, "CenterCrop": {"apply": true, "height": 10, "width": 10},
            "Resize": {"apply": true, "height": 12, "width": 12}, "Normalize": true,
            "RandomErasing": {"apply": true}}"#,
    );
    let p = Pipeline::new(&t, &info()).unwrap();
    let names: Vec<String> = p
        .steps
        .iter()
        .map(|s| {
            format!("{s:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "CenterCrop",
            "RandomCrop",
            "RandomResizedCrop",
            "VerticalFlip",
            "HorizontalFlip",
            "Rotation",
            "ColorJitter",
            "Grayscale",
            "GaussianBlur",
            "Affine",
            "Perspective",
            "Solarize"
        ]
    );
    assert_eq!(p.resize, Some((12, 12)));
    assert!(p.erasing.is_some());
    assert!(!p.is_deterministic());
    let off = transforms(
        r#"{"HorizontalFlip": {"apply": false}, "Resize": {"apply": true, "height": 5, "width": 5}, "CenterCrop": {"apply": true, "height": 4, "width": 4}, "Normalize": true}"#,
    );
    assert!(Pipeline::new(&off, &info()).unwrap().is_deterministic());
}

#[test]
fn the_same_seed_gives_the_same_augmentation() {
    let t = transforms(
        r#"{"RandomResizedCrop": {"apply": true, "size": 24, "scale": [0.5, 1.0]},
            "HorizontalFlip": {"apply": true}, "ColorJitter": {"apply": true, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8},
            "RandomErasing": {"apply": true, "p": 0.5}, "Normalize": true}"#,
    );
    let p = Pipeline::new(&t, &info()).unwrap();
    let img = Image::new(
        40,
        30,
        3,
        (0..40 * 30 * 3).map(|v| (v * 7 % 256) as u8).collect(),
    );
    let a = p.apply(img.clone(), &mut Rng::seeded(&[42, 0, 3])).unwrap();
    let b = p.apply(img.clone(), &mut Rng::seeded(&[42, 0, 3])).unwrap();
    let c = p.apply(img.clone(), &mut Rng::seeded(&[42, 1, 3])).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}
