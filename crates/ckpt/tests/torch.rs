//! torch.save archives from tests/fixtures/weights, parsed without libtorch.

use medfm_ckpt::torch::{tensor_bytes, Layout, Selected, TorchArchive};
use medfm_ckpt::Dtype;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/weights")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn views_keep_offsets_and_strides() {
    for (name, big_endian) in [("views.pth", false), ("views_be.pth", true)] {
        let data = fixture(name);
        let archive = TorchArchive::parse(&data[..]).unwrap();
        assert_eq!(archive.big_endian, big_endian);
        let refs = archive.state_dict(None).unwrap();
        assert_eq!(refs.selected, Selected::TopLevel);
        let get = |k: &str| &refs.tensors.iter().find(|(n, _)| n == k).unwrap().1;
        let t = get("t");
        assert_eq!(
            (t.shape.clone(), t.strides.clone(), t.offset),
            (vec![6, 4], vec![1, 6], 0)
        );
        let s = get("slice");
        assert_eq!(
            (s.shape.clone(), s.strides.clone(), s.offset),
            (vec![2, 3], vec![6, 1], 8)
        );
        assert_eq!(get("expanded").strides, vec![0, 1]);
        // every view shares the one storage
        assert!(refs
            .tensors
            .iter()
            .all(|(_, t)| t.storage.key == get("base").storage.key));
        let storage = archive.read_storage(&data[..], &s.storage.key).unwrap();
        let values = f32s(&tensor_bytes(s, &storage, archive.big_endian).unwrap());
        let want: Vec<f32> = [8.0, 9.0, 10.0, 14.0, 15.0, 16.0]
            .iter()
            .map(|x| x / 7.0)
            .collect();
        assert_eq!(values, want);
        let e = get("expanded");
        let values = f32s(&tensor_bytes(e, &storage, archive.big_endian).unwrap());
        assert_eq!(values[..4], values[8..]);
    }
}

#[test]
fn nested_selection_and_dtypes() {
    let data = fixture("ema.pth");
    let archive = TorchArchive::parse(&data[..]).unwrap();
    match &archive.layout {
        Layout::Zip { prefix, .. } => assert_eq!(prefix, "ema/"),
        Layout::Legacy { .. } => panic!("ema.pth is a zip archive"),
    }
    let refs = archive.state_dict(Some("model_ema")).unwrap();
    assert_eq!(refs.selected, Selected::Nested("model_ema".into()));
    let names: Vec<&str> = refs.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "fc1.weight",
            "fc1.bias",
            "norm.weight",
            "norm.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.num_batches_tracked",
            "fc2.weight"
        ]
    );
    assert_eq!(refs.tensors[8].1.dtype, Dtype::I64);
    // the optimizer's nested state is not a flat dict of tensors
    let e = format!("{:#}", archive.state_dict(Some("optimizer")).unwrap_err());
    assert!(
        e.contains("the state dict `optimizer` holds 2 non-tensor value(s)"),
        "{e}"
    );
}

#[test]
fn every_truncation_of_an_archive_is_an_error() {
    let data = fixture("plain.pth");
    for cut in 0..data.len() {
        let result = TorchArchive::parse(&data[..cut]).and_then(|a| a.state_dict(None).map(|_| a));
        assert!(result.is_err(), "cut at {cut} parsed");
    }
}

#[test]
fn legacy_format() {
    let data = fixture("legacy.pth");
    let archive = TorchArchive::parse(&data[..]).unwrap();
    let Layout::Legacy { storages } = &archive.layout else {
        panic!("not legacy")
    };
    assert_eq!(storages.len(), 10);
    let refs = archive.state_dict(None).unwrap();
    assert_eq!(refs.tensors.len(), 10);
    let (name, t) = &refs.tensors[0];
    assert_eq!((name.as_str(), t.shape.clone()), ("fc1.weight", vec![3, 4]));
    let storage = archive.read_storage(&data[..], &t.storage.key).unwrap();
    assert_eq!(storage.len(), 48);
    for cut in 0..data.len() {
        let result = TorchArchive::parse(&data[..cut]).and_then(|a| a.state_dict(None).map(|_| a));
        assert!(result.is_err(), "cut at {cut} parsed");
    }
}

#[test]
fn formats_are_detected_from_content() {
    use medfm_ckpt::{detect_format, Format, DETECT_LEN};
    let cases = [
        ("plain.pth", Format::TorchZip),
        ("clip_like.bin", Format::TorchZip),
        ("legacy.pth", Format::TorchLegacy),
        ("legacy_proto1.pth", Format::TorchLegacy),
        ("legacy_proto4.pth", Format::TorchLegacy),
        ("model.safetensors", Format::Safetensors),
        ("pickle_cases.pkl", Format::Unknown),
    ];
    for (name, want) in cases {
        let data = fixture(name);
        assert_eq!(detect_format(&data[..DETECT_LEN]), want, "{name}");
    }
    assert_eq!(detect_format(b""), Format::Unknown);
    assert_eq!(detect_format(b"\x80\x04\x95"), Format::Unknown);
}
