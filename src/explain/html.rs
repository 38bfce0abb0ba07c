//! `explain --html`: one static page (`index.html` beside the PNGs) with every explained
//! image, its class and probability; each thumbnail links to its full-size PNG. Only relative
//! links to files in the same folder, so the folder can be moved or served as it is.

use super::Row;
use anyhow::Result;
use std::path::Path;

/// `s` with HTML's special characters escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The file name as a relative URL (percent-encoding what is not URL-safe).
fn href(file: &str) -> String {
    file.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn write(path: &Path, rows: &[Row]) -> Result<()> {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>medfm explain</title>\n\
         <style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;width:260px;\
         vertical-align:top}img{width:256px}figcaption{font-size:12px;word-break:break-all}</style>\n\
         </head><body>\n<h1>medfm explain</h1>\n",
    );
    for r in rows {
        let h = href(&r.file);
        page.push_str(&format!(
            "<figure><a href=\"{h}\"><img src=\"{h}\" alt=\"{}\"></a><figcaption>{}<br>{} {:.3}</figcaption></figure>\n",
            escape(&r.class),
            escape(&r.path),
            escape(&r.class),
            r.probability
        ));
    }
    page.push_str("</body></html>\n");
    crate::util::write_atomic(path, page.as_bytes())
}
