//! Safetensors header validation: each rule of the format gives a named error.

use medfm_ckpt::safetensors::parse_header;
use medfm_ckpt::Dtype;

/// A file from a header JSON and `data_len` bytes of data.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend((0..data_len).map(|i| i as u8));
    out
}

fn err(data: &[u8]) -> String {
    match parse_header(data) {
        Ok(h) => panic!("parsed {} tensors but should fail", h.tensors.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn valid_header() {
    let h = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},"a":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},"e":{"dtype":"I64","shape":[0,5],"data_offsets":[14,14]}}"#;
    let data = file(h, 14);
    let header = parse_header(&data[..]).unwrap();
    assert_eq!(
        header.metadata,
        vec![("format".to_string(), "pt".to_string())]
    );
    let a = header.tensors.iter().find(|t| t.name == "a").unwrap();
    assert_eq!(
        (a.dtype, a.shape.clone(), a.offset, a.len),
        (Dtype::F32, vec![2, 1], 8 + h.len() as u64, 8)
    );
    let b = header.tensors.iter().find(|t| t.name == "b").unwrap();
    assert_eq!(
        (b.dtype, b.offset, b.len),
        (Dtype::BF16, 8 + h.len() as u64 + 8, 6)
    );
}

#[test]
fn invalid_headers() {
    let t = |dtype: &str, shape: &str, offs: &str| {
        format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offs}}}}}"#)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![1, 0, 0], "too short"),
        (file("{}", 0)[..9].to_vec(), "the file is only 9 bytes"),
        (
            (200_000_000u64).to_le_bytes().to_vec(),
            "exceeds the 100000000-byte limit",
        ),
        (file("[1,2]", 0), "not a JSON object"),
        (file("{\"t\":", 0), "not valid JSON"),
        (
            file(&t("F32", "[2]", "[0,8]"), 4),
            "lies past the end of the data section",
        ),
        (
            file(&t("F32", "[2]", "[0,4]"), 4),
            "span 4 bytes but shape [2] of float32 needs 8",
        ),
        (file(&t("F32", "[2]", "[8,0]"), 8), "run backwards"),
        (
            file(&t("C64", "[1]", "[0,8]"), 8),
            "dtype C64 is not supported",
        ),
        (
            file(&t("F32", "[-1]", "[0,4]"), 4),
            "not a non-negative integer",
        ),
        (
            file(&t("U8", "[4294967296,4294967296]", "[0,1]"), 1),
            "`shape` overflows",
        ),
        (
            file(&t("U8", "[2]", "[0,2]"), 3),
            "cover 2 bytes but the data section holds 3",
        ),
        (file(&t("U8", "[2]", "[1,3]"), 3), "hole before tensor `t`"),
        (
            file(
                r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
                3,
            ),
            "overlaps the previous tensor",
        ),
        (
            file(r#"{"__metadata__":{"k":1}}"#, 0),
            "`__metadata__.k` is not a string",
        ),
        (
            file(
                r#"{"t":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"x":1}}"#,
                0,
            ),
            "unknown field `x`",
        ),
    ];
    for (data, want) in cases {
        let e = err(&data);
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}
