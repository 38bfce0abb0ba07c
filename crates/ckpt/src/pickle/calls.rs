//! The allow-list: which globals a checkpoint may name, and what REDUCE / NEWOBJ / BUILD /
//! persistent ids do with them. Only pure data constructors are implemented (dicts, sets,
//! bytes, tensor views of archive storages); every other global becomes an inert placeholder.

use super::machine::Machine;
use super::value::{Dict, Global, Object, Storage, TensorRef, Value};
use crate::dtype::Dtype;
use anyhow::{anyhow, bail, Result};
use std::rc::Rc;

/// More dimensions than any real tensor has; bounds the work a hostile shape can cause.
pub const MAX_DIMS: usize = 64;

/// Map `module.name` to a known global, or to a placeholder that records the name.
pub(super) fn resolve_global(module: &str, name: &str) -> Global {
    // Protocol 0-2 pickles written by Python 2 era code use the old module names.
    let module = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        m => m,
    };
    match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("builtins", "set") => Global::Set,
        ("builtins", "frozenset") => Global::FrozenSet,
        ("builtins", "bytearray") => Global::Bytearray,
        ("builtins", "bytes") => Global::Bytes,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => {
            Global::TensorType
        }
        ("torch", "Size") => Global::Size,
        ("torch", "device") => Global::Device,
        ("torch", "UntypedStorage") | ("torch.storage", "UntypedStorage") => {
            Global::StorageType(None)
        }
        ("torch", n) if Dtype::from_torch_storage(n).is_some() => {
            Global::StorageType(Dtype::from_torch_storage(n))
        }
        ("torch", n) if Dtype::from_torch_dtype(n).is_some() => {
            Global::Dtype(Dtype::from_torch_dtype(n).unwrap_or(Dtype::F32))
        }
        _ => Global::Refused(Rc::from(format!("{module}.{name}"))),
    }
}

impl Global {
    /// The Python name, for messages.
    pub fn name(&self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::Set => "builtins.set".into(),
            Global::FrozenSet => "builtins.frozenset".into(),
            Global::Bytearray => "builtins.bytearray".into(),
            Global::Bytes => "builtins.bytes".into(),
            Global::CodecsEncode => "_codecs.encode".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensorV3 => "torch._utils._rebuild_tensor_v3".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::RebuildFromTypeV2 => "torch._tensor._rebuild_from_type_v2".into(),
            Global::TensorType => "torch.Tensor".into(),
            Global::StorageType(Some(d)) => format!("torch storage of {d}"),
            Global::StorageType(None) => "torch.UntypedStorage".into(),
            Global::Dtype(d) => format!("torch.{d}"),
            Global::Size => "torch.Size".into(),
            Global::Device => "torch.device".into(),
            Global::Refused(n) => n.to_string(),
        }
    }
}

fn global_of(m: &Machine, v: &Value) -> Option<Global> {
    match v {
        Value::Obj(id) => match &m.heap[*id] {
            Object::Global(g) => Some(g.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn refused(m: &mut Machine, name: &str) -> Value {
    m.alloc(Object::Refused(Rc::from(name)))
}

/// REDUCE: `callable(*args)`.
pub(super) fn call(m: &mut Machine, callable: &Value, args: Vec<Value>) -> Result<Value> {
    if let Value::Obj(id) = callable {
        if let Object::Refused(name) = &m.heap[*id] {
            // Calling a placeholder (e.g. a method of one) yields another placeholder.
            let name = name.clone();
            return Ok(refused(m, &name));
        }
    }
    let Some(global) = global_of(m, callable) else {
        bail!("REDUCE calls something that is not a global");
    };
    match global {
        Global::Refused(name) => {
            // copyreg helpers reconstruct an instance of their first argument: name that class.
            let name = match (&*name, args.first().and_then(|a| global_of(m, a))) {
                (
                    "copyreg._reconstructor" | "copyreg.__newobj__" | "copyreg.__newobj_ex__",
                    Some(cls),
                ) => cls.name(),
                _ => name.to_string(),
            };
            Ok(refused(m, &name))
        }
        Global::OrderedDict => {
            let mut dict = Dict::default();
            if let Some(init) = args.first() {
                for pair in iter_items(m, init)? {
                    let kv = m.tuple_items(&pair, "OrderedDict items")?;
                    let [k, v] = <[Value; 2]>::try_from(kv)
                        .map_err(|_| anyhow!("OrderedDict item is not a (key, value) pair"))?;
                    dict.insert(k, v);
                }
            }
            Ok(m.alloc(Object::Dict(dict)))
        }
        Global::Set | Global::FrozenSet => {
            let items = match args.first() {
                Some(init) => iter_items(m, init)?,
                None => vec![],
            };
            Ok(m.alloc(Object::Set(items)))
        }
        Global::CodecsEncode | Global::Bytearray | Global::Bytes => bytes_from_args(&global, &args),
        Global::RebuildTensor | Global::RebuildTensorV2 | Global::RebuildTensorV3 => {
            let tensor = rebuild_tensor(m, &global, &args)?;
            Ok(m.alloc(Object::Tensor(tensor)))
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => {
            // The parameter's data is already a tensor (or a placeholder); the rest is autograd
            // state that a state dict does not need.
            args.into_iter()
                .next()
                .ok_or_else(|| anyhow!("{} without arguments", global.name()))
        }
        Global::RebuildFromTypeV2 => {
            let [func, new_type, inner_args, _state] = <[Value; 4]>::try_from(args)
                .map_err(|_| anyhow!("_rebuild_from_type_v2 takes 4 arguments"))?;
            match global_of(m, &new_type) {
                Some(Global::TensorType) => {
                    // Only the non-recursive rebuild functions: a self-referential argument
                    // list must not recurse without bound.
                    let func_ok = matches!(
                        global_of(m, &func),
                        Some(
                            Global::RebuildTensor
                                | Global::RebuildTensorV2
                                | Global::RebuildTensorV3
                                | Global::RebuildParameter
                                | Global::RebuildParameterWithState
                        )
                    );
                    if !func_ok {
                        bail!("_rebuild_from_type_v2 of something that is not a tensor rebuild");
                    }
                    let inner = m.tuple_items(&inner_args, "_rebuild_from_type_v2 arguments")?;
                    call(m, &func, inner)
                }
                Some(Global::Refused(name)) => Ok(refused(m, &format!("tensor subclass {name}"))),
                _ => bail!("_rebuild_from_type_v2 with a type that is not a tensor type"),
            }
        }
        Global::Size => {
            let dims = match args.first() {
                Some(init) => iter_items(m, init)?,
                None => vec![],
            };
            Ok(m.alloc(Object::Tuple(dims)))
        }
        Global::Device => {
            let name = match args.as_slice() {
                [Value::Str(s)] => s.to_string(),
                [Value::Str(s), Value::Int(i)] => format!("{s}:{i}"),
                _ => bail!("torch.device with unexpected arguments"),
            };
            Ok(m.alloc(Object::Device(Rc::from(name))))
        }
        Global::TensorType | Global::StorageType(_) | Global::Dtype(_) => {
            bail!("{} is not called by torch.save checkpoints", global.name())
        }
    }
}

/// NEWOBJ / INST / OBJ: `cls.__new__(cls, *args)`.
pub(super) fn new_object(m: &mut Machine, cls: &Value, args: Vec<Value>) -> Result<Value> {
    let _ = args;
    if let Value::Obj(id) = cls {
        if let Object::Refused(name) = &m.heap[*id] {
            let name = name.clone();
            return Ok(refused(m, &name));
        }
    }
    match global_of(m, cls) {
        Some(Global::Refused(name)) => Ok(refused(m, &name)),
        // Items and state arrive through SETITEMS / BUILD.
        Some(Global::OrderedDict) => Ok(m.alloc(Object::Dict(Dict::default()))),
        Some(Global::Set | Global::FrozenSet) => Ok(m.alloc(Object::Set(vec![]))),
        Some(g) => bail!("cannot construct {} with NEWOBJ", g.name()),
        None => bail!("NEWOBJ on something that is not a class"),
    }
}

/// BUILD: `obj.__setstate__(state)`. The objects we build keep no Python attributes
/// (e.g. an OrderedDict's `_metadata`), so the state is dropped.
pub(super) fn build(m: &mut Machine, target: &Value, state: Value) -> Result<()> {
    let _ = state;
    match target {
        Value::Obj(id) => match &m.heap[*id] {
            Object::Refused(_) | Object::Dict(_) | Object::Tensor(_) | Object::Set(_) => Ok(()),
            _ => bail!("BUILD on an object that takes no state"),
        },
        _ => bail!("BUILD on a plain value"),
    }
}

/// Persistent id of a storage: `('storage', type, key, location, numel)` in zip archives, plus
/// `view_metadata` (`None` or `(view_key, offset, size)`) in the legacy format. Other kinds
/// (the legacy format's `('module', ...)` source records) become placeholders.
pub(super) fn persistent_load(m: &mut Machine, pid: &Value) -> Result<Value> {
    let mut items = m.tuple_items(pid, "persistent id")?;
    match items.first() {
        Some(Value::Str(tag)) if &**tag == "storage" => {}
        Some(Value::Str(tag)) => return Ok(refused(m, &format!("persistent id `{tag}`"))),
        _ => bail!("persistent id is not a tagged tuple"),
    }
    let view = if items.len() == 6 { items.pop() } else { None };
    let [_, storage_type, key, location, numel] = <[Value; 5]>::try_from(items)
        .map_err(|_| anyhow!("persistent id is not ('storage', type, key, location, numel)"))?;
    let dtype = match global_of(m, &storage_type) {
        Some(Global::StorageType(d)) => d,
        Some(g) => bail!("persistent id names {} as its storage type", g.name()),
        None => bail!("persistent id without a storage type"),
    };
    let key = storage_key(key)?;
    let location: Rc<str> = match location {
        Value::Str(s) => s,
        Value::Bytes(b) => Rc::from(String::from_utf8_lossy(&b).as_ref()),
        _ => bail!("storage location is not a string"),
    };
    let es = dtype.map_or(1, Dtype::size) as u64;
    let bytes_of = |n: &Value, what: &str| match n {
        Value::Int(i) => u64::try_from(*i)
            .ok()
            .and_then(|n| n.checked_mul(es))
            .ok_or_else(|| anyhow!("storage `{key}` has an invalid {what} {i}")),
        _ => bail!("storage `{key}`: the {what} is not an integer"),
    };
    let mut storage = Storage {
        dtype,
        base: 0,
        nbytes: bytes_of(&numel, "size")?,
        location,
        key: key.clone(),
    };
    if let Some(view) = view.filter(|v| *v != Value::None) {
        let [_view_key, offset, size] =
            <[Value; 3]>::try_from(m.tuple_items(&view, "storage view")?)
                .map_err(|_| anyhow!("storage view is not (key, offset, size)"))?;
        storage.base = bytes_of(&offset, "view offset")?;
        storage.nbytes = bytes_of(&size, "view size")?;
        storage
            .base
            .checked_add(storage.nbytes)
            .ok_or_else(|| anyhow!("storage `{key}`: the view overflows"))?;
    }
    Ok(m.alloc(Object::Storage(storage)))
}

fn storage_key(key: Value) -> Result<Rc<str>> {
    match key {
        Value::Str(s) => Ok(s),
        Value::Int(i) => Ok(Rc::from(i.to_string())),
        _ => bail!("storage key is not a string"),
    }
}

/// The items of a list / tuple / set, or the (key, value) pairs of a dict as tuples.
fn iter_items(m: &mut Machine, v: &Value) -> Result<Vec<Value>> {
    let Value::Obj(id) = v else {
        bail!("expected a list, tuple or set");
    };
    match &m.heap[*id] {
        Object::List(items) | Object::Tuple(items) | Object::Set(items) => {
            let items = items.clone();
            m.charge_copies(items.len())?;
            Ok(items)
        }
        Object::Dict(d) => {
            let pairs = d.items.clone();
            m.charge_copies(2 * pairs.len())?;
            Ok(pairs
                .into_iter()
                .map(|(k, v)| m.alloc(Object::Tuple(vec![k, v])))
                .collect())
        }
        _ => bail!("expected a list, tuple or set"),
    }
}

/// `_codecs.encode(text, 'latin1')`, `bytes()` and `bytearray(...)`: how protocols < 3 spell
/// bytes (and < 5 bytearrays).
fn bytes_from_args(global: &Global, args: &[Value]) -> Result<Value> {
    match args {
        [] if *global != Global::CodecsEncode => Ok(Value::Bytes(Rc::from(&[][..]))),
        [Value::Bytes(b)] if *global != Global::CodecsEncode => Ok(Value::Bytes(b.clone())),
        [Value::Str(text), Value::Str(enc)]
            if matches!(&**enc, "latin1" | "latin-1" | "iso-8859-1") =>
        {
            let bytes = text
                .chars()
                .map(|c| {
                    u8::try_from(u32::from(c)).map_err(|_| anyhow!("latin-1 text holds {c:?}"))
                })
                .collect::<Result<Vec<u8>>>()?;
            Ok(Value::Bytes(Rc::from(bytes)))
        }
        _ => bail!("{} with unsupported arguments", global.name()),
    }
}

fn int_list(m: &mut Machine, v: &Value, what: &str) -> Result<Vec<i64>> {
    let items = iter_items(m, v).map_err(|_| anyhow!("tensor {what} is not a tuple"))?;
    if items.len() > MAX_DIMS {
        bail!(
            "tensor has {} dimensions (at most {MAX_DIMS} are supported)",
            items.len()
        );
    }
    items
        .iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Ok(*i),
            _ => bail!("tensor {what} holds something that is not a non-negative integer"),
        })
        .collect()
}

/// `_rebuild_tensor(storage, offset, size, stride)`,
/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`,
/// `_rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])`.
fn rebuild_tensor(m: &mut Machine, global: &Global, args: &[Value]) -> Result<TensorRef> {
    let (min, max) = match global {
        Global::RebuildTensor => (4, 4),
        Global::RebuildTensorV2 => (6, 7),
        _ => (7, 8),
    };
    if args.len() < min || args.len() > max {
        bail!(
            "{} takes {min} to {max} arguments, got {}",
            global.name(),
            args.len()
        );
    }
    let storage = match &args[0] {
        Value::Obj(id) => match &m.heap[*id] {
            Object::Storage(s) => s.clone(),
            _ => bail!("{}: the first argument is not a storage", global.name()),
        },
        _ => bail!("{}: the first argument is not a storage", global.name()),
    };
    let offset = match args[1] {
        Value::Int(i) if i >= 0 => i as u64,
        _ => bail!("tensor storage offset is not a non-negative integer"),
    };
    let shape = int_list(m, &args[2], "size")?;
    let strides = int_list(m, &args[3], "stride")?;
    if shape.len() != strides.len() {
        bail!("tensor size {shape:?} and stride {strides:?} differ in length");
    }
    let (dtype, metadata) = if *global == Global::RebuildTensorV3 {
        let dtype = match global_of(m, &args[6]) {
            Some(Global::Dtype(d)) => d,
            _ => bail!("_rebuild_tensor_v3: the dtype argument is not a supported torch dtype"),
        };
        (dtype, args.get(7))
    } else {
        let dtype = storage
            .dtype
            .ok_or_else(|| anyhow!("a tensor on an untyped storage needs _rebuild_tensor_v3"))?;
        (dtype, args.get(6))
    };
    let negated = match metadata {
        None | Some(Value::None) => false,
        Some(Value::Obj(id)) => match &m.heap[*id] {
            Object::Dict(d) => d.get_str("neg") == Some(&Value::Bool(true)),
            _ => bail!("tensor metadata is not a dict"),
        },
        Some(_) => bail!("tensor metadata is not a dict"),
    };
    let tensor = TensorRef {
        storage,
        dtype,
        offset,
        shape,
        strides,
        negated,
    };
    check_bounds(&tensor)?;
    Ok(tensor)
}

/// The view must lie inside the storage's recorded size; all arithmetic checked.
fn check_bounds(t: &TensorRef) -> Result<()> {
    let es = t.dtype.size() as u64;
    let mut numel: u64 = 1;
    let mut extent: u64 = 1;
    for (&d, &s) in t.shape.iter().zip(&t.strides) {
        numel = numel
            .checked_mul(d as u64)
            .ok_or_else(|| anyhow!("tensor size overflows"))?;
        if d > 0 {
            let span = (d as u64 - 1).checked_mul(s as u64);
            extent = span
                .and_then(|x| x.checked_add(extent))
                .ok_or_else(|| anyhow!("tensor stride overflows"))?;
        }
    }
    numel
        .checked_mul(es)
        .ok_or_else(|| anyhow!("tensor size overflows"))?;
    if numel == 0 {
        return Ok(());
    }
    let end = t
        .offset
        .checked_add(extent)
        .and_then(|e| e.checked_mul(es))
        .ok_or_else(|| anyhow!("tensor offset overflows"))?;
    if end > t.storage.nbytes {
        bail!(
            "tensor view (offset {}, size {:?}, stride {:?}, {}) needs {end} bytes of storage `{}`, \
             which holds {}",
            t.offset,
            t.shape,
            t.strides,
            t.dtype,
            t.storage.key,
            t.storage.nbytes
        );
    }
    Ok(())
}
