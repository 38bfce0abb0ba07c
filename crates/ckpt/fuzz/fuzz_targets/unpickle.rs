//! Arbitrary bytes as `data.pkl`: the unpickler and state-dict selection must return Ok or Err,
//! never panic, hang or allocate beyond the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medfm_ckpt::pickle::unpickle;
use medfm_ckpt::torch::select_state_dict;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = unpickle(data) {
        let _ = p.describe(&p.root);
        for nested in [None, Some("model"), Some("state_dict")] {
            if let Ok(refs) = select_state_dict(&p, nested) {
                for (_, t) in &refs.tensors {
                    let _ = t.byte_span();
                    let _ = t.is_contiguous();
                }
            }
        }
    }
});
