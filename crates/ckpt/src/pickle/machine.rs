//! The pickle virtual machine: protocol 0-5 opcodes over a byte slice. Nothing here runs code;
//! GLOBAL only looks names up in the allow-list (`calls::resolve_global`), and REDUCE / NEWOBJ /
//! BUILD on anything else produce inert `Object::Refused` placeholders.

use super::calls;
use super::text::{
    ascii_line, decimal_to_le, is_decimal, long_from_le, parse_ascii, raw_unicode_escape,
    str_or_bytes, unquote_string,
};
use super::value::{Dict, Object, Value};
use super::{Pickle, Truncated};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::rc::Rc;

/// Maximum nesting of MARKs (a legitimate checkpoint needs a handful).
const MAX_MARKS: usize = 10_000;

pub(super) struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    pub(super) heap: Vec<Object>,
    /// Values copied out of existing containers so far (see `charge_copies`).
    copied: usize,
}

impl<'a> Machine<'a> {
    pub(super) fn new(data: &'a [u8]) -> Machine<'a> {
        Machine {
            data,
            pos: 0,
            stack: vec![],
            marks: vec![],
            memo: HashMap::new(),
            heap: vec![],
            copied: 0,
        }
    }

    pub(super) fn alloc(&mut self, obj: Object) -> Value {
        self.heap.push(obj);
        Value::Obj(self.heap.len() - 1)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(truncated(format!(
                "pickle data ends inside an opcode argument at byte {}",
                self.pos
            )));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn take_le(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    /// A length argument, checked against the remaining input before anything is allocated.
    fn take_len(&mut self, n: usize) -> Result<usize> {
        let len = self.take_le(n)?;
        let remaining = (self.data.len() - self.pos) as u64;
        if len > remaining {
            return Err(truncated(format!(
                "pickle length {len} at byte {} exceeds the {remaining} bytes left",
                self.pos
            )));
        }
        Ok(len as usize)
    }

    fn take_line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| truncated("pickle data ends inside a text argument".into()))?;
        self.pos += nl + 1;
        Ok(&rest[..nl])
    }

    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!("pickle pops past a MARK at byte {}", self.pos);
        }
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("pickle stack underflow at byte {}", self.pos))
    }

    fn top(&self) -> Result<&Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!("pickle reads past a MARK at byte {}", self.pos);
        }
        self.stack
            .last()
            .ok_or_else(|| anyhow!("pickle stack underflow at byte {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| anyhow!("pickle has no MARK at byte {}", self.pos))?;
        Ok(self.stack.split_off(mark))
    }

    fn push_obj(&mut self, obj: Object) {
        let v = self.alloc(obj);
        self.stack.push(v);
    }

    fn memo_get(&self, key: u64) -> Result<Value> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| anyhow!("pickle memo key {key} was never stored"))
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    /// Run until STOP; returns the result and leaves `heap` filled.
    pub(super) fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self
                .take_u8()
                .map_err(|_| truncated("pickle data ends without STOP".into()))?;
            self.step(op)
                .map_err(|e| e.context(format!("opcode 0x{op:02x} at byte {at}")))?;
            if op == b'.' {
                return self.pop();
            }
        }
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            // --- framing and protocol
            0x80 => {
                let proto = self.take_u8()?;
                if proto > 5 {
                    bail!("pickle protocol {proto} is not supported (0-5 are)");
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint only
            }
            b'.' => {} // STOP, handled by the caller
            // --- stack manipulation
            b'(' => {
                if self.marks.len() >= MAX_MARKS {
                    bail!("more than {MAX_MARKS} nested MARKs");
                }
                self.marks.push(self.stack.len());
            }
            b'0' => {
                // POP: like Python, an empty frame above a MARK pops the mark instead.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            // --- constants
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            // --- numbers
            b'I' => {
                let line = self.take_line()?;
                let v = match line {
                    b"00" => Value::Bool(false),
                    b"01" => Value::Bool(true),
                    _ => Value::Int(parse_ascii::<i64>(line, "INT")?),
                };
                self.stack.push(v);
            }
            b'J' => {
                let v = self.take_le(4)? as u32 as i32;
                self.stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.take_u8()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.take_le(2)?;
                self.stack.push(Value::Int(v as i64));
            }
            b'L' => {
                let line = self.take_line()?;
                let digits = line.strip_suffix(b"L").unwrap_or(line);
                let v = match parse_ascii::<i64>(digits, "LONG") {
                    Ok(i) => Value::Int(i),
                    Err(_) if is_decimal(digits) => long_from_le(&decimal_to_le(digits)?),
                    Err(e) => return Err(e),
                };
                self.stack.push(v);
            }
            0x8a => {
                let n = self.take_len(1)?;
                let b = self.take(n)?;
                self.stack.push(long_from_le(b));
            }
            0x8b => {
                let n = self.take_len(4)?;
                let b = self.take(n)?;
                self.stack.push(long_from_le(b));
            }
            b'F' => {
                let line = self.take_line()?;
                self.stack
                    .push(Value::Float(parse_ascii::<f64>(line, "FLOAT")?));
            }
            b'G' => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            // --- strings and bytes
            b'S' => {
                let line = self.take_line()?;
                let raw = unquote_string(line)?;
                self.stack.push(str_or_bytes(raw));
            }
            b'T' => {
                let n = self.take_len(4)?;
                let b = self.take(n)?;
                self.stack.push(str_or_bytes(b.to_vec()));
            }
            b'U' => {
                let n = self.take_len(1)?;
                let b = self.take(n)?;
                self.stack.push(str_or_bytes(b.to_vec()));
            }
            b'V' => {
                let line = self.take_line()?;
                self.stack
                    .push(Value::Str(Rc::from(raw_unicode_escape(line)?)));
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.take_len(4)?,
                    0x8c => self.take_len(1)?,
                    _ => self.take_len(8)?,
                };
                let b = self.take(n)?;
                let s =
                    std::str::from_utf8(b).map_err(|_| anyhow!("unicode string is not UTF-8"))?;
                self.stack.push(Value::Str(Rc::from(s)));
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.take_len(4)?,
                    b'C' => self.take_len(1)?,
                    _ => self.take_len(8)?,
                };
                let b = self.take(n)?;
                self.stack.push(Value::Bytes(Rc::from(b)));
            }
            0x96 => {
                let n = self.take_len(8)?;
                let b = self.take(n)?;
                self.stack.push(Value::Bytes(Rc::from(b)));
            }
            0x97 | 0x98 => bail!("out-of-band pickle buffers are not supported"),
            // --- containers
            b']' => self.push_obj(Object::List(vec![])),
            b'l' => {
                let items = self.pop_mark()?;
                self.push_obj(Object::List(items));
            }
            b')' => self.push_obj(Object::Tuple(vec![])),
            b't' => {
                let items = self.pop_mark()?;
                self.push_obj(Object::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push_obj(Object::Tuple(items));
            }
            b'}' => self.push_obj(Object::Dict(Dict::default())),
            b'd' => {
                let items = self.pop_mark()?;
                let dict = pairs_into_dict(items)?;
                self.push_obj(Object::Dict(dict));
            }
            0x8f => self.push_obj(Object::Set(vec![])),
            0x91 => {
                let items = self.pop_mark()?;
                self.push_obj(Object::Set(items));
            }
            b'a' => {
                let v = self.pop()?;
                let target = self.top()?.clone();
                self.extend(&target, vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.extend(&target, items)?;
            }
            0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.add_to_set(&target, items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?.clone();
                self.set_items(&target, vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.set_items(&target, items)?;
            }
            // --- memo
            b'g' => {
                let key = parse_ascii::<u64>(self.take_line()?, "GET")?;
                let v = self.memo_get(key)?;
                self.stack.push(v);
            }
            b'h' => {
                let key = self.take_le(1)?;
                let v = self.memo_get(key)?;
                self.stack.push(v);
            }
            b'j' => {
                let key = self.take_le(4)?;
                let v = self.memo_get(key)?;
                self.stack.push(v);
            }
            b'p' => {
                let key = parse_ascii::<u64>(self.take_line()?, "PUT")?;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.take_le(1)?;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.take_le(4)?;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            // --- globals and object construction
            b'c' => {
                let module = ascii_line(self.take_line()?)?;
                let name = ascii_line(self.take_line()?)?;
                self.push_obj(Object::Global(calls::resolve_global(&module, &name)));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    bail!("STACK_GLOBAL needs two strings");
                };
                self.push_obj(Object::Global(calls::resolve_global(&module, &name)));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = self.tuple_items(&args, "REDUCE arguments")?;
                let v = calls::call(self, &callable, args)?;
                self.stack.push(v);
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.tuple_items(&args, "NEWOBJ arguments")?;
                let v = calls::new_object(self, &cls, args)?;
                self.stack.push(v);
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.tuple_items(&args, "NEWOBJ_EX arguments")?;
                let v = calls::new_object(self, &cls, args)?;
                self.stack.push(v);
            }
            b'i' => {
                let module = ascii_line(self.take_line()?)?;
                let name = ascii_line(self.take_line()?)?;
                let args = self.pop_mark()?;
                let cls = self.alloc(Object::Global(calls::resolve_global(&module, &name)));
                let v = calls::new_object(self, &cls, args)?;
                self.stack.push(v);
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    bail!("OBJ without a class");
                }
                let cls = items.remove(0);
                let v = calls::new_object(self, &cls, items)?;
                self.stack.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?.clone();
                calls::build(self, &target, state)?;
            }
            b'P' => {
                let pid = self.take_line()?;
                bail!(
                    "text persistent ids ({:?}) are not used by torch.save",
                    String::from_utf8_lossy(pid)
                );
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = calls::persistent_load(self, &pid)?;
                self.stack.push(v);
            }
            0x82..=0x84 => bail!("pickle extension codes (copyreg registry) are not supported"),
            _ => bail!("unknown pickle opcode"),
        }
        Ok(())
    }

    /// Count `n` values copied out of an existing container. Memoised containers can be
    /// copied again and again (e.g. `set(memo[1])` repeated), so without a budget a small
    /// hostile pickle could need quadratic memory; legitimate files copy little.
    pub(super) fn charge_copies(&mut self, n: usize) -> Result<()> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > self.data.len().saturating_mul(16).saturating_add(1 << 20) {
            bail!("pickle copies containers excessively (more than 16 values per input byte)");
        }
        Ok(())
    }

    /// The items of a tuple (or list) value, e.g. call arguments.
    pub(super) fn tuple_items(&mut self, v: &Value, what: &str) -> Result<Vec<Value>> {
        let items = match v {
            Value::Obj(id) => match &self.heap[*id] {
                Object::Tuple(items) | Object::List(items) => items.clone(),
                _ => bail!("{what} are not a tuple"),
            },
            _ => bail!("{what} are not a tuple"),
        };
        self.charge_copies(items.len())?;
        Ok(items)
    }

    fn extend(&mut self, target: &Value, items: Vec<Value>) -> Result<()> {
        match target {
            Value::Obj(id) => match &mut self.heap[*id] {
                Object::List(list) => list.extend(items),
                Object::Set(set) => set.extend(items),
                // A refused object (e.g. a list subclass) swallows its items unseen.
                Object::Refused(_) => {}
                _ => bail!("APPEND(S) to something that is not a list"),
            },
            _ => bail!("APPEND(S) to something that is not a list"),
        }
        Ok(())
    }

    fn add_to_set(&mut self, target: &Value, items: Vec<Value>) -> Result<()> {
        match target {
            Value::Obj(id) => match &mut self.heap[*id] {
                Object::Set(set) => set.extend(items),
                Object::Refused(_) => {}
                _ => bail!("ADDITEMS to something that is not a set"),
            },
            _ => bail!("ADDITEMS to something that is not a set"),
        }
        Ok(())
    }

    fn set_items(&mut self, target: &Value, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            bail!("SETITEMS with an odd number of items");
        }
        match target {
            Value::Obj(id) => match &mut self.heap[*id] {
                Object::Dict(dict) => {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        dict.insert(k, v);
                    }
                }
                // A refused dict subclass (e.g. yacs CfgNode) swallows its items unseen.
                Object::Refused(_) => {}
                _ => bail!("SETITEM(S) on something that is not a dict"),
            },
            _ => bail!("SETITEM(S) on something that is not a dict"),
        }
        Ok(())
    }
}

impl Machine<'_> {
    /// Run to STOP -> (the pickle, bytes consumed).
    pub(super) fn finish(mut self) -> Result<(Pickle, usize)> {
        let root = self.run()?;
        let pickle = Pickle {
            heap: self.heap,
            root,
        };
        Ok((pickle, self.pos))
    }
}

/// An error marked `Truncated`: the data ended before the pickle did.
fn truncated(what: String) -> anyhow::Error {
    anyhow::Error::new(Truncated).context(what)
}

fn pairs_into_dict(items: Vec<Value>) -> Result<Dict> {
    if !items.len().is_multiple_of(2) {
        bail!("DICT with an odd number of items");
    }
    let mut dict = Dict::default();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        dict.insert(k, v);
    }
    Ok(dict)
}
