//! The packed form of a transaction's wire commands: how the binlog reader process hands them to the
//! bridge (ingest/reader_process.py), one bytes object per aggregate instance instead of a tuple, a
//! dict and a dozen objects per command.
//!
//! pack_wire(wire) is the JSON array of the wire tuples (mapping/translate.py command_to_wire) as
//! arrays, each item converted by value::from_py, so that exactly the values the compiled apply
//! accepts are packed (anything else, a NaN, a big int, a subclass, is Unsupported: the reader then
//! sends that transaction's tuples as they are). unpack_wire(bytes) gives the tuples back, equal item
//! for item (value::to_py), for everything that needs them as Python objects: a Python decider,
//! lookups, a rejection, the commands topic.

use std::rc::Rc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::json::Writer;
use crate::unsupported;
use crate::value::{from_py, to_py, Val, R};

const ITEMS: usize = 11;

pub fn pack(wire: &Bound<'_, PyAny>) -> R<Vec<u8>> {
    let list = wire.downcast::<PyList>().map_err(|_| unsupported!("wire commands that are not a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for item in list.iter() {
        let t = item.downcast_exact::<PyTuple>().map_err(|_| unsupported!("a command that is not a tuple"))?;
        if t.len() != ITEMS {
            return Err(unsupported!("a command tuple of {} items, not {ITEMS}", t.len()));
        }
        let mut vals = Vec::with_capacity(ITEMS);
        for v in t.iter() {
            vals.push(from_py(&v, 0)?);
        }
        out.push(Val::List(Rc::new(vals)));
    }
    let mut w = Writer::new(256 * out.len());
    w.value(&Val::List(Rc::new(out)));
    if w.big && w.special {
        // the layout of floats in a document with a big int is the stdlib's: not worth a second form
        return Err(unsupported!("an int beyond 64 bits beside a float"));
    }
    Ok(w.buf)
}

pub fn unpack<'py>(py: Python<'py>, packed: &[u8]) -> R<Bound<'py, PyList>> {
    let items = match crate::json::loads(packed)? {
        Val::List(items) => items,
        _ => return Err(unsupported!("packed commands that are not a list")),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter() {
        let t = match item {
            Val::List(t) if t.len() == ITEMS => t,
            _ => return Err(unsupported!("a packed command that is not a list of {ITEMS}")),
        };
        let objs = t.iter().map(|v| to_py(py, v)).collect::<PyResult<Vec<_>>>()?;
        out.push(PyTuple::new(py, objs)?);
    }
    Ok(PyList::new(py, out)?)
}
