//! DICOM reading against pydicom: the fixtures in tests/fixtures/dicom/ are pydicom's bundled
//! test files and what pydicom 3 makes of them (scripts/fixtures/gen_dicom_fixtures.py, on the
//! reference definition of scripts/fixtures/dicom_reference.py; docs/datasets.md#dicom).
//!
//! Lossless codecs: the 16-bit gray or 8-bit RGB image equals pydicom's bit for bit (integer
//! decoding, then the same f64 or float32 operations in the same order, so on any CPU).
//! Lossy codecs: the decoded samples are within the decoders' tolerance of pydicom's (below),
//! and the LUTs or the colour conversion applied to pydicom's own samples give pydicom's image
//! bit for bit.

use medfm::data::dicom::{self, Decoded, Stored};
use medfm::data::image;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Lossy JPEG: medfm decodes with libjpeg-turbo, pydicom's default plugin with
/// pylibjpeg-libjpeg (another implementation of the standard). Their inverse DCTs differ by
/// at most 1 per sample (IEEE 1180's peak error bound, which JPEG decoders meet); measured: 1
/// on every lossy JPEG fixture, colour (4:4:4 and 4:2:2) and gray. Against pydicom's Pillow
/// plugin (libjpeg-turbo too) the samples are equal, so that is checked exactly.
const JPEG_TOLERANCE: i64 = 1;
/// Lossy JPEG 2000 (the irreversible 9-7 wavelet): both sides run openjpeg, whose float
/// wavelet may round a sample the other way where the compilers differ in contraction or
/// vector width: 1 allowed; measured 0.
const J2K_TOLERANCE: i64 = 1;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

fn index() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("index.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["files"].as_array().unwrap().clone()
}

fn str_of<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key]
        .as_str()
        .unwrap_or_else(|| panic!("index.json: no {key} in {e}"))
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn png(rel: &str) -> ::image::DynamicImage {
    ::image::open(dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn max_abs_diff(a: &[i64], b: &[i64]) -> i64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .max()
        .unwrap_or(0)
}

fn ints<T: Copy + Into<i64>>(v: &[T]) -> Vec<i64> {
    v.iter().map(|&x| x.into()).collect()
}

#[test]
fn fixtures_match_pydicom() {
    let mut checked = 0;
    for e in index().iter().filter(|e| e["kind"] != "refused") {
        let name = str_of(e, "file");
        let bytes = read(name);
        let size = (
            e["width"].as_u64().unwrap() as usize,
            e["height"].as_u64().unwrap() as usize,
        );
        let got = dicom::decode(&bytes).unwrap_or_else(|err| panic!("{name}: {err:#}"));
        let expected = png(str_of(e, "expected"));
        let (ours, theirs) = match (got, str_of(e, "kind")) {
            (
                Decoded::Gray16 {
                    width,
                    height,
                    data,
                },
                "gray16",
            ) => {
                assert_eq!((width, height), size, "{name}");
                (ints(&data), ints(&expected.to_luma16().into_raw()))
            }
            (
                Decoded::Rgb8 {
                    width,
                    height,
                    data,
                },
                "rgb8",
            ) => {
                assert_eq!((width, height), size, "{name}");
                (ints(&data), ints(&expected.to_rgb8().into_raw()))
            }
            (got, kind) => panic!("{name}: expected {kind}, got {got:?}"),
        };
        let d = max_abs_diff(&ours, &theirs);
        if e["lossy"] == true {
            println!("{name} (lossy): image max abs diff {d}");
            check_lossy(name, e, &bytes);
        } else {
            assert_eq!(d, 0, "{name}: a lossless codec, so bit for bit");
        }
        checked += 1;
    }
    assert!(checked >= 29, "only {checked} fixtures checked");
}

/// The decoder within its tolerance of pydicom's samples; the LUTs or the colour conversion
/// on pydicom's samples exactly pydicom's image.
fn check_lossy(name: &str, e: &Value, bytes: &[u8]) {
    let jpeg = str_of(e, "transfer_syntax").starts_with("1.2.840.10008.1.2.4.5");
    let tolerance = if jpeg { JPEG_TOLERANCE } else { J2K_TOLERANCE };
    let expected = png(str_of(e, "expected"));
    let reference = png(str_of(e, "stored"));
    let pillow = e.get("stored_pillow").map(|p| png(p.as_str().unwrap()));
    assert_eq!(
        pillow.is_some(),
        jpeg,
        "{name}: Pillow plugin samples for JPEG only"
    );
    match dicom::read_stored(bytes).unwrap() {
        Stored::Gray { values, luts, .. } => {
            let offset = e["stored_offset"].as_i64().unwrap();
            let unshift = |img: &::image::DynamicImage| -> Vec<i64> {
                img.to_luma16()
                    .into_raw()
                    .iter()
                    .map(|&v| v as i64 - offset)
                    .collect()
            };
            let theirs = unshift(&reference);
            let d = max_abs_diff(&values, &theirs);
            println!("{name}: stored values max abs diff {d} (tolerance {tolerance})");
            assert!(d <= tolerance, "{name}: stored values differ by {d}");
            if let Some(p) = &pillow {
                assert_eq!(values, unshift(p), "{name}: Pillow plugin's samples");
            }
            let out = dicom::gray16(&theirs, &luts);
            assert_eq!(
                out,
                expected.to_luma16().into_raw(),
                "{name}: LUTs on pydicom's values"
            );
        }
        Stored::Color { data, ybr, .. } => {
            let mut theirs = reference.to_rgb8().into_raw();
            let d = max_abs_diff(&ints(&data), &ints(&theirs));
            println!("{name}: samples max abs diff {d} (tolerance {tolerance}), YBR {ybr}");
            assert!(d <= tolerance, "{name}: samples differ by {d}");
            assert_eq!(Value::Bool(ybr), e["ybr"], "{name}: colour space");
            if let Some(p) = &pillow {
                assert_eq!(
                    data,
                    p.to_rgb8().into_raw(),
                    "{name}: Pillow plugin's samples"
                );
            }
            if ybr {
                dicom::ybr_full_to_rgb(&mut theirs);
            }
            assert_eq!(
                theirs,
                expected.to_rgb8().into_raw(),
                "{name}: colour conversion"
            );
        }
    }
}

/// A DICOM file and a PNG of the same pixels (pydicom's 16-bit gray or 8-bit RGB image) give
/// the same 8-bit image through `image::load`, for both channel counts; the header gives the
/// PNG's size.
#[test]
fn a_dicom_reads_as_the_png_of_its_pixels() {
    for e in index()
        .iter()
        .filter(|e| e["kind"] != "refused" && e["lossy"] == false)
    {
        let name = str_of(e, "file");
        let dcm = dir().join(name);
        let png_path = dir().join(str_of(e, "expected"));
        for channels in [1, 3] {
            let a = image::load(&dcm, channels).unwrap_or_else(|err| panic!("{name}: {err:#}"));
            let b = image::load(&png_path, channels).unwrap();
            assert_eq!(a, b, "{name}, {channels} channels");
        }
        assert_eq!(
            image::dimensions(&dcm).unwrap(),
            image::dimensions(&png_path).unwrap(),
            "{name}"
        );
    }
}

/// `.dcm` in any case, no extension with the "DICM" marker, and a Part 10 file without its
/// preamble are read; a `.dcm` that is not DICOM says so.
#[test]
fn dicom_files_are_recognised_by_name_or_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = read("MR_small.dcm");
    let want = image::load(&dir().join("MR_small.dcm"), 1).unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("upper.DCM", &bytes),
        ("no_extension", &bytes),
        ("other.bin", &bytes),
        ("no_preamble.dcm", &bytes[128..]),
    ];
    for (file, content) in cases {
        let p = tmp.path().join(file);
        std::fs::write(&p, content).unwrap();
        assert_eq!(image::load(&p, 1).unwrap(), want, "{file}");
        assert_eq!(image::dimensions(&p).unwrap(), (64, 64), "{file}");
    }
    let fake = tmp.path().join("fake.dcm");
    std::fs::copy(dir().join("expected/MR_small.dcm.png"), &fake).unwrap();
    for err in [
        image::load(&fake, 1).unwrap_err(),
        image::dimensions(&fake).unwrap_err(),
    ] {
        let err = format!("{err:#}");
        assert!(
            err.contains("not a DICOM file") && err.contains("DICM"),
            "{err}"
        );
    }
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, [7u8; 300]).unwrap();
    let err = format!("{:#}", image::load(&junk, 1).unwrap_err());
    assert!(err.contains("not a PNG, JPEG or DICOM file"), "{err}");
}

/// Several frames, an unsupported transfer syntax, 12-bit JPEG and 16-bit colour are refused
/// when the header is read (so `medfm inspect` lists them without --check-images) and when
/// decoding, with what medfm reads.
#[test]
fn refused_files_say_why_and_what_is_supported() {
    let mut refused = 0;
    for e in index().iter().filter(|e| e["kind"] == "refused") {
        let name = str_of(e, "file");
        let path = dir().join(name);
        for err in [
            image::dimensions(&path).unwrap_err(),
            image::load(&path, 1).unwrap_err(),
        ] {
            let err = format!("{err:#}");
            assert!(err.contains(str_of(e, "message")), "{name}: {err}");
            assert!(err.contains("medfm reads single-frame"), "{name}: {err}");
        }
        refused += 1;
    }
    assert_eq!(refused, 5);
}

fn medfm(args: &[&str]) -> Output {
    crate::common::command(env!("CARGO_BIN_EXE_medfm"))
        .args(args)
        .output()
        .expect("run medfm")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The dataset readers need no change: DDSM's lists may name `.dcm` files, ISIC2019's CSV
/// names `<image>` whose `.jpg` may be a `.dcm`; `medfm inspect --check-images` reads them, and
/// names a multi-frame file with the reason.
#[test]
fn datasets_read_dicom_and_inspect_names_a_refused_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    for ds in ["DDSM", "ISIC2019"] {
        let o = medfm(&[
            "synth",
            "--dataset",
            ds,
            "--out",
            d,
            "--n",
            "20",
            "--seed",
            "1",
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let params = |ds: &str| {
        let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
        let mut v: Value =
            serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
        v["dataset_params"]["dataset"] = ds.into();
        v["dataset_params"]["data_location"] = d.into();
        v["training_params"]["save_dir"] = tmp.path().join("out").to_str().unwrap().into();
        v["dataloader_params"]["trainloader"]["batch_size"] = 8.into();
        v["foundation_params"]["pretrained"] = false.into();
        let path = tmp.path().join(format!("{ds}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        path
    };
    let inspect = |ds: &str| {
        let p = params(ds);
        medfm(&[
            "inspect",
            "--params_path",
            p.to_str().unwrap(),
            "--check-images",
        ])
    };

    // DDSM: two listed PNGs become DICOM files (gray, and colour read as gray).
    let root = data.join("DDSM");
    let list_path = root.join("ddsm_raw_image_lists/train.txt");
    let list = std::fs::read_to_string(&list_path).unwrap();
    let mut lines: Vec<String> = list.lines().map(String::from).collect();
    for (k, fixture) in [(0, "CT_small.dcm"), (1, "SC_rgb_rle.dcm")] {
        std::fs::remove_file(root.join("ddsm_raw").join(&lines[k])).unwrap();
        lines[k] = lines[k].replace(".png", ".dcm");
        std::fs::copy(dir().join(fixture), root.join("ddsm_raw").join(&lines[k])).unwrap();
    }
    std::fs::write(&list_path, lines.join("\n") + "\n").unwrap();
    // ISIC2019: an image's JPEG replaced by a DICOM file of the same stem.
    let images = data.join("ISIC2019/ISIC_2019_Training_Input/ISIC_2019_Training_Input");
    let jpg = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jpg"))
        .unwrap();
    std::fs::remove_file(&jpg).unwrap();
    std::fs::copy(
        dir().join("SC_rgb_jpeg_dcmtk.dcm"),
        jpg.with_extension("dcm"),
    )
    .unwrap();
    for ds in ["DDSM", "ISIC2019"] {
        let o = inspect(ds);
        assert!(o.status.success(), "{ds}: {}", text(&o));
    }

    // A multi-frame file in DDSM's list: named, with its line and the reason.
    let victim = root.join("ddsm_raw").join(&lines[2]);
    std::fs::remove_file(&victim).unwrap();
    lines[2] = lines[2].replace(".png", ".dcm");
    let victim = root.join("ddsm_raw").join(&lines[2]);
    std::fs::copy(dir().join("SC_rgb_rle_2frame.dcm"), &victim).unwrap();
    std::fs::write(&list_path, lines.join("\n") + "\n").unwrap();
    let o = inspect("DDSM");
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&victim.display().to_string())
            && t.contains("train.txt line 3")
            && t.contains("multi-frame DICOM files are not supported yet (NumberOfFrames = 2)"),
        "{t}"
    );
}

/// The recorded outcomes of [`pydicom_test_files_keep_their_outcome`].
const OUTCOMES: &str = "tests/fixtures/dicom/pydicom_outcomes.tsv";

/// pydicom's test files, all of them (with `.dcm` or without an extension; `scripts/setup.sh
/// --ref` installs pydicom in `.venv`), relative to its `test_files` folder, sorted.
fn pydicom_test_files() -> (PathBuf, Vec<String>) {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let root = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh --ref)", lib.display()))
        .flatten()
        .map(|d| d.path().join("site-packages/pydicom/data/test_files"))
        .find(|p| p.is_dir())
        .expect("pydicom's test files in .venv (run scripts/setup.sh --ref)");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for p in std::fs::read_dir(&d).unwrap().flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
                files.push(rel);
            }
        }
    }
    files.sort();
    (root, files)
}

/// FNV-1a (64-bit): a hash that is the same in every build, for the recorded outcomes.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One line per file: what `decode` gives (the image's size, kind and a hash of its pixels, or
/// the error) and what the header read of `dimensions`/`channels` gives.
fn outcome(root: &Path, rel: &str) -> String {
    let path = root.join(rel);
    let one_line = |e: anyhow::Error| format!("err {e:#}").replace(['\t', '\n'], " ");
    let decoded = match dicom::decode(&std::fs::read(&path).unwrap()) {
        Ok(Decoded::Gray16 {
            width,
            height,
            data,
        }) => format!(
            "ok gray16 {width}x{height} {:016x}",
            fnv1a(data.iter().flat_map(|v| v.to_le_bytes()))
        ),
        Ok(Decoded::Rgb8 {
            width,
            height,
            data,
        }) => format!("ok rgb8 {width}x{height} {:016x}", fnv1a(data)),
        Err(e) => one_line(e),
    };
    let header = match dicom::dimensions(&path).and_then(|d| Ok((d, dicom::channels(&path)?))) {
        Ok(((w, h), c)) => format!("ok {w}x{h} {c}"),
        Err(e) => one_line(e),
    };
    format!("{rel}\t{decoded}\t{header}")
}

/// No regression over all of pydicom's test files: every file that medfm read before the
/// structural pre-scan of `src/data/dicom_scan.rs` (decode, or the header read) still reads, to
/// the same pixels; a file it refused may be refused with another message (listed). The record
/// was made on one machine; lossy JPEG and JPEG 2000 decode to the same integers on any x86 CPU
/// (integer IDCT; openjpeg's float wavelet in the same build), so the hashes hold.
/// `MEDFM_WRITE_DICOM_OUTCOMES=1` rewrites the record instead.
#[test]
#[ignore = "needs pydicom's test files in .venv (scripts/setup.sh --ref)"]
fn pydicom_test_files_keep_their_outcome() {
    let (root, files) = pydicom_test_files();
    let lines: Vec<String> = files.iter().map(|f| outcome(&root, f)).collect();
    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join(OUTCOMES);
    if std::env::var_os("MEDFM_WRITE_DICOM_OUTCOMES").is_some_and(|v| v == "1") {
        std::fs::write(&record, lines.join("\n") + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&record).unwrap();
    let recorded: std::collections::HashMap<&str, Vec<&str>> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], f[1..].to_vec())
        })
        .collect();
    let mut problems = Vec::new();
    for line in &lines {
        let f: Vec<&str> = line.split('\t').collect();
        let Some(old) = recorded.get(f[0]) else {
            problems.push(format!("{}: not in {OUTCOMES}", f[0]));
            continue;
        };
        for (what, (new, old)) in ["decode", "header"].iter().zip(f[1..].iter().zip(old)) {
            if new == old {
                continue;
            }
            if old.starts_with("ok") {
                problems.push(format!("{} ({what}): was {old}, now {new}", f[0]));
            } else {
                println!("{} ({what}): was {old}\n    now {new}", f[0]);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A file of `tests/fixtures/dicom/damaged/`.
fn damaged(name: &str) -> PathBuf {
    dir().join("damaged").join(name)
}

/// Every way medfm reads a DICOM file gives `want`: decoding in memory, and the header read
/// (`dimensions`, which reads up to the pixel data from the file), also through `image`.
fn refused_everywhere(path: &Path, want: &str) {
    let bytes = std::fs::read(path).unwrap();
    for err in [
        dicom::decode(&bytes).unwrap_err(),
        dicom::read_stored(&bytes).unwrap_err(),
        dicom::dimensions(path).unwrap_err(),
        image::load(path, 1).unwrap_err(),
        image::dimensions(path).unwrap_err(),
    ] {
        let err = format!("{err:#}");
        assert!(
            err.contains(want) && err.contains("the file is damaged or not valid DICOM"),
            "{}: {err}",
            path.display()
        );
    }
}

/// Files whose elements claim more bytes than follow are refused by the structural pre-scan,
/// before dicom-rs would allocate the claimed length (3.7 GB for `UN_sequence.dcm`, 1.2 GB
/// for `SC_rgb_jpeg.dcm`: the README of tests/fixtures/dicom/damaged/), with the element,
/// its offset and the bytes that remain.
#[test]
fn damaged_lengths_are_refused_before_they_are_allocated() {
    // UN_sequence.dcm (674 bytes): the item of a UN sequence of undefined length at byte 370,
    // read as explicit VR as dicom-rs reads it; its first element's 12-byte header at 378.
    refused_everywhere(
        &damaged("UN_sequence.dcm"),
        "element (0008,1115) at byte 378 claims 3758161918 bytes, but only 284 bytes follow",
    );
    refused_everywhere(
        &damaged("SC_rgb_jpeg.dcm"),
        "element (0008,0008) at byte 356 claims 1230128452 bytes",
    );

    // A valid file with one length patched: CT_small.dcm's (0043,1028) OB, before the pixel
    // data, so the header read meets it too.
    let mut bytes = read("CT_small.dcm");
    let at = bytes
        .windows(8)
        .position(|w| w == [0x43, 0x00, 0x28, 0x10, b'O', b'B', 0, 0])
        .unwrap();
    bytes[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("patched.dcm");
    std::fs::write(&path, &bytes).unwrap();
    let follow = bytes.len() - at - 12;
    refused_everywhere(
        &path,
        &format!("element (0043,1028) at byte {at} claims 4294967280 bytes, but only {follow} bytes follow"),
    );
}

/// Sequences nested 64 deep are read; 65 deep are refused, naming the element and its offset
/// (the object dicom-rs builds is recursive).
#[test]
fn sequence_nesting_is_bounded() {
    let bytes = read("MR_small.dcm");
    let meta_end = 144 + u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let nested = |depth: usize| {
        let mut b = bytes[..meta_end].to_vec();
        for _ in 0..depth {
            // (0009,1000) SQ of undefined length, then an item of undefined length.
            b.extend_from_slice(&[0x09, 0, 0, 0x10, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..depth {
            b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        b.extend_from_slice(&bytes[meta_end..]);
        b
    };
    let want = dicom::decode(&bytes).unwrap();
    assert_eq!(dicom::decode(&nested(64)).unwrap(), want);
    let deep = nested(65);
    let err = format!("{:#}", dicom::decode(&deep).unwrap_err());
    let at = meta_end + 64 * 20;
    assert!(
        err.contains(&format!(
            "element (0009,1000) at byte {at} nests sequences more than 64 deep"
        )),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("deep.dcm");
    std::fs::write(&path, &deep).unwrap();
    let err = format!("{:#}", dicom::dimensions(&path).unwrap_err());
    assert!(err.contains("nests sequences more than 64 deep"), "{err}");
}

/// `decode` both ways: native pixel data read in place from the file's bytes, and dicom-rs's
/// parse of the whole file (`decode_routed`). They must give the same image bit for bit, or the
/// same error; the way `decode` took.
fn same_both_ways(what: &str, bytes: &[u8]) -> dicom::Route {
    let general = dicom::decode_routed(bytes, false);
    let fast = std::panic::catch_unwind(|| dicom::decode_routed(bytes, true))
        .unwrap_or_else(|_| panic!("{what}: the in-place read panicked"));
    match (&fast, &general) {
        (Ok((a, route)), Ok((b, dicom::Route::General))) => {
            assert!(a == b, "{what}: the image read in place differs");
            *route
        }
        (Err(a), Err(b)) => {
            assert_eq!(format!("{a:#}"), format!("{b:#}"), "{what}");
            dicom::Route::General
        }
        _ => panic!(
            "{what}: in place {:?}, general {:?}",
            fast.as_ref().map(|r| r.1),
            general.as_ref().map(|r| r.1)
        ),
    }
}

/// The header of the top-level Pixel Data element of a fixture: its offset (the last one of
/// the tag, which the fixtures below have once at the top level), and whether the file is big
/// endian.
fn pixel_data_at(bytes: &[u8], big_endian: bool) -> usize {
    let tag: [u8; 4] = if big_endian {
        [0x7F, 0xE0, 0x00, 0x10]
    } else {
        [0xE0, 0x7F, 0x10, 0x00]
    };
    bytes.windows(4).rposition(|w| w == tag).unwrap()
}

/// `bytes` with the Pixel Data element at `at` (header of `header` bytes, its 4-byte length
/// last) holding `len` bytes of its value instead: the value cut or extended with zeros.
fn with_pixel_length(
    bytes: &[u8],
    at: usize,
    header: usize,
    big_endian: bool,
    len: u32,
) -> Vec<u8> {
    let len_at = at + header - 4;
    let old = <[u8; 4]>::try_from(&bytes[len_at..len_at + 4]).unwrap();
    let old = if big_endian {
        u32::from_be_bytes(old)
    } else {
        u32::from_le_bytes(old)
    } as usize;
    let start = at + header;
    let mut out = bytes[..len_at].to_vec();
    out.extend_from_slice(&if big_endian {
        len.to_be_bytes()
    } else {
        len.to_le_bytes()
    });
    let value = &bytes[start..start + old];
    out.extend_from_slice(&value[..value.len().min(len as usize)]);
    out.resize(out.len() + (len as usize).saturating_sub(old), 0);
    out.extend_from_slice(&bytes[start + old..]);
    out
}

/// Native pixel data is read in place, to the image the general way gives, on every committed
/// fixture and on variants: big endian, implicit VR, BitsAllocated 8, 16 and 32, 1 (read the
/// general way), signed, MONOCHROME1, colour (planar, YBR_FULL_422), an odd-length OB value, a
/// Pixel Data element followed by other elements (which are still read: a window after it
/// applies), and compressed files (read the general way).
#[test]
fn native_pixel_data_read_in_place_gives_the_same_image() {
    let mut in_place = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dcm") || n == "CR1_6154")
        .collect();
    names.sort();
    for name in &names {
        if same_both_ways(name, &read(name)) == dicom::Route::InPlace {
            in_place.push(name.as_str());
        }
    }
    for want in [
        "CR1_6154",                         // MONOCHROME1, 12 of 16 bits
        "CT_small.dcm",                     // signed 16-bit, followed by (FFFC,FFFC)
        "ExplVR_BigEnd.dcm",                // big endian, 8-bit RGB (OB)
        "MR_small_bigendian.dcm",           // big endian, 16-bit OW
        "MR_small_implicit.dcm",            // implicit VR
        "SC_rgb_small_odd.dcm",             // 3x3 RGB: 27 samples in an OW of 28 bytes
        "SC_ybr_full_422_uncompressed.dcm", // subsampled colour
        "rtdose_1frame.dcm",                // BitsAllocated 32, implicit VR
        "signed12_junk.dcm",                // signed 12 of 16 bits, junk in the high bits
    ] {
        assert!(
            in_place.contains(&want),
            "{want} was not read in place: {in_place:?}"
        );
    }
    for general in [
        "liver_1frame.dcm",
        "image_dfl.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
    ] {
        assert!(!in_place.contains(&general), "{general}");
    }

    // An odd-length OB value (SC_rgb_small_odd's OW of 28 bytes as OB of 27): read in place.
    let bytes = read("SC_rgb_small_odd.dcm");
    let at = pixel_data_at(&bytes, false);
    assert_eq!(&bytes[at + 4..at + 6], b"OW");
    let mut ob = with_pixel_length(&bytes, at, 12, false, 27);
    ob[at + 4..at + 6].copy_from_slice(b"OB");
    assert_eq!(same_both_ways("OB of 27 bytes", &ob), dicom::Route::InPlace);
    assert_eq!(dicom::decode(&ob).unwrap(), dicom::decode(&bytes).unwrap());
    // As OW of 27 bytes dicom-rs reads 13 16-bit values, one sample short: the general way
    // gives its error.
    let ow = with_pixel_length(&bytes, at, 12, false, 27);
    assert_eq!(same_both_ways("OW of 27 bytes", &ow), dicom::Route::General);
    let err = format!("{:#}", dicom::decode(&ow).unwrap_err());
    assert!(
        err.contains("the pixel data holds 26 bytes; 3x3 RGB needs 27"),
        "{err}"
    );

    // Elements after the Pixel Data are read as before: a window there applies.
    let bytes = read("MR_small.dcm");
    let mut windowed = bytes.clone();
    for (tag, value) in [
        ([0x28, 0x00, 0x50, 0x10], b"600 "),
        ([0x28, 0x00, 0x51, 0x10], b"800 "),
    ] {
        windowed.extend_from_slice(&tag);
        windowed.extend_from_slice(b"DS\x04\x00");
        windowed.extend_from_slice(value);
    }
    assert_eq!(
        same_both_ways("a window after the pixel data", &windowed),
        dicom::Route::InPlace
    );
    assert_ne!(
        dicom::decode(&windowed).unwrap(),
        dicom::decode(&bytes).unwrap()
    );
}

/// Pixel data shorter than Rows x Columns x BitsAllocated says is refused as before (the
/// general way's message), in every native encoding, never a panic.
#[test]
fn short_native_pixel_data_is_refused_as_before() {
    for (name, big_endian, header) in [
        ("MR_small.dcm", false, 12),
        ("MR_small_bigendian.dcm", true, 12),
        ("MR_small_implicit.dcm", false, 8),
    ] {
        let bytes = read(name);
        let at = pixel_data_at(&bytes, big_endian);
        for len in [8190, 4096, 2, 0] {
            let short = with_pixel_length(&bytes, at, header, big_endian, len);
            let what = format!("{name} with {len} bytes of pixel data");
            assert_eq!(same_both_ways(&what, &short), dicom::Route::General);
            let want = format!("the pixel data holds {len} bytes; 64x64 MONOCHROME2 needs 8192");
            for err in [
                dicom::decode(&short).unwrap_err(),
                dicom::read_stored(&short).unwrap_err(),
            ] {
                let err = format!("{err:#}");
                assert!(err.contains(&want), "{what}: {err}");
            }
        }
        // Longer than needed: the first 8192 bytes are the image, as before.
        let long = with_pixel_length(&bytes, at, header, big_endian, 8194);
        assert_eq!(same_both_ways(name, &long), dicom::Route::InPlace);
        assert_eq!(
            dicom::decode(&long).unwrap(),
            dicom::decode(&bytes).unwrap()
        );
    }
}

/// Every one of pydicom's test files reads the same both ways (the image or the error), and
/// those read in place include big endian, implicit VR, BitsAllocated 8, 16 and 32, signed and
/// MONOCHROME1 files.
#[test]
#[ignore = "needs pydicom's test files in .venv (scripts/setup.sh --ref)"]
fn pydicom_test_files_read_the_same_in_place() {
    let (root, files) = pydicom_test_files();
    let mut in_place = Vec::new();
    for rel in &files {
        let bytes = std::fs::read(root.join(rel)).unwrap();
        if same_both_ways(rel, &bytes) == dicom::Route::InPlace {
            in_place.push(rel.as_str());
        }
    }
    for want in [
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "ExplVR_BigEnd.dcm",
        "SC_rgb_small_odd_big_endian.dcm",
        "rtdose_1frame.dcm",
        "rtdose_expb_1frame.dcm",
        "CT_small.dcm",
        "dicomdirtests/77654033/CR1/6154",
        "examples_rgb_color.dcm",
    ] {
        assert!(
            in_place.contains(&want),
            "{want} was not read in place: {in_place:?}"
        );
    }
}
