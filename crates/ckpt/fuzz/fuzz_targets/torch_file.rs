//! Arbitrary bytes as a torch.save checkpoint (zip archive or legacy format): container
//! parsing, unpickling, state-dict selection, and materialising every selected tensor's bytes
//! exactly as medfm's loader does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medfm_ckpt::torch::{tensor_bytes, TorchArchive};

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = TorchArchive::parse(data) else {
        return;
    };
    let Ok(refs) = archive.state_dict(None) else {
        return;
    };
    for (_, t) in &refs.tensors {
        let Ok(storage) = archive.read_storage(data, &t.storage.key) else {
            continue;
        };
        if let Ok(bytes) = tensor_bytes(t, &storage, archive.big_endian) {
            assert_eq!(bytes.len() as u64, t.numel() * t.dtype.size() as u64);
        }
    }
});
