//! Arbitrary bytes as a safetensors file: header validation, then reading every tensor's bytes
//! (which validation guarantees to be inside the data).
#![no_main]

use libfuzzer_sys::fuzz_target;
use medfm_ckpt::safetensors::parse_header;
use medfm_ckpt::ByteSource;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = parse_header(data) {
        for t in &header.tensors {
            let bytes = data
                .read_vec(t.offset, t.len)
                .expect("validated range must be readable");
            assert_eq!(bytes.len() as u64, t.len);
        }
    }
});
