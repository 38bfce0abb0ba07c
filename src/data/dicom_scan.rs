//! A structural pre-scan of a DICOM file, run before dicom-rs parses it (docs/datasets.md#dicom).
//!
//! dicom-rs (dicom-parser 0.10, `stateful/decode.rs`) allocates an element's whole value
//! before it reads it, so a damaged file whose element claims a length of 4 GB makes it
//! allocate 4 GB, and then fail at the end of the file. This scan walks the element headers
//! without reading the values (it seeks over them) and checks every defined length against the
//! bytes that remain: in the file, or in the defined-length item or sequence around it. A
//! length that does not fit is refused with the element, its byte offset and the bytes left.
//!
//! The structure is the one dicom-rs reads, since what the scan must foresee is what dicom-rs
//! will allocate (`dicom-parser/src/dataset/read.rs`, `DataSetReader::next`):
//! - data element structure, DICOM PS3.5 section 7.1: explicit VR with a 2-byte length for
//!   AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US, 2 reserved bytes and a
//!   4-byte length for the other VRs and for an unknown VR (which dicom-rs reads as UN);
//!   implicit VR with a 4-byte length and the VR from the standard dictionary;
//! - nesting of data sets in sequences, PS3.5 section 7.5: items (FFFE,E000) of defined
//!   length, or undefined length closed by (FFFE,E00D), in sequences of defined length or
//!   closed by (FFFE,E0DD). dicom-rs reads any other element of undefined length as such a
//!   sequence, in the data set's own encoding: also UN, whose content PS3.5 6.2.2 says is
//!   implicit VR (so pydicom's `UN_sequence.dcm` is damaged for dicom-rs, which would allocate
//!   3.7 GB for it);
//! - encapsulated pixel data, PS3.5 section A.4: Pixel Data (7FE0,0010) of undefined length
//!   holds items of defined length (the offset table and the fragments), only bounds-checked.
//!
//! As dicom-rs, the scan ends quietly where the file ends before an element's tag or inside a
//! pixel data item header, skips an item delimiter outside any sequence, and with
//! `header_only` stops at the first top-level element from Pixel Data on (`read_until`).
//! Where dicom-rs fails on its own without a large allocation (the file meta group's own
//! checks, an unknown transfer syntax) the scan leaves the message to it. Deflated data sets
//! are not scanned (their bytes are compressed, so the lengths cannot be checked against the
//! file); only their file meta group is.
//!
//! `check_bytes` also says where the data set's Pixel Data value lies in the file, so that
//! `dicom` can read native pixel data in place instead of having dicom-rs copy it into memory.

use anyhow::{bail, Context, Result};
use dicom_core::VR;
use dicom_object::StandardDataDictionary;
use dicom_object::Tag;
use std::io::{Read, Seek, SeekFrom};

/// Sequences nested deeper than this are refused: the in-memory object dicom-rs builds is
/// recursive, so a crafted file must not nest without bound.
pub const MAX_DEPTH: usize = 64;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// The VRs with a 2-byte length in explicit VR (PS3.5 Table 7.1-2); dicom-encoding's
/// `explicit_le.rs`, `decode_header`.
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

/// Check the structure of the DICOM file in `src` from its current position to its end (see
/// the module's doc); the position afterwards is unspecified. A source that does not start
/// like a DICOM file passes (the parser says what it is).
pub fn check<R: Read + Seek>(src: &mut R, header_only: bool) -> Result<()> {
    scan(src, header_only).map(|_| ())
}

/// The data set's Pixel Data (7FE0,0010) element as the scan met it: a value of defined length
/// at the top level of a data set that is not deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelValue {
    /// Offset of the element's 4-byte value length in the file.
    pub length_at: usize,
    /// Offset of the value in the file.
    pub start: usize,
    /// The value's length in bytes.
    pub len: usize,
    /// The VR as written (explicit VR); `None` in implicit VR, where dicom-rs reads OW.
    pub vr: Option<[u8; 2]>,
    /// Explicit VR Big Endian.
    pub big_endian: bool,
}

/// `check` (not header-only) of a whole file held in memory, and its Pixel Data value where
/// dicom-rs reads that value, and nothing else, from those bytes: a single top-level Pixel
/// Data element of defined length with a 4-byte length (implicit VR, or the VRs OB, OW and UN;
/// OW of even length), in a file where no element before it has a length that is not a multiple
/// of its VR's value size (dicom-rs would read fewer bytes than the length says, and from then
/// on read the file at other offsets than the scan does).
pub fn check_bytes(bytes: &[u8]) -> Result<Option<PixelValue>> {
    let s = scan(&mut std::io::Cursor::new(bytes), false)?;
    Ok(match s.pixel {
        Some(p) if s.pixel_elements == 1 && !s.uneven_before_pixel => Some(p),
        _ => None,
    })
}

/// What a scan found besides the damage it refuses.
struct Found {
    pixel: Option<PixelValue>,
    /// Top-level Pixel Data elements, of any length and VR.
    pixel_elements: usize,
    /// An element before the (first) top-level Pixel Data whose length is not a multiple of its
    /// VR's value size.
    uneven_before_pixel: bool,
}

fn scan<R: Read + Seek>(src: &mut R, header_only: bool) -> Result<Found> {
    let start = src.stream_position().context(READ)?;
    let end = src.seek(SeekFrom::End(0)).context(READ)?;
    src.seek(SeekFrom::Start(start)).context(READ)?;
    let mut s = Scan {
        src,
        start,
        pos: start,
        end,
        explicit: true,
        big: false,
        header_only,
        found: Found {
            pixel: None,
            pixel_elements: 0,
            uneven_before_pixel: false,
        },
    };
    s.file()?;
    Ok(s.found)
}

struct Scan<'a, R> {
    src: &'a mut R,
    /// Where the file starts in the source (offsets in messages are from there).
    start: u64,
    pos: u64,
    end: u64,
    explicit: bool,
    big: bool,
    header_only: bool,
    found: Found,
}

/// Whether the walk goes on, or the data ended where dicom-rs ends quietly.
#[derive(PartialEq)]
enum Flow {
    Go,
    Stop,
}

/// One element header (or item header: no VR).
struct Header {
    tag: Tag,
    len: u32,
    /// Offset of the header in the file.
    at: u64,
}

fn tag_str(t: Tag) -> String {
    format!("({:04X},{:04X})", t.0, t.1)
}

const READ: &str = "cannot read the file";
const DAMAGED: &str = "the file is damaged or not valid DICOM";

impl<R: Read + Seek> Scan<'_, R> {
    fn offset(&self, pos: u64) -> u64 {
        pos - self.start
    }

    fn left(&self, limit: u64) -> u64 {
        limit.saturating_sub(self.pos)
    }

    fn read<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.src.read_exact(&mut b).context(READ)?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.read::<2>()?;
        Ok(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.read::<4>()?;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        // `seek_relative` keeps a BufReader's buffer where the skip stays inside it.
        self.src.seek_relative(n as i64).context(READ)?;
        self.pos += n;
        Ok(())
    }

    /// The preamble, the file meta group and the data set.
    fn file(&mut self) -> Result<()> {
        let mut head = [0u8; 132];
        let n = (self.end - self.start).min(132) as usize;
        self.src.read_exact(&mut head[..n]).context(READ)?;
        // As `dicom::open`: "DICM" after the 128-byte preamble, or first.
        let meta = if n == 132 && &head[128..132] == b"DICM" {
            132
        } else if n >= 4 && &head[..4] == b"DICM" {
            4
        } else {
            return Ok(());
        };
        self.src
            .seek(SeekFrom::Start(self.start + meta))
            .context(READ)?;
        self.pos = self.start + meta;
        let Some(ts) = self.meta()? else {
            return Ok(());
        };
        let ts = ts.trim_end_matches(['\0', ' ']);
        match ts {
            // Deflated Explicit VR Little Endian, JPIP Referenced Deflate: compressed data sets.
            "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => return Ok(()),
            "1.2.840.10008.1.2" => self.explicit = false,
            "1.2.840.10008.1.2.2" => self.big = true,
            _ => {}
        }
        self.elements(self.end, 0, false, true).map(|_| ())
    }

    /// The file meta group (explicit VR little endian), as dicom-object's `FileMetaTable`
    /// reads it (`meta.rs`, `read_from`): the group length (0002,0000) first, then elements
    /// while it lasts. The transfer syntax UID, or None where dicom-rs will refuse the group.
    fn meta(&mut self) -> Result<Option<String>> {
        let end = self.end;
        let Some(h) = self.meta_header()? else {
            return Ok(None);
        };
        if h.tag != Tag(0x0002, 0x0000) || h.len != 4 || self.left(end) < 4 {
            return Ok(None);
        }
        let group_len = u32::from_le_bytes(self.read::<4>()?) as u64;
        let group_start = self.pos;
        let mut ts = None;
        while self.pos - group_start < group_len {
            let Some(h) = self.meta_header()? else {
                return Ok(None);
            };
            if h.len == UNDEFINED {
                return Ok(None);
            }
            self.fits(&h, end, "")?;
            if h.tag == Tag(0x0002, 0x0010) && h.len <= 1024 {
                let mut v = vec![0u8; h.len as usize];
                self.src.read_exact(&mut v).context(READ)?;
                self.pos += h.len as u64;
                ts = Some(String::from_utf8_lossy(&v).into_owned());
            } else {
                self.skip(h.len as u64)?;
            }
        }
        Ok(ts)
    }

    /// An explicit VR little endian header of the meta group; None where the file ends in it.
    fn meta_header(&mut self) -> Result<Option<Header>> {
        if self.left(self.end) < 8 {
            return Ok(None);
        }
        let at = self.pos;
        let b = self.read::<6>()?;
        let tag = Tag(
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        );
        let vr = [b[4], b[5]];
        let len = if SHORT_VRS.contains(&&vr) {
            u16::from_le_bytes(self.read::<2>()?) as u32
        } else {
            if self.left(self.end) < 6 {
                return Ok(None);
            }
            self.skip(2)?;
            u32::from_le_bytes(self.read::<4>()?)
        };
        Ok(Some(Header { tag, len, at }))
    }

    /// Refuse a defined length that does not fit in what remains before `limit`; `inside` names
    /// the enclosing item or sequence ("" at the top level).
    fn fits(&self, h: &Header, limit: u64, inside: &str) -> Result<()> {
        let left = self.left(limit);
        // Where the bound is the file's end, the bytes that follow are the file's.
        let inside = if limit == self.end { "" } else { inside };
        if h.len as u64 > left {
            let what = if h.tag == ITEM {
                "item".to_string()
            } else {
                format!("element {}", tag_str(h.tag))
            };
            bail!(
                "{what} at byte {} claims {} bytes, but only {left} bytes follow{inside}: \
                 {DAMAGED}",
                self.offset(h.at),
                h.len
            );
        }
        Ok(())
    }

    /// Fewer bytes than a header before `limit`: where the file ends before a tag, the end,
    /// as for dicom-rs (Ok: stop quietly); elsewhere, damage.
    fn short(&self, limit: u64, need: u64) -> Result<()> {
        if limit == self.end && self.left(limit) < 4 {
            return Ok(());
        }
        bail!(
            "{} bytes at byte {} are too few for the {need}-byte header of the next element{}: \
             {DAMAGED}",
            self.left(limit),
            self.offset(self.pos),
            if limit == self.end {
                " at the end of the file"
            } else {
                " of its item or sequence"
            }
        )
    }

    /// Elements up to `limit`, or up to the item delimiter when `undefined_item`: an item of
    /// undefined length; `top`: the data set itself.
    fn elements(
        &mut self,
        limit: u64,
        depth: usize,
        undefined_item: bool,
        top: bool,
    ) -> Result<Flow> {
        let inside = if top { "" } else { " in its item" };
        loop {
            if self.pos == limit && !undefined_item {
                return Ok(Flow::Go);
            }
            if self.left(limit) < 8 {
                self.short(limit, 8)?;
                return Ok(Flow::Stop);
            }
            let at = self.pos;
            let tag = Tag(self.u16()?, self.u16()?);
            // The VR as written (explicit VR), and as dicom-rs reads it.
            let mut written = None;
            let (sq, len, vr) = if tag.0 == 0xFFFE {
                // Items and delimiters have no VR, in explicit VR too.
                (false, self.u32()?, None)
            } else if self.explicit {
                let vr = self.read::<2>()?;
                written = Some(vr);
                if SHORT_VRS.contains(&&vr) {
                    (false, self.u16()? as u32, Some(explicit_vr(vr)))
                } else {
                    if self.left(limit) < 6 {
                        bail!(
                            "the file ends in the header of element {} at byte {}: {DAMAGED}",
                            tag_str(tag),
                            self.offset(at)
                        );
                    }
                    self.skip(2)?;
                    (&vr == b"SQ", self.u32()?, Some(explicit_vr(vr)))
                }
            } else {
                let vr = implicit_vr(tag);
                (vr == VR::SQ, self.u32()?, Some(vr))
            };
            let h = Header { tag, len, at };
            if top && tag == PIXEL_DATA && !self.header_only {
                self.pixel_element(&h, written, limit);
            }
            if let Some(vr) = vr {
                if self.found.pixel_elements == 0 && len != UNDEFINED && len % value_size(vr) != 0 {
                    self.found.uneven_before_pixel = true;
                }
            }
            if tag == ITEM_END {
                if undefined_item {
                    return Ok(Flow::Go);
                }
                if top {
                    // dicom-rs skips an item delimiter outside any sequence.
                    continue;
                }
                bail!(
                    "an item delimiter (FFFE,E00D) at byte {} ends an item of defined length: \
                     {DAMAGED}",
                    self.offset(at)
                );
            }
            if top && self.header_only && tag >= PIXEL_DATA {
                return Ok(Flow::Stop);
            }
            if len == UNDEFINED {
                let pixel = tag == PIXEL_DATA;
                if self.sequence(&h, limit, depth, pixel)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
                continue;
            }
            self.fits(&h, limit, inside)?;
            if sq {
                let seq_end = self.pos + len as u64;
                if self.sequence(&h, seq_end, depth, false)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            } else {
                self.skip(len as u64)?;
            }
        }
    }

    /// Note a top-level Pixel Data element whose header `h` (with the VR `vr` as written in
    /// explicit VR) was just read: the position is at its value.
    fn pixel_element(&mut self, h: &Header, vr: Option<[u8; 2]>, limit: u64) {
        self.found.pixel_elements += 1;
        // The 4-byte length forms only: 8-byte headers in implicit VR, 12-byte in explicit VR.
        match (self.explicit, self.pos - h.at) {
            (false, 8) | (true, 12) => {}
            _ => return,
        }
        let native = match vr {
            None => h.len.is_multiple_of(2),
            Some(v) => &v == b"OB" || &v == b"UN" || (&v == b"OW" && h.len.is_multiple_of(2)),
        };
        if h.len == UNDEFINED || !native || h.len as u64 > self.left(limit) {
            return;
        }
        self.found.pixel = Some(PixelValue {
            length_at: (self.pos - 4 - self.start) as usize,
            start: (self.pos - self.start) as usize,
            len: h.len as usize,
            vr,
            big_endian: self.big,
        });
    }

    /// The items of sequence `h` (or of encapsulated pixel data): up to `limit` for a
    /// defined-length sequence, else up to the sequence delimiter within `limit`.
    fn sequence(&mut self, h: &Header, limit: u64, depth: usize, pixel: bool) -> Result<Flow> {
        if depth >= MAX_DEPTH {
            bail!(
                "element {} at byte {} nests sequences more than {MAX_DEPTH} deep: medfm does \
                 not read such files ({DAMAGED})",
                tag_str(h.tag),
                self.offset(h.at)
            );
        }
        let undefined = h.len == UNDEFINED;
        let inside = format!(" in {}", tag_str(h.tag));
        loop {
            if !undefined && self.pos == limit {
                return Ok(Flow::Go);
            }
            if self.left(limit) < 8 {
                // dicom-rs ends quietly where the file ends in a pixel data item header.
                if !(pixel && limit == self.end) {
                    self.short(limit, 8)?;
                }
                return Ok(Flow::Stop);
            }
            let at = self.pos;
            let tag = Tag(self.u16()?, self.u16()?);
            let len = self.u32()?;
            let item = Header { tag, len, at };
            match tag {
                SEQUENCE_END if undefined => return Ok(Flow::Go),
                ITEM if pixel => {
                    if len == UNDEFINED {
                        bail!(
                            "a pixel data fragment at byte {} has an undefined length: \
                             {DAMAGED}",
                            self.offset(at)
                        );
                    }
                    self.fits(&item, limit, &inside)?;
                    self.skip(len as u64)?;
                }
                ITEM if len == UNDEFINED => {
                    if self.elements(limit, depth + 1, true, false)? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
                ITEM => {
                    self.fits(&item, limit, &inside)?;
                    let item_end = self.pos + len as u64;
                    if self.elements(item_end, depth + 1, false, false)? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
                _ => bail!(
                    "expected an item (FFFE,E000) of {} at byte {}, found {}: {DAMAGED}",
                    tag_str(h.tag),
                    self.offset(at),
                    tag_str(tag)
                ),
            }
        }
    }
}

/// The VR dicom-encoding's implicit VR decoder gives `tag` (`implicit_le.rs`, `decode_header`):
/// OW for Pixel Data and Overlay Data, else the standard dictionary's relaxed VR, else UN.
fn implicit_vr(tag: Tag) -> VR {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    if tag == PIXEL_DATA || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map_or(VR::UN, |e| e.vr().relaxed())
}

/// The VR of an explicit VR header as dicom-encoding reads it (`explicit_le.rs`,
/// `decode_header`): an unknown one is UN.
fn explicit_vr(vr: [u8; 2]) -> VR {
    VR::from_binary(vr).unwrap_or(VR::UN)
}

/// The size of one value of `vr` as dicom-parser reads it (`stateful/decode.rs`: `len >> 1`
/// values of US, `len >> 2` of UL, ...); 1 for the VRs it reads byte for byte.
fn value_size(vr: VR) -> u32 {
    match vr {
        VR::US | VR::OW | VR::SS => 2,
        VR::AT | VR::UL | VR::OL | VR::SL | VR::FL | VR::OF => 4,
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
        _ => 1,
    }
}
