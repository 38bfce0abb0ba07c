//! The zip reader on archives built here: stored and deflated members, zip64 records, and
//! corrupt directories.

use medfm_ckpt::zip::{Archive, Method};

struct Member<'a> {
    name: &'a str,
    data: &'a [u8],
    deflate: bool,
}

/// Write a zip archive; with `zip64`, sizes and offsets go through zip64 extra fields and a
/// zip64 end-of-central-directory record, as writers do for archives over 4 GB.
fn write_zip(members: &[Member], zip64: bool) -> Vec<u8> {
    let mut out = vec![];
    let mut central = vec![];
    for m in members {
        let stored = if m.deflate {
            miniz_oxide::deflate::compress_to_vec(m.data, 6)
        } else {
            m.data.to_vec()
        };
        let offset = out.len() as u64;
        let method: u16 = if m.deflate { 8 } else { 0 };
        let (csize, usize_, off32) = if zip64 {
            (0xFFFF_FFFFu32, 0xFFFF_FFFFu32, 0xFFFF_FFFFu32)
        } else {
            (stored.len() as u32, m.data.len() as u32, offset as u32)
        };
        let mut extra = vec![];
        if zip64 {
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&24u16.to_le_bytes());
            extra.extend_from_slice(&(m.data.len() as u64).to_le_bytes());
            extra.extend_from_slice(&(stored.len() as u64).to_le_bytes());
            extra.extend_from_slice(&offset.to_le_bytes());
        }
        // local header
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0]);
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // time, date, crc
        out.extend_from_slice(&csize.to_le_bytes());
        out.extend_from_slice(&usize_.to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(m.name.as_bytes());
        out.extend_from_slice(&stored);
        // central record
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0; 8]);
        central.extend_from_slice(&csize.to_le_bytes());
        central.extend_from_slice(&usize_.to_le_bytes());
        central.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&[0; 4]); // external attributes
        central.extend_from_slice(&off32.to_le_bytes());
        central.extend_from_slice(m.name.as_bytes());
        central.extend_from_slice(&extra);
    }
    let cd_offset = out.len() as u64;
    out.extend_from_slice(&central);
    let n = members.len() as u64;
    if zip64 {
        let record = out.len() as u64;
        out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(central.len() as u64).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&record.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let (n16, size32, off32) = if zip64 {
        (0xFFFFu16, 0xFFFF_FFFFu32, 0xFFFF_FFFFu32)
    } else {
        (n as u16, central.len() as u32, cd_offset as u32)
    };
    out.extend_from_slice(&n16.to_le_bytes());
    out.extend_from_slice(&n16.to_le_bytes());
    out.extend_from_slice(&size32.to_le_bytes());
    out.extend_from_slice(&off32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn members() -> Vec<Member<'static>> {
    vec![
        Member {
            name: "a/data.pkl",
            data: b"hello",
            deflate: false,
        },
        Member {
            name: "a/data/0",
            data: &[7; 3000],
            deflate: true,
        },
    ]
}

#[test]
fn stored_deflated_and_zip64() {
    for zip64 in [false, true] {
        let data = write_zip(&members(), zip64);
        let archive = Archive::parse(&data[..]).unwrap();
        assert_eq!(archive.entries.len(), 2);
        assert_eq!(
            archive.read(&data[..], "a/data.pkl", 100).unwrap(),
            b"hello"
        );
        assert_eq!(archive.entries["a/data/0"].method, Method::Deflated);
        assert_eq!(
            archive.read(&data[..], "a/data/0", u64::MAX).unwrap(),
            vec![7; 3000]
        );
        let e = format!(
            "{:#}",
            archive.read(&data[..], "a/data/0", 100).unwrap_err()
        );
        assert!(e.contains("more than the 100 allowed"), "{e}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let data = write_zip(&members(), true);
    for cut in 0..data.len() {
        let ok =
            Archive::parse(&data[..cut]).and_then(|a| a.read(&data[..cut], "a/data/0", u64::MAX));
        assert!(ok.is_err(), "cut at {cut} parsed");
    }
}

#[test]
fn corrupt_directories() {
    let data = write_zip(&members(), false);
    let eocd = data.len() - 22;
    // the entry count claims more records than fit in the directory
    let mut many = data.clone();
    many[eocd + 10..eocd + 12].copy_from_slice(&60000u16.to_le_bytes());
    let e = format!("{:#}", Archive::parse(&many[..]).unwrap_err());
    assert!(e.contains("claims 60000 entries"), "{e}");
    // a deflated member that claims an impossible expansion
    let cd = u32::from_le_bytes(data[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    let second = cd + 46 + "a/data.pkl".len();
    let mut bomb = data.clone();
    bomb[second + 24..second + 28].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = format!("{:#}", Archive::parse(&bomb[..]).unwrap_err());
    assert!(e.contains("beyond deflate's ratio"), "{e}");
    // garbage
    let e = format!(
        "{:#}",
        Archive::parse(&b"PK\x03\x04 and nothing else, no directory"[..]).unwrap_err()
    );
    assert!(e.contains("no zip end-of-central-directory record"), "{e}");
}
