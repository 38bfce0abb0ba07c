//! What the unpickler builds: plain values plus a heap of shared objects (pickle's memo makes
//! objects shared and mutable after creation, so containers live in the heap and are referred
//! to by id; this also keeps cyclic or deeply shared structures cheap and drop-safe).

use crate::dtype::Dtype;
use std::collections::HashMap;
use std::rc::Rc;

pub type ObjId = usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A Python int wider than 64 bits: minimal little-endian two's complement bytes, as
    /// LONG1 / LONG4 store them (`pickle.encode_long`).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(ObjId),
}

/// Objects created by the unpickler.
#[derive(Debug, Clone)]
pub enum Object {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Dict),
    Set(Vec<Value>),
    /// A global (`module.name`) looked up by GLOBAL / STACK_GLOBAL.
    Global(Global),
    /// An object whose class or constructor is not allow-listed. It is never constructed or
    /// called; it only records what it would have been.
    Refused(Rc<str>),
    /// A storage of the archive (persistent id `('storage', type, key, location, numel)`).
    Storage(Storage),
    Tensor(TensorRef),
    Device(Rc<str>),
}

/// Globals the unpickler knows. Anything else becomes `Refused`.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    OrderedDict,
    Set,
    FrozenSet,
    Bytearray,
    Bytes,
    CodecsEncode,
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    /// `torch.Tensor` / `torch.nn.parameter.Parameter` (the types `_rebuild_from_type_v2` names).
    TensorType,
    /// `torch.<X>Storage` (typed) or `torch.UntypedStorage` (`None`: bytes, dtype given later).
    StorageType(Option<Dtype>),
    Dtype(Dtype),
    Size,
    Device,
    Refused(Rc<str>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// Member name under `<archive>/data/` (zip) or the storage's key (legacy format).
    pub key: Rc<str>,
    /// Dtype of the typed storage; `None` for an untyped (byte) storage.
    pub dtype: Option<Dtype>,
    /// Byte offset into the stored data: non-zero only for the storage views of the legacy
    /// format (torch < 0.4 wrote them).
    pub base: u64,
    /// Size in bytes as recorded in the pickle.
    pub nbytes: u64,
    pub location: Rc<str>,
}

/// A tensor view of a storage, validated to lie inside the recorded storage size.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: Storage,
    pub dtype: Dtype,
    /// In elements of `dtype`.
    pub offset: u64,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
    /// The lazily negated bit of `torch._utils.get_tensor_metadata`.
    pub negated: bool,
}

impl TensorRef {
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Byte range of the stored data this view touches: `(start, len)`; empty tensors touch nothing.
    pub fn byte_span(&self) -> (u64, u64) {
        if self.numel() == 0 {
            return (0, 0);
        }
        let extent: u64 = 1 + self
            .shape
            .iter()
            .zip(&self.strides)
            .map(|(&d, &s)| (d as u64 - 1) * s as u64)
            .sum::<u64>();
        let es = self.dtype.size() as u64;
        (self.storage.base + self.offset * es, extent * es)
    }

    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1i64;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }
}

/// An insertion-ordered dict; str/int/bool keys are indexed so a repeated key replaces the
/// value as in Python. Other keys (tuples, floats, placeholders) are kept as given.
#[derive(Debug, Clone, Default)]
pub struct Dict {
    pub items: Vec<(Value, Value)>,
    index: HashMap<HashKey, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HashKey {
    Str(Rc<str>),
    Int(i64),
}

impl Dict {
    pub fn insert(&mut self, key: Value, value: Value) {
        let hk = match &key {
            Value::Str(s) => Some(HashKey::Str(s.clone())),
            Value::Int(i) => Some(HashKey::Int(*i)),
            Value::Bool(b) => Some(HashKey::Int(*b as i64)),
            _ => None,
        };
        match hk {
            Some(hk) => match self.index.get(&hk) {
                Some(&i) => self.items[i].1 = value,
                None => {
                    self.index.insert(hk, self.items.len());
                    self.items.push((key, value));
                }
            },
            None => self.items.push((key, value)),
        }
    }

    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.index
            .get(&HashKey::Str(key.into()))
            .map(|&i| &self.items[i].1)
    }
}
