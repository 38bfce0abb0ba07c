//! A restricted unpickler for `torch.save` data: it builds a value tree and never executes
//! anything. See `calls` for the allow-list.

mod calls;
mod machine;
mod text;
mod value;

pub use calls::MAX_DIMS;
pub use value::{Dict, Global, ObjId, Object, Storage, TensorRef, Value};

use anyhow::Result;

/// An unpickled object graph: `root` and the heap its `Value::Obj` ids point into.
#[derive(Debug, Clone)]
pub struct Pickle {
    pub heap: Vec<Object>,
    pub root: Value,
}

/// Unpickle `data` (protocols 0-5). Errors on malformed data; unknown globals do not error but
/// become `Object::Refused` placeholders.
pub fn unpickle(data: &[u8]) -> Result<Pickle> {
    Ok(machine::Machine::new(data).finish()?.0)
}

/// Unpickle the pickle at the start of `data`, which may continue with other data ->
/// (the pickle, its length in bytes). If `data` ends first, the error chain holds `Truncated`.
pub fn unpickle_prefix(data: &[u8]) -> Result<(Pickle, usize)> {
    machine::Machine::new(data).finish()
}

/// Marker error: the data ended before the pickle's STOP (a longer read may succeed).
#[derive(Debug, Clone, Copy)]
pub struct Truncated;

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("truncated?")
    }
}

impl std::error::Error for Truncated {}

impl Pickle {
    pub fn object(&self, v: &Value) -> Option<&Object> {
        match v {
            Value::Obj(id) => self.heap.get(*id),
            _ => None,
        }
    }

    pub fn as_dict(&self, v: &Value) -> Option<&Dict> {
        match self.object(v) {
            Some(Object::Dict(d)) => Some(d),
            _ => None,
        }
    }

    pub fn as_tensor(&self, v: &Value) -> Option<&TensorRef> {
        match self.object(v) {
            Some(Object::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// A short description of a value's type, for error messages ("dict with 3 items",
    /// "refused object (argparse.Namespace)").
    pub fn describe(&self, v: &Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {}", if *b { "True" } else { "False" }),
            Value::Int(i) => format!("int {i}"),
            Value::BigInt(_) => "int (wider than 64 bits)".into(),
            Value::Float(f) => format!("float {f}"),
            Value::Str(s) if s.chars().count() > 40 => "str".into(),
            Value::Str(s) => format!("str {s:?}"),
            Value::Bytes(b) => format!("bytes ({} bytes)", b.len()),
            Value::Obj(id) => match self.heap.get(*id) {
                None => "dangling object".into(),
                Some(Object::List(l)) => format!("list of {}", l.len()),
                Some(Object::Tuple(t)) => format!("tuple of {}", t.len()),
                Some(Object::Dict(d)) => format!("dict with {} items", d.items.len()),
                Some(Object::Set(s)) => format!("set of {}", s.len()),
                Some(Object::Global(g)) => format!("global {}", g.name()),
                Some(Object::Refused(name)) => format!("refused object ({name})"),
                Some(Object::Storage(s)) => format!("storage `{}`", s.key),
                Some(Object::Tensor(t)) => format!("tensor {:?} {}", t.shape, t.dtype),
                Some(Object::Device(d)) => format!("device {d}"),
            },
        }
    }
}
