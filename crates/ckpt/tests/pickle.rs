//! The restricted unpickler on hand-assembled pickles: values, memo sharing, placeholders for
//! refused globals, tensor views, and malformed input.

use medfm_ckpt::pickle::{unpickle, Object, Pickle, Value};
use medfm_ckpt::torch::select_state_dict;
use medfm_ckpt::Dtype;

/// A little pickle assembler (protocol 2 opcodes).
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new() -> P {
        P(vec![0x80, 2])
    }
    fn op(mut self, b: &[u8]) -> P {
        self.0.extend_from_slice(b);
        self
    }
    fn s(self, text: &str) -> P {
        let mut p = self.op(b"X");
        p.0.extend_from_slice(&(text.len() as u32).to_le_bytes());
        p.op(text.as_bytes())
    }
    fn int(self, i: i32) -> P {
        let mut p = self.op(b"J");
        p.0.extend_from_slice(&i.to_le_bytes());
        p
    }
    fn global(self, module: &str, name: &str) -> P {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints(mut self, xs: &[i32]) -> P {
        self = self.op(b"(");
        for &x in xs {
            self = self.int(x);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`
    fn tensor(self, key: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> P {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .s("storage")
            .global("torch", "FloatStorage")
            .s(key)
            .s("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

fn run(data: &[u8]) -> Pickle {
    match unpickle(data) {
        Ok(p) => p,
        Err(e) => panic!("{e:#}"),
    }
}

fn err(data: &[u8]) -> String {
    match unpickle(data) {
        Ok(p) => panic!("unpickled {} but should fail", p.describe(&p.root)),
        Err(e) => format!("{e:#}"),
    }
}

fn dict_items(p: &Pickle) -> Vec<(String, String)> {
    let d = p.as_dict(&p.root).expect("root dict");
    d.items
        .iter()
        .map(|(k, v)| (p.describe(k), p.describe(v)))
        .collect()
}

#[test]
fn scalars_strings_and_bytes() {
    let data = P::new()
        .op(b"}(")
        .s("i")
        .op(b"J\xfe\xff\xff\xff") // BININT -2
        .s("i1")
        .op(b"K\xff")
        .s("i2")
        .op(b"M\x01\x01")
        .s("long")
        .op(b"\x8a\x02\x00\x80") // LONG1 -32768
        .s("huge")
        .op(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01")
        .s("f")
        .op(b"G\x3f\xf8\x00\x00\x00\x00\x00\x00")
        .s("t")
        .op(b"\x88")
        .s("n")
        .op(b"N")
        .s("b")
        .global("_codecs", "encode")
        .s("\u{e9}\u{1}")
        .s("latin1")
        .op(b"\x86R")
        .op(b"u")
        .stop();
    let p = run(&data);
    let items = dict_items(&p);
    let want = [
        ("str \"i\"", "int -2"),
        ("str \"i1\"", "int 255"),
        ("str \"i2\"", "int 257"),
        ("str \"long\"", "int -32768"),
        ("str \"huge\"", "int (wider than 64 bits)"),
        ("str \"f\"", "float 1.5"),
        ("str \"t\"", "bool True"),
        ("str \"n\"", "None"),
        ("str \"b\"", "bytes (2 bytes)"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(items, want);
    let d = p.as_dict(&p.root).unwrap();
    assert_eq!(d.get_str("b"), Some(&Value::Bytes(vec![0xe9, 1].into())));
}

/// Containers are shared through the memo and mutated after being stored, as Python does.
#[test]
fn memo_shares_mutable_containers() {
    let data = P::new()
        .op(b"]q\x00") // list, memo 0
        .op(b"}q\x01") // dict, memo 1
        .s("a")
        .op(b"h\x00s") // dict['a'] = the list
        .op(b"0h\x00") // pop the dict; push the list again
        .int(7)
        .op(b"a") // list.append(7)
        .op(b"0h\x01") // result: the dict
        .stop();
    let p = run(&data);
    let d = p.as_dict(&p.root).unwrap();
    match p.object(d.get_str("a").unwrap()) {
        Some(Object::List(items)) => assert_eq!(items, &vec![Value::Int(7)]),
        other => panic!("{other:?}"),
    }
}

/// Refused globals are never called: REDUCE / NEWOBJ / BUILD / SETITEMS on them give inert
/// placeholders named after the class, and the rest of the checkpoint loads.
#[test]
fn refused_globals_become_placeholders() {
    let data = P::new()
        .op(b"}(")
        .s("system")
        .global("os", "system")
        .s("echo pwned")
        .op(b"\x85R")
        .s("args")
        .global("argparse", "Namespace")
        .op(b")\x81}")
        .s("lr")
        .int(1)
        .op(b"sb")
        .s("cfg")
        .global("yacs.config", "CfgNode")
        .op(b")\x81(")
        .s("k")
        .int(1)
        .op(b"u")
        .s("old")
        .global("copy_reg", "_reconstructor")
        .global("mymod", "Thing")
        .global("__builtin__", "object")
        .op(b"N\x87R")
        .s("call_result")
        .global("builtins", "getattr")
        .op(b")R)R")
        .op(b"u")
        .stop();
    let p = run(&data);
    let items = dict_items(&p);
    let got: Vec<&str> = items.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        got,
        [
            "refused object (os.system)",
            "refused object (argparse.Namespace)",
            "refused object (yacs.config.CfgNode)",
            "refused object (mymod.Thing)",
            "refused object (builtins.getattr)",
        ]
    );
    let err = format!("{:#}", select_state_dict(&p, None).unwrap_err());
    assert!(
        err.contains("no state dict found")
            && err.contains("`args` (refused object (argparse.Namespace))"),
        "{err}"
    );
}

#[test]
fn tensor_views_and_state_dict_selection() {
    let data = P::new()
        .global("collections", "OrderedDict")
        .op(b")R(")
        .s("w")
        .tensor("0", 12, 0, &[3, 4], &[4, 1])
        .s("wt")
        .tensor("0", 12, 1, &[2, 3], &[1, 4])
        .op(b"u")
        .op(b"}(")
        .s("_metadata")
        .op(b"}")
        .op(b"ub")
        .stop();
    let p = run(&data);
    let refs = select_state_dict(&p, None).unwrap();
    assert_eq!(refs.tensors.len(), 2);
    let (name, t) = &refs.tensors[1];
    assert_eq!(name, "wt");
    assert_eq!(
        (t.dtype, t.offset, t.shape.clone(), t.strides.clone()),
        (Dtype::F32, 1, vec![2, 3], vec![1, 4])
    );
    assert!(!t.is_contiguous());
    assert_eq!(t.byte_span(), (4, 4 * 10));
    assert!(refs.tensors[0].1.is_contiguous());
}

#[test]
fn tensor_views_outside_their_storage_are_errors() {
    let data = P::new()
        .op(b"}")
        .s("w")
        .tensor("3", 12, 1, &[3, 4], &[4, 1])
        .op(b"s")
        .stop();
    let e = err(&data);
    assert!(
        e.contains("needs 52 bytes of storage `3`, which holds 48"),
        "{e}"
    );
    let data = P::new()
        .op(b"}")
        .s("w")
        .tensor("3", 12, 0, &[3, 4], &[4])
        .op(b"s")
        .stop();
    assert!(err(&data).contains("differ in length"));
    let data = P::new()
        .op(b"}")
        .s("w")
        .tensor("3", 12, 0, &[3], &[-1])
        .op(b"s")
        .stop();
    assert!(err(&data).contains("not a non-negative integer"));
    let huge = 1 << 20;
    let data = P::new()
        .op(b"}")
        .s("w")
        .tensor("3", 12, 0, &[huge, huge, huge], &[0, 0, 0])
        .op(b"s")
        .stop();
    let p = run(&data); // stride-0 views are legal; the archive layer bounds their expansion
    assert_eq!(
        select_state_dict(&p, None).unwrap().tensors[0].1.numel(),
        (huge as u64).pow(3)
    );
}

#[test]
fn malformed_pickles_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"\x80\x02}", "ends without STOP"),
        (b"\x80\x02.", "stack underflow"),
        (b"\x80\x02(.", "pops past a MARK"),
        (b"\x80\x02\xff.", "unknown pickle opcode"),
        (b"\x80\x06}.", "protocol 6"),
        (b"\x80\x02h\x05.", "memo key 5 was never stored"),
        (b"\x80\x02X\xff\xff\xff\xff.", "exceeds the"),
        (
            b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.",
            "exceeds the",
        ),
        (b"\x80\x02\x82\x01.", "extension codes"),
        (
            b"\x80\x02K\x00K\x01K\x02s.",
            "SETITEM(S) on something that is not a dict",
        ),
        (b"\x80\x02]K\x01K\x02s.", "not a dict"),
        (b"\x80\x02K\x01)R.", "not a global"),
        (
            b"\x80\x02ctorch\nFloatStorage\n)R.",
            "not called by torch.save",
        ),
        (b"\x80\x02(Xa", "truncated"),
        // _rebuild_from_type_v2(*L) with L = [itself, torch.Tensor, L, None]: unbounded
        // recursion (a stack overflow) before calls were restricted to tensor rebuilds.
        (
            b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\nq\x00]q\x01(h\x00ctorch\nTensor\nh\x01NeR.",
            "not a tensor rebuild",
        ),
    ];
    for (data, want) in cases {
        let e = err(data);
        assert!(e.contains(want), "{data:?}: {e}");
    }
}

#[test]
fn copy_budget_stops_quadratic_blowup() {
    // A 2000-item tuple memoised, then `set(memo[0])` many times: each copy is charged.
    let mut p = P::new().op(b"(");
    for _ in 0..2000 {
        p = p.op(b"N");
    }
    p = p.op(b"tq\x00");
    for _ in 0..2000 {
        p = p.global("builtins", "set").op(b"h\x00\x85R0");
    }
    let e = err(&p.stop());
    assert!(e.contains("copies containers excessively"), "{e}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical text form of `canon` in scripts/fixtures/gen_weight_fixtures.py.
fn canon(p: &Pickle, v: &Value) -> String {
    let join = |items: &[Value]| {
        items
            .iter()
            .map(|x| canon(p, x))
            .collect::<Vec<_>>()
            .join(",")
    };
    match v {
        Value::None => "N".into(),
        Value::Bool(b) => if *b { "T" } else { "F" }.into(),
        Value::Int(i) => format!("i{i}"),
        Value::BigInt(b) => format!("I{}", hex(b)),
        Value::Float(f) => format!("f{}", hex(&f.to_be_bytes())),
        Value::Str(s) => format!("s{}", hex(s.as_bytes())),
        Value::Bytes(b) => format!("b{}", hex(b)),
        Value::Obj(_) => match p.object(v).unwrap() {
            Object::List(items) => format!("[{}]", join(items)),
            Object::Tuple(items) => format!("({})", join(items)),
            Object::Dict(d) => {
                let items: Vec<String> = d
                    .items
                    .iter()
                    .map(|(k, x)| format!("{}:{}", canon(p, k), canon(p, x)))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            Object::Set(items) => {
                let mut items: Vec<String> = items.iter().map(|x| canon(p, x)).collect();
                items.sort();
                format!("<{}>", items.join(","))
            }
            other => panic!("unexpected object {other:?}"),
        },
    }
}

/// Random objects pickled by CPython with protocols 0-5 (scripts/fixtures/gen_weight_fixtures.py) come
/// back as exactly the same values.
#[test]
fn differential_against_cpython_pickle() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/weights/pickle_cases.pkl");
    let outer = run(&std::fs::read(path).unwrap());
    let Some(Object::List(cases)) = outer.object(&outer.root) else {
        panic!("not a list")
    };
    assert_eq!(cases.len(), 240);
    let mut protocols = [0; 6];
    for case in cases {
        let Some(Object::Tuple(t)) = outer.object(case) else {
            panic!("not a tuple")
        };
        let [Value::Int(proto), Value::Bytes(data), Value::Str(want)] = t.as_slice() else {
            panic!("bad case {t:?}")
        };
        let p = match unpickle(data) {
            Ok(p) => p,
            Err(e) => panic!("protocol {proto}, {want}: {e:#}"),
        };
        assert_eq!(canon(&p, &p.root), **want, "protocol {proto}");
        protocols[*proto as usize] += 1;
    }
    assert_eq!(protocols, [40; 6]);
}
