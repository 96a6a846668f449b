//! JSON values as the Python reference sees them: insertion-ordered dicts, ints of any size,
//! and Python's equality (1 == 1.0 == True, exact int/float comparison).
//!
//! Containers are reference counted: Python's `dict(x)` and `{**a, **b}` are shallow copies, and
//! the reference never mutates a dict in place once another one refers to it, so sharing the
//! children (and copying on the first write, `Rc::make_mut`) gives the same values as copying.

use std::cmp::Ordering;
use std::rc::Rc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};

pub use crate::map::Key;
pub type Map = crate::map::OMap<Val>;

/// Nesting accepted from Python objects (payloads). orjson writes up to 254 nested containers and
/// hands deeper documents to the stdlib (whose floats differ); with these limits every document
/// this crate writes stays far below that (state: +5 levels, data: +3, envelope: +1).
pub const MAX_PY_DEPTH: usize = 128;

#[derive(Clone, Debug)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    /// 2**63 <= value < 2**64
    UInt(u64),
    /// beyond 64 bits: Python's decimal str() of the int (canonical: no leading zeros)
    Big(Rc<str>),
    /// finite (a NaN / infinity is Unsupported: orjson writes null and Python compares it oddly)
    Float(f64),
    Str(Rc<str>),
    List(Rc<Vec<Val>>),
    Dict(Rc<Map>),
    /// a dict still as the state's JSON bytes (json::loads_state): parsed when looked into
    Raw(Rc<crate::json::RawJson>),
}

/// Why the core cannot answer exactly; the Python wrapper then takes the reference path.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl From<PyErr> for Unsupported {
    fn from(e: PyErr) -> Self {
        Unsupported(format!("Python error: {e}"))
    }
}

pub type R<T> = Result<T, Unsupported>;

#[macro_export]
macro_rules! unsupported {
    ($($t:tt)*) => { $crate::value::Unsupported(format!($($t)*)) };
}

pub fn new_map() -> Map {
    Map::new()
}

pub fn map_with_capacity(n: usize) -> Map {
    Map::with_capacity(n)
}

pub fn key(s: &str) -> Key {
    Rc::from(s)
}

thread_local! {
    static INTERNED: std::cell::RefCell<std::collections::HashSet<Key, foldhash::fast::RandomState>> =
        std::cell::RefCell::new(std::collections::HashSet::with_hasher(Default::default()));
}

/// Names that recur (field names, the state's keys): one allocation each per thread, equal keys then
/// share it (map lookups compare the pointer first). Bounded: full, it starts over.
pub fn intern(s: &str) -> Key {
    INTERNED.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(k) = t.get(s) {
            return k.clone();
        }
        if t.len() >= 16_384 {
            t.clear();
        }
        let k: Key = Rc::from(s);
        t.insert(k.clone());
        k
    })
}

impl Val {
    /// Python's bool(value).
    pub fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::UInt(u) => *u != 0,
            Val::Big(_) => true,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Dict(d) => !d.is_empty(),
            Val::Raw(r) => !r.is_empty(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub fn empty_dict() -> Val {
        Val::Dict(Rc::new(new_map()))
    }

    fn is_number(&self) -> bool {
        matches!(self, Val::Bool(_) | Val::Int(_) | Val::UInt(_) | Val::Big(_) | Val::Float(_))
    }

    fn as_i128(&self) -> Option<i128> {
        match self {
            Val::Bool(b) => Some(*b as i128),
            Val::Int(i) => Some(*i as i128),
            Val::UInt(u) => Some(*u as i128),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "None",
            Val::Bool(_) => "bool",
            Val::Int(_) | Val::UInt(_) | Val::Big(_) => "int",
            Val::Float(_) => "float",
            Val::Str(_) => "str",
            Val::List(_) => "list",
            Val::Dict(_) | Val::Raw(_) => "dict",
        }
    }
}

// ------------------------------------------------------------------------------- from Python

/// A payload value: None, bool, int, float, str, list, dict (str keys), of these exact types.
/// Anything else (a subclass, a tuple, NaN, a str with lone surrogates ...) is Unsupported.
pub fn from_py(obj: &Bound<'_, PyAny>, depth: usize) -> R<Val> {
    from_py_inner(obj, depth, false)
}

/// A mapping rule's literal (a transition's from/to): like from_py, but NaN and +-infinity are kept:
/// same_value() compares them (a str "inf" equals float("inf"); float(a) == float(nan) is False
/// once float(a) did not raise).
pub fn literal_from_py(obj: &Bound<'_, PyAny>) -> R<Val> {
    from_py_inner(obj, 0, true)
}

fn from_py_inner(obj: &Bound<'_, PyAny>, depth: usize, allow_inf: bool) -> R<Val> {
    if obj.is_none() {
        return Ok(Val::Null);
    }
    if let Ok(s) = obj.downcast_exact::<PyString>() {
        return Ok(Val::Str(Rc::from(py_str(s)?)));
    }
    if let Ok(b) = obj.downcast_exact::<PyBool>() {
        return Ok(Val::Bool(b.is_true()));
    }
    if let Ok(i) = obj.downcast_exact::<PyInt>() {
        return int_from_py(i);
    }
    if let Ok(f) = obj.downcast_exact::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() && !allow_inf {
            return Err(unsupported!("float {v} (orjson writes null; Python compares it its own way)"));
        }
        return Ok(Val::Float(v));
    }
    if depth >= MAX_PY_DEPTH {
        return Err(unsupported!("values nested deeper than {MAX_PY_DEPTH}"));
    }
    if let Ok(d) = obj.downcast_exact::<PyDict>() {
        return Ok(Val::Dict(Rc::new(dict_from_py_inner(d, depth + 1, allow_inf)?)));
    }
    if let Ok(l) = obj.downcast_exact::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        for item in l.iter() {
            out.push(from_py_inner(&item, depth + 1, allow_inf)?);
        }
        return Ok(Val::List(Rc::new(out)));
    }
    Err(unsupported!("a value of type {}", obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()))
}

/// A payload dict (str keys) as a Map.
pub fn dict_from_py(d: &Bound<'_, PyDict>, depth: usize) -> R<Map> {
    dict_from_py_inner(d, depth, false)
}

fn dict_from_py_inner(d: &Bound<'_, PyDict>, depth: usize, allow_inf: bool) -> R<Map> {
    let mut m = map_with_capacity(d.len());
    for (k, v) in d.iter() {
        let k = k.downcast_exact::<PyString>().map_err(|_| unsupported!("a dict key that is not a str"))?;
        m.insert(intern(py_str(k)?), from_py_inner(&v, depth, allow_inf)?);
    }
    Ok(m)
}

pub fn py_str<'a>(s: &'a Bound<'_, PyString>) -> R<&'a str> {
    s.to_str().map_err(|_| unsupported!("a str that is not valid UTF-8 (lone surrogates)"))
}

fn int_from_py(i: &Bound<'_, PyInt>) -> R<Val> {
    if let Ok(v) = i.extract::<i64>() {
        return Ok(Val::Int(v));
    }
    if let Ok(v) = i.extract::<u64>() {
        return Ok(Val::UInt(v));
    }
    // beyond 64 bits; str() raises ValueError past sys.get_int_max_str_digits() (json.dumps too)
    let s = i.str()?;
    Ok(Val::Big(Rc::from(py_str(&s)?)))
}

/// The JSON of from_py(obj) written straight from the Python object (no Val tree in between): the
/// same values accepted, the same Unsupported for the rest (the packed hand-off, crate::packed).
pub fn write_py(w: &mut crate::json::Writer, obj: &Bound<'_, PyAny>, depth: usize) -> R<()> {
    if obj.is_none() {
        w.buf.extend_from_slice(b"null");
        return Ok(());
    }
    if let Ok(s) = obj.downcast_exact::<PyString>() {
        crate::json::write_str(&mut w.buf, py_str(s)?);
        return Ok(());
    }
    if let Ok(b) = obj.downcast_exact::<PyBool>() {
        w.buf.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
        return Ok(());
    }
    if let Ok(i) = obj.downcast_exact::<PyInt>() {
        w.value(&int_from_py(i)?);
        return Ok(());
    }
    if let Ok(f) = obj.downcast_exact::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(unsupported!("float {v} (orjson writes null; Python compares it its own way)"));
        }
        w.value(&Val::Float(v));
        return Ok(());
    }
    if depth >= MAX_PY_DEPTH {
        return Err(unsupported!("values nested deeper than {MAX_PY_DEPTH}"));
    }
    if let Ok(d) = obj.downcast_exact::<PyDict>() {
        w.buf.push(b'{');
        for (n, (k, v)) in d.iter().enumerate() {
            let k = k.downcast_exact::<PyString>().map_err(|_| unsupported!("a dict key that is not a str"))?;
            if n > 0 {
                w.buf.push(b',');
            }
            crate::json::write_str(&mut w.buf, py_str(k)?);
            w.buf.push(b':');
            write_py(w, &v, depth + 1)?;
        }
        w.buf.push(b'}');
        return Ok(());
    }
    if let Ok(l) = obj.downcast_exact::<PyList>() {
        w.buf.push(b'[');
        for (n, item) in l.iter().enumerate() {
            if n > 0 {
                w.buf.push(b',');
            }
            write_py(w, &item, depth + 1)?;
        }
        w.buf.push(b']');
        return Ok(());
    }
    Err(unsupported!("a value of type {}", obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()))
}

// ------------------------------------------------------------------------------- to Python

pub fn to_py(py: Python<'_>, v: &Val) -> PyResult<PyObject> {
    Ok(match v {
        Val::Raw(r) => to_py(py, &r.parse())?,
        Val::Null => py.None(),
        Val::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Val::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Val::UInt(u) => u.into_pyobject(py)?.into_any().unbind(),
        Val::Big(s) => big_to_py(py, s)?.unbind(),
        Val::Float(f) => PyFloat::new(py, *f).into_any().unbind(),
        Val::Str(s) => PyString::new(py, s).into_any().unbind(),
        Val::List(l) => {
            let items = l.iter().map(|x| to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Val::Dict(d) => {
            let out = PyDict::new(py);
            for (k, x) in d.iter() {
                out.set_item(&**k, to_py(py, x)?)?;
            }
            out.into_any().unbind()
        }
    })
}

fn big_to_py<'py>(py: Python<'py>, s: &str) -> PyResult<Bound<'py, PyAny>> {
    py.get_type::<PyInt>().call1((s,))
}

// ------------------------------------------------------------------------------- Python's ==

/// `a == b` as Python evaluates it for these values.
pub fn py_eq(py: Python<'_>, a: &Val, b: &Val) -> R<bool> {
    if let Val::Raw(r) = a {
        return py_eq(py, &r.parse(), b);
    }
    if let Val::Raw(r) = b {
        return py_eq(py, a, &r.parse());
    }
    Ok(match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::List(x), Val::List(y)) => {
            if Rc::ptr_eq(x, y) {
                return Ok(true);
            }
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y.iter()) {
                if !py_eq(py, p, q)? {
                    return Ok(false);
                }
            }
            true
        }
        (Val::Dict(x), Val::Dict(y)) => {
            if Rc::ptr_eq(x, y) {
                return Ok(true);
            }
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, v) in x.iter() {
                match y.get(&**k) {
                    Some(w) => {
                        if !py_eq(py, v, w)? {
                            return Ok(false);
                        }
                    }
                    None => return Ok(false),
                }
            }
            true
        }
        _ if a.is_number() && b.is_number() => num_eq(py, a, b)?,
        _ => false,
    })
}

fn num_eq(py: Python<'_>, a: &Val, b: &Val) -> R<bool> {
    if let (Some(x), Some(y)) = (a.as_i128(), b.as_i128()) {
        return Ok(x == y);
    }
    Ok(match (a, b) {
        (Val::Float(x), Val::Float(y)) => x == y,
        (Val::Float(f), other) | (other, Val::Float(f)) => match other.as_i128() {
            Some(i) => int_float_cmp(i, *f) == Some(Ordering::Equal),
            None => {
                // a Big against a float: exact, as Python compares them
                let Val::Big(s) = other else { unreachable!() };
                let i = big_to_py(py, s)?;
                i.eq(PyFloat::new(py, *f))?
            }
        },
        (Val::Big(x), Val::Big(y)) => x == y,
        _ => false, // a Big is never within 64 bits
    })
}

/// Exact comparison of an integer (within 64 bits) with a float, as Python does; None for NaN.
fn int_float_cmp(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= 18446744073709551616.0 {
        return Some(Ordering::Less);
    }
    if f < -9223372036854775808.0 {
        return Some(Ordering::Greater);
    }
    let fl = f.floor();
    let fi = fl as i128; // exact: |fl| < 2**64
    Some(match i.cmp(&fi) {
        Ordering::Equal => {
            if f > fl {
                Ordering::Less
            } else {
                Ordering::Equal
            }
        }
        o => o,
    })
}

/// Python's ordering of two numbers (bool, int within 64 bits, float); None if either is
/// something else (the caller then leaves the case to the reference).
pub fn num_cmp(a: &Val, b: &Val) -> Option<Ordering> {
    match (a.as_i128(), b.as_i128()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => match b {
            Val::Float(f) => int_float_cmp(x, *f),
            _ => None,
        },
        (None, Some(y)) => match a {
            Val::Float(f) => int_float_cmp(y, *f).map(Ordering::reverse),
            _ => None,
        },
        (None, None) => match (a, b) {
            (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
            _ => None,
        },
    }
}

/// float(v) for an int / float / str, as Python computes it: Ok(None) when float() raises
/// ValueError (a str that is not a number); Unsupported when it raises something else.
pub fn py_float(py: Python<'_>, v: &Val) -> R<Option<f64>> {
    Ok(Some(match v {
        Val::Int(i) => *i as f64, // round-half-even, as int.__float__
        Val::UInt(u) => *u as f64,
        Val::Big(s) => {
            let f: f64 = s.parse().map_err(|_| unsupported!("int {s} as float"))?;
            if f.is_infinite() {
                return Err(unsupported!("float() of an int too large for a float (OverflowError)"));
            }
            f
        }
        Val::Float(f) => *f,
        Val::Str(s) => {
            // Python's own float(str): unicode digits, underscores, "inf", whitespace ... all its rules
            match py.get_type::<PyFloat>().call1((&**s,)) {
                Ok(f) => f.downcast_into::<PyFloat>().map_err(|_| unsupported!("float() result"))?.value(),
                Err(e) if e.is_instance_of::<PyValueError>(py) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        _ => return Err(unsupported!("float() of a {}", v.type_name())),
    }))
}

/// The class of a value for same_value's "types differ" test: int, float, str, or other.
pub fn scalar_class(v: &Val) -> Option<u8> {
    match v {
        Val::Int(_) | Val::UInt(_) | Val::Big(_) => Some(0),
        Val::Float(_) => Some(1),
        Val::Str(_) => Some(2),
        _ => None,
    }
}
