//! Decoding of opcode arguments: the text forms of protocol 0 (decimal numbers, quoted and
//! raw-unicode-escaped strings) and the little-endian longs of LONG1 / LONG4.

use super::value::Value;
use anyhow::{anyhow, bail, Result};
use std::rc::Rc;

pub(super) fn parse_ascii<T: std::str::FromStr>(line: &[u8], what: &str) -> Result<T> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse::<T>().ok())
        .ok_or_else(|| anyhow!("bad {what} argument {:?}", String::from_utf8_lossy(line)))
}

/// Python refuses to convert longer decimal strings (sys.int_info.str_digits_check_threshold);
/// the cap also keeps the quadratic conversion below cheap.
const MAX_DECIMAL_DIGITS: usize = 4300;

/// A decimal integer (optionally negative) -> minimal little-endian two's complement bytes, the
/// LONG1 encoding, so every wide int has one representation.
pub(super) fn decimal_to_le(s: &[u8]) -> Result<Vec<u8>> {
    let (negative, digits) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.len() > MAX_DECIMAL_DIGITS {
        bail!("integer literal of {} digits is too long", digits.len());
    }
    // magnitude, little-endian base 256
    let mut mag: Vec<u8> = vec![];
    for &d in digits {
        let mut carry = (d - b'0') as u32;
        for byte in mag.iter_mut() {
            let v = *byte as u32 * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if carry > 0 {
            mag.push(carry as u8);
        }
    }
    if negative {
        // two's complement: invert and add one
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let v = (!*byte) as u16 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
    }
    // add a sign byte if the top bit disagrees with the sign, then trim redundant ones
    let fill = if negative { 0xFF } else { 0 };
    if mag.last().is_none_or(|&b| (b & 0x80 != 0) != negative) {
        mag.push(fill);
    }
    while mag.len() > 1
        && mag[mag.len() - 1] == fill
        && (mag[mag.len() - 2] & 0x80 != 0) == negative
    {
        mag.pop();
    }
    Ok(mag)
}

pub(super) fn is_decimal(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

pub(super) fn ascii_line(line: &[u8]) -> Result<String> {
    match std::str::from_utf8(line) {
        Ok(s) if s.is_ascii() => Ok(s.to_string()),
        _ => bail!("global name is not ASCII"),
    }
}

/// LONG1/LONG4 payload: little-endian two's complement.
pub(super) fn long_from_le(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xFF } else { 0 };
    // Fits in i64 if every byte beyond the 8th is sign extension of the 8th byte's top bit.
    let fits =
        b.len() <= 8 || (b[8..].iter().all(|&x| x == fill) && (b[7] & 0x80 != 0) == negative);
    if !fits {
        return Value::BigInt(Rc::from(b));
    }
    let mut a = [fill; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    Value::Int(i64::from_le_bytes(a))
}

/// Python 2 `str` (STRING / BINSTRING): text if UTF-8 (torch loads with encoding="utf-8"),
/// else bytes.
pub(super) fn str_or_bytes(raw: Vec<u8>) -> Value {
    match String::from_utf8(raw) {
        Ok(s) => Value::Str(Rc::from(s)),
        Err(e) => Value::Bytes(Rc::from(e.into_bytes())),
    }
}

/// The quoted Python-2 repr of a STRING opcode -> bytes.
pub(super) fn unquote_string(line: &[u8]) -> Result<Vec<u8>> {
    let inner = match line {
        [q, inner @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => inner,
        _ => bail!("STRING argument is not quoted"),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *inner
            .get(i)
            .ok_or_else(|| anyhow!("STRING ends in a backslash"))?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let hex = inner
                    .get(i..i + 2)
                    .ok_or_else(|| anyhow!("short \\x escape"))?;
                let s = std::str::from_utf8(hex).map_err(|_| anyhow!("bad \\x escape"))?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| anyhow!("bad \\x escape"))?);
                i += 2;
            }
            _ => bail!("unsupported escape \\{} in STRING", e as char),
        }
    }
    Ok(out)
}

/// UNICODE (protocol 0) uses raw-unicode-escape: bytes are Latin-1 except `\uXXXX` and
/// `\UXXXXXXXX`.
pub(super) fn raw_unicode_escape(line: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        let width = match (c, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(c as char);
            i += 1;
            continue;
        }
        let hex = line
            .get(i + 2..i + 2 + width)
            .ok_or_else(|| anyhow!("short unicode escape"))?;
        let code = std::str::from_utf8(hex)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .and_then(char::from_u32)
            .ok_or_else(|| anyhow!("bad unicode escape"))?;
        out.push(code);
        i += 2 + width;
    }
    Ok(out)
}
